package fhir

import (
	"strings"
	"testing"
	"time"
)

func TestParseDateRange(t *testing.T) {
	tests := []struct {
		name, in string
		lo, hi   string // RFC 3339 instants; the range is [lo, hi)
	}{
		// Precision decides the width of the range.
		{"year", "2026", "2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z"},
		{"first year", "0001", "0001-01-01T00:00:00Z", "0002-01-01T00:00:00Z"},
		{"near the end of the last year", "9999-12-31T23:59:58Z", "9999-12-31T23:59:58Z", "9999-12-31T23:59:59Z"},
		{"month", "2026-11", "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z"},
		{"december rolls the year", "2026-12", "2026-12-01T00:00:00Z", "2027-01-01T00:00:00Z"},
		{"february of a leap year", "2024-02", "2024-02-01T00:00:00Z", "2024-03-01T00:00:00Z"},
		{"day", "2026-11-22", "2026-11-22T00:00:00Z", "2026-11-23T00:00:00Z"},
		{"leap day", "2024-02-29", "2024-02-29T00:00:00Z", "2024-03-01T00:00:00Z"},
		{"last day of the year", "2026-12-31", "2026-12-31T00:00:00Z", "2027-01-01T00:00:00Z"},
		{"minute without zone is UTC", "2026-11-22T10:00", "2026-11-22T10:00:00Z", "2026-11-22T10:01:00Z"},
		{"minute Z", "2026-11-22T10:00Z", "2026-11-22T10:00:00Z", "2026-11-22T10:01:00Z"},
		{"minute with offset", "2026-11-22T10:00+01:00", "2026-11-22T09:00:00Z", "2026-11-22T09:01:00Z"},
		{"second", "2026-11-22T10:00:00Z", "2026-11-22T10:00:00Z", "2026-11-22T10:00:01Z"},
		{"second without zone is UTC", "2026-11-22T10:00:00", "2026-11-22T10:00:00Z", "2026-11-22T10:00:01Z"},
		{"second with offset", "2026-11-22T10:00:00+01:00", "2026-11-22T09:00:00Z", "2026-11-22T09:00:01Z"},
		{"negative offset", "2026-11-22T10:00:00-05:00", "2026-11-22T15:00:00Z", "2026-11-22T15:00:01Z"},
		{"half-hour offset", "2026-11-22T10:00:00+05:30", "2026-11-22T04:30:00Z", "2026-11-22T04:30:01Z"},
		{"zero offset", "2026-11-22T10:00:00+00:00", "2026-11-22T10:00:00Z", "2026-11-22T10:00:01Z"},
		{"negative zero offset", "2026-11-22T10:00:00-00:00", "2026-11-22T10:00:00Z", "2026-11-22T10:00:01Z"},
		{"+14:00 is the earliest zone", "2026-11-22T00:00:00+14:00", "2026-11-21T10:00:00Z", "2026-11-21T10:00:01Z"},
		{"-12:00 is the latest common zone", "2026-11-22T00:00:00-12:00", "2026-11-22T12:00:00Z", "2026-11-22T12:00:01Z"},
		{"-14:00 is allowed by FHIR", "2026-11-22T00:00:00-14:00", "2026-11-22T14:00:00Z", "2026-11-22T14:00:01Z"},
		{"+13:59", "2026-11-22T00:00:00+13:59", "2026-11-21T10:01:00Z", "2026-11-21T10:01:01Z"},
		{"offset crosses the year", "2026-12-31T23:30:00-01:00", "2027-01-01T00:30:00Z", "2027-01-01T00:30:01Z"},
		{"last second of the day", "2026-11-22T23:59:59Z", "2026-11-22T23:59:59Z", "2026-11-23T00:00:00Z"},
		{"tenths", "2026-11-22T10:00:00.5Z", "2026-11-22T10:00:00.5Z", "2026-11-22T10:00:00.6Z"},
		{"milliseconds", "2026-11-22T10:00:00.123Z", "2026-11-22T10:00:00.123Z", "2026-11-22T10:00:00.124Z"},
		{"milliseconds with offset", "2026-11-22T10:00:00.123+01:00", "2026-11-22T09:00:00.123Z", "2026-11-22T09:00:00.124Z"},
		{"trailing zero keeps precision", "2026-11-22T10:00:00.100Z", "2026-11-22T10:00:00.1Z", "2026-11-22T10:00:00.101Z"},
		{"microseconds", "2026-11-22T10:00:00.123456Z", "2026-11-22T10:00:00.123456Z", "2026-11-22T10:00:00.123457Z"},
		{"nanoseconds are cut to a microsecond", "2026-11-22T10:00:00.123456789Z", "2026-11-22T10:00:00.123456Z", "2026-11-22T10:00:00.123457Z"},
		{"more than nine digits", "2026-11-22T10:00:00.1234567891234Z", "2026-11-22T10:00:00.123456Z", "2026-11-22T10:00:00.123457Z"},
		{"fraction without zone is UTC", "2026-11-22T10:00:00.25", "2026-11-22T10:00:00.25Z", "2026-11-22T10:00:00.26Z"},
		{"before 1970", "1969-12-31T23:59:59.5Z", "1969-12-31T23:59:59.5Z", "1969-12-31T23:59:59.6Z"},
		{"before 1970, day", "1950-06-15", "1950-06-15T00:00:00Z", "1950-06-16T00:00:00Z"},
		{"fraction that carries", "2026-11-22T23:59:59.999Z", "2026-11-22T23:59:59.999Z", "2026-11-23T00:00:00Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ParseDateRange(tt.in)
			if !ok {
				t.Fatalf("ParseDateRange(%q) failed", tt.in)
			}
			want := DateRange{Lo: at(t, tt.lo), Hi: at(t, tt.hi)}
			if got != want {
				t.Errorf("ParseDateRange(%q) = [%s, %s), want [%s, %s)", tt.in,
					fmtMicro(got.Lo), fmtMicro(got.Hi), fmtMicro(want.Lo), fmtMicro(want.Hi))
			}
		})
	}
}

