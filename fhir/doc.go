// Package fhir is Schakelpunt's FHIR R4 vocabulary: the codec over
// google/fhir (parsing with base validation, editing stored JSON, and a
// fast base validator that walks the decoded JSON over google/fhir's R4
// definitions with its verdicts), errors
// that carry an OperationOutcome, Bundle and OperationOutcome builders,
// identifier systems, and the search parameters with the index terms they
// extract and the queries they parse.
package fhir
