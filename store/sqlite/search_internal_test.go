package sqlite

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/schakelpunt/schakelpunt/fhir"
	"github.com/schakelpunt/schakelpunt/store"
)

// The plans of typical searches of the generic tables (AuditEvents have
// their own, see TestAuditSearchPlans): a rare term drives, a common one lets
// the sort order drive; nothing scans a whole type when a rare clause is
// there.
func TestSearchPlans(t *testing.T) {
	s, err := Open(context.Background(), filepath.Join(t.TempDir(), "plans.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	const n = 3000
	var wg sync.WaitGroup
	for g := range 50 { // concurrent writers share commits
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < n; i += 50 {
				w := store.Write{Type: "Flag", ID: fmt.Sprint("a", i), Body: []byte(`{"resourceType":"Flag"}`),
					Terms: fhir.Terms{
						Strings: []string{"patient#id#p" + fmt.Sprint(i%1000), "status#c#active"},
						Dates:   []fhir.DateTerm{{Param: "date", DateRange: fhir.DateRange{Lo: int64(i) * 1e6, Hi: int64(i)*1e6 + 1000}}},
					}}
				if _, err := s.Create(ctx, w); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	rare := fhir.Clause{Param: "patient", Strings: []string{"patient#id#p7"}}
	common := fhir.Clause{Param: "status", Strings: []string{"status#c#active"}}
	recent := fhir.Clause{Param: "date", Dates: []fhir.DateCond{{Prefix: fhir.PrefixSa, DateRange: fhir.DateRange{Lo: 0, Hi: (n - 10) * 1e6}}}}
	byDate := &fhir.SortKey{Param: "date", Desc: true}
	for _, tc := range []struct {
		name    string
		q       store.Query
		driver  int
		mustNot []string
	}{
		{"rare term", store.Query{Clauses: []fhir.Clause{rare}}, 0, []string{"current_updated", "SCAN"}},
		{"rare and common terms", store.Query{Clauses: []fhir.Clause{common, rare}}, 1, []string{"current_updated", "SCAN"}},
		{"rare term by date", store.Query{Clauses: []fhir.Clause{rare}, Sort: byDate}, 0, []string{"current_updated", "SCAN"}},
		{"recent dates", store.Query{Clauses: []fhir.Clause{common, recent}}, 1, []string{"current_updated", "SCAN"}},
		{"common term", store.Query{Clauses: []fhir.Clause{common}}, -1, []string{"TEMP B-TREE"}},
		{"everything", store.Query{}, -1, []string{"TEMP B-TREE", "SCAN"}},
		{"everything by date", store.Query{Sort: byDate}, -1, []string{"TEMP B-TREE", "SCAN"}},
		{"common term by date", store.Query{Clauses: []fhir.Clause{common}, Sort: byDate, After: &store.Cursor{Key: 5e8, ID: "a500"}}, -1, []string{"TEMP B-TREE", "SCAN"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := tc.q
			q.Type, q.Limit = "Flag", 50
			driver, err := s.plan(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			if driver != tc.driver {
				t.Errorf("driver %d, want %d", driver, tc.driver)
			}
			keyed := false
			if driver < 0 && q.Sort != nil {
				if keyed, err = s.rlisted.has(ctx, q.Type, q.Sort.Param); err != nil || !keyed {
					t.Fatalf("sort keys of %s listed: %v, %v", q.Sort.Param, keyed, err)
				}
			}
			query, args := searchSQL(q, driver, keyed)
			plan := explain(t, s, query, args)
			for _, bad := range tc.mustNot {
				if strings.Contains(plan, bad) {
					t.Errorf("plan uses %s:\n%s\n%s", bad, query, plan)
				}
			}
			if d := soleDrivable(q); d >= 0 && driver >= 0 {
				// The same search after the count, in one statement:
				// the count and the search read their subqueries in
				// turn (co-routines), which is no scan of a table.
				query, args := probeSQL(q, d, s.driveLimit)
				plan := explain(t, s, query, args)
				plan = regexp.MustCompile(`(?m)^SCAN \(subquery-\d+\)\n`).ReplaceAllString(plan, "")
				for _, bad := range tc.mustNot {
					if strings.Contains(plan, bad) {
						t.Errorf("probe plan uses %s:\n%s\n%s", bad, query, plan)
					}
				}
			}
			if n, err := s.Count(ctx, q); err != nil || n == 0 {
				t.Errorf("count %d, %v", n, err)
			}
		})
	}
}

func explain(t *testing.T, s *Store, query string, args []any) string {
	t.Helper()
	rows, err := s.rdb.QueryContext(context.Background(), "EXPLAIN QUERY PLAN "+query, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var id, parent, notUsed int
		var detail string
		if err := rows.Scan(&id, &parent, &notUsed, &detail); err != nil {
			t.Fatal(err)
		}
		b.WriteString(detail + "\n")
	}
	return b.String()
}
