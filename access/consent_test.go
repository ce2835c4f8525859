package access_test

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/schakelpunt/schakelpunt/access"
	"github.com/schakelpunt/schakelpunt/fhir"
)

// Organisations of the consent tests and the golden table.
const (
	orgA  = "90000002" // the source of most rows: a pharmacy
	orgB  = "90000003" // another pharmacy
	orgGP = "90000001" // a GP practice
	recR  = "90000111" // the requester's organisation
	recR2 = "90000222" // another recipient
)

var orgNames = map[string]string{orgA: "A", orgB: "B", orgGP: "GP", recR: "R", recR2: "R2"}

// fixtureBSN is the patient of the fixtures; no reason may carry it.
const fixtureBSN = "999911120"

// consentNow is the moment of the queries: 2027-01-15 12:00 in Amsterdam.
var consentNow = time.Date(2027, 1, 15, 11, 0, 0, 0, time.UTC)

func consentUpdating() bool {
	f := flag.Lookup("update")
	return f != nil && f.Value.String() == "true"
}

func consentRequester(ura string) access.Principal {
	return access.Principal{OID: access.UZIPolicyOID, Version: "1", UZINumber: "11111111",
		CardType: access.CardProfessional, URA: ura, Role: "01.015", AGB: "00000000"}
}

func request(category, source, recipient string) access.ConsentRequest {
	return access.ConsentRequest{Requester: consentRequester(recipient), Category: category, Source: source, At: consentNow}
}

func day(s string) time.Time {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		panic(err)
	}
	return t
}

func loinc(codes ...string) []access.Coding {
	var out []access.Coding
	for _, c := range codes {
		out = append(out, access.Coding{System: fhir.SystemLOINC, Code: c})
	}
	return out
}

const (
	med = fhir.CategoryMedication
	gps = fhir.CategoryGPSummary
)

func loadConsent(t testing.TB, name string) access.Consent {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "consent", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := access.ParseConsent(b)
	if err != nil {
		t.Fatalf("ParseConsent(%s): %v", name, err)
	}
	return c
}

func TestParseConsent(t *testing.T) {
	tests := []struct {
		file string
		want access.Consent
	}{
		{"permit-medication", access.Consent{ID: "permit-medication", Status: access.ConsentActive,
			DateTime: time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC), Organizations: []string{orgA},
			Provision: access.Provision{Type: access.ProvisionPermit,
				Period: access.Period{Start: time.Date(2026, 11, 21, 23, 0, 0, 0, time.UTC)},
				Codes:  loinc(med), Custodians: []string{orgA}}}},
		{"permit-all-deny-recipient", access.Consent{ID: "permit-all-deny-recipient", Status: access.ConsentActive,
			DateTime: day("2026-11-22"), Organizations: []string{orgGP},
			Provision: access.Provision{Type: access.ProvisionPermit,
				Period:     access.Period{Start: day("2026-11-22"), End: day("2027-11-23")}, // the end day is included
				Provisions: []access.Provision{{Type: access.ProvisionDeny, Recipients: []string{recR}}}}}},
		{"deny-gp-summary", access.Consent{ID: "deny-gp-summary", Status: access.ConsentActive,
			DateTime: time.Date(2026, 12, 10, 13, 30, 0, 0, time.UTC), Organizations: []string{orgGP},
			Provision: access.Provision{Type: access.ProvisionDeny, Period: access.Period{Start: day("2026-12-10")}, Codes: loinc(gps)}}},
		{"permit-all-deny-unknown-code", access.Consent{ID: "permit-all-deny-unknown-code", Status: access.ConsentActive,
			DateTime: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC), Organizations: []string{orgB},
			Provision: access.Provision{Type: access.ProvisionPermit, Period: access.Period{Start: day("2026-11-25")},
				Provisions: []access.Provision{{Type: access.ProvisionDeny,
					Codes: []access.Coding{{System: "http://snomed.info/sct", Code: "371530004"}}}}}}},
		{"nested-deny-ended", access.Consent{ID: "nested-deny-ended", Status: access.ConsentActive,
			DateTime: time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC), Organizations: []string{orgA},
			Provision: access.Provision{Type: access.ProvisionPermit, Period: access.Period{Start: day("2026-11-22")},
				Codes: loinc(med), Custodians: []string{orgA},
				Provisions: []access.Provision{{Type: access.ProvisionDeny,
					Period: access.Period{Start: day("2026-12-01"), End: day("2027-01-01")}, Recipients: []string{recR}}}}}},
		{"two-organisations-permit", access.Consent{ID: "two-organisations-permit", Status: access.ConsentActive,
			DateTime: time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC), Organizations: []string{orgGP, orgA},
			Provision: access.Provision{Type: access.ProvisionPermit, Codes: loinc(med, gps)}}},
		{"withdraw-medication", access.Consent{ID: "withdraw-medication", Status: access.ConsentInactive,
			DateTime: time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC), Organizations: []string{orgA},
			Provision: access.Provision{Type: access.ProvisionPermit,
				Period: access.Period{Start: time.Date(2026, 11, 21, 23, 0, 0, 0, time.UTC)},
				Codes:  loinc(med), Custodians: []string{orgA}}}},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			got := loadConsent(t, tc.file)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ParseConsent =\n%+v\nwant\n%+v", got, tc.want)
			}
			if s := fmt.Sprintf("%#v", got); strings.Contains(s, fixtureBSN) {
				t.Errorf("the parsed consent holds the BSN: %s", s)
			}
		})
	}
	// Every fixture parses.
	files, err := filepath.Glob(filepath.Join("testdata", "consent", "*.json"))
	if err != nil || len(files) < 10 {
		t.Fatalf("fixtures: %v, %d files", err, len(files))
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".json")
		t.Run("fixture/"+name, func(t *testing.T) {
			if c := loadConsent(t, name); c.ID != name {
				t.Errorf("id = %q, want the file name", c.ID)
			}
		})
	}
}

