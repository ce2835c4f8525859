package federation_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/schakelpunt/schakelpunt/federation"
)

// outcomes runs a medication query for testBSN and returns each source's
// outcome in the audit record, by URA.
func outcomes(t *testing.T, e *federation.Engine) map[string]string {
	t.Helper()
	res, err := e.MedicationDispenses(context.Background(), gp, testBSN, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, s := range res.Sources {
		m[s.URA] = s.Outcome
	}
	return m
}

func without(sources []federation.Source, ura string) []federation.Source {
	return slices.DeleteFunc(slices.Clone(sources), func(s federation.Source) bool { return s.URA == ura })
}

// TestSetRegistry: a source removed from the registry is no longer asked,
// one added is, and a source that stays keeps its circuit breaker.
func TestSetRegistry(t *testing.T) {
	t.Parallel()
	var kruisHits atomic.Int32
	failing := func(http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			kruisHits.Add(1)
			http.Error(w, "down", 503)
		})
	}
	e := mustEnv(t, envOptions{consents: []string{consent("")}, wrap: map[string]func(http.Handler) http.Handler{uraKruis: failing},
		config: func(c *federation.Config) { c.BreakerFailures = 1; c.BreakerCooldown = time.Hour }})
	all := e.engine.Registry()
	if got := outcomes(t, e.engine); got[uraBrug] != "ok" || !strings.HasPrefix(got[uraKruis], "error status") {
		t.Fatalf("before: %v", got)
	}

	e.engine.SetRegistry(without(all, uraBrug))
	got := outcomes(t, e.engine)
	if _, asked := got[uraBrug]; asked {
		t.Errorf("a removed source was asked: %v", got)
	}
	if !strings.HasPrefix(got[uraKruis], "circuit open") || kruisHits.Load() != 1 {
		t.Errorf("a source that stayed lost its open breaker: %v, %d hits", got, kruisHits.Load())
	}
	if n := len(e.engine.Registry()); n != len(all)-1 {
		t.Errorf("registry has %d sources, want %d", n, len(all)-1)
	}

	e.engine.SetRegistry(all)
	if got := outcomes(t, e.engine); got[uraBrug] != "ok" {
		t.Errorf("a source added again was not asked: %v", got)
	}

	// A source whose base URL changed is a new source: a closed breaker.
	moved := slices.Clone(all)
	for i := range moved {
		if moved[i].URA == uraKruis {
			moved[i].BaseURL = strings.Replace(moved[i].BaseURL, "127.0.0.1", "localhost", 1)
		}
	}
	e.engine.SetRegistry(moved)
	if got := outcomes(t, e.engine); !strings.HasPrefix(got[uraKruis], "error status") || kruisHits.Load() != 2 {
		t.Errorf("a moved source kept the old breaker: %v, %d hits", got, kruisHits.Load())
	}
}

// TestSetRegistryInFlight: a query that started before a swap finishes
// with the registry it started with.
func TestSetRegistryInFlight(t *testing.T) {
	t.Parallel()
	arrived, release := make(chan struct{}, 1), make(chan struct{})
	hold := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case arrived <- struct{}{}:
			default:
			}
			<-release
			h.ServeHTTP(w, r)
		})
	}
	e := mustEnv(t, envOptions{consents: []string{consent("")}, wrap: map[string]func(http.Handler) http.Handler{uraBrug: hold}})
	all := e.engine.Registry()
	done := make(chan map[string]string, 1)
	go func() { done <- outcomes(t, e.engine) }()
	<-arrived
	e.engine.SetRegistry(without(all, uraBrug))
	close(release)
	if got := <-done; got[uraBrug] != "ok" || got[uraKruis] != "ok" {
		t.Errorf("the query in flight: %v, want both sources ok", got)
	}
	if got := outcomes(t, e.engine); got[uraBrug] != "" || got[uraKruis] != "ok" {
		t.Errorf("the next query: %v, want only Het Kruis", got)
	}
}
