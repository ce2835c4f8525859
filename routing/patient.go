package routing

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/schakelpunt/schakelpunt/access"
	"github.com/schakelpunt/schakelpunt/fhir"
	"github.com/schakelpunt/schakelpunt/store"
)

// PatientVerifier checks a patient's bearer token; declared here, where
// it is used (patienttoken.Verifier implements it).
type PatientVerifier interface {
	Verify(ctx context.Context, token string) (access.Patient, error)
}

// PatientConfig wires the patient listener's handler: the patient's own
// FHIR API at /fhir/R4 and the portal at /portal.
type PatientConfig struct {
	Store     store.Store
	Codec     *fhir.Codec
	Logger    *slog.Logger
	Metrics   *Metrics
	Audit     AuditRecorder
	Validator Validator
	Verifier  PatientVerifier
	// Portal names the source organisations and the categories they
	// provide, for the portal's pages.
	Portal PortalConfig
	// Throttle bounds each client address's requests (Rate 0: none).
	Throttle Throttle
	// MaxBody limits request bodies (default 1 MiB).
	MaxBody    int64
	PublicBase string
	Now        func() time.Time
	NewID      func() string
}

// bearerRealm is the realm of the WWW-Authenticate challenge.
const bearerRealm = `Bearer realm="schakelpunt-patient"`

// NewPatient builds the patient listener's handler. A patient is
// identified by a bearer token only (no client certificate) and can see
// and change only data about their own BSN: every route runs with the
// scope access.ScopeOwnPatient, which narrows searches to that BSN,
// answers another BSN's resources as not found and refuses writes about
// another BSN. Every request is audited as on the public listener, with
// the patient as the agent.
func NewPatient(cfg PatientConfig) (http.Handler, error) {
	if cfg.Store == nil || cfg.Codec == nil || cfg.Logger == nil || cfg.Metrics == nil || cfg.Audit == nil || cfg.Validator == nil || cfg.Verifier == nil {
		return nil, errors.New("routing: Store, Codec, Logger, Metrics, Audit, Validator and Verifier are required")
	}
	s := &server{
		store: cfg.Store, codec: cfg.Codec, log: cfg.Logger, metrics: cfg.Metrics, audit: cfg.Audit,
		validator: cfg.Validator, maxBody: cfg.MaxBody, base: strings.TrimSuffix(cfg.PublicBase, "/"),
		now: cfg.Now, newID: cfg.NewID, condLocks: newKeyedMutex(), patients: cfg.Verifier,
	}
	s.setDefaults()
	if cfg.Throttle.Rate > 0 {
		s.throttle = newThrottle(cfg.Throttle, s.now, s.log)
	}
	e := s.engine() // identified per group: the FHIR API by bearer token, the portal by its cookie
	api := e.Group(BasePath, s.identifyBearer, s.negotiate)
	api.GET("/_page/:token", s.named("page", s.nextPage))
	for _, rt := range s.patientRoutes() {
		api.Handle(rt.method, rt.path, s.named(rt.name, s.withAction(rt.action)), s.authorize(rt.action), rt.handler)
	}
	if err := s.portalRoutes(e, cfg.Portal); err != nil {
		return nil, err
	}
	return e, nil
}

// patientRoutes are the patient's FHIR API: their index entries (read
// only), their access log (read only) and their consents.
func (s *server) patientRoutes() []route {
	return []route{
		{http.MethodGet, "/Patient", "search-type", access.ReadIndex, s.search("Patient")},
		{http.MethodPost, "/Patient/_search", "search-type", access.ReadIndex, s.search("Patient")},
		{http.MethodGet, "/Patient/:id", "read", access.ReadIndex, s.read("Patient")},
		{http.MethodGet, "/Patient/:id/_history/:vid", "vread", access.ReadIndex, s.vread("Patient")},
		{http.MethodGet, "/AuditEvent", "search-type", access.ReadAuditOwn, s.search("AuditEvent")},
		{http.MethodPost, "/AuditEvent/_search", "search-type", access.ReadAuditOwn, s.search("AuditEvent")},
		{http.MethodGet, "/AuditEvent/:id", "read", access.ReadAuditOwn, s.read("AuditEvent")},
		{http.MethodGet, "/Consent", "search-type", access.ReadConsent, s.search("Consent")},
		{http.MethodPost, "/Consent/_search", "search-type", access.ReadConsent, s.search("Consent")},
		{http.MethodGet, "/Consent/:id", "read", access.ReadConsent, s.read("Consent")},
		{http.MethodGet, "/Consent/:id/_history/:vid", "vread", access.ReadConsent, s.vread("Consent")},
		{http.MethodGet, "/Consent/:id/_history", "history-instance", access.ReadConsent, s.history("Consent", true)},
		{http.MethodPost, "/Consent", "create", access.RecordConsent, s.create("Consent")},
		{http.MethodPut, "/Consent/:id", "update", access.RecordConsent, s.update("Consent")},
		{http.MethodDelete, "/Consent/:id", "delete", access.WithdrawConsent, s.delete("Consent")},
	}
}

// identifyBearer reads the patient's bearer token (Authorization:
// Bearer). Nothing else identifies a patient on the FHIR API: not a
// cookie (that is the portal's, with its CSRF protection), not a query
// parameter.
func (s *server) identifyBearer(c *gin.Context) {
	t := trailOf(c)
	h := c.GetHeader("Authorization")
	scheme, token, _ := strings.Cut(h, " ")
	switch {
	case h == "":
		t.identityErr = fhir.Errorf(fhir.KindUnauthorized, "login", "a bearer token is required (Authorization: Bearer <token>)")
	case !strings.EqualFold(scheme, "Bearer"):
		t.identityErr = fhir.Errorf(fhir.KindUnauthorized, "login", "only bearer tokens are accepted (Authorization: Bearer <token>)")
	default:
		s.identifyPatient(c, token)
	}
	c.Next()
}