// validConsentJSON is the shape of DESIGN.md section 9 with a nested deny,
// as a map that the error cases below break one element at a time.
func validConsentJSON() map[string]any {
	ura := func(v string) map[string]any {
		return map[string]any{"identifier": map[string]any{"system": fhir.SystemURA, "value": v}}
	}
	actor := func(role, v string) map[string]any {
		return map[string]any{"role": map[string]any{"coding": []any{map[string]any{
			"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": role}}},
			"reference": ura(v)}
	}
	return map[string]any{
		"resourceType": "Consent", "id": "c1", "status": "active",
		"patient":      map[string]any{"identifier": map[string]any{"system": fhir.SystemBSN, "value": fixtureBSN}},
		"dateTime":     "2026-11-22T10:00:00+01:00",
		"organization": []any{ura(orgA)},
		"provision": map[string]any{"type": "permit", "period": map[string]any{"start": "2026-11-22"},
			"actor":     []any{actor("CST", orgA)},
			"code":      []any{map[string]any{"coding": []any{map[string]any{"system": fhir.SystemLOINC, "code": med}}}},
			"provision": []any{map[string]any{"type": "deny", "actor": []any{actor("IRCP", recR)}}},
		},
	}
}

// at walks m along path (map keys, or "0" for the first element of a
// list) and returns the map there.
func at(m map[string]any, path ...string) map[string]any {
	var cur any = m
	for _, p := range path {
		if p == "0" {
			cur = cur.([]any)[0]
		} else {
			cur = cur.(map[string]any)[p]
		}
	}
	return cur.(map[string]any)
}

