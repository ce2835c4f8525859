package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/schakelpunt/schakelpunt/store"
)

// writers is how many goroutines race in the concurrency tests.
const writers = 32

// race starts n goroutines that wait for one signal, runs f in each and
// waits for them all.
func race(n int, f func(i int)) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			f(i)
		}()
	}
	close(start)
	wg.Wait()
}

// Concurrent updates without if-match never lose a version: each gets its
// own number, and history holds them all.
func testConcurrentUpdates(t *testing.T, h Harness) {
	w := newWorld(t, open(t, h))
	w.create("Consent", "c1", consentActive)
	versions := make([]int64, writers)
	errs := make([]error, writers)
	updates := []store.Write{NewWrite(t, "Consent", "c1", consentActive), NewWrite(t, "Consent", "c1", consentInactive)}
	race(writers, func(i int) {
		r, err := w.s.Update(context.Background(), updates[i%2], 0)
		versions[i], errs[i] = r.Version, err
	})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("writer %d: %v", i, err)
		}
	}
	slices.Sort(versions)
	for i, v := range versions {
		if v != int64(i+2) {
			t.Fatalf("versions handed out %v, want 2..%d once each", versions, writers+1)
		}
	}
	r, err := w.s.Read(context.Background(), "Consent", "c1")
	if err != nil || r.Version != writers+1 {
		t.Fatalf("Read = version %d, %v; want %d", r.Version, err, writers+1)
	}
	hist, err := w.s.History(context.Background(), store.HistoryQuery{Type: "Consent", ID: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != writers+1 {
		t.Fatalf("history has %d versions, want %d", len(hist), writers+1)
	}
	for i, v := range hist {
		if want := int64(writers + 1 - i); v.Version != want {
			t.Fatalf("history[%d] is version %d, want %d", i, v.Version, want)
		}
		checkResource(t, v, "Consent", "c1")
		checkMeta(t, v)
		if i > 0 && v.Updated.After(hist[i-1].Updated) {
			t.Fatalf("history not newest first: %s after %s", show(v), show(hist[i-1]))
		}
	}
}

// With if-match exactly one of the racing writers wins each version.
func testConcurrentIfMatch(t *testing.T, h Harness) {
	w := newWorld(t, open(t, h))
	w.create("Consent", "c1", consentActive)
	update := NewWrite(t, "Consent", "c1", consentInactive)
	for v := int64(1); v <= 4; v++ {
		var (
			mu        sync.Mutex
			winners   []int64
			conflicts int
		)
		race(writers, func(i int) {
			var (
				r   store.Resource
				err error
			)
			if v == 4 && i%2 == 0 { // deletes race too
				r, err = w.s.Delete(context.Background(), "Consent", "c1", v)
			} else {
				r, err = w.s.Update(context.Background(), update, v)
			}
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				winners = append(winners, r.Version)
			case errors.Is(err, store.ErrVersionConflict):
				conflicts++
			default:
				t.Errorf("round %d: %v", v, err)
			}
		})
		if len(winners) != 1 || winners[0] != v+1 || conflicts != writers-1 {
			t.Fatalf("round %d: winners %v, %d conflicts; want one winner with version %d", v, winners, conflicts, v+1)
		}
	}
}

// Racing creates of one id: one succeeds, the others get ErrExists.
func testConcurrentCreates(t *testing.T, h Harness) {
	s := open(t, h)
	var (
		mu            sync.Mutex
		ok, conflicts int
	)
	create := NewWrite(t, "Consent", "same", consentActive)
	race(writers, func(int) {
		_, err := s.Create(context.Background(), create)
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err == nil:
			ok++
		case errors.Is(err, store.ErrExists):
			conflicts++
		default:
			t.Errorf("Create: %v", err)
		}
	})
	if ok != 1 || conflicts != writers-1 {
		t.Fatalf("%d creates succeeded and %d conflicted; want 1 and %d", ok, conflicts, writers-1)
	}
}

// Many writers and readers at once: every acknowledged write is readable
// and searchable at once.
func testConcurrentMixed(t *testing.T, h Harness) {
	s := open(t, h)
	const each = 10
	creates := make([][each]store.Write, writers)
	queries := make([][each]store.Query, writers)
	for i := range writers {
		for j := range each {
			local := fmt.Sprintf("local-%d-%d", i, j)
			creates[i][j] = NewWrite(t, "Patient", fmt.Sprintf("p%d-%d", i, j), patientJSON(bsnPatient, local, "90000111", true))
			queries[i][j] = parseQuery(t, "Patient", "identifier="+sourceA+"|"+local)
			queries[i][j].Limit = 10
		}
	}
	race(writers, func(i int) {
		ctx := context.Background()
		for j := range each {
			id := creates[i][j].ID
			if _, err := s.Create(ctx, creates[i][j]); err != nil {
				t.Errorf("Create %s: %v", id, err)
				return
			}
			if r, err := s.Read(ctx, "Patient", id); err != nil || r.Version != 1 {
				t.Errorf("Read %s after its create: version %d, %v", id, r.Version, err)
				return
			}
			p, err := s.Search(ctx, queries[i][j])
			if err != nil || len(p.Resources) != 1 || p.Resources[0].ID != id {
				t.Errorf("Search for %s after its create: %d results, %v", id, len(p.Resources), err)
				return
			}
		}
	})
	n, err := s.Count(context.Background(), parseQuery(t, "Patient", "identifier="+bsnPatient))
	if err != nil || n != writers*each {
		t.Fatalf("Count = %d, %v; want %d", n, err, writers*each)
	}
}
