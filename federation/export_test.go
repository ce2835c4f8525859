package federation

import (
	"context"

	"github.com/schakelpunt/schakelpunt/access"
	"github.com/schakelpunt/schakelpunt/fhir"
)

// Target is a source the first half of a federated query would ask.
type Target struct {
	URA       string
	PatientID string // the patient's id at the source
}

// Permitted runs the first half of a federated query of category
// (CategoryMedication or CategoryGPSummary) and stops before the fan-out:
// the role policy, the index lookup, the read of the patient's consents
// and the consent decision per source. It returns the sources that would
// be asked, the Result the AuditEvent would record, and the error the
// query would end with.
func (e *Engine) Permitted(ctx context.Context, p access.Principal, bsn, category string) ([]Target, Result, error) {
	action, loinc, param := access.QueryMedication, fhir.CategoryMedication, "patient.identifier"
	if category == CategoryGPSummary {
		action, loinc, param = access.QueryGPSummary, fhir.CategoryGPSummary, "identifier"
	}
	ts, res, err := e.permitted(ctx, p, bsn, action, category, loinc, param)
	out := make([]Target, 0, len(ts))
	for _, t := range ts {
		out = append(out, Target{URA: t.source.URA, PatientID: t.patientID})
	}
	return out, res, err
}