func TestParseDateRangeInvalid(t *testing.T) {
	tests := []struct{ name, in string }{
		{"empty", ""},
		{"garbage", "garbage"},
		{"two-digit year", "26"},
		{"five-digit year", "20260"},
		{"year zero", "0000"},
		{"month 13", "2026-13"},
		{"month 00", "2026-00"},
		{"one-digit month", "2026-1"},
		{"one-digit day", "2026-11-2"},
		{"day 00", "2026-11-00"},
		{"day 32", "2026-11-32"},
		{"30 February", "2026-02-30"},
		{"29 February of a common year", "2026-02-29"},
		{"31 April", "2026-04-31"},
		{"30 February with a time", "2026-02-30T10:00:00Z"},
		{"31 November with a minute", "2026-11-31T10:00"},
		{"31 June with a fraction", "2026-06-31T10:00:00.5+01:00"},
		{"hour 24", "2026-11-22T24:00:00Z"},
		{"hour 24, minute precision", "2026-11-22T24:00"},
		{"minute 60", "2026-11-22T10:60:00Z"},
		{"second 60", "2026-11-22T10:00:60Z"},
		{"hour only", "2026-11-22T10"},
		{"T without time", "2026-11-22T"},
		{"space instead of T", "2026-11-22 10:00:00Z"},
		{"lower-case t", "2026-11-22t10:00:00Z"},
		{"lower-case z", "2026-11-22T10:00:00z"},
		{"zone on a date", "2026-11-22Z"},
		{"zone on a month", "2026-11+01:00"},
		{"offset +15:00", "2026-11-22T10:00:00+15:00"},
		{"offset +14:30", "2026-11-22T10:00:00+14:30"},
		{"offset -14:01", "2026-11-22T10:00:00-14:01"},
		{"offset minutes 60", "2026-11-22T10:00:00+01:60"},
		{"offset without colon", "2026-11-22T10:00:00+0100"},
		{"offset hours only", "2026-11-22T10:00:00+01"},
		{"named zone", "2026-11-22T10:00:00CET"},
		{"empty fraction", "2026-11-22T10:00:00.Z"},
		{"fraction on minutes", "2026-11-22T10:00.5Z"},
		{"leading space", " 2026"},
		{"trailing space", "2026 "},
		{"trailing newline", "2026\n"},
		{"slashes", "2026/11/22"},
		{"full-width digits", "２０２６"},
		{"prefix left on", "ge2026"},
		{"negative year", "-2026"},
		{"unix seconds", "1795330800"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if r, ok := ParseDateRange(tt.in); ok {
				t.Errorf("ParseDateRange(%q) = [%s, %s), want failure", tt.in, fmtMicro(r.Lo), fmtMicro(r.Hi))
			}
		})
	}
}

