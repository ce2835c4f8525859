package detect

import (
	"fmt"
	"slices"
	"time"

	"github.com/schakelpunt/schakelpunt/fhir"
)

// hourTable counts an organisation's queries per hour of the day over
// the trailing days: a ring of one row of 24 counters per day.
type hourTable struct {
	counts   []uint32 // days × 24
	rowTotal []uint32
	rowDay   []int64   // the day number each row holds
	fired    [24]int64 // day number + 1 of the last hit per hour
	last     time.Time
}

func (h *hourTable) lastSeen() time.Time { return h.last }

// dayNumber is the local calendar day of t as days since 1970-01-01.
func dayNumber(t time.Time) int64 {
	y, m, d := t.Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix() / 86400
}

// table returns the organisation's hour table, made on first use.
func (d *Detector) table(ura string) *hourTable {
	days := d.rules.UnusualHour.Days
	return d.hours.get(ura, func() *hourTable {
		return &hourTable{counts: make([]uint32, days*24), rowTotal: make([]uint32, days), rowDay: slices.Repeat([]int64{-1}, days)}
	})
}

// history is the organisation's queries over the trailing days up to
// and including day, in all and in hour.
func (h *hourTable) history(day int64, hour int) (total, inHour uint64) {
	days := len(h.rowTotal)
	for row := range days {
		if rd := h.rowDay[row]; rd > day-int64(days) && rd <= day {
			total += uint64(h.rowTotal[row])
			inHour += uint64(h.counts[row*24+hour])
		}
	}
	return total, inHour
}

// count adds a query at t (local time) to the table.
func (h *hourTable) count(t time.Time, day int64, hour int) {
	days := int64(len(h.rowTotal))
	row := int((day%days + days) % days) // a day before 1970 is negative
	switch {
	case h.rowDay[row] == day:
	case h.rowDay[row] < day:
		clear(h.counts[row*24 : row*24+24])
		h.rowTotal[row], h.rowDay[row] = 0, day
	default:
		return // older than the ring: not counted
	}
	h.counts[row*24+hour]++
	h.rowTotal[row]++
	if t.After(h.last) {
		h.last = t
	}
}

func (d *Detector) unusualHour(o *Observation) (Hit, bool) {
	r := d.rules.UnusualHour
	if r.Days == 0 {
		return Hit{}, false
	}
	h := d.table(o.URA)
	local := o.At.In(r.Location)
	day, hour := dayNumber(local), local.Hour()
	// The history: the trailing days up to and including today, before
	// this query.
	total, inHour := h.history(day, hour)
	h.count(o.At, day, hour)
	if total < uint64(r.MinHistory) || float64(inHour) >= r.MinShare*float64(total) || h.fired[hour] == day+1 {
		return Hit{}, false
	}
	h.fired[hour] = day + 1
	return Hit{
		Rule: RuleUnusualHour, At: o.At, Since: o.At, Subject: Subject{Type: "Organization", System: fhir.SystemURA, Value: o.URA},
		URAs: []string{o.URA}, Evidence: []string{o.ID},
		Text: fmt.Sprintf("organisation %s queried patient data between %02d:00 and %02d:00 (%s), an hour with %d of its %d queries over the last %d days (below %.2f%%); professional %s",
			o.URA, hour, (hour+1)%24, r.Location, inHour, total, r.Days, 100*r.MinShare, o.UZI),
	}, true
}
