package sqlite

import (
	"context"
	"sync/atomic"

	"github.com/schakelpunt/schakelpunt/fhir"
)

// Date clauses of AuditEvent searches use the index on (sortdate, id). An
// AuditEvent has one date term (recorded) whose start is its sortdate, so
// a date condition bounds sortdate: date=sa2026 needs sortdate at or after
// 2026, date=gt2026 needs an end after 2026 and so a start after 2026
// less the widest date term stored. That is exact only while every stored
// event has at most one date term of the parameter and none that ends
// before it starts; the mark "datespan" keeps the widest term (seq) and
// whether an event broke that rule (hash "irregular"), and then no bounds
// are used. The writer widens the span before it inserts, so a search
// never uses one narrower than what is stored. Every candidate is still
// tested exactly.

const dateSpanName = "datespan"

// dateSpanMark is the shape of the date terms of a set of events.
type dateSpanMark struct {
	width     int64
	irregular bool
}

func (m *dateSpanMark) widen(dates int, width int64) {
	m.width = max(m.width, width)
	m.irregular = m.irregular || dates > 1 || width < 0
}

func (m dateSpanMark) hash() string {
	if m.irregular {
		return "irregular"
	}
	return ""
}

// dateSpan is the span of the stored events, for searches.
type dateSpan struct {
	width     atomic.Int64
	irregular atomic.Bool
}

// dateShape counts an event's date terms of the parameter date and
// measures the widest (negative when one ends before it starts).
func dateShape(dates []fhir.DateTerm) (n int, width int64) {
	for _, d := range dates {
		if d.Param != auditDateParam {
			continue
		}
		n++
		switch w := d.Hi - d.Lo; {
		case d.Hi < d.Lo:
			width = -1
		case width < 0:
		case w < 0: // overflow: an open range
			width = fhir.MaxTime
		default:
			width = max(width, w)
		}
	}
	return n, width
}

// loadDateSpan reads the mark at Open.
func (s *Store) loadDateSpan(ctx context.Context) error {
	m, err := mark(ctx, s.wconn, dateSpanName)
	if err != nil {
		return err
	}
	s.dateSpan.width.Store(m.Seq)
	s.dateSpan.irregular.Store(m.Hash == "irregular")
	return nil
}

// widenDateSpan widens the span, and its mark, to cover rows before they
// are inserted. Writer goroutine only.
func (s *Store) widenDateSpan(ctx context.Context, rows []auditRow) error {
	cur := dateSpanMark{width: s.dateSpan.width.Load(), irregular: s.dateSpan.irregular.Load()}
	next := cur
	for i := range rows {
		next.widen(rows[i].dates, rows[i].width)
	}
	if next == cur {
		return nil
	}
	s.dateSpan.width.Store(next.width)
	s.dateSpan.irregular.Store(next.irregular)
	return s.wsetMark(ctx, dateSpanName, next.width, next.hash())
}

// dateBounds returns bounds on sortdate (inclusive) that every event
// matching c satisfies, when c is a clause of dates of the parameter
// date and the stored events allow it.
func (s *Store) dateBounds(c fhir.Clause) (lo, hi int64, ok bool) {
	if c.Param != auditDateParam || len(c.Strings) > 0 || len(c.Dates) == 0 || s.dateSpan.irregular.Load() {
		return 0, 0, false
	}
	width := s.dateSpan.width.Load()
	lo, hi = fhir.MaxTime, fhir.MinTime
	for _, d := range c.Dates {
		l, h := fhir.MinTime, fhir.MaxTime
		switch d.Prefix {
		case fhir.PrefixEq, "":
			l, h = d.Lo, d.Hi
		case fhir.PrefixGt:
			l = minus(d.Hi, width)
		case fhir.PrefixLt, fhir.PrefixEb:
			h = d.Lo
		case fhir.PrefixGe:
			l = min(minus(d.Hi, width), d.Lo)
		case fhir.PrefixLe:
			h = d.Hi
		case fhir.PrefixSa:
			l = d.Hi
		default: // ne, or a prefix that matches nothing: no bound
		}
		lo, hi = min(lo, l), max(hi, h)
	}
	return lo, hi, lo != fhir.MinTime || hi != fhir.MaxTime
}

// minus is a - b for b >= 0, stopping at fhir.MinTime.
func minus(a, b int64) int64 {
	if a < fhir.MinTime+b {
		return fhir.MinTime
	}
	return a - b
}
