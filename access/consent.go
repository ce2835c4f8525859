package access

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/schakelpunt/schakelpunt/fhir"
)

// ErrInvalidConsent is wrapped by ParseConsent for a Consent it cannot
// read. A caller that meets one among a patient's consents must deny: it
// cannot know what the unreadable consent withdraws or excludes.
var ErrInvalidConsent = errors.New("invalid consent")

// ConsentStatus is Consent.status.
type ConsentStatus string

// The Consent statuses of FHIR R4. Only active permits anything.
const (
	ConsentDraft          ConsentStatus = "draft"
	ConsentProposed       ConsentStatus = "proposed"
	ConsentActive         ConsentStatus = "active"
	ConsentRejected       ConsentStatus = "rejected"
	ConsentInactive       ConsentStatus = "inactive"
	ConsentEnteredInError ConsentStatus = "entered-in-error"
)

// ConsentStatuses lists the statuses in the order of the FHIR value set.
func ConsentStatuses() []ConsentStatus {
	return []ConsentStatus{ConsentDraft, ConsentProposed, ConsentActive, ConsentRejected, ConsentInactive, ConsentEnteredInError}
}

// decides reports whether a consent of status s is a decision of the
// patient that replaces the earlier consents of its organisation: active,
// inactive (withdrawn) and rejected are; draft, proposed and
// entered-in-error are not (not yet decided, or never valid). An unknown
// status decides, so that it withdraws.
func (s ConsentStatus) decides() bool {
	switch s {
	case ConsentDraft, ConsentProposed, ConsentEnteredInError:
		return false
	}
	return true
}

// ProvisionType is Consent.provision.type.
type ProvisionType string

// The provision types. Any other value is read as deny.
const (
	ProvisionPermit ProvisionType = "permit"
	ProvisionDeny   ProvisionType = "deny"
)

// Coding is a code of provision.code: a data category. Data categories
// are LOINC codes (fhir.SystemLOINC with fhir.CategoryMedication or
// fhir.CategoryGPSummary). A coding of another system, or an empty one, is
// a category the decision cannot read.
type Coding struct {
	System string
	Code   string
}

// Period is the time a provision applies: from Start (inclusive) to End
// (exclusive, the first instant after the period). A zero Start or End is
// open. ParseConsent turns a FHIR end into the end of its precision: an
// end of "2027-11-22" becomes 2027-11-23T00:00:00 in its zone.
type Period struct {
	Start time.Time
	End   time.Time
}

// Covers reports whether t lies in the period.
func (p Period) Covers(t time.Time) bool {
	return (p.Start.IsZero() || !t.Before(p.Start)) && (p.End.IsZero() || t.Before(p.End))
}

// Provision is a Consent.provision, or a nested one, with what the
// decision reads of it. An empty Codes covers every category, an empty
// Custodians any source, an empty Recipients any recipient.
type Provision struct {
	Type       ProvisionType
	Period     Period
	Codes      []Coding // provision.code: the data categories
	Custodians []string // URAs of the actors with role CST: the sources whose data is meant
	Recipients []string // URAs of the actors with role IRCP: the organisations that receive
	Provisions []Provision
}

// Consent is what the consent decision needs of a FHIR Consent. It holds
// no patient identifier: the caller passes the consents of one patient.
type Consent struct {
	ID            string
	Status        ConsentStatus
	DateTime      time.Time // Consent.dateTime, the start of its precision; orders consents of one organisation
	Organizations []string  // URAs of Consent.organization: who recorded the consent
	Provision     Provision
}

// System of the actor roles CST and IRCP.
const systemParticipationType = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"

// The actor roles the decision reads.
const (
	roleCustodian = "CST"
	roleRecipient = "IRCP"
)

// maxProvisionDepth bounds the nesting of provisions ParseConsent accepts.
const maxProvisionDepth = 8

