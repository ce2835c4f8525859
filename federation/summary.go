package federation

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/schakelpunt/schakelpunt/access"
	"github.com/schakelpunt/schakelpunt/fhir"
)

// GPSummary answers Patient/$summary?identifier=<bsn> across the sources
// that provide gp-summary: decide, look up, ask Patient/<id>/$summary,
// validate, merge, record. One source answering with nothing wrong gives
// its document Bundle as it came; otherwise Result.Bundle is a searchset
// of the documents (newest first, meta.source set) with outcome entries.
// Denials, and fetched, are as for MedicationDispenses.
func (e *Engine) GPSummary(ctx context.Context, p access.Principal, bsn string, fetched Fetched) (Result, error) {
	// Decide and look up: policy, index, consent.
	asked, res, err := e.permitted(ctx, p, bsn, access.QueryGPSummary, CategoryGPSummary, fhir.CategoryGPSummary, "identifier")
	if err != nil {
		return res, err
	}

	// Ask: every permitted source in parallel, within the deadline.
	answers, rec := e.askAll(ctx, asked, func(t target) string {
		return t.source.BaseURL + "/Patient/" + t.patientID + "/$summary"
	}, parseDocument,
		// Validate each document and keep only those about the asked
		// patient, each source's as soon as it answered.
		e.validateDocument, res.early(fetched))

	// Merge: one document as it came, or a searchset of documents.
	if len(answers) == 1 && len(answers[0].entries) == 1 && len(answers[0].issues) == 0 {
		res.Bundle, res.Count = answers[0].entries[0].Resource, 1
	} else {
		bundle, count := merge(answers, e.cfg.Now())
		if res.Bundle, err = bundle.Marshal(); err != nil {
			return res, fmt.Errorf("federation: %w", err)
		}
		res.Count = count
	}

	// Record: what each source returned, for the AuditEvent.
	return res.with(rec), nil
}

// parseDocument takes a document Bundle as one entry.
func parseDocument(body []byte) (page, error) {
	var b struct {
		ResourceType string `json:"resourceType"`
		Type         string `json:"type"`
	}
	if err := json.Unmarshal(body, &b); err != nil || b.ResourceType != "Bundle" || b.Type != "document" {
		return page{}, errGarbage
	}
	return page{entries: []entry{{FullURL: newUUID(), Resource: body}}}, nil
}

// validateDocument keeps a's document when it passes the validator and
// its Composition is about the asked patient.
func (e *Engine) validateDocument(ctx context.Context, a *answer) {
	if a.err != nil || len(a.entries) == 0 {
		return
	}
	a.slots.acquire()
	defer a.slots.release()
	doc := a.entries[0].Resource
	var b struct {
		Entry []struct {
			Resource struct {
				ResourceType string `json:"resourceType"`
				Subject      struct {
					Reference string `json:"reference"`
				} `json:"subject"`
			} `json:"resource"`
		} `json:"entry"`
	}
	// Read as shown in a searchset of documents (meta.source set), should
	// there be more than one.
	shown, date, err := fhir.WithMetaSource(doc, a.target.source.BaseURL, "timestamp")
	invalid := err != nil || json.Unmarshal(doc, &b) != nil || hasErrors(validateSource(ctx, e.cfg.Validator, doc))
	if ctx.Err() != nil {
		// Nothing unchecked is shown: the source counts as too slow.
		a.entries = nil
		a.fail(errTimeout, "timeout", "could not be checked before the deadline")
		return
	}
	switch {
	case invalid:
		a.issues = append(a.issues, fhir.Issue{Severity: "warning", Code: "invalid", Diagnostics: "sent an invalid summary document, left out"})
	case len(b.Entry) == 0 || b.Entry[0].Resource.ResourceType != "Composition" ||
		(b.Entry[0].Resource.Subject.Reference != "Patient/"+a.target.patientID &&
			b.Entry[0].Resource.Subject.Reference != a.target.source.BaseURL+"/Patient/"+a.target.patientID):
		a.issues = append(a.issues, fhir.Issue{Severity: "warning", Code: "security", Diagnostics: "sent a summary about another patient, left out"})
	default:
		ts, _ := fhir.StringValue(date)
		a.entries[0].shown, a.entries[0].at = shown, parseDate(ts)
		return
	}
	e.cfg.Logger.WarnContext(ctx, "federation: a source's summary left out", "ura", a.target.source.URA, "why", a.issues[len(a.issues)-1].Code)
	a.entries = nil
}
