// Package storetest is the contract test suite of store.Store. Every
// adapter runs the same suite against itself:
//
//	func TestContract(t *testing.T) {
//		storetest.Run(t, storetest.Harness{Open: mustOpen, Reopen: mustReopen})
//	}
//
// The suite declares its state as data (small FHIR JSON fixtures whose
// index terms come from fhir.ExtractTerms, as real callers compute them)
// and checks search results against store.Matches and store.SortValue, the
// reference semantics of the contract.
package storetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/schakelpunt/schakelpunt/fhir"
	"github.com/schakelpunt/schakelpunt/store"
)

// Harness tells the suite how to get stores of the adapter under test.
type Harness struct {
	// Open returns a new, empty store. The suite closes it when the test
	// ends; Close may be called more than once.
	Open func(t *testing.T) store.Store
	// Reopen, when set, opens again the data of a store the suite has just
	// closed, as a restart would. Without it the durability tests are
	// skipped.
	Reopen func(t *testing.T, closed store.Store) store.Store
}

// Run runs the whole contract suite.
func Run(t *testing.T, h Harness) {
	if h.Open == nil {
		t.Fatal("storetest: Harness.Open is required")
	}
	for _, tc := range []struct {
		name string
		run  func(*testing.T, Harness)
	}{
		{"CRUD", testCRUD},
		{"History", testHistory},
		{"Search", testSearch},
		{"SearchDates", testSearchDates},
		{"SortAndPaging", testSortAndPaging},
		{"ConcurrentUpdates", testConcurrentUpdates},
		{"ConcurrentIfMatch", testConcurrentIfMatch},
		{"ConcurrentCreates", testConcurrentCreates},
		{"ConcurrentMixed", testConcurrentMixed},
		{"Canceled", testCanceled},
		{"Closed", testClosed},
		{"Reopen", testReopen},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, h) })
	}
}

// open returns a fresh store that is closed when t ends.
func open(t *testing.T, h Harness) store.Store {
	t.Helper()
	s := h.Open(t)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// NewWrite builds a Write from a resource's JSON the way real callers do:
// decoded with json.Number and indexed with fhir.ExtractTerms.
func NewWrite(tb testing.TB, typ, id, body string) store.Write {
	tb.Helper()
	dec := json.NewDecoder(strings.NewReader(body))
	dec.UseNumber()
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		tb.Fatalf("fixture %s/%s is not JSON: %v", typ, id, err)
	}
	return store.Write{Type: typ, ID: id, Body: []byte(body), Terms: fhir.ExtractTerms(typ, doc)}
}

// world is a store under test together with the model of what it holds:
// every version written, and the current one of each resource with its
// full index terms (store.Stamp's). Searches are checked against it.
type world struct {
	t        *testing.T
	s        store.Store
	cur      map[string]entry          // "type/id" → current version
	versions map[string]store.Resource // "type/id/version" → version
	log      []store.Resource          // every version, in write order
}

type entry struct {
	res   store.Resource
	terms fhir.Terms
}

func newWorld(t *testing.T, s store.Store) *world {
	return &world{t: t, s: s, cur: map[string]entry{}, versions: map[string]store.Resource{}}
}

func vkey(typ, id string, v int64) string { return typ + "/" + id + "/" + strconv.FormatInt(v, 10) }

// record adds a version the store acknowledged to the model, after
// checking it is stamped as store.Stamp would.
func (w *world) record(wr store.Write, r store.Resource) {
	w.t.Helper()
	checkResource(w.t, r, wr.Type, wr.ID)
	var terms fhir.Terms
	if !r.Deleted {
		want, tt, err := store.Stamp(wr, r.Version, r.Updated)
		if err != nil {
			w.t.Fatalf("Stamp %s/%s: %v", wr.Type, wr.ID, err)
		}
		if !bytes.Equal(r.Body, want.Body) {
			w.t.Fatalf("%s/%s/%d: body\n got %s\nwant %s (store.Stamp)", wr.Type, wr.ID, r.Version, r.Body, want.Body)
		}
		checkMeta(w.t, r)
		terms = tt
	}
	k := wr.Type + "/" + wr.ID
	if prev, ok := w.cur[k]; ok && r.Version > prev.res.Version && r.Updated.Before(prev.res.Updated) {
		w.t.Errorf("%s/%d: lastUpdated %s is before that of version %d (%s)", k, r.Version, r.Updated, prev.res.Version, prev.res.Updated)
	}
	if old, ok := w.versions[vkey(wr.Type, wr.ID, r.Version)]; ok {
		// Only a repeated delete returns a version again: the same marker.
		if !r.Deleted || !sameResource(old, r) {
			w.t.Fatalf("%s: version %d handed out twice: %s, then %s", k, r.Version, show(old), show(r))
		}
		return
	}
	w.cur[k] = entry{res: r, terms: terms}
	w.versions[vkey(wr.Type, wr.ID, r.Version)] = r
	w.log = append(w.log, r)
}