func TestInstantRange(t *testing.T) {
	ts := time.Date(2026, 11, 22, 10, 0, 0, 123456789, time.FixedZone("", 3600))
	r := InstantRange(ts)
	if want := at(t, "2026-11-22T09:00:00.123456Z"); r.Lo != want || r.Hi != want+1 {
		t.Errorf("InstantRange = [%s, %s), want one microsecond from %s", fmtMicro(r.Lo), fmtMicro(r.Hi), fmtMicro(want))
	}
	// The instant a server stamps lies within the range of its rendering.
	if s := MustRange(t, FormatInstant(ts)); !(DateCond{Prefix: PrefixEq, DateRange: s}).Match(r) {
		t.Errorf("InstantRange(%v) is not within %s", ts, FormatInstant(ts))
	}
}

// Target ranges around the search range 2026-11-22 (a UTC day) used by
// TestDateCondMatch.
var matchTargets = []struct {
	name   string
	lo, hi string // "" is open: MinTime or MaxTime
}{
	{"inside", "2026-11-22T10:00:00Z", "2026-11-22T11:00:00Z"},
	{"same day", "2026-11-22T00:00:00Z", "2026-11-23T00:00:00Z"},
	{"first microsecond", "2026-11-22T00:00:00Z", "2026-11-22T00:00:00.000001Z"},
	{"last microsecond", "2026-11-22T23:59:59.999999Z", "2026-11-23T00:00:00Z"},
	{"day before, touching", "2026-11-21T00:00:00Z", "2026-11-22T00:00:00Z"},
	{"day after, touching", "2026-11-23T00:00:00Z", "2026-11-24T00:00:00Z"},
	{"well before", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"},
	{"well after", "2027-01-01T00:00:00Z", "2027-01-02T00:00:00Z"},
	{"overlaps the start", "2026-11-21T12:00:00Z", "2026-11-22T12:00:00Z"},
	{"overlaps the end", "2026-11-22T12:00:00Z", "2026-11-23T12:00:00Z"},
	{"contains it", "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z"},
	{"open end, starts inside", "2026-11-22T12:00:00Z", ""},
	{"open end, starts at its start", "2026-11-22T00:00:00Z", ""},
	{"open end, starts after", "2026-11-24T00:00:00Z", ""},
	{"open end, starts at its end", "2026-11-23T00:00:00Z", ""},
	{"open start, ends inside", "", "2026-11-22T12:00:00Z"},
	{"open start, ends at its end", "", "2026-11-23T00:00:00Z"},
	{"open start, ends before", "", "2026-11-20T00:00:00Z"},
	{"open start, ends at its start", "", "2026-11-22T00:00:00Z"},
	{"unbounded", "", ""},
}

// matchTable is the R4 search semantics (search.html#prefix) as a
// decision table: for each target above, whether each prefix matches.
// eq: the search range contains the target; ne: it does not; gt/lt: the
// target reaches above/below the search range; ge/le: gt/lt or eq; sa/eb:
// the target starts at or after / ends at or before the search range.
const matchTable = `
target                          eq ne gt lt ge le sa eb
inside                          Y  .  .  .  Y  Y  .  .
same day                        Y  .  .  .  Y  Y  .  .
first microsecond               Y  .  .  .  Y  Y  .  .
last microsecond                Y  .  .  .  Y  Y  .  .
day before, touching            .  Y  .  Y  .  Y  .  Y
day after, touching             .  Y  Y  .  Y  .  Y  .
well before                     .  Y  .  Y  .  Y  .  Y
well after                      .  Y  Y  .  Y  .  Y  .
overlaps the start              .  Y  .  Y  .  Y  .  .
overlaps the end                .  Y  Y  .  Y  .  .  .
contains it                     .  Y  Y  Y  Y  Y  .  .
open end, starts inside         .  Y  Y  .  Y  .  .  .
open end, starts at its start   .  Y  Y  .  Y  .  .  .
open end, starts after          .  Y  Y  .  Y  .  Y  .
open end, starts at its end     .  Y  Y  .  Y  .  Y  .
open start, ends inside         .  Y  .  Y  .  Y  .  .
open start, ends at its end     .  Y  .  Y  .  Y  .  .
open start, ends before         .  Y  .  Y  .  Y  .  Y
open start, ends at its start   .  Y  .  Y  .  Y  .  Y
unbounded                       .  Y  Y  Y  Y  Y  .  .
`

func TestDateCondMatch(t *testing.T) {
	prefixes := []string{PrefixEq, PrefixNe, PrefixGt, PrefixLt, PrefixGe, PrefixLe, PrefixSa, PrefixEb}
	want := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(matchTable), "\n")[1:] {
		name, marks := line[:32], strings.Fields(line[32:])
		if len(marks) != len(prefixes) {
			t.Fatalf("bad table line %q", line)
		}
		want[strings.TrimSpace(name)] = strings.Join(marks, "")
	}
	search := MustRange(t, "2026-11-22")
	for _, tg := range matchTargets {
		target := DateRange{Lo: MinTime, Hi: MaxTime}
		if tg.lo != "" {
			target.Lo = at(t, tg.lo)
		}
		if tg.hi != "" {
			target.Hi = at(t, tg.hi)
		}
		row, ok := want[tg.name]
		if !ok {
			t.Fatalf("target %q is not in the table", tg.name)
		}
		for i, p := range prefixes {
			t.Run(tg.name+"/"+p, func(t *testing.T) {
				got := DateCond{Prefix: p, DateRange: search}.Match(target)
				if got != (row[i] == 'Y') {
					t.Errorf("%s2026-11-22 against %s: got %v, want %v", p, tg.name, got, !got)
				}
			})
		}
	}
}

