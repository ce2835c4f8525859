package storetest

import (
	"slices"
	"testing"
)

// searchSeed is the state of the search cases. p4 and c4 are deleted; c5
// changed status, period and dateTime in its second version, so its first
// version's terms must no longer match.
var searchSeed = []write{
	{"create", "Patient", "p1", patientJSON(bsnPatient, "local-1", "90000111", true)},
	{"create", "Patient", "p2", patientJSON(bsnOther, "local-2", "90000222", true)},
	{"create", "Patient", "p3", patientJSON(bsnPatient, "local-3", "90000222", false)},
	{"create", "Patient", "p4", patientJSON(bsnPatient, "local-4", "90000111", true)},
	{"delete", "Patient", "p4", ""},
	{"create", "Consent", "c1", consentJSON(consent{status: "active", bsn: bsnPatient, category: "59284-0", actor: "90000111",
		dateTime: "2024-01-01T10:00:00+01:00", periods: [][2]string{{"2024-01-01", "2024-12-31"}}})},
	{"create", "Consent", "c2", consentJSON(consent{status: "inactive", bsn: bsnOther, category: "59284-0",
		dateTime: "2023-06-01", periods: [][2]string{{"2023-06-01", ""}}})},
	{"create", "Consent", "c3", consentJSON(consent{status: "active", bsn: bsnOther, category: "64292-6", actor: "90000222",
		dateTime: "2024-01-01T10:00:00+01:00"})},
	{"create", "Consent", "c4", consentJSON(consent{status: "active", bsn: bsnPatient, category: "59284-0"})},
	{"delete", "Consent", "c4", ""},
	{"create", "Consent", "c5", consentJSON(consent{status: "active", bsn: bsnPatient, category: "59284-0",
		dateTime: "2020-05-05", periods: [][2]string{{"2020", "2021"}}})},
	{"update", "Consent", "c5", consentJSON(consent{status: "inactive", bsn: bsnPatient, category: "59284-0",
		periods: [][2]string{{"2025-01-01", ""}}})},
	{"create", "AuditEvent", "a1", auditJSON("2025-03-01T12:00:00.123+01:00", "11111111", "p1", "0")},
	{"create", "AuditEvent", "a2", auditJSON("2025-03-02T08:00:00Z", "22222222", "p2", "4")},
}

