package detect_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/schakelpunt/schakelpunt/audit"
	"github.com/schakelpunt/schakelpunt/audit/detect"
	"github.com/schakelpunt/schakelpunt/fhir"
)

// syntheticTraffic is n query events of a busy day: 2,000 professionals
// in 300 organisations asking about 50,000 patients, one in ten denied,
// one event a millisecond from 08:00, all rules' keys in play.
func syntheticTraffic(n int) []audit.Event {
	rng := rand.New(rand.NewPCG(8, 8))
	evs := make([]audit.Event, n)
	start := time.Date(2026, 11, 10, 8, 0, 0, 0, ams)
	for i := range evs {
		prof := rng.IntN(2000)
		permit := rng.IntN(10) != 0
		status := 200
		if !permit {
			status = 403
		}
		cat := fhir.CategoryMedication
		if rng.IntN(4) == 0 {
			cat = fhir.CategoryGPSummary
		}
		evs[i] = audit.Event{
			ID: fmt.Sprintf("%016x", i), Recorded: start.Add(time.Duration(i) * time.Millisecond), Interaction: "search-type",
			Status: status, Permit: &permit, PatientBSN: fmt.Sprintf("%09d", 100_000_000+rng.IntN(50_000)), Category: cat,
			Agent: &audit.Agent{UZINumber: fmt.Sprint(10_000_000 + prof), CardType: "Z", Role: "01.015", URA: fmt.Sprint(90_000_000 + prof%300), Address: "127.0.0.1"},
		}
	}
	return evs
}

// noRelations answers from memory: nobody registered anyone, no earlier
// contact. Every first contact of a pair is asked, as it would be of the
// store.
type noRelations struct{}

func (noRelations) Registered(context.Context, string, string) (bool, error) { return false, nil }
func (noRelations) EarlierContact(context.Context, string, string, time.Time, time.Time) (bool, error) {
	return false, nil
}

// BenchmarkDetect is the detector alone with every rule on (defaults),
// relations answered from memory: its own cost per event.
//
//	go test ./audit/detect -run '^$' -bench 'BenchmarkDetect$' -benchtime 200000x
func BenchmarkDetect(b *testing.B) {
	evs := syntheticTraffic(b.N)
	obs := make([]detect.Observation, len(evs))
	for i := range evs {
		obs[i] = detect.FromEvent(&evs[i])
	}
	d, err := detect.New(detect.DefaultRules(), detect.Options{Relations: noRelations{}})
	if err != nil {
		b.Fatal(err)
	}
	hits := 0
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := range obs {
		hits += len(d.Observe(context.Background(), obs[i]))
	}
	took := time.Since(start)
	b.ReportMetric(float64(b.N)/took.Seconds(), "events/s")
	b.ReportMetric(float64(hits), "hits")
}

// BenchmarkDetectVsRecorder measures, in one run on one store, the
// Recorder writing b.N events (64 writers, embedded store, as
// BenchmarkRecord in package audit) and then the detector examining the
// same events with every rule on and its relations asked of that store
// (index and log searches for each first contact of an organisation and
// a patient): the ratio is how many times the audit write rate detection
// keeps up with.
//
//	go test ./audit/detect -run '^$' -bench BenchmarkDetectVsRecorder -benchtime 20000x
func BenchmarkDetectVsRecorder(b *testing.B) {
	st := mustStore(b)
	evs := syntheticTraffic(b.N)
	rec := audit.NewRecorder(st, audit.Options{})
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(len(evs)) {
					return
				}
				if _, err := rec.Record(context.Background(), evs[i]); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	recordTook := time.Since(start)
	rec.Close()

	d, err := detect.New(detect.DefaultRules(), detect.Options{Relations: detect.StoreRelations{Store: st}})
	if err != nil {
		b.Fatal(err)
	}
	hits := 0
	start = time.Now()
	for i := range evs {
		o := detect.FromEvent(&evs[i])
		hits += len(d.Observe(context.Background(), o))
	}
	detectTook := time.Since(start)

	// The detector's own cost: the same events, relations from memory.
	d, err = detect.New(detect.DefaultRules(), detect.Options{Relations: noRelations{}})
	if err != nil {
		b.Fatal(err)
	}
	start = time.Now()
	for i := range evs {
		o := detect.FromEvent(&evs[i])
		d.Observe(context.Background(), o)
	}
	aloneTook := time.Since(start)
	b.StopTimer()
	recRate, detRate, aloneRate := float64(b.N)/recordTook.Seconds(), float64(b.N)/detectTook.Seconds(), float64(b.N)/aloneTook.Seconds()
	b.ReportMetric(recRate, "recorder-events/s")
	b.ReportMetric(detRate, "detector-events/s")
	b.ReportMetric(detRate/recRate, "ratio")
	b.ReportMetric(aloneRate/recRate, "ratio-in-memory")
	b.ReportMetric(float64(hits), "hits")
}
