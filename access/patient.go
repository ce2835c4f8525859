package access

import (
	"errors"

	"github.com/schakelpunt/schakelpunt/fhir"
)

// Patient is the identity a patient token carries: a patient acting for
// themselves on the patient listener (no UZI card). It travels as a value,
// like Principal, and is never taken from anything but a verified token.
type Patient struct {
	BSN     string // the patient's BSN, eleven-check valid
	Issuer  string // the token's iss: who vouched for the BSN
	Subject string // the token's sub, for the audit (may be empty)
}

// String is a short description for logs: the issuer only, never the BSN.
func (p Patient) String() string { return "patient via " + p.Issuer }

// Validate checks that the BSN passes the eleven-check.
func (p Patient) Validate() error {
	if !fhir.ValidBSN(p.BSN) {
		return errors.New("the patient's BSN fails the eleven-check")
	}
	return nil
}

// patientActions are what a patient may do, always scoped to their own
// BSN (ScopeOwnPatient): see which providers registered data (the index),
// who looked at it (the access log) and manage their own consents.
var patientActions = map[Action]string{
	ReadIndex:       "a patient may read the index entries about their own BSN",
	ReadAuditOwn:    "a patient may read the access log about their own BSN",
	ReadConsent:     "a patient may read the consents about their own BSN",
	RecordConsent:   "a patient may record consent about their own BSN",
	WithdrawConsent: "a patient may withdraw consent about their own BSN",
}

// PatientActions lists, in table order, the actions a patient may do.
func PatientActions() []Action {
	var out []Action
	for _, a := range Actions() {
		if _, ok := patientActions[a]; ok {
			out = append(out, a)
		}
	}
	return out
}

// DecidePatient answers whether patient p may do a. A permit always has
// ScopeOwnPatient: the caller must restrict the request to resources about
// p.BSN (and check with RequireOwnPatient what p writes). Medical data,
// the registry, $ihe-pix and the whole access log are never a patient's
// through this listener.
func DecidePatient(p Patient, a Action) Decision {
	if p.Validate() != nil {
		return Decision{Reasons: []string{"no valid patient identity"}}
	}
	if why, ok := patientActions[a]; ok {
		return Decision{Permit: true, Scope: ScopeOwnPatient, Reasons: []string{why}}
	}
	return Decision{Reasons: []string{"a patient may not " + a.Description()}}
}

// RequireOwnPatient permits when bsn, the patient a resource to be written
// is about, is p's own BSN. Its reasons name no BSN.
func RequireOwnPatient(p Patient, bsn string) Decision {
	switch {
	case bsn == "":
		return Decision{Reasons: []string{"the resource names no patient by BSN"}}
	case bsn != p.BSN:
		return Decision{Reasons: []string{"the resource is about another patient than the token's"}}
	}
	return Decision{Permit: true, Scope: ScopeOwnPatient, Reasons: []string{"the resource is about the token's own patient"}}
}
