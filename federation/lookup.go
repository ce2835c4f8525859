package federation

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/schakelpunt/schakelpunt/access"
	"github.com/schakelpunt/schakelpunt/audit"
	"github.com/schakelpunt/schakelpunt/fhir"
	"github.com/schakelpunt/schakelpunt/store"
)

// target is one source to ask about one of its local patients.
type target struct {
	source    Source
	patientID string   // the patient's id at the source (last segment of link.other)
	breaker   *breaker // the source's, from the registry the query started with
}

// indexEntry is what the engine reads of an index entry (DESIGN.md
// section 9).
type indexEntry struct {
	ManagingOrganization struct {
		Identifier struct {
			System string `json:"system"`
			Value  string `json:"value"`
		} `json:"identifier"`
	} `json:"managingOrganization"`
	Link []struct {
		Other struct {
			Reference string `json:"reference"`
		} `json:"other"`
	} `json:"link"`
}

// lookup finds the sources that registered bsn and provide cat, in
// registry order.
func (e *Engine) lookup(ctx context.Context, bsn, cat string) ([]target, error) {
	q := store.Query{Type: "Patient", Clauses: []fhir.Clause{{
		Param: "identifier", Strings: []string{fhir.TermSystemCode("identifier", fhir.SystemBSN, bsn)},
	}}}
	v, err := e.reads.read(ctx, q, e.readIndex)
	if err != nil {
		return nil, err
	}
	ids := v.(map[string][]string)
	var ts []target
	reg := e.registry.Load() // this query's registry, to its end
	for _, s := range reg.sources {
		if !s.provides(cat) {
			continue
		}
		seen := map[string]bool{}
		for _, id := range ids[s.URA] {
			if !seen[id] {
				seen[id] = true
				ts = append(ts, target{source: s, patientID: id, breaker: reg.breakers[s.BaseURL]})
			}
		}
	}
	return ts, nil
}

// readIndex reads a patient's index entries (q) and returns their local
// patient ids by URA.
func (e *Engine) readIndex(ctx context.Context, q store.Query) (any, int, error) {
	rs, complete, err := e.searchAll(ctx, q)
	if err != nil {
		return nil, 0, err
	}
	if !complete { // fewer sources asked: the consent still decides for each
		e.cfg.Logger.WarnContext(ctx, "federation: more index entries for one patient than a query reads", "limit", maxPerPatient)
	}
	ids := map[string][]string{} // URA → local patient ids
	for _, r := range rs {
		var ie indexEntry
		if err := json.Unmarshal(r.Body, &ie); err != nil {
			e.cfg.Logger.WarnContext(ctx, "federation: unreadable index entry", "id", r.ID)
			continue
		}
		org := ie.ManagingOrganization.Identifier
		if org.System != fhir.SystemURA || org.Value == "" {
			continue
		}
		for _, l := range ie.Link {
			ref := strings.TrimRight(l.Other.Reference, "/")
			if i := strings.LastIndexByte(ref, '/'); i >= 0 && i < len(ref)-1 {
				ids[org.Value] = append(ids[org.Value], ref[i+1:])
				break
			}
		}
	}
	return ids, len(rs), nil
}

// consents are a patient's consents as one query read them: parsed, or
// the reason none may be relied on.
type consents struct {
	list    []access.Consent
	problem string // "" or why every source is denied (with its audit word in word)
	word    string
	err     error
}

// readConsents reads and parses every consent of the patient. One
// unparsable consent denies everything, and so do more consents than one
// query reads (maxPerPatient).
func (e *Engine) readConsents(ctx context.Context, bsn string) consents {
	v, err := e.reads.read(ctx, store.Query{Type: "Consent", Clauses: []fhir.Clause{{
		Param: "patient", Strings: []string{fhir.TermRefIdentifier("patient", fhir.SystemBSN, bsn)},
	}}}, e.parseConsents)
	if err != nil {
		return consents{err: err}
	}
	return v.(consents)
}

