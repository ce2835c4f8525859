package federation

import (
	"context"
	"net/url"
	"slices"
	"strconv"

	"github.com/schakelpunt/schakelpunt/access"
	"github.com/schakelpunt/schakelpunt/fhir"
)

// passedMedicationParams are the MedicationDispense search parameters
// passed through to the sources. The requester's _count is not among
// them: it is the page size of the merged result, which the caller pages
// (Result.Searchset); each source is asked for sourcePageSize resources
// a page and its next links are followed (see fetchAll).
var passedMedicationParams = []string{"whenhandedover", "status"}

// Fetched receives what the access log records of a federated query as
// soon as every asked source has answered or failed, before their
// resources are checked: the Result's Permit, Reasons, Sources and
// Answered, as the query's Result will have them. The caller can make the
// AuditEvent durable while the answers are being checked instead of
// after. It is called at most once, in the caller's goroutine, and not
// when the query is denied.
type Fetched func(Result)

// MedicationDispenses answers MedicationDispense?patient.identifier=<bsn>
// across the sources: decide, look up, ask, validate, merge, record.
// fetched, when not nil, gets the record early (see Fetched).
//
// A denial by the role policy, or a query no source may answer (no
// index entry, no consent, or a consent that excludes every source),
// returns a forbidden error wrapping access.ErrDenied together with a
// Result carrying the reasons for the audit record. Failing sources do
// not make an error: they become outcome entries. The merged result is
// Result.Searchset (Result.Bundle stays nil): the caller pages it.
func (e *Engine) MedicationDispenses(ctx context.Context, p access.Principal, bsn string, params url.Values, fetched Fetched) (Result, error) {
	// Decide and look up: policy, index, consent.
	asked, res, err := e.permitted(ctx, p, bsn, access.QueryMedication, CategoryMedication, fhir.CategoryMedication, "patient.identifier")
	if err != nil {
		return res, err
	}

	// Ask: every permitted source in parallel, within the deadline.
	query := url.Values{"_count": {strconv.Itoa(sourcePageSize)}}
	for _, k := range passedMedicationParams {
		if v, ok := params[k]; ok {
			query[k] = v
		}
	}
	answers, rec := e.askAll(ctx, asked, func(t target) string {
		q := make(url.Values, len(query)+1)
		for k, v := range query {
			q[k] = v
		}
		q.Set("patient", t.patientID)
		return t.source.BaseURL + "/MedicationDispense?" + q.Encode()
	}, parseSearchset,
		// Validate each entry and keep only those about the asked
		// patient, each source's as soon as it answered.
		func(ctx context.Context, a *answer) { e.validate(ctx, a, "MedicationDispense") },
		res.early(fetched))

	// Merge: one searchset, newest dispense first, outcomes apart.
	res.Searchset = mergeSet(answers)
	res.Count = len(res.Searchset.Matches)

	// Record: what each source returned, for the AuditEvent.
	return res.with(rec), nil
}

// MedicationSources re-decides, without asking any source, which
// sources the requester may now see medication of for bsn: the role
// policy, the index and the patient's consent as they are now. It
// returns their URAs, and a Result with the reasons for the audit
// record; a denial is an error wrapping access.ErrDenied, as for
// MedicationDispenses. A held result's later page is served only when
// every source in it is still permitted: a page outlives no consent.
func (e *Engine) MedicationSources(ctx context.Context, p access.Principal, bsn string) ([]string, Result, error) {
	asked, res, err := e.permitted(ctx, p, bsn, access.QueryMedication, CategoryMedication, fhir.CategoryMedication, "patient.identifier")
	if err != nil {
		return nil, res, err
	}
	uras := make([]string, 0, len(asked))
	for _, t := range asked {
		uras = append(uras, t.source.URA)
	}
	return uras, res, nil
}

// early is askAll's fetched for a query whose Result so far is r: it
// hands fetched the Result as the record completes it (nil if fetched is).
func (r Result) early(fetched Fetched) func(fetchRecord) {
	if fetched == nil {
		return nil
	}
	return func(rec fetchRecord) { fetched(r.with(rec)) }
}

// with returns r with the record of the asked sources added.
func (r Result) with(rec fetchRecord) Result {
	r.Sources = append(slices.Clip(r.Sources), rec.sources...)
	r.Answered = rec.answered
	return r
}
