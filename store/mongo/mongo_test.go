package mongo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/schakelpunt/schakelpunt/fhir"
	"github.com/schakelpunt/schakelpunt/store"
)

// write builds a store.Write from a resource document, with its terms.
func write(tb testing.TB, typ, id string, doc map[string]any) store.Write {
	tb.Helper()
	doc["resourceType"] = typ
	b, err := json.Marshal(doc)
	if err != nil {
		tb.Fatal(err)
	}
	return store.Write{Type: typ, ID: id, Body: b, Terms: fhir.ExtractTerms(typ, doc)}
}

func consent(status, patient, dateTime string, period map[string]any) map[string]any {
	doc := map[string]any{"status": status, "patient": map[string]any{"reference": patient}}
	if dateTime != "" {
		doc["dateTime"] = dateTime
	}
	if period != nil {
		doc["provision"] = map[string]any{"period": period}
	}
	return doc
}

func TestIndexesCreated(t *testing.T) {
	db := freshDatabase(t)
	s := mustOpenDB(t, db, Options{})
	ctx := context.Background()
	// A second Open on the same database finds the indexes in place.
	mustOpenDB(t, db, Options{})

	tests := []struct {
		coll   string
		name   string
		keys   []string
		unique bool
	}{
		{ResourcesCollection, indexTerms, []string{"type", "terms"}, false},
		{ResourcesCollection, indexUpdated, []string{"type", "updated", "id"}, false},
		{ResourcesCollection, "type_sort_date_id", []string{"type", "sort.date", "id"}, false},
		{ResourcesCollection, "type_sort_period_id", []string{"type", "sort.period", "id"}, false},
		{ResourcesCollection, "type_dates_date", []string{"type", "dlo.date", "dhi.date"}, false},
		{ResourcesCollection, "type_dates_period", []string{"type", "dlo.period", "dhi.period"}, false},
		{HistoryCollection, indexHistoryVersion, []string{"type", "id", "version"}, true},
		{HistoryCollection, indexHistoryUpdated, []string{"updated", "_id"}, false},
		{HistoryCollection, indexHistoryType, []string{"type", "updated", "_id"}, false},
	}
	have := map[string]map[string]bson.M{}
	for _, coll := range []string{ResourcesCollection, HistoryCollection} {
		cur, err := s.db.Collection(coll).Indexes().List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var idx []bson.M
		if err := cur.All(ctx, &idx); err != nil {
			t.Fatal(err)
		}
		have[coll] = map[string]bson.M{}
		for _, ix := range idx {
			have[coll][ix["name"].(string)] = ix
		}
	}
	for _, tt := range tests {
		t.Run(tt.coll+"/"+tt.name, func(t *testing.T) {
			ix, ok := have[tt.coll][tt.name]
			if !ok {
				t.Fatalf("index %s missing; have %v", tt.name, have[tt.coll])
			}
			var keys []string
			for _, e := range ix["key"].(bson.D) {
				keys = append(keys, e.Key)
			}
			if !slices.Equal(keys, tt.keys) {
				t.Errorf("keys %v, want %v", keys, tt.keys)
			}
			if unique, _ := ix["unique"].(bool); unique != tt.unique {
				t.Errorf("unique %v, want %v", unique, tt.unique)
			}
		})
	}
}

// writeModes are the two ways of bringing resources up to a new version:
// the conditional replace (atomic on MongoDB) and the checked replace with
// roll-forward (what FerretDB gets). Against FerretDB both run, the first
// without its atomicity; against MongoDB only the first.
func writeModes(t *testing.T, run func(t *testing.T, open func(t *testing.T) (*Store, string))) {
	t.Helper()
	for _, mode := range []struct {
		name        string
		rollForward bool
	}{{"conditional", false}, {"checked", true}} {
		t.Run(mode.name, func(t *testing.T) {
			run(t, func(t *testing.T) (*Store, string) {
				db := freshDatabase(t)
				s := mustOpenDB(t, db, Options{})
				if mode.rollForward && !s.rollForward {
					t.Skip("a real MongoDB replaces atomically: the FerretDB roll-forward path does not run there")
				}
				s.rollForward = mode.rollForward
				return s, db
			})
		})
	}
}