func TestParseConsentRefuses(t *testing.T) {
	tests := []struct {
		name   string
		body   func() []byte
		expr   string
		useRaw bool
	}{
		{"not json", func() []byte { return []byte("{") }, "Consent", false},
		{"array", func() []byte { return []byte("[]") }, "Consent", false},
		{"patient", func() []byte { return []byte(`{"resourceType":"Patient"}`) }, "Consent.resourceType", false},
		{"status number", func() []byte { return []byte(`{"resourceType":"Consent","status":1}`) }, "Consent.status", false},
	}
	mutations := []struct {
		name   string
		mutate func(m map[string]any)
		expr   string
	}{
		{"status unknown", func(m map[string]any) { m["status"] = fixtureBSN }, "Consent.status"},
		{"status missing", func(m map[string]any) { delete(m, "status") }, "Consent.status"},
		{"dateTime missing", func(m map[string]any) { delete(m, "dateTime") }, "Consent.dateTime"},
		{"dateTime malformed", func(m map[string]any) { m["dateTime"] = "22-11-2026" }, "Consent.dateTime"},
		{"organization missing", func(m map[string]any) { delete(m, "organization") }, "Consent.organization"},
		{"organization by reference", func(m map[string]any) {
			m["organization"] = []any{map[string]any{"reference": "Organization/x"}}
		}, "Consent.organization[0].identifier"},
		{"organization not URA", func(m map[string]any) {
			at(m, "organization", "0", "identifier")["system"] = fhir.SystemAGB
		}, "Consent.organization[0].identifier.system"},
		{"organization BSN as URA", func(m map[string]any) {
			at(m, "organization", "0", "identifier")["value"] = fixtureBSN
		}, "Consent.organization[0].identifier.value"},
		{"provision missing", func(m map[string]any) { delete(m, "provision") }, "Consent.provision"},
		{"provision type missing", func(m map[string]any) { delete(at(m, "provision"), "type") }, "Consent.provision.type"},
		{"provision type unknown", func(m map[string]any) { at(m, "provision")["type"] = "maybe" }, "Consent.provision.type"},
		{"period start malformed", func(m map[string]any) { at(m, "provision", "period")["start"] = "soon" }, "Consent.provision.period.start"},
		{"period end malformed", func(m map[string]any) { at(m, "provision", "period")["end"] = "2027-13" }, "Consent.provision.period.end"},
		{"period end before start", func(m map[string]any) { at(m, "provision", "period")["end"] = "2026-11-21" }, "Consent.provision.period"},
		{"actor role unknown", func(m map[string]any) {
			at(m, "provision", "actor", "0", "role", "coding", "0")["code"] = "PRCP"
		}, "Consent.provision.actor[0].role"},
		{"actor role other system", func(m map[string]any) {
			at(m, "provision", "actor", "0", "role", "coding", "0")["system"] = "http://example.org"
		}, "Consent.provision.actor[0].role"},
		{"actor by reference", func(m map[string]any) {
			at(m, "provision", "actor", "0")["reference"] = map[string]any{"reference": "Organization/x"}
		}, "Consent.provision.actor[0].reference.identifier"},
		{"nested type unknown", func(m map[string]any) {
			at(m, "provision", "provision", "0")["type"] = "perhaps"
		}, "Consent.provision.provision[0].type"},
		{"nested actor not URA", func(m map[string]any) {
			at(m, "provision", "provision", "0", "actor", "0", "reference", "identifier")["value"] = fixtureBSN
		}, "Consent.provision.provision[0].actor[0].reference.identifier.value"},
		{"nested too deep", func(m map[string]any) {
			p := at(m, "provision")
			for range 9 {
				n := map[string]any{"type": "deny"}
				p["provision"] = []any{n}
				p = n
			}
		}, "Consent.provision.provision[0].provision[0].provision[0].provision[0].provision[0].provision[0].provision[0].provision[0]"},
	}
	for _, mu := range mutations {
		tests = append(tests, struct {
			name   string
			body   func() []byte
			expr   string
			useRaw bool
		}{mu.name, func() []byte {
			m := validConsentJSON()
			mu.mutate(m)
			b, err := json.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}, mu.expr, true})
	}
	if _, err := access.ParseConsent(mustJSON(t, validConsentJSON())); err != nil {
		t.Fatalf("the unbroken consent: %v", err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := access.ParseConsent(tc.body())
			if !errors.Is(err, access.ErrInvalidConsent) {
				t.Fatalf("ParseConsent = %+v, %v; want ErrInvalidConsent", c, err)
			}
			fe := fhir.AsError(err)
			if fe.Kind != fhir.KindUnprocessable || len(fe.Issues) != 1 {
				t.Fatalf("error %+v: want one unprocessable issue", fe)
			}
			is := fe.Issues[0]
			if len(is.Expression) != 1 || is.Expression[0] != tc.expr {
				t.Errorf("expression = %q, want %q", is.Expression, tc.expr)
			}
			if longDigits.MatchString(err.Error()) || strings.Contains(err.Error(), orgA) {
				t.Errorf("error repeats an identifier: %v", err)
			}
		})
	}
}

// longDigits is nine digits in a row: what a BSN looks like.
var longDigits = regexp.MustCompile(`[0-9]{9,}`)

// Reasons never carry a BSN, nor a URA.
var identifierLike = regexp.MustCompile(`[0-9]{8,}`)

