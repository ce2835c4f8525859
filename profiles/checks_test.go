package profiles

import (
	"slices"
	"testing"

	"github.com/schakelpunt/schakelpunt/fhir"
)

func TestInvariants(t *testing.T) {
	for _, tt := range []struct {
		name     string
		resource string
		errors   []string
		warnings []string
	}{
		{"valid BSN and URA", `{"resourceType": "Patient",
			"identifier": [{"system": "http://fhir.nl/fhir/NamingSystem/bsn", "value": "999900055"}],
			"managingOrganization": {"identifier": {"system": "http://fhir.nl/fhir/NamingSystem/ura", "value": "90000002"}}}`, nil, nil},
		{"BSN fails the eleven-check", `{"resourceType": "Patient",
			"identifier": [{"system": "http://fhir.nl/fhir/NamingSystem/uzi-nr-pers", "value": "1"},
			               {"system": "http://fhir.nl/fhir/NamingSystem/bsn", "value": "999911121"}]}`,
			[]string{"invariant Patient.identifier[1].value"}, nil},
		{"BSN all zero", `{"resourceType": "Patient", "identifier": [{"system": "http://fhir.nl/fhir/NamingSystem/bsn", "value": "000000000"}]}`,
			[]string{"invariant Patient.identifier[0].value"}, nil},
		{"URA of nine digits, in a contained resource", `{"resourceType": "Patient",
			"contained": [{"resourceType": "Organization", "identifier": [{"system": "http://fhir.nl/fhir/NamingSystem/ura", "value": "900000021"}]}]}`,
			[]string{"invariant Patient.contained[0].identifier[0].value"}, nil},
		{"period start after end", `{"resourceType": "Encounter", "period": {"start": "2026-11-22T10:00:00+01:00", "end": "2026-11-22T09:00:00+01:00"}}`,
			[]string{"invariant Encounter.period.start"}, nil},
		{"period end earlier day", `{"resourceType": "Consent", "policyRule": {}, "provision": {"period": {"start": "2026-11-22", "end": "2026-11-21"}}}`,
			[]string{"invariant Consent.provision.period.start"}, nil},
		{"period same day, different precision", `{"resourceType": "Encounter", "period": {"start": "2026-11-22", "end": "2026-11-22T09:00:00Z"}}`, nil, nil},
		{"period equal", `{"resourceType": "Encounter", "period": {"start": "2026", "end": "2026"}}`, nil, nil},
		{"open period", `{"resourceType": "Encounter", "period": {"start": "2026-11-22"}}`, nil, nil},
		{"effectivePeriod in an array", `{"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Observation",
			"effectivePeriod": {"start": "2027", "end": "2026"}}}]}`,
			[]string{"invariant Bundle.entry[0].resource.effectivePeriod.start"}, nil},
		{"repeating periods", `{"resourceType": "X", "usePeriod": [{"start": "2026"}, {"start": "2027", "end": "2026"}]}`,
			[]string{"invariant X.usePeriod[1].start"}, nil},
		{"consent without policy", `{"resourceType": "Consent"}`, nil, []string{"invariant Consent"}},
		{"consent with policy", `{"resourceType": "Consent", "policy": [{"uri": "urn:x"}]}`, nil, nil},
		{"consent with null policy", `{"resourceType": "Consent", "policy": null}`, nil, []string{"invariant Consent"}},
		// What a decoder sees: the last value of a repeated key, unescaped
		// strings, U+FFFD for invalid UTF-8.
		{"repeated key, the bad value first", `{"resourceType": "Patient",
			"identifier": [{"system": "http://fhir.nl/fhir/NamingSystem/bsn", "value": "999911121"}],
			"identifier": [{"system": "http://fhir.nl/fhir/NamingSystem/bsn", "value": "999900055"}]}`, nil, nil},
		{"repeated key, the bad value last", `{"resourceType": "Patient",
			"identifier": [{"system": "http://fhir.nl/fhir/NamingSystem/bsn", "value": "999900055"}],
			"identifier": [{"system": "http://fhir.nl/fhir/NamingSystem/bsn", "value": "999911121"}]}`,
			[]string{"invariant Patient.identifier[0].value"}, nil},
		{"repeated value", `{"resourceType": "Patient", "identifier": [{"system": "http://fhir.nl/fhir/NamingSystem/bsn", "value": "1", "value": "999900055"}]}`, nil, nil},
		{"repeated end", `{"resourceType": "Encounter", "period": {"start": "2026", "end": "2025", "end": "2027"}}`, nil, nil},
		{"escapes", `{"resourceType": "Patient", "identifier": [{"\u0073ystem": "http:\/\/fhir.nl\/fhir\/NamingSystem\/bsn", "valu\u0065": "99991112\u0031"}]}`,
			[]string{"invariant Patient.identifier[0].value"}, nil},
		{"escaped period key", `{"resourceType": "Encounter", "p\u0065riod": {"start": "2027", "end": "2026"}}`,
			[]string{"invariant Encounter.period.start"}, nil},
		{"nested arrays", `{"resourceType": "X", "x": [1, [{"period": {"start": "2027", "end": "2026"}}]]}`,
			[]string{"invariant X.x[1][0].period.start"}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			doc := decodeAny(t, tt.resource).(map[string]any)
			issues := invariants([]byte(tt.resource), doc["resourceType"].(string))
			if got := summarise(issues, "error"); !slices.Equal(got, tt.errors) {
				t.Errorf("errors %q, want %q", got, tt.errors)
			}
			if got := summarise(issues, "warning"); !slices.Equal(got, tt.warnings) {
				t.Errorf("warnings %q, want %q", got, tt.warnings)
			}
		})
	}
}

