package routing

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/schakelpunt/schakelpunt/access"
	"github.com/schakelpunt/schakelpunt/audit"
	"github.com/schakelpunt/schakelpunt/fhir"
	"github.com/schakelpunt/schakelpunt/store"
)

// trail is what one request learns about itself on its way through the
// edge: who asks, what the policy said, which patient and resources it
// touched. The audit middleware turns it into the AuditEvent.
type trail struct {
	principal   access.Principal
	patient     *access.Patient // on the patient listener: the token's patient
	identified  bool
	identityErr error
	decision    *access.Decision
	patientBSN  string
	resources   []string
	// byPatient splits resources by the patient each is about, for a
	// search whose results are about several patients: each gets an
	// event of their own (see notePatientOfResults).
	byPatient   []patientPart
	category    string
	sources     []audit.Source
	description string
	// recorded is set when the AuditEvent was stored before a streamed
	// answer; realWriter is the unheld writer for such answers.
	recorded   bool
	realWriter gin.ResponseWriter
	// early, when set, gives the verdict of the AuditEvent whose write
	// began before the handler was done (see recordEarly); the
	// middleware waits for it instead of recording.
	early <-chan error
	// expected ends the recorder's count of this request (see expecter);
	// nil when the recorder does not count.
	expected func()
}

const keyTrail = "trail"

func trailOf(c *gin.Context) *trail {
	if v, ok := c.Get(keyTrail); ok {
		return v.(*trail)
	}
	t := &trail{}
	c.Set(keyTrail, t)
	return t
}

// identify reads the UZI identity of the client certificate. Identity
// comes from the certificate only, never from a header.
func (s *server) identify(c *gin.Context) {
	t := trailOf(c)
	p, err := access.PrincipalFromTLS(c.Request.TLS)
	if err != nil {
		t.identityErr = err
	} else {
		t.principal, t.identified = p, true
	}
	c.Next()
}

// authorize asks the policy whether the principal may do action; a
// denial answers 403 and stops the request. For the access log, a
// principal that may read everything gets ReadAuditAll.
func (s *server) authorize(action access.Action) gin.HandlerFunc {
	if s.patients != nil {
		return s.authorizePatient(action)
	}
	return func(c *gin.Context) {
		t := trailOf(c)
		a := action
		if a == access.ReadAuditOwn && s.policy.Decide(t.principal, access.ReadAuditAll).Permit {
			a = access.ReadAuditAll
		}
		d := s.policy.Decide(t.principal, a)
		t.decision = &d
		if !d.Permit {
			if !t.identified && a != access.ReadMetadata {
				s.fail(c, fhir.Errorf(fhir.KindForbidden, "security", "no valid UZI identity in the client certificate").Wrap(t.identityErr))
			} else {
				s.fail(c, d.Err())
			}
			c.Abort()
			return
		}
		c.Next()
	}
}

// decisionOf returns the request's policy decision.
func decisionOf(c *gin.Context) access.Decision {
	if d := trailOf(c).decision; d != nil {
		return *d
	}
	return access.Decision{}
}

// scopeClauses narrows a search to what the decision's scope allows.
func scopeClauses(c *gin.Context, typ string) []fhir.Clause {
	t := trailOf(c)
	switch decisionOf(c).Scope {
	case access.ScopeOwnOrganisation:
		return []fhir.Clause{{Param: "organization", Strings: []string{fhir.TermRefIdentifier("organization", fhir.SystemURA, t.principal.URA)}}}
	case access.ScopeOwnEvents:
		sys, _ := agentSystem(t.principal)
		return []fhir.Clause{{Param: "agent", Strings: []string{fhir.TermRefIdentifier("agent", sys, t.principal.UZINumber)}}}
	case access.ScopeOwnPatient:
		if t.patient == nil {
			return patientClauses(typ, "")
		}
		return patientClauses(typ, t.patient.BSN)
	}
	return nil
}