func TestDecideConsentRequest(t *testing.T) {
	permit := []access.Consent{{ID: "c1", Status: access.ConsentActive, Organizations: []string{orgA},
		Provision: access.Provision{Type: access.ProvisionPermit}}}
	tests := []struct {
		name string
		req  access.ConsentRequest
	}{
		{"no category", access.ConsentRequest{Requester: consentRequester(recR), Source: orgA, At: consentNow}},
		{"no source", access.ConsentRequest{Requester: consentRequester(recR), Category: med, At: consentNow}},
		{"no recipient", access.ConsentRequest{Category: med, Source: orgA, At: consentNow}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := access.DecideConsent(permit, tc.req)
			if d.Permit || len(d.Reasons) != 1 || d.Scope != access.ScopeNone {
				t.Fatalf("DecideConsent = %+v, want a denial with one reason", d)
			}
		})
	}
	t.Run("no consents", func(t *testing.T) {
		for _, cs := range [][]access.Consent{nil, {}} {
			d := access.DecideConsent(cs, request(med, orgA, recR))
			if d.Permit || len(d.Reasons) != 1 || !strings.Contains(d.Reasons[0], "opt-in") {
				t.Fatalf("DecideConsent = %+v", d)
			}
		}
	})
	t.Run("permit scope", func(t *testing.T) {
		d := access.DecideConsent(permit, request(med, orgA, recR))
		if !d.Permit || d.Scope != access.ScopeAll || d.Err() != nil {
			t.Fatalf("DecideConsent = %+v", d)
		}
		pol := access.DefaultPolicy()
		both := pol.Decide(consentRequester(recR), access.QueryMedication).And(d)
		if !both.Permit || len(both.Reasons) != 2 {
			t.Errorf("policy and consent = %+v", both)
		}
	})
}

// TestConsentReasonsHideIdentifiers: a consent id that holds a BSN is
// named by position; no reason carries a URA or a BSN.
func TestConsentReasonsHideIdentifiers(t *testing.T) {
	cs := []access.Consent{
		{ID: "bsn-" + fixtureBSN, Status: access.ConsentInactive, DateTime: day("2026-12-01"), Organizations: []string{orgA},
			Provision: access.Provision{Type: access.ProvisionPermit}},
		{ID: fixtureBSN, Status: access.ConsentActive, DateTime: day("2026-11-01"), Organizations: []string{orgA},
			Provision: access.Provision{Type: access.ProvisionPermit}},
		{ID: "ok", Status: access.ConsentActive, DateTime: day("2026-11-01"), Organizations: []string{orgB},
			Provision: access.Provision{Type: access.ProvisionPermit, Custodians: []string{orgB}}},
	}
	for _, req := range []access.ConsentRequest{request(med, orgA, recR), request(fixtureBSN, orgA, recR)} {
		d := access.DecideConsent(cs, req)
		if d.Permit {
			t.Fatalf("permit: %v", d.Reasons)
		}
		text := strings.Join(d.Reasons, "; ")
		if identifierLike.MatchString(text) {
			t.Errorf("reasons carry an identifier: %s", text)
		}
		for _, want := range []string{"consent #1", "consent #2", "Consent/ok"} {
			if !strings.Contains(text, want) {
				t.Errorf("reasons %q do not name %s", text, want)
			}
		}
	}
}

func TestDecideConsentCapsReasons(t *testing.T) {
	var cs []access.Consent
	for i := range 30 {
		cs = append(cs, access.Consent{ID: fmt.Sprintf("c%02d", i), Status: access.ConsentActive, DateTime: day("2026-11-01"),
			Organizations: []string{fmt.Sprintf("9%07d", i)},
			Provision:     access.Provision{Type: access.ProvisionPermit, Custodians: []string{orgB}}})
	}
	d := access.DecideConsent(cs, request(med, orgA, recR))
	if d.Permit || len(d.Reasons) != 10 || !strings.Contains(d.Reasons[9], "and 22 more") {
		t.Fatalf("reasons = %q", d.Reasons)
	}
	for i := range cs {
		cs[i].Provision = access.Provision{Type: access.ProvisionDeny}
	}
	d = access.DecideConsent(cs, request(med, orgA, recR))
	if d.Permit || len(d.Reasons) != 9 || !strings.Contains(d.Reasons[8], "and 22 more") {
		t.Fatalf("reasons = %q", d.Reasons)
	}
}

// fixtureCase is a decision over fixture files: the cases of
// TestDecideConsentFixtures, also rendered in the golden table.
type fixtureCase struct {
	name     string
	files    []string
	category string
	source   string
	to       string
	permit   bool
	reason   string // a text one of the reasons contains
}

