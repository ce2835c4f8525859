package audit_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/schakelpunt/schakelpunt/audit"
	"github.com/schakelpunt/schakelpunt/fhir"
	"github.com/schakelpunt/schakelpunt/store"
)

// event is the i-th event of a load: a GP searching a patient's
// medication.
func event(i int) audit.Event {
	return audit.Event{Interaction: "search-type", Status: 200, Agent: gp,
		PatientBSN: testBSNs[i%len(testBSNs)], Query: fmt.Sprintf("GET /fhir/R4/MedicationDispense?n=%d", i), Category: "10160-0",
		Permit: yes(), Reasons: []string{"role 01.015 may see medication"},
		Sources: []audit.Source{{URA: "90000002", Name: "Apotheek De Brug", Count: i % 7, Outcome: "ok"}}}
}

var testBSNs = []string{"999911120", "999900006", "999900018", "999900031", "999900043", "999900055"}

// recordConcurrently records writers × each events from writers goroutines
// and returns the ids acknowledged.
func recordConcurrently(t *testing.T, rec *audit.Recorder, writers, each int) []string {
	t.Helper()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		ids  []string
		errs []error
	)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				id, err := rec.Record(context.Background(), event(w*each+i))
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else {
					ids = append(ids, id)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		t.Errorf("Record: %v", err)
	}
	return ids
}

// wantStoredOnce checks that the chain holds exactly ids, each once.
func wantStoredOnce(t *testing.T, log store.AuditLog, ids []string) {
	t.Helper()
	want := map[string]bool{}
	for _, id := range ids {
		if want[id] {
			t.Fatalf("id %s acknowledged twice", id)
		}
		want[id] = true
	}
	seen := map[string]bool{}
	for _, e := range scanAll(t, log) {
		if seen[e.Resource.ID] {
			t.Fatalf("%s stored twice", e.Resource.ID)
		}
		seen[e.Resource.ID] = true
		if !want[e.Resource.ID] {
			t.Fatalf("%s stored but not acknowledged", e.Resource.ID)
		}
	}
	for id := range want {
		if !seen[id] {
			t.Fatalf("%s acknowledged but not in the chain", id)
		}
	}
}

// 64 goroutines record at once: every Record succeeds, every event is
// stored once, the chain verifies, and the recorder writes them in
// batches (fewer appends than events).
func TestRecordConcurrent(t *testing.T) {
	s := MustOpenStore(t)
	log := &countingLog{AuditLog: s}
	// A slow append lets the queue fill, as a real fsync does.
	log.setHook(func(recs []store.AuditRecord) ([]store.AuditRecord, error) {
		time.Sleep(2 * time.Millisecond)
		return recs, nil
	})
	rec := MustRecorder(t, log, audit.Options{})
	const writers, each = 64, 5
	ids := recordConcurrently(t, rec, writers, each)
	if len(ids) != writers*each {
		t.Fatalf("%d events acknowledged, want %d", len(ids), writers*each)
	}
	wantStoredOnce(t, s, ids)
	mustVerify(t, s, writers*each)
	calls, records := log.calls.Load(), log.records.Load()
	if records != writers*each {
		t.Errorf("%d records appended for %d events", records, writers*each)
	}
	if calls >= writers*each/4 {
		t.Errorf("%d appends for %d events: the recorder does not batch", calls, writers*each)
	}
	t.Logf("%d events in %d appends (largest %d)", records, calls, log.maxBatch())
}