func agentSystem(p access.Principal) (string, bool) {
	if p.CardType == access.CardServer {
		return fhir.SystemUZISystem, true
	}
	return fhir.SystemUZIPerson, true
}

// inScope reports whether a stored resource is within the decision's
// scope (its own organisation's, or the principal's own events). Resources
// out of scope are answered as not found: a requester does not learn that
// they exist.
func inScope(c *gin.Context, r store.Resource) bool {
	if r.Deleted || len(scopeClauses(c, r.Type)) == 0 {
		return true
	}
	return inScopeTerms(c, r.Type, termsOf(r.Type, r.Body))
}

// inScopeAt is inScope that also judges a deletion marker: by the last
// version with content before it, so that a requester learns nothing of
// a deleted resource outside their scope, not even that it existed.
func (s *server) inScopeAt(c *gin.Context, r store.Resource) bool {
	if !r.Deleted || len(scopeClauses(c, r.Type)) == 0 {
		return inScope(c, r)
	}
	for v := r.Version - 1; v > 0; v-- {
		prev, err := s.store.VRead(c.Request.Context(), r.Type, r.ID, v)
		if err != nil && !errors.Is(err, store.ErrGone) {
			return false
		}
		if !prev.Deleted && len(prev.Body) > 0 {
			return inScope(c, prev)
		}
	}
	return false
}

// inScopeTerms is inScope for a resource whose terms are at hand.
func inScopeTerms(c *gin.Context, typ string, terms fhir.Terms) bool {
	clauses := scopeClauses(c, typ)
	return len(clauses) == 0 || store.Matches(clauses, terms)
}

func termsOf(typ string, body []byte) fhir.Terms {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var doc map[string]any
	if dec.Decode(&doc) != nil {
		return fhir.Terms{}
	}
	return fhir.ExtractTerms(typ, doc)
}

// ownOrganisation checks that a resource to be written names the
// principal's own organisation (Patient.managingOrganization,
// Consent.organization) when the decision's scope requires it.
func ownOrganisation(c *gin.Context, typ string, terms fhir.Terms) error {
	if decisionOf(c).Scope != access.ScopeOwnOrganisation {
		return nil
	}
	t := trailOf(c)
	want := fhir.TermRefIdentifier("organization", fhir.SystemURA, t.principal.URA)
	for _, s := range terms.Strings {
		if s == want {
			return nil
		}
	}
	d := access.RequireOwnOrganisation(t.principal, organisationOf(terms))
	t.decision = &d
	expr := typ + ".organization"
	if typ == "Patient" {
		expr = "Patient.managingOrganization"
	}
	return d.Err().(*fhir.Error).At(expr)
}

// organisationOf is the first URA a resource's organization terms name.
func organisationOf(terms fhir.Terms) string {
	prefix := fhir.TermRefIdentifier("organization", fhir.SystemURA, "")
	for _, s := range terms.Strings {
		if strings.HasPrefix(s, prefix) {
			return strings.TrimPrefix(s, prefix)
		}
	}
	return ""
}

// notePatient records the BSN a resource is about, for the AuditEvent.
// A patient's own requests are always about their own BSN: another BSN
// they name must not appear in (and so be readable from) the log.
func notePatient(c *gin.Context, typ string, terms fhir.Terms) {
	if trailOf(c).patient != nil {
		return
	}
	if bsn := patientOf(typ, terms); bsn != "" {
		trailOf(c).patientBSN = bsn
	}
}

// patientOf is the BSN a resource with these index terms is about: a
// Patient's identifier, another type's patient reference; "" for none.
func patientOf(typ string, terms fhir.Terms) string {
	var prefix string
	if typ == "Patient" {
		prefix = fhir.TermSystemCode("identifier", fhir.SystemBSN, "")
	} else {
		prefix = fhir.TermRefIdentifier("patient", fhir.SystemBSN, "")
	}
	for _, s := range terms.Strings {
		if bsn, ok := strings.CutPrefix(s, prefix); ok {
			return bsn
		}
	}
	return ""
}

