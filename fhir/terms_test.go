package fhir

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

const (
	sysConsentScope  = "http://terminology.hl7.org/CodeSystem/consentscope"
	sysConsentAction = "http://terminology.hl7.org/CodeSystem/consentaction"
	sysAuditType     = "http://terminology.hl7.org/CodeSystem/audit-event-type"
	sysInteraction   = "http://hl7.org/fhir/restful-interaction"
	sysOrgType       = "http://terminology.hl7.org/CodeSystem/organization-type"
	sysConnType      = "http://terminology.hl7.org/CodeSystem/endpoint-connection-type"
)

// TestTermFormats pins the term strings: they are stored by both adapters,
// so changing them is a data migration.
func TestTermFormats(t *testing.T) {
	tests := []struct{ got, want string }{
		{TermCode("identifier", "123"), "identifier#c#123"},
		{TermSystemCode("identifier", SystemBSN, "999911120"), "identifier#sc#http://fhir.nl/fhir/NamingSystem/bsn|999911120"},
		{TermSystem("identifier", SystemBSN), "identifier#s#http://fhir.nl/fhir/NamingSystem/bsn"},
		{TermNoSystem("identifier", "123"), "identifier#n#123"},
		{TermRef("patient", "Patient/1"), "patient#r#Patient/1"},
		{TermRef("patient", "https://x/fhir/Patient/1"), "patient#r#https://x/fhir/Patient/1"},
		{TermRefID("patient", "1"), "patient#id#1"},
		{TermRefIdentifier("patient", "", "999911120"), "patient#ic#999911120"},
		{TermRefIdentifier("patient", SystemBSN, "999911120"), "patient#isc#http://fhir.nl/fhir/NamingSystem/bsn|999911120"},
		{TermRefIdentifier("patient", SystemBSN, ""), "patient#isc#http://fhir.nl/fhir/NamingSystem/bsn|"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %q, want %q", tt.got, tt.want)
			}
		})
	}
}

type wantDate struct {
	param  string
	lo, hi string // RFC 3339; "" is open
}