// The JSON shape ParseConsent reads: nothing else of the resource, and
// never the patient.
type (
	jsonConsent struct {
		ResourceType string          `json:"resourceType"`
		ID           string          `json:"id"`
		Status       string          `json:"status"`
		DateTime     string          `json:"dateTime"`
		Organization []jsonReference `json:"organization"`
		Provision    *jsonProvision  `json:"provision"`
	}
	jsonReference struct {
		Identifier *jsonIdentifier `json:"identifier"`
	}
	jsonIdentifier struct {
		System string `json:"system"`
		Value  string `json:"value"`
	}
	jsonProvision struct {
		Type      string                `json:"type"`
		Period    *jsonPeriod           `json:"period"`
		Actor     []jsonActor           `json:"actor"`
		Code      []jsonCodeableConcept `json:"code"`
		Provision []jsonProvision       `json:"provision"`
	}
	jsonPeriod struct {
		Start string `json:"start"`
		End   string `json:"end"`
	}
	jsonActor struct {
		Role      jsonCodeableConcept `json:"role"`
		Reference jsonReference       `json:"reference"`
	}
	jsonCodeableConcept struct {
		Coding []jsonCoding `json:"coding"`
	}
	jsonCoding struct {
		System string `json:"system"`
		Code   string `json:"code"`
	}
)

// ParseConsent reads from a FHIR Consent (JSON) what the consent decision
// needs: id, status, dateTime, the organisations by URA, and the provision
// with its type, period, codes, custodian (CST) and recipient (IRCP)
// actors by URA, and its nested provisions. It is strict where leniency
// could permit more than the patient did: a status or provision type
// outside FHIR's codes, a missing or unreadable dateTime or period, an
// organisation or actor not identified by URA, an actor role other than
// CST or IRCP, and a period whose start is not before its end are refused
// with an error wrapping ErrInvalidConsent (a *fhir.Error of kind
// unprocessable that points at the element). Error texts never repeat an
// identifier from the resource.
//
// Of a provision.code, the LOINC codings are kept; a code without a LOINC
// coding is kept as it is, a category the decision cannot read (a permit
// of it permits nothing we know, a deny of it excludes every category).
func ParseConsent(body []byte) (Consent, error) {
	var j jsonConsent
	if err := json.Unmarshal(body, &j); err != nil {
		var syn *json.SyntaxError
		if errors.As(err, &syn) {
			return Consent{}, invalidConsent("Consent", "structure", "the body is not JSON (offset %d)", syn.Offset)
		}
		var typ *json.UnmarshalTypeError
		if errors.As(err, &typ) && typ.Field != "" {
			return Consent{}, invalidConsent("Consent."+typ.Field, "structure", "an element has the wrong JSON type")
		}
		return Consent{}, invalidConsent("Consent", "structure", "the body is not a JSON object")
	}
	if j.ResourceType != "Consent" {
		return Consent{}, invalidConsent("Consent.resourceType", "invalid", "the resource is not a Consent")
	}
	c := Consent{ID: j.ID, Status: ConsentStatus(j.Status)}
	if !validConsentStatus(c.Status) {
		return Consent{}, invalidConsent("Consent.status", "code-invalid", "status is not a Consent status")
	}
	if j.DateTime == "" {
		return Consent{}, invalidConsent("Consent.dateTime", "required", "a consent needs its dateTime to be ordered")
	}
	dt, ok := fhir.ParseDateRange(j.DateTime)
	if !ok {
		return Consent{}, invalidConsent("Consent.dateTime", "value", "dateTime is not a FHIR dateTime")
	}
	c.DateTime = time.UnixMicro(dt.Lo).UTC()
	if len(j.Organization) == 0 {
		return Consent{}, invalidConsent("Consent.organization", "required", "a consent names the organisation that recorded it")
	}
	for i, o := range j.Organization {
		ura, err := parseURA(o, fmt.Sprintf("Consent.organization[%d]", i))
		if err != nil {
			return Consent{}, err
		}
		c.Organizations = append(c.Organizations, ura)
	}
	if j.Provision == nil {
		return Consent{}, invalidConsent("Consent.provision", "required", "a consent without a provision decides nothing")
	}
	p, err := parseProvision(j.Provision, "Consent.provision", 1)
	if err != nil {
		return Consent{}, err
	}
	c.Provision = p
	return c, nil
}

