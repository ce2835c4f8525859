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

// EarlierContact reports whether an AuditEvent with outcome 0, whose
// agent is organisation ura and whose patient is bsn, was recorded in
// [since, before). The log keeps milliseconds: before is truncated to
// its millisecond, so that the event being examined (recorded at before)
// is never its own earlier contact.
func (s StoreRelations) EarlierContact(ctx context.Context, ura, bsn string, since, before time.Time) (bool, error) {
	page, err := s.Store.Search(ctx, store.Query{Type: "AuditEvent", Limit: 1, Clauses: []fhir.Clause{
		{Param: "patient", Strings: []string{fhir.TermRefIdentifier("patient", fhir.SystemBSN, bsn)}},
		{Param: "agent", Strings: []string{fhir.TermRefIdentifier("agent", fhir.SystemURA, ura)}},
		{Param: "outcome", Strings: []string{fhir.TermCode("outcome", "0")}},
		{Param: "date", Dates: []fhir.DateCond{{Prefix: fhir.PrefixGe, DateRange: instant(since)}}},
		{Param: "date", Dates: []fhir.DateCond{{Prefix: fhir.PrefixLt, DateRange: instant(before.Truncate(time.Millisecond))}}},
	}})
	if err != nil {
		return false, fmt.Errorf("detect: access log: %w", err)
	}
	return len(page.Resources) > 0, nil
}

// instant is the range of one microsecond at t.
func instant(t time.Time) fhir.DateRange {
	us := t.UnixMicro()
	return fhir.DateRange{Lo: us, Hi: us + 1}
}
