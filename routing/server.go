// Package routing is Schakelpunt's HTTP edge: the FHIR routes built from
// the conformance table, content negotiation and limits, and the one place
// where errors become OperationOutcomes with an HTTP status. It is the only
// importer of gin; *gin.Context never leaves it.
package routing

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/schakelpunt/schakelpunt/access"
	"github.com/schakelpunt/schakelpunt/conformance"
	"github.com/schakelpunt/schakelpunt/fhir"
	"github.com/schakelpunt/schakelpunt/profiles"
	"github.com/schakelpunt/schakelpunt/store"
)

// BasePath is where the FHIR API lives (the AORTA-on-FHIR convention).
const BasePath = "/fhir/R4"

// Validator checks resources against the base spec and our profiles;
// declared here, where it is used (profiles.Validator implements it).
type Validator interface {
	// Check parses body and validates it against the base spec and the
	// profile (plus any meta.profile): a *fhir.Error on failure.
	Check(ctx context.Context, body []byte, profileURL string) (*fhir.Resource, error)
	// Validate reports every issue, for $validate.
	Validate(ctx context.Context, body []byte, profileURL string) []fhir.Issue
	// ProfileFor is the profile writes of a type must meet ("" for none).
	ProfileFor(resourceType string) string
	// StructureDefinitions are our profiles, served as resources.
	StructureDefinitions() []profiles.Definition
}

// Config wires the edge.
type Config struct {
	Store   store.Store
	Codec   *fhir.Codec
	Logger  *slog.Logger
	Metrics *Metrics
	// Policy decides who may do what; Audit records every interaction.
	Policy *access.Policy
	Audit  AuditRecorder
	// Federator answers the federated queries (MedicationDispense search,
	// Patient/$summary); without it those routes are absent.
	Federator Federator
	// AuditLog serves $verify and $export; ExportDir holds export files.
	AuditLog  store.AuditLog
	ExportDir string
	// Validator applies our profiles to writes and serves $validate and
	// StructureDefinition.
	Validator Validator
	// MaxBody limits request bodies (default 1 MiB).
	MaxBody int64
	// PublicBase is the absolute base URL for fullUrl and Location; empty:
	// https://<Host>/fhir/R4 from the request.
	PublicBase string
	Software   conformance.Software
	Now        func() time.Time
	NewID      func() string
}

type server struct {
	store     store.Store
	codec     *fhir.Codec
	log       *slog.Logger
	metrics   *Metrics
	policy    *access.Policy
	audit     AuditRecorder
	auditLog  store.AuditLog
	federator Federator
	throttle  *throttle // the patient listener's limit per client address
	exportDir string
	exports   *exportJobs
	validator Validator
	maxBody   int64
	base      string
	software  conformance.Software
	now       func() time.Time
	newID     func() string
	pages     *pageStore
	started   time.Time
	condLocks *keyedMutex
	// patients verifies bearer tokens on the patient listener; nil on the
	// public listener, which never looks at a bearer token.
	patients PatientVerifier
}

const keyInteraction = "interaction"