func TestDateCondMatchPrefixes(t *testing.T) {
	search := MustRange(t, "2026-11-22")
	inside := MustRange(t, "2026-11-22T10:00:00Z")
	outside := MustRange(t, "2026-11-23T10:00:00Z")
	t.Run("no prefix is eq", func(t *testing.T) {
		c := DateCond{DateRange: search}
		if !c.Match(inside) || c.Match(outside) {
			t.Error("an empty prefix does not behave as eq")
		}
	})
	for _, p := range []string{"ap", "EQ", "xx", "e"} {
		t.Run("unknown prefix "+p, func(t *testing.T) {
			c := DateCond{Prefix: p, DateRange: search}
			if c.Match(inside) || c.Match(outside) {
				t.Errorf("prefix %q matched; unknown prefixes match nothing", p)
			}
		})
	}
}

// TestDateCondMatchOracle compares Match with the R4 definitions written
// out over sets of points, for every pair of ranges on a small grid.
func TestDateCondMatchOracle(t *testing.T) {
	const n = 10 // grid points 0..n-1; ranges [lo, hi) with lo < hi
	type rng struct{ lo, hi int64 }
	var ranges []rng
	for lo := int64(0); lo < n; lo++ {
		for hi := lo + 1; hi <= n; hi++ {
			ranges = append(ranges, rng{lo, hi})
		}
	}
	points := func(r rng) []int64 {
		var ps []int64
		for x := r.lo; x < r.hi; x++ {
			ps = append(ps, x)
		}
		return ps
	}
	anyOf := func(ps []int64, f func(int64) bool) bool {
		for _, p := range ps {
			if f(p) {
				return true
			}
		}
		return false
	}
	allOf := func(ps []int64, f func(int64) bool) bool {
		for _, p := range ps {
			if !f(p) {
				return false
			}
		}
		return true
	}
	oracle := func(prefix string, s, tg rng) bool {
		in := func(x int64) bool { return s.lo <= x && x < s.hi }
		above := func(x int64) bool { return x >= s.hi }
		below := func(x int64) bool { return x < s.lo }
		tp := points(tg)
		contains := allOf(tp, in)
		overlaps := anyOf(tp, in)
		switch prefix {
		case PrefixEq:
			return contains
		case PrefixNe:
			return !contains
		case PrefixGt:
			return anyOf(tp, above)
		case PrefixLt:
			return anyOf(tp, below)
		case PrefixGe:
			return anyOf(tp, above) || contains
		case PrefixLe:
			return anyOf(tp, below) || contains
		case PrefixSa:
			return !overlaps && allOf(tp, above)
		case PrefixEb:
			return !overlaps && allOf(tp, below)
		}
		panic(prefix)
	}
	for _, p := range []string{PrefixEq, PrefixNe, PrefixGt, PrefixLt, PrefixGe, PrefixLe, PrefixSa, PrefixEb} {
		t.Run(p, func(t *testing.T) {
			for _, s := range ranges {
				for _, tg := range ranges {
					got := DateCond{Prefix: p, DateRange: DateRange{Lo: s.lo, Hi: s.hi}}.Match(DateRange{Lo: tg.lo, Hi: tg.hi})
					if want := oracle(p, s, tg); got != want {
						t.Errorf("%s[%d,%d) against [%d,%d): got %v, want %v", p, s.lo, s.hi, tg.lo, tg.hi, got, want)
					}
				}
			}
		})
	}
}