func TestExtractTermsFixtures(t *testing.T) {
	tests := []struct {
		fixture string
		strings []string
		dates   []wantDate
	}{
		{
			fixture: "patient-index.json",
			strings: []string{
				TermCode("_id", "idx-1"), TermNoSystem("_id", "idx-1"),
				TermCode("active", "true"), TermNoSystem("active", "true"),
				TermCode("identifier", "999911120"), TermSystemCode("identifier", SystemBSN, "999911120"), TermSystem("identifier", SystemBSN),
				// link.other is an absolute URL: no id term (an id is local).
				TermRef("link", "https://127.0.0.1:9102/fhir/R4/Patient/p1"),
				// managingOrganization by identifier (the URA).
				TermRefIdentifier("organization", "", "90000002"), TermRefIdentifier("organization", SystemURA, "90000002"),
			},
			dates: []wantDate{{"_lastUpdated", "2026-11-22T09:00:00Z", "2026-11-22T09:00:00.001Z"}},
		},
		{
			fixture: "consent.json",
			strings: []string{
				TermCode("_id", "c1"), TermNoSystem("_id", "c1"),
				TermCode("action", "access"), TermSystemCode("action", sysConsentAction, "access"), TermSystem("action", sysConsentAction),
				// provision.actor.reference by identifier, and in the nested
				// deny provisions by identifier and by literal reference.
				TermRefIdentifier("actor", "", "90000002"), TermRefIdentifier("actor", SystemURA, "90000002"),
				TermRefIdentifier("actor", "", "90000009"), TermRefIdentifier("actor", SystemURA, "90000009"),
				TermRef("actor", "Organization/org-9"), TermRefID("actor", "org-9"),
				TermCode("category", "59284-0"), TermSystemCode("category", SystemLOINC, "59284-0"), TermSystem("category", SystemLOINC),
				TermRefIdentifier("organization", "", "90000002"), TermRefIdentifier("organization", SystemURA, "90000002"),
				TermRefIdentifier("patient", "", "999911120"), TermRefIdentifier("patient", SystemBSN, "999911120"),
				TermCode("scope", "patient-privacy"), TermSystemCode("scope", sysConsentScope, "patient-privacy"), TermSystem("scope", sysConsentScope),
				TermCode("status", "active"), TermNoSystem("status", "active"),
			},
			dates: []wantDate{
				{"date", "2026-11-22T09:00:00Z", "2026-11-22T09:00:01Z"},
				{"period", "2026-11-21T23:00:00Z", ""}, // no end: still in force
			},
		},
		{
			fixture: "auditevent.json",
			strings: []string{
				TermCode("_id", "ae1"), TermNoSystem("_id", "ae1"),
				TermCode("action", "E"), TermNoSystem("action", "E"),
				TermRefIdentifier("agent", "", "11111111"), TermRefIdentifier("agent", SystemUZIPerson, "11111111"),
				TermRefIdentifier("agent", "", "90000111"), TermRefIdentifier("agent", SystemURA, "90000111"),
				TermCode("agent-role", "01.015"), TermSystemCode("agent-role", SystemUZIRole, "01.015"), TermSystem("agent-role", SystemUZIRole),
				TermRefIdentifier("entity", "", "999911120"), TermRefIdentifier("entity", SystemBSN, "999911120"),
				TermRefIdentifier("entity", "", "90000002"), TermRefIdentifier("entity", SystemURA, "90000002"),
				TermCode("outcome", "0"), TermNoSystem("outcome", "0"),
				// Only the entity typed Patient; not the organisations.
				TermRefIdentifier("patient", "", "999911120"), TermRefIdentifier("patient", SystemBSN, "999911120"),
				TermRef("source", "Device/schakelpunt"), TermRefID("source", "schakelpunt"),
				TermCode("subtype", "search-type"), TermSystemCode("subtype", sysInteraction, "search-type"), TermSystem("subtype", sysInteraction),
				TermCode("type", "rest"), TermSystemCode("type", sysAuditType, "rest"), TermSystem("type", sysAuditType),
			},
			dates: []wantDate{
				{"_lastUpdated", "2026-11-22T09:00:00.123Z", "2026-11-22T09:00:00.124Z"},
				{"date", "2026-11-22T09:00:00.123Z", "2026-11-22T09:00:00.124Z"},
			},
		},
		{
			fixture: "auditevent-patient-refs.json",
			strings: []string{
				TermCode("_id", "ae2"), TermNoSystem("_id", "ae2"),
				TermCode("action", "R"), TermNoSystem("action", "R"),
				TermRef("agent", "Patient/p7"), TermRefID("agent", "p7"),
				TermRef("agent", "Practitioner/pr1"), TermRefID("agent", "pr1"),
				TermRef("entity", "https://127.0.0.1:9102/fhir/R4/Patient/p1"),
				TermRef("entity", "Patient/p8"), TermRefID("entity", "p8"), // the version is dropped
				TermRef("entity", "Organization/o1"), TermRefID("entity", "o1"),
				TermRefIdentifier("entity", "", "999900006"), TermRefIdentifier("entity", SystemBSN, "999900006"),
				TermCode("outcome", "4"), TermNoSystem("outcome", "4"),
				// patient: a Patient/ reference (relative or absolute) or a
				// reference typed Patient; not Practitioner, not Organization,
				// not an untyped identifier (even a BSN).
				TermRef("patient", "Patient/p7"), TermRefID("patient", "p7"),
				TermRef("patient", "https://127.0.0.1:9102/fhir/R4/Patient/p1"),
				TermRef("patient", "Patient/p8"), TermRefID("patient", "p8"),
				TermCode("subtype", "read"), TermSystemCode("subtype", sysInteraction, "read"), TermSystem("subtype", sysInteraction),
				TermCode("type", "rest"), TermSystemCode("type", sysAuditType, "rest"), TermSystem("type", sysAuditType),
			},
			dates: []wantDate{{"date", "2026-11-22T13:00:00Z", "2026-11-22T13:00:01Z"}},
		},
		{
			fixture: "organization.json",
			strings: []string{
				TermCode("_id", "org-2"), TermNoSystem("_id", "org-2"),
				TermCode("active", "true"), TermNoSystem("active", "true"),
				TermRef("endpoint", "Endpoint/ep-2"), TermRefID("endpoint", "ep-2"),
				TermCode("identifier", "90000002"), TermSystemCode("identifier", SystemURA, "90000002"), TermSystem("identifier", SystemURA),
				TermCode("type", "prov"), TermSystemCode("type", sysOrgType, "prov"), TermSystem("type", sysOrgType),
			},
		},
		{
			fixture: "endpoint.json",
			strings: []string{
				TermCode("_id", "ep-2"), TermNoSystem("_id", "ep-2"),
				TermCode("connection-type", "hl7-fhir-rest"), TermSystemCode("connection-type", sysConnType, "hl7-fhir-rest"), TermSystem("connection-type", sysConnType),
				// An identifier without a system answers identifier=|ep-2-fhir.
				TermCode("identifier", "ep-2-fhir"), TermNoSystem("identifier", "ep-2-fhir"),
				TermRef("organization", "Organization/org-2"), TermRefID("organization", "org-2"),
				TermCode("status", "active"), TermNoSystem("status", "active"),
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.fixture, func(t *testing.T) {
			res := MustParse(t, tt.fixture)
			got := ExtractTerms(res.Type, res.Doc)
			checkTerms(t, got, tt.strings, tt.dates)
		})
	}
}

func checkTerms(t *testing.T, got Terms, strs []string, dates []wantDate) {
	t.Helper()
	gs, ws := slices.Sorted(slices.Values(got.Strings)), slices.Sorted(slices.Values(strs))
	if len(slices.Compact(slices.Clone(gs))) != len(gs) {
		t.Errorf("duplicate terms in %q", gs)
	}
	for _, s := range ws {
		if !slices.Contains(gs, s) {
			t.Errorf("missing term %q", s)
		}
	}
	for _, s := range gs {
		if !slices.Contains(ws, s) {
			t.Errorf("unexpected term %q", s)
		}
	}
	var want []DateTerm
	for _, d := range dates {
		r := DateRange{Lo: MinTime, Hi: MaxTime}
		if d.lo != "" {
			r.Lo = at(t, d.lo)
		}
		if d.hi != "" {
			r.Hi = at(t, d.hi)
		}
		want = append(want, DateTerm{Param: d.param, DateRange: r})
	}
	if !slices.Equal(got.Dates, want) {
		t.Errorf("dates:\n got %s\nwant %s", fmtDates(got.Dates), fmtDates(want))
	}
}

func fmtDates(ds []DateTerm) string {
	var parts []string
	for _, d := range ds {
		parts = append(parts, d.Param+"=["+fmtMicro(d.Lo)+", "+fmtMicro(d.Hi)+")")
	}
	return "{" + strings.Join(parts, " ") + "}"
}

// TestExtractTermsShapes covers element shapes one at a time, on documents
// that need not be whole resources.
func TestExtractTermsShapes(t *testing.T) {
	tests := []struct {
		name, typ, doc string
		strings        []string
		dates          []wantDate
	}{
		{
			name: "boolean false", typ: "Patient",
			doc:     `{"active": false}`,
			strings: []string{TermCode("active", "false"), TermNoSystem("active", "false")},
		},
		{
			name: "two identifiers, one repeated", typ: "Patient",
			doc: `{"identifier": [{"system": "` + SystemBSN + `", "value": "999900006"}, {"system": "` + SystemBSN + `", "value": "999900006"}, {"system": "urn:local", "value": "p1"}]}`,
			strings: []string{
				TermCode("identifier", "999900006"), TermSystemCode("identifier", SystemBSN, "999900006"), TermSystem("identifier", SystemBSN),
				TermCode("identifier", "p1"), TermSystemCode("identifier", "urn:local", "p1"), TermSystem("identifier", "urn:local"),
			},
		},
		{
			name: "identifier with a system and no value", typ: "Patient",
			doc:     `{"identifier": [{"system": "` + SystemBSN + `"}]}`,
			strings: []string{TermSystem("identifier", SystemBSN)},
		},
		{
			name: "coding with a system and no code", typ: "Organization",
			doc:     `{"type": [{"coding": [{"system": "` + sysOrgType + `"}]}]}`,
			strings: []string{TermSystem("type", sysOrgType)},
		},
		{
			name: "coding without a system", typ: "Organization",
			doc:     `{"type": [{"coding": [{"code": "prov"}]}]}`,
			strings: []string{TermCode("type", "prov"), TermNoSystem("type", "prov")},
		},
		{
			name: "codeable concept with several codings", typ: "Organization",
			doc: `{"type": [{"coding": [{"system": "a", "code": "1"}, {"system": "b", "code": "2"}]}]}`,
			strings: []string{
				TermCode("type", "1"), TermSystemCode("type", "a", "1"), TermSystem("type", "a"),
				TermCode("type", "2"), TermSystemCode("type", "b", "2"), TermSystem("type", "b"),
			},
		},
		{
			name: "codeable concept with text only", typ: "Organization",
			doc: `{"type": [{"text": "huisarts"}]}`,
		},
		{
			name: "AuditEvent type and subtype are Codings", typ: "AuditEvent",
			doc: `{"type": {"system": "` + sysAuditType + `", "code": "rest"}, "subtype": [{"system": "` + sysInteraction + `", "code": "read"}, {"system": "` + sysInteraction + `", "code": "vread"}]}`,
			strings: []string{
				TermCode("type", "rest"), TermSystemCode("type", sysAuditType, "rest"), TermSystem("type", sysAuditType),
				TermCode("subtype", "read"), TermSystemCode("subtype", sysInteraction, "read"),
				TermCode("subtype", "vread"), TermSystemCode("subtype", sysInteraction, "vread"), TermSystem("subtype", sysInteraction),
			},
		},
		{
			name: "relative reference with a version", typ: "Consent",
			doc:     `{"patient": {"reference": "Patient/p1/_history/4"}}`,
			strings: []string{TermRef("patient", "Patient/p1"), TermRefID("patient", "p1")},
		},
		{
			name: "absolute reference is kept whole", typ: "Consent",
			doc:     `{"patient": {"reference": "https://src.example/fhir/R4/Patient/p1/_history/4"}}`,
			strings: []string{TermRef("patient", "https://src.example/fhir/R4/Patient/p1/_history/4")},
		},
		{
			name: "urn reference", typ: "Consent",
			doc:     `{"patient": {"reference": "urn:uuid:3f2d9a3e-7f52-4c1b-9d0e-5c6f0a1b2c3d"}}`,
			strings: []string{TermRef("patient", "urn:uuid:3f2d9a3e-7f52-4c1b-9d0e-5c6f0a1b2c3d")},
		},
		{
			name: "contained reference", typ: "Consent",
			doc:     `{"patient": {"reference": "#p"}}`,
			strings: []string{TermRef("patient", "#p")},
		},
		{
			name: "reference and identifier together", typ: "Consent",
			doc: `{"patient": {"reference": "Patient/p1", "identifier": {"system": "` + SystemBSN + `", "value": "999900018"}}}`,
			strings: []string{
				TermRef("patient", "Patient/p1"), TermRefID("patient", "p1"),
				TermRefIdentifier("patient", "", "999900018"), TermRefIdentifier("patient", SystemBSN, "999900018"),
			},
		},
		{
			name: "identifier without a system", typ: "Consent",
			doc:     `{"patient": {"identifier": {"value": "999900018"}}}`,
			strings: []string{TermRefIdentifier("patient", "", "999900018")},
		},
		{
			name: "identifier without a value", typ: "Consent",
			doc: `{"patient": {"identifier": {"system": "` + SystemBSN + `"}}}`,
		},
		{
			name: "display only", typ: "Consent",
			doc: `{"patient": {"display": "J. Jansen"}}`,
		},
		{
			name: "AuditEvent agent typed Patient by the type element", typ: "AuditEvent",
			doc: `{"agent": [{"who": {"type": "Patient", "identifier": {"system": "` + SystemBSN + `", "value": "999900031"}}}]}`,
			strings: []string{
				TermRefIdentifier("agent", "", "999900031"), TermRefIdentifier("agent", SystemBSN, "999900031"),
				TermRefIdentifier("patient", "", "999900031"), TermRefIdentifier("patient", SystemBSN, "999900031"),
			},
		},
		{
			name: "AuditEvent entity typed Practitioner is no patient", typ: "AuditEvent",
			doc:     `{"entity": [{"what": {"type": "Practitioner", "reference": "Practitioner/x"}}]}`,
			strings: []string{TermRef("entity", "Practitioner/x"), TermRefID("entity", "x")},
		},
		{
			name: "AuditEvent Patient URL at a source", typ: "AuditEvent",
			doc: `{"entity": [{"what": {"reference": "https://src.example/fhir/R4/Patient/p9"}}]}`,
			strings: []string{
				TermRef("entity", "https://src.example/fhir/R4/Patient/p9"),
				TermRef("patient", "https://src.example/fhir/R4/Patient/p9"),
			},
		},
		{
			name: "Consent actors in nested provisions", typ: "Consent",
			doc: `{"provision": {"provision": [{"actor": [{"reference": {"reference": "Practitioner/pr1"}}]}, {"actor": [{"reference": {"reference": "Organization/o2"}}, {"reference": {"identifier": {"value": "90000043"}}}]}]}}`,
			strings: []string{
				TermRef("actor", "Practitioner/pr1"), TermRefID("actor", "pr1"),
				TermRef("actor", "Organization/o2"), TermRefID("actor", "o2"),
				TermRefIdentifier("actor", "", "90000043"),
			},
		},
		{
			name: "Consent period with start and end", typ: "Consent",
			doc:   `{"provision": {"period": {"start": "2026-01-01", "end": "2026-12-31"}}}`,
			dates: []wantDate{{"period", "2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z"}},
		},
		{
			name: "Consent period with an end only", typ: "Consent",
			doc:   `{"provision": {"period": {"end": "2026-06-30T12:00:00+02:00"}}}`,
			dates: []wantDate{{"period", "", "2026-06-30T10:00:01Z"}},
		},
		{
			name: "Consent period with neither", typ: "Consent",
			doc: `{"provision": {"period": {}}}`,
		},
		{
			name: "Consent period with a bad date is not indexed", typ: "Consent",
			doc: `{"provision": {"period": {"start": "2026-02-30"}}, "dateTime": "soon"}`,
		},
		{
			name: "dateTime with day precision", typ: "Consent",
			doc:   `{"dateTime": "2026-11-22"}`,
			dates: []wantDate{{"date", "2026-11-22T00:00:00Z", "2026-11-23T00:00:00Z"}},
		},
		{
			name: "unexpected shapes are skipped", typ: "Consent",
			doc: `{"patient": "Patient/1", "status": 5, "provision": [1, "a", null], "dateTime": 20261122, "organization": [null, true]}`,
		},
		{
			name: "an unknown type has only the common parameters", typ: "Observation",
			doc:     `{"id": "md1", "meta": {"lastUpdated": "2026-11-22T09:00:00Z"}, "status": "completed"}`,
			strings: []string{TermCode("_id", "md1"), TermNoSystem("_id", "md1")},
			dates:   []wantDate{{"_lastUpdated", "2026-11-22T09:00:00Z", "2026-11-22T09:00:01Z"}},
		},
		{
			name: "empty document", typ: "Patient",
			doc: `{}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var doc map[string]any
			dec := json.NewDecoder(strings.NewReader(tt.doc))
			dec.UseNumber()
			if err := dec.Decode(&doc); err != nil {
				t.Fatal(err)
			}
			checkTerms(t, ExtractTerms(tt.typ, doc), tt.strings, tt.dates)
		})
	}
}

func TestExtractTermsNil(t *testing.T) {
	if got := ExtractTerms("Patient", nil); len(got.Strings) != 0 || len(got.Dates) != 0 {
		t.Errorf("ExtractTerms(nil) = %+v, want none", got)
	}
}

// TestQueriesMatchTerms checks that queries and index terms agree: a query
// parsed by ParseSearch finds a fixture through the terms ExtractTerms
// gave it, the way the store adapters match (any string of a clause among
// the terms, or any date condition met by a date term of its parameter).
func TestQueriesMatchTerms(t *testing.T) {
	tests := []struct {
		fixture string
		query   []Param
		want    bool
	}{
		{"patient-index.json", []Param{{"identifier", SystemBSN + "|999911120"}}, true},
		{"patient-index.json", []Param{{"identifier", "999911120"}}, true},
		{"patient-index.json", []Param{{"identifier", SystemBSN + "|"}}, true},
		{"patient-index.json", []Param{{"identifier", "|999911120"}}, false}, // it has a system
		{"patient-index.json", []Param{{"identifier", SystemURA + "|999911120"}}, false},
		{"patient-index.json", []Param{{"identifier", SystemBSN + "|999900006," + SystemBSN + "|999911120"}}, true},
		{"patient-index.json", []Param{{"identifier", SystemBSN + "|999911120"}, {"active", "false"}}, false},
		{"patient-index.json", []Param{{"organization:identifier", SystemURA + "|90000002"}}, true},
		{"patient-index.json", []Param{{"organization.identifier", SystemURA + "|90000002"}}, true},
		{"patient-index.json", []Param{{"organization:identifier", "90000002"}}, true},
		{"patient-index.json", []Param{{"organization:identifier", SystemURA + "|90000003"}}, false},
		{"patient-index.json", []Param{{"link", "https://127.0.0.1:9102/fhir/R4/Patient/p1"}}, true},
		{"patient-index.json", []Param{{"_id", "idx-1"}}, true},
		{"patient-index.json", []Param{{"_lastUpdated", "2026-11-22"}}, true},
		{"patient-index.json", []Param{{"_lastUpdated", "gt2026-11-22T09:00:00Z"}}, false},
		{"patient-index.json", []Param{{"_lastUpdated", "ge2026-11-22T09:00:00Z"}}, true},
		{"consent.json", []Param{{"patient:identifier", SystemBSN + "|999911120"}, {"status", "active"}}, true},
		{"consent.json", []Param{{"patient.identifier", SystemBSN + "|999911120"}, {"category", SystemLOINC + "|59284-0"}}, true},
		{"consent.json", []Param{{"patient:identifier", SystemBSN + "|999900006"}}, false},
		{"consent.json", []Param{{"status", "inactive"}}, false},
		{"consent.json", []Param{{"actor:identifier", SystemURA + "|90000009"}}, true},
		{"consent.json", []Param{{"actor", "Organization/org-9"}}, true},
		{"consent.json", []Param{{"actor", "org-9"}}, true},
		{"consent.json", []Param{{"actor:Organization", "org-9"}}, true},
		{"consent.json", []Param{{"organization:identifier", SystemURA + "|90000002"}}, true},
		{"consent.json", []Param{{"period", "ge2026-11-22"}}, true},
		{"consent.json", []Param{{"period", "sa2026-11-20"}}, true},
		{"consent.json", []Param{{"period", "eb2026-11-20"}}, false},
		{"consent.json", []Param{{"date", "2026-11-22T10:00:00+01:00"}}, true},
		{"consent.json", []Param{{"date", "lt2026-11-22T09:00:00Z"}}, false},
		{"consent.json", []Param{{"scope", sysConsentScope + "|patient-privacy"}}, true},
		{"auditevent.json", []Param{{"patient:identifier", SystemBSN + "|999911120"}}, true},
		{"auditevent.json", []Param{{"patient:identifier", SystemURA + "|90000002"}}, false},
		{"auditevent.json", []Param{{"agent:identifier", SystemUZIPerson + "|11111111"}}, true},
		{"auditevent.json", []Param{{"agent-role", SystemUZIRole + "|01.015"}}, true},
		{"auditevent.json", []Param{{"entity:identifier", SystemURA + "|90000002"}}, true},
		{"auditevent.json", []Param{{"type", sysAuditType + "|rest"}, {"subtype", "search-type"}, {"action", "E"}, {"outcome", "0"}}, true},
		{"auditevent.json", []Param{{"outcome", "4,8,12"}}, false},
		{"auditevent.json", []Param{{"source", "Device/schakelpunt"}}, true},
		{"auditevent.json", []Param{{"date", "2026-11-22T09:00:00.123Z"}}, true},
		{"auditevent.json", []Param{{"date", "ge2026-11-22T10:00:00+01:00"}, {"date", "lt2026-11-22T10:00:01+01:00"}}, true},
		{"auditevent-patient-refs.json", []Param{{"patient", "p7"}}, true},
		{"auditevent-patient-refs.json", []Param{{"patient", "Patient/p8"}}, true},
		{"auditevent-patient-refs.json", []Param{{"patient:Patient", "p8"}}, true},
		{"auditevent-patient-refs.json", []Param{{"patient", "pr1"}}, false},
		{"auditevent-patient-refs.json", []Param{{"patient", "https://127.0.0.1:9102/fhir/R4/Patient/p1"}}, true},
		{"auditevent-patient-refs.json", []Param{{"patient:identifier", SystemBSN + "|999900006"}}, false},
		{"auditevent-patient-refs.json", []Param{{"entity:identifier", SystemBSN + "|999900006"}}, true},
		{"auditevent-patient-refs.json", []Param{{"entity", "Patient/p8/_history/3"}}, true},
		{"organization.json", []Param{{"identifier", SystemURA + "|90000002"}, {"active", "true"}}, true},
		{"organization.json", []Param{{"endpoint", "Endpoint/ep-2"}}, true},
		{"endpoint.json", []Param{{"organization", "org-2"}, {"status", "active"}, {"connection-type", "hl7-fhir-rest"}}, true},
		{"endpoint.json", []Param{{"identifier", "|ep-2-fhir"}}, true},
	}
	for _, tt := range tests {
		var q []string
		for _, p := range tt.query {
			q = append(q, p.Name+"="+p.Value)
		}
		t.Run(tt.fixture+"?"+strings.Join(q, "&"), func(t *testing.T) {
			res := MustParse(t, tt.fixture)
			terms := ExtractTerms(res.Type, res.Doc)
			s, err := ParseSearch(res.Type, tt.query, false)
			if err != nil {
				t.Fatal(err)
			}
			if got := matches(s.Clauses, terms); got != tt.want {
				t.Errorf("match = %v, want %v\nclauses %+v\nterms %q", got, tt.want, s.Clauses, terms.Strings)
			}
		})
	}
}

// matches is the adapters' matching rule, restated for the tests.
func matches(clauses []Clause, terms Terms) bool {
	for _, c := range clauses {
		ok := false
		for _, s := range c.Strings {
			if slices.Contains(terms.Strings, s) {
				ok = true
			}
		}
		for _, d := range terms.Dates {
			if d.Param != c.Param {
				continue
			}
			for _, cond := range c.Dates {
				if cond.Match(d.DateRange) {
					ok = true
				}
			}
		}
		if !ok {
			return false
		}
	}
	return true
}