func TestWriteRead(t *testing.T) {
	writeModes(t, testWriteRead)
}

func testWriteRead(t *testing.T, open func(t *testing.T) (*Store, string)) {
	s, _ := open(t)
	ctx := context.Background()
	w := write(t, "Consent", "c1", consent("active", "Patient/p1", "2026-01-02", nil))

	created, err := s.Create(ctx, w)
	if err != nil {
		t.Fatal(err)
	}
	if created.Version != 1 || created.Updated.IsZero() || !bytes.Contains(created.Body, []byte(`"versionId":"1"`)) {
		t.Fatalf("Create = %+v %s", created, created.Body)
	}
	updated, err := s.Update(ctx, write(t, "Consent", "c1", consent("inactive", "Patient/p1", "2026-01-02", nil)), 1)
	if err != nil {
		t.Fatal(err)
	}
	if updated.Version != 2 || !updated.Updated.After(created.Updated) {
		t.Fatalf("Update = %+v, after %v", updated, created.Updated)
	}

	tests := []struct {
		name    string
		do      func() (store.Resource, error)
		want    error
		version int64
	}{
		{"create taken", func() (store.Resource, error) { return s.Create(ctx, w) }, store.ErrExists, 0},
		{"update stale", func() (store.Resource, error) { return s.Update(ctx, w, 1) }, store.ErrVersionConflict, 0},
		{"update absent with ifMatch", func() (store.Resource, error) {
			return s.Update(ctx, write(t, "Consent", "nope", consent("active", "Patient/p1", "", nil)), 1)
		}, store.ErrVersionConflict, 0},
		{"read", func() (store.Resource, error) { return s.Read(ctx, "Consent", "c1") }, nil, 2},
		{"read absent", func() (store.Resource, error) { return s.Read(ctx, "Consent", "nope") }, store.ErrNotFound, 0},
		{"vread 1", func() (store.Resource, error) { return s.VRead(ctx, "Consent", "c1", 1) }, nil, 1},
		{"vread 3", func() (store.Resource, error) { return s.VRead(ctx, "Consent", "c1", 3) }, store.ErrNotFound, 0},
		{"delete stale", func() (store.Resource, error) { return s.Delete(ctx, "Consent", "c1", 1) }, store.ErrVersionConflict, 0},
		{"delete absent", func() (store.Resource, error) { return s.Delete(ctx, "Consent", "nope", 0) }, store.ErrNotFound, 0},
		{"delete", func() (store.Resource, error) { return s.Delete(ctx, "Consent", "c1", 2) }, nil, 3},
		{"delete again", func() (store.Resource, error) { return s.Delete(ctx, "Consent", "c1", 0) }, nil, 3},
		{"read deleted", func() (store.Resource, error) { return s.Read(ctx, "Consent", "c1") }, store.ErrGone, 3},
		{"vread deleted", func() (store.Resource, error) { return s.VRead(ctx, "Consent", "c1", 3) }, store.ErrGone, 3},
		{"create deleted", func() (store.Resource, error) { return s.Create(ctx, w) }, store.ErrExists, 0},
		{"update revives", func() (store.Resource, error) { return s.Update(ctx, w, 0) }, nil, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.do()
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if got.Version != tt.version {
				t.Errorf("version = %d, want %d", got.Version, tt.version)
			}
			if tt.version > 0 && got.Deleted != (got.Body == nil) {
				t.Errorf("deleted %v with body %q", got.Deleted, got.Body)
			}
		})
	}

	hist, err := s.History(ctx, store.HistoryQuery{Type: "Consent", ID: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	var versions []int64
	for _, r := range hist {
		versions = append(versions, r.Version)
	}
	if !slices.Equal(versions, []int64{4, 3, 2, 1}) || !hist[1].Deleted {
		t.Errorf("history versions %v (deleted %v), want [4 3 2 1]", versions, hist[1].Deleted)
	}
	page, err := s.History(ctx, store.HistoryQuery{Limit: 2, Offset: 1, Since: created.Updated})
	if err != nil {
		t.Fatal(err)
	}
	if len(page) != 2 || page[0].Version != 3 || page[1].Version != 2 {
		t.Errorf("history page %+v", page)
	}
}

// TestBodyBytes: the body is kept as the stamped bytes, BSON binary, and a
// document edited directly in the collection is what Read returns.
func TestBodyBytes(t *testing.T) {
	db := freshDatabase(t)
	s := mustOpenDB(t, db, Options{})
	ctx := context.Background()
	// Odd but valid JSON layout must survive byte for byte.
	w := store.Write{Type: "Patient", ID: "p1", Body: []byte(`{"resourceType":"Patient","active":true ,"name":[{"text":"\u00e9"}]}`)}
	res, err := s.Create(ctx, w)
	if err != nil {
		t.Fatal(err)
	}
	coll := rawCollection(t, db, ResourcesCollection)
	var raw bson.Raw
	if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: "Patient/p1"}}).Decode(&raw); err != nil {
		t.Fatal(err)
	}
	sub, data, ok := raw.Lookup("body").BinaryOK()
	if !ok || sub != 0 || !bytes.Equal(data, res.Body) {
		t.Fatalf("stored body %v %q, want binary %q", raw.Lookup("body").Type, data, res.Body)
	}

	tests := []struct {
		name string
		set  any
		want []byte
	}{
		{"binary", bson.Binary{Data: []byte(`{"resourceType":"Patient","id":"p1","tampered":1}`)}, []byte(`{"resourceType":"Patient","id":"p1","tampered":1}`)},
		{"string", `{"resourceType":"Patient","id":"p1","tampered":2}`, []byte(`{"resourceType":"Patient","id":"p1","tampered":2}`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: "Patient/p1"}}, bson.D{{Key: "$set", Value: bson.D{{Key: "body", Value: tt.set}}}}); err != nil {
				t.Fatal(err)
			}
			got, err := s.Read(ctx, "Patient", "p1")
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Body, tt.want) {
				t.Errorf("Read body %q, want %q", got.Body, tt.want)
			}
			v1, err := s.VRead(ctx, "Patient", "p1", 1)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(v1.Body, res.Body) {
				t.Errorf("VRead body %q, want the history copy %q", v1.Body, res.Body)
			}
		})
	}
}

