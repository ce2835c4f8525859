package sqlite_test

import (
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/schakelpunt/schakelpunt/fhir"
	"github.com/schakelpunt/schakelpunt/store"
	"github.com/schakelpunt/schakelpunt/store/storetest"
)

// CopyFixture copies testdata/name to a temporary file and returns its
// path.
func CopyFixture(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// v1Event is an AuditEvent as a schema 1 database keeps it.
type v1Event struct {
	seq        int64
	id         string
	prev, hash string
	updated    int64
	body       []byte
}

// readV1 reads the chained events and marks of a schema 1 database.
func readV1(t *testing.T, path string) ([]v1Event, map[string]store.ChainHead) {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var v int
	if err := db.QueryRow("PRAGMA user_version").Scan(&v); err != nil || v != 1 {
		t.Fatalf("fixture schema version %d, %v; want 1", v, err)
	}
	rows, err := db.Query(`SELECT a.seq, a.id, a.prev, a.hash, v.updated, v.body FROM audit_chain a
		JOIN current c ON c.type = 'AuditEvent' AND c.id = a.id JOIN versions v ON v.updated = c.updated ORDER BY a.seq`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var evs []v1Event
	for rows.Next() {
		var e v1Event
		if err := rows.Scan(&e.seq, &e.id, &e.prev, &e.hash, &e.updated, &e.body); err != nil {
			t.Fatal(err)
		}
		evs = append(evs, e)
	}
	marks := map[string]store.ChainHead{}
	mr, err := db.Query(`SELECT name, seq, hash FROM audit_marks`)
	if err != nil {
		t.Fatal(err)
	}
	defer mr.Close()
	for mr.Next() {
		var name string
		var h store.ChainHead
		if err := mr.Scan(&name, &h.Seq, &h.Hash); err != nil {
			t.Fatal(err)
		}
		marks[name] = h
	}
	return evs, marks
}

// A database written by schema 1 (testdata/schema1.db: 30 events by the
// recorder of that release, the oldest 5 removed by retention, and a
// Consent) opens migrated: the same chain, events, bodies and lastUpdated,
// the same search results, the Consent untouched, and the chain goes on.
func TestMigrateSchema1(t *testing.T) {
	path := CopyFixture(t, "schema1.db")
	before, marks := readV1(t, path)
	if len(before) != 25 || marks["checkpoint"].Seq != 5 || marks["head"].Seq != 30 {
		t.Fatalf("fixture: %d events, marks %v", len(before), marks)
	}
	s := MustOpen(t, path)
	defer s.Close()
	ctx := context.Background()

	if h, err := s.AuditHead(ctx); err != nil || h != marks["head"] {
		t.Fatalf("head %v, %v; want %v", h, err, marks["head"])
	}
	if h, err := s.AuditCheckpoint(ctx); err != nil || h != marks["checkpoint"] {
		t.Fatalf("checkpoint %v, %v; want %v", h, err, marks["checkpoint"])
	}
	entries, err := s.ScanAudit(ctx, 0, 0)
	if err != nil || len(entries) != len(before) {
		t.Fatalf("ScanAudit: %d entries, %v; want %d", len(entries), err, len(before))
	}
	type hit struct {
		id    string
		key   int64
		terms fhir.Terms
		res   store.Resource
	}
	var all []hit
	for i, e := range entries {
		b := before[i]
		if e.Seq != b.seq || e.Prev != b.prev || e.Hash != b.hash || e.Resource.ID != b.id ||
			e.Resource.Updated.UnixMicro() != b.updated || !bytes.Equal(e.Resource.Body, b.body) {
			t.Fatalf("event %d after the migration differs: %+v", b.seq, e)
		}
		r, err := s.Read(ctx, "AuditEvent", b.id)
		if err != nil || !bytes.Equal(r.Body, b.body) || r.Version != 1 {
			t.Fatalf("Read %s: version %d, %v", b.id, r.Version, err)
		}
		var doc map[string]any
		dec := json.NewDecoder(bytes.NewReader(b.body))
		dec.UseNumber()
		if err := dec.Decode(&doc); err != nil {
			t.Fatal(err)
		}
		_, terms, err := store.Stamp(store.Write{Type: "AuditEvent", ID: b.id, Body: b.body, Terms: fhir.ExtractTerms("AuditEvent", doc)}, 1, r.Updated)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, hit{id: b.id, terms: terms, res: r})
	}
	// Searches find what the reference semantics find over the fixture.
	for _, q := range []string{
		"patient:identifier=http://fhir.nl/fhir/NamingSystem/bsn|999900006&_sort=-date",
		"agent:identifier=http://fhir.nl/fhir/NamingSystem/uzi-nr-pers|11111111",
		"outcome=4",
		"subtype=search-type&outcome=0&_sort=date",
		"_sort=-_lastUpdated",
	} {
		t.Run(q, func(t *testing.T) {
			sr, err := fhir.ParseSearch("AuditEvent", parseParams(t, q), false)
			if err != nil {
				t.Fatal(err)
			}
			query := store.Query{Type: "AuditEvent", Clauses: sr.Clauses, Sort: sr.Sort, Limit: 1000}
			var want []hit
			for _, h := range all {
				if store.Matches(query.Clauses, h.terms) {
					h.key = store.SortValue(query.Sort, h.res, h.terms)
					want = append(want, h)
				}
			}
			slices.SortFunc(want, func(a, b hit) int {
				c := cmp.Or(cmp.Compare(a.key, b.key), cmp.Compare(a.id, b.id))
				if query.Sort != nil && query.Sort.Desc {
					return -c
				}
				return c
			})
			page, err := s.Search(ctx, query)
			if err != nil {
				t.Fatal(err)
			}
			var got, wantIDs []string
			for _, r := range page.Resources {
				got = append(got, r.ID)
			}
			for _, h := range want {
				wantIDs = append(wantIDs, h.id)
			}
			if len(wantIDs) == 0 || len(wantIDs) == len(all) && len(query.Clauses) > 0 {
				t.Fatalf("the fixture gives %d of %d events: pick a query that tells", len(wantIDs), len(all))
			}
			if !slices.Equal(got, wantIDs) {
				t.Fatalf("got %v\nwant %v", got, wantIDs)
			}
		})
	}
	if _, err := s.Read(ctx, "Consent", "c1"); err != nil {
		t.Fatalf("Consent after the migration: %v", err)
	}
	// The chain goes on, and the store opens again without migrating.
	more := storetest.NewAuditRecords(t, marks["head"], 2)
	if err := s.AppendAudit(ctx, more); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = MustOpen(t, path)
	defer s.Close()
	if entries, err := s.ScanAudit(ctx, 0, 0); err != nil || len(entries) != len(before)+2 {
		t.Fatalf("after reopening: %d entries, %v", len(entries), err)
	}
}

// parseParams splits a query string (without escapes) into parameters.
func parseParams(t *testing.T, q string) []fhir.Param {
	t.Helper()
	var ps []fhir.Param
	for kv := range bytes.SplitSeq([]byte(q), []byte("&")) {
		k, v, ok := bytes.Cut(kv, []byte("="))
		if !ok {
			t.Fatalf("bad parameter %q", kv)
		}
		ps = append(ps, fhir.Param{Name: string(k), Value: string(v)})
	}
	return ps
}
