package federation_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/schakelpunt/schakelpunt/access"
	"github.com/schakelpunt/schakelpunt/federation"
	"github.com/schakelpunt/schakelpunt/fhir"
	"github.com/schakelpunt/schakelpunt/profiles"
)

// respond replaces a source's answers.
func respond(status int, body []byte) func(http.Handler) http.Handler {
	return func(http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/fhir+json")
			w.WriteHeader(status)
			_, _ = w.Write(body)
		})
	}
}

func slow(d time.Duration) func(http.Handler) http.Handler {
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-time.After(d):
			case <-r.Context().Done():
				return
			}
			h.ServeHTTP(w, r)
		})
	}
}

// askFor answers a question about another patient of the same source.
func askFor(patient string) func(http.Handler) http.Handler {
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			q := r.URL.Query()
			q.Set("patient", patient)
			r.URL.RawQuery = q.Encode()
			h.ServeHTTP(w, r)
		})
	}
}

// breakFirst makes the first MedicationDispense of the answer invalid.
func breakFirst(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		var b map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		b["entry"].([]any)[0].(map[string]any)["resource"].(map[string]any)["status"] = "not-a-status"
		body, _ := json.Marshal(b)
		w.Header().Set("Content-Type", "application/fhir+json")
		_, _ = w.Write(body)
	})
}

