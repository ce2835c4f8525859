package fhir

import (
	"encoding/json"
	"strings"
)

// Terms are the index terms of one resource version, extracted once from
// the resource through the search parameter definitions and stored beside
// it. Adapters keep and match them; they never look inside resources.
//
// Token and reference values become flat strings, one per way they can be
// asked for (see the Term* helpers); dates become ranges.
type Terms struct {
	Strings []string
	Dates   []DateTerm
}

// DateTerm is the range of one date value of a parameter.
type DateTerm struct {
	Param string
	DateRange
}

// Term strings. Each form answers one search syntax:
//
//	TermCode("identifier", "123")          identifier=123           (any system)
//	TermSystemCode("identifier", s, "123") identifier=s|123
//	TermSystem("identifier", s)            identifier=s|
//	TermNoSystem("identifier", "123")      identifier=|123
//	TermRef("patient", "Patient/1")        patient=Patient/1 (or an absolute URL)
//	TermRefID("patient", "1")              patient=1
//	TermRefIdentifier("patient", s, v)     patient:identifier=s|v   (s may be "" for v alone)
func TermCode(p, code string) string            { return p + "#c#" + code }
func TermSystemCode(p, sys, code string) string { return p + "#sc#" + sys + "|" + code }
func TermSystem(p, sys string) string           { return p + "#s#" + sys }
func TermNoSystem(p, code string) string        { return p + "#n#" + code }
func TermRef(p, ref string) string              { return p + "#r#" + ref }
func TermRefID(p, id string) string             { return p + "#id#" + id }
func TermRefIdentifier(p, sys, v string) string {
	if sys == "" {
		return p + "#ic#" + v
	}
	return p + "#isc#" + sys + "|" + v
}

// paramIndex maps type → code → definition; built once from the tables.
var paramIndex = func() map[string]map[string]SearchParam {
	idx := map[string]map[string]SearchParam{}
	for t := range typeParams {
		m := map[string]SearchParam{}
		for _, p := range SearchParams(t) {
			m[p.Code] = p
		}
		idx[t] = m
	}
	return idx
}()

func param(resourceType, code string) (SearchParam, bool) {
	if m, ok := paramIndex[resourceType]; ok {
		p, ok := m[code]
		return p, ok
	}
	for _, p := range commonParams {
		if p.Code == code {
			p.Base = resourceType
			return p, true
		}
	}
	return SearchParam{}, false
}

// extractor is a search parameter with its paths split into segments,
// prepared once per type: ExtractTerms runs on every write.
type extractor struct {
	param SearchParam
	paths [][]string
}

func extractorsOf(resourceType string) []extractor {
	params := SearchParams(resourceType)
	out := make([]extractor, len(params))
	for i, p := range params {
		out[i].param = p
		for _, path := range p.Paths {
			out[i].paths = append(out[i].paths, strings.Split(path, "."))
		}
	}
	return out
}

// extractors are prepared for every type of the tables (read-only).
var extractors = func() map[string][]extractor {
	m := map[string][]extractor{}
	for t := range typeParams {
		m[t] = extractorsOf(t)
	}
	return m
}()

// ExtractTerms computes the index terms of a resource document.
func ExtractTerms(resourceType string, doc map[string]any) Terms {
	var t Terms
	seen := map[string]struct{}{}
	add := func(s string) {
		if _, ok := seen[s]; !ok {
			seen[s] = struct{}{}
			t.Strings = append(t.Strings, s)
		}
	}
	exs, ok := extractors[resourceType]
	if !ok {
		exs = extractorsOf(resourceType) // a type without a table: the common parameters
	}
	for _, ex := range exs {
		p := ex.param
		for _, path := range ex.paths {
			for _, v := range walk(doc, path) {
				switch p.Type {
				case TypeToken, TypeURI:
					tokenTerms(p.Code, v, add)
				case TypeReference:
					referenceTerms(p, v, add)
				case TypeDate:
					if r, ok := dateValue(v); ok {
						t.Dates = append(t.Dates, DateTerm{Param: p.Code, DateRange: r})
					}
				}
			}
		}
	}
	return t
}