// parseConsents reads the consents q finds and parses them.
func (e *Engine) parseConsents(ctx context.Context, q store.Query) (any, int, error) {
	rs, complete, err := e.searchAll(ctx, q)
	if err != nil {
		return nil, 0, err
	}
	if !complete {
		// A consent left unread may be the one that withdraws.
		return consents{problem: fmt.Sprintf("the patient has more consents than one query reads (%d): denied", maxPerPatient), word: "too many consents"}, len(rs), nil
	}
	cs := consents{list: make([]access.Consent, 0, len(rs))}
	for _, r := range rs {
		c, perr := access.ParseConsent(r.Body)
		if perr != nil {
			return consents{problem: "a consent of this patient is invalid: denied", word: "invalid consent"}, len(rs), nil
		}
		cs.list = append(cs.list, c)
	}
	return cs, len(rs), nil
}

// consent splits targets into those the patient's consents permit for
// the requester and the audit records of those they exclude.
func (e *Engine) consent(cs consents, p access.Principal, category string, ts []target, now time.Time) (permitted []target, excluded []audit.Source, reasons []string, err error) {
	if cs.err != nil {
		return nil, nil, nil, cs.err
	}
	if cs.problem != "" {
		for _, t := range ts {
			excluded = append(excluded, notAsked(t, cs.word))
		}
		return nil, excluded, []string{cs.problem}, errNoPermittedSource
	}
	for _, t := range ts {
		d := access.DecideConsent(cs.list, access.ConsentRequest{Requester: p, Category: category, Source: t.source.URA, At: now})
		for _, r := range d.Reasons {
			reasons = append(reasons, t.source.Name+": "+r)
		}
		if d.Permit {
			permitted = append(permitted, t)
		} else {
			excluded = append(excluded, notAsked(t, "no consent"))
		}
	}
	return permitted, excluded, reasons, nil
}

func notAsked(t target, why string) audit.Source {
	return audit.Source{URA: t.source.URA, Name: t.source.Name, URL: t.source.BaseURL, Outcome: "not asked: " + why}
}

// maxPerPatient bounds how many index entries, and how many consents, of
// one patient a query reads.
const maxPerPatient = 1000

// searchAll reads the pages of q, up to maxPerPatient resources; complete
// is false when there were more.
func (e *Engine) searchAll(ctx context.Context, q store.Query) (all []store.Resource, complete bool, err error) {
	q.Limit = 100
	for {
		page, err := e.cfg.Index.Search(ctx, q)
		if err != nil {
			return nil, false, fmt.Errorf("federation: %s search: %w", q.Type, err)
		}
		all = append(all, page.Resources...)
		if page.Next == nil {
			return all, true, nil
		}
		if len(all) >= maxPerPatient {
			return all, false, nil
		}
		q.After = page.Next
	}
}

// permitted is the first half of every federated query, read top to
// bottom: the role policy decides, the index names the sources that
// registered the patient for the category, and the patient's consent
// picks those that may be asked. It returns them with a Result that
// carries the reasons (and the sources not asked) for the audit record;
// param names the request parameter that carried the BSN.
func (e *Engine) permitted(ctx context.Context, p access.Principal, bsn string, action access.Action, category, loinc, param string) ([]target, Result, error) {
	if !fhir.ValidBSN(bsn) {
		return nil, Result{}, fhir.Errorf(fhir.KindInvalid, "value", "%s: not a valid BSN", param)
	}
	now := e.cfg.Now()

	// Decide: the role policy.
	policy := e.cfg.Policy.Decide(p, action)
	res := Result{Reasons: policy.Reasons}
	if !policy.Permit {
		return nil, res, policy.Err()
	}

	// Look up the sources that registered this BSN for the category,
	// and read the patient's consents meanwhile (two reads, at once).
	read := make(chan consents, 1)
	go func() { read <- e.readConsents(ctx, bsn) }()
	targets, err := e.lookup(ctx, bsn, category)
	cs := <-read
	if err != nil {
		return nil, res, err
	}
	if len(targets) == 0 {
		res.Reasons = append(res.Reasons, "no registered source holds this category for this patient")
	}

	// Decide: the patient's consent, per source.
	asked, excluded, reasons, err := e.consent(cs, p, loinc, targets, now)
	res.Reasons = append(res.Reasons, reasons...)
	res.Sources = excluded
	if err != nil {
		return nil, res, err
	}
	if len(asked) == 0 {
		return nil, res, errNoPermittedSource
	}
	res.Permit = true
	return asked, res, nil
}