func TestMedicationDispenses(t *testing.T) {
	t.Parallel()
	huge := append([]byte(`{"resourceType":"Bundle","type":"searchset","entry":[`), bytes.Repeat([]byte(" "), 2<<20)...)
	huge = append(huge, "]}"...)
	both := []string{consent("")}
	long := []string{strings.Replace(consent(""), testBSN, "999900031", 1)} // 16 dispenses at De Brug, 2 at Het Kruis
	tests := []struct {
		name      string
		principal access.Principal
		opts      envOptions
		params    url.Values
		wantErr   error
		want      map[string]int    // URA → entries expected from it
		outcomes  map[string]string // URA → audit outcome prefix, for each source with a problem
		unnamed   []string          // URAs the Bundle must not mention
		warned    map[string]string // URA → code of its warning outcome entry, its audit outcome "ok"
		returned  map[string]int    // URA → count in the audit record, when more than are shown
		bsn       string            // default testBSN
		answered  bool
	}{
		{name: "permit both", principal: gp, opts: envOptions{consents: both},
			want: map[string]int{uraBrug: nBrug, uraKruis: nKruis}, answered: true},
		{name: "_count is the merged page size, not the sources'", principal: gp, opts: envOptions{consents: both}, params: url.Values{"_count": {"2"}, "foo": {"x"}},
			want: map[string]int{uraBrug: nBrug, uraKruis: nKruis}, answered: true},
		{name: "status passed", principal: gp, opts: envOptions{consents: both}, params: url.Values{"status": {"entered-in-error"}},
			want: map[string]int{}, answered: true},
		{name: "next links followed", principal: gp, opts: envOptions{consents: both, wrap: map[string]func(http.Handler) http.Handler{uraKruis: pageSize(2)}},
			want: map[string]int{uraBrug: nBrug, uraKruis: nKruis}, answered: true},
		{name: "next links bounded", principal: gp, opts: envOptions{consents: both, wrap: map[string]func(http.Handler) http.Handler{uraKruis: pageSize(1)}},
			want: map[string]int{uraBrug: nBrug, uraKruis: 4}, outcomes: map[string]string{uraKruis: "ok, truncated after 4 pages"}, warned: map[string]string{uraKruis: "incomplete"}, answered: true},
		{name: "next link elsewhere not followed", principal: gp, opts: envOptions{consents: both, wrap: map[string]func(http.Handler) http.Handler{uraKruis: chain(pageSize(2), nextTo("https://127.0.0.1:1/fhir/R4/MedicationDispense?patient=x"))}},
			want: map[string]int{uraBrug: nBrug, uraKruis: 2}, warned: map[string]string{uraKruis: "incomplete"}, answered: true},
		{name: "no consent", principal: gp, wantErr: access.ErrDenied},
		{name: "consent for one source", principal: gp, opts: envOptions{consents: []string{consent(uraBrug)}},
			want: map[string]int{uraBrug: nBrug}, outcomes: map[string]string{uraKruis: "not asked"}, unnamed: []string{uraKruis}, answered: true},
		{name: "invalid consent denies", principal: gp, opts: envOptions{consents: []string{consent(""), strings.Replace(consent(uraKruis), `"permit"`, `"maybe"`, 1)}},
			wantErr: access.ErrDenied},
		{name: "physio denied", principal: professional("04.000"), opts: envOptions{consents: both}, wantErr: access.ErrDenied},
		{name: "one source down", principal: gp, opts: envOptions{consents: both, down: map[string]bool{uraKruis: true}},
			want: map[string]int{uraBrug: nBrug}, outcomes: map[string]string{uraKruis: "unavailable"}, answered: true},
		{name: "slow past timeout", principal: gp, opts: envOptions{consents: both, wrap: map[string]func(http.Handler) http.Handler{uraKruis: slow(2 * time.Second)},
			config: func(c *federation.Config) { c.PerSourceTimeout = 300 * time.Millisecond }},
			want: map[string]int{uraBrug: nBrug}, outcomes: map[string]string{uraKruis: "timeout"}, answered: true},
		{name: "overall deadline", principal: gp, opts: envOptions{consents: both, wrap: map[string]func(http.Handler) http.Handler{uraKruis: slow(2 * time.Second)},
			config: func(c *federation.Config) { c.PerSourceTimeout = 3 * time.Second; c.Deadline = 300 * time.Millisecond }},
			want: map[string]int{uraBrug: nBrug}, outcomes: map[string]string{uraKruis: "timeout"}, answered: true},
		{name: "not indexed", principal: gp, opts: envOptions{consents: both}, bsn: "999900043", wantErr: access.ErrDenied},
		{name: "500", principal: gp, opts: envOptions{consents: both, wrap: map[string]func(http.Handler) http.Handler{uraKruis: respond(500, []byte(`{"resourceType":"OperationOutcome"}`))}},
			want: map[string]int{uraBrug: nBrug}, outcomes: map[string]string{uraKruis: "error status"}, answered: true},
		{name: "garbage", principal: gp, opts: envOptions{consents: both, wrap: map[string]func(http.Handler) http.Handler{uraKruis: respond(200, []byte("<html>oops"))}},
			want: map[string]int{uraBrug: nBrug}, outcomes: map[string]string{uraKruis: "unreadable"}, answered: true},
		{name: "huge body", principal: gp, opts: envOptions{consents: both, wrap: map[string]func(http.Handler) http.Handler{uraKruis: respond(200, huge)},
			config: func(c *federation.Config) { c.MaxResponseBytes = 1 << 20 }},
			want: map[string]int{uraBrug: nBrug}, outcomes: map[string]string{uraKruis: "answer too big"}, answered: true},
		{name: "another patient", principal: gp, opts: envOptions{consents: both, wrap: map[string]func(http.Handler) http.Handler{uraKruis: askFor("kruis-5790")}},
			want: map[string]int{uraBrug: nBrug}, warned: map[string]string{uraKruis: "security"}, returned: map[string]int{uraKruis: 5}, answered: true},
		{name: "invalid dispense", principal: gp, opts: envOptions{consents: both, wrap: map[string]func(http.Handler) http.Handler{uraKruis: breakFirst}},
			want: map[string]int{uraBrug: nBrug, uraKruis: nKruis - 1}, warned: map[string]string{uraKruis: "invalid"}, returned: map[string]int{uraKruis: nKruis}, answered: true},
		{name: "a long answer, validated in parallel", principal: gp, opts: envOptions{consents: long}, bsn: "999900031",
			want: map[string]int{uraBrug: 16, uraKruis: 2}, answered: true},
		{name: "an invalid dispense in a long answer", principal: gp, opts: envOptions{consents: long, wrap: map[string]func(http.Handler) http.Handler{uraBrug: breakFirst}}, bsn: "999900031",
			want: map[string]int{uraBrug: 15, uraKruis: 2}, warned: map[string]string{uraBrug: "invalid"}, returned: map[string]int{uraBrug: 16}, answered: true},
		{name: "all down", principal: gp, opts: envOptions{consents: both, down: map[string]bool{uraBrug: true, uraKruis: true}},
			outcomes: map[string]string{uraBrug: "unavailable", uraKruis: "unavailable"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := mustEnv(t, tt.opts)
			bsn := tt.bsn
			if bsn == "" {
				bsn = testBSN
			}
			start := time.Now()
			var early []federation.Result
			res, err := e.engine.MedicationDispenses(context.Background(), tt.principal, bsn, tt.params,
				func(r federation.Result) { early = append(early, r) })
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("took %v", d)
			}
			// What the access log records is handed over once, before
			// the resources are checked, as the result has it.
			switch {
			case tt.wantErr != nil && len(early) > 0:
				t.Errorf("a denied query handed over a record to log: %+v", early)
			case tt.wantErr == nil && len(early) != 1:
				t.Errorf("the record to log was handed over %d times, want once", len(early))
			case tt.wantErr == nil && (!reflect.DeepEqual(early[0].Sources, res.Sources) || early[0].Answered != res.Answered ||
				early[0].Permit != res.Permit || !reflect.DeepEqual(early[0].Reasons, res.Reasons)):
				t.Errorf("the record handed over early differs from the result's:\n%+v\n%+v", early[0], res)
			}
			if len(res.Reasons) == 0 {
				t.Error("no reasons for the audit record")
			}
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				if res.Bundle != nil || res.Permit {
					t.Fatalf("denied but data: permit %v, %d bytes", res.Permit, len(res.Bundle))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.Answered != tt.answered {
				t.Errorf("Answered = %v, want %v", res.Answered, tt.answered)
			}
			checkBundle(t, e, res, tt.want, tt.outcomes, tt.unnamed, tt.warned, tt.returned)
		})
	}
}

