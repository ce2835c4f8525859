package detect_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/schakelpunt/schakelpunt/audit"
	"github.com/schakelpunt/schakelpunt/audit/detect"
	"github.com/schakelpunt/schakelpunt/fhir"
	"github.com/schakelpunt/schakelpunt/store"
	"github.com/schakelpunt/schakelpunt/store/sqlite"
)

func mustStore(t testing.TB) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "schakelpunt.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func boolp(b bool) *bool { return &b }

// events is a mix of what the edge records: professionals permitted and
// denied, a source system, an employee, a patient, the retention job and
// a client without a certificate.
func events() []audit.Event {
	at := base
	return []audit.Event{
		{Recorded: at, Interaction: "search-type", Status: 200, PatientBSN: bsns[0], Category: fhir.CategoryMedication, Permit: boolp(true),
			Agent: &audit.Agent{UZINumber: "11111112", CardType: "Z", Role: "17.075", URA: "90000002", AGB: "06000002", Address: "127.0.0.1"}},
		{Recorded: at.Add(time.Second), Interaction: "$summary", Status: 403, PatientBSN: bsns[1], Category: fhir.CategoryGPSummary, Permit: boolp(false),
			Reasons: []string{"no consent"}, Agent: &audit.Agent{UZINumber: "11111113", CardType: "Z", Role: "01.010", URA: "90000111", Address: "127.0.0.1"}},
		{Recorded: at.Add(2 * time.Second), Interaction: "update", Status: 201, PatientBSN: bsns[2], Permit: boolp(true),
			Agent: &audit.Agent{UZINumber: "22222222", CardType: "S", Role: "00.000", URA: "90000002"}},
		{Recorded: at.Add(3 * time.Second), Interaction: "create", Status: 201, PatientBSN: bsns[2], Permit: boolp(true),
			Agent: &audit.Agent{UZINumber: "11111116", CardType: "N", Role: "00.000", URA: "90000002"}},
		{Recorded: at.Add(4 * time.Second), Interaction: "search-type", Status: 200, PatientBSN: bsns[3], Agent: &audit.Agent{BSN: bsns[3], Address: "127.0.0.1"}},
		{Recorded: at.Add(5 * time.Second), Interaction: "retention", Status: 200, Agent: &audit.Agent{System: "retention"}},
		{Recorded: at.Add(6 * time.Second), Interaction: "unknown", Status: 403, Agent: &audit.Agent{Address: "192.0.2.7"}},
		{Recorded: at.Add(7 * time.Second), Interaction: "capabilities", Status: 200},
	}
}