var fixtureCases = []fixtureCase{
	{"DESIGN.md example permits medication", []string{"permit-medication"}, med, orgA, recR, true, "Consent/permit-medication permits medication"},
	{"DESIGN.md example: not the GP summary", []string{"permit-medication"}, gps, orgA, recR, false, "no consent in force permits the GP summary"},
	{"DESIGN.md example: only its custodian", []string{"permit-medication"}, med, orgB, recR, false, "no consent in force"},
	{"permit then withdraw (same organisation)", []string{"permit-medication", "withdraw-medication"}, med, orgA, recR, false, "no consent in force"},
	{"withdraw then permit again (same organisation)", []string{"withdraw-medication", "repermit-medication"}, med, orgA, recR, true, "Consent/repermit-medication permits"},
	{"permit, withdraw, permit again", []string{"repermit-medication", "permit-medication", "withdraw-medication"}, med, orgA, recR, true, "Consent/repermit-medication permits"},
	{"permit then rejected (same organisation)", []string{"permit-medication", "rejected-medication"}, med, orgA, recR, false, "no consent in force"},
	{"a later draft replaces nothing", []string{"permit-medication", "draft-medication"}, med, orgA, recR, true, "Consent/permit-medication permits"},
	{"nested IRCP deny excludes the recipient", []string{"permit-all-deny-recipient"}, gps, orgGP, recR, false, "excludes all data to this recipient"},
	{"nested IRCP deny: other recipients still receive", []string{"permit-all-deny-recipient"}, gps, orgGP, recR2, true, "permits the GP summary"},
	{"IRCP deny of one organisation excludes the recipient from another's data", []string{"permit-all-deny-recipient", "permit-medication"}, med, orgA, recR, false, "Consent/permit-all-deny-recipient excludes"},
	{"a later deny consent of the same organisation replaces its permit", []string{"permit-all-deny-recipient", "deny-gp-summary"}, med, orgGP, recR2, false, "Consent/deny-gp-summary is a deny consent"},
	{"a deny consent excludes its category", []string{"permit-all-deny-recipient", "deny-gp-summary"}, gps, orgGP, recR2, false, "Consent/deny-gp-summary excludes the GP summary"},
	{"nested category deny of another organisation wins", []string{"permit-medication", "permit-all-deny-medication"}, med, orgA, recR, false, "excludes medication (LOINC 10160-0) (a nested deny provision)"},
	{"nested category deny leaves other categories", []string{"permit-all-deny-medication"}, gps, orgGP, recR, true, "permits the GP summary"},
	{"a deny in a code that is not LOINC excludes every category", []string{"permit-all-deny-unknown-code"}, gps, orgGP, recR, false, "a category in a code other than LOINC"},
	{"nested source deny", []string{"permit-deny-source"}, med, orgA, recR, false, "excludes all data from this source"},
	{"nested source deny leaves other sources", []string{"permit-deny-source"}, med, orgB, recR, true, "permits medication"},
	{"an ended period permits nothing", []string{"expired"}, med, orgA, recR, false, "its period has ended"},
	{"a period not yet started permits nothing", []string{"not-started"}, med, orgA, recR, false, "its period has not started"},
	{"a nested deny whose period ended no longer excludes", []string{"nested-deny-ended"}, med, orgA, recR, true, "permits medication"},
	{"a consent of two organisations", []string{"two-organisations-permit"}, gps, orgGP, recR, true, "permits the GP summary"},
	{"a consent of two organisations, withdrawn by one of them", []string{"two-organisations-permit", "withdraw-medication"}, gps, orgGP, recR, false, "is replaced by Consent/withdraw-medication"},
	{"two organisations: the other's expired consent does not matter", []string{"expired", "permit-medication"}, med, orgA, recR, true, "Consent/permit-medication permits"},
}

func decideFixtures(t testing.TB, fc fixtureCase) access.Decision {
	var cs []access.Consent
	for _, f := range fc.files {
		cs = append(cs, loadConsent(t, f))
	}
	return access.DecideConsent(cs, request(fc.category, fc.source, fc.to))
}

func TestDecideConsentFixtures(t *testing.T) {
	for _, fc := range fixtureCases {
		t.Run(fc.name, func(t *testing.T) {
			d := decideFixtures(t, fc)
			if d.Permit != fc.permit {
				t.Fatalf("permit = %v, want %v: %q", d.Permit, fc.permit, d.Reasons)
			}
			if !strings.Contains(strings.Join(d.Reasons, "; "), fc.reason) {
				t.Errorf("reasons = %q, want one to contain %q", d.Reasons, fc.reason)
			}
			if identifierLike.MatchString(strings.Join(d.Reasons, " ")) {
				t.Errorf("reasons carry an identifier: %q", d.Reasons)
			}
		})
	}
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