// TestDateSearchExamples runs searches as a client writes them against the
// dates a resource carries (through ParseSearch and ExtractTerms' ranges).
func TestDateSearchExamples(t *testing.T) {
	tests := []struct {
		search, target string // target: a dateTime or "start/end" Period ("" open)
		want           bool
	}{
		{"2026-11-22", "2026-11-22T10:00:00+01:00", true},
		{"2026-11-22", "2026-11-22T00:30:00+01:00", false}, // 2026-11-21T23:30Z: days are UTC
		{"2026-11-22", "2026-11-23T00:30:00+01:00", true},  // 2026-11-22T23:30Z
		{"2026-11", "2026-11-22", true},
		{"2026-11-22", "2026-11", false}, // a month is wider than a day
		{"ne2026-11-22", "2026-11", true},
		{"ge2026-11-22", "2026-11", true},
		{"le2026-11-22", "2026-11", true},
		{"gt2026-11-22", "2026-11-22T23:59:59Z", false},
		{"gt2026-11-22", "2026-11-23T00:00:00Z", true},
		{"lt2026-11-22T10:00:00+01:00", "2026-11-22T08:59:59Z", true},
		{"lt2026-11-22T10:00:00+01:00", "2026-11-22T09:00:00Z", false},
		{"le2026-11-22T10:00:00+01:00", "2026-11-22T09:00:00Z", true},
		{"eq2026-11-22T10:00:00+01:00", "2026-11-22T09:00:00.500Z", true},
		{"eq2026-11-22T10:00:00.000+01:00", "2026-11-22T09:00:00.500Z", false},
		{"eq2026-11-22T10:00+01:00", "2026-11-22T09:00:59Z", true},
		{"gt2026-11-22T10:00+01:00", "2026-11-22T09:01:00Z", true},
		{"sa2026-11-22", "2026-11-23/", true},
		{"sa2026-11-22", "2026-11-22T23:00:00Z/", false},
		{"eb2026-11-22", "/2026-11-21", true},
		{"eb2026-11-22", "2026-11-01/2026-11-21", true},
		{"eb2026-11-22", "2026-11-01/2026-11-22", false},
		{"ge2026-11-22", "2020-01-01/", true},  // an open consent is still in force
		{"le2026-11-22", "2027-01-01/", false}, // not yet begun
		{"lt2026-11-22", "/", true},
		{"eq2026-11-22", "/", false},
	}
	for _, tt := range tests {
		t.Run(tt.search+" vs "+tt.target, func(t *testing.T) {
			s, err := ParseSearch("Consent", []Param{{"period", tt.search}}, false)
			if err != nil {
				t.Fatal(err)
			}
			var v any = tt.target
			if start, end, ok := strings.Cut(tt.target, "/"); ok {
				p := map[string]any{}
				if start != "" {
					p["start"] = start
				}
				if end != "" {
					p["end"] = end
				}
				v = p
			}
			r, ok := dateValue(v)
			if !ok && tt.target != "/" {
				t.Fatalf("dateValue(%v) failed", v)
			}
			if tt.target == "/" {
				r = DateRange{Lo: MinTime, Hi: MaxTime}
			}
			if got := s.Clauses[0].Dates[0].Match(r); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func fmtMicro(us int64) string {
	switch us {
	case MinTime:
		return "-∞"
	case MaxTime:
		return "+∞"
	}
	return time.UnixMicro(us).UTC().Format(time.RFC3339Nano)
}

func FuzzParseDateRange(f *testing.F) {
	for _, s := range []string{
		"2026", "2026-11", "2026-11-22", "2026-11-22T10:00", "2026-11-22T10:00Z",
		"2026-11-22T10:00:00+01:00", "2026-11-22T10:00:00.123456789-12:00",
		"2026-11-22T00:00:00+14:00", "2026-02-30", "2026-13", "2026-11-22T24:00:00Z",
		"0000", "9999-12-31T23:59:59.999999999Z", "1969-12-31T23:59:59.5Z", "garbage", "",
	} {
		f.Add(s)
	}
	const maxWidth = 366 * 24 * int64(time.Hour/time.Microsecond)
	f.Fuzz(func(t *testing.T, s string) {
		r, ok := ParseDateRange(s)
		if !ok {
			return
		}
		if r.Lo >= r.Hi {
			t.Fatalf("ParseDateRange(%q) = [%d, %d): empty", s, r.Lo, r.Hi)
		}
		if r.Hi-r.Lo > maxWidth {
			t.Fatalf("ParseDateRange(%q) is wider than a year", s)
		}
		if len(s) < 4 || s[0] < '0' || s[0] > '9' {
			t.Fatalf("ParseDateRange(%q) accepted a value that is no date", s)
		}
		// Where Go reads the value as RFC 3339 too, both agree on the start.
		if strings.Count(s, ":") >= 2 {
			if ts, err := time.Parse(time.RFC3339Nano, s); err == nil && r.Lo != ts.UnixMicro() {
				t.Fatalf("ParseDateRange(%q) starts at %s, time.Parse says %s", s, fmtMicro(r.Lo), fmtMicro(ts.UnixMicro()))
			}
		}
		// A coarser precision of the same date contains the finer one
		// (only for UTC values: an offset can move a time into the
		// previous or next day).
		if !strings.ContainsAny(s[min(len(s), 10):], "+-") {
			for _, n := range []int{4, 7, 10} {
				if len(s) > n {
					if c, ok := ParseDateRange(s[:n]); ok && !(DateCond{Prefix: PrefixEq, DateRange: c}).Match(r) {
						t.Fatalf("%q does not contain %q", s[:n], s)
					}
				}
			}
		}
	})
}
