// Package detect watches the access log for abnormal use: it reads the
// AuditEvents the Recorder has durably stored, keeps sliding windows of
// bounded size over them, and turns each hit of a rule into a FHIR Flag
// for the supervisors, pointing at the AuditEvents that triggered it.
//
// The rules (see Rules):
//
//   - distinct-patients: one professional (UZI number) asked about more
//     distinct patients within a window than a threshold;
//   - no-relationship: an organisation received a patient's data while
//     it neither registered that patient in the index nor had an earlier
//     contact with them in the log within a look-back period. A contact
//     is a permitted query for the patient's data (Observation.Contact);
//     reads and searches of the index, consents or the log ($ihe-pix, a
//     Patient search by BSN) are not, or one harmless lookup would make
//     any later query look like care;
//   - denial-burst: one professional was denied a number of times within
//     a short window;
//   - unusual-hour: an organisation asked about a patient in an hour of
//     the day in which it made less than a share of such requests over a
//     trailing number of days (learned per organisation, with a minimum
//     history before it fires);
//   - many-organisations: more distinct organisations than a threshold
//     asked about one patient within a window.
//
// "Asked about a patient" is any request of a person (UZI card Z, N or
// M) of an organisation naming a patient (AboutPatient), permitted or
// not; no-relationship looks only at permitted queries for a patient's
// data (Query).
//
// Time is the events' own recorded time, not the wall clock: replaying a
// log gives the same hits. Memory is bounded: windows forget what is
// older than their span, each key keeps a bounded number of events, and
// the number of keys per rule is capped.
package detect