var searchCases = []struct {
	typ, query string
	want       []string // as a set, unless ordered
	ordered    bool
}{
	// Tokens: OR within a clause, AND across clauses.
	{typ: "Patient", query: "identifier=" + bsnSystem + "|" + bsnPatient, want: []string{"p1", "p3"}},
	{typ: "Patient", query: "identifier=" + bsnPatient, want: []string{"p1", "p3"}},
	{typ: "Patient", query: "identifier=" + bsnSystem + "|", want: []string{"p1", "p2", "p3"}},
	{typ: "Patient", query: "identifier=|" + bsnPatient},
	{typ: "Patient", query: "identifier=" + sourceA + "|local-2", want: []string{"p2"}},
	{typ: "Patient", query: "identifier=" + bsnSystem + "|" + bsnPatient + "," + bsnSystem + "|" + bsnOther, want: []string{"p1", "p2", "p3"}},
	{typ: "Patient", query: "identifier=" + bsnSystem + "|" + bsnPatient + "&organization=Organization/90000222", want: []string{"p3"}},
	{typ: "Patient", query: "identifier=" + bsnSystem + "|" + bsnOther + "&organization=Organization/90000111"},
	{typ: "Patient", query: "organization=90000111", want: []string{"p1"}},
	{typ: "Patient", query: "active=false", want: []string{"p3"}},
	{typ: "Patient", query: "active=true", want: []string{"p1", "p2"}},
	{typ: "Patient", query: "identifier=" + bsnSystem + "|000000000"},
	{typ: "Patient", query: "", want: []string{"p1", "p2", "p3"}},
	// _id; deleted resources are not found.
	{typ: "Patient", query: "_id=p1,p3,p4", want: []string{"p1", "p3"}},
	{typ: "Consent", query: "_id=c4"},
	{typ: "Consent", query: "_id=p1"},
	{typ: "Consent", query: "status=active", want: []string{"c1", "c3"}},
	{typ: "Consent", query: "status=inactive", want: []string{"c2", "c5"}},
	{typ: "Consent", query: "status=active,inactive", want: []string{"c1", "c2", "c3", "c5"}},
	{typ: "Consent", query: "patient:identifier=" + bsnSystem + "|" + bsnPatient, want: []string{"c1", "c5"}},
	{typ: "Consent", query: "patient.identifier=" + bsnSystem + "|" + bsnOther, want: []string{"c2", "c3"}},
	{typ: "Consent", query: "status=active&patient:identifier=" + bsnSystem + "|" + bsnPatient, want: []string{"c1"}},
	{typ: "Consent", query: "category=" + loinc + "|59284-0", want: []string{"c1", "c2", "c5"}},
	{typ: "Consent", query: "category=64292-6", want: []string{"c3"}},
	{typ: "Consent", query: "actor=Organization/90000222", want: []string{"c3"}},
	// Dates, on the current version only (c5's first period was 2020).
	{typ: "Consent", query: "period=2024", want: []string{"c1"}},
	{typ: "Consent", query: "period=ge2024-06-01", want: []string{"c1", "c2", "c5"}},
	{typ: "Consent", query: "period=lt2021"},
	{typ: "Consent", query: "period=sa2024-12-31", want: []string{"c5"}},
	{typ: "Consent", query: "date=2024-01-01", want: []string{"c1", "c3"}},
	{typ: "Consent", query: "date=lt2024", want: []string{"c2"}},
	{typ: "Consent", query: "date=2020"},
	{typ: "Consent", query: "date=ge2023-06-01&status=inactive", want: []string{"c2"}},
	{typ: "Consent", query: "status=active&period=2024,sa2024", want: []string{"c1"}},
	{typ: "Consent", query: "_lastUpdated=gt2000-01-01", want: []string{"c1", "c2", "c3", "c5"}},
	{typ: "Consent", query: "_lastUpdated=lt2000-01-01"},
	{typ: "AuditEvent", query: "patient=Patient/p1", want: []string{"a1"}},
	{typ: "AuditEvent", query: "patient=p2", want: []string{"a2"}},
	{typ: "AuditEvent", query: "agent:identifier=" + uziSystem + "|11111111", want: []string{"a1"}},
	{typ: "AuditEvent", query: "date=2025-03-01", want: []string{"a1"}},
	{typ: "AuditEvent", query: "date=ge2025-03-02", want: []string{"a2"}},
	{typ: "AuditEvent", query: "outcome=4", want: []string{"a2"}},
	{typ: "AuditEvent", query: "type=110112", want: []string{"a1", "a2"}},
	// Sorts: by a date parameter (missing sorts as the earliest time) with
	// ties broken by id in the direction of the sort.
	{typ: "AuditEvent", query: "_sort=-date", want: []string{"a2", "a1"}, ordered: true},
	{typ: "Consent", query: "status=active&_sort=date", want: []string{"c1", "c3"}, ordered: true},
	{typ: "Consent", query: "_sort=-date", want: []string{"c3", "c1", "c2", "c5"}, ordered: true},
	{typ: "Consent", query: "_sort=period", want: []string{"c3", "c2", "c1", "c5"}, ordered: true},
	{typ: "Consent", query: "_sort=-period", want: []string{"c5", "c1", "c2", "c3"}, ordered: true},
	{typ: "Consent", query: "_sort=-_lastUpdated", want: []string{"c5", "c3", "c2", "c1"}, ordered: true},
	{typ: "Consent", query: "_sort=_lastUpdated", want: []string{"c1", "c2", "c3", "c5"}, ordered: true},
}

func testSearch(t *testing.T, h Harness) {
	w := newWorld(t, open(t, h))
	w.apply(searchSeed)
	for _, tc := range searchCases {
		t.Run(tc.typ+"?"+tc.query, func(t *testing.T) {
			w := *w
			w.t = t
			q := parseQuery(t, tc.typ, tc.query)
			got := w.check(q, 1, 2, 100)
			want := slices.Clone(tc.want)
			if !tc.ordered {
				got = slices.Clone(got)
				slices.Sort(got)
				slices.Sort(want)
			}
			if !slices.Equal(got, want) {
				t.Errorf("the oracle finds %v, the case says %v", got, want)
			}
		})
	}
}
