package routing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/schakelpunt/schakelpunt/access"
	"github.com/schakelpunt/schakelpunt/federation"
	"github.com/schakelpunt/schakelpunt/fhir"
)

// heldOf is a held result of n matches of about size bytes each.
func heldOf(n, size int) *heldResult {
	set := &federation.Searchset{}
	for i := range n {
		set.Matches = append(set.Matches, fhir.BundleEntry{FullURL: fmt.Sprintf("https://s/MedicationDispense/%d", i), Resource: json.RawMessage(`{"x":"` + strings.Repeat("a", size) + `"}`)})
		set.SourceURAs = append(set.SourceURAs, "90000002")
	}
	return newHeld(set, "999911120", fhir.CategoryMedication, 10)
}

// TestHeldPages: held results live heldTTL from the query however often
// they are read, are served only to their owner, are bounded in bytes
// (oldest evicted first), and give their bytes back when their pages go.
func TestHeldPages(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }

	t.Run("ttl from the query, owner only", func(t *testing.T) {
		ps := newPageStore(10*time.Minute, 100, 5*time.Minute, 1<<20, clock)
		h := heldOf(3, 10)
		first := ps.put(&page{owner: "a", kind: "federated", held: h})
		now = now.Add(4 * time.Minute)
		second := ps.put(&page{owner: "a", kind: "federated", held: h, offset: 10})
		if _, ok := ps.get(first, "b"); ok {
			t.Error("another owner read the page")
		}
		if _, ok := ps.get(second, "a"); !ok {
			t.Error("owner could not read the page")
		}
		now = now.Add(90 * time.Second) // 5.5 minutes after the query
		if _, ok := ps.get(second, "a"); ok {
			t.Error("a page made later outlived the held result's 5 minutes")
		}
		if _, ok := ps.get(first, "a"); ok {
			t.Error("expired page served")
		}
		if ps.held != 0 || len(ps.pages) != 0 {
			t.Errorf("after expiry: %d bytes held, %d pages", ps.held, len(ps.pages))
		}
	})

	t.Run("bounded in bytes, oldest first", func(t *testing.T) {
		ps := newPageStore(10*time.Minute, 100, 5*time.Minute, 3000, clock)
		var toks []string
		var hs []*heldResult
		for i := range 4 {
			h := heldOf(1, 800) // about 1.4 kB with overhead
			hs = append(hs, h)
			toks = append(toks, ps.put(&page{owner: "a", kind: "federated", held: h}))
			ps.put(&page{owner: "a", kind: "federated", held: h, offset: 1})
			now = now.Add(time.Second)
			if ps.held > 3000 && i > 0 {
				t.Fatalf("after %d results: %d bytes held", i+1, ps.held)
			}
		}
		if _, ok := ps.get(toks[0], "a"); ok {
			t.Error("the oldest result was not evicted")
		}
		if _, ok := ps.get(toks[3], "a"); !ok {
			t.Error("the newest result was evicted")
		}
		var sum int64
		for _, h := range hs {
			if h.refs > 0 {
				sum += h.size
			}
		}
		if sum != ps.held {
			t.Errorf("accounted %d bytes, held results sum to %d", ps.held, sum)
		}
	})

	t.Run("drop", func(t *testing.T) {
		ps := newPageStore(10*time.Minute, 100, 5*time.Minute, 1<<20, clock)
		h, other := heldOf(2, 10), heldOf(2, 10)
		a := ps.put(&page{owner: "a", kind: "federated", held: h})
		ps.put(&page{owner: "a", kind: "federated", held: h, offset: 1})
		b := ps.put(&page{owner: "a", kind: "federated", held: other})
		ps.drop(h)
		if _, ok := ps.get(a, "a"); ok {
			t.Error("a dropped result's page is served")
		}
		if _, ok := ps.get(b, "a"); !ok || ps.held != other.size {
			t.Errorf("the other result: served %v, %d bytes held, want %d", ok, ps.held, other.size)
		}
	})
}

// fakeFederator answers with a fixed merged result; MedicationSources
// permits the sources in permitted.
type fakeFederator struct {
	set       *federation.Searchset
	mu        sync.Mutex
	permitted []string
	asked     atomic.Int32
}

func (f *fakeFederator) MedicationDispenses(ctx context.Context, p access.Principal, bsn string, params url.Values) (federation.Result, error) {
	f.asked.Add(1)
	return federation.Result{Permit: true, Reasons: []string{"test permit"}, Answered: true, Searchset: f.set, Count: len(f.set.Matches)}, nil
}

func (f *fakeFederator) MedicationSources(ctx context.Context, p access.Principal, bsn string) ([]string, federation.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.permitted) == 0 {
		d := access.Decision{Reasons: []string{"test: consent withdrawn"}}
		return nil, federation.Result{Reasons: d.Reasons}, d.Err()
	}
	return slices.Clone(f.permitted), federation.Result{Permit: true, Reasons: []string{"test recheck"}}, nil
}

