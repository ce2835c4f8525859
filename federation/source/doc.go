// Package source is a reference source FHIR server for integrators and
// tests: what a GP or pharmacy system looks like to the switching point.
//
// It serves the FHIR R4 JSON files of one directory (one resource per
// file, or Bundles whose entries are loaded) at /fhir/R4 over mutual TLS,
// read-only:
//
//	GET [base]/metadata                      a CapabilityStatement
//	GET [base]/{type}/{id}                   read
//	GET [base]/{type}?patient=|subject=|_id= search, with _count (and _offset
//	                                         for the next page); for
//	                                         MedicationDispense also
//	                                         whenhandedover and status
//	GET [base]/Patient/{id}/$summary         the newest document Bundle whose
//	                                         Composition is about that patient
//
// Answers are what the switching point asks a source for (DESIGN.md
// sections 2 and 9): searchset Bundles with absolute fullUrls at this
// source, document Bundles whose entries carry their absolute URL here
// (relative references inside them resolve within the Bundle), and an
// OperationOutcome for every error, unknown search parameters included.
//
// Data is immutable once loaded and a Server holds no global state, so one
// process can run several sources, each with its own listener and data:
// `schakelpunt source` runs one, `serve --demo` the three demo sources
// whose fixtures are embedded here (DemoSources, LoadDemo, DemoFS).
package source
