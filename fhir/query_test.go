package fhir

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// q builds search parameters from "name=value" strings, split at the first
// "=" (values are taken as decoded: no URL escapes).
func q(pairs ...string) []Param {
	var ps []Param
	for _, p := range pairs {
		n, v, _ := strings.Cut(p, "=")
		ps = append(ps, Param{Name: n, Value: v})
	}
	return ps
}

func TestParseSearchTokens(t *testing.T) {
	tests := []struct {
		name   string
		typ    string
		params []Param
		want   []Clause
	}{
		{"code", "Patient", q("identifier=999911120"),
			[]Clause{{Param: "identifier", Strings: []string{TermCode("identifier", "999911120")}}}},
		{"system|code", "Patient", q("identifier=" + SystemBSN + "|999911120"),
			[]Clause{{Param: "identifier", Strings: []string{TermSystemCode("identifier", SystemBSN, "999911120")}}}},
		{"|code", "Patient", q("identifier=|999911120"),
			[]Clause{{Param: "identifier", Strings: []string{TermNoSystem("identifier", "999911120")}}}},
		{"system|", "Patient", q("identifier=" + SystemBSN + "|"),
			[]Clause{{Param: "identifier", Strings: []string{TermSystem("identifier", SystemBSN)}}}},
		{"code with a second bar", "Patient", q("identifier=s|a|b"),
			[]Clause{{Param: "identifier", Strings: []string{TermSystemCode("identifier", "s", "a|b")}}}},
		{"boolean", "Patient", q("active=true"),
			[]Clause{{Param: "active", Strings: []string{TermCode("active", "true")}}}},
		{"_id", "Consent", q("_id=c1"),
			[]Clause{{Param: "_id", Strings: []string{TermCode("_id", "c1")}}}},
		{"comma is OR", "AuditEvent", q("outcome=4,8,12"),
			[]Clause{{Param: "outcome", Strings: []string{TermCode("outcome", "4"), TermCode("outcome", "8"), TermCode("outcome", "12")}}}},
		{"mixed forms in one OR", "Patient", q("identifier=" + SystemBSN + "|999900006,|x,y," + SystemURA + "|"),
			[]Clause{{Param: "identifier", Strings: []string{
				TermSystemCode("identifier", SystemBSN, "999900006"), TermNoSystem("identifier", "x"),
				TermCode("identifier", "y"), TermSystem("identifier", SystemURA),
			}}}},
		{"repeated parameter is AND", "Consent", q("status=active", "status=draft"),
			[]Clause{
				{Param: "status", Strings: []string{TermCode("status", "active")}},
				{Param: "status", Strings: []string{TermCode("status", "draft")}},
			}},
		{"escaped comma", "Patient", q(`identifier=s|a\,b`),
			[]Clause{{Param: "identifier", Strings: []string{TermSystemCode("identifier", "s", "a,b")}}}},
		{"escaped bar in the code", "Patient", q(`identifier=s|a\|b`),
			[]Clause{{Param: "identifier", Strings: []string{TermSystemCode("identifier", "s", "a|b")}}}},
		{"escaped bar in the system", "Patient", q(`identifier=s\|t|c`),
			[]Clause{{Param: "identifier", Strings: []string{TermSystemCode("identifier", "s|t", "c")}}}},
		{"escaped bar only", "Patient", q(`identifier=a\|b`),
			[]Clause{{Param: "identifier", Strings: []string{TermCode("identifier", "a|b")}}}},
		{"escaped dollar", "Patient", q(`identifier=a\$b`),
			[]Clause{{Param: "identifier", Strings: []string{TermCode("identifier", "a$b")}}}},
		{"escaped backslash before a comma", "Patient", q(`identifier=a\\,b`),
			[]Clause{{Param: "identifier", Strings: []string{TermCode("identifier", `a\`), TermCode("identifier", "b")}}}},
		{"other backslashes are kept", "Patient", q(`identifier=a\xb`),
			[]Clause{{Param: "identifier", Strings: []string{TermCode("identifier", `a\xb`)}}}},
		{"trailing backslash is kept", "Patient", q(`identifier=a\`),
			[]Clause{{Param: "identifier", Strings: []string{TermCode("identifier", `a\`)}}}},
		{"uri", "StructureDefinition", q("url=http://schakelpunt.nl/fhir/StructureDefinition/index-patient"),
			[]Clause{{Param: "url", Strings: []string{TermCode("url", "http://schakelpunt.nl/fhir/StructureDefinition/index-patient")}}}},
		{"uri with an escaped comma", "StructureDefinition", q(`url=urn:a\,b,urn:c`),
			[]Clause{{Param: "url", Strings: []string{TermCode("url", "urn:a,b"), TermCode("url", "urn:c")}}}},
		{"common parameter of a type without a table", "Observation", q("_id=md1"),
			[]Clause{{Param: "_id", Strings: []string{TermCode("_id", "md1")}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ParseSearch(tt.typ, tt.params, false)
			if err != nil {
				t.Fatalf("ParseSearch: %v", err)
			}
			if s.Type != tt.typ {
				t.Errorf("Type = %q", s.Type)
			}
			if !reflect.DeepEqual(s.Clauses, tt.want) {
				t.Errorf("clauses:\n got %+v\nwant %+v", s.Clauses, tt.want)
			}
		})
	}
}

func TestParseSearchReferences(t *testing.T) {
	tests := []struct {
		name   string
		typ    string
		params []Param
		want   []string // the strings of the one clause
	}{
		{"Type/id", "Consent", q("patient=Patient/p1"), []string{TermRef("patient", "Patient/p1")}},
		{"id", "Consent", q("patient=p1"), []string{TermRefID("patient", "p1")}},
		{"Type/id with a version", "Consent", q("patient=Patient/p1/_history/2"), []string{TermRef("patient", "Patient/p1")}},
		{"absolute URL", "Patient", q("link=https://127.0.0.1:9102/fhir/R4/Patient/p1"), []string{TermRef("link", "https://127.0.0.1:9102/fhir/R4/Patient/p1")}},
		{":identifier system|value", "Consent", q("patient:identifier=" + SystemBSN + "|999911120"), []string{TermRefIdentifier("patient", SystemBSN, "999911120")}},
		{":identifier value", "Consent", q("patient:identifier=999911120"), []string{TermRefIdentifier("patient", "", "999911120")}},
		{":identifier |value", "Consent", q("patient:identifier=|999911120"), []string{TermRefIdentifier("patient", "", "999911120")}},
		{":identifier with an escaped bar", "Consent", q(`patient:identifier=urn:a\|b|v`), []string{TermRefIdentifier("patient", "urn:a|b", "v")}},
		{".identifier chain", "Consent", q("patient.identifier=" + SystemBSN + "|999911120"), []string{TermRefIdentifier("patient", SystemBSN, "999911120")}},
		{".identifier chain on AuditEvent", "AuditEvent", q("patient.identifier=" + SystemBSN + "|999911120"), []string{TermRefIdentifier("patient", SystemBSN, "999911120")}},
		{"agent:identifier", "AuditEvent", q("agent:identifier=" + SystemUZIPerson + "|11111111"), []string{TermRefIdentifier("agent", SystemUZIPerson, "11111111")}},
		{":Type modifier", "Consent", q("patient:Patient=p1"), []string{TermRef("patient", "Patient/p1")}},
		{":Type modifier, one of several targets", "Consent", q("actor:Practitioner=pr1"), []string{TermRef("actor", "Practitioner/pr1")}},
		{"Type/id of another allowed target", "Consent", q("actor=Organization/o1"), []string{TermRef("actor", "Organization/o1")}},
		{"entity takes any type", "AuditEvent", q("entity=MedicationDispense/md1"), []string{TermRef("entity", "MedicationDispense/md1")}},
		{"entity:Type takes any type", "AuditEvent", q("entity:Observation=o1"), []string{TermRef("entity", "Observation/o1")}},
		{"OR of forms", "Consent", q("patient=p1,Patient/p2,https://x/fhir/Patient/p3"),
			[]string{TermRefID("patient", "p1"), TermRef("patient", "Patient/p2"), TermRef("patient", "https://x/fhir/Patient/p3")}},
		{"OR of identifiers", "Consent", q("patient:identifier=" + SystemBSN + "|999900006," + SystemBSN + "|999900018"),
			[]string{TermRefIdentifier("patient", SystemBSN, "999900006"), TermRefIdentifier("patient", SystemBSN, "999900018")}},
		{"Patient organization", "Patient", q("organization:identifier=" + SystemURA + "|90000002"), []string{TermRefIdentifier("organization", SystemURA, "90000002")}},
		{"Endpoint organization", "Endpoint", q("organization=Organization/org-2"), []string{TermRef("organization", "Organization/org-2")}},
		{"AuditEvent source", "AuditEvent", q("source=Device/schakelpunt"), []string{TermRef("source", "Device/schakelpunt")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ParseSearch(tt.typ, tt.params, false)
			if err != nil {
				t.Fatalf("ParseSearch: %v", err)
			}
			if len(s.Clauses) != 1 {
				t.Fatalf("got %d clauses, want 1", len(s.Clauses))
			}
			if !reflect.DeepEqual(s.Clauses[0].Strings, tt.want) {
				t.Errorf("strings:\n got %q\nwant %q", s.Clauses[0].Strings, tt.want)
			}
			if s.Clauses[0].Dates != nil {
				t.Errorf("a reference clause has dates: %+v", s.Clauses[0].Dates)
			}
		})
	}
}

func TestParseSearchDates(t *testing.T) {
	day := func(p string) DateCond { return DateCond{Prefix: p, DateRange: MustRange(t, "2026-11-22")} }
	tests := []struct {
		name   string
		typ    string
		params []Param
		want   []DateCond
	}{
		{"no prefix is eq", "Consent", q("date=2026-11-22"), []DateCond{day(PrefixEq)}},
		{"eq", "Consent", q("date=eq2026-11-22"), []DateCond{day(PrefixEq)}},
		{"ne", "Consent", q("date=ne2026-11-22"), []DateCond{day(PrefixNe)}},
		{"lt", "Consent", q("date=lt2026-11-22"), []DateCond{day(PrefixLt)}},
		{"gt", "Consent", q("date=gt2026-11-22"), []DateCond{day(PrefixGt)}},
		{"le", "Consent", q("date=le2026-11-22"), []DateCond{day(PrefixLe)}},
		{"ge", "Consent", q("date=ge2026-11-22"), []DateCond{day(PrefixGe)}},
		{"sa", "Consent", q("period=sa2026-11-22"), []DateCond{day(PrefixSa)}},
		{"eb", "Consent", q("period=eb2026-11-22"), []DateCond{day(PrefixEb)}},
		{"dateTime with zone", "AuditEvent", q("date=ge2026-11-22T10:00:00+01:00"),
			[]DateCond{{Prefix: PrefixGe, DateRange: MustRange(t, "2026-11-22T09:00:00Z")}}},
		{"instant", "AuditEvent", q("_lastUpdated=le2026-11-22T10:00:00.123Z"),
			[]DateCond{{Prefix: PrefixLe, DateRange: MustRange(t, "2026-11-22T10:00:00.123Z")}}},
		{"OR", "Consent", q("date=lt2026,gt2027-06"),
			[]DateCond{{Prefix: PrefixLt, DateRange: MustRange(t, "2026")}, {Prefix: PrefixGt, DateRange: MustRange(t, "2027-06")}}},
		{"_lastUpdated on a type without a table", "Observation", q("_lastUpdated=2026"),
			[]DateCond{{Prefix: PrefixEq, DateRange: MustRange(t, "2026")}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ParseSearch(tt.typ, tt.params, false)
			if err != nil {
				t.Fatalf("ParseSearch: %v", err)
			}
			if len(s.Clauses) != 1 {
				t.Fatalf("got %d clauses, want 1", len(s.Clauses))
			}
			c := s.Clauses[0]
			if c.Param != tt.params[0].Name || c.Strings != nil {
				t.Errorf("clause %+v", c)
			}
			if !reflect.DeepEqual(c.Dates, tt.want) {
				t.Errorf("dates:\n got %+v\nwant %+v", c.Dates, tt.want)
			}
		})
	}
	t.Run("range of two clauses", func(t *testing.T) {
		s, err := ParseSearch("AuditEvent", q("date=ge2026-11-01", "date=lt2026-12-01"), false)
		if err != nil {
			t.Fatal(err)
		}
		if len(s.Clauses) != 2 || s.Clauses[0].Dates[0].Prefix != PrefixGe || s.Clauses[1].Dates[0].Prefix != PrefixLt {
			t.Errorf("clauses %+v", s.Clauses)
		}
	})
}

func TestParseSearchResultParameters(t *testing.T) {
	tests := []struct {
		name   string
		typ    string
		params []Param
		check  func(*Search) string
	}{
		{"defaults", "AuditEvent", nil, func(s *Search) string {
			if DefaultCount != 50 || s.Count != DefaultCount || s.Sort != nil || s.Total != "" || s.Summary != "" || s.Elements != nil || s.Clauses != nil || s.Ignored != nil {
				return fmt.Sprintf("%+v", s)
			}
			return ""
		}},
		{"_count", "AuditEvent", q("_count=10"), countIs(10)},
		{"_count=0", "AuditEvent", q("_count=0"), countIs(0)},
		{"_count at the cap", "AuditEvent", q("_count=1000"), countIs(1000)},
		{"_count over the cap", "AuditEvent", q("_count=5000"), countIs(MaxCount)},
		{"_count huge", "AuditEvent", q("_count=999999999"), countIs(MaxCount)},
		{"last _count wins", "AuditEvent", q("_count=5", "_count=7"), countIs(7)},
		{"_sort date", "AuditEvent", q("_sort=date"), sortIs("date", false)},
		{"_sort -date", "AuditEvent", q("_sort=-date"), sortIs("date", true)},
		{"_sort _lastUpdated", "Patient", q("_sort=_lastUpdated"), sortIs("_lastUpdated", false)},
		{"_sort -_lastUpdated", "Consent", q("_sort=-_lastUpdated"), sortIs("_lastUpdated", true)},
		{"_sort period", "Consent", q("_sort=period"), sortIs("period", false)},
		{"_total none", "AuditEvent", q("_total=none"), totalIs("none")},
		{"_total estimate", "AuditEvent", q("_total=estimate"), totalIs("estimate")},
		{"_total accurate", "AuditEvent", q("_total=accurate"), totalIs("accurate")},
		{"_summary=count", "AuditEvent", q("_summary=count"), func(s *Search) string {
			if s.Summary != "count" {
				return "Summary = " + s.Summary
			}
			return ""
		}},
		{"_summary=false", "AuditEvent", q("_summary=false"), func(s *Search) string {
			if s.Summary != "" {
				return "Summary = " + s.Summary
			}
			return ""
		}},
		{"_elements", "Patient", q("_elements=identifier, managingOrganization,,link "), func(s *Search) string {
			if !reflect.DeepEqual(s.Elements, []string{"identifier", "managingOrganization", "link"}) {
				return fmt.Sprintf("Elements = %q", s.Elements)
			}
			return ""
		}},
		{"_elements repeated", "Patient", q("_elements=identifier", "_elements=link"), func(s *Search) string {
			if !reflect.DeepEqual(s.Elements, []string{"identifier", "link"}) {
				return fmt.Sprintf("Elements = %q", s.Elements)
			}
			return ""
		}},
		{"_format and _pretty are the edge's", "Patient", q("_format=json", "_pretty=true"), func(s *Search) string {
			if s.Clauses != nil || s.Ignored != nil {
				return fmt.Sprintf("%+v", s)
			}
			return ""
		}},
		{"everything at once", "AuditEvent",
			q("patient:identifier="+SystemBSN+"|999911120", "date=ge2026-11-01", "_sort=-date", "_count=20", "_total=none", "_format=json"),
			func(s *Search) string {
				if len(s.Clauses) != 2 || s.Clauses[0].Param != "patient" || s.Clauses[1].Param != "date" ||
					s.Sort == nil || *s.Sort != (SortKey{"date", true}) || s.Count != 20 || s.Total != "none" {
					return fmt.Sprintf("%+v", s)
				}
				return ""
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ParseSearch(tt.typ, tt.params, false)
			if err != nil {
				t.Fatalf("ParseSearch: %v", err)
			}
			if msg := tt.check(s); msg != "" {
				t.Error(msg)
			}
		})
	}
}

func countIs(n int) func(*Search) string {
	return func(s *Search) string {
		if s.Count != n {
			return fmt.Sprintf("Count = %d, want %d", s.Count, n)
		}
		return ""
	}
}

func sortIs(p string, desc bool) func(*Search) string {
	return func(s *Search) string {
		if s.Sort == nil || *s.Sort != (SortKey{Param: p, Desc: desc}) {
			return fmt.Sprintf("Sort = %+v, want %s desc=%v", s.Sort, p, desc)
		}
		return ""
	}
}

func totalIs(v string) func(*Search) string {
	return func(s *Search) string {
		if s.Total != v {
			return fmt.Sprintf("Total = %q, want %q", s.Total, v)
		}
		return ""
	}
}

func TestParseSearchErrors(t *testing.T) {
	long := strings.Repeat("9", MaxValueLen+1)
	many := make([]Param, MaxParams+1)
	for i := range many {
		many[i] = Param{Name: "status", Value: "active"}
	}
	tests := []struct {
		name    string
		typ     string
		params  []Param
		lenient bool
		want    wantErr
	}{
		// Unknown parameters, modifiers and chains.
		{"unknown parameter", "Patient", q("foo=1"), false, wantErr{KindInvalid, "not-supported", "foo"}},
		{"unknown parameter, known on another type", "Patient", q("status=active"), false, wantErr{KindInvalid, "not-supported", "status"}},
		{"demographics are not searchable", "Patient", q("name=Jansen"), false, wantErr{KindInvalid, "not-supported", "name"}},
		{"birthdate is not searchable", "Patient", q("birthdate=1970"), false, wantErr{KindInvalid, "not-supported", "birthdate"}},
		{"_include", "Consent", q("_include=Consent:patient"), false, wantErr{KindInvalid, "not-supported", "_include"}},
		{"_has", "Patient", q("_has:Consent:patient:status=active"), false, wantErr{KindInvalid, "not-supported", "_has:Consent:patient:status"}},
		{"unknown type", "Observation", q("patient.identifier=" + SystemBSN + "|999911120"), false, wantErr{KindInvalid, "not-supported", "patient.identifier"}},
		{"token modifier", "Patient", q("identifier:text=x"), false, wantErr{KindInvalid, "not-supported", "identifier:text"}},
		{"token :missing", "Consent", q("status:missing=true"), false, wantErr{KindInvalid, "not-supported", "status:missing"}},
		{"token chain", "Patient", q("identifier.value=x"), false, wantErr{KindInvalid, "not-supported", "identifier.value"}},
		{"uri modifier", "StructureDefinition", q("url:below=http://x"), false, wantErr{KindInvalid, "not-supported", "url:below"}},
		{"date modifier", "Consent", q("date:missing=true"), false, wantErr{KindInvalid, "not-supported", "date:missing"}},
		{"chain other than identifier", "Consent", q("patient.name=Jansen"), false, wantErr{KindInvalid, "not-supported", "patient.name"}},
		{"deep chain", "Consent", q("patient.organization.identifier=x"), false, wantErr{KindInvalid, "not-supported", "patient.organization.identifier"}},
		{"modifier on a chain", "Consent", q("patient.identifier:exact=" + SystemBSN + "|999911120"), false, wantErr{KindInvalid, "not-supported", "patient.identifier:exact"}},
		// Bad values of known parameters.
		{"empty value", "Patient", q("identifier="), false, wantErr{KindInvalid, "invalid", "identifier"}},
		{"bare bar", "Patient", q("identifier=|"), false, wantErr{KindInvalid, "invalid", "identifier"}},
		{"empty value in an OR", "Patient", q("identifier=a,,b"), false, wantErr{KindInvalid, "invalid", "identifier"}},
		{"trailing comma", "Patient", q("identifier=a,"), false, wantErr{KindInvalid, "invalid", "identifier"}},
		{"empty uri in an OR", "StructureDefinition", q("url=urn:a,"), false, wantErr{KindInvalid, "invalid", "url"}},
		{"wrong target type", "Consent", q("patient=Organization/o1"), false, wantErr{KindInvalid, "invalid", "patient"}},
		{"wrong target type in an OR", "Consent", q("patient=Patient/p1,Practitioner/x"), false, wantErr{KindInvalid, "invalid", "patient"}},
		{"wrong :Type modifier", "Consent", q("patient:Organization=o1"), false, wantErr{KindInvalid, "invalid", "patient:Organization"}},
		{"unknown reference modifier", "Consent", q("patient:missing=true"), false, wantErr{KindInvalid, "invalid", "patient:missing"}},
		{":Type modifier with Type/id", "Consent", q("patient:Patient=Patient/p1"), false, wantErr{KindInvalid, "invalid", "patient:Patient"}},
		{"lower-case type", "Consent", q("patient=patient/p1"), false, wantErr{KindInvalid, "invalid", "patient"}},
		{"trailing slash", "Consent", q("patient=Patient/"), false, wantErr{KindInvalid, "invalid", "patient"}},
		{"empty reference in an OR", "Consent", q("patient=p1,"), false, wantErr{KindInvalid, "invalid", "patient"}},
		{":identifier without a value", "Consent", q("patient:identifier=" + SystemBSN + "|"), false, wantErr{KindInvalid, "invalid", "patient:identifier"}},
		{".identifier without a value", "Consent", q("patient.identifier=" + SystemBSN + "|"), false, wantErr{KindInvalid, "invalid", "patient.identifier"}},
		{"empty reference value", "Consent", q("patient="), false, wantErr{KindInvalid, "invalid", "patient"}},
		{"bad date", "Consent", q("date=2026-13"), false, wantErr{KindInvalid, "invalid", "date"}},
		{"30 February", "Consent", q("date=2026-02-30"), false, wantErr{KindInvalid, "invalid", "date"}},
		{"24:00", "AuditEvent", q("date=2026-11-22T24:00:00Z"), false, wantErr{KindInvalid, "invalid", "date"}},
		{"unknown prefix", "Consent", q("date=xx2026"), false, wantErr{KindInvalid, "invalid", "date"}},
		{"ap is not supported", "Consent", q("date=ap2026"), false, wantErr{KindInvalid, "invalid", "date"}},
		{"upper-case prefix", "Consent", q("date=GE2026"), false, wantErr{KindInvalid, "invalid", "date"}},
		{"prefix without a date", "Consent", q("date=ge"), false, wantErr{KindInvalid, "invalid", "date"}},
		{"bad date in an OR", "Consent", q("date=2026,2026-13"), false, wantErr{KindInvalid, "invalid", "date"}},
		{"unencoded plus became a space", "AuditEvent", q("date=2026-11-22T10:00:00 01:00"), false, wantErr{KindInvalid, "invalid", "date"}},
		// Result parameters.
		{"negative _count", "AuditEvent", q("_count=-1"), false, wantErr{KindInvalid, "invalid", "_count"}},
		{"_count not a number", "AuditEvent", q("_count=ten"), false, wantErr{KindInvalid, "invalid", "_count"}},
		{"_count fraction", "AuditEvent", q("_count=1.5"), false, wantErr{KindInvalid, "invalid", "_count"}},
		{"_count empty", "AuditEvent", q("_count="), false, wantErr{KindInvalid, "invalid", "_count"}},
		{"_count overflow", "AuditEvent", q("_count=99999999999999999999"), false, wantErr{KindInvalid, "invalid", "_count"}},
		{"_sort by a token", "AuditEvent", q("_sort=outcome"), false, wantErr{KindInvalid, "invalid", "_sort"}},
		{"_sort by _id", "AuditEvent", q("_sort=_id"), false, wantErr{KindInvalid, "invalid", "_sort"}},
		{"_sort by an unknown parameter", "AuditEvent", q("_sort=foo"), false, wantErr{KindInvalid, "invalid", "_sort"}},
		{"_sort by two keys", "AuditEvent", q("_sort=date,_lastUpdated"), false, wantErr{KindInvalid, "invalid", "_sort"}},
		{"_sort empty", "AuditEvent", q("_sort="), false, wantErr{KindInvalid, "invalid", "_sort"}},
		{"_sort minus only", "AuditEvent", q("_sort=-"), false, wantErr{KindInvalid, "invalid", "_sort"}},
		{"_sort by date on Patient", "Patient", q("_sort=date"), false, wantErr{KindInvalid, "invalid", "_sort"}},
		{"_sort errs also when lenient", "AuditEvent", q("_sort=outcome"), true, wantErr{KindInvalid, "invalid", "_sort"}},
		{"_total bad", "AuditEvent", q("_total=maybe"), false, wantErr{KindInvalid, "invalid", "_total"}},
		{"_summary=true", "AuditEvent", q("_summary=true"), false, wantErr{KindInvalid, "invalid", "_summary"}},
		{"_summary=data", "AuditEvent", q("_summary=data"), false, wantErr{KindInvalid, "invalid", "_summary"}},
		// Lenient handling ignores unknown parameters only.
		{"lenient, bad value", "Patient", q("identifier=|"), true, wantErr{KindInvalid, "invalid", "identifier"}},
		{"lenient, unknown modifier", "Patient", q("identifier:text=x"), true, wantErr{KindInvalid, "not-supported", "identifier:text"}},
		{"lenient, bad date", "Consent", q("foo=1", "date=2026-13"), true, wantErr{KindInvalid, "invalid", "date"}},
		// Limits.
		{"too many parameters", "Consent", many, false, wantErr{KindInvalid, "too-costly", "-"}},
		{"too many parameters, lenient", "Consent", many, true, wantErr{KindInvalid, "too-costly", "-"}},
		{"too long a value", "Patient", q("identifier=" + long), false, wantErr{KindInvalid, "too-long", "identifier"}},
		{"too long an ignored value", "Patient", q("foo=" + long), true, wantErr{KindInvalid, "too-long", "foo"}},
		{"too long a _format", "Patient", q("_format=" + long), false, wantErr{KindInvalid, "too-long", "_format"}},
		{"first error wins", "Consent", q("status=active", "bogus=1", "date=2026-13"), false, wantErr{KindInvalid, "not-supported", "bogus"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ParseSearch(tt.typ, tt.params, tt.lenient)
			if s != nil {
				t.Errorf("got a search with an error: %+v", s)
			}
			fe := checkError(t, err, tt.want)
			if strings.Contains(fe.Issues[0].Diagnostics, "999911120") {
				t.Errorf("diagnostics %q echo a BSN", fe.Issues[0].Diagnostics)
			}
		})
	}
}

func TestParseSearchLimitsAreInclusive(t *testing.T) {
	many := make([]Param, MaxParams)
	for i := range many {
		many[i] = Param{Name: "status", Value: "active"}
	}
	if _, err := ParseSearch("Consent", many, false); err != nil {
		t.Errorf("%d parameters: %v", MaxParams, err)
	}
	if _, err := ParseSearch("Patient", q("identifier="+strings.Repeat("9", MaxValueLen)), false); err != nil {
		t.Errorf("a value of %d bytes: %v", MaxValueLen, err)
	}
}

func TestParseSearchLenient(t *testing.T) {
	s, err := ParseSearch("Patient", q("foo=1", "identifier="+SystemBSN+"|999911120", "_has:Consent:patient:status=active", "_include=x"), true)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Clauses) != 1 || s.Clauses[0].Param != "identifier" {
		t.Errorf("clauses %+v", s.Clauses)
	}
	want := []string{"foo", "_has:Consent:patient:status", "_include"}
	if len(s.Ignored) != len(want) {
		t.Fatalf("ignored %+v, want %d issues", s.Ignored, len(want))
	}
	for i, is := range s.Ignored {
		if is.Severity != "warning" || is.Code != "not-supported" || !reflect.DeepEqual(is.Expression, []string{want[i]}) || is.Diagnostics == "" {
			t.Errorf("ignored[%d] = %+v, want a not-supported warning at %s", i, is, want[i])
		}
	}
	// Strict parsing of the same query fails at the first unknown one.
	_, err = ParseSearch("Patient", q("foo=1", "identifier="+SystemBSN+"|999911120"), false)
	checkError(t, err, wantErr{KindInvalid, "not-supported", "foo"})
}

func TestParseSearchErrorIsKindInvalid(t *testing.T) {
	_, err := ParseSearch("Patient", q("foo=1"), false)
	if KindOf(err) != KindInvalid {
		t.Errorf("KindOf = %d", KindOf(err))
	}
	if !strings.Contains(err.Error(), "foo") {
		t.Errorf("Error() = %q does not name the parameter", err.Error())
	}
}
