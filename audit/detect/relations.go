package detect

import (
	"context"
	"fmt"
	"time"

	"github.com/schakelpunt/schakelpunt/fhir"
	"github.com/schakelpunt/schakelpunt/store"
)

// Searcher finds stored resources (a store.Store does).
type Searcher interface {
	Search(ctx context.Context, q store.Query) (store.Page, error)
}

// StoreRelations answers Relations from the store: the index entries
// (Patient) and the access log (AuditEvent), through their search
// indexes.
type StoreRelations struct {
	Store Searcher
}

// Registered reports whether an index entry of ura names the patient.
func (s StoreRelations) Registered(ctx context.Context, ura, bsn string) (bool, error) {
	page, err := s.Store.Search(ctx, store.Query{Type: "Patient", Limit: 1, Clauses: []fhir.Clause{
		{Param: "identifier", Strings: []string{fhir.TermSystemCode("identifier", fhir.SystemBSN, bsn)}},
		{Param: "organization", Strings: []string{fhir.TermRefIdentifier("organization", fhir.SystemURA, ura)}},
	}})
	if err != nil {
		return false, fmt.Errorf("detect: index: %w", err)
	}
	return len(page.Resources) > 0, nil
}

// contactScan bounds how many of an organisation's events about a
// patient EarlierContact reads in one look-back.
const contactScan = 1000

// EarlierContact reports whether the log holds a contact (see
// Observation.Contact) of organisation ura with the patient recorded in
// [since, before): a successful AuditEvent with action E (a search or
// an operation), whose agent is ura and whose patient is bsn, that
// records a permitted query for the patient's data. Index, consent and
// log searches match the indexed part of that and are read and skipped;
// after contactScan such events without a contact it reports none (the
// rule then fires: a flood of lookups does not hide a query). The log
// keeps milliseconds: before is truncated to its millisecond, so that
// the event being examined (recorded at before) is never its own
// earlier contact.
func (s StoreRelations) EarlierContact(ctx context.Context, ura, bsn string, since, before time.Time) (bool, error) {
	q := store.Query{Type: "AuditEvent", Limit: 100, Clauses: []fhir.Clause{
		{Param: "patient", Strings: []string{fhir.TermRefIdentifier("patient", fhir.SystemBSN, bsn)}},
		{Param: "agent", Strings: []string{fhir.TermRefIdentifier("agent", fhir.SystemURA, ura)}},
		{Param: "outcome", Strings: []string{fhir.TermCode("outcome", "0")}},
		{Param: "action", Strings: []string{fhir.TermCode("action", "E")}},
		{Param: "date", Dates: []fhir.DateCond{{Prefix: fhir.PrefixGe, DateRange: instant(since)}}},
		{Param: "date", Dates: []fhir.DateCond{{Prefix: fhir.PrefixLt, DateRange: instant(before.Truncate(time.Millisecond))}}},
	}}
	for read := 0; read < contactScan; {
		page, err := s.Store.Search(ctx, q)
		if err != nil {
			return false, fmt.Errorf("detect: access log: %w", err)
		}
		for _, r := range page.Resources {
			o, err := ParseAuditEvent(r.Body)
			if err != nil {
				return false, fmt.Errorf("detect: access log: AuditEvent/%s: %w", r.ID, err)
			}
			if o.Contact() && o.URA == ura && o.BSN == bsn {
				return true, nil
			}
		}
		read += len(page.Resources)
		if page.Next == nil {
			break
		}
		q.After = page.Next
	}
	return false, nil
}

// instant is the range of one microsecond at t.
func instant(t time.Time) fhir.DateRange {
	us := t.UnixMicro()
	return fhir.DateRange{Lo: us, Hi: us + 1}
}