func (w *world) create(typ, id, body string) store.Resource {
	w.t.Helper()
	wr := NewWrite(w.t, typ, id, body)
	if al, ok := w.s.(store.AuditLog); ok && typ == "AuditEvent" {
		// AuditEvents are written only through the audit log, each as the
		// next link of its chain (with a stand-in hash).
		r := w.appendAudit(al, wr)
		w.record(wr, r)
		w.log = w.log[:len(w.log)-1] // audit events are not in History
		return r
	}
	r, err := w.s.Create(context.Background(), wr)
	if err != nil {
		w.t.Fatalf("Create %s/%s: %v", typ, id, err)
	}
	w.record(wr, r)
	return r
}

// appendAudit appends wr as the next event of the audit chain and reads
// it back.
func (w *world) appendAudit(al store.AuditLog, wr store.Write) store.Resource {
	w.t.Helper()
	ctx := context.Background()
	head, err := al.AuditHead(ctx)
	if err != nil {
		w.t.Fatalf("AuditHead: %v", err)
	}
	rec := store.AuditRecord{Seq: head.Seq + 1, Prev: head.Hash, Hash: fmt.Sprintf("%064x", head.Seq+1), Recorded: time.Now(), Write: wr}
	if err := al.AppendAudit(ctx, []store.AuditRecord{rec}); err != nil {
		w.t.Fatalf("AppendAudit %s/%s: %v", wr.Type, wr.ID, err)
	}
	r, err := w.s.Read(ctx, wr.Type, wr.ID)
	if err != nil {
		w.t.Fatalf("Read %s/%s: %v", wr.Type, wr.ID, err)
	}
	return r
}

func (w *world) update(typ, id, body string) store.Resource {
	w.t.Helper()
	wr := NewWrite(w.t, typ, id, body)
	r, err := w.s.Update(context.Background(), wr, 0)
	if err != nil {
		w.t.Fatalf("Update %s/%s: %v", typ, id, err)
	}
	w.record(wr, r)
	return r
}

func (w *world) delete(typ, id string) store.Resource {
	w.t.Helper()
	r, err := w.s.Delete(context.Background(), typ, id, 0)
	if err != nil {
		w.t.Fatalf("Delete %s/%s: %v", typ, id, err)
	}
	w.record(store.Write{Type: typ, ID: id}, r)
	return r
}

// apply runs a seed: writes declared as data.
func (w *world) apply(seed []write) {
	w.t.Helper()
	for _, s := range seed {
		switch s.do {
		case "create":
			w.create(s.typ, s.id, s.body)
		case "update":
			w.update(s.typ, s.id, s.body)
		case "delete":
			w.delete(s.typ, s.id)
		default:
			w.t.Fatalf("seed: unknown write %q", s.do)
		}
	}
}

// write is one write of a seed.
type write struct {
	do, typ, id, body string
}

