// Package profiles holds Schakelpunt's own StructureDefinitions (FHIR JSON
// under definitions/, embedded) and the validator that guards the edge: every
// write, every $validate and every resource a source returns.
//
// A Validator checks a resource in three steps:
//
//  1. base R4 validation by the codec: google/fhir's jsonformat for writes
//     and $validate, and for resources from sources the codec's Validate, a
//     walk of the decoded JSON over the same R4 definitions with the same
//     verdicts, ten times faster (fhir/base.go);
//  2. the profile's constraints, compiled once at start from each
//     StructureDefinition's differential into one JSON Schema per profile by
//     a generator of our own (cardinality, fixed and pattern values, type
//     choices, required bindings to small value sets, slices, forbidden
//     elements) and checked with santhosh-tekuri/jsonschema;
//  3. Go checks a schema cannot express: the BSN eleven-check, the URA
//     format, Period start not after end, and each Bundle entry validated
//     against the profiles of its own type.
//
// Issues carry a severity, an IssueType code and a FHIRPath expression of the
// element at fault; diagnostics are taken from the StructureDefinitions and
// never quote a BSN or other content of the resource.
//
// This package is the only importer of jsonschema.
package profiles
