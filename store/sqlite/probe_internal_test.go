package sqlite

import (
	"context"
	"fmt"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/schakelpunt/schakelpunt/fhir"
	"github.com/schakelpunt/schakelpunt/store"
)

// probeStore holds 60 Flags a0…a59 with a patient (p0, p1, p2 in turn),
// every other one active, every fourth tagged, and a date on four of five
// (two by two the same); a3 then moved to p1, a6 and a12 deleted. So
// patient p0 has 17 index rows.
func probeStore(t *testing.T) *Store {
	t.Helper()
	s, err := Open(context.Background(), filepath.Join(t.TempDir(), "probe.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx := context.Background()
	flag := func(i, patient int) store.Write {
		w := store.Write{Type: "Flag", ID: fmt.Sprint("a", i), Body: fmt.Appendf(nil, `{"resourceType":"Flag","n":%d}`, i)}
		w.Terms.Strings = []string{fhir.TermRefID("patient", fmt.Sprint("p", patient))}
		if i%2 == 0 {
			w.Terms.Strings = append(w.Terms.Strings, fhir.TermCode("status", "active"))
		}
		if i%4 == 0 {
			w.Terms.Strings = append(w.Terms.Strings, fhir.TermCode("tag", "t"))
		}
		if i%5 != 0 {
			lo := int64(i/2) * 1e6
			w.Terms.Dates = []fhir.DateTerm{{Param: "date", DateRange: fhir.DateRange{Lo: lo, Hi: lo + 1000}}}
		}
		return w
	}
	for i := range 60 {
		if _, err := s.Create(ctx, flag(i, i%3)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Update(ctx, flag(3, 1), 0); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a6", "a12"} {
		if _, err := s.Delete(ctx, "Flag", id, 0); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

var (
	probeP0   = fhir.Clause{Param: "patient", Strings: []string{fhir.TermRefID("patient", "p0")}}
	probeP1   = fhir.Clause{Param: "patient", Strings: []string{fhir.TermRefID("patient", "p1")}}
	probeNone = fhir.Clause{Param: "patient", Strings: []string{fhir.TermRefID("patient", "p9")}}
	// p0 or tagged: a resource with both has two index rows.
	probeP0OrTag = fhir.Clause{Param: "patient", Strings: []string{fhir.TermRefID("patient", "p0"), fhir.TermCode("tag", "t")}}
	probeActive  = fhir.Clause{Param: "status", Strings: []string{fhir.TermCode("status", "active")}}
	probeIDs     = fhir.Clause{Param: "_id", Strings: []string{fhir.TermCode("_id", "a0"), fhir.TermCode("_id", "a9"), fhir.TermCode("_id", "a15"), fhir.TermCode("_id", "a18")}}
	probeLate    = fhir.Clause{Param: "date", Dates: []fhir.DateCond{{Prefix: fhir.PrefixSa, DateRange: fhir.DateRange{Lo: 0, Hi: 20e6}}}}
	probeUpdated = fhir.Clause{Param: lastUpdated, Dates: []fhir.DateCond{{Prefix: fhir.PrefixGt, DateRange: fhir.DateRange{Lo: 0, Hi: 0}}}}
	// Strings and dates in one clause: it cannot drive.
	probeMixed = fhir.Clause{Param: "date", Strings: []string{fhir.TermCode("status", "active")}, Dates: probeLate.Dates}
)

// The plan a search runs: a query's only drivable clause drives when it
// has fewer index rows than driveLimit, as plan decides when it counts
// them in a statement of its own.
func TestProbePlan(t *testing.T) {
	s := probeStore(t)
	ctx := context.Background()
	var n int
	if err := s.rdb.QueryRowContext(ctx, `SELECT COUNT(*) FROM terms WHERE type = 'Flag' AND term = ?`, probeP0.Strings[0]).Scan(&n); err != nil || n != 17 {
		t.Fatalf("p0 has %d index rows (%v), want 17", n, err)
	}
	for _, tc := range []struct {
		name       string
		clauses    []fhir.Clause
		driveLimit int
		driver     int
	}{
		{"one under the limit", []fhir.Clause{probeP0}, 18, 0},
		{"one at the limit", []fhir.Clause{probeP0}, 17, -1},
		{"one over the limit", []fhir.Clause{probeP0}, 16, -1},
		{"one, never drive", []fhir.Clause{probeP0}, 0, -1},
		{"one, default limit", []fhir.Clause{probeP0}, driveLimit, 0},
		{"none matching", []fhir.Clause{probeNone}, 1, 0},
		{"one after one that cannot drive", []fhir.Clause{probeIDs, probeP0}, 18, 1},
		{"one after one that cannot drive, at the limit", []fhir.Clause{probeMixed, probeP0}, 17, -1},
		{"dates under the limit", []fhir.Clause{probeUpdated, probeLate}, driveLimit, 1},
		{"dates over the limit", []fhir.Clause{probeLate}, 5, -1},
		{"two, the rarer drives", []fhir.Clause{probeActive, probeP0}, driveLimit, 1},
		{"two over the limit", []fhir.Clause{probeActive, probeP0}, 17, -1},
		{"nothing to drive", []fhir.Clause{probeIDs}, driveLimit, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s.driveLimit = tc.driveLimit
			q := store.Query{Type: "Flag", Clauses: tc.clauses, Limit: 10}
			_, driver, err := s.searchPlanned(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			want, err := s.plan(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			if driver != tc.driver || want != tc.driver {
				t.Errorf("driver %d, plan %d, want %d", driver, want, tc.driver)
			}
		})
	}
}

// A search returns the pages it returned when plan counted in a statement
// of its own, whichever plan runs.
func TestProbeSamePages(t *testing.T) {
	s := probeStore(t)
	ctx := context.Background()
	queries := []struct {
		name    string
		clauses []fhir.Clause
	}{
		{"term", []fhir.Clause{probeP0}},
		{"terms, some twice", []fhir.Clause{probeP0OrTag}},
		{"term and ids", []fhir.Clause{probeP0, probeIDs}},
		{"lastUpdated and term", []fhir.Clause{probeUpdated, probeP1}},
		{"mixed clause and term", []fhir.Clause{probeMixed, probeP1}},
		{"dates", []fhir.Clause{probeLate}},
		{"two terms", []fhir.Clause{probeP0, probeActive}},
		{"no match", []fhir.Clause{probeNone}},
		{"everything", nil},
	}
	sorts := []struct {
		name string
		sort *fhir.SortKey
	}{
		{"by lastUpdated", nil},
		{"by lastUpdated desc", &fhir.SortKey{Param: lastUpdated, Desc: true}},
		{"by date", &fhir.SortKey{Param: "date"}},
		{"by date desc", &fhir.SortKey{Param: "date", Desc: true}},
	}
	for _, qc := range queries {
		for _, sc := range sorts {
			for _, limit := range []int{0, 4} {
				t.Run(fmt.Sprintf("%s %s limit %d", qc.name, sc.name, limit), func(t *testing.T) {
					for _, dl := range []int{0, 1, 5, 16, 17, 18, driveLimit} {
						s.driveLimit = dl
						q := store.Query{Type: "Flag", Clauses: qc.clauses, Sort: sc.sort, Limit: limit}
						for page := 0; ; page++ {
							got, driver, err := s.searchPlanned(ctx, q)
							if err != nil {
								t.Fatalf("driveLimit %d page %d: %v", dl, page, err)
							}
							planned, err := s.plan(ctx, q)
							if err != nil {
								t.Fatal(err)
							}
							want, err := s.searchBy(ctx, q, planned)
							if err != nil {
								t.Fatal(err)
							}
							if driver != planned {
								t.Errorf("driveLimit %d page %d: driver %d, plan %d", dl, page, driver, planned)
							}
							if !reflect.DeepEqual(got, want) {
								t.Fatalf("driveLimit %d page %d:\n got %s\nwant %s", dl, page, pageIDs(got), pageIDs(want))
							}
							if got.Next == nil {
								break
							}
							q.After = got.Next
						}
					}
				})
			}
		}
	}
}

func pageIDs(p store.Page) string {
	ids := make([]string, 0, len(p.Resources))
	for _, r := range p.Resources {
		ids = append(ids, r.ID)
	}
	return fmt.Sprint(ids, " next ", p.Next)
}
