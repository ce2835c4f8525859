package sqlite

// An internal test: it lowers purgeChunk so that the contract suite's
// purge spans several chunks with few events (quick under -race).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/schakelpunt/schakelpunt/fhir"
	"github.com/schakelpunt/schakelpunt/store"
	"github.com/schakelpunt/schakelpunt/store/storetest"
)

func mustOpenAudit(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(context.Background(), path, Options{})
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	return s
}

func TestAuditContract(t *testing.T) {
	defer func(n, f int) { purgeChunk, flushEvents = n, f }(purgeChunk, flushEvents)
	purgeChunk = 100
	// Postings flushed now and then (7 events), and only at Close.
	for _, flush := range []int{7, 1 << 30} {
		t.Run(fmt.Sprint("flush ", flush), func(t *testing.T) {
			flushEvents = flush
			storetest.RunAuditWith(t, storetest.Harness{
				Open: func(t *testing.T) store.Store {
					return mustOpenAudit(t, filepath.Join(t.TempDir(), "schakelpunt.db"))
				},
				Reopen: func(t *testing.T, closed store.Store) store.Store {
					return mustOpenAudit(t, closed.(*Store).Path())
				},
			}, storetest.AuditOptions{PurgeEvents: 450})
		})
	}
}

// Postings not yet flushed are gathered again from the events' terms when
// the store opens after a crash (a copy of the files taken while it is
// open, as a crash leaves them).
func TestAuditPostingsAfterCrash(t *testing.T) {
	dir := t.TempDir()
	s := mustOpenAudit(t, filepath.Join(dir, "schakelpunt.db"))
	defer s.Close()
	ctx := context.Background()
	recs := storetest.NewAuditRecords(t, store.ChainHead{}, 12)
	if err := s.AppendAudit(ctx, recs); err != nil {
		t.Fatal(err)
	}
	if n := len(dumpTable(t, s, "audit_index")); n != 0 {
		t.Fatalf("%d postings written before %d events gathered", n, flushEvents)
	}
	crashed := filepath.Join(dir, "crashed.db")
	for _, suffix := range []string{"", "-wal"} {
		b, err := os.ReadFile(s.Path() + suffix)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(crashed+suffix, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c := mustOpenAudit(t, crashed)
	defer c.Close()
	for _, st := range []*Store{s, c} {
		sr, err := fhir.ParseSearch("AuditEvent", []fhir.Param{{Name: "patient:identifier", Value: fhir.SystemBSN + "|999911120"}}, false)
		if err != nil {
			t.Fatal(err)
		}
		q := store.Query{Type: "AuditEvent", Clauses: sr.Clauses}
		seqs, driven, err := st.auditDriver(ctx, q)
		if err != nil || !driven || len(seqs) != 4 {
			t.Fatalf("postings of a patient: %v, driven %v, %v; want 4", seqs, driven, err)
		}
		if n, err := st.Count(ctx, q); err != nil || n != 4 {
			t.Fatalf("count %d, %v; want 4", n, err)
		}
	}
}

// A batch refused for a taken id leaves nothing behind: no event, no
// posting, no head; the same batch with fresh ids goes in after.
func TestAuditRefusedLeavesNothing(t *testing.T) {
	s := mustOpenAudit(t, filepath.Join(t.TempDir(), "schakelpunt.db"))
	defer s.Close()
	ctx := context.Background()
	recs := storetest.NewAuditRecords(t, store.ChainHead{}, 3)
	bad := append([]store.AuditRecord(nil), recs...)
	bad[2].Write.ID = bad[0].Write.ID
	if err := s.AppendAudit(ctx, bad); !errors.Is(err, store.ErrExists) {
		t.Fatalf("a batch with a duplicate id: %v, want ErrExists", err)
	}
	for _, table := range []string{"audit_chain", "audit_index", "audit_batches", "audit_marks"} {
		if rows := dumpTable(t, s, table); len(rows) != 0 {
			t.Fatalf("%s after a refused batch: %v", table, rows)
		}
	}
	if err := s.AppendAudit(ctx, recs); err != nil {
		t.Fatal(err)
	}
	if rows := dumpTable(t, s, "audit_chain"); len(rows) != 3 {
		t.Fatalf("audit_chain has %d rows, want 3", len(rows))
	}
}

// The writer keeps the chain's head between appends. When another
// process (a command-line tool takes no serving lock) appends to the
// same file in between, the next append on a stale head is a chain
// conflict, not a fork, and after reloading the head it goes on.
func TestAuditHeadMovedByAnotherProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "schakelpunt.db")
	a := mustOpenAudit(t, path)
	defer a.Close()
	b := mustOpenAudit(t, path)
	defer b.Close()
	ctx := context.Background()

	first := storetest.NewAuditRecords(t, store.ChainHead{}, 1)
	if err := a.AppendAudit(ctx, first); err != nil {
		t.Fatal(err)
	}
	head := store.ChainHead{Seq: first[0].Seq, Hash: first[0].Hash}
	theirs := storetest.NewAuditRecords(t, head, 1)
	if err := b.AppendAudit(ctx, theirs); err != nil {
		t.Fatal(err)
	}
	ours := storetest.NewAuditRecords(t, head, 1)
	ours[0].Write.ID = "ours-2"
	if err := a.AppendAudit(ctx, ours); !errors.Is(err, store.ErrChainConflict) {
		t.Fatalf("append on a head another process moved: %v, want ErrChainConflict", err)
	}

	head, err := a.AuditHead(ctx)
	if err != nil || head.Seq != 2 || head.Hash != theirs[0].Hash {
		t.Fatalf("AuditHead = %+v, %v; want the other process's link 2", head, err)
	}
	next := storetest.NewAuditRecords(t, head, 1)
	if err := a.AppendAudit(ctx, next); err != nil {
		t.Fatalf("append after reloading the head: %v", err)
	}
	got, err := a.ScanAudit(ctx, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{first[0].Write.ID, theirs[0].Write.ID, next[0].Write.ID}
	if len(got) != len(want) {
		t.Fatalf("%d events in the chain, want %d", len(got), len(want))
	}
	prev := ""
	for i, e := range got {
		if e.Seq != int64(i+1) || e.Prev != prev || e.Resource.ID != want[i] {
			t.Fatalf("link %d = seq %d, prev %.8s, id %s; want seq %d, prev %.8s, id %s", i, e.Seq, e.Prev, e.Resource.ID, i+1, prev, want[i])
		}
		prev = e.Hash
	}
}

// Generic writes of AuditEvents are refused: they go through AppendAudit.
func TestAuditEventNotWritable(t *testing.T) {
	s := mustOpenAudit(t, filepath.Join(t.TempDir(), "schakelpunt.db"))
	defer s.Close()
	w := storetest.NewAuditRecords(t, store.ChainHead{}, 1)[0].Write
	ctx := context.Background()
	for name, call := range map[string]func() error{
		"create": func() error { _, err := s.Create(ctx, w); return err },
		"update": func() error { _, err := s.Update(ctx, w, 0); return err },
		"delete": func() error { _, err := s.Delete(ctx, w.Type, w.ID, 0); return err },
	} {
		if err := call(); err == nil {
			t.Errorf("%s of an AuditEvent succeeded", name)
		}
	}
}

// ScanAudit with a limit of 0 or less returns every entry.
func TestScanAuditNoLimit(t *testing.T) {
	s := mustOpenAudit(t, filepath.Join(t.TempDir(), "schakelpunt.db"))
	defer s.Close()
	ctx := context.Background()
	if err := s.AppendAudit(ctx, storetest.NewAuditRecords(t, store.ChainHead{}, 5)); err != nil {
		t.Fatal(err)
	}
	for _, limit := range []int{0, -1} {
		got, err := s.ScanAudit(ctx, 1, limit)
		if err != nil || len(got) != 4 {
			t.Fatalf("ScanAudit(1, %d): %d entries, %v; want 4", limit, len(got), err)
		}
	}
}

// dumpTable renders every row of a table, sorted.
func dumpTable(t *testing.T, s *Store, table string) []string {
	t.Helper()
	rows, err := s.rdb.Query("SELECT * FROM " + table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var out []string
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		for i, v := range vals {
			if b, ok := v.([]byte); ok {
				vals[i] = fmt.Sprintf("%q", b)
			}
		}
		out = append(out, fmt.Sprint(vals...))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// The writer's stamp of an audit body (meta spliced in after the id) is
// byte for byte store.Stamp's, and bodies of any other shape go through
// store.Stamp itself.
func TestAuditStampAsStamp(t *testing.T) {
	at := time.Date(2026, 11, 22, 10, 15, 2, 123456000, time.UTC)
	rec := storetest.NewAuditRecords(t, store.ChainHead{}, 1)[0]
	body := string(rec.Write.Body)
	rest := strings.TrimPrefix(body, `{"resourceType":"AuditEvent","id":"ae-1",`)
	for _, tc := range []struct {
		name string
		body string
		fast bool
	}{
		{"as package audit writes it", body, true},
		{"an id that needs escaping", `{"resourceType":"AuditEvent","id":"a\"\u003cb\u003e",` + rest, true},
		{"an id escaped otherwise than store.Stamp does", `{"resourceType":"AuditEvent","id":"a\"<b>",` + rest, false},
		{"white space", `{"resourceType":"AuditEvent","id":"ae-1", ` + rest, false},
		{"white space between members", strings.Replace(body, `,"action"`, `, "action"`, 1), false},
		{"meta of its own", `{"resourceType":"AuditEvent","id":"ae-1","meta":{"source":"x"},` + rest, false},
		{"a second id", `{"resourceType":"AuditEvent","id":"ae-1","id":"other",` + rest, false},
		{"a second resourceType", `{"resourceType":"AuditEvent","id":"ae-1",` + strings.TrimSuffix(rest, "}") + `,"resourceType":"Patient"}`, false},
		{"an escaped key", `{"resourceType":"AuditEvent","id":"ae-1","\u0069d":"x",` + rest, false},
		{"another id first", strings.Replace(body, `"id":"ae-1"`, `"id":"other"`, 1), false},
		{"no id", `{"resourceType":"AuditEvent",` + rest, false},
		{"id not second", `{"id":"ae-1","resourceType":"AuditEvent",` + rest, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := rec.Write
			w.Body = []byte(tc.body)
			if strings.HasPrefix(tc.name, "an id") {
				w.ID = "a\"<b>"
			}
			row := auditRow{rec: store.AuditRecord{Write: w}}
			row.head, row.tail = splitForMeta(w.ID, w.Body)
			if (row.head != nil) != tc.fast {
				t.Fatalf("fast stamp %v, want %v", row.head != nil, tc.fast)
			}
			got, err := stampAudit(&row, at)
			if err != nil {
				t.Fatal(err)
			}
			want, _, err := store.Stamp(w, 1, at)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want.Body) {
				t.Fatalf("stamped\n got %s\nwant %s", got, want.Body)
			}
		})
	}
}

// Date bounds on the sort date hold only while each event has one date
// term that does not end before it starts: an event with two, or with an
// inverted one, turns them off for good, and searches still find it by
// any of its dates.
func TestAuditDateBoundsIrregular(t *testing.T) {
	day := func(d int) fhir.DateRange {
		lo := time.Date(2026, 1, d, 0, 0, 0, 0, time.UTC)
		return fhir.DateRange{Lo: lo.UnixMicro(), Hi: lo.AddDate(0, 0, 1).UnixMicro()}
	}
	for _, tc := range []struct {
		name  string
		dates []fhir.DateTerm
		query string // finds the irregular event, not the regular one
	}{
		{"two dates", []fhir.DateTerm{{Param: "date", DateRange: day(1)}, {Param: "date", DateRange: day(20)}}, "date=sa2026-01-15"},
		{"inverted", []fhir.DateTerm{{Param: "date", DateRange: fhir.DateRange{Lo: day(20).Lo, Hi: day(2).Hi}}}, "date=eb2026-01-05"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "schakelpunt.db")
			s := mustOpenAudit(t, path)
			ctx := context.Background()
			recs := storetest.NewAuditRecords(t, store.ChainHead{}, 2)
			recs[0].Write.Terms.Dates = []fhir.DateTerm{{Param: "date", DateRange: day(10)}}
			recs[1].Write.Terms.Dates = tc.dates
			if err := s.AppendAudit(ctx, recs); err != nil {
				t.Fatal(err)
			}
			check := func(s *Store) {
				t.Helper()
				if _, _, ok := s.dateBounds(fhir.Clause{Param: "date", Dates: []fhir.DateCond{{Prefix: fhir.PrefixSa, DateRange: day(15)}}}); ok {
					t.Fatal("date bounds used with an irregular event stored")
				}
				sr, err := fhir.ParseSearch("AuditEvent", parseTestQuery(tc.query+"&_sort=-date"), false)
				if err != nil {
					t.Fatal(err)
				}
				for _, limit := range []int{1, 10} {
					page, err := s.Search(ctx, store.Query{Type: "AuditEvent", Clauses: sr.Clauses, Sort: sr.Sort, Limit: limit})
					if err != nil || len(page.Resources) != 1 || page.Resources[0].ID != recs[1].Write.ID {
						t.Fatalf("%s: %v, %v", tc.query, page.Resources, err)
					}
				}
			}
			check(s)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = mustOpenAudit(t, path)
			defer s.Close()
			check(s)
		})
	}
}

func parseTestQuery(q string) []fhir.Param {
	var ps []fhir.Param
	for _, kv := range strings.Split(q, "&") {
		k, v, _ := strings.Cut(kv, "=")
		ps = append(ps, fhir.Param{Name: k, Value: v})
	}
	return ps
}
