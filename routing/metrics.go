package routing

import (
	"context"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/schakelpunt/schakelpunt/store"
)

// Metrics are the Prometheus collectors of the edge and the store.
type Metrics struct {
	requests     *prometheus.CounterVec
	latency      *prometheus.HistogramVec
	storeLatency *prometheus.HistogramVec
	// Handshakes counts refused TLS handshakes by reason.
	Handshakes *prometheus.CounterVec
}

// NewMetrics registers the collectors with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "schakelpunt_http_requests_total",
			Help: "FHIR requests by interaction and status.",
		}, []string{"interaction", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "schakelpunt_http_request_duration_seconds",
			Help:    "FHIR request latency by interaction and status.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"interaction", "status"}),
		storeLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "schakelpunt_store_duration_seconds",
			Help:    "Store operation latency by operation and result.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}, []string{"op", "result"}),
		Handshakes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "schakelpunt_tls_handshake_refused_total",
			Help: "TLS handshakes refused on the public listener, by reason.",
		}, []string{"reason"}),
	}
	reg.MustRegister(m.requests, m.latency, m.storeLatency, m.Handshakes)
	return m
}

func (m *Metrics) observe(c *gin.Context) {
	start := time.Now()
	c.Next()
	interaction, _ := c.Get(keyInteraction)
	name, _ := interaction.(string)
	if name == "" {
		name = "unknown"
	}
	status := strconv.Itoa(c.Writer.Status())
	m.requests.WithLabelValues(name, status).Inc()
	m.latency.WithLabelValues(name, status).Observe(time.Since(start).Seconds())
}

// InstrumentStore wraps a store so that every operation's latency is
// observed.
func (m *Metrics) InstrumentStore(s store.Store) store.Store {
	return &timedStore{Store: s, h: m.storeLatency}
}

type timedStore struct {
	store.Store
	h *prometheus.HistogramVec
}

func (t *timedStore) obs(op string, start time.Time, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	t.h.WithLabelValues(op, result).Observe(time.Since(start).Seconds())
}

func (t *timedStore) Read(ctx context.Context, typ, id string) (r store.Resource, err error) {
	start := time.Now()
	defer func() { t.obs("read", start, err) }()
	return t.Store.Read(ctx, typ, id)
}

func (t *timedStore) VRead(ctx context.Context, typ, id string, v int64) (r store.Resource, err error) {
	start := time.Now()
	defer func() { t.obs("vread", start, err) }()
	return t.Store.VRead(ctx, typ, id, v)
}

func (t *timedStore) Create(ctx context.Context, w store.Write) (r store.Resource, err error) {
	start := time.Now()
	defer func() { t.obs("create", start, err) }()
	return t.Store.Create(ctx, w)
}

func (t *timedStore) Update(ctx context.Context, w store.Write, ifMatch int64) (r store.Resource, err error) {
	start := time.Now()
	defer func() { t.obs("update", start, err) }()
	return t.Store.Update(ctx, w, ifMatch)
}

func (t *timedStore) Delete(ctx context.Context, typ, id string, ifMatch int64) (r store.Resource, err error) {
	start := time.Now()
	defer func() { t.obs("delete", start, err) }()
	return t.Store.Delete(ctx, typ, id, ifMatch)
}

func (t *timedStore) History(ctx context.Context, q store.HistoryQuery) (r []store.Resource, err error) {
	start := time.Now()
	defer func() { t.obs("history", start, err) }()
	return t.Store.History(ctx, q)
}

func (t *timedStore) Search(ctx context.Context, q store.Query) (p store.Page, err error) {
	start := time.Now()
	defer func() { t.obs("search", start, err) }()
	return t.Store.Search(ctx, q)
}

func (t *timedStore) Count(ctx context.Context, q store.Query) (n int, err error) {
	start := time.Now()
	defer func() { t.obs("count", start, err) }()
	return t.Store.Count(ctx, q)
}
