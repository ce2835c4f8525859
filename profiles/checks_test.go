package profiles

import (
	"slices"
	"testing"
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
	} {
		t.Run(tt.name, func(t *testing.T) {
			doc := decodeAny(t, tt.resource).(map[string]any)
			issues := invariants(doc, doc["resourceType"].(string))
			if got := summarise(issues, "error"); !slices.Equal(got, tt.errors) {
				t.Errorf("errors %q, want %q", got, tt.errors)
			}
			if got := summarise(issues, "warning"); !slices.Equal(got, tt.warnings) {
				t.Errorf("warnings %q, want %q", got, tt.warnings)
			}
		})
	}
}
