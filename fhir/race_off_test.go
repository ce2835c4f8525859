//go:build !race

package fhir

// raceDetector reports whether the tests run with -race (which slows
// google/fhir's unmarshaller tenfold).
const raceDetector = false
