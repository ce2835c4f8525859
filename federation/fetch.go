package federation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/schakelpunt/schakelpunt/audit"
	"github.com/schakelpunt/schakelpunt/fhir"
)

// Reasons a source's answer could not be used, as recorded in the audit
// record (audit.Source.Outcome) and named in the outcome entry.
var (
	errUnavailable = errors.New("unavailable")
	errTimeout     = errors.New("timeout")
	errStatus      = errors.New("error status")
	errGarbage     = errors.New("unreadable answer")
	errTooBig      = errors.New("answer too big")
	errCircuitOpen = errors.New("circuit open")
)

// answer is one source's contribution to a federated query.
type answer struct {
	target    target
	url       string
	entries   []entry      // the resources returned, then those kept
	issues    []fhir.Issue // what was wrong, named in the outcome entry
	truncated bool         // the source had more pages than are followed
	err       error        // the source failed as a whole
	slots     checkSlots   // shared by the query's answers
}

// returned is what the access log records of a's source once it has
// answered or failed: the resources it returned and how the asking went.
// Checking them comes after and changes neither: what is left out is
// named in the answer's outcome entry and in the log (see validate).
func (a *answer) returned() audit.Source {
	outcome := "ok"
	switch {
	case a.err != nil:
		outcome = a.err.Error()
	case a.truncated:
		outcome = fmt.Sprintf("ok, truncated after %d pages", sourceMaxPages)
	}
	return audit.Source{URA: a.target.source.URA, Name: a.target.source.Name, URL: a.url, Count: len(a.entries), Outcome: outcome}
}

// page is one parsed answer of a source: its resources and, for a
// searchset, the URL of its next page ("" when it is the last).
type page struct {
	entries []entry
	next    string
}

// Bounds of reading a source's searchset. A federated search asks each
// source for sourcePageSize resources a page (the requester's _count is
// the page size of the merged result, not of the sources) and follows
// the source's next links for at most sourceMaxPages pages in all, all
// within the per-source timeout and each within the response size limit.
// What lies beyond is left out with a warning outcome entry.
const (
	sourcePageSize = 500
	sourceMaxPages = 4
)

// entry is one resource of a source's answer.
type entry struct {
	FullURL  string
	Resource json.RawMessage // as the source sent it
	// Once checked and kept: the resource as shown (meta.source set)
	// and its date for the merge's order (zero when it has none).
	shown json.RawMessage
	at    time.Time
}

// fetchRecord is what the access log records of the asked sources once
// each has answered or failed (see answer.returned).
type fetchRecord struct {
	sources  []audit.Source // one per asked source, in order
	answered bool           // at least one source answered
}

// A query's checkSlots bound how many goroutines check its answers at a
// time: GOMAXPROCS, less one until every source has answered or failed.
// A checking goroutine runs until it blocks or yields, and the runtime
// polls the network only on a processor with nothing else to run, not
// even a goroutine that yielded. Checks on every processor therefore left
// an answer that had arrived unread until one of them finished; a
// processor kept free of checks while sources are still being asked reads
// it at once (BENCHMARKS.md: the last answer was read 71 to 136 µs sooner
// at one client). With a single processor the checks wait for the last
// answer.
type checkSlots chan struct{}

// newCheckSlots returns a query's slots with one held for the asking,
// which askAll frees once every source has answered or failed.
func newCheckSlots() checkSlots {
	s := make(checkSlots, runtime.GOMAXPROCS(0))
	s.acquire()
	return s
}

// acquire waits for a slot; a nil checkSlots (an answer checked on its
// own) has no bound.
func (s checkSlots) acquire() {
	if s != nil {
		s <- struct{}{}
	}
}

func (s checkSlots) release() {
	if s != nil {
		<-s
	}
}

// askAll asks every target in parallel, at most MaxParallel requests in
// flight engine-wide, each within the per-source timeout and all within
// the deadline, and checks each answer (check, within the deadline) as
// soon as it is in: the validation of one source's answer overlaps the
// wait for the others, on all processors but one (see checkSlots). Once
// every source has answered or failed, and while the answers are still
// being checked, fetched (if not nil) gets their record. askAll returns
// one answer per target, in target order, and the record.
func (e *Engine) askAll(ctx context.Context, ts []target, urlOf func(target) string, parse func(body []byte) (page, error), check func(context.Context, *answer), fetched func(fetchRecord)) ([]answer, fetchRecord) {
	dctx, cancel := context.WithTimeout(ctx, e.cfg.Deadline)
	defer cancel()
	answers := make([]answer, len(ts))
	rec := fetchRecord{sources: make([]audit.Source, len(ts))}
	answered := make([]bool, len(ts))
	slots := newCheckSlots()
	var asked, checked sync.WaitGroup
	asked.Add(len(ts))
	for i, t := range ts {
		answers[i] = answer{target: t, url: urlOf(t), slots: slots}
		checked.Go(func() {
			a := &answers[i]
			e.ask(dctx, a, parse)
			rec.sources[i], answered[i] = a.returned(), a.err == nil
			asked.Done()
			check(dctx, a)
		})
	}
	asked.Wait()
	slots.release() // the asking's
	rec.answered = slices.Contains(answered, true)
	if fetched != nil {
		fetched(rec)
	}
	checked.Wait()
	return answers, rec
}