// walk returns the values at a path, flattening arrays on the way.
func walk(v any, path []string) []any {
	if arr, ok := v.([]any); ok {
		var out []any
		for _, e := range arr {
			out = append(out, walk(e, path)...)
		}
		return out
	}
	if len(path) == 0 {
		return []any{v}
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil
	}
	next, ok := m[path[0]]
	if !ok {
		return nil
	}
	return walk(next, path[1:])
}

func str(m map[string]any, k string) string {
	s, _ := m[k].(string)
	return s
}

// tokenTerms handles code, boolean, Coding, CodeableConcept and Identifier.
func tokenTerms(p string, v any, add func(string)) {
	switch x := v.(type) {
	case string:
		add(TermCode(p, x))
		add(TermNoSystem(p, x))
	case bool:
		s := "false"
		if x {
			s = "true"
		}
		add(TermCode(p, s))
		add(TermNoSystem(p, s))
	case map[string]any:
		if cs, ok := x["coding"].([]any); ok {
			for _, c := range cs {
				tokenTerms(p, c, add)
			}
			return
		}
		code := str(x, "code")
		if code == "" {
			code = str(x, "value") // Identifier
		}
		sys := str(x, "system")
		if code != "" {
			add(TermCode(p, code))
			if sys != "" {
				add(TermSystemCode(p, sys, code))
			} else {
				add(TermNoSystem(p, code))
			}
		}
		if sys != "" {
			add(TermSystem(p, sys))
		}
	}
}

// referenceTerms handles Reference (literal and logical) and canonical.
func referenceTerms(p SearchParam, v any, add func(string)) {
	m, ok := v.(map[string]any)
	if !ok {
		return
	}
	ref := str(m, "reference")
	if p.OnlyType != "" {
		typ := str(m, "type")
		if typ == "" && ref != "" {
			typ, _, _ = splitRef(ref)
		}
		if typ != p.OnlyType {
			return
		}
	}
	if ref != "" {
		if typ, id, ok := splitRef(ref); ok && !strings.Contains(ref, "://") {
			// A relative reference is indexed as Type/id, as a query
			// gives it (a version, Patient/1/_history/2, is dropped).
			add(TermRef(p.Code, typ+"/"+id))
			add(TermRefID(p.Code, id))
		} else {
			add(TermRef(p.Code, ref))
		}
	}
	if ident, ok := m["identifier"].(map[string]any); ok {
		if val := str(ident, "value"); val != "" {
			add(TermRefIdentifier(p.Code, "", val))
			if sys := str(ident, "system"); sys != "" {
				add(TermRefIdentifier(p.Code, sys, val))
			}
		}
	}
}

// splitRef splits "Type/id" (or a URL ending in Type/id[/_history/n]).
func splitRef(ref string) (typ, id string, ok bool) {
	if i := strings.Index(ref, "/_history/"); i >= 0 {
		ref = ref[:i]
	}
	parts := strings.Split(ref, "/")
	if len(parts) < 2 {
		return "", "", false
	}
	typ, id = parts[len(parts)-2], parts[len(parts)-1]
	if typ == "" || id == "" || typ[0] < 'A' || typ[0] > 'Z' {
		return "", "", false
	}
	return typ, id, true
}

// dateValue reads a date, dateTime, instant or Period.
func dateValue(v any) (DateRange, bool) {
	switch x := v.(type) {
	case string:
		return ParseDateRange(x)
	case map[string]any:
		lo, hi := MinTime, MaxTime
		s, sok := x["start"].(string)
		e, eok := x["end"].(string)
		if !sok && !eok {
			return DateRange{}, false
		}
		if sok {
			r, ok := ParseDateRange(s)
			if !ok {
				return DateRange{}, false
			}
			lo = r.Lo
		}
		if eok {
			r, ok := ParseDateRange(e)
			if !ok {
				return DateRange{}, false
			}
			hi = r.Hi
		}
		return DateRange{Lo: lo, Hi: hi}, true
	case json.Number:
		return DateRange{}, false
	}
	return DateRange{}, false
}