// notePatientOfResults records, for a search that named no BSN (by _id,
// a later page, an organisation's consents, a supervisor's search), the
// patients its results are about, so that each finds the access in their
// log as they would a read. Results about one patient make one event
// about them. Results about several make one event per patient, each
// naming only that patient's resources, as IHE BALP does for a query
// about several patients, and one about nobody for the resources about
// no patient, if any. A patient's own requests and anonymous ones are not
// split (see notePatient and notePatientInQuery), nor is a read of the
// log about several patients: an analyst paging through the log would
// add an event for each one read, and the next reading would find those
// too. It is one event about nobody, as an export is.
func notePatientOfResults(c *gin.Context, rs []store.Resource) {
	t := trailOf(c)
	if t.patient != nil || t.patientBSN != "" || !t.identified {
		return
	}
	var (
		parts []patientPart
		none  = patientPart{} // the resources about no patient
		at    = map[string]int{}
		log   bool
	)
	for _, r := range rs {
		log = log || r.Type == "AuditEvent"
		bsn := patientOf(r.Type, termsOf(r.Type, r.Body))
		if bsn == "" {
			none.resources = append(none.resources, resourceRef(r))
			continue
		}
		i, ok := at[bsn]
		if !ok {
			i, at[bsn] = len(parts), len(parts)
			parts = append(parts, patientPart{bsn: bsn})
		}
		parts[i].resources = append(parts[i].resources, resourceRef(r))
	}
	switch {
	case len(parts) == 1:
		t.patientBSN = parts[0].bsn
	case len(parts) > 1 && !log:
		if len(none.resources) > 0 {
			parts = append(parts, none)
		}
		t.byPatient = parts
	}
}

// patientPart is the resources of a search about one patient ("" none).
type patientPart struct {
	bsn       string
	resources []string
}

// notePatientInQuery records a BSN named in search parameters, for the
// AuditEvent. Only an identified requester's query is trusted to name
// the patient: an anonymous request could otherwise write events into
// anyone's access log.
func notePatientInQuery(c *gin.Context, params []fhir.Param) {
	if t := trailOf(c); t.patient != nil || !t.identified {
		return
	}
	if bsns := bsnsIn(params); len(bsns) > 0 {
		trailOf(c).patientBSN = bsns[0]
	}
}

// bsnsIn lists the distinct BSNs search parameters name.
func bsnsIn(params []fhir.Param) []string {
	var out []string
	for _, p := range params {
		for _, v := range strings.Split(p.Value, ",") {
			if bsn, ok := strings.CutPrefix(v, fhir.SystemBSN+"|"); ok && !slices.Contains(out, bsn) {
				out = append(out, bsn)
			}
		}
	}
	return out
}

// errSeveralPatients refuses a search that names more than one patient:
// each patient's access log must show every search about them, and each
// of their AuditEvents records the query as sent, which would show them
// the other patients' BSNs.
var errSeveralPatients = fhir.Errorf(fhir.KindInvalid, "not-supported", "a search may name one patient (BSN) at most: search once per patient")

// agentOf is the AuditEvent agent of the request.
func agentOf(c *gin.Context) *audit.Agent {
	t := trailOf(c)
	if !t.identified {
		return &audit.Agent{Address: clientIP(c.Request)}
	}
	if t.patient != nil {
		return &audit.Agent{BSN: t.patient.BSN, Address: clientIP(c.Request)}
	}
	p := t.principal
	return &audit.Agent{UZINumber: p.UZINumber, CardType: string(p.CardType), Role: p.Role, URA: p.URA, AGB: p.AGB, Name: p.Subject, Address: clientIP(c.Request)}
}

func clientIP(r *http.Request) string {
	host := r.RemoteAddr
	if i := strings.LastIndex(host, ":"); i >= 0 {
		host = host[:i]
	}
	return strings.Trim(host, "[]")
}
