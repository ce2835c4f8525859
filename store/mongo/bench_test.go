package mongo

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkCreateParallel creates resources from 16 goroutines at once.
// Against FerretDB (SQLite, no index use) it proves behaviour, not speed.
func BenchmarkCreateParallel(b *testing.B) {
	const goroutines = 16
	s := mustOpen(b, Options{})
	ctx := context.Background()
	var next atomic.Int64
	var failed atomic.Value
	start := time.Now()
	b.ResetTimer()
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				id := fmt.Sprintf("c%d", i)
				w := write(b, "Consent", id, consent("active", fmt.Sprintf("Patient/%d", i%100), "2026-01-02T10:00:00Z", map[string]any{"start": "2026-01-01"}))
				if _, err := s.Create(ctx, w); err != nil {
					failed.CompareAndSwap(nil, err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "creates/s")
}