func checkBundle(t *testing.T, e *env, res federation.Result, want map[string]int, outcomes map[string]string, unnamed []string, warned map[string]string, returned map[string]int) {
	t.Helper()
	set := res.Searchset
	if set == nil || res.Bundle != nil {
		t.Fatalf("Searchset %v, Bundle %d bytes: want only a Searchset", set, len(res.Bundle))
	}
	if len(set.SourceURAs) != len(set.Matches) {
		t.Fatalf("%d source URAs for %d matches", len(set.SourceURAs), len(set.Matches))
	}
	for i, m := range set.Matches {
		if !strings.HasPrefix(m.FullURL, e.bases[set.SourceURAs[i]]+"/") {
			t.Errorf("match %s is not from its named source %s", m.FullURL, set.SourceURAs[i])
		}
	}
	whole := fhir.NewBundle("searchset", time.Now())
	whole.Entry = append(append(whole.Entry, set.Matches...), set.Outcomes...)
	raw, err := whole.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	res.Bundle = raw
	var b bundle
	if err := json.Unmarshal(res.Bundle, &b); err != nil {
		t.Fatal(err)
	}
	if b.ResourceType != "Bundle" || b.Type != "searchset" {
		t.Fatalf("got %s %s", b.ResourceType, b.Type)
	}
	got := map[string]int{}
	var outcomeEntries []string
	last := ""
	for _, en := range b.Entry {
		if en.Search.Mode == "outcome" {
			if en.Resource["resourceType"] != "OperationOutcome" {
				t.Errorf("outcome entry is a %v", en.Resource["resourceType"])
			}
			raw, _ := json.Marshal(en.Resource)
			outcomeEntries = append(outcomeEntries, string(raw))
			continue
		}
		if len(outcomeEntries) > 0 {
			t.Error("a match entry after an outcome entry")
		}
		meta, _ := en.Resource["meta"].(map[string]any)
		src, _ := meta["source"].(string)
		ura := ""
		for u, base := range e.bases {
			if src == base {
				ura = u
			}
		}
		if ura == "" {
			t.Fatalf("meta.source %q names no source", src)
		}
		if want := src + "/MedicationDispense/" + en.Resource["id"].(string); en.FullURL != want {
			t.Errorf("fullUrl %q, want %q", en.FullURL, want)
		}
		got[ura]++
		at, _ := en.Resource["whenHandedOver"].(string)
		if last != "" && at != "" && parse(t, at).After(parse(t, last)) {
			t.Errorf("not newest first: %s after %s", at, last)
		}
		last = at
	}
	for ura, n := range want {
		if got[ura] != n {
			t.Errorf("%s: %d entries, want %d", ura, got[ura], n)
		}
	}
	for ura, n := range got {
		if want[ura] == 0 {
			t.Errorf("%s: %d entries, want none", ura, n)
		}
	}
	// Outcome entries name the failing sources that were asked, and
	// nothing else.
	wantOutcomes := 0
	for ura, code := range warned {
		if _, ok := outcomes[ura]; !ok {
			wantOutcomes++
			if !containsAny(outcomeEntries, e.bases[ura]) || !containsAny(outcomeEntries, `"`+code+`"`) {
				t.Errorf("no %s outcome entry names %s: %v", code, ura, outcomeEntries)
			}
		}
	}
	for ura, o := range outcomes {
		if !strings.HasPrefix(o, "not asked") {
			wantOutcomes++
			if !containsAny(outcomeEntries, e.bases[ura]) {
				t.Errorf("no outcome entry names %s", ura)
			}
		}
	}
	if len(outcomeEntries) != wantOutcomes {
		t.Errorf("%d outcome entries, want %d: %v", len(outcomeEntries), wantOutcomes, outcomeEntries)
	}
	for _, ura := range unnamed {
		if bytes.Contains(res.Bundle, []byte(e.bases[ura])) || bytes.Contains(res.Bundle, []byte(ura)) {
			t.Errorf("the Bundle mentions %s", ura)
		}
	}
	// The audit record lists every source with the count it returned and
	// its outcome.
	if n := len(e.basesFor(federation.CategoryMedication)); len(res.Sources) != n {
		t.Errorf("audit sources %+v, want %d", res.Sources, n)
	}
	for _, s := range res.Sources {
		wantOutcome := "ok"
		if o, ok := outcomes[s.URA]; ok {
			wantOutcome = o
		}
		if !strings.HasPrefix(s.Outcome, wantOutcome) {
			t.Errorf("audit %s outcome %q, want %q", s.URA, s.Outcome, wantOutcome)
		}
		wantCount := got[s.URA]
		if n, ok := returned[s.URA]; ok {
			wantCount = n
		}
		if s.Count != wantCount {
			t.Errorf("audit %s count %d, want %d", s.URA, s.Count, wantCount)
		}
		if s.Name == "" || s.URL == "" {
			t.Errorf("audit source without name or URL: %+v", s)
		}
	}
	if res.Count != len(b.Entry)-len(outcomeEntries) {
		t.Errorf("Count %d, entries %d", res.Count, len(b.Entry)-len(outcomeEntries))
	}
}

