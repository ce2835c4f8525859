package profiles

import (
	"errors"
	"sort"
	"strconv"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v5"

	"github.com/schakelpunt/schakelpunt/fhir"
)

// fhirPath converts a JSON Pointer into a resource to a FHIRPath expression
// rooted at the resource type: /name/0/given becomes Patient.name[0].given,
// /_birthDate/extension/0 becomes Patient.birthDate.extension[0].
func fhirPath(root, ptr string) string {
	if ptr == "" || ptr == "/" {
		return root
	}
	segs := strings.Split(strings.TrimPrefix(ptr, "/"), "/")
	for i := range segs {
		segs[i] = untoken(segs[i])
	}
	return segmentsPath(root, segs)
}

// segmentsPath renders unescaped pointer segments as FHIRPath.
func segmentsPath(root string, segs []string) string {
	var b strings.Builder
	b.WriteString(root)
	for _, s := range segs {
		if isIndex(s) {
			b.WriteByte('[')
			b.WriteString(s)
			b.WriteByte(']')
			continue
		}
		b.WriteByte('.')
		b.WriteString(strings.TrimPrefix(s, "_"))
	}
	return b.String()
}

func isIndex(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// schemaIssues validates inst against schema and turns the failures into
// issues. root is the type of the resource being validated and prefix the
// JSON Pointer of inst within it ("" or /entry/3/resource).
func (v *Validator) schemaIssues(schema *jsonschema.Schema, inst map[string]any, root, prefix string, out []fhir.Issue) []fhir.Issue {
	err := schema.Validate(inst)
	if err == nil {
		return out
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return append(out, fhir.Issue{Severity: "error", Code: "processing", Diagnostics: "profile validation failed: " + err.Error(),
			Expression: []string{fhirPath(root, prefix)}})
	}
	return v.flatten(ve, inst, root, prefix, out)
}

// flatten collects the leaves of a validation error tree. anyOf, oneOf, not
// and contains failures are leaves: their causes are the alternatives tried.
func (v *Validator) flatten(ve *jsonschema.ValidationError, inst map[string]any, root, prefix string, out []fhir.Issue) []fhir.Issue {
	if len(ve.Causes) > 0 {
		switch lastSegment(ve.KeywordLocation) {
		case "anyOf", "oneOf", "not", "minContains", "maxContains":
		default:
			for _, c := range ve.Causes {
				out = v.flatten(c, inst, root, prefix, out)
			}
			return out
		}
	}
	return v.leafIssues(ve, inst, root, prefix, out)
}

// leafIssues maps one failure to the note of the constraint that caught it:
// the nearest schema location, at or above the failing keyword, that the
// generator described. A "required" failure becomes an issue per missing
// member.
func (v *Validator) leafIssues(ve *jsonschema.ValidationError, inst map[string]any, root, prefix string, out []fhir.Issue) []fhir.Issue {
	url, ptr, _ := strings.Cut(ve.AbsoluteKeywordLocation, "#")
	loc := ptr
	var n note
	found := false
	for {
		if n, found = v.notes[url+"#"+loc]; found {
			break
		}
		if loc == "" {
			break
		}
		loc = loc[:strings.LastIndexByte(loc, '/')]
	}
	at := prefix + ve.InstanceLocation
	if !found {
		return append(out, fhir.Issue{Severity: "error", Code: "invalid", Diagnostics: ve.Message, Expression: []string{fhirPath(root, at)}})
	}
	if n.byChild != nil {
		obj, _ := resolvePointer(inst, ve.InstanceLocation).(map[string]any)
		for _, name := range sortedKeys(n.byChild) {
			if _, present := obj[name]; present {
				continue
			}
			c := n.byChild[name]
			out = append(out, fhir.Issue{Severity: "error", Code: c.code, Diagnostics: c.text,
				Expression: []string{fhirPath(root, at) + "." + name}})
		}
		return out
	}
	diag := n.text
	if n.generic {
		diag += " (" + ve.Message + ")"
	} else {
		// Report at the element the note describes: drop the instance steps
		// the schema took below the note's location.
		at = dropSegments(at, instanceSteps(strings.TrimPrefix(ptr, loc)))
	}
	expr := fhirPath(root, at)
	if n.child != "" {
		expr += "." + n.child
	}
	if n.as != "" {
		expr = expr[:strings.LastIndexByte(expr, '.')+1] + n.as
	}
	return append(out, fhir.Issue{Severity: "error", Code: n.code, Diagnostics: diag, Expression: []string{expr}})
}

// resolvePointer returns the value at a JSON Pointer within doc, or nil.
func resolvePointer(doc any, ptr string) any {
	if ptr == "" {
		return doc
	}
	for _, seg := range strings.Split(strings.TrimPrefix(ptr, "/"), "/") {
		switch x := doc.(type) {
		case map[string]any:
			doc = x[untoken(seg)]
		case []any:
			i, err := strconv.Atoi(seg)
			if err != nil || i < 0 || i >= len(x) {
				return nil
			}
			doc = x[i]
		default:
			return nil
		}
	}
	return doc
}

func sortedKeys(m map[string]note) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// instanceSteps counts the keywords in a relative schema pointer that step
// into the instance (one property or one array item each).
func instanceSteps(rel string) int {
	segs := strings.Split(strings.TrimPrefix(rel, "/"), "/")
	steps := 0
	for i := 0; i < len(segs); i++ {
		switch segs[i] {
		case "properties", "prefixItems", "patternProperties":
			steps++
			i++ // skip the property name or index
		case "items", "contains", "additionalProperties", "additionalItems", "unevaluatedItems", "unevaluatedProperties":
			steps++
		}
	}
	return steps
}

func dropSegments(ptr string, n int) string {
	for ; n > 0 && ptr != ""; n-- {
		ptr = ptr[:strings.LastIndexByte(ptr, '/')]
	}
	return ptr
}

func lastSegment(ptr string) string {
	return ptr[strings.LastIndexByte(ptr, '/')+1:]
}