// Record after Close fails (unavailable, ErrClosed); what was acknowledged
// before is stored, and nothing else.
func TestRecordAfterClose(t *testing.T) {
	s := MustOpenStore(t)
	rec := audit.NewRecorder(s, audit.Options{})
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		ids []string
	)
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				id, err := rec.Record(context.Background(), event(w*20+i))
				switch {
				case err == nil:
					mu.Lock()
					ids = append(ids, id)
					mu.Unlock()
				case errors.Is(err, audit.ErrClosed) && fhir.KindOf(err) == fhir.KindUnavailable:
				default:
					t.Errorf("Record while closing: %v", err)
				}
			}
		}()
	}
	time.Sleep(5 * time.Millisecond)
	if err := rec.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if err := rec.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	_, err := rec.Record(context.Background(), event(0))
	if !errors.Is(err, audit.ErrClosed) || fhir.KindOf(err) != fhir.KindUnavailable {
		t.Fatalf("Record after Close: %v, want ErrClosed of kind unavailable", err)
	}
	wantStoredOnce(t, s, ids)
	mustVerify(t, s, int64(len(ids)))
	t.Logf("%d of 320 acknowledged before Close", len(ids))
}

// A failing append fails every waiter of its batch with an unavailable
// error and stores none of it; the next batch succeeds and chains on.
func TestRecordFailingAppend(t *testing.T) {
	for _, tc := range []struct {
		name  string
		spoil func(recs []store.AuditRecord, first string) ([]store.AuditRecord, error)
	}{
		{"the store refuses the batch", func(recs []store.AuditRecord, first string) ([]store.AuditRecord, error) {
			// The last record takes an id already stored: the store
			// refuses the whole batch after writing the others.
			recs[len(recs)-1].Write.ID = first
			return recs, nil
		}},
		{"the store is down", func(recs []store.AuditRecord, _ string) ([]store.AuditRecord, error) {
			return nil, errors.New("connection refused")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := MustOpenStore(t)
			log := &countingLog{AuditLog: s}
			rec := MustRecorder(t, log, audit.Options{NewID: seqIDs("ev")})
			first, err := rec.Record(context.Background(), event(0))
			if err != nil {
				t.Fatal(err)
			}
			head, err := s.AuditHead(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			var once sync.Once
			log.setHook(func(recs []store.AuditRecord) ([]store.AuditRecord, error) {
				// Hold the first failing batch a moment so that the others
				// queue up behind it and fail as one batch.
				once.Do(func() { time.Sleep(50 * time.Millisecond) })
				return tc.spoil(recs, first)
			})
			const n = 20
			var wg sync.WaitGroup
			errs := make([]error, n)
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, errs[i] = rec.Record(context.Background(), event(i+1))
				}()
			}
			wg.Wait()
			for i, err := range errs {
				if err == nil || fhir.KindOf(err) != fhir.KindUnavailable {
					t.Fatalf("Record %d with a failing store: %v, want an unavailable error", i, err)
				}
			}
			if log.maxBatch() < 2 {
				t.Fatalf("no batch of several events failed (largest %d)", log.maxBatch())
			}
			// Nothing of the failed batches is stored.
			if h, _ := s.AuditHead(context.Background()); h != head {
				t.Fatalf("head moved from %d to %d", head.Seq, h.Seq)
			}
			for i := 2; i <= n+1; i++ {
				if _, err := s.Read(context.Background(), "AuditEvent", fmt.Sprintf("ev-%d", i)); !errors.Is(err, store.ErrNotFound) {
					t.Fatalf("Read of failed event ev-%d: %v, want ErrNotFound", i, err)
				}
			}
			mustVerify(t, s, 1)

			// The store is back: the next batches succeed and chain on.
			log.setHook(nil)
			ids := recordConcurrently(t, rec, 8, 5)
			wantStoredOnce(t, s, append(ids, first))
			mustVerify(t, s, 41)
		})
	}
}