func containsAny(ss []string, sub string) bool {
	for _, s := range ss {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

func parse(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatalf("whenHandedOver %q: %v", s, err)
	}
	return v
}

// pageSize makes a source serve at most n resources a page, whatever
// _count it is asked for (as a server with a lower maximum does).
func pageSize(n int) func(http.Handler) http.Handler {
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			q := r.URL.Query()
			if c, err := strconv.Atoi(q.Get("_count")); err != nil || c > n {
				q.Set("_count", strconv.Itoa(n))
			}
			r.URL.RawQuery = q.Encode()
			h.ServeHTTP(w, r)
		})
	}
}

// nextTo points a source's next link at u.
func nextTo(u string) func(http.Handler) http.Handler {
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			var b map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
			links, _ := b["link"].([]any)
			for _, l := range links {
				if l := l.(map[string]any); l["relation"] == "next" {
					l["url"] = u
				}
			}
			body, _ := json.Marshal(b)
			w.Header().Set("Content-Type", "application/fhir+json")
			_, _ = w.Write(body)
		})
	}
}

// chain applies the wrappers, the first outermost.
func chain(ws ...func(http.Handler) http.Handler) func(http.Handler) http.Handler {
	return func(h http.Handler) http.Handler {
		for i := len(ws) - 1; i >= 0; i-- {
			h = ws[i](h)
		}
		return h
	}
}

// TestCircuitBreaker: after BreakerFailures failures in a row a source is
// not asked until the cool-down has passed; then one probe goes out.
func TestCircuitBreaker(t *testing.T) {
	t.Parallel()
	var hits atomic.Int32
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	failing := func(http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits.Add(1)
			http.Error(w, "down", 503)
		})
	}
	e := mustEnv(t, envOptions{consents: []string{consent("")}, wrap: map[string]func(http.Handler) http.Handler{uraKruis: failing},
		config: func(c *federation.Config) {
			c.BreakerFailures = 2
			c.BreakerCooldown = time.Minute
			c.Now = func() time.Time { return time.Unix(0, now.Load()) }
		}})
	ask := func() string {
		res, err := e.engine.MedicationDispenses(context.Background(), gp, testBSN, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range res.Sources {
			if s.URA == uraKruis {
				return s.Outcome
			}
		}
		return ""
	}
	for i, want := range []struct {
		outcome string
		hits    int32
	}{{"error status", 1}, {"error status", 2}, {"circuit open", 2}, {"circuit open", 2}} {
		if got := ask(); !strings.HasPrefix(got, want.outcome) || hits.Load() != want.hits {
			t.Fatalf("query %d: outcome %q, hits %d; want %q, %d", i, got, hits.Load(), want.outcome, want.hits)
		}
	}
	now.Add(int64(2 * time.Minute))
	if got := ask(); !strings.HasPrefix(got, "error status") || hits.Load() != 3 {
		t.Fatalf("probe: outcome %q, hits %d", got, hits.Load())
	}
	if got := ask(); !strings.HasPrefix(got, "circuit open") || hits.Load() != 3 {
		t.Fatalf("after a failed probe: outcome %q, hits %d", got, hits.Load())
	}
}