// ask fetches and parses one answer, with no retry, following its next
// links within the bounds above. A failure on any page fails the source
// as a whole: a partial answer could hide the newest dispenses.
func (e *Engine) ask(ctx context.Context, a *answer, parse func([]byte) (page, error)) {
	b := a.target.breaker
	if !b.allow(e.cfg.Now()) {
		a.fail(errCircuitOpen, "transient", "is not asked for a while after repeated failures")
		return
	}
	select {
	case e.sem <- struct{}{}:
		defer func() { <-e.sem }()
	case <-ctx.Done():
		// Not the source's fault: it was never asked.
		a.fail(errTimeout, "timeout", "could not be asked before the deadline")
		b.release()
		return
	}
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, e.cfg.PerSourceTimeout)
	defer cancel()
	entries, err := e.fetchAll(ctx, a, parse)
	switch {
	case err != nil && parent.Err() != nil:
		// The requester went away or the query's deadline passed: that
		// says nothing about the source, and counting it would let any
		// client open every source's breaker for everyone.
		b.release()
	default:
		b.record(e.cfg.Now(), err == nil)
	}
	if err != nil {
		e.cfg.Logger.WarnContext(ctx, "federation: source failed", "ura", a.target.source.URA, "outcome", errorKind(err))
		switch {
		case errors.Is(err, errTimeout):
			a.fail(errTimeout, "timeout", "did not answer in time")
		case errors.Is(err, errStatus):
			a.fail(errStatus, "transient", "answered with an error")
		case errors.Is(err, errTooBig):
			a.fail(errTooBig, "too-costly", "sent an answer over the size limit")
		case errors.Is(err, errGarbage):
			a.fail(errGarbage, "structure", "sent an answer that is not what was asked for")
		default:
			a.fail(errUnavailable, "transient", "could not be reached")
		}
		return
	}
	a.entries = entries
}

// fetchAll reads a's URL and the next pages it links to, at most
// sourceMaxPages in all, only under the source's own base URL.
func (e *Engine) fetchAll(ctx context.Context, a *answer, parse func([]byte) (page, error)) ([]entry, error) {
	base := a.target.source.BaseURL + "/"
	var entries []entry
	u := a.url
	for n := 0; ; n++ {
		body, err := e.fetch(ctx, u)
		if err != nil {
			return nil, err
		}
		p, err := parse(body)
		if err != nil {
			return nil, err
		}
		entries = append(entries, p.entries...)
		switch {
		case p.next == "":
			return entries, nil
		case !strings.HasPrefix(p.next, base):
			a.issues = append(a.issues, fhir.Issue{Severity: "warning", Code: "incomplete",
				Diagnostics: "sent a next link outside its base URL; its later pages are left out"})
			return entries, nil
		case n+1 == sourceMaxPages:
			a.truncated = true
			a.issues = append(a.issues, fhir.Issue{Severity: "warning", Code: "incomplete",
				Diagnostics: fmt.Sprintf("has more than %d pages of %d for this patient; the rest is left out", sourceMaxPages, sourcePageSize)})
			return entries, nil
		}
		u = p.next
	}
}

func (a *answer) fail(err error, code, diagnostics string) {
	a.err = err
	a.issues = append(a.issues, fhir.Issue{Severity: "error", Code: code, Diagnostics: diagnostics})
}

// fetch GETs u and returns the body of a 200 answer within the size
// limit.
func (e *Engine) fetch(ctx context.Context, u string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errUnavailable, err)
	}
	req.Header.Set("Accept", "application/fhir+json")
	resp, err := e.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, errTimeout
		}
		return nil, fmt.Errorf("%w: %v", errUnavailable, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // keep the connection
		return nil, fmt.Errorf("%w %d", errStatus, resp.StatusCode)
	}
	body, err := readAll(io.LimitReader(resp.Body, e.cfg.MaxResponseBytes+1), resp.ContentLength, e.cfg.MaxResponseBytes)
	if err != nil {
		if ctx.Err() != nil {
			return nil, errTimeout
		}
		return nil, fmt.Errorf("%w: %v", errUnavailable, err)
	}
	if int64(len(body)) > e.cfg.MaxResponseBytes {
		return nil, errTooBig
	}
	return body, nil
}

// readAll is io.ReadAll with a buffer made at once for the size the
// answer announces (n, -1 when unknown), when that is within limit.
func readAll(r io.Reader, n, limit int64) ([]byte, error) {
	size := int64(512)
	if n >= 0 && n <= limit {
		size = n + 1 // room to see the end without growing
	}
	b := make([]byte, 0, size)
	for {
		k, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+k]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
	}
}

// breaker fails fast after threshold consecutive failures of a source,
// for cooldown; then it lets one probe through, whose result closes or
// reopens it.
type breaker struct {
	threshold int
	cooldown  time.Duration

	mu       sync.Mutex
	failures int
	openTill time.Time
	probing  bool
}

func (b *breaker) allow(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.failures < b.threshold {
		return true
	}
	if now.Before(b.openTill) || b.probing {
		return false
	}
	b.probing = true
	return true
}

// release ends a probe without a verdict: the request was not the
// source's to fail.
func (b *breaker) release() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.probing = false
}

func (b *breaker) record(now time.Time, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.probing = false
	if ok {
		b.failures = 0
		return
	}
	b.failures++
	if b.failures >= b.threshold {
		b.openTill = now.Add(b.cooldown)
	}
}

// errorKind names a source failure for the log without its details (a
// transport error's text holds the URL, with the patient's id at the
// source).
func errorKind(err error) string {
	for _, k := range []error{errTimeout, errStatus, errGarbage, errTooBig, errCircuitOpen, errUnavailable} {
		if errors.Is(err, k) {
			return k.Error()
		}
	}
	return "failed"
}
