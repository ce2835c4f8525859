package routing

import (
	"log/slog"
	"math"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"golang.org/x/time/rate"

	"github.com/schakelpunt/schakelpunt/fhir"
)

// Throttle bounds the requests of each client address on a listener open
// to the internet (the patient listener): Rate a second on average, in
// bursts of up to Burst. A request over the limit gets 429 with an
// OperationOutcome (code throttled) and Retry-After, before it is
// identified or audited: a flood must not fill the access log, and a
// token guessed at thousands of times a second is not guessed at all.
type Throttle struct {
	Rate  float64 // requests a second per address; 0: no limit
	Burst int     // at least 1
}

// Bounds of the throttle's memory: an address unseen for throttleIdle is
// forgotten (its bucket would be full again anyway), and at most
// throttleClients addresses are tracked; beyond that, new addresses
// share one bucket, so that a spread-out flood is still bounded.
const (
	throttleIdle    = 10 * time.Minute
	throttleClients = 100_000
)

// throttle keeps a token bucket per client address.
type throttle struct {
	limit      rate.Limit
	burst      int
	maxClients int // throttleClients (tests lower it)
	now        func() time.Time
	log        *slog.Logger
	mu         sync.Mutex
	clients    map[string]*bucket
	overflow   *bucket
	swept      time.Time
}

type bucket struct {
	lim    *rate.Limiter
	seen   time.Time
	warned time.Time // last log line about this address
}

func newThrottle(cfg Throttle, now func() time.Time, log *slog.Logger) *throttle {
	burst := max(cfg.Burst, 1)
	t := &throttle{limit: rate.Limit(cfg.Rate), burst: burst, maxClients: throttleClients, now: now, log: log, clients: map[string]*bucket{}}
	t.overflow = &bucket{lim: rate.NewLimiter(t.limit, burst)}
	return t
}

// allow takes a token from addr's bucket; when there is none it returns
// false and how long until there is one.
func (t *throttle) allow(addr string) (bool, time.Duration) {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if now.Sub(t.swept) > time.Minute {
		for a, b := range t.clients {
			if now.Sub(b.seen) > throttleIdle {
				delete(t.clients, a)
			}
		}
		t.swept = now
	}
	b := t.clients[addr]
	if b == nil {
		b = t.overflow
		if len(t.clients) < t.maxClients {
			b = &bucket{lim: rate.NewLimiter(t.limit, t.burst)}
			t.clients[addr] = b
		}
	}
	b.seen = now
	if b.lim.AllowN(now, 1) {
		return true, 0
	}
	if now.Sub(b.warned) > time.Minute {
		b.warned = now
		t.log.Warn("client throttled", slog.String("address", addr))
	}
	r := b.lim.ReserveN(now, 1)
	wait := r.DelayFrom(now)
	r.CancelAt(now)
	return false, wait
}

// throttled answers a request over its address's limit with 429.
func (s *server) throttled(t *throttle) gin.HandlerFunc {
	return func(c *gin.Context) {
		addr, _, err := net.SplitHostPort(c.Request.RemoteAddr)
		if err != nil {
			addr = c.Request.RemoteAddr
		}
		ok, wait := t.allow(addr)
		if ok {
			c.Next()
			return
		}
		c.Header("Retry-After", strconv.Itoa(int(math.Ceil(max(wait, time.Second).Seconds()))))
		s.fail(c, fhir.Errorf(fhir.KindTooMany, "throttled", "too many requests from this address: try again later"))
		c.Abort()
	}
}
