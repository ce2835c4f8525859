package fhir

import (
	"errors"
	"net/url"
	"strings"
	"testing"
)

var fuzzTypes = []string{"Patient", "Consent", "AuditEvent", "Organization", "Endpoint", "StructureDefinition", "MedicationDispense"}

// FuzzParseSearch feeds query strings as they arrive in a URL. ParseSearch
// must never panic, must fail only with a *fhir.Error of KindInvalid with
// issues, and must return a coherent Search otherwise.
func FuzzParseSearch(f *testing.F) {
	seeds := []struct {
		typ     uint8
		query   string
		lenient bool
	}{
		{0, "identifier=http://fhir.nl/fhir/NamingSystem/bsn|999911120", false},
		{0, "identifier=|999911120&active=true&_lastUpdated=ge2026-11-22", false},
		{0, "organization:identifier=http://fhir.nl/fhir/NamingSystem/ura|90000002&_count=10", false},
		{0, "organization.identifier=http://fhir.nl/fhir/NamingSystem/ura|&_sort=-_lastUpdated", false},
		{0, "link=https://127.0.0.1:9102/fhir/R4/Patient/p1&_elements=identifier,link", false},
		{1, "patient:identifier=http://fhir.nl/fhir/NamingSystem/bsn|999911120&status=active&category=http://loinc.org|59284-0", false},
		{1, "patient=Patient/p1/_history/2&actor:Organization=o1&period=sa2026-11&date=lt2026-11-22T10:00:00%2B01:00", false},
		{1, `status=a\,b,c\|d,\\&_total=accurate&_summary=count`, false},
		{1, "patient.identifier:exact=x&patient=Organization/1", false},
		{2, "patient:identifier=http://fhir.nl/fhir/NamingSystem/bsn|999911120&agent:identifier=http://fhir.nl/fhir/NamingSystem/uzi-nr-pers|11111111&_sort=-date&_count=1000", false},
		{2, "date=ge2026-11-01&date=lt2026-12-01&outcome=4,8,12&type=rest&subtype=read,vread&action=E&source=Device/x", false},
		{2, "entity:Observation=o1&entity=https://x/fhir/Patient/1&agent-role=01.015", false},
		{2, "foo=1&_has:Consent:patient:status=active&_include=*", true},
		{3, "identifier=|90000002&endpoint=Endpoint/e1&_count=-1", false},
		{4, "organization=org-2&status=active&connection-type=hl7-fhir-rest", false},
		{5, "url=http://schakelpunt.nl/fhir/StructureDefinition/index-patient&type=Patient&version=1", false},
		{6, "_id=md1&_lastUpdated=2026&patient.identifier=x", true},
		{0, "_count=99999999999999999999&_sort=&_total=maybe", false},
		{1, "date=2026-02-30T10:00:00Z&period=ap2026&date=ge", false},
		{0, "=&&=x&identifier&%zz=1", false},
	}
	for _, s := range seeds {
		f.Add(s.typ, s.query, s.lenient)
	}
	f.Fuzz(func(t *testing.T, typ uint8, query string, lenient bool) {
		rt := fuzzTypes[int(typ)%len(fuzzTypes)]
		var params []Param
		if query != "" {
			for _, kv := range strings.Split(query, "&") {
				k, v, _ := strings.Cut(kv, "=")
				if uk, err := url.QueryUnescape(k); err == nil {
					k = uk
				}
				if uv, err := url.QueryUnescape(v); err == nil {
					v = uv
				}
				params = append(params, Param{Name: k, Value: v})
			}
		}
		s, err := ParseSearch(rt, params, lenient)
		if err != nil {
			var fe *Error
			if !errors.As(err, &fe) {
				t.Fatalf("error %v is a %T, not a *fhir.Error", err, err)
			}
			if fe.Kind != KindInvalid {
				t.Fatalf("error %v has kind %d, want KindInvalid", err, fe.Kind)
			}
			if len(fe.Issues) == 0 || fe.Issues[0].Code == "" || fe.Issues[0].Severity != "error" {
				t.Fatalf("error %v has no proper issue: %+v", err, fe.Issues)
			}
			if s != nil {
				t.Fatalf("a search came with the error")
			}
			return
		}
		if s.Type != rt {
			t.Fatalf("Type = %q, want %q", s.Type, rt)
		}
		if s.Count < 0 || s.Count > MaxCount {
			t.Fatalf("Count = %d", s.Count)
		}
		if len(s.Clauses)+len(s.Ignored) > len(params) {
			t.Fatalf("%d clauses and %d ignored from %d parameters", len(s.Clauses), len(s.Ignored), len(params))
		}
		if !lenient && len(s.Ignored) > 0 {
			t.Fatalf("strict parsing ignored %+v", s.Ignored)
		}
		for _, c := range s.Clauses {
			def, ok := LookupParam(rt, c.Param)
			if !ok {
				t.Fatalf("clause on unknown parameter %q", c.Param)
			}
			if (len(c.Strings) == 0) == (len(c.Dates) == 0) {
				t.Fatalf("clause %+v must have strings or dates, not both or neither", c)
			}
			if (def.Type == TypeDate) != (len(c.Dates) > 0) {
				t.Fatalf("clause %+v does not fit a %s parameter", c, def.Type)
			}
			for _, str := range c.Strings {
				if !strings.HasPrefix(str, c.Param+"#") {
					t.Fatalf("term %q is not of parameter %q", str, c.Param)
				}
			}
			for _, d := range c.Dates {
				if d.Lo >= d.Hi {
					t.Fatalf("empty date range in %+v", c)
				}
			}
		}
		if s.Sort != nil {
			if def, ok := LookupParam(rt, s.Sort.Param); !ok || def.Type != TypeDate {
				t.Fatalf("sort by %q", s.Sort.Param)
			}
		}
	})
}
