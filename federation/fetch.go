package federation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

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
	target  target
	url     string
	entries []entry      // the resources kept
	issues  []fhir.Issue // what was wrong, named in the outcome entry
	dropped int          // resources dropped (invalid, another patient)
	err     error        // the source failed as a whole
}

// entry is one resource of a source's searchset.
type entry struct {
	FullURL  string          `json:"fullUrl"`
	Resource json.RawMessage `json:"resource"`
	Search   *struct {
		Mode string `json:"mode"`
	} `json:"search"`
}

// outcome is the audit record's word for how the source did.
func (a *answer) outcome() string {
	switch {
	case a.err != nil:
		return a.err.Error()
	case a.dropped > 0:
		return fmt.Sprintf("ok, %d dropped", a.dropped)
	}
	return "ok"
}

// askAll asks every target in parallel, at most MaxParallel requests in
// flight engine-wide, each within the per-source timeout and all within
// the deadline. It returns one answer per target, in target order.
func (e *Engine) askAll(ctx context.Context, ts []target, urlOf func(target) string, parse func(body []byte) ([]entry, error)) []answer {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.Deadline)
	defer cancel()
	answers := make([]answer, len(ts))
	var wg sync.WaitGroup
	for i, t := range ts {
		answers[i] = answer{target: t, url: urlOf(t)}
		wg.Go(func() { e.ask(ctx, &answers[i], parse) })
	}
	wg.Wait()
	return answers
}

// ask fetches and parses one answer, with no retry.
func (e *Engine) ask(ctx context.Context, a *answer, parse func([]byte) ([]entry, error)) {
	b := a.target.breaker
	if !b.allow(e.cfg.Now()) {
		a.fail(errCircuitOpen, "transient", "is not asked for a while after repeated failures")
		return
	}
	select {
	case e.sem <- struct{}{}:
		defer func() { <-e.sem }()
	case <-ctx.Done():
		a.fail(errTimeout, "timeout", "could not be asked before the deadline")
		b.record(e.cfg.Now(), false)
		return
	}
	ctx, cancel := context.WithTimeout(ctx, e.cfg.PerSourceTimeout)
	defer cancel()
	body, err := e.fetch(ctx, a.url)
	var entries []entry
	if err == nil {
		entries, err = parse(body)
	}
	b.record(e.cfg.Now(), err == nil)
	if err != nil {
		e.cfg.Logger.WarnContext(ctx, "federation: source failed", "ura", a.target.source.URA, "outcome", err.Error())
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
	body, err := io.ReadAll(io.LimitReader(resp.Body, e.cfg.MaxResponseBytes+1))
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

// parseSearchset returns the match entries of a searchset.
func parseSearchset(body []byte) ([]entry, error) {
	var b struct {
		ResourceType string  `json:"resourceType"`
		Type         string  `json:"type"`
		Entry        []entry `json:"entry"`
	}
	if err := json.Unmarshal(body, &b); err != nil || b.ResourceType != "Bundle" || b.Type != "searchset" {
		return nil, errGarbage
	}
	matches := b.Entry[:0]
	for _, en := range b.Entry {
		if en.Search == nil || en.Search.Mode == "" || en.Search.Mode == "match" {
			matches = append(matches, en)
		}
	}
	return matches, nil
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
