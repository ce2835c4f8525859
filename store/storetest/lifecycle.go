package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/schakelpunt/schakelpunt/store"
)

// A write whose context has ended is refused and leaves nothing behind.
func testCanceled(t *testing.T, h Harness) {
	w := newWorld(t, open(t, h))
	w.create("Consent", "c1", consentActive)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, c := range []struct {
		name string
		call func() error
	}{
		{"create", func() error { _, err := w.s.Create(ctx, NewWrite(t, "Consent", "c2", consentActive)); return err }},
		{"update", func() error { _, err := w.s.Update(ctx, NewWrite(t, "Consent", "c1", consentInactive), 0); return err }},
		{"delete", func() error { _, err := w.s.Delete(ctx, "Consent", "c1", 0); return err }},
	} {
		if err := c.call(); !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a canceled context: %v, want context.Canceled", c.name, err)
		}
	}
	w.step("read c1", step{do: "read", id: "c1", want: 1})
	w.step("read c2", step{do: "read", id: "c2", err: store.ErrNotFound})
	if _, err := w.s.Search(ctx, store.Query{Type: "Consent", Limit: 10}); err == nil {
		t.Errorf("search with a canceled context succeeded")
	}
}

// After Close every call fails with ErrClosed.
func testClosed(t *testing.T, h Harness) {
	s := open(t, h)
	ctx := context.Background()
	if _, err := s.Create(ctx, NewWrite(t, "Consent", "c1", consentActive)); err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping of an open store: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for _, c := range []struct {
		name string
		call func() error
	}{
		{"create", func() error { _, err := s.Create(ctx, NewWrite(t, "Consent", "c2", consentActive)); return err }},
		{"update", func() error { _, err := s.Update(ctx, NewWrite(t, "Consent", "c1", consentActive), 0); return err }},
		{"delete", func() error { _, err := s.Delete(ctx, "Consent", "c1", 0); return err }},
		{"read", func() error { _, err := s.Read(ctx, "Consent", "c1"); return err }},
		{"vread", func() error { _, err := s.VRead(ctx, "Consent", "c1", 1); return err }},
		{"history", func() error { _, err := s.History(ctx, store.HistoryQuery{}); return err }},
		{"search", func() error { _, err := s.Search(ctx, store.Query{Type: "Consent", Limit: 1}); return err }},
		{"count", func() error { _, err := s.Count(ctx, store.Query{Type: "Consent"}); return err }},
		{"ping", func() error { return s.Ping(ctx) }},
	} {
		if err := c.call(); !errors.Is(err, store.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", c.name, err)
		}
	}
}

// Acknowledged writes survive closing and opening again, also writes that
// were waiting when Close was called.
func testReopen(t *testing.T, h Harness) {
	if h.Reopen == nil {
		t.Fatal("the harness has no Reopen: surviving a restart is part of the contract")
	}
	reopen := func(t *testing.T, s store.Store) store.Store {
		t.Helper()
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		s = h.Reopen(t, s)
		t.Cleanup(func() { _ = s.Close() })
		return s
	}

	t.Run("state", func(t *testing.T) {
		w := newWorld(t, open(t, h))
		w.apply(searchSeed)
		w.apply(historySeed)
		for round := range 2 {
			w.s = reopen(t, w.s)
			w.verify()
			w.update("Consent", "c1", consentInactive) // numbering and the clock go on
			w.delete("Consent", "c2")
			w.create("Consent", fmt.Sprintf("new%d", round), consentActive)
		}
		w.s = reopen(t, w.s)
		w.verify()
	})

	t.Run("close while writing", func(t *testing.T) {
		s := open(t, h)
		creates := make([]store.Write, 4*writers)
		for i := range creates {
			creates[i] = NewWrite(t, "Consent", fmt.Sprintf("c%d", i), consentActive)
		}
		var (
			mu    sync.Mutex
			acked []string
			wg    sync.WaitGroup
			some  = make(chan struct{}, len(creates))
		)
		for g := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := g; i < len(creates); i += writers {
					_, err := s.Create(context.Background(), creates[i])
					switch {
					case err == nil:
						mu.Lock()
						acked = append(acked, creates[i].ID)
						mu.Unlock()
						some <- struct{}{}
					case errors.Is(err, store.ErrClosed):
						return
					default:
						t.Errorf("Create: %v", err)
						return
					}
				}
			}()
		}
		for range writers { // close once some writes are through
			select {
			case <-some:
			case <-time.After(time.Minute):
				t.Fatal("writes do not get through")
			}
		}
		if err := s.Close(); err != nil {
			t.Fatalf("Close during writes: %v", err)
		}
		wg.Wait()
		s = h.Reopen(t, s)
		t.Cleanup(func() { _ = s.Close() })
		for _, id := range acked {
			if _, err := s.Read(context.Background(), "Consent", id); err != nil {
				t.Errorf("acknowledged create of %s lost: %v", id, err)
			}
		}
	})
}

// verify checks the store against the model: every resource reads as its
// current version, history lists every version, and searches agree with
// the oracle.
func (w *world) verify() {
	t := w.t
	t.Helper()
	ctx := context.Background()
	for k, e := range w.cur {
		r, err := w.s.Read(ctx, e.res.Type, e.res.ID)
		if e.res.Deleted {
			wantErr(t, "read "+k, err, store.ErrGone)
		} else {
			wantErr(t, "read "+k, err, nil)
		}
		if !sameResource(r, e.res) {
			t.Errorf("read %s = %s, want %s", k, show(r), show(e.res))
		}
	}
	hist, err := w.s.History(ctx, store.HistoryQuery{})
	if err != nil {
		t.Fatal(err)
	}
	var got, want []string
	for _, r := range hist {
		got = append(got, vkey(r.Type, r.ID, r.Version))
		if v := w.versions[vkey(r.Type, r.ID, r.Version)]; !sameResource(r, v) {
			t.Errorf("history has %s, want %s", show(r), show(v))
		}
	}
	for _, r := range slices.Backward(w.log) {
		want = append(want, vkey(r.Type, r.ID, r.Version))
	}
	if !slices.Equal(got, want) {
		t.Errorf("history:\n got %v\nwant %v", got, want)
	}
	for _, tc := range searchCases {
		w.check(parseQuery(t, tc.typ, tc.query), 3)
	}
}
