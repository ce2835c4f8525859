package detect

import (
	"context"
	"fmt"
	"time"

	"github.com/schakelpunt/schakelpunt/fhir"
	"github.com/schakelpunt/schakelpunt/store"
)

// Learn adds o to what the rules have learned without raising anything:
// the organisation's hours of the unusual-hour rule and the contact
// memory of no-relationship. It warms a new detector up from the log
// (see Warm), so that a restart does not start the learned hours empty.
func (d *Detector) Learn(o Observation) {
	if o.At.After(d.newest) {
		d.newest = o.At
	}
	if r := d.rules.UnusualHour; r.Days > 0 && o.AboutPatient() {
		local := o.At.In(r.Location)
		d.table(o.URA).count(o.At, dayNumber(local), local.Hour())
	}
	if lb := d.rules.NoRelationship.Lookback; lb > 0 && o.Contact() {
		d.contacts.remember(pairKey(o.URA, o.BSN), o.At, lb/2)
	}
}

// WarmSince is how far back Warm should read for these rules: the
// unusual-hour rule's trailing days (zero when it is off).
func (r *Rules) WarmSince(now time.Time) time.Time {
	if r.UnusualHour.Days == 0 {
		return time.Time{}
	}
	return now.AddDate(0, 0, -r.UnusualHour.Days)
}

// Warm learns the AuditEvents recorded from since until before from s,
// through their date index, in pages. It returns how many it learned.
func Warm(ctx context.Context, d *Detector, s Searcher, since, before time.Time) (int, error) {
	q := store.Query{Type: "AuditEvent", Limit: 1000, Clauses: []fhir.Clause{
		{Param: "date", Dates: []fhir.DateCond{{Prefix: fhir.PrefixGe, DateRange: instant(since)}}},
		{Param: "date", Dates: []fhir.DateCond{{Prefix: fhir.PrefixLt, DateRange: instant(before)}}},
	}}
	n := 0
	for {
		page, err := s.Search(ctx, q)
		if err != nil {
			return n, fmt.Errorf("detect: warm: %w", err)
		}
		for _, r := range page.Resources {
			o, err := ParseAuditEvent(r.Body)
			if err != nil {
				return n, fmt.Errorf("detect: warm: AuditEvent/%s: %w", r.ID, err)
			}
			d.Learn(o)
			n++
		}
		if page.Next == nil {
			return n, nil
		}
		q.After = page.Next
	}
}
