package routing

import (
	"io"
	"log/slog"
	"strconv"
	"testing"
	"time"
)

func TestThrottleBuckets(t *testing.T) {
	now := time.Unix(1795000000, 0)
	th := newThrottle(Throttle{Rate: 10, Burst: 2}, func() time.Time { return now }, slog.New(slog.NewTextHandler(io.Discard, nil)))
	steps := []struct {
		name    string
		advance time.Duration
		addr    string
		ok      bool
		wait    time.Duration
	}{
		{"a burst", 0, "192.0.2.1", true, 0},
		{"a burst, second", 0, "192.0.2.1", true, 0},
		{"over the burst: the time to the next token", 0, "192.0.2.1", false, 100 * time.Millisecond},
		{"still none", 50 * time.Millisecond, "192.0.2.1", false, 50 * time.Millisecond},
		{"another address has its own bucket", 0, "192.0.2.2", true, 0},
		{"a token again", 50 * time.Millisecond, "192.0.2.1", true, 0},
		{"and gone", 0, "192.0.2.1", false, 100 * time.Millisecond},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			now = now.Add(s.advance)
			ok, wait := th.allow(s.addr)
			if ok != s.ok || wait != s.wait {
				t.Errorf("allow = %v, %v; want %v, %v", ok, wait, s.ok, s.wait)
			}
		})
	}
	t.Run("idle addresses are forgotten", func(t *testing.T) {
		now = now.Add(throttleIdle + time.Minute)
		th.allow("192.0.2.3")
		if _, kept := th.clients["192.0.2.1"]; kept || len(th.clients) != 1 {
			t.Errorf("after the sweep: %d addresses", len(th.clients))
		}
	})
	t.Run("beyond the tracked addresses, new ones share one bucket", func(t *testing.T) {
		th.maxClients = len(th.clients)
		for i, want := range []bool{true, true, false} { // the shared bucket's burst of 2
			if ok, _ := th.allow("198.51.100." + strconv.Itoa(i)); ok != want {
				t.Errorf("new address %d: allow = %v, want %v", i, ok, want)
			}
		}
		if ok, _ := th.allow("192.0.2.3"); !ok {
			t.Error("a tracked address lost its own bucket")
		}
	})
}

// TestPatientListenerThrottle: a request over the address's limit gets
// 429 with code throttled and Retry-After, and is not audited; the
// requests within it are answered and audited as always.
func TestPatientListenerThrottle(t *testing.T) {
	ph := mustServePatient(t, func(c *PatientConfig) { c.Throttle = Throttle{Rate: 0.001, Burst: 2} })
	before := len(storedEvents(t, ph.harness))
	for i, want := range []int{401, 401, 429} {
		r := ph.asPatient(t, "", "GET", "/Consent", nil)
		if r.status != want {
			t.Fatalf("request %d: %d %s, want %d", i+1, r.status, r.raw, want)
		}
		if want != 429 {
			continue
		}
		if codes := r.issueCodes(); len(codes) != 1 || codes[0] != "throttled" {
			t.Errorf("codes %v", codes)
		}
		if s, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || s < 1 {
			t.Errorf("Retry-After %q", r.header.Get("Retry-After"))
		}
	}
	if n := len(storedEvents(t, ph.harness)) - before; n != 2 {
		t.Errorf("%d AuditEvents for the two answered requests and the throttled one, want 2", n)
	}
}
