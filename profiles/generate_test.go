package profiles

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v5"
)

func TestFHIRPath(t *testing.T) {
	for _, tt := range []struct{ ptr, want string }{
		{"", "Patient"},
		{"/name", "Patient.name"},
		{"/name/0/given", "Patient.name[0].given"},
		{"/name/0/given/1", "Patient.name[0].given[1]"},
		{"/_birthDate/extension/0", "Patient.birthDate.extension[0]"},
		{"/contained/0/code", "Patient.contained[0].code"},
		{"/a~1b/c~0d", "Patient.a/b.c~d"},
		{"/a%20b", "Patient.a b"},
	} {
		t.Run(tt.ptr, func(t *testing.T) {
			if got := fhirPath("Patient", tt.ptr); got != tt.want {
				t.Errorf("fhirPath(%q) = %q, want %q", tt.ptr, got, tt.want)
			}
		})
	}
}

func TestInstanceSteps(t *testing.T) {
	for _, tt := range []struct {
		rel  string
		want int
	}{
		{"", 0},
		{"/required", 0},
		{"/properties/coding/allOf/0/minContains", 1},
		{"/prefixItems/0/properties/resource/properties/resourceType/const", 3},
		{"/items/then/properties/properties/const", 2},
	} {
		t.Run(tt.rel, func(t *testing.T) {
			if got := instanceSteps(tt.rel); got != tt.want {
				t.Errorf("instanceSteps(%q) = %d, want %d", tt.rel, got, tt.want)
			}
		})
	}
}

// compileOne compiles a generated schema fragment on its own.
func compileOne(t *testing.T, schema map[string]any) *jsonschema.Schema {
	t.Helper()
	b, err := json.Marshal(schema)
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.Draft = jsonschema.Draft2020
	if err := c.AddResource("mem://s", bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("mem://s")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func decodeAny(t testing.TB, s string) any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestPatternSchema checks pattern[x] semantics: a partial match, where
// arrays in the pattern must each be matched by some item of the instance.
func TestPatternSchema(t *testing.T) {
	cc := `{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}`
	for _, tt := range []struct {
		name, pattern, instance string
		match                   bool
	}{
		{"equal", cc, cc, true},
		{"extra members", cc, `{"coding": [{"system": "http://loinc.org", "code": "59284-0", "display": "x"}], "text": "y"}`, true},
		{"other codings too", cc, `{"coding": [{"system": "urn:x", "code": "1"}, {"system": "http://loinc.org", "code": "59284-0"}]}`, true},
		{"other code", cc, `{"coding": [{"system": "http://loinc.org", "code": "59284-1"}]}`, false},
		{"code split over codings", cc, `{"coding": [{"system": "http://loinc.org"}, {"code": "59284-0"}]}`, false},
		{"no coding", cc, `{"text": "59284-0"}`, false},
		{"primitive", `"seealso"`, `"seealso"`, true},
		{"primitive differs", `"seealso"`, `"refer"`, false},
		{"number", `{"value": 1}`, `{"value": 1.0, "unit": "x"}`, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := compileOne(t, patternSchema(decodeAny(t, tt.pattern)))
			err := s.Validate(decodeAny(t, tt.instance))
			if (err == nil) != tt.match {
				t.Errorf("match = %v, want %v (%v)", err == nil, tt.match, err)
			}
		})
	}
}

func TestBindingSchema(t *testing.T) {
	vs := &valueSet{URL: "urn:vs", Include: []valueSetInclude{
		{System: "http://loinc.org", Codes: []string{"10160-0", "60591-5"}},
		{System: "urn:other", Codes: []string{"x"}},
	}}
	for _, tt := range []struct {
		name, code, instance string
		match                bool
	}{
		{"code", "code", `"x"`, true},
		{"code not in set", "code", `"y"`, false},
		{"Coding", "Coding", `{"system": "http://loinc.org", "code": "60591-5"}`, true},
		{"Coding wrong system", "Coding", `{"system": "urn:other", "code": "60591-5"}`, false},
		{"CodeableConcept", "CodeableConcept", `{"coding": [{"system": "urn:y", "code": "1"}, {"system": "urn:other", "code": "x"}]}`, true},
		{"CodeableConcept text only", "CodeableConcept", `{"text": "x"}`, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := compileOne(t, bindingSchema(tt.code, vs))
			err := s.Validate(decodeAny(t, tt.instance))
			if (err == nil) != tt.match {
				t.Errorf("match = %v, want %v (%v)", err == nil, tt.match, err)
			}
		})
	}
	if bindingSchema("string", vs) != nil {
		t.Error("a binding on a string made a schema")
	}
}