// TestConcurrentWriters: 32 goroutines write one resource at once; every
// write gets its own version, none is lost, and the current document ends
// on the last one.
func TestConcurrentWriters(t *testing.T) {
	const writers, each = 32, 2
	s := mustOpen(t, Options{})
	ctx := context.Background()

	t.Run("updates", func(t *testing.T) {
		var wg sync.WaitGroup
		versions := make(chan int64, writers*each)
		errs := make(chan error, writers*each)
		for g := range writers {
			wg.Go(func() {
				for i := range each {
					res, err := s.Update(ctx, write(t, "Consent", "hot", consent("active", fmt.Sprintf("Patient/%d-%d", g, i), "", nil)), 0)
					if err != nil {
						errs <- err
						return
					}
					versions <- res.Version
				}
			})
		}
		wg.Wait()
		close(versions)
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		var got []int64
		for v := range versions {
			got = append(got, v)
		}
		slices.Sort(got)
		for i, v := range got {
			if v != int64(i+1) {
				t.Fatalf("versions %v: want 1..%d each once", got, writers*each)
			}
		}
		cur, err := s.Read(ctx, "Consent", "hot")
		if err != nil || cur.Version != writers*each {
			t.Fatalf("Read = %d, %v; want version %d", cur.Version, err, writers*each)
		}
		hist, err := s.History(ctx, store.HistoryQuery{Type: "Consent", ID: "hot"})
		if err != nil || len(hist) != writers*each {
			t.Fatalf("history has %d versions, %v; want %d", len(hist), err, writers*each)
		}
		// The current terms are those of the last version.
		last, err := s.VRead(ctx, "Consent", "hot", writers*each)
		if err != nil {
			t.Fatal(err)
		}
		var doc map[string]any
		if err := json.Unmarshal(last.Body, &doc); err != nil {
			t.Fatal(err)
		}
		ref := doc["patient"].(map[string]any)["reference"].(string)
		n, err := s.Count(ctx, store.Query{Type: "Consent", Clauses: []fhir.Clause{{Param: "patient", Strings: []string{fhir.TermRef("patient", ref)}}}})
		if err != nil || n != 1 {
			t.Errorf("Count(patient=%s) = %d, %v; want 1", ref, n, err)
		}
	})

	t.Run("creates", func(t *testing.T) {
		var wg sync.WaitGroup
		var mu sync.Mutex
		won, exists := 0, 0
		for range writers {
			wg.Go(func() {
				_, err := s.Create(ctx, write(t, "Consent", "once", consent("active", "Patient/1", "", nil)))
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					won++
				case errors.Is(err, store.ErrExists):
					exists++
				default:
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if won != 1 || exists != writers-1 {
			t.Errorf("%d creates won, %d got ErrExists; want 1 and %d", won, exists, writers-1)
		}
	})

	t.Run("if-match", func(t *testing.T) {
		base, err := s.Create(ctx, write(t, "Consent", "cas", consent("active", "Patient/1", "", nil)))
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		won, conflicts := 0, 0
		for range writers {
			wg.Go(func() {
				_, err := s.Update(ctx, write(t, "Consent", "cas", consent("inactive", "Patient/1", "", nil)), base.Version)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					won++
				case errors.Is(err, store.ErrVersionConflict):
					conflicts++
				default:
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if won != 1 || conflicts != writers-1 {
			t.Errorf("%d updates won, %d conflicts; want 1 and %d", won, conflicts, writers-1)
		}
	})
}

// TestInterruptedWrite: a writer that stopped after its history insert
// (the commit point) leaves resources behind; the next write repairs it.
func TestInterruptedWrite(t *testing.T) {
	writeModes(t, testInterruptedWrite)
}

func testInterruptedWrite(t *testing.T, open func(t *testing.T) (*Store, string)) {
	ctx := context.Background()
	tests := []struct {
		name      string
		committed int64 // versions written through the store first
		next      func(s *Store) (store.Resource, error)
		want      error
		version   int64 // of the next write's result
		current   int64 // Read's version afterwards
	}{
		{"update with the stale version", 1, func(s *Store) (store.Resource, error) {
			return s.Update(ctx, write(t, "Consent", "c", consent("active", "Patient/3", "", nil)), 1)
		}, store.ErrVersionConflict, 0, 2},
		{"update", 1, func(s *Store) (store.Resource, error) {
			return s.Update(ctx, write(t, "Consent", "c", consent("active", "Patient/3", "", nil)), 0)
		}, nil, 3, 3},
		{"delete after a lost create", 0, func(s *Store) (store.Resource, error) {
			return s.Delete(ctx, "Consent", "c", 0)
		}, nil, 2, 2},
		{"create after a lost create", 0, func(s *Store) (store.Resource, error) {
			return s.Create(ctx, write(t, "Consent", "c", consent("active", "Patient/3", "", nil)))
		}, store.ErrExists, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, db := open(t)
			for range tt.committed {
				if _, err := s.Update(ctx, write(t, "Consent", "c", consent("active", "Patient/1", "", nil)), 0); err != nil {
					t.Fatal(err)
				}
			}
			// The next version committed in history only.
			lost, terms, err := store.Stamp(write(t, "Consent", "c", consent("inactive", "Patient/2", "", nil)), tt.committed+1, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := rawCollection(t, db, HistoryCollection).InsertOne(ctx, newRecord(lost, terms)); err != nil {
				t.Fatal(err)
			}

			got, err := tt.next(s)
			if !errors.Is(err, tt.want) || got.Version != tt.version {
				t.Fatalf("next write = version %d, %v; want %d, %v", got.Version, err, tt.version, tt.want)
			}
			cur, err := s.Read(ctx, "Consent", "c")
			if cur.Version != tt.current {
				t.Fatalf("Read = version %d, %v; want %d", cur.Version, err, tt.current)
			}
			if tt.current == lost.Version && !bytes.Equal(cur.Body, lost.Body) {
				t.Errorf("Read body %s, want the lost version's %s", cur.Body, lost.Body)
			}
		})
	}
}

func TestClosed(t *testing.T) {
	s := mustOpen(t, Options{})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tests := []struct {
		name string
		do   func() error
	}{
		{"read", func() error { _, err := s.Read(ctx, "Patient", "1"); return err }},
		{"create", func() error {
			_, err := s.Create(ctx, store.Write{Type: "Patient", ID: "1", Body: []byte(`{}`)})
			return err
		}},
		{"search", func() error { _, err := s.Search(ctx, store.Query{Type: "Patient"}); return err }},
		{"history", func() error { _, err := s.History(ctx, store.HistoryQuery{}); return err }},
		{"ping", func() error { return s.Ping(ctx) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.do(); !errors.Is(err, store.ErrClosed) {
				t.Errorf("err = %v, want ErrClosed", err)
			}
		})
	}
}

// TestSearchAgainstMatches compares Search (all pages) and Count with the
// reference semantics, store.Matches, over random date data and queries:
// the coarse date filter must never drop a match.
func TestSearchAgainstMatches(t *testing.T) {
	s := mustOpen(t, Options{})
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))

	days := func(n int) string {
		return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, n).Format("2006-01-02")
	}
	type stored struct {
		res   store.Resource
		terms fhir.Terms
	}
	var all []stored
	statuses := []string{"active", "inactive", "draft"}
	for i := range 60 {
		var period map[string]any
		switch rng.IntN(4) {
		case 0: // none
		case 1:
			period = map[string]any{"start": days(rng.IntN(60))}
		case 2:
			period = map[string]any{"end": days(rng.IntN(60))}
		default:
			a := rng.IntN(60)
			period = map[string]any{"start": days(a), "end": days(a + rng.IntN(20))}
		}
		dt := ""
		switch rng.IntN(3) {
		case 0:
			dt = days(rng.IntN(60))
		case 1:
			dt = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(rng.IntN(60*24)) * time.Hour).Format(time.RFC3339)
		}
		w := write(t, "Consent", fmt.Sprintf("c%02d", i), consent(statuses[rng.IntN(3)], fmt.Sprintf("Patient/%d", rng.IntN(5)), dt, period))
		res, err := s.Create(ctx, w)
		if err != nil {
			t.Fatal(err)
		}
		_, terms, _ := store.Stamp(w, res.Version, res.Updated)
		all = append(all, stored{res, terms})
	}
	// A few deleted ones never show.
	for _, i := range []int{3, 17, 42} {
		if _, err := s.Delete(ctx, "Consent", all[i].res.ID, 0); err != nil {
			t.Fatal(err)
		}
		all[i].terms = fhir.Terms{Strings: []string{"deleted"}}
		all[i].res.Deleted = true
	}

	prefixes := []string{"eq", "ne", "gt", "lt", "ge", "le", "sa", "eb"}
	randDateClause := func() fhir.Clause {
		c := fhir.Clause{Param: []string{"date", "period", "_lastUpdated"}[rng.IntN(3)]}
		for range 1 + rng.IntN(2) {
			var r fhir.DateRange
			if c.Param == "_lastUpdated" {
				r = fhir.InstantRange(all[rng.IntN(len(all))].res.Updated)
			} else {
				var ok bool
				v := []string{"2026-01", days(rng.IntN(70) - 5), days(rng.IntN(60)) + "T10:00:00Z"}[rng.IntN(3)]
				if r, ok = fhir.ParseDateRange(v); !ok {
					t.Fatalf("bad date %s", v)
				}
			}
			c.Dates = append(c.Dates, fhir.DateCond{Prefix: prefixes[rng.IntN(len(prefixes))], DateRange: r})
		}
		return c
	}
	for i := range 60 {
		q := store.Query{Type: "Consent", Limit: 2 + rng.IntN(10)}
		for range rng.IntN(3) {
			q.Clauses = append(q.Clauses, randDateClause())
		}
		if rng.IntN(3) == 0 {
			q.Clauses = append(q.Clauses, fhir.Clause{Param: "status", Strings: []string{fhir.TermCode("status", statuses[rng.IntN(3)]), fhir.TermCode("status", statuses[rng.IntN(3)])}})
		}
		switch rng.IntN(4) {
		case 1:
			q.Sort = &fhir.SortKey{Param: "date", Desc: rng.IntN(2) == 0}
		case 2:
			q.Sort = &fhir.SortKey{Param: "period", Desc: rng.IntN(2) == 0}
		case 3:
			q.Sort = &fhir.SortKey{Param: "_lastUpdated", Desc: true}
		}

		var want []stored
		for _, r := range all {
			if !r.res.Deleted && store.Matches(q.Clauses, r.terms) {
				want = append(want, r)
			}
		}
		sort.SliceStable(want, func(a, b int) bool {
			ka, kb := store.SortValue(q.Sort, want[a].res, want[a].terms), store.SortValue(q.Sort, want[b].res, want[b].terms)
			if q.Sort != nil && q.Sort.Desc {
				ka, kb = kb, ka
				return ka < kb || ka == kb && want[b].res.ID < want[a].res.ID
			}
			return ka < kb || ka == kb && want[a].res.ID < want[b].res.ID
		})
		var wantIDs, gotIDs []string
		for _, r := range want {
			wantIDs = append(wantIDs, r.res.ID)
		}
		pages := 0
		for after := (*store.Cursor)(nil); ; pages++ {
			q.After = after
			page, err := s.Search(ctx, q)
			if err != nil {
				t.Fatalf("query %d: %v", i, err)
			}
			if len(page.Resources) > q.Limit || page.Next != nil && len(page.Resources) != q.Limit {
				t.Fatalf("query %d: page of %d with limit %d, next %v", i, len(page.Resources), q.Limit, page.Next)
			}
			for _, r := range page.Resources {
				gotIDs = append(gotIDs, r.ID)
			}
			if page.Next == nil || pages > 100 {
				break
			}
			after = page.Next
		}
		if !slices.Equal(gotIDs, wantIDs) {
			t.Errorf("query %d %+v sort %+v:\n got %v\nwant %v", i, q.Clauses, q.Sort, gotIDs, wantIDs)
		}
		q.After = nil
		n, err := s.Count(ctx, q)
		if err != nil || n != len(want) {
			t.Errorf("query %d: Count = %d, %v; want %d", i, n, err, len(want))
		}
	}
}

// TestSearchTerms covers string clauses: $in within a clause, AND across.
func TestSearchTerms(t *testing.T) {
	s := mustOpen(t, Options{})
	ctx := context.Background()
	for i, c := range []map[string]any{
		consent("active", "Patient/1", "", nil),
		consent("active", "Patient/2", "", nil),
		consent("inactive", "Patient/1", "", nil),
	} {
		if _, err := s.Create(ctx, write(t, "Consent", fmt.Sprint("c", i), c)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Create(ctx, write(t, "Patient", "c0", map[string]any{"active": true})); err != nil {
		t.Fatal(err)
	}
	status := func(v ...string) fhir.Clause {
		c := fhir.Clause{Param: "status"}
		for _, x := range v {
			c.Strings = append(c.Strings, fhir.TermCode("status", x))
		}
		return c
	}
	patient := fhir.Clause{Param: "patient", Strings: []string{fhir.TermRef("patient", "Patient/1")}}
	tests := []struct {
		name    string
		clauses []fhir.Clause
		want    []string
	}{
		{"all", nil, []string{"c0", "c1", "c2"}},
		{"one value", []fhir.Clause{status("active")}, []string{"c0", "c1"}},
		{"two values", []fhir.Clause{status("inactive", "active")}, []string{"c0", "c1", "c2"}},
		{"and", []fhir.Clause{status("active"), patient}, []string{"c0"}},
		{"none", []fhir.Clause{status("draft")}, nil},
		{"empty clause", []fhir.Clause{{Param: "status"}}, nil},
		{"_id", []fhir.Clause{{Param: "_id", Strings: []string{fhir.TermCode("_id", "c2")}}}, []string{"c2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := store.Query{Type: "Consent", Clauses: tt.clauses, Sort: &fhir.SortKey{Param: "date"}, Limit: 10}
			page, err := s.Search(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range page.Resources {
				got = append(got, r.ID)
			}
			if !slices.Equal(got, tt.want) || page.Next != nil {
				t.Errorf("Search = %v (next %v), want %v", got, page.Next, tt.want)
			}
			n, err := s.Count(ctx, q)
			if err != nil || n != len(tt.want) {
				t.Errorf("Count = %d, %v; want %d", n, err, len(tt.want))
			}
		})
	}
}