// expect is the oracle: the ids q must return, in order, computed with
// store.Matches and store.SortValue over the model.
func (w *world) expect(q store.Query) []string {
	type hit struct {
		key int64
		id  string
	}
	var hits []hit
	for _, e := range w.cur {
		if e.res.Type != q.Type || e.res.Deleted || !store.Matches(q.Clauses, e.terms) {
			continue
		}
		hits = append(hits, hit{store.SortValue(q.Sort, e.res, e.terms), e.res.ID})
	}
	desc := q.Sort != nil && q.Sort.Desc
	slices.SortFunc(hits, func(a, b hit) int {
		c := cmpInt(a.key, b.key)
		if c == 0 {
			c = strings.Compare(a.id, b.id)
		}
		if desc {
			c = -c
		}
		return c
	})
	ids := make([]string, len(hits))
	for i, h := range hits {
		ids[i] = h.id
	}
	return ids
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// searchAll follows the pages of q with the given page size and returns
// the ids in order, checking each page and each resource on the way.
func (w *world) searchAll(q store.Query, limit int) []string {
	w.t.Helper()
	q.Limit, q.After = limit, nil
	var ids []string
	seen := map[string]bool{}
	for pages := 0; ; pages++ {
		if pages > len(w.cur)+2 {
			w.t.Fatalf("search %s: paging does not end", describe(q))
		}
		p, err := w.s.Search(context.Background(), q)
		if err != nil {
			w.t.Fatalf("search %s: %v", describe(q), err)
		}
		if len(p.Resources) > limit {
			w.t.Fatalf("search %s: page of %d resources, limit %d", describe(q), len(p.Resources), limit)
		}
		if q.After != nil && len(p.Resources) == 0 {
			w.t.Fatalf("search %s: an empty page after a Next cursor (Next must be nil on the last page)", describe(q))
		}
		if p.Next != nil && len(p.Resources) != limit {
			w.t.Fatalf("search %s: a page of %d (limit %d) with a next page", describe(q), len(p.Resources), limit)
		}
		for _, r := range p.Resources {
			if seen[r.ID] {
				w.t.Fatalf("search %s: %s returned twice", describe(q), r.ID)
			}
			seen[r.ID] = true
			ids = append(ids, r.ID)
			e, ok := w.cur[q.Type+"/"+r.ID]
			if !ok || r.Type != q.Type {
				w.t.Fatalf("search %s: unexpected %s/%s", describe(q), r.Type, r.ID)
			}
			if !sameResource(r, e.res) {
				w.t.Fatalf("search %s: got %s, current is %s", describe(q), show(r), show(e.res))
			}
		}
		if p.Next == nil {
			return ids
		}
		q.After = p.Next
	}
}

// check compares a search with the oracle, over pages of several sizes,
// and Count with the number of matches.
func (w *world) check(q store.Query, limits ...int) []string {
	w.t.Helper()
	want := w.expect(q)
	if len(limits) == 0 {
		limits = []int{1000}
	}
	for _, limit := range limits {
		got := w.searchAll(q, limit)
		if !slices.Equal(got, want) {
			w.t.Errorf("search %s (pages of %d):\n got %v\nwant %v", describe(q), limit, got, want)
		}
	}
	n, err := w.s.Count(context.Background(), q)
	if err != nil {
		w.t.Fatalf("count %s: %v", describe(q), err)
	}
	if n != len(want) {
		w.t.Errorf("count %s = %d, want %d", describe(q), n, len(want))
	}
	return want
}

// parseQuery turns a FHIR search string ("a=1&b=ge2024") into a store
// query through fhir.ParseSearch, as the edge does. Values are taken as
// they are written (no URL decoding).
func parseQuery(tb testing.TB, typ, query string) store.Query {
	tb.Helper()
	var params []fhir.Param
	if query != "" {
		for _, kv := range strings.Split(query, "&") {
			k, v, _ := strings.Cut(kv, "=")
			params = append(params, fhir.Param{Name: k, Value: v})
		}
	}
	sr, err := fhir.ParseSearch(typ, params, false)
	if err != nil {
		tb.Fatalf("fixture query %s?%s: %v", typ, query, err)
	}
	return store.Query{Type: typ, Clauses: sr.Clauses, Sort: sr.Sort}
}

func describe(q store.Query) string {
	var b strings.Builder
	b.WriteString(q.Type)
	for _, c := range q.Clauses {
		fmt.Fprintf(&b, " %s%v%v", c.Param, c.Strings, c.Dates)
	}
	if q.Sort != nil {
		fmt.Fprintf(&b, " sort %s desc=%v", q.Sort.Param, q.Sort.Desc)
	}
	return b.String()
}

// checkResource checks what every returned version must satisfy.
func checkResource(t *testing.T, r store.Resource, typ, id string) {
	t.Helper()
	if r.Type != typ || r.ID != id {
		t.Fatalf("got %s/%s, want %s/%s", r.Type, r.ID, typ, id)
	}
	if r.Version < 1 {
		t.Fatalf("%s/%s: version %d", typ, id, r.Version)
	}
	if r.Updated.IsZero() || r.Updated.Location() != time.UTC || !r.Updated.Equal(r.Updated.Truncate(time.Microsecond)) {
		t.Fatalf("%s/%s: lastUpdated %v is not a UTC time in microseconds", typ, id, r.Updated)
	}
	if r.Deleted && len(r.Body) != 0 {
		t.Fatalf("%s/%s: deletion marker with a body", typ, id)
	}
	if !r.Deleted && len(r.Body) == 0 {
		t.Fatalf("%s/%s/%d: no body", typ, id, r.Version)
	}
}

// checkMeta checks the stamped id and meta in a body.
func checkMeta(t *testing.T, r store.Resource) {
	t.Helper()
	var doc struct {
		ID   string `json:"id"`
		Meta struct {
			VersionID   string `json:"versionId"`
			LastUpdated string `json:"lastUpdated"`
		} `json:"meta"`
	}
	if err := json.Unmarshal(r.Body, &doc); err != nil {
		t.Fatalf("%s/%s: body: %v", r.Type, r.ID, err)
	}
	if doc.ID != r.ID || doc.Meta.VersionID != strconv.FormatInt(r.Version, 10) || doc.Meta.LastUpdated != fhir.FormatInstant(r.Updated) {
		t.Fatalf("%s/%s/%d: body has id %q, versionId %q, lastUpdated %q", r.Type, r.ID, r.Version, doc.ID, doc.Meta.VersionID, doc.Meta.LastUpdated)
	}
}

func sameResource(a, b store.Resource) bool {
	return a.Type == b.Type && a.ID == b.ID && a.Version == b.Version && a.Updated.Equal(b.Updated) &&
		a.Deleted == b.Deleted && bytes.Equal(a.Body, b.Body)
}

func show(r store.Resource) string {
	if r.Deleted {
		return fmt.Sprintf("%s/%s/%d (deleted, %s)", r.Type, r.ID, r.Version, r.Updated.Format(time.RFC3339Nano))
	}
	return fmt.Sprintf("%s/%s/%d (%s, %d bytes)", r.Type, r.ID, r.Version, r.Updated.Format(time.RFC3339Nano), len(r.Body))
}

// wantErr checks err against an expected sentinel (nil: no error).
func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	switch {
	case want == nil && err != nil:
		t.Fatalf("%s: unexpected error %v", what, err)
	case want != nil && !errors.Is(err, want):
		t.Fatalf("%s: error %v, want %v", what, err, want)
	}
}
