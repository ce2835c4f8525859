package federation

import (
	"context"
	"crypto/rand"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/schakelpunt/schakelpunt/fhir"
	"github.com/schakelpunt/schakelpunt/profiles"
)

// validate keeps of a's entries the resources of type typ that pass the
// validator, have their absolute URL at the source as fullUrl, and are
// about the asked patient; it counts and reports the others. A long
// answer is checked by up to GOMAXPROCS goroutines (validation is CPU
// work of some tens of microseconds a resource), each resource within
// one of the query's check slots (see checkSlots); the order is kept.
//
// Between resources the checking goroutine yields (runtime.Gosched), so
// that a goroutine already runnable (parsing another answer, or another
// request's work) does not wait for all of an answer's checks.
func (e *Engine) validate(ctx context.Context, a *answer, typ string) {
	if a.err != nil {
		return
	}
	verdicts := make([]verdict, len(a.entries))
	workers := min(runtime.GOMAXPROCS(0), (len(a.entries)+validateChunk-1)/validateChunk)
	if workers <= 1 {
		var memo profiles.SourceMemo
		for i := range a.entries {
			verdicts[i] = e.checkInSlot(ctx, a, &a.entries[i], typ, &memo)
			runtime.Gosched()
		}
	} else {
		var next atomic.Int64
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				var memo profiles.SourceMemo // one per goroutine
				for i := int(next.Add(1) - 1); i < len(a.entries); i = int(next.Add(1) - 1) {
					verdicts[i] = e.checkInSlot(ctx, a, &a.entries[i], typ, &memo)
					runtime.Gosched()
				}
			})
		}
		wg.Wait()
	}
	if slices.Contains(verdicts, unchecked) {
		// Nothing unchecked is shown, and a part of an answer could
		// hide the newest dispenses: the source counts as too slow.
		a.entries = nil
		a.fail(errTimeout, "timeout", "could not be checked before the deadline")
		e.cfg.Logger.WarnContext(ctx, "federation: a source's answer not checked before the deadline", "ura", a.target.source.URA)
		return
	}
	var invalid, other int
	kept := a.entries[:0]
	for i, en := range a.entries {
		switch verdicts[i] {
		case keep:
			kept = append(kept, en)
		case invalidResource:
			invalid++
		case otherPatient:
			other++
		}
	}
	a.entries = kept
	if invalid+other > 0 {
		// Not in the access log, which records what the source returned
		// (see answer.returned); the requester sees the outcome entry.
		e.cfg.Logger.WarnContext(ctx, "federation: a source's resources left out", "ura", a.target.source.URA, "invalid", invalid, "other_patient", other)
	}
	if invalid > 0 {
		a.issues = append(a.issues, fhir.Issue{Severity: "warning", Code: "invalid",
			Diagnostics: fmt.Sprintf("sent %d invalid %s resource(s), left out", invalid, typ)})
	}
	if other > 0 {
		a.issues = append(a.issues, fhir.Issue{Severity: "warning", Code: "security",
			Diagnostics: fmt.Sprintf("sent %d resource(s) about another patient, left out", other)})
	}
}

// validateChunk is the number of resources below which an answer is not
// worth validating in more than one goroutine.
const validateChunk = 8

// checkInSlot is check within one of the query's check slots.
func (e *Engine) checkInSlot(ctx context.Context, a *answer, en *entry, typ string, memo *profiles.SourceMemo) verdict {
	a.slots.acquire()
	defer a.slots.release()
	return e.check(ctx, a, en, typ, memo)
}

// verdict is what check found of one entry.
type verdict int

const (
	keep verdict = iota
	invalidResource
	otherPatient
	unchecked // the query's deadline passed first
)

// check judges one entry of a: its type, its fullUrl, the validator, and
// its subject. An entry it keeps is made ready for the merge: meta.source
// set and its whenHandedOver read, from the same split of its members.
// memo is the validator's memo of a's resources (one per goroutine).
func (e *Engine) check(ctx context.Context, a *answer, en *entry, typ string, memo *profiles.SourceMemo) verdict {
	if ctx.Err() != nil {
		return unchecked
	}
	base := a.target.source.BaseURL
	ms, issues := e.cfg.Validator.ValidateSourceMembers(ctx, en.Resource, memo)
	if hasErrors(issues) {
		return invalidResource
	}
	var err error
	if ms == nil { // the validator did not split it
		if ms, err = fhir.Members(en.Resource); err != nil {
			return invalidResource
		}
	}
	rt, id, subject, ok := identity(ms)
	if !ok || rt != typ || !isJoin(en.FullURL, base, "/", typ, "/", id) {
		return invalidResource
	}
	if !isJoin(subject, "Patient/", a.target.patientID) && !isJoin(subject, base, "/Patient/", a.target.patientID) {
		return otherPatient
	}
	if en.shown, err = fhir.SetMetaSource(en.Resource, ms, base); err != nil {
		return invalidResource // cannot happen: a validated object
	}
	en.at = dateOf(ms, "whenHandedOver")
	return keep
}

