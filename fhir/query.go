package fhir

import (
	"strconv"
	"strings"
)

// Param is one name=value pair of a search, in request order.
type Param struct {
	Name, Value string
}

// Clause is one search condition: a resource matches when it has any of
// Strings among its terms, or any of its DateTerms for Param satisfies one
// of Dates. Clauses of a query are ANDed; values within one are ORed.
type Clause struct {
	Param   string
	Strings []string
	Dates   []DateCond
}

// SortKey orders a search by a date parameter (or _lastUpdated).
type SortKey struct {
	Param string
	Desc  bool
}

// Search is a parsed search request.
type Search struct {
	Type     string
	Clauses  []Clause
	Sort     *SortKey
	Count    int
	Total    string // none | estimate | accurate, or ""
	Summary  string // count, or ""
	Elements []string
	// Ignored are issues about parameters ignored under lenient handling.
	Ignored []Issue
}

// Limits of a search.
const (
	DefaultCount = 50
	MaxCount     = 1000
	MaxValueLen  = 512 // longest search value we accept
	MaxParams    = 64
)

// Result parameters that are accepted but are the edge's business.
var formatParams = map[string]bool{"_format": true, "_pretty": true}

// ParseSearch parses a search of resourceType. An unknown or malformed
// parameter is a KindInvalid error naming it, unless lenient is set: then
// unknown parameters are ignored and reported in Search.Ignored (malformed
// values of known parameters are always errors).
func ParseSearch(resourceType string, params []Param, lenient bool) (*Search, error) {
	s := &Search{Type: resourceType, Count: DefaultCount}
	if len(params) > MaxParams {
		return nil, Errorf(KindInvalid, "too-costly", "too many search parameters (at most %d)", MaxParams)
	}
	for _, p := range params {
		if len(p.Value) > MaxValueLen {
			return nil, Errorf(KindInvalid, "too-long", "value of search parameter %q is too long", p.Name).At(p.Name)
		}
		if formatParams[p.Name] {
			continue
		}
		if err := s.add(p, lenient); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func badParam(name, format string, args ...any) *Error {
	return Errorf(KindInvalid, "invalid", format, args...).At(name)
}

func (s *Search) add(p Param, lenient bool) error {
	switch p.Name {
	case "_count":
		n, err := strconv.Atoi(p.Value)
		if err != nil || n < 0 {
			return badParam(p.Name, "_count must be a non-negative integer")
		}
		s.Count = min(n, MaxCount)
		return nil
	case "_sort":
		return s.parseSort(p)
	case "_total":
		switch p.Value {
		case "none", "estimate", "accurate":
			s.Total = p.Value
			return nil
		}
		return badParam(p.Name, "_total must be none, estimate or accurate")
	case "_summary":
		switch p.Value {
		case "count":
			s.Summary = p.Value
			return nil
		case "false":
			return nil
		}
		return badParam(p.Name, "_summary=%s is not supported (count and false are)", p.Value)
	case "_elements":
		for _, e := range strings.Split(p.Value, ",") {
			if e = strings.TrimSpace(e); e != "" {
				s.Elements = append(s.Elements, e)
			}
		}
		return nil
	}
	name, modifier, _ := strings.Cut(p.Name, ":")
	chain := ""
	if n, c, ok := strings.Cut(name, "."); ok {
		name, chain = n, c
	}
	def, ok := param(s.Type, name)
	if !ok {
		if lenient {
			s.Ignored = append(s.Ignored, Issue{Severity: "warning", Code: "not-supported", Diagnostics: "unknown search parameter " + strconv.Quote(p.Name) + " was ignored", Expression: []string{p.Name}})
			return nil
		}
		return Errorf(KindInvalid, "not-supported", "unknown search parameter %q for %s", p.Name, s.Type).At(p.Name)
	}
	if chain != "" && modifier != "" {
		return Errorf(KindInvalid, "not-supported", "a modifier on chained search %q is not supported", p.Name).At(p.Name)
	}
	if p.Value == "" {
		return badParam(p.Name, "search parameter %q has no value", p.Name)
	}
	c := Clause{Param: def.Code}
	values := splitValues(p.Value)
	switch def.Type {
	case TypeURI:
		if modifier != "" || chain != "" {
			return Errorf(KindInvalid, "not-supported", "modifier or chain on %q is not supported", p.Name).At(p.Name)
		}
		for _, v := range values {
			if v == "" {
				return badParam(p.Name, "empty value in %q", p.Name)
			}
			c.Strings = append(c.Strings, TermCode(def.Code, unescape(v)))
		}
	case TypeToken:
		if modifier != "" || chain != "" {
			return Errorf(KindInvalid, "not-supported", "modifier or chain on %q is not supported", p.Name).At(p.Name)
		}
		for _, v := range values {
			t, err := tokenQuery(def.Code, v)
			if err != nil {
				return badParam(p.Name, "%s", err.Error())
			}
			c.Strings = append(c.Strings, t)
		}
	case TypeReference:
		if chain != "" {
			if chain != "identifier" {
				return Errorf(KindInvalid, "not-supported", "chained search %q is not supported (only .identifier)", p.Name).At(p.Name)
			}
			modifier = "identifier"
		}
		for _, v := range values {
			t, err := referenceQuery(def, modifier, v)
			if err != nil {
				return Errorf(KindInvalid, "invalid", "%s", err.Error()).At(p.Name)
			}
			c.Strings = append(c.Strings, t)
		}
	case TypeDate:
		if modifier != "" || chain != "" {
			return Errorf(KindInvalid, "not-supported", "modifier on date parameter %q is not supported", p.Name).At(p.Name)
		}
		for _, v := range values {
			v = unescape(v)
			prefix := PrefixEq
			if len(v) >= 2 && v[0] >= 'a' && v[0] <= 'z' {
				prefix, v = v[:2], v[2:]
				switch prefix {
				case PrefixEq, PrefixNe, PrefixGt, PrefixLt, PrefixGe, PrefixLe, PrefixSa, PrefixEb:
				default:
					return badParam(p.Name, "unknown date prefix %q (eq ne lt gt le ge sa eb)", prefix)
				}
			}
			r, ok := ParseDateRange(v)
			if !ok {
				return badParam(p.Name, "%q is not a FHIR date, dateTime or instant", v)
			}
			c.Dates = append(c.Dates, DateCond{Prefix: prefix, DateRange: r})
		}
	}
	s.Clauses = append(s.Clauses, c)
	return nil
}

func (s *Search) parseSort(p Param) error {
	keys := strings.Split(p.Value, ",")
	if len(keys) != 1 {
		return badParam(p.Name, "_sort on one parameter is supported")
	}
	k := SortKey{Param: keys[0]}
	if strings.HasPrefix(k.Param, "-") {
		k.Desc, k.Param = true, k.Param[1:]
	}
	def, ok := param(s.Type, k.Param)
	if !ok || def.Type != TypeDate {
		return badParam(p.Name, "_sort by %q is not supported (date parameters and _lastUpdated are)", k.Param)
	}
	s.Sort = &k
	return nil
}

// splitValues splits on commas not escaped by a backslash. The parts keep
// their escapes: a token is cut on its first unescaped "|" before its parts
// are unescaped (unescape).
func splitValues(v string) []string {
	var out []string
	start := 0
	for i := 0; i < len(v); i++ {
		switch v[i] {
		case '\\':
			i++ // the escaped character is never a separator
		case ',':
			out = append(out, v[start:i])
			start = i + 1
		}
	}
	return append(out, v[start:])
}

// cutValue cuts s around the first sep not escaped by a backslash.
func cutValue(s string, sep byte) (before, after string, found bool) {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case sep:
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// unescape removes the backslash of \, \| \$ and \\; any other backslash
// is kept.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			switch s[i+1] {
			case ',', '|', '$', '\\':
				i++
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

type queryError string

func (e queryError) Error() string { return string(e) }

func tokenQuery(p, v string) (string, error) {
	sys, code, hasBar := cutValue(v, '|')
	sys, code, v = unescape(sys), unescape(code), unescape(v)
	switch {
	case !hasBar:
		if v == "" {
			return "", queryError("empty token")
		}
		return TermCode(p, v), nil
	case sys == "" && code == "":
		return "", queryError("empty token")
	case sys == "":
		return TermNoSystem(p, code), nil
	case code == "":
		return TermSystem(p, sys), nil
	}
	return TermSystemCode(p, sys, code), nil
}

func referenceQuery(def SearchParam, modifier, v string) (string, error) {
	if v == "" {
		return "", queryError("empty reference in " + def.Code)
	}
	switch modifier {
	case "identifier":
		sys, val, hasBar := cutValue(v, '|')
		sys, val, v = unescape(sys), unescape(val), unescape(v)
		if !hasBar {
			return TermRefIdentifier(def.Code, "", v), nil
		}
		if val == "" {
			return "", queryError(def.Code + ":identifier needs a value after |")
		}
		return TermRefIdentifier(def.Code, sys, val), nil
	case "":
		v = unescape(v)
	default:
		v = unescape(v)
		// A type modifier: patient:Patient=1.
		if !contains(def.Targets, modifier) && !contains(def.Targets, "Resource") {
			return "", queryError("modifier :" + modifier + " is not a target type of " + def.Code)
		}
		if strings.Contains(v, "/") {
			return "", queryError("with a type modifier the value is an id")
		}
		return TermRef(def.Code, modifier+"/"+v), nil
	}
	if strings.Contains(v, "://") {
		return TermRef(def.Code, v), nil
	}
	if typ, id, ok := splitRef(v); ok {
		if !contains(def.Targets, typ) && !contains(def.Targets, "Resource") {
			return "", queryError(typ + " is not a target type of " + def.Code)
		}
		return TermRef(def.Code, typ+"/"+id), nil
	}
	if strings.Contains(v, "/") {
		// The value is not echoed: diagnostics never carry a BSN.
		return "", queryError("malformed reference in " + def.Code + " (want Type/id, an id or an absolute URL)")
	}
	return TermRefID(def.Code, v), nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