// TestGenerateRejects checks that the generator refuses what it cannot
// express, rather than silently checking less.
func TestGenerateRejects(t *testing.T) {
	const head = `{"resourceType": "StructureDefinition", "url": "urn:sd", "version": "1", "name": "X", "status": "active",
		"kind": "resource", "type": "Patient", "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Patient",
		"derivation": "constraint", "differential": {"element": [{"id": "Patient", "path": "Patient"}, `
	for _, tt := range []struct{ name, elements, want string }{
		{"no base",
			`{"id": "Patient.name", "path": "Patient.name", "max": "0"}`, "no base cardinality"},
		{"unknown Go check",
			`{"id": "Patient.name", "path": "Patient.name", "base": {"path": "Patient.name", "min": 0, "max": "*"},
			  "constraint": [{"key": "sp-xyz-1", "severity": "error", "human": "x"}]}`, "no Go check"},
		{"missing parent",
			`{"id": "Patient.name.family", "path": "Patient.name.family", "min": 1, "base": {"path": "HumanName.family", "min": 0, "max": "1"}}`, "lacks an element"},
		{"unknown value set",
			`{"id": "Patient.gender", "path": "Patient.gender", "base": {"path": "Patient.gender", "min": 0, "max": "1"},
			  "type": [{"code": "code"}], "binding": {"strength": "required", "valueSet": "urn:nowhere"}}`, "not contained"},
		{"binding on a string",
			`{"id": "Patient.gender", "path": "Patient.gender", "base": {"path": "Patient.gender", "min": 0, "max": "1"},
			  "type": [{"code": "string"}], "binding": {"strength": "required", "valueSet": "urn:vs"}}`, "needs type code"},
		{"foreign profile",
			`{"id": "Patient.contained", "path": "Patient.contained", "base": {"path": "DomainResource.contained", "min": 0, "max": "*"},
			  "type": [{"code": "Organization", "profile": ["urn:elsewhere"]}]}`, "not one of ours"},
		{"slices without slicing",
			`{"id": "Patient.name", "path": "Patient.name", "base": {"path": "Patient.name", "min": 0, "max": "*"}},
			 {"id": "Patient.name:x", "path": "Patient.name", "sliceName": "x", "base": {"path": "Patient.name", "min": 0, "max": "*"}}`, "no slicing"},
		{"exists discriminator",
			`{"id": "Patient.name", "path": "Patient.name", "base": {"path": "Patient.name", "min": 0, "max": "*"},
			  "slicing": {"discriminator": [{"type": "exists", "path": "family"}], "rules": "open"}},
			 {"id": "Patient.name:x", "path": "Patient.name", "sliceName": "x", "min": 1, "max": "1", "base": {"path": "Patient.name", "min": 0, "max": "*"}},
			 {"id": "Patient.name:x.family", "path": "Patient.name.family", "min": 1, "base": {"path": "HumanName.family", "min": 0, "max": "1"}}`, "not supported"},
		{"dangling contentReference",
			`{"id": "Patient.link", "path": "Patient.link", "base": {"path": "Patient.link", "min": 0, "max": "*"}, "contentReference": "#Patient.contact"}`, "no such element"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sd, vss, err := decodeDefinition([]byte(head + tt.elements + `]}}`))
			if err != nil {
				t.Fatal(err)
			}
			valueSets := map[string]*valueSet{"urn:vs": {URL: "urn:vs", Include: []valueSetInclude{{System: "urn:s", Codes: []string{"a"}}}}}
			for _, vs := range vss {
				valueSets[vs.URL] = vs
			}
			_, err = generate(sd, valueSets, map[string]bool{"urn:sd": true}, map[string]note{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("generate: %v, want an error with %q", err, tt.want)
			}
		})
	}
}

func TestDecodeDefinitionRejects(t *testing.T) {
	for _, tt := range []struct{ name, json, want string }{
		{"not an SD", `{"resourceType": "Patient"}`, "want StructureDefinition"},
		{"no url", `{"resourceType": "StructureDefinition", "version": "1", "name": "X", "status": "active", "type": "Patient"}`, "required"},
		{"specialization", `{"resourceType": "StructureDefinition", "url": "u", "version": "1", "name": "X", "status": "active", "type": "Patient",
			"kind": "resource", "derivation": "specialization"}`, "derivation constraint"},
		{"two fixed values", `{"resourceType": "StructureDefinition", "url": "u", "version": "1", "name": "X", "status": "active", "type": "Patient",
			"kind": "resource", "derivation": "constraint", "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Patient",
			"differential": {"element": [{"id": "Patient", "path": "Patient", "fixedString": "a", "fixedCode": "b"}]}}`, "more than one fixed"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := decodeDefinition([]byte(tt.json))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("decodeDefinition: %v, want an error with %q", err, tt.want)
			}
		})
	}
}
