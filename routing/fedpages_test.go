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
	"github.com/schakelpunt/schakelpunt/audit"
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

	t.Run("bounded in bytes, oldest first, never the result put", func(t *testing.T) {
		ps := newPageStore(10*time.Minute, 100, 5*time.Minute, 4000, clock)
		var toks []string
		var hs []*heldResult
		for i := range 6 {
			h := heldOf(1, 300) // about 0.9 kB with overhead: under a quarter of 4000
			hs = append(hs, h)
			first := ps.put(&page{owner: fmt.Sprint("owner", i), kind: "federated", held: h})
			second := ps.put(&page{owner: fmt.Sprint("owner", i), kind: "federated", held: h, offset: 1})
			toks = append(toks, first)
			now = now.Add(time.Second)
			if ps.held > 4000 {
				t.Fatalf("after %d results: %d bytes held", i+1, ps.held)
			}
			for _, tok := range []string{first, second} {
				if _, ok := ps.get(tok, fmt.Sprint("owner", i)); !ok {
					t.Fatalf("result %d: making room evicted the result being put", i+1)
				}
			}
		}
		if _, ok := ps.get(toks[0], "owner0"); ok {
			t.Error("the oldest result was not evicted")
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

	t.Run("a result over a quarter of the bound is not held", func(t *testing.T) {
		ps := newPageStore(10*time.Minute, 100, 5*time.Minute, 4000, clock)
		small := heldOf(1, 300)
		keep := ps.put(&page{owner: "b", kind: "federated", held: small})
		big := heldOf(1, 1000) // about 1.6 kB: over 1000
		if ps.holdable(big.size) || !ps.holdable(small.size) {
			t.Fatalf("holdable: %d bytes %v, %d bytes %v", big.size, ps.holdable(big.size), small.size, ps.holdable(small.size))
		}
		if tok := ps.put(&page{owner: "a", kind: "federated", held: big}); tok != "" {
			t.Errorf("an oversized result was stored under %q", tok)
		}
		if _, ok := ps.get(keep, "b"); !ok || ps.held != small.size || len(ps.pages) != 1 || big.refs != 0 {
			t.Errorf("after refusing: other result served %v, %d bytes held, %d pages, %d refs", ok, ps.held, len(ps.pages), big.refs)
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

// TestPageStoreFlood: reading a page again mints no token, and one owner
// cannot evict another owner's pages however many it makes.
func TestPageStoreFlood(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }

	t.Run("re-reading a page keeps the store's size", func(t *testing.T) {
		ps := newPageStore(10*time.Minute, 100, 5*time.Minute, 1<<20, clock)
		h := heldOf(30, 10)
		p := &page{owner: "a", kind: "federated", held: h}
		tok := ps.put(p)
		mk := func() *page { return &page{owner: "a", kind: "federated", held: h, offset: 10, prev: tok} }
		next := ps.nextOf(tok, p, mk)
		for i := range 1000 {
			if n := ps.nextOf(tok, p, mk); n != next || len(ps.pages) != 2 {
				t.Fatalf("read %d: next %q (first %q), %d pages", i+2, n, next, len(ps.pages))
			}
		}
		if q, ok := ps.get(next, "a"); !ok || q.offset != 10 || q.prev != tok {
			t.Errorf("the next page: %v %+v", ok, q)
		}
		ps.remove(next) // evicted: the next read mints it again
		if n := ps.nextOf(tok, p, mk); n == "" || n == next || len(ps.pages) != 2 {
			t.Errorf("after eviction: next %q, %d pages", n, len(ps.pages))
		}
		ps.drop(h)
		if n := ps.nextOf(tok, p, mk); n != "" || len(ps.pages) != 0 || ps.held != 0 {
			t.Errorf("a dropped result got a next page %q: %d pages, %d bytes", n, len(ps.pages), ps.held)
		}
	})

	t.Run("an owner evicts only its own oldest pages", func(t *testing.T) {
		ps := newPageStore(10*time.Minute, 100, 5*time.Minute, 1<<20, clock) // 10 pages an owner
		var others []string
		for i := range 5 {
			others = append(others, ps.put(&page{owner: "b", kind: "search"}))
			others = append(others, ps.put(&page{owner: fmt.Sprint("c", i), kind: "federated", held: heldOf(1, 10)}))
		}
		var flood []string
		for range 10_000 {
			flood = append(flood, ps.put(&page{owner: "a", kind: "search"}))
		}
		for i, tok := range others {
			if _, ok := ps.get(tok, []string{"b", fmt.Sprint("c", i/2)}[i%2]); !ok {
				t.Errorf("another owner's page %d was evicted", i)
			}
		}
		if len(ps.pages) != 20 {
			t.Errorf("%d pages, want 10 of the flooder and 10 of the others", len(ps.pages))
		}
		if _, ok := ps.get(flood[0], "a"); ok {
			t.Error("the flooder's oldest page survived")
		}
		for _, tok := range flood[len(flood)-10:] {
			if _, ok := ps.get(tok, "a"); !ok {
				t.Error("one of the flooder's 10 newest pages was evicted")
			}
		}
	})

	t.Run("a full store evicts from the owner with the most pages", func(t *testing.T) {
		ps := newPageStore(10*time.Minute, 20, 5*time.Minute, 1<<20, clock) // 2 pages an owner
		var small string
		for i := range 10 {
			if i == 9 {
				small = ps.put(&page{owner: "small", kind: "search"})
				continue
			}
			ps.put(&page{owner: fmt.Sprint("o", i), kind: "search"})
			ps.put(&page{owner: fmt.Sprint("o", i), kind: "search"})
		}
		ps.put(&page{owner: "z", kind: "search"}) // 20: full
		for range 100 {
			ps.put(&page{owner: "z", kind: "search"})
			ps.put(&page{owner: fmt.Sprint("o", 0), kind: "search"})
		}
		if _, ok := ps.get(small, "small"); !ok || len(ps.pages) != 20 {
			t.Errorf("the owner with the fewest pages lost its page (%v); %d pages", ok, len(ps.pages))
		}
		for i := range 9 {
			if ps.order[fmt.Sprint("o", i)] == nil {
				t.Errorf("owner o%d lost all its pages", i)
			}
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

func (f *fakeFederator) MedicationDispenses(ctx context.Context, p access.Principal, bsn string, params url.Values, fetched federation.Fetched) (federation.Result, error) {
	f.asked.Add(1)
	res := federation.Result{Permit: true, Reasons: []string{"test permit"}, Answered: true}
	if fetched != nil {
		fetched(res)
	}
	res.Searchset, res.Count = f.set, len(f.set.Matches)
	return res, nil
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

func (f *fakeFederator) GPSummary(ctx context.Context, p access.Principal, bsn string, fetched federation.Fetched) (federation.Result, error) {
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

// TestFederatedPagesBounded: reading a page again hands out the same next
// link (no new page state), and a result too large to hold is answered
// with its first page, no next link and a too-costly warning.
func TestFederatedPagesBounded(t *testing.T) {
	query := "/MedicationDispense?patient.identifier=" + fhir.SystemBSN + "|999911120"
	path := func(link string) string { return strings.TrimPrefix(link, "https://sp.test/fhir/R4") }
	lastSeq := func(h *harness) int64 {
		evs := storedEvents(t, h)
		if len(evs) == 0 {
			return 0
		}
		return evs[len(evs)-1].seq
	}

	t.Run("re-reading a page mints no token", func(t *testing.T) {
		set := &federation.Searchset{}
		for i := range 7 {
			set.Matches = append(set.Matches, fhir.BundleEntry{FullURL: fmt.Sprintf("https://src/fhir/R4/MedicationDispense/%d", i),
				Resource: json.RawMessage(fmt.Sprintf(`{"resourceType":"MedicationDispense","id":"%d"}`, i)), Search: &fhir.EntrySearch{Mode: "match"}})
			set.SourceURAs = append(set.SourceURAs, "90000002")
		}
		fed := &fakeFederator{set: set}
		fed.permit("90000002")
		h := mustServeWith(t, func(c *Config) { c.Federator = fed }).as("pharmacist")
		first := do(t, h, "GET", query+"&_count=3", nil)
		second := path(first.link("next"))
		if first.status != 200 || second == "" {
			t.Fatalf("first page: %d %s", first.status, first.raw)
		}
		if again := do(t, h, "GET", path(first.link("self")), nil); again.link("next") != first.link("next") {
			t.Errorf("the first page read again links next to %s, first to %s", again.link("next"), first.link("next"))
		}
		before := lastSeq(h)
		var third string
		const reads = 25
		for i := range reads {
			r := do(t, h, "GET", second, nil)
			if r.status != 200 || len(r.entries()) != 3 || path(r.link("self")) != second || path(r.link("previous")) != path(first.link("self")) {
				t.Fatalf("read %d: %d %s", i+1, r.status, r.raw)
			}
			if i == 0 {
				third = r.link("next")
			} else if r.link("next") != third {
				t.Fatalf("read %d links next to %s, the first read to %s", i+1, r.link("next"), third)
			}
		}
		if r := do(t, h, "GET", path(third), nil); r.status != 200 || len(r.entries()) != 1 || r.link("next") != "" {
			t.Errorf("last page: %d %s", r.status, r.raw)
		}
		if n := fed.asked.Load(); n != 1 {
			t.Errorf("the sources were asked %d times", n)
		}
		var pageReads int
		for _, ev := range storedEventsAfter(t, h, before) {
			if ev.subtype == "page" && ev.outcome == "0" {
				pageReads++
			}
		}
		if pageReads != reads+1 {
			t.Errorf("%d page reads audited, want %d", pageReads, reads+1)
		}
	})

	t.Run("too large to hold", func(t *testing.T) {
		// Forty entries sharing one 1 MiB resource: about 40 MiB counted,
		// over a quarter of maxHeldBytes.
		body := json.RawMessage(`{"resourceType":"MedicationDispense","id":"x","note":[{"text":"` + strings.Repeat("a", 1<<20) + `"}]}`)
		set := &federation.Searchset{}
		for i := range 40 {
			set.Matches = append(set.Matches, fhir.BundleEntry{FullURL: fmt.Sprintf("https://src/fhir/R4/MedicationDispense/%d", i), Resource: body, Search: &fhir.EntrySearch{Mode: "match"}})
			set.SourceURAs = append(set.SourceURAs, "90000002")
		}
		if size := newHeld(set, "999911120", fhir.CategoryMedication, 2).size; size <= maxHeldBytes/heldShare {
			t.Fatalf("the fixture is %d bytes: not over the share", size)
		}
		fed := &fakeFederator{set: set}
		fed.permit("90000002")
		h := mustServeWith(t, func(c *Config) { c.Federator = fed }).as("pharmacist")
		before := lastSeq(h)
		r := do(t, h, "GET", query+"&_count=2", nil)
		var matches int
		var warnings []map[string]any
		for _, e := range r.entries() {
			switch e["search"].(map[string]any)["mode"] {
			case "match":
				matches++
			case "outcome":
				for _, is := range e["resource"].(map[string]any)["issue"].([]any) {
					warnings = append(warnings, is.(map[string]any))
				}
			}
		}
		if r.status != 200 || matches != 2 || r.body["link"] != nil {
			t.Errorf("%d, %d matches, links %v", r.status, matches, r.body["link"])
		}
		if len(warnings) != 1 || warnings[0]["code"] != "too-costly" || warnings[0]["severity"] != "warning" ||
			!strings.Contains(warnings[0]["diagnostics"].(string), "whenhandedover") {
			t.Errorf("outcome issues %v", warnings)
		}
		evs := storedEventsAfter(t, h, before)
		if len(evs) != 1 || evs[0].subtype != "search-type" || evs[0].outcome != "0" {
			t.Errorf("audited %+v, want one successful search-type", evs)
		}
	})
}

// TestFederatedRecordedOnce: the AuditEvent of a federated search is
// written while the answers are checked (federation.Fetched), once, with
// the sources; when it cannot be written, none of the answer leaves.
func TestFederatedRecordedOnce(t *testing.T) {
	set := &federation.Searchset{}
	for i := range 3 {
		set.Matches = append(set.Matches, fhir.BundleEntry{FullURL: fmt.Sprintf("https://src/fhir/R4/MedicationDispense/d%d", i),
			Resource: json.RawMessage(fmt.Sprintf(`{"resourceType":"MedicationDispense","id":"d%d"}`, i)), Search: &fhir.EntrySearch{Mode: "match"}})
		set.SourceURAs = append(set.SourceURAs, "90000002")
	}
	fed := &sourcedFederator{fakeFederator: fakeFederator{set: set},
		sources: []audit.Source{{URA: "90000002", Name: "Apotheek De Brug", URL: "https://src/fhir/R4/MedicationDispense?patient=b1", Count: 4, Outcome: "ok"}}}
	h := mustServeWith(t, func(c *Config) { c.Federator = fed })
	query := "/MedicationDispense?patient.identifier=" + fhir.SystemBSN + "|999911120"

	h.audit.broken.Store(true)
	r := do(t, h.as("pharmacist"), "GET", query, nil)
	if r.status != 503 || !contains(r.issueCodes(), "transient") || strings.Contains(string(r.raw), "MedicationDispense") {
		t.Fatalf("audit broken: %d %s, want 503 transient and no data", r.status, r.raw)
	}
	h.audit.broken.Store(false)

	if r := do(t, h.as("pharmacist"), "GET", query, nil); r.status != 200 || len(r.entries()) != 3 {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	log := do(t, h.as("supervisor"), "GET", "/AuditEvent?agent:identifier=http://fhir.nl/fhir/NamingSystem/uzi-nr-pers|11111112", nil)
	if n := len(log.entries()); n != 1 {
		t.Fatalf("%d AuditEvents of the pharmacist, want 1 (the refused query's was not stored): %s", n, log.raw)
	}
	ev := string(log.raw)
	for _, want := range []string{`"valueString":"4"`, "Apotheek De Brug", `"outcome":"0"`} {
		if !strings.Contains(ev, want) {
			t.Errorf("the AuditEvent lacks %s: %s", want, ev)
		}
	}
}

// sourcedFederator is fakeFederator handing over sources to the log.
type sourcedFederator struct {
	fakeFederator
	sources []audit.Source
}

func (f *sourcedFederator) MedicationDispenses(ctx context.Context, p access.Principal, bsn string, params url.Values, fetched federation.Fetched) (federation.Result, error) {
	res := federation.Result{Permit: true, Reasons: []string{"test permit"}, Answered: true, Sources: f.sources}
	if fetched != nil {
		fetched(res)
	}
	res.Searchset, res.Count = f.set, len(f.set.Matches)
	return res, nil
}

// unansweredSummary is fakeFederator whose GP summary no source answered.
type unansweredSummary struct{ fakeFederator }

func (f *unansweredSummary) GPSummary(ctx context.Context, p access.Principal, bsn string, fetched federation.Fetched) (federation.Result, error) {
	res := federation.Result{Permit: true, Reasons: []string{"test permit"},
		Sources: []audit.Source{{URA: "90000001", Name: "Huisartsenpraktijk", Outcome: "unavailable"}}}
	if fetched != nil {
		fetched(res)
	}
	return res, nil
}

// TestUnansweredSummaryRecordedAsFailed: a GP summary that no source
// answered is a 503, and its AuditEvent records the failure, not the 200
// of a query whose sources answered.
func TestUnansweredSummaryRecordedAsFailed(t *testing.T) {
	h := mustServeWith(t, func(c *Config) { c.Federator = &unansweredSummary{} })
	r := do(t, h.as("gp"), "GET", "/Patient/$summary?identifier="+fhir.SystemBSN+"|999911120", nil)
	if r.status != 503 || !contains(r.issueCodes(), "transient") {
		t.Fatalf("%d %s, want 503 transient", r.status, r.raw)
	}
	evs := storedEvents(t, h)
	if len(evs) != 1 || evs[0].outcome == "0" {
		t.Errorf("audited %+v, want one event with a failed outcome", evs)
	}
}