// Two recorders on one store, as two instances of the switching point
// behind a load balancer: they conflict on the chain head, reload it and
// retry; every event is stored once and the chain verifies.
func TestTwoRecorders(t *testing.T) {
	s := MustOpenStore(t)
	a := &countingLog{AuditLog: s}
	b := &countingLog{AuditLog: s}
	recA := MustRecorder(t, a, audit.Options{NewID: seqIDs("a")})
	recB := MustRecorder(t, b, audit.Options{NewID: seqIDs("b")})
	const writers, each = 32, 5
	var (
		wg         sync.WaitGroup
		idsA, idsB []string
	)
	wg.Add(2)
	go func() { defer wg.Done(); idsA = recordConcurrently(t, recA, writers, each) }()
	go func() { defer wg.Done(); idsB = recordConcurrently(t, recB, writers, each) }()
	wg.Wait()
	if len(idsA) != writers*each || len(idsB) != writers*each {
		t.Fatalf("%d + %d events acknowledged, want %d each", len(idsA), len(idsB), writers*each)
	}
	wantStoredOnce(t, s, append(idsA, idsB...))
	mustVerify(t, s, 2*writers*each)
	if a.conflicts.Load()+b.conflicts.Load() == 0 {
		t.Log("no chain conflict happened: the recorders did not overlap")
	}
	t.Logf("%d appends by A, %d by B, %d chain conflicts", a.calls.Load(), b.calls.Load(), a.conflicts.Load()+b.conflicts.Load())
}

// A canceled caller does not stop its event: once queued it is written,
// and Record reports the truth about it.
func TestRecordCanceledCaller(t *testing.T) {
	s := MustOpenStore(t)
	rec := MustRecorder(t, s, audit.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	id, err := rec.Record(ctx, event(1))
	switch {
	case err == nil:
		if _, rerr := s.Read(context.Background(), "AuditEvent", id); rerr != nil {
			t.Fatalf("acknowledged %s not stored: %v", id, rerr)
		}
	case fhir.KindOf(err) != fhir.KindUnavailable:
		t.Fatalf("Record with a canceled context: %v, want success or unavailable", err)
	}
}

// TestRecordLingers: with more requests in flight than LingerAbove, a
// batch waits for their events (up to Linger) and they share one commit;
// with fewer, an event is committed at once; Close does not wait out a
// linger.
func TestRecordLingers(t *testing.T) {
	const hour = time.Hour // a linger that only the events can end
	recordAll := func(rec *audit.Recorder, n int) []string {
		t.Helper()
		ids := make([]string, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				id, err := rec.Record(context.Background(), event(i))
				if err != nil {
					t.Error(err)
				}
				ids[i] = id
			})
		}
		wg.Wait()
		return ids
	}
	for _, tc := range []struct {
		name              string
		inFlight, records int
		lingerAbove       int
		wantCommits       int64
	}{
		{"under load: one commit for all", 8, 8, 2, 1},
		{"not under load: no wait", 1, 1, 2, 1},
		{"at the threshold: no wait", 2, 1, 2, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := MustOpenStore(t)
			log := &countingLog{AuditLog: s}
			rec := MustRecorder(t, log, audit.Options{Linger: hour, LingerAbove: tc.lingerAbove})
			var dones []func()
			for range tc.inFlight {
				dones = append(dones, rec.Expect())
			}
			ids := recordAll(rec, tc.records)
			for _, done := range dones {
				done()
				done() // a second call changes nothing
			}
			wantStoredOnce(t, s, ids)
			if got := log.calls.Load(); got != tc.wantCommits {
				t.Errorf("%d appends for %d events, want %d", got, tc.records, tc.wantCommits)
			}
		})
	}
	t.Run("expectations ended, no wait", func(t *testing.T) {
		s := MustOpenStore(t)
		rec := MustRecorder(t, &countingLog{AuditLog: s}, audit.Options{Linger: hour, LingerAbove: 1})
		for range 5 {
			rec.Expect()()
		}
		wantStoredOnce(t, s, recordAll(rec, 1))
	})
	t.Run("close ends a linger", func(t *testing.T) {
		s := MustOpenStore(t)
		rec := audit.NewRecorder(&countingLog{AuditLog: s}, audit.Options{Linger: hour, LingerAbove: 1})
		for range 5 {
			rec.Expect()
		}
		var id string
		var err error
		recorded := make(chan struct{})
		go func() {
			defer close(recorded)
			id, err = rec.Record(context.Background(), event(1))
		}()
		// The event's batch waits before Close: it is stored.
		for !audit.Lingering(rec) {
			time.Sleep(time.Millisecond)
		}
		if cerr := rec.Close(); cerr != nil {
			t.Fatal(cerr)
		}
		<-recorded
		if err != nil {
			t.Fatal(err)
		}
		wantStoredOnce(t, s, []string{id})
	})
}

