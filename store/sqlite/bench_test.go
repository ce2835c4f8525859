package sqlite_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/schakelpunt/schakelpunt/fhir"
	"github.com/schakelpunt/schakelpunt/store"
	"github.com/schakelpunt/schakelpunt/store/storetest"
)

const (
	bsnSystem   = "http://fhir.nl/fhir/NamingSystem/bsn"
	localSystem = "http://example.org/source-a/patient"
)

// patientWrite is the i-th entry of a synthetic patient index: a distinct
// BSN-like identifier and a local id. Its terms are built directly (the
// benchmarks measure the store, not term extraction); TestPatientWrite
// checks they are those fhir.ExtractTerms computes.
func patientWrite(i int) store.Write {
	id := fmt.Sprintf("p%d", i)
	bsn := fmt.Sprintf("%09d", i)
	org := fmt.Sprintf("9%07d", i%1000)
	body := `{"resourceType":"Patient","identifier":[{"system":"` + bsnSystem + `","value":"` + bsn +
		`"},{"system":"` + localSystem + `","value":"` + id + `"}],"active":true,"managingOrganization":{"reference":"Organization/` + org + `"}}`
	terms := fhir.Terms{Strings: []string{
		fhir.TermCode("active", "true"), fhir.TermNoSystem("active", "true"),
		fhir.TermCode("identifier", bsn), fhir.TermSystemCode("identifier", bsnSystem, bsn), fhir.TermSystem("identifier", bsnSystem),
		fhir.TermCode("identifier", id), fhir.TermSystemCode("identifier", localSystem, id), fhir.TermSystem("identifier", localSystem),
		fhir.TermRef("organization", "Organization/"+org), fhir.TermRefID("organization", org),
	}}
	return store.Write{Type: "Patient", ID: id, Body: []byte(body), Terms: terms}
}

func TestPatientWrite(t *testing.T) {
	w := patientWrite(42)
	want := storetest.NewWrite(t, w.Type, w.ID, string(w.Body)).Terms.Strings
	got := w.Terms.Strings
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("terms\n got %v\nwant %v", got, want)
	}
}

// BenchmarkCreateParallel creates patients from 16 goroutines at once.
func BenchmarkCreateParallel(b *testing.B) {
	s := MustOpen(b, filepath.Join(b.TempDir(), "bench.db"))
	defer s.Close()
	var next atomic.Int64
	b.SetParallelism((16 + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			if _, err := s.Create(ctx, patientWrite(int(next.Add(1)))); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "creates/s")
}

// BenchmarkSearchIdentifier100k searches one identifier among 100,000
// patients. The index is loaded once, through the store from many
// goroutines (group commit makes that quick).
func BenchmarkSearchIdentifier100k(b *testing.B) {
	const n = 100_000
	s := MustOpen(b, filepath.Join(b.TempDir(), "bench.db"))
	defer s.Close()
	start := time.Now()
	load(b, s, n)
	b.Logf("loaded %d patients in %s", n, time.Since(start).Round(time.Millisecond))

	b.Run("search", func(b *testing.B) {
		ctx := context.Background()
		rng := rand.New(rand.NewPCG(1, 2))
		lat := make([]time.Duration, 0, b.N)
		b.ResetTimer()
		for range b.N {
			bsn := fmt.Sprintf("%09d", rng.IntN(n))
			q := store.Query{Type: "Patient", Limit: fhir.DefaultCount, Clauses: []fhir.Clause{
				{Param: "identifier", Strings: []string{fhir.TermSystemCode("identifier", bsnSystem, bsn)}},
			}}
			t0 := time.Now()
			p, err := s.Search(ctx, q)
			lat = append(lat, time.Since(t0))
			if err != nil || len(p.Resources) != 1 {
				b.Fatalf("search %s: %d results, %v", bsn, len(p.Resources), err)
			}
		}
		b.StopTimer()
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	})
}

// load creates patients 0..n-1 from many goroutines.
func load(tb testing.TB, s store.Store, n int) {
	tb.Helper()
	loadParallel(tb, s, n, func(i int) []store.Write { return []store.Write{patientWrite(i)} })
}

// loadParallel creates the writes of 0..n-1 from 256 goroutines, so
// that they share commits.
func loadParallel(tb testing.TB, s store.Store, n int, writes func(i int) []store.Write) {
	tb.Helper()
	var (
		wg   sync.WaitGroup
		next atomic.Int64
	)
	next.Store(-1)
	for range 256 {
		wg.Go(func() {
			for {
				i := int(next.Add(1))
				if i >= n {
					return
				}
				for _, w := range writes(i) {
					if _, err := s.Create(context.Background(), w); err != nil {
						tb.Error(err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
}
