package fhir

import (
	"net/url"
	"regexp"
	"time"
)

// The patterns google/fhir's reader checks date, dateTime, instant and time
// against (jsonformat/internal/jsonpbhelper), before it parses them with
// the time package, which also rejects days a month does not have.
var (
	baseDateRE     = regexp.MustCompile(`^-?[0-9]{4}(-(0[1-9]|1[0-2])(-(0[0-9]|[1-2][0-9]|3[0-1]))?)?$`)
	baseDateTimeRE = regexp.MustCompile(`^-?[0-9]{4}(-(0[1-9]|1[0-2])(-(0[0-9]|[1-2][0-9]|3[0-1])(T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]+)?(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00)))?)?)?$`)
	baseInstantRE  = regexp.MustCompile(`^-?[0-9]{4}-(0[1-9]|1[0-2])-(0[0-9]|[1-2][0-9]|3[0-1])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]+)?(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))$`)
	baseTimeRE     = regexp.MustCompile(`^([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]+)?$`)
)

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

func validDate(s string) bool {
	return baseDateRE.MatchString(s) && (parses(layoutDay, s) || parses(layoutMonth, s) || parses(layoutYear, s))
}

func validDateTime(s string) bool {
	return baseDateTimeRE.MatchString(s) && (parses(layoutSeconds, s) || parses(layoutSecondsUTC, s) ||
		parses(layoutDay, s) || parses(layoutMonth, s) || parses(layoutYear, s))
}

func validInstant(s string) bool {
	return baseInstantRE.MatchString(s) && (parses(layoutSecondsUTC, s) || parses(layoutSeconds, s))
}

func validTime(s string) bool {
	return baseTimeRE.MatchString(s) && parses(layoutTime, s)
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
