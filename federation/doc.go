// Package federation resolves a query across sources: it decides whether
// the requester may see the data (role policy, then the patient's
// consent per source), looks up in the index which sources registered the
// patient, asks the permitted ones in parallel over mutual TLS, validates
// what they return, merges it into one searchset Bundle and hands back
// what the AuditEvent records (DESIGN.md section 2, "Federated queries").
//
// Nothing medical is kept: answers live in memory for the duration of one
// query. Nothing here knows routes or HTTP status codes of our own API;
// the edge maps errors (fhir.Kind) and Result to an answer.
package federation