// TestRecordAll: the events of one interaction are stored in one commit,
// consecutive in the chain, with one recorded time, and handed to
// OnRecorded together; when the store fails, none of them is stored.
func TestRecordAll(t *testing.T) {
	parts := func() []audit.Event {
		var evs []audit.Event
		for _, bsn := range testBSNs[:3] {
			ev := event(0)
			ev.PatientBSN = bsn
			evs = append(evs, ev)
		}
		return evs
	}
	t.Run("stored together", func(t *testing.T) {
		s := MustOpenStore(t)
		log := &countingLog{AuditLog: s}
		var seen []audit.Event
		var mu sync.Mutex
		rec := MustRecorder(t, log, audit.Options{NewID: seqIDs("ev"), OnRecorded: func(evs []audit.Event) {
			mu.Lock()
			seen = append(seen, evs...)
			mu.Unlock()
		}})
		if _, err := rec.Record(context.Background(), event(1)); err != nil {
			t.Fatal(err)
		}
		evs := parts()
		if err := rec.RecordAll(context.Background(), evs); err != nil {
			t.Fatal(err)
		}
		if got := log.calls.Load(); got != 2 {
			t.Errorf("%d appends, want 2: one for the lone event, one for the three", got)
		}
		chain := scanAll(t, s)
		if len(chain) != 4 {
			t.Fatalf("%d events stored, want 4", len(chain))
		}
		for i, ev := range evs {
			if ev.ID == "" || ev.Recorded != evs[0].Recorded {
				t.Errorf("event %d: id %q recorded %v, want an id and the first's time %v", i, ev.ID, ev.Recorded, evs[0].Recorded)
			}
			stored := chain[1+i]
			if stored.Resource.ID != ev.ID {
				t.Errorf("chain position %d holds %s, want %s", 1+i, stored.Resource.ID, ev.ID)
			}
			if got := path(list(decode(t, stored.Resource.Body), "entity")[0], "what.identifier.value"); got != ev.PatientBSN {
				t.Errorf("event %s is about %q, want %q", ev.ID, got, ev.PatientBSN)
			}
		}
		mustVerify(t, s, 4)
		rec.Close()
		if len(seen) != 4 || seen[3].ID != evs[2].ID {
			t.Errorf("OnRecorded saw %d events, want all 4 in chain order", len(seen))
		}
	})
	t.Run("none stored when the store fails", func(t *testing.T) {
		s := MustOpenStore(t)
		log := &countingLog{AuditLog: s}
		rec := MustRecorder(t, log, audit.Options{NewID: seqIDs("ev")})
		first, err := rec.Record(context.Background(), event(1))
		if err != nil {
			t.Fatal(err)
		}
		// The last of the three takes an id already stored: the store
		// refuses the append after writing the first two.
		log.setHook(func(recs []store.AuditRecord) ([]store.AuditRecord, error) {
			recs[len(recs)-1].Write.ID = first
			return recs, nil
		})
		if err := rec.RecordAll(context.Background(), parts()); fhir.KindOf(err) != fhir.KindUnavailable {
			t.Fatalf("RecordAll with a failing store: %v, want an unavailable error", err)
		}
		if chain := scanAll(t, s); len(chain) != 1 {
			t.Fatalf("%d events stored, want only the first", len(chain))
		}
		mustVerify(t, s, 1)
	})
}