// isJoin reports whether s is the concatenation of parts, without
// building it (check compares URLs for every resource).
func isJoin(s string, parts ...string) bool {
	for _, p := range parts {
		var ok bool
		if s, ok = strings.CutPrefix(s, p); !ok {
			return false
		}
	}
	return s == ""
}

// identity reads a resource's type, id and subject reference from its
// members (ok false when its type or id is not a string).
func identity(ms []fhir.Member) (rt, id, subject string, ok bool) {
	okType, okID := false, false
	for _, m := range ms {
		switch m.Key {
		case "resourceType":
			rt, okType = fhir.StringValue(m.Value)
		case "id":
			id, okID = fhir.StringValue(m.Value)
		case "subject":
			if sub, err := fhir.Members(m.Value); err == nil {
				for _, sm := range sub {
					if sm.Key == "reference" {
						subject, _ = fhir.StringValue(sm.Value)
					}
				}
			}
		}
	}
	return rt, id, subject, okType && okID
}

// dateOf reads the dateTime member key (zero when absent or unreadable).
func dateOf(ms []fhir.Member, key string) time.Time {
	for _, m := range ms {
		if m.Key == key {
			s, _ := fhir.StringValue(m.Value)
			return parseDate(s)
		}
	}
	return time.Time{}
}

// validateSource returns the issues v finds in a resource a source
// returned.
func validateSource(ctx context.Context, v Validator, body []byte) []fhir.Issue {
	_, issues := v.ValidateSourceMembers(ctx, body, nil)
	return issues
}

func hasErrors(issues []fhir.Issue) bool {
	return slices.ContainsFunc(issues, func(i fhir.Issue) bool { return i.Severity == "error" || i.Severity == "fatal" })
}

// Searchset is a merged federated search result, for the caller to
// page: the resources newest first, and the outcome entries of the
// sources that had a problem. It is held in memory only.
type Searchset struct {
	// Matches are the kept resources, each with meta.source set to its
	// source's base URL and fullUrl its absolute URL there.
	Matches []fhir.BundleEntry
	// SourceURAs names the source of each match (parallel to Matches).
	SourceURAs []string
	// Outcomes holds one OperationOutcome entry per source that had a
	// problem (search.mode outcome).
	Outcomes []fhir.BundleEntry
}

// merge builds the searchset: the kept resources (as shown: meta.source
// set to their source's base URL by the check), newest first (undated
// last), then one outcome entry per source that had a problem.
func merge(answers []answer, now time.Time) (*fhir.Bundle, int) {
	set := mergeSet(answers)
	b := fhir.NewBundle("searchset", now)
	b.Entry = append(append(b.Entry, set.Matches...), set.Outcomes...)
	return b, len(set.Matches)
}

// mergeSet merges the checked answers into a Searchset, newest first
// (undated last, ties by fullUrl).
func mergeSet(answers []answer) *Searchset {
	type dated struct {
		fhir.BundleEntry
		ura string
		at  time.Time
	}
	n := 0
	for _, a := range answers {
		n += len(a.entries)
	}
	matches := make([]dated, 0, n)
	var outcomes []fhir.BundleEntry
	for _, a := range answers {
		for _, en := range a.entries {
			matches = append(matches, dated{fhir.BundleEntry{FullURL: en.FullURL, Resource: en.shown, Search: searchMatch}, a.target.source.URA, en.at})
		}
		if len(a.issues) > 0 {
			issues := slices.Clone(a.issues)
			for i := range issues {
				issues[i].Diagnostics = fmt.Sprintf("Source %s (%s) %s", a.target.source.Name, a.target.source.BaseURL, issues[i].Diagnostics)
			}
			outcomes = append(outcomes, fhir.BundleEntry{FullURL: newUUID(), Resource: fhir.OperationOutcome(issues...), Search: &fhir.EntrySearch{Mode: "outcome"}})
		}
	}
	slices.SortStableFunc(matches, func(x, y dated) int {
		if c := y.at.Compare(x.at); c != 0 {
			return c
		}
		return strings.Compare(x.FullURL, y.FullURL)
	})
	set := &Searchset{Matches: make([]fhir.BundleEntry, len(matches)), SourceURAs: make([]string, len(matches)), Outcomes: outcomes}
	for i, m := range matches {
		set.Matches[i], set.SourceURAs[i] = m.BundleEntry, m.ura
	}
	return set
}

// searchMatch is the search element of every match entry (never
// modified).
var searchMatch = &fhir.EntrySearch{Mode: "match"}

// parseDate reads a FHIR dateTime at any of its precisions.
func parseDate(s string) time.Time {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02", "2006-01", "2006"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t
		}
	}
	return time.Time{}
}

// newUUID returns a urn:uuid of a random (version 4) UUID.
func newUUID() string {
	var u [16]byte
	_, _ = rand.Read(u[:])
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return fmt.Sprintf("urn:uuid:%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:])
}
