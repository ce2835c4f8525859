package fhir

import (
	"net/url"
	"time"
)

// Dates, times and uris as google/fhir reads them: its reader checks date,
// dateTime, instant and time against patterns
// (jsonformat/internal/jsonpbhelper), then parses them with the time
// package, which also rejects days a month does not have; the validation
// pass parses uri, url and canonical with net/url.
//
// google/fhir's layouts (the test's reference reading):

const (
	layoutYear       = "2006"
	layoutMonth      = "2006-01"
	layoutDay        = "2006-01-02"
	layoutSeconds    = "2006-01-02T15:04:05-07:00"
	layoutSecondsUTC = "2006-01-02T15:04:05Z"
	layoutTime       = "15:04:05"
)

func parses(layout, s string) bool {
	_, err := time.Parse(layout, s)
	return err == nil
}

// The dates are matched by hand, as google/fhir's patterns (the test
// compares them). Of google/fhir's list of layouts, only the one of the
// shape matched can parse it, and time.Parse then rejects nothing the
// pattern took but a day the month does not have (validDay): the pattern
// fixes the digits, and months, hours, minutes, seconds and zone offsets
// within range; a fraction of a second of any length is taken. A negative
// year matches the pattern but no layout.

func validDate(s string) bool {
	i, ok := matchDate(s)
	if !ok || i != len(s) || s[0] == '-' {
		return false
	}
	return len(s) < 10 || validDay(s)
}

// validDay reports whether the day of s, which starts with a date
// yyyy-mm-dd that matchDate took, is one of its month (as time.Parse
// checks it, in the proleptic Gregorian calendar).
func validDay(s string) bool {
	year := int(s[0]-'0')*1000 + int(s[1]-'0')*100 + int(s[2]-'0')*10 + int(s[3]-'0')
	month := int(s[5]-'0')*10 + int(s[6]-'0')
	day := int(s[8]-'0')*10 + int(s[9]-'0')
	days := 31
	switch month {
	case 4, 6, 9, 11:
		days = 30
	case 2:
		days = 28
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			days = 29
		}
	}
	return day >= 1 && day <= days
}

func validDateTime(s string) bool {
	i, ok := matchDate(s)
	if !ok || s[0] == '-' {
		return false
	}
	if i == len(s) {
		return validDate(s)
	}
	if i != 10 || s[i] != 'T' {
		return false
	}
	if j, ok := matchClockZone(s, i+1); !ok || j != len(s) {
		return false
	}
	return validDay(s)
}

func validInstant(s string) bool {
	if len(s) < 11 || s[10] != 'T' {
		return false
	}
	return validDateTime(s)
}

func validTime(s string) bool {
	i, ok := matchClock(s, 0)
	return ok && i == len(s)
}

func isDigit(s string, i int) bool { return i < len(s) && s[i] >= '0' && s[i] <= '9' }

func inRange(s string, i int, lo, hi byte) bool { return i < len(s) && s[i] >= lo && s[i] <= hi }

// matchDate matches -?[0-9]{4}(-(0[1-9]|1[0-2])(-(0[0-9]|[1-2][0-9]|3[0-1]))?)?
// at the start of s and returns where it ends.
func matchDate(s string) (int, bool) {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	for k := 0; k < 4; k++ {
		if !isDigit(s, i) {
			return 0, false
		}
		i++
	}
	if i == len(s) || s[i] != '-' {
		return i, true
	}
	if !(s[i+1:] != "" && (s[i+1] == '0' && inRange(s, i+2, '1', '9') || s[i+1] == '1' && inRange(s, i+2, '0', '2'))) {
		return i, true
	}
	i += 3
	if i == len(s) || s[i] != '-' {
		return i, true
	}
	if !(inRange(s, i+1, '0', '2') && isDigit(s, i+2) || i+1 < len(s) && s[i+1] == '3' && inRange(s, i+2, '0', '1')) {
		return i, true
	}
	return i + 3, true
}

// matchClock matches ([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]+)? at i.
func matchClock(s string, i int) (int, bool) {
	if !(inRange(s, i, '0', '1') && isDigit(s, i+1) || i < len(s) && s[i] == '2' && inRange(s, i+1, '0', '3')) {
		return 0, false
	}
	i += 2
	for k := 0; k < 2; k++ {
		if !(i < len(s) && s[i] == ':' && inRange(s, i+1, '0', '5') && isDigit(s, i+2)) {
			return 0, false
		}
		i += 3
	}
	if i < len(s) && s[i] == '.' {
		if !isDigit(s, i+1) {
			return i, true
		}
		i++
		for isDigit(s, i) {
			i++
		}
	}
	return i, true
}

// matchClockZone matches a clock and then
// (Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00)).
func matchClockZone(s string, i int) (int, bool) {
	i, ok := matchClock(s, i)
	if !ok || i >= len(s) {
		return 0, false
	}
	switch s[i] {
	case 'Z':
		return i + 1, true
	case '+', '-':
	default:
		return 0, false
	}
	z := s[i+1:]
	if len(z) < 5 || z[2] != ':' {
		return 0, false
	}
	if z[:5] == "14:00" || (z[0] == '0' && isDigit(z, 1) || z[0] == '1' && inRange(z, 1, '0', '3')) && inRange(z, 3, '0', '5') && isDigit(z, 4) {
		return i + 6, true
	}
	return 0, false
}

// validURI reports whether net/url parses s, which is google/fhir's check
// for uri, url and canonical. The common shapes (scheme:opaque, and
// scheme://host/path with a plain host) are decided without parsing.
func validURI(s string) bool {
	if plainURI(s) {
		return true
	}
	_, err := url.Parse(s)
	return err == nil
}

// plainURI reports whether s certainly parses: no control character, no
// escape, a scheme, and an authority (if any) of host name characters only.
func plainURI(s string) bool {
	scheme := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == 0x7f || c == '%' {
			return false
		}
		if scheme == 0 {
			switch {
			case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
			case i > 0 && (c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.'):
			case i > 0 && c == ':':
				scheme = i
			default:
				return false
			}
		}
	}
	if scheme == 0 {
		return false
	}
	rest := s[scheme+1:]
	if len(rest) < 2 || rest[0] != '/' || rest[1] != '/' {
		return true
	}
	for i := 2; i < len(rest); i++ {
		c := rest[i]
		if c == '/' || c == '?' || c == '#' {
			break
		}
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~') {
			return false
		}
	}
	return true
}
