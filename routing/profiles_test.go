package routing

import (
	"bytes"
	"strings"
	"testing"
)

func TestStructureDefinitions(t *testing.T) {
	h := mustServe(t)
	all := do(t, h.as("gp"), "GET", "/StructureDefinition", nil)
	if all.status != 200 || len(all.entries()) < 5 {
		t.Fatalf("%d, %d definitions", all.status, len(all.entries()))
	}
	cases := []struct {
		path   string
		status int
		count  int
	}{
		{"/StructureDefinition?url=http://schakelpunt.nl/fhir/StructureDefinition/sp-index-patient", 200, 1},
		{"/StructureDefinition?type=Consent", 200, 1},
		{"/StructureDefinition?_id=sp-consent", 200, 1},
		{"/StructureDefinition?type=Observation", 200, 0},
		{"/StructureDefinition?nonsense=1", 400, 0},
	}
	for _, c := range cases {
		t.Run(c.path, func(t *testing.T) {
			r := do(t, h.as("no-uzi"), "GET", c.path, nil)
			if r.status != c.status {
				t.Fatalf("%d %s", r.status, r.raw)
			}
			if c.status == 200 && len(r.entries()) != c.count {
				t.Errorf("%d entries, want %d", len(r.entries()), c.count)
			}
		})
	}
	read := do(t, h, "GET", "/StructureDefinition/sp-index-patient", nil)
	if read.status != 200 || read.body["url"] != "http://schakelpunt.nl/fhir/StructureDefinition/sp-index-patient" {
		t.Errorf("read: %d %v", read.status, read.body["url"])
	}
	if r := do(t, h, "GET", "/StructureDefinition/nope", nil); r.status != 404 {
		t.Errorf("unknown definition: %d", r.status)
	}
	meta := do(t, h, "GET", "/metadata", nil)
	if !strings.Contains(string(meta.raw), `"supportedProfile":["http://schakelpunt.nl/fhir/StructureDefinition/sp-index-patient|`) {
		t.Errorf("CapabilityStatement does not name the index profile: %s", meta.raw)
	}
}

func TestValidateOperation(t *testing.T) {
	h := mustServe(t)
	named := func(b []byte) []byte {
		return bytes.Replace(b, []byte(`"identifier"`), []byte(`"name":[{"family":"Jansen"}],"identifier"`), 1)
	}
	cases := []struct {
		name, path string
		body       []byte
		query      string
		status     int
		severity   string
		code       string
		expression string
	}{
		{"valid index entry", "/Patient/$validate", fixture(t, "patient.json"), "", 200, "information", "informational", ""},
		{"a name is not allowed in the index", "/Patient/$validate", named(fixture(t, "patient.json")), "", 200, "error", "", "Patient.name"},
		{"base only without profile", "/Organization/$validate", []byte(`{"resourceType":"Organization","name":"Apotheek"}`), "", 200, "information", "informational", ""},
		{"explicit profile", "/Patient/$validate", []byte(`{"resourceType":"Patient","name":[{"family":"Jansen"}]}`), "?profile=http://schakelpunt.nl/fhir/StructureDefinition/sp-index-patient", 200, "error", "", "Patient.name"},
		{"unknown profile", "/Patient/$validate", fixture(t, "patient.json"), "?profile=http://example.org/nope", 200, "error", "not-supported", ""},
		{"wrong type", "/Consent/$validate", fixture(t, "patient.json"), "", 200, "error", "invalid", "resourceType"},
		{"Parameters wrapper", "/Patient/$validate", []byte(`{"resourceType":"Parameters","parameter":[{"name":"resource","resource":` + string(fixture(t, "patient.json")) + `}]}`), "", 200, "information", "informational", ""},
		{"instance id mismatch", "/Patient/abc/$validate", fixture(t, "patient.json"), "", 200, "error", "invalid", "Patient.id"},
		{"not a resource", "/Patient/$validate", []byte(`{"hello":1}`), "", 400, "error", "structure", ""},
		{"bad BSN", "/Patient/$validate", bytes.Replace(fixture(t, "patient.json"), []byte("999911120"), []byte("999911121"), 1), "", 200, "error", "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := do(t, h.as("gp"), "POST", c.path+c.query, c.body)
			if r.status != c.status {
				t.Fatalf("%d %s", r.status, r.raw)
			}
			if !strings.Contains(string(r.raw), `"severity":"`+c.severity+`"`) {
				t.Errorf("no %s issue: %s", c.severity, r.raw)
			}
			if c.code != "" && !contains(r.issueCodes(), c.code) {
				t.Errorf("codes %v, want %s", r.issueCodes(), c.code)
			}
			if c.expression != "" && !contains(r.expressions(), c.expression) {
				t.Errorf("expressions %v, want %s", r.expressions(), c.expression)
			}
		})
	}
	t.Run("writes are held to the profile", func(t *testing.T) {
		r := do(t, h, "POST", "/Patient", named(fixture(t, "patient.json")))
		if r.status != 422 || !contains(r.expressions(), "Patient.name") {
			t.Fatalf("%d %s", r.status, r.raw)
		}
		if strings.Contains(string(r.raw), "Jansen") {
			t.Errorf("the refusal repeats the name: %s", r.raw)
		}
		if n := do(t, h.as("supervisor"), "GET", "/Patient?_summary=count", nil); n.body["total"] != 0.0 {
			t.Errorf("a refused registration was stored: %v", n.body["total"])
		}
		unknown := bytes.Replace(fixture(t, "patient.json"), []byte(`"identifier"`), []byte(`"meta":{"profile":["http://example.org/other"]},"identifier"`), 1)
		if r := do(t, h, "POST", "/Patient", unknown); r.status != 422 || !contains(r.issueCodes(), "not-supported") {
			t.Errorf("unknown meta.profile: %d %s", r.status, r.raw)
		}
	})
}