// TestBreakerIgnoresRequesterCancel: requests the requester abandons
// (or whose deadline passes) say nothing about the source, so they must
// not open its breaker for everyone.
func TestBreakerIgnoresRequesterCancel(t *testing.T) {
	t.Parallel()
	var (
		hits    atomic.Int32
		holding atomic.Bool // while set, requests are held until the client leaves
		arrived = make(chan struct{}, 8)
	)
	holding.Store(true)
	hold := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits.Add(1)
			if holding.Load() {
				arrived <- struct{}{}
				select {
				case <-r.Context().Done():
				case <-time.After(5 * time.Second):
				}
				return
			}
			next.ServeHTTP(w, r)
		})
	}
	e := mustEnv(t, envOptions{consents: []string{consent("")}, wrap: map[string]func(http.Handler) http.Handler{uraKruis: hold},
		config: func(c *federation.Config) { c.BreakerFailures = 2; c.BreakerCooldown = time.Minute }})
	for range 4 {
		// The requester hangs up once Het Kruis has the request.
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			_, _ = e.engine.MedicationDispenses(ctx, gp, testBSN, nil, nil)
		}()
		select {
		case <-arrived:
			cancel()
			<-done
		case <-done: // Het Kruis was not asked: its breaker is open
			cancel()
			t.Fatalf("Het Kruis was not asked (hits %d): its breaker opened on abandoned requests", hits.Load())
		}
	}
	holding.Store(false)
	res, err := e.engine.MedicationDispenses(context.Background(), gp, testBSN, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range res.Sources {
		if s.URA == uraKruis && s.Outcome != "ok" {
			t.Fatalf("after 4 abandoned requests Het Kruis is %q, want asked and ok (hits %d)", s.Outcome, hits.Load())
		}
	}
	if hits.Load() != 5 {
		t.Errorf("Het Kruis was asked %d times, want 5", hits.Load())
	}
}

// concurrentChecks wraps a validator and records the most checks that ran
// at once while asking was true.
type concurrentChecks struct {
	federation.Validator
	asking      atomic.Bool
	running     atomic.Int32
	whileAsking atomic.Int32
	done        atomic.Int32 // checks finished
}

func (v *concurrentChecks) ValidateSourceMembers(ctx context.Context, body []byte, memo *profiles.SourceMemo) ([]fhir.Member, []fhir.Issue) {
	n := v.running.Add(1)
	defer v.running.Add(-1)
	if v.asking.Load() {
		for m := v.whileAsking.Load(); n > m && !v.whileAsking.CompareAndSwap(m, n); m = v.whileAsking.Load() {
		}
	}
	defer v.done.Add(1)
	time.Sleep(2 * time.Millisecond) // so that checks that may overlap do
	return v.Validator.ValidateSourceMembers(ctx, body, memo)
}

// TestChecksLeaveAProcessorWhileAsking: while a source is still being
// asked, the answers already in are checked, on all processors but one,
// which stays free to read the answers still to come (see checkSlots).
// Not parallel: it sets GOMAXPROCS.
func TestChecksLeaveAProcessorWhileAsking(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	v := &concurrentChecks{}
	v.asking.Store(true)
	late := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// Answer once De Brug's 16 are checked (within the
			// per-source timeout of 2 s).
			for start := time.Now(); v.done.Load() < 16 && time.Since(start) < 1500*time.Millisecond; {
				time.Sleep(5 * time.Millisecond)
			}
			v.asking.Store(false)
			h.ServeHTTP(w, r)
		})
	}
	e := mustEnv(t, envOptions{
		consents: []string{strings.Replace(consent(""), testBSN, "999900031", 1)}, // 16 dispenses at De Brug, 2 at Het Kruis
		wrap:     map[string]func(http.Handler) http.Handler{uraKruis: late},
		config: func(c *federation.Config) {
			v.Validator = c.Validator
			c.Validator = v
		},
	})
	res, err := e.engine.MedicationDispenses(context.Background(), gp, "999900031", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(res.Searchset.Matches); got != 18 {
		t.Fatalf("%d dispenses, want 18", got)
	}
	if got := v.whileAsking.Load(); got != 1 {
		t.Errorf("at most %d checks at once while a source was still asked, want 1 (of GOMAXPROCS 2)", got)
	}
}
