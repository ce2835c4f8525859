package fhir

import (
	"slices"
	"strings"
	"testing"
)

// tableTypes are the types with their own parameters (DESIGN.md section 2).
var tableTypes = []string{"Patient", "Consent", "AuditEvent", "Organization", "Endpoint", "StructureDefinition"}

func TestSearchParamsDesign(t *testing.T) {
	// The parameters DESIGN.md section 2 promises per type.
	want := map[string][]string{
		"Patient":    {"identifier", "organization", "_lastUpdated"},
		"Consent":    {"patient", "status", "category", "actor", "period", "date", "_lastUpdated"},
		"AuditEvent": {"patient", "agent", "agent-role", "entity", "date", "type", "subtype", "action", "outcome", "source", "_lastUpdated"},
	}
	for typ, codes := range want {
		t.Run(typ, func(t *testing.T) {
			for _, c := range codes {
				if _, ok := LookupParam(typ, c); !ok {
					t.Errorf("%s has no search parameter %q", typ, c)
				}
			}
		})
	}
}

func TestSearchParamsDefinitions(t *testing.T) {
	types := append(slices.Clone(tableTypes), "Observation", "")
	for _, typ := range types {
		t.Run(typ, func(t *testing.T) {
			ps := SearchParams(typ)
			if !slices.IsSortedFunc(ps, func(a, b SearchParam) int { return strings.Compare(a.Code, b.Code) }) {
				t.Error("not sorted by code")
			}
			seen := map[string]bool{}
			for _, p := range ps {
				if seen[p.Code] {
					t.Errorf("duplicate code %q", p.Code)
				}
				seen[p.Code] = true
				if p.Base != typ {
					t.Errorf("%s: Base = %q", p.Code, p.Base)
				}
				if !strings.HasPrefix(p.URL, "http://hl7.org/fhir/SearchParameter/") {
					t.Errorf("%s: URL %q is not an R4 definition", p.Code, p.URL)
				}
				if p.Description == "" || p.Expression == "" || len(p.Paths) == 0 {
					t.Errorf("%s: incomplete definition %+v", p.Code, p)
				}
				if !strings.HasPrefix(p.Expression, typ+".") && !strings.HasPrefix(p.Expression, "Resource.") {
					t.Errorf("%s: expression %q is not on %s", p.Code, p.Expression, typ)
				}
				switch p.Type {
				case TypeReference:
					if len(p.Targets) == 0 {
						t.Errorf("%s: a reference without targets", p.Code)
					}
				case TypeToken, TypeDate, TypeURI:
					if len(p.Targets) != 0 || p.OnlyType != "" {
						t.Errorf("%s: targets on a %s parameter", p.Code, p.Type)
					}
				default:
					t.Errorf("%s: type %q is not indexed", p.Code, p.Type)
				}
				if p.OnlyType != "" && !slices.Contains(p.Targets, p.OnlyType) {
					t.Errorf("%s: OnlyType %q is not a target", p.Code, p.OnlyType)
				}
				got, ok := LookupParam(typ, p.Code)
				if !ok || got.Code != p.Code || got.URL != p.URL {
					t.Errorf("LookupParam(%q, %q) = %+v, %v", typ, p.Code, got, ok)
				}
			}
			for _, c := range []string{"_id", "_lastUpdated"} {
				if !seen[c] {
					t.Errorf("common parameter %s missing", c)
				}
			}
		})
	}
}

func TestSearchParamsAreCopies(t *testing.T) {
	ps := SearchParams("Consent")
	actor := slices.IndexFunc(ps, func(p SearchParam) bool { return p.Code == "actor" })
	ps[actor].Code = "mangled"
	ps[actor].Paths[0] = "mangled"
	ps[actor].Targets[0] = "mangled"
	p, ok := LookupParam("Consent", "actor")
	if !ok || p.Paths[0] != "provision.actor.reference" || p.Targets[0] != "Organization" {
		t.Errorf("SearchParams hands out its table: %+v", p)
	}
}

func TestLookupParam(t *testing.T) {
	tests := []struct {
		typ, code string
		ok        bool
		ptype     ParamType
	}{
		{"Patient", "identifier", true, TypeToken},
		{"Patient", "organization", true, TypeReference},
		{"Patient", "_lastUpdated", true, TypeDate},
		{"Patient", "_id", true, TypeToken},
		{"Patient", "name", false, ""},
		{"Consent", "period", true, TypeDate},
		{"AuditEvent", "patient", true, TypeReference},
		{"StructureDefinition", "url", true, TypeURI},
		{"Observation", "_lastUpdated", true, TypeDate},
		{"Observation", "patient", false, ""},
		{"Patient", "", false, ""},
		{"Patient", "Identifier", false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.typ+"."+tt.code, func(t *testing.T) {
			p, ok := LookupParam(tt.typ, tt.code)
			if ok != tt.ok || p.Type != tt.ptype {
				t.Errorf("LookupParam = %+v, %v", p, ok)
			}
			if ok && p.Base != tt.typ {
				t.Errorf("Base = %q", p.Base)
			}
		})
	}
}
