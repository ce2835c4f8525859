package sqlite

// An internal test: it lowers purgeChunk so that the contract suite's
// purge spans several chunks with few events (quick under -race).

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

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
	defer func(n int) { purgeChunk = n }(purgeChunk)
	purgeChunk = 100
	storetest.RunAuditWith(t, storetest.Harness{
		Open: func(t *testing.T) store.Store {
			return mustOpenAudit(t, filepath.Join(t.TempDir(), "schakelpunt.db"))
		},
		Reopen: func(t *testing.T, closed store.Store) store.Store {
			return mustOpenAudit(t, closed.(*Store).Path())
		},
	}, storetest.AuditOptions{PurgeEvents: 450})
}

// A refused batch leaves no trace in the writer's cache either: when the
// first AuditEvent ever written is in a batch that is refused after it was
// applied (a taken id further on), the sort keys of AuditEvent are still
// listed by the next batch that succeeds.
func TestAuditRefusalKeepsSortKeysListed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "schakelpunt.db")
	s := mustOpenAudit(t, path)
	defer s.Close()
	ctx := context.Background()
	recs := storetest.NewAuditRecords(t, store.ChainHead{}, 3)
	bad := append([]store.AuditRecord(nil), recs...)
	bad[2].Write.ID = bad[0].Write.ID
	if err := s.AppendAudit(ctx, bad); err == nil {
		t.Fatal("a batch with a duplicate id was accepted")
	}
	if err := s.AppendAudit(ctx, recs); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var listed, keys int
	if err := db.QueryRow(`SELECT COUNT(*) FROM sortparams WHERE type = 'AuditEvent' AND param = 'date'`).Scan(&listed); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow(`SELECT COUNT(*) FROM sortkeys WHERE type = 'AuditEvent' AND param = 'date'`).Scan(&keys); err != nil {
		t.Fatal(err)
	}
	if listed != 1 || keys != 3 {
		t.Fatalf("AuditEvent.date listed %d times with %d sort keys, want 1 and 3", listed, keys)
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

// AppendAudit writes the rows Create writes for the same AuditEvent:
// versions, current, terms, dates, sort keys (and the chain beside them).
func TestAuditRowsAsCreate(t *testing.T) {
	at := time.Date(2026, 11, 22, 10, 15, 2, 123456000, time.UTC)
	open := func(name string) *Store {
		s, err := Open(context.Background(), filepath.Join(t.TempDir(), name), Options{Now: func() time.Time { return at }})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	created, appended := open("created.db"), open("appended.db")
	recs := storetest.NewAuditRecords(t, store.ChainHead{}, 5)
	for _, r := range recs {
		if _, err := created.Create(context.Background(), r.Write); err != nil {
			t.Fatal(err)
		}
	}
	if err := appended.AppendAudit(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	for _, table := range []string{"versions", "current", "terms", "dates", "sortkeys", "sortparams"} {
		want, got := dumpTable(t, created, table), dumpTable(t, appended, table)
		if len(want) == 0 {
			t.Fatalf("no rows in %s", table)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s after AppendAudit:\n%s\nafter Create:\n%s", table, strings.Join(got, "\n"), strings.Join(want, "\n"))
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