// TestHookSeesWhatIsStored: the Recorder's hook is called after each
// batch is stored, in chain order, and the observation of each event it
// hands over is the observation of the AuditEvent in the store.
func TestHookSeesWhatIsStored(t *testing.T) {
	st := mustStore(t)
	var (
		mu   sync.Mutex
		seen []audit.Event
	)
	rec := audit.NewRecorder(st, audit.Options{OnRecorded: func(evs []audit.Event) {
		mu.Lock()
		defer mu.Unlock()
		// Every event handed over is already in the store.
		for _, ev := range evs {
			if _, err := st.Read(context.Background(), "AuditEvent", ev.ID); err != nil {
				t.Errorf("hook called before AuditEvent/%s is stored: %v", ev.ID, err)
			}
		}
		seen = append(seen, evs...)
	}})
	for _, ev := range events() {
		if _, err := rec.Record(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	rec.Close()
	stored, err := st.ScanAudit(context.Background(), 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(stored) != len(seen) || len(seen) != len(events()) {
		t.Fatalf("%d stored, %d seen by the hook, %d recorded", len(stored), len(seen), len(events()))
	}
	for i, e := range stored {
		want := detect.FromEvent(&seen[i])
		got, err := detect.ParseAuditEvent(e.Resource.Body)
		if err != nil {
			t.Fatal(err)
		}
		if !got.At.Equal(want.At) {
			t.Errorf("event %d: stored at %v, hooked at %v", i, got.At, want.At)
		}
		got.At, want.At = time.Time{}, time.Time{}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("event %d (%s):\nstored %+v\nhooked %+v", i, e.Resource.ID, got, want)
		}
	}
}

// TestHookNotCalledOnFailure: a batch that is not stored is not examined.
func TestHookNotCalledOnFailure(t *testing.T) {
	st := mustStore(t)
	var calls atomic.Int32
	rec := audit.NewRecorder(failingLog{st}, audit.Options{OnRecorded: func([]audit.Event) { calls.Add(1) }})
	defer rec.Close()
	if _, err := rec.Record(context.Background(), events()[0]); err == nil {
		t.Fatal("a failing log acknowledged an event")
	}
	if n := calls.Load(); n != 0 {
		t.Fatalf("hook called %d times for a batch not stored", n)
	}
}

type failingLog struct{ store.AuditLog }

func (failingLog) AppendAudit(context.Context, []store.AuditRecord) error {
	return context.DeadlineExceeded
}

// blockingStore holds every Create until released.
type blockingStore struct {
	detect.FlagStore
	release chan struct{}
	created atomic.Int32
}

func (b *blockingStore) Create(ctx context.Context, w store.Write) (store.Resource, error) {
	<-b.release
	b.created.Add(1)
	return b.FlagStore.Create(ctx, w)
}

// TestRunnerNeverBlocksTheWriter: with the detector stuck on a slow
// store, Offer returns at once and counts what it drops; every event is
// either examined or counted as dropped.
func TestRunnerNeverBlocksTheWriter(t *testing.T) {
	rules := only(func(r *detect.Rules) { r.DenialBurst.Count, r.DenialBurst.Window = 1, time.Minute })
	d, err := detect.New(rules, detect.Options{})
	if err != nil {
		t.Fatal(err)
	}
	bs := &blockingStore{FlagStore: mustStore(t), release: make(chan struct{})}
	var hits, dropped atomic.Int32
	r := detect.Start(d, detect.RunnerOptions{Store: bs, Queue: 4,
		OnHit: func(rule string) {
			if rule == detect.RuleDenialBurst {
				hits.Add(1)
			}
		},
		OnDropped: func(n int) { dropped.Add(int32(n)) }})
	const n = 100
	batch := make([]audit.Event, n)
	for i := range batch {
		batch[i] = audit.Event{ID: "e" + string(rune('A'+i%26)) + string(rune('a'+i/26)), Recorded: base.Add(time.Duration(i) * 2 * time.Minute),
			Status: 403, Permit: boolp(false), PatientBSN: bsns[0], Category: fhir.CategoryMedication,
			Agent: &audit.Agent{UZINumber: "11111114", CardType: "Z", Role: "04.000", URA: "90000111"}}
	}
	done := make(chan struct{})
	go func() {
		for i := 0; i < n; i += 10 {
			r.Offer(batch[i : i+10])
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Offer blocked on a stuck detector")
	}
	if dropped.Load() == 0 {
		t.Fatal("nothing dropped with a queue of 4 and a stuck detector")
	}
	close(bs.release)
	r.Close()
	if h, dr := hits.Load(), dropped.Load(); h+dr != n || int(bs.created.Load()) != int(h) {
		t.Fatalf("%d examined (hits) + %d dropped != %d, or %d Flags stored", h, dr, n, bs.created.Load())
	}
}

// TestFlagsAreValidR4: the stored Flags parse as FHIR R4 and carry what
// the supervisor needs.
func TestFlagsAreValidR4(t *testing.T) {
	st := mustStore(t)
	codec, err := fhir.NewCodec()
	if err != nil {
		t.Fatal(err)
	}
	hits := []detect.Hit{
		{Rule: detect.RuleDistinctPatients, At: base, Since: base.Add(-time.Minute), Subject: detect.Subject{Type: "Practitioner", System: fhir.SystemUZIPerson, Value: "11111111"}, URAs: []string{"90000001"}, Evidence: []string{"a1", "a2"}, Text: "many"},
		{Rule: detect.RuleUnusualHour, At: base, Subject: detect.Subject{Type: "Organization", System: fhir.SystemURA, Value: "90000001"}, URAs: []string{"90000001"}, Evidence: []string{"a3"}},
		{Rule: detect.RuleManyOrganisations, At: base, Subject: detect.Subject{Type: "Patient", System: fhir.SystemBSN, Value: bsns[0]}, URAs: []string{"90000001", "90000002", "90000111"}, Evidence: []string{"a4", "a5", "a6"}},
	}
	for i, h := range hits {
		w, err := detect.FlagWrite(h, "flag-"+h.Rule)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Create(context.Background(), w); err != nil {
			t.Fatal(err)
		}
		res, err := st.Read(context.Background(), "Flag", w.ID)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := codec.Parse(res.Body, "Flag"); err != nil {
			t.Errorf("hit %d: not a valid R4 Flag: %v\n%s", i, err, res.Body)
		}
		f, err := detect.ParseFlag(res.Body)
		if err != nil {
			t.Fatal(err)
		}
		if f.Rule != h.Rule || !reflect.DeepEqual(f.Evidence, h.Evidence) || !reflect.DeepEqual(f.URAs, h.URAs) || !f.At.Equal(h.At) {
			t.Errorf("hit %d read back as %+v", i, f)
		}
	}
	// Searchable by rule, by subject and by patient.
	for _, c := range []struct {
		clause fhir.Clause
		want   int
	}{
		{fhir.Clause{Param: "code", Strings: []string{fhir.TermSystemCode("code", detect.SystemRule, detect.RuleUnusualHour)}}, 1},
		{fhir.Clause{Param: "subject", Strings: []string{fhir.TermRefIdentifier("subject", fhir.SystemUZIPerson, "11111111")}}, 1},
		{fhir.Clause{Param: "patient", Strings: []string{fhir.TermRefIdentifier("patient", fhir.SystemBSN, bsns[0])}}, 1},
		{fhir.Clause{Param: "patient", Strings: []string{fhir.TermRefIdentifier("patient", "", "11111111")}}, 0},
		{fhir.Clause{Param: "status", Strings: []string{fhir.TermCode("status", "active")}}, 3},
	} {
		page, err := st.Search(context.Background(), store.Query{Type: "Flag", Clauses: []fhir.Clause{c.clause}, Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Resources) != c.want {
			t.Errorf("%s %v: %d Flags, want %d", c.clause.Param, c.clause.Strings, len(page.Resources), c.want)
		}
	}
}

// stuckRelations is an index and log that do not answer: each call
// blocks until its context ends. block says which of the two blocks; the
// other answers "no" at once.
type stuckRelations struct {
	block   string // Registered or EarlierContact
	started chan struct{}
	once    sync.Once
	calls   atomic.Int32
	mu      sync.Mutex
	budgets []time.Duration // per call: its deadline minus when it was made
}

func newStuck(block string) *stuckRelations {
	return &stuckRelations{block: block, started: make(chan struct{})}
}

func (s *stuckRelations) wait(ctx context.Context, name string) error {
	s.calls.Add(1)
	now := time.Now()
	dl, ok := ctx.Deadline()
	s.mu.Lock()
	if ok {
		s.budgets = append(s.budgets, dl.Sub(now))
	} else {
		s.budgets = append(s.budgets, -1)
	}
	s.mu.Unlock()
	if name != s.block {
		return nil
	}
	s.once.Do(func() { close(s.started) })
	<-ctx.Done()
	return ctx.Err()
}

func (s *stuckRelations) Registered(ctx context.Context, _, _ string) (bool, error) {
	return false, s.wait(ctx, "Registered")
}

func (s *stuckRelations) EarlierContact(ctx context.Context, _, _ string, _, _ time.Time) (bool, error) {
	return false, s.wait(ctx, "EarlierContact")
}

// syncBuffer is a log sink safe for the runner's goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func permittedQueries(n int) []audit.Event {
	evs := make([]audit.Event, n)
	for i := range evs {
		evs[i] = audit.Event{ID: fmt.Sprintf("q%04d", i), Recorded: base.Add(time.Duration(i) * time.Second), Interaction: "search-type", Status: 200,
			PatientBSN: bsns[i%len(bsns)], Category: fhir.CategoryMedication, Permit: boolp(true), Agent: professionalOf(fmt.Sprintf("9%07d", i))}
	}
	return evs
}

// TestLookupTimeout: each question to Relations carries its own time
// limit; one that runs out leaves the event unflagged and Observe
// returns.
func TestLookupTimeout(t *testing.T) {
	rules := only(func(r *detect.Rules) { r.NoRelationship.Lookback = 30 * 24 * time.Hour })
	const limit = 20 * time.Millisecond
	for _, block := range []string{"Registered", "EarlierContact"} {
		t.Run(block, func(t *testing.T) {
			rel := newStuck(block)
			var logs syncBuffer
			d, err := detect.New(rules, detect.Options{Relations: rel, LookupTimeout: limit, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			ev := permittedQueries(1)[0]
			done := make(chan []detect.Hit, 1)
			go func() { done <- d.Observe(context.Background(), detect.FromEvent(&ev)) }()
			select {
			case hits := <-done:
				if len(hits) != 0 {
					t.Fatalf("hits %v from an unanswered lookup", hits)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Observe stuck on a Relations call with a time limit")
			}
			want := map[string]int32{"Registered": 1, "EarlierContact": 2}[block]
			if n := rel.calls.Load(); n != want {
				t.Fatalf("%d Relations calls, want %d", n, want)
			}
			for i, b := range rel.budgets {
				if b < 0 || b > limit {
					t.Errorf("call %d: time limit %v, want at most %v of its own", i, b, limit)
				}
			}
			if out := logs.String(); !strings.Contains(out, "not checked") || strings.Contains(out, ev.PatientBSN) {
				t.Errorf("log: want the unchecked event, without its BSN:\n%s", out)
			}
		})
	}
	t.Run("default", func(t *testing.T) {
		rel := newStuck("none")
		d, err := detect.New(rules, detect.Options{Relations: rel})
		if err != nil {
			t.Fatal(err)
		}
		ev := permittedQueries(1)[0]
		d.Observe(context.Background(), detect.FromEvent(&ev))
		if len(rel.budgets) != 2 {
			t.Fatalf("%d Relations calls, want 2", len(rel.budgets))
		}
		for i, b := range rel.budgets {
			if b < 0 || b > detect.DefaultLookupTimeout {
				t.Errorf("call %d: time limit %v, want at most %v", i, b, detect.DefaultLookupTimeout)
			}
		}
	})
}

// TestCloseIsBounded: with the store stuck on a lookup and a thousand
// events queued, Close gives up at its deadline: the lookup under way is
// abandoned, no further one is made, and the rest is counted as dropped
// and logged without a BSN.
func TestCloseIsBounded(t *testing.T) {
	rules := only(func(r *detect.Rules) { r.NoRelationship.Lookback = 30 * 24 * time.Hour })
	const n = 1000
	cases := []struct {
		name    string
		opts    detect.RunnerOptions
		close   func(r *detect.Runner) error
		wantErr error
	}{
		{"Shutdown with a deadline", detect.RunnerOptions{}, func(r *detect.Runner) error {
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			return r.Shutdown(ctx)
		}, context.DeadlineExceeded},
		{"Close after CloseTimeout", detect.RunnerOptions{CloseTimeout: 50 * time.Millisecond}, func(r *detect.Runner) error {
			r.Close()
			return nil
		}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rel := newStuck("Registered")
			// The lookup's own limit is far away: only Close ends it.
			d, err := detect.New(rules, detect.Options{Relations: rel, LookupTimeout: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			st := mustStore(t)
			var (
				logs    syncBuffer
				dropped atomic.Int32
			)
			opts := tc.opts
			opts.Store, opts.Queue = st, 2*n
			opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			opts.OnDropped = func(k int) { dropped.Add(int32(k)) }
			r := detect.Start(d, opts)
			evs := permittedQueries(n)
			r.Offer(evs)
			select {
			case <-rel.started:
			case <-time.After(10 * time.Second):
				t.Fatal("the detector never asked the index")
			}
			closed := make(chan error, 1)
			go func() { closed <- tc.close(r) }()
			select {
			case err := <-closed:
				if !errors.Is(err, tc.wantErr) || (err == nil) != (tc.wantErr == nil) {
					t.Fatalf("close: %v, want %v", err, tc.wantErr)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Close did not return with a lookup stuck")
			}
			if got := dropped.Load(); got != n-1 {
				t.Errorf("%d dropped, want %d (all but the one under way)", got, n-1)
			}
			if c := rel.calls.Load(); c != 1 {
				t.Errorf("%d lookups, want 1: none after the deadline", c)
			}
			out := logs.String()
			if !strings.Contains(out, fmt.Sprintf("dropped=%d", n-1)) || !strings.Contains(out, "first="+evs[1].ID) {
				t.Errorf("log lacks the dropped count and first event:\n%s", out)
			}
			for _, b := range bsns {
				if strings.Contains(out, b) {
					t.Errorf("log names a BSN:\n%s", out)
				}
			}
			page, err := st.Search(context.Background(), store.Query{Type: "Flag", Limit: 10})
			if err != nil {
				t.Fatal(err)
			}
			if len(page.Resources) != 0 {
				t.Errorf("%d Flags from unchecked events", len(page.Resources))
			}
			// A second Close returns at once; so does Offer.
			r.Close()
			r.Offer(evs[:1])
		})
	}
}

// TestSplitSearchCountsPatients: a named employee's search about several
// patients, recorded as one event per patient (Recorder.RecordAll), counts
// each patient towards the distinct-patients rule.
func TestSplitSearchCountsPatients(t *testing.T) {
	rules := detect.Rules{MaxKeys: 100, MaxEvidence: 10}
	rules.DistinctPatients.Max, rules.DistinctPatients.Window = 2, time.Hour
	d, err := detect.New(rules, detect.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var hits []detect.Hit
	rec := audit.NewRecorder(mustStore(t), audit.Options{OnRecorded: func(evs []audit.Event) {
		for i := range evs {
			hits = append(hits, d.Observe(context.Background(), detect.FromEvent(&evs[i]))...)
		}
	}})
	employee := &audit.Agent{UZINumber: "11111116", CardType: "N", Role: "00.000", URA: "90000002"}
	var search []audit.Event
	for _, bsn := range bsns[:3] {
		search = append(search, audit.Event{Recorded: base, Interaction: "search-type", Status: 200, PatientBSN: bsn,
			Permit: boolp(true), Agent: employee, Resources: []string{"Consent/" + bsn + "/_history/1"}})
	}
	if err := rec.RecordAll(context.Background(), search); err != nil {
		t.Fatal(err)
	}
	rec.Close()
	if len(hits) != 1 || hits[0].Rule != detect.RuleDistinctPatients || len(hits[0].Evidence) != 3 {
		t.Fatalf("hits %+v, want one distinct-patients hit with the three events as evidence", hits)
	}
}