// setDefaults fills in what a Config may leave out and starts the page
// store: the same for the public and the patient listener.
func (s *server) setDefaults() {
	if s.maxBody <= 0 {
		s.maxBody = 1 << 20
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.newID == nil {
		s.newID = newID
	}
	s.started = s.now()
	s.pages = newPageStore(10*time.Minute, 100_000, heldTTL, maxHeldBytes, s.now)
}

// engine is the gin engine both listeners build on: every request is
// measured, audited (the response is held until its AuditEvent is
// stored), protected against panics, then passed through more (the
// listener's identification, when it applies to every path); unknown
// paths and methods are OperationOutcomes.
func (s *server) engine(more ...gin.HandlerFunc) *gin.Engine {
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	e.HandleMethodNotAllowed = true
	e.RedirectTrailingSlash = false
	e.RedirectFixedPath = false
	chain := []gin.HandlerFunc{s.metrics.observe}
	if s.throttle != nil {
		chain = append(chain, s.throttled(s.throttle)) // before anything is identified or audited
	}
	e.Use(append(append(chain, s.audited, s.recover), more...)...)
	e.NoRoute(s.named("unknown", func(c *gin.Context) {
		s.fail(c, fhir.Errorf(fhir.KindNotFound, "not-supported", "no such resource type or operation: %s", c.Request.URL.Path))
	}))
	e.NoMethod(s.named("unknown", func(c *gin.Context) {
		s.fail(c, fhir.Errorf(fhir.KindNotAllowed, "not-supported", "%s is not supported on %s", c.Request.Method, c.Request.URL.Path))
	}))
	return e
}

// New builds the public FHIR handler.
func New(cfg Config) (http.Handler, error) {
	if cfg.Store == nil || cfg.Codec == nil || cfg.Logger == nil || cfg.Metrics == nil || cfg.Policy == nil || cfg.Audit == nil || cfg.Validator == nil {
		return nil, errors.New("routing: Store, Codec, Logger, Metrics, Policy, Audit and Validator are required")
	}
	s := &server{
		store: cfg.Store, codec: cfg.Codec, log: cfg.Logger, metrics: cfg.Metrics, policy: cfg.Policy, audit: cfg.Audit,
		auditLog: cfg.AuditLog, federator: cfg.Federator, exportDir: cfg.ExportDir, exports: &exportJobs{jobs: map[string]*exportJob{}},
		validator: cfg.Validator, maxBody: cfg.MaxBody, base: strings.TrimSuffix(cfg.PublicBase, "/"),
		software: cfg.Software, now: cfg.Now, newID: cfg.NewID, condLocks: newKeyedMutex(),
	}
	if s.auditLog != nil && s.exportDir == "" {
		return nil, errors.New("routing: an AuditLog needs an ExportDir")
	}
	s.setDefaults()
	e := s.engine(s.identify)
	api := e.Group(BasePath, s.negotiate)
	api.GET("/_page/:token", s.named("page", s.nextPage))
	for _, rt := range s.routes() {
		api.Handle(rt.method, rt.path, s.named(rt.name, s.withAction(rt.action)), s.authorize(rt.action), rt.handler)
	}
	return e, nil
}

// route is one registered route; routes() derives them from the table.
type route struct {
	method, path, name string
	action             access.Action
	handler            gin.HandlerFunc
}

// actions maps each type's read and write interactions to the policy's
// actions.
var actions = map[string]struct{ read, create, update, delete access.Action }{
	"Patient":      {access.ReadIndex, access.RegisterIndex, access.RegisterIndex, access.DeregisterIndex},
	"Consent":      {access.ReadConsent, access.RecordConsent, access.RecordConsent, access.WithdrawConsent},
	"AuditEvent":   {read: access.ReadAuditOwn},
	"Flag":         {read: access.ReadAlerts, update: access.ReviewAlerts},
	"Organization": {read: access.ReadRegistry},
	"Endpoint":     {read: access.ReadRegistry},
}

// routes derives every route from the conformance table.
func (s *server) routes() []route {
	rs := []route{
		{http.MethodGet, "/metadata", "capabilities", access.ReadMetadata, s.capabilities},
	}
	rs = append(rs, s.auditRoutes()...)
	rs = append(rs, s.profileRoutes()...)
	rs = append(rs, s.pixRoutes()...)
	rs = append(rs, s.federatedRoutes()...)
	for _, r := range conformance.Table() {
		t := r.Type
		if t == "StructureDefinition" || t == "MedicationDispense" {
			continue // served from the definitions (profileRoutes) and by federation (federatedRoutes)
		}
		p := "/" + t
		a := actions[t]
		add := func(method, path, name string, action access.Action, h gin.HandlerFunc) {
			rs = append(rs, route{method, path, name, action, h})
		}
		if r.Has(conformance.Create) {
			add(http.MethodPost, p, "create", a.create, s.create(t))
		}
		if r.Has(conformance.SearchType) {
			add(http.MethodGet, p, "search-type", a.read, s.search(t))
			add(http.MethodPost, p+"/_search", "search-type", a.read, s.search(t))
		}
		if r.Has(conformance.Read) {
			add(http.MethodGet, p+"/:id", "read", a.read, s.read(t))
		}
		if r.Has(conformance.VRead) {
			add(http.MethodGet, p+"/:id/_history/:vid", "vread", a.read, s.vread(t))
		}
		if r.Has(conformance.Update) {
			add(http.MethodPut, p+"/:id", "update", a.update, s.update(t))
		}
		if r.ConditionalUpdate {
			add(http.MethodPut, p, "update", a.update, s.conditionalUpdate(t))
		}
		if r.Has(conformance.Delete) {
			add(http.MethodDelete, p+"/:id", "delete", a.delete, s.delete(t))
		}
		if r.ConditionalDelete {
			add(http.MethodDelete, p, "delete", a.delete, s.conditionalDelete(t))
		}
		if r.Has(conformance.HistoryInstance) {
			add(http.MethodGet, p+"/:id/_history", "history-instance", a.read, s.history(t, true))
		}
		if r.Has(conformance.HistoryType) {
			add(http.MethodGet, p+"/_history", "history-type", a.read, s.history(t, false))
		}
	}
	return rs
}

const keyAction = "action"

func (s *server) withAction(a access.Action) gin.HandlerFunc {
	return func(c *gin.Context) { c.Set(keyAction, a) }
}

// routeAction is the policy action of the matched route.
func routeAction(c *gin.Context) access.Action {
	a, _ := c.Get(keyAction)
	action, _ := a.(access.Action)
	return action
}

func (s *server) named(name string, h gin.HandlerFunc) gin.HandlerFunc {
	return func(c *gin.Context) {
		c.Set(keyInteraction, name)
		h(c)
	}
}

// recover turns a panic into a 500 OperationOutcome without details.
func (s *server) recover(c *gin.Context) {
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.log.ErrorContext(c.Request.Context(), "panic in handler", slog.String("route", c.FullPath()), slog.Any("panic", v))
			s.fail(c, fhir.AsError(errors.New("panic")))
			c.Abort()
		}
	}()
	c.Next()
}

// baseURL is the absolute base of this request.
func (s *server) baseURL(c *gin.Context) string {
	if s.base != "" {
		return s.base
	}
	return "https://" + c.Request.Host + BasePath
}

// requester identifies who asks, for binding paging state to them: the
// client certificate's fingerprint, or on the patient listener a digest
// of the patient's BSN.
func requester(c *gin.Context) string {
	if p := trailOf(c).patient; p != nil {
		sum := sha256.Sum256([]byte("patient|" + p.BSN))
		return "patient:" + hex.EncodeToString(sum[:])
	}
	if tls := c.Request.TLS; tls != nil && len(tls.PeerCertificates) > 0 {
		sum := sha256.Sum256(tls.PeerCertificates[0].Raw)
		return hex.EncodeToString(sum[:])
	}
	return "anonymous"
}

func (s *server) capabilities(c *gin.Context) {
	supported := map[string][]string{}
	for _, d := range s.validator.StructureDefinitions() {
		supported[d.Type] = append(supported[d.Type], d.URL+"|"+d.Version)
	}
	body, err := conformance.CapabilityStatement(s.baseURL(c), s.software, s.started, supported)
	if err != nil {
		s.fail(c, err)
		return
	}
	s.write(c, http.StatusOK, body)
}
