package federation

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/schakelpunt/schakelpunt/access"
	"github.com/schakelpunt/schakelpunt/access/mtls"
	"github.com/schakelpunt/schakelpunt/audit"
	"github.com/schakelpunt/schakelpunt/fhir"
	"github.com/schakelpunt/schakelpunt/profiles"
	"github.com/schakelpunt/schakelpunt/store"
)

// Data categories a source provides (DESIGN.md section 8).
const (
	CategoryMedication = "medication"
	CategoryGPSummary  = "gp-summary"
)

// Source is a registered source system.
type Source struct {
	URA        string
	Name       string
	BaseURL    string   // its FHIR base, e.g. https://127.0.0.1:9102/fhir/R4
	Categories []string // CategoryMedication, CategoryGPSummary
}

func (s Source) provides(cat string) bool { return slices.Contains(s.Categories, cat) }

// Index is what the engine needs of the store: the index entries
// (Patient) and the patient's Consents.
type Index interface {
	Search(ctx context.Context, q store.Query) (store.Page, error)
}

// Validator checks a resource a source returned (*profiles.Validator is
// one). It returns the issues, and the resource's top-level members as
// fhir.Members splits them when it split them while validating (nil
// otherwise): check reads the resource's identity and sets its
// meta.source from them. memo (nil for none) is the answer's, one per
// goroutine checking it.
type Validator interface {
	ValidateSourceMembers(ctx context.Context, body []byte, memo *profiles.SourceMemo) ([]fhir.Member, []fhir.Issue)
}

// Defaults of Config.
const (
	DefaultPerSourceTimeout = 3 * time.Second
	DefaultDeadline         = 5 * time.Second
	DefaultMaxParallel      = 128
	DefaultMaxResponseBytes = 8 << 20
	DefaultBreakerFailures  = 5
	DefaultBreakerCooldown  = 30 * time.Second
)

// Config configures an Engine. Zero durations and sizes take the defaults.
type Config struct {
	Registry         []Source
	Index            Index
	Policy           *access.Policy
	Validator        Validator
	ClientCert       tls.Certificate     // our client certificate towards sources
	SourceCAs        []*x509.Certificate // the CAs a source's certificate must chain to
	PerSourceTimeout time.Duration
	Deadline         time.Duration // of the whole query
	// MaxParallel bounds the source requests in flight, engine-wide:
	// with MaxResponseBytes, the memory answers can take. Sources answer
	// in tens to hundreds of milliseconds, so a small bound caps the
	// switching point's throughput (16 held it to about five federated
	// queries at once).
	MaxParallel      int
	MaxResponseBytes int64         // per source answer
	BreakerFailures  int           // consecutive failures that open a source's breaker
	BreakerCooldown  time.Duration // how long it stays open before one probe
	Logger           *slog.Logger  // never receives a BSN or medical content
	Now              func() time.Time
}

// Engine runs federated queries. It is safe for concurrent use.
type Engine struct {
	cfg      Config // without Registry: see registry
	client   *http.Client
	sem      chan struct{}
	registry atomic.Pointer[registry] // swapped whole by SetRegistry
	swap     sync.Mutex               // serialises SetRegistry
	reads    *readCache               // nil unless the Index has Generations
}

// registry is one version of the source registry with each source's
// circuit breaker. It is never changed once published: a query takes it
// once, at its start, and keeps it to its end.
type registry struct {
	sources  []Source
	breakers map[string]*breaker // by BaseURL
}

// New returns an Engine for cfg.
func New(cfg Config) (*Engine, error) {
	if cfg.Index == nil || cfg.Policy == nil || cfg.Validator == nil {
		return nil, errors.New("federation: index, policy and validator are required")
	}
	if len(cfg.ClientCert.Certificate) == 0 {
		return nil, errors.New("federation: no client certificate")
	}
	if len(cfg.SourceCAs) == 0 {
		return nil, errors.New("federation: no source CAs")
	}
	if cfg.PerSourceTimeout <= 0 {
		cfg.PerSourceTimeout = DefaultPerSourceTimeout
	}
	if cfg.Deadline <= 0 {
		cfg.Deadline = DefaultDeadline
	}
	if cfg.MaxParallel <= 0 {
		cfg.MaxParallel = DefaultMaxParallel
	}
	if cfg.MaxResponseBytes <= 0 {
		cfg.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if cfg.BreakerFailures <= 0 {
		cfg.BreakerFailures = DefaultBreakerFailures
	}
	if cfg.BreakerCooldown <= 0 {
		cfg.BreakerCooldown = DefaultBreakerCooldown
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	e := &Engine{
		cfg: cfg,
		client: &http.Client{
			Transport: &http.Transport{
				TLSClientConfig:     mtls.NewClientConfig(cfg.ClientCert, cfg.SourceCAs),
				MaxIdleConns:        0, // no total limit: the registry may grow (SetRegistry); per host below
				MaxIdleConnsPerHost: cfg.MaxParallel * 2,
				IdleConnTimeout:     90 * time.Second,
				TLSHandshakeTimeout: cfg.PerSourceTimeout,
			},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		sem:   make(chan struct{}, cfg.MaxParallel),
		reads: newReadCache(cfg.Index),
	}
	e.SetRegistry(cfg.Registry)
	e.cfg.Registry = nil
	return e, nil
}

// SetRegistry replaces the source registry at once (a configuration
// reload). Queries already running finish with the registry they started
// with; the next ones use sources. A source that stays (same base URL)
// keeps its circuit breaker; a new one starts closed. Idle connections
// are dropped, so none is kept to a source no longer registered.
func (e *Engine) SetRegistry(sources []Source) {
	e.swap.Lock()
	defer e.swap.Unlock()
	old := e.registry.Load()
	next := &registry{sources: slices.Clone(sources), breakers: make(map[string]*breaker, len(sources))}
	for _, s := range next.sources {
		if old != nil && old.breakers[s.BaseURL] != nil {
			next.breakers[s.BaseURL] = old.breakers[s.BaseURL]
			continue
		}
		next.breakers[s.BaseURL] = &breaker{threshold: e.cfg.BreakerFailures, cooldown: e.cfg.BreakerCooldown}
	}
	e.registry.Store(next)
	if old != nil {
		e.client.CloseIdleConnections()
	}
}

// Registry returns the sources currently registered.
func (e *Engine) Registry() []Source { return slices.Clone(e.registry.Load().sources) }

// Close releases idle connections to the sources.
func (e *Engine) Close() { e.client.CloseIdleConnections() }

// Result is a federated answer and what the AuditEvent records of it.
type Result struct {
	// Bundle is the merged searchset (nil when access was denied).
	Bundle []byte
	// Count is the number of resources (match entries) in Bundle.
	Count int
	// Sources lists every source the index named for the patient: those
	// asked with their count and outcome, and those the consent excluded
	// (outcome "not asked: ..."). For the audit record only.
	Sources []audit.Source
	// Reasons are the policy and consent decisions' reasons, for the audit
	// record only (they may name sources).
	Reasons []string
	// Permit is whether the requester was allowed to query at all.
	Permit bool
	// Answered is whether at least one asked source answered usefully;
	// false when every one failed (Bundle then holds only outcomes).
	Answered bool
	// Searchset is the merged result of a pageable query (MedicationDispense
	// search) for the caller to page; Bundle is then nil.
	Searchset *Searchset
}

// errNoPermittedSource is the denial when no source may be asked. It is
// the same whether the patient has no sources, no consent, or a consent
// that excludes every source: the requester learns nothing of either.
var errNoPermittedSource = access.Decision{Reasons: []string{"no consent permits this data for this requester"}}.Err()
