package audit_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/schakelpunt/schakelpunt/audit"
	"github.com/schakelpunt/schakelpunt/fhir"
	"github.com/schakelpunt/schakelpunt/profiles"
	"github.com/schakelpunt/schakelpunt/store"
	"github.com/schakelpunt/schakelpunt/store/sqlite"
)

// MustOpenStore opens the embedded store on a fresh file under tb's temp
// dir and closes it when tb ends.
func MustOpenStore(tb testing.TB) *sqlite.Store {
	tb.Helper()
	return mustOpenAt(tb, filepath.Join(tb.TempDir(), "schakelpunt.db"))
}

func mustOpenAt(tb testing.TB, path string) *sqlite.Store {
	tb.Helper()
	s, err := sqlite.Open(context.Background(), path, sqlite.Options{})
	if err != nil {
		tb.Fatalf("open %s: %v", path, err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	return s
}

// MustRecorder starts a recorder on log that is closed when tb ends.
func MustRecorder(tb testing.TB, log store.AuditLog, opts audit.Options) *audit.Recorder {
	tb.Helper()
	r := audit.NewRecorder(log, opts)
	tb.Cleanup(func() { _ = r.Close() })
	return r
}

// countingLog wraps an AuditLog: it counts AppendAudit calls and the
// records they carried, and lets a test spoil or fail a call.
type countingLog struct {
	store.AuditLog
	calls     atomic.Int64
	records   atomic.Int64
	conflicts atomic.Int64 // appends refused with ErrChainConflict
	mu        sync.Mutex
	sizes     []int
	// hook, when set, runs before each append; it may change the records
	// or return an error instead of appending.
	hook func(recs []store.AuditRecord) ([]store.AuditRecord, error)
}

func (c *countingLog) AppendAudit(ctx context.Context, recs []store.AuditRecord) error {
	c.calls.Add(1)
	c.records.Add(int64(len(recs)))
	c.mu.Lock()
	c.sizes = append(c.sizes, len(recs))
	hook := c.hook
	c.mu.Unlock()
	if hook != nil {
		var err error
		if recs, err = hook(recs); err != nil {
			return err
		}
	}
	err := c.AuditLog.AppendAudit(ctx, recs)
	if errors.Is(err, store.ErrChainConflict) {
		c.conflicts.Add(1)
	}
	return err
}

func (c *countingLog) setHook(h func([]store.AuditRecord) ([]store.AuditRecord, error)) {
	c.mu.Lock()
	c.hook = h
	c.mu.Unlock()
}

func (c *countingLog) maxBatch() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := 0
	for _, n := range c.sizes {
		m = max(m, n)
	}
	return m
}

// seqIDs hands out ids id-1, id-2, ... so that a test knows the ids of
// events whose Record failed.
func seqIDs(prefix string) func() string {
	var n atomic.Int64
	return func() string { return fmt.Sprintf("%s-%d", prefix, n.Add(1)) }
}

// validator is built once: compiling the profiles takes a while.
var validator = sync.OnceValues(func() (*profiles.Validator, error) {
	codec, err := fhir.NewCodec()
	if err != nil {
		return nil, err
	}
	return profiles.New(codec)
})

var codec = sync.OnceValues(fhir.NewCodec)

// mustValidate checks body against the R4 base and our AuditEvent profile.
func mustValidate(t *testing.T, body []byte) {
	t.Helper()
	c, err := codec()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Parse(body, "AuditEvent"); err != nil {
		t.Errorf("base R4 validation: %v\n%s", err, body)
	}
	v, err := validator()
	if err != nil {
		t.Fatal(err)
	}
	if issues := v.Validate(context.Background(), body, profiles.ProfileAuditEvent); len(issues) > 0 {
		b, _ := json.MarshalIndent(issues, "", "  ")
		t.Errorf("profile %s: %s\n%s", profiles.ProfileAuditEvent, b, body)
	}
}

// scanAll returns the whole chain after the checkpoint.
func scanAll(t testing.TB, log store.AuditLog) []store.AuditEntry {
	t.Helper()
	cp, err := log.AuditCheckpoint(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []store.AuditEntry
	after := cp.Seq
	for {
		page, err := log.ScanAudit(context.Background(), after, 1000)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, page...)
		if len(page) < 1000 {
			return out
		}
		after = page[len(page)-1].Seq
	}
}

// mustVerify verifies the chain and fails unless it holds with checked
// events.
func mustVerify(t testing.TB, log store.AuditLog, checked int64) audit.Report {
	t.Helper()
	rep, err := audit.Verify(context.Background(), log)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if !rep.OK() {
		t.Fatalf("Verify: broken at %d (%s): %s", rep.Broken.Seq, rep.Broken.ID, rep.Broken.Reason)
	}
	if checked >= 0 && rep.Checked != checked {
		t.Fatalf("Verify checked %d events, want %d", rep.Checked, checked)
	}
	return rep
}

// decode parses a stored body.
func decode(t testing.TB, body []byte) map[string]any {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatalf("stored body: %v\n%s", err, body)
	}
	return doc
}

// fixed is the time of the fixtures.
var fixed = time.Date(2026, 11, 22, 10, 15, 2, 123_000_000, time.UTC)

// recordOne records ev and returns its stored resource.
func recordOne(t *testing.T, s *sqlite.Store, r *audit.Recorder, ev audit.Event) store.Resource {
	t.Helper()
	id, err := r.Record(context.Background(), ev)
	if err != nil {
		t.Fatalf("Record: %v", err)
	}
	res, err := s.Read(context.Background(), "AuditEvent", id)
	if err != nil {
		t.Fatalf("Read AuditEvent/%s: %v", id, err)
	}
	return res
}

// path follows dotted keys through a decoded JSON object and returns the
// string there ("" when absent).
func path(v any, p string) string {
	for _, k := range strings.Split(p, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return ""
		}
		v = m[k]
	}
	s, _ := v.(string)
	return s
}

// list returns the array at key k of a decoded JSON object.
func list(v any, k string) []any {
	m, _ := v.(map[string]any)
	l, _ := m[k].([]any)
	return l
}

// storeQuery is the store query of a parsed search, as the edge makes it.
func storeQuery(sr *fhir.Search) store.Query {
	return store.Query{Type: sr.Type, Clauses: sr.Clauses, Sort: sr.Sort, Limit: sr.Count}
}
