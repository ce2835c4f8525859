package fhir

import (
	"math"
	"regexp"
	"time"
)

// DateRange is a half-open interval [Lo, Hi) in Unix microseconds: the
// implicit range of a FHIR date, dateTime, instant or Period.
type DateRange struct {
	Lo, Hi int64
}

// Unbounded ends of a range.
const (
	MinTime int64 = math.MinInt64
	MaxTime int64 = math.MaxInt64
)

var dateRE = regexp.MustCompile(`^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$`)

// ParseDateRange parses a FHIR date, dateTime or instant into the range its
// precision implies: "2026" is all of 2026, "2026-11-22T10:00:00+01:00" is
// that one second. Values without a zone are taken as UTC.
func ParseDateRange(s string) (DateRange, bool) {
	m := dateRE.FindStringSubmatch(s)
	if m == nil {
		return DateRange{}, false
	}
	atoi := func(x string) int {
		n := 0
		for i := 0; i < len(x); i++ {
			n = n*10 + int(x[i]-'0')
		}
		return n
	}
	year := atoi(m[1])
	if year == 0 {
		return DateRange{}, false // FHIR years run from 0001
	}
	loc := time.UTC
	if z := m[8]; z != "" && z != "Z" {
		zh, zm := atoi(z[1:3]), atoi(z[4:6])
		// FHIR allows offsets from -14:00 to +14:00.
		if zm > 59 || zh > 14 || (zh == 14 && zm != 0) {
			return DateRange{}, false
		}
		sign := 1
		if z[0] == '-' {
			sign = -1
		}
		loc = time.FixedZone("", sign*(zh*3600+zm*60))
	}
	switch {
	case m[2] == "":
		lo := time.Date(year, 1, 1, 0, 0, 0, 0, loc)
		return rangeOf(lo, lo.AddDate(1, 0, 0)), true
	case m[3] == "":
		mon := atoi(m[2])
		if mon < 1 || mon > 12 {
			return DateRange{}, false
		}
		lo := time.Date(year, time.Month(mon), 1, 0, 0, 0, 0, loc)
		return rangeOf(lo, lo.AddDate(0, 1, 0)), true
	}
	mon, day := atoi(m[2]), atoi(m[3])
	if mon < 1 || mon > 12 || day < 1 || day > 31 {
		return DateRange{}, false
	}
	// Checked for every precision: time.Date would quietly turn
	// 2026-02-30T10:00:00Z into 2 March.
	if time.Date(year, time.Month(mon), day, 0, 0, 0, 0, time.UTC).Day() != day {
		return DateRange{}, false
	}
	if m[4] == "" {
		lo := time.Date(year, time.Month(mon), day, 0, 0, 0, 0, loc)
		return rangeOf(lo, lo.AddDate(0, 0, 1)), true
	}
	// A time must carry a zone in FHIR; searches may omit it (taken as UTC,
	// loc above).
	hh, mm := atoi(m[4]), atoi(m[5])
	if hh > 23 || mm > 59 {
		return DateRange{}, false
	}
	if m[6] == "" {
		lo := time.Date(year, time.Month(mon), day, hh, mm, 0, 0, loc)
		return rangeOf(lo, lo.Add(time.Minute)), true
	}
	ss := atoi(m[6])
	if ss > 59 {
		return DateRange{}, false
	}
	lo := time.Date(year, time.Month(mon), day, hh, mm, ss, 0, loc)
	if frac := m[7]; frac != "" {
		digits := frac[1:]
		ns := 0
		for i := 0; i < 9; i++ {
			ns *= 10
			if i < len(digits) {
				ns += int(digits[i] - '0')
			}
		}
		step := time.Duration(1)
		for i := len(digits); i < 9; i++ {
			step *= 10
		}
		if step < time.Microsecond {
			step = time.Microsecond
		}
		lo = lo.Add(time.Duration(ns))
		return rangeOf(lo, lo.Add(step)), true
	}
	return rangeOf(lo, lo.Add(time.Second)), true
}

func rangeOf(lo, hi time.Time) DateRange {
	return DateRange{Lo: lo.UnixMicro(), Hi: hi.UnixMicro()}
}

// InstantRange is the range of an exact instant (one microsecond).
func InstantRange(t time.Time) DateRange {
	us := t.UnixMicro()
	return DateRange{Lo: us, Hi: us + 1}
}

// Date search prefixes.
const (
	PrefixEq = "eq"
	PrefixNe = "ne"
	PrefixGt = "gt"
	PrefixLt = "lt"
	PrefixGe = "ge"
	PrefixLe = "le"
	PrefixSa = "sa"
	PrefixEb = "eb"
)

// DateCond is one date search condition: prefix and search range.
type DateCond struct {
	Prefix string
	DateRange
}

// Match reports whether a target range t satisfies the condition, after
// the R4 search rules (section 3.1.1.4.6 of the search page): eq means the
// search range fully contains the target, gt that the target extends above
// the search range, sa that it starts at or after its end, and so on.
func (c DateCond) Match(t DateRange) bool {
	s := c.DateRange
	eq := s.Lo <= t.Lo && t.Hi <= s.Hi
	switch c.Prefix {
	case PrefixEq, "":
		return eq
	case PrefixNe:
		return !eq
	case PrefixGt:
		return t.Hi > s.Hi
	case PrefixLt:
		return t.Lo < s.Lo
	case PrefixGe:
		return t.Hi > s.Hi || eq
	case PrefixLe:
		return t.Lo < s.Lo || eq
	case PrefixSa:
		return t.Lo >= s.Hi
	case PrefixEb:
		return t.Hi <= s.Lo
	}
	return false
}
