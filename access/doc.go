// Package access decides who may do what at the switching point: the
// identity a UZI certificate carries (Principal, ParseUZI), the role policy
// as data (Policy, Decide) and the patient's consent (ParseConsent,
// DecideConsent). Every decision is a pure function of its inputs and
// returns its reasons, so that it can be recorded in the AuditEvent and
// reviewed as a table.
//
// Nothing here knows HTTP. Errors carry a fhir.Kind (forbidden) and wrap
// the package's sentinel errors, so the edge maps them to 403 with an
// OperationOutcome in one place and callers match them with errors.Is.
package access