// TestInvariantsSurviveBadJSON: invariants reads valid JSON, but on
// anything else it must neither panic nor hang.
func TestInvariantsSurviveBadJSON(t *testing.T) {
	body := mustRead(t, "summary-invalid.json")
	for _, tt := range []struct {
		name   string
		bodies [][]byte
	}{
		{"prefixes", func() (out [][]byte) {
			for i := range body {
				out = append(out, body[:i])
			}
			return out
		}()},
		{"odd", [][]byte{nil, []byte("{"), []byte(`{"a"`), []byte(`{"a":`), []byte(`{"a":}`), []byte(`{1:2}`), []byte(`{"a":[,,]}`),
			[]byte(`{"period":{"start"}}`), []byte(`{"period":[{"start":"2027","end":`), []byte(`{"a":"\`), []byte(`{"a":"\"}`), []byte(`]]]`)}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for _, b := range tt.bodies {
				invariants(b, "Bundle")
			}
		})
	}
}

// FuzzInvariants compares invariants over bytes with the reference walk
// over the decoded document (reference_test.go).
func FuzzInvariants(f *testing.F) {
	for _, name := range []string{"md-valid.json", "patient-invalid-demographics.json", "consent-invalid.json", "summary-invalid.json"} {
		f.Add(mustRead(f, name))
	}
	f.Add([]byte(`{"resourceType":"X","a":{"period":{"start":"2027","end":"2026"},"period":1},"b":[{"system":"http://fhir.nl/fhir/NamingSystem/ura","value":"1"}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		doc, raw := decodeResource(body)
		if doc == nil {
			invariants(body, "X")
			return
		}
		rt := doc["resourceType"].(string)
		got, want := tidy(invariants(raw, rt)), tidy(referenceInvariants(doc, rt))
		if !sameIssues(got, want) {
			t.Errorf("got  %s\nwant %s", render(got), render(want))
		}
	})
}

// FuzzTreeInvariants compares the invariants over the base validator's
// decoded tree (for resources that pass base validation) with those over
// the JSON, and the meta.profile read there with metaProfiles', seeded
// with the variants of the differential test that pass.
func FuzzTreeInvariants(f *testing.F) {
	c, err := fhir.NewCodec()
	if err != nil {
		f.Fatal(err)
	}
	for _, in := range profilesTestdata(f) {
		for _, vr := range variants(f, in) {
			if _, err := c.Validate(vr.body, ""); err == nil {
				f.Add(vr.body)
			}
		}
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		w := getTreeChecker()
		defer w.release()
		if _, err := c.ValidateSome(body, "", keepNone, w.visit); err != nil || !w.visited {
			return
		}
		if got, want := tidy(w.issues), tidy(invariants(body, w.root)); !sameIssues(got, want) {
			t.Errorf("got  %s\nwant %s", render(got), render(want))
		}
		doc, _ := decodeResource(body)
		if want := metaProfiles(doc); !slices.Equal(w.profiles, want) {
			t.Errorf("meta.profile %q, want %q", w.profiles, want)
		}
	})
}