func (f *fakeFederator) GPSummary(ctx context.Context, p access.Principal, bsn string) (federation.Result, error) {
	return federation.Result{}, errors.New("not in this test")
}

func (f *fakeFederator) permit(uras ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.permitted = uras
}

// TestFederatedPages: the merged result in pages of _count, outcome
// entries on the first page only, and every later page decided again.
func TestFederatedPages(t *testing.T) {
	set := &federation.Searchset{}
	for i := range 7 {
		ura := []string{"90000002", "90000003"}[i%2]
		set.Matches = append(set.Matches, fhir.BundleEntry{FullURL: fmt.Sprintf("https://src-%s/fhir/R4/MedicationDispense/%d", ura, i),
			Resource: json.RawMessage(fmt.Sprintf(`{"resourceType":"MedicationDispense","id":"%d"}`, i)), Search: &fhir.EntrySearch{Mode: "match"}})
		set.SourceURAs = append(set.SourceURAs, ura)
	}
	set.Outcomes = []fhir.BundleEntry{{FullURL: "urn:uuid:0f0e0d0c-0b0a-4908-8706-050403020100", Resource: fhir.OperationOutcome(fhir.Issue{Severity: "error", Code: "timeout", Diagnostics: "Source X did not answer in time"}),
		Search: &fhir.EntrySearch{Mode: "outcome"}}}
	fed := &fakeFederator{set: set}
	fed.permit("90000002", "90000003")
	h := mustServeWith(t, func(c *Config) { c.Federator = fed }).as("pharmacist")
	query := "/MedicationDispense?patient.identifier=" + fhir.SystemBSN + "|999911120"
	path := func(link string) string { return strings.TrimPrefix(link, "https://sp.test/fhir/R4") }
	modes := func(r response) (matches []string, outcomes int) {
		for _, e := range r.entries() {
			switch e["search"].(map[string]any)["mode"] {
			case "match":
				matches = append(matches, e["fullUrl"].(string))
			case "outcome":
				outcomes++
			}
		}
		return matches, outcomes
	}

	t.Run("bad _count asks no source", func(t *testing.T) {
		for _, v := range []string{"-1", "x", "2&_count=3"} {
			r := do(t, h, "GET", query+"&_count="+v, nil)
			if r.status != 400 || !slices.Contains(r.issueCodes(), "invalid") {
				t.Errorf("_count=%s: %d %s", v, r.status, r.raw)
			}
		}
		if n := fed.asked.Load(); n != 0 {
			t.Errorf("the federator was asked %d times", n)
		}
	})

	t.Run("one page: nothing held", func(t *testing.T) {
		r := do(t, h, "GET", query, nil)
		matches, outcomes := modes(r)
		if r.status != 200 || len(matches) != 7 || outcomes != 1 || r.body["link"] != nil || r.body["total"] != nil {
			t.Errorf("%d %s", r.status, r.raw)
		}
	})

	t.Run("pages of _count, outcomes first", func(t *testing.T) {
		var all []string
		link := query + "&_count=3"
		for i, want := range []struct{ matches, outcomes int }{{3, 1}, {3, 0}, {1, 0}} {
			r := do(t, h, "GET", link, nil)
			matches, outcomes := modes(r)
			if r.status != 200 || len(matches) != want.matches || outcomes != want.outcomes {
				t.Fatalf("page %d: %d, %d matches, %d outcomes: %s", i+1, r.status, len(matches), outcomes, r.raw)
			}
			all = append(all, matches...)
			link = path(r.link("next"))
		}
		if link != "" {
			t.Errorf("a next link after the last page: %s", link)
		}
		want := make([]string, 0, 7)
		for _, m := range set.Matches {
			want = append(want, m.FullURL)
		}
		if !slices.Equal(all, want) {
			t.Errorf("pages %v, want %v", all, want)
		}
	})

	t.Run("a later page is decided again", func(t *testing.T) {
		r := do(t, h, "GET", query+"&_count=2", nil)
		next := path(r.link("next"))
		fed.permit("90000002") // Het Kruis no longer permitted
		r = do(t, h, "GET", next, nil)
		if r.status != 403 || !slices.Contains(r.issueCodes(), "forbidden") || strings.Contains(string(r.raw), "9000000") {
			t.Errorf("consent narrowed: %d %s", r.status, r.raw)
		}
		fed.permit("90000002", "90000003")
		if r := do(t, h, "GET", next, nil); r.status != 404 || !slices.Contains(r.issueCodes(), "not-found") {
			t.Errorf("the refused result was not dropped: %d %s", r.status, r.raw)
		}
		r = do(t, h, "GET", query+"&_count=2", nil)
		fed.permit()
		if r := do(t, h, "GET", path(r.link("next")), nil); r.status != 403 {
			t.Errorf("consent withdrawn: %d %s", r.status, r.raw)
		}
	})
}