// identifyPatient verifies token and, when valid, makes its patient the
// request's identity: the agent of the AuditEvent and its patient.
func (s *server) identifyPatient(c *gin.Context, token string) bool {
	t := trailOf(c)
	p, err := s.patients.Verify(c.Request.Context(), token)
	if err != nil {
		t.identityErr = err
		return false
	}
	t.patient, t.identified = &p, true
	t.patientBSN = p.BSN
	return true
}

// authorizePatient is authorize on the patient listener: 401 with a
// Bearer challenge without a valid token, else the patient decision,
// whose scope (own BSN) the handlers then enforce.
func (s *server) authorizePatient(action access.Action) gin.HandlerFunc {
	return func(c *gin.Context) {
		t := trailOf(c)
		if t.patient == nil {
			challenge := bearerRealm
			if fhir.AsError(t.identityErr).Issues != nil && fhir.AsError(t.identityErr).Issues[0].Code != "login" {
				challenge += `, error="invalid_token"`
			}
			c.Header("WWW-Authenticate", challenge)
			err := t.identityErr
			if err == nil {
				err = fhir.Errorf(fhir.KindUnauthorized, "login", "a bearer token is required")
			}
			s.fail(c, err)
			c.Abort()
			return
		}
		d := access.DecidePatient(*t.patient, action)
		t.decision = &d
		if !d.Permit {
			s.fail(c, d.Err())
			c.Abort()
			return
		}
		c.Next()
	}
}

// patientClauses narrow a search to the resources about bsn: index
// entries by identifier, consents by patient, AuditEvents by patient (the
// patient as the subject of the event or as its agent).
func patientClauses(typ, bsn string) []fhir.Clause {
	switch typ {
	case "Patient":
		return []fhir.Clause{{Param: "identifier", Strings: []string{fhir.TermSystemCode("identifier", fhir.SystemBSN, bsn)}}}
	case "Consent", "AuditEvent":
		return []fhir.Clause{{Param: "patient", Strings: []string{fhir.TermRefIdentifier("patient", fhir.SystemBSN, bsn)}}}
	}
	// A type a patient has no business with matches nothing.
	return []fhir.Clause{{Param: "_id", Strings: []string{"\x00no-patient-scope-for-" + typ}}}
}

// ownPatient checks that a resource a patient writes is about their own
// BSN (Consent.patient) and, when it names a performer (who gave or
// recorded the consent), that the performer is the patient themself, by
// BSN: a patient cannot record a consent in a provider's or another
// person's name. Consent.organization is the provider the consent is
// about (any URA; as the latest consent of that organisation it replaces
// its earlier ones, see access.DecideConsent).
func ownPatient(c *gin.Context, typ string, terms fhir.Terms, doc map[string]any) error {
	t := trailOf(c)
	if decisionOf(c).Scope != access.ScopeOwnPatient || t.patient == nil {
		return nil
	}
	want := patientClauses(typ, t.patient.BSN)
	if store.Matches(want, terms) {
		if !performersArePatient(doc, t.patient.BSN) {
			d := access.Decision{Reasons: []string{"a patient may name only themself (by BSN) as performer"}}
			t.decision = &d
			return d.Err().(*fhir.Error).At(typ + ".performer")
		}
		return nil
	}
	d := access.RequireOwnPatient(*t.patient, "")
	if bsnIn(typ, terms) != "" {
		d = access.RequireOwnPatient(*t.patient, bsnIn(typ, terms))
	}
	t.decision = &d
	return d.Err().(*fhir.Error).At(typ + ".patient")
}

// performersArePatient reports whether every Consent.performer is a
// reference by identifier to bsn.
func performersArePatient(doc map[string]any, bsn string) bool {
	list, _ := doc["performer"].([]any)
	for _, p := range list {
		ref, _ := p.(map[string]any)
		ident, _ := ref["identifier"].(map[string]any)
		if ident["system"] != fhir.SystemBSN || ident["value"] != bsn || (ref["reference"] != nil && ref["reference"] != "") {
			return false
		}
	}
	return true
}

// shown is a stored resource as this listener shows it: as stored, except
// that on the patient listener an AuditEvent loses the query its request
// carried (entity.query). A professional's query may name other patients
// (identifier=…|A,…|B is logged as about A); the patient learns who looked
// and at what kind of data, not another patient's BSN.
func (s *server) shown(r store.Resource) []byte {
	if s.patients == nil || r.Type != "AuditEvent" {
		return r.Body
	}
	var doc map[string]json.RawMessage
	if json.Unmarshal(r.Body, &doc) != nil {
		return r.Body
	}
	var entities []map[string]json.RawMessage
	if json.Unmarshal(doc["entity"], &entities) != nil {
		return r.Body
	}
	for _, e := range entities {
		delete(e, "query")
	}
	var err error
	if doc["entity"], err = json.Marshal(entities); err != nil {
		return r.Body
	}
	out, err := json.Marshal(doc)
	if err != nil {
		return r.Body
	}
	return out
}

// bsnIn is the first BSN a resource's patient terms name.
func bsnIn(typ string, terms fhir.Terms) string {
	prefix := fhir.TermRefIdentifier("patient", fhir.SystemBSN, "")
	if typ == "Patient" {
		prefix = fhir.TermSystemCode("identifier", fhir.SystemBSN, "")
	}
	for _, s := range terms.Strings {
		if v, ok := strings.CutPrefix(s, prefix); ok {
			return v
		}
	}
	return ""
}