func parseProvision(j *jsonProvision, path string, depth int) (Provision, error) {
	if depth > maxProvisionDepth {
		return Provision{}, invalidConsent(path, "too-costly", "provisions nest deeper than %d levels", maxProvisionDepth)
	}
	p := Provision{Type: ProvisionType(j.Type)}
	if p.Type != ProvisionPermit && p.Type != ProvisionDeny {
		return Provision{}, invalidConsent(path+".type", "code-invalid", "provision type is not permit or deny")
	}
	if j.Period != nil {
		if j.Period.Start != "" {
			r, ok := fhir.ParseDateRange(j.Period.Start)
			if !ok {
				return Provision{}, invalidConsent(path+".period.start", "value", "period start is not a FHIR dateTime")
			}
			p.Period.Start = time.UnixMicro(r.Lo).UTC()
		}
		if j.Period.End != "" {
			r, ok := fhir.ParseDateRange(j.Period.End)
			if !ok {
				return Provision{}, invalidConsent(path+".period.end", "value", "period end is not a FHIR dateTime")
			}
			p.Period.End = time.UnixMicro(r.Hi).UTC()
		}
		if !p.Period.Start.IsZero() && !p.Period.End.IsZero() && !p.Period.Start.Before(p.Period.End) {
			return Provision{}, invalidConsent(path+".period", "invariant", "period start is after its end")
		}
	}
	for i, a := range j.Actor {
		ap := fmt.Sprintf("%s.actor[%d]", path, i)
		role := ""
		for _, cd := range a.Role.Coding {
			if cd.System != systemParticipationType || (cd.Code != roleCustodian && cd.Code != roleRecipient) {
				continue
			}
			if role != "" && role != cd.Code {
				return Provision{}, invalidConsent(ap+".role", "code-invalid", "an actor is both custodian and recipient")
			}
			role = cd.Code
		}
		if role == "" {
			return Provision{}, invalidConsent(ap+".role", "code-invalid", "an actor's role is CST or IRCP of v3-ParticipationType")
		}
		ura, err := parseURA(a.Reference, ap+".reference")
		if err != nil {
			return Provision{}, err
		}
		if role == roleCustodian {
			p.Custodians = append(p.Custodians, ura)
		} else {
			p.Recipients = append(p.Recipients, ura)
		}
	}
	for _, cc := range j.Code {
		loinc := false
		for _, cd := range cc.Coding {
			if cd.System == fhir.SystemLOINC && cd.Code != "" {
				p.Codes = append(p.Codes, Coding{System: cd.System, Code: cd.Code})
				loinc = true
			}
		}
		if loinc {
			continue
		}
		if len(cc.Coding) == 0 {
			p.Codes = append(p.Codes, Coding{}) // a text-only code: unreadable
		}
		for _, cd := range cc.Coding {
			p.Codes = append(p.Codes, Coding{System: cd.System, Code: cd.Code})
		}
	}
	for i := range j.Provision {
		n, err := parseProvision(&j.Provision[i], fmt.Sprintf("%s.provision[%d]", path, i), depth+1)
		if err != nil {
			return Provision{}, err
		}
		p.Provisions = append(p.Provisions, n)
	}
	return p, nil
}

// parseURA returns the URA a reference identifies.
func parseURA(r jsonReference, path string) (string, error) {
	switch {
	case r.Identifier == nil:
		return "", invalidConsent(path+".identifier", "required", "an organisation is identified by its URA")
	case r.Identifier.System != fhir.SystemURA:
		return "", invalidConsent(path+".identifier.system", "value", "an organisation is identified in the URA naming system")
	case !fhir.ValidURA(r.Identifier.Value):
		return "", invalidConsent(path+".identifier.value", "value", "a URA is eight digits")
	}
	return r.Identifier.Value, nil
}

func validConsentStatus(s ConsentStatus) bool {
	for _, v := range ConsentStatuses() {
		if s == v {
			return true
		}
	}
	return false
}

func invalidConsent(expression, code, format string, args ...any) error {
	text := fmt.Sprintf(format, args...)
	return &fhir.Error{
		Kind:   fhir.KindUnprocessable,
		Issues: []fhir.Issue{{Severity: "error", Code: code, Diagnostics: text, Expression: []string{expression}}},
		Err:    fmt.Errorf("%w: %s", ErrInvalidConsent, strings.TrimSpace(text)),
	}
}
