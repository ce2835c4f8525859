package profiles

import (
	"slices"
	"sort"
	"strconv"
	"testing"
)

func TestObserve(t *testing.T) {
	other := map[string]any{"$id": "http://x/other", "required": []any{"fromOther"}}
	otherAll := map[string]any{"$id": "http://x/other-all", "minProperties": 2}
	schemas := map[string]map[string]any{"http://x/other": other, "http://x/other-all": otherAll}
	for _, tt := range []struct {
		name     string
		schema   string
		names    []string
		patterns []string
		all      bool
	}{
		{"empty", `{}`, nil, nil, false},
		{"properties, required, patternProperties", `{"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": "http://x/p",
			"properties": {"a": {"const": 1}, "_b": false}, "required": ["c"], "patternProperties": {"^_?d[A-Z]": false}}`,
			[]string{"_b", "a", "c"}, []string{"^_?d[A-Z]"}, false},
		{"applicators", `{"allOf": [{"required": ["a"]}, {"anyOf": [{"required": ["b"]}, {"properties": {"c": true}}]}],
			"oneOf": [true, {"required": ["d"]}], "not": {"required": ["e"]},
			"if": {"properties": {"f": {"const": "x"}}}, "then": {"required": ["g"]}, "else": false}`,
			[]string{"a", "b", "c", "d", "e", "f", "g"}, nil, false},
		{"dependentRequired", `{"dependentRequired": {"a": ["b", "c"]}}`, []string{"a", "b", "c"}, nil, false},
		{"keywords of other types", `{"type": "object", "pattern": "x", "maxLength": 3, "items": {"const": 1}, "contains": {"const": 2},
			"minItems": 1, "maximum": 3, "title": "t", "description": "d", "$comment": "c"}`, nil, nil, false},
		{"$ref into $defs, recursive", `{"$id": "http://x/r", "allOf": [{"$ref": "#/$defs/Consent.provision"}],
			"$defs": {"Consent.provision": {"required": ["p"], "anyOf": [{"$ref": "#/$defs/Consent.provision"}, {"$ref": "#"}]}}}`,
			[]string{"p"}, nil, false},
		{"$ref to another profile", `{"$id": "http://x/s", "required": ["a"], "allOf": [{"$ref": "http://x/other"}]}`,
			[]string{"a", "fromOther"}, nil, false},
		{"$defs not applied", `{"$defs": {"x": {"minProperties": 1}}, "required": ["a"]}`, []string{"a"}, nil, false},
		// The ones that could see any member.
		{"additionalProperties", `{"properties": {"a": true}, "additionalProperties": false}`, nil, nil, true},
		{"unevaluatedProperties in allOf", `{"allOf": [{"unevaluatedProperties": false}]}`, nil, nil, true},
		{"propertyNames", `{"propertyNames": {"pattern": "^[a-z]"}}`, nil, nil, true},
		{"minProperties", `{"minProperties": 1}`, nil, nil, true},
		{"maxProperties in not", `{"not": {"maxProperties": 1}}`, nil, nil, true},
		{"dependentSchemas", `{"dependentSchemas": {"a": {"required": ["b"]}}}`, nil, nil, true},
		{"const on the resource", `{"allOf": [{"const": {"resourceType": "Patient"}}]}`, nil, nil, true},
		{"enum on the resource", `{"anyOf": [{"enum": [1, 2]}, true]}`, nil, nil, true},
		{"format", `{"format": "date"}`, nil, nil, true},
		{"unknown keyword", `{"x-unknown": 1}`, nil, nil, true},
		{"$dynamicRef", `{"$dynamicRef": "#meta"}`, nil, nil, true},
		{"$ref to a profile that sees all", `{"$id": "http://x/s", "allOf": [{"$ref": "http://x/other-all"}]}`, nil, nil, true},
		{"$ref elsewhere", `{"$ref": "http://example.org/schema"}`, nil, nil, true},
		{"$ref to a missing $def", `{"$id": "http://x/m", "$ref": "#/$defs/none"}`, nil, nil, true},
		{"$ref into a $def's inside", `{"$id": "http://x/m", "$ref": "#/$defs/a/properties/b", "$defs": {"a": {"properties": {"b": true}}}}`, nil, nil, true},
		{"nested $id", `{"allOf": [{"$id": "http://x/n", "required": ["a"]}]}`, nil, nil, true},
		{"required not a list", `{"required": "a"}`, nil, nil, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			names, patterns, all := observe(decodeAny(t, tt.schema).(map[string]any), schemas)
			if all != tt.all {
				t.Fatalf("all = %v, want %v", all, tt.all)
			}
			if got := sortedSet(names); !slices.Equal(got, tt.names) {
				t.Errorf("names %q, want %q", got, tt.names)
			}
			sort.Strings(patterns)
			if !slices.Equal(patterns, tt.patterns) {
				t.Errorf("patterns %q, want %q", patterns, tt.patterns)
			}
		})
	}
}

func sortedSet(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestKeepMember checks what run asks ValidateSome to decode of our
// profiles' types.
func TestKeepMember(t *testing.T) {
	v := MustNewValidator(t)
	for _, tt := range []struct {
		rt, key string
		keep    bool
	}{
		{"MedicationDispense", "meta", false},            // read in the tree
		{"MedicationDispense", "subject", true},          // required
		{"MedicationDispense", "medicationString", true}, // a type the profile forbids
		{"MedicationDispense", "_medicationString", true},
		{"MedicationDispense", "medicationCodeableConcept", false},
		{"MedicationDispense", "status", false},
		{"MedicationDispense", "identifier", false},
		{"Patient", "identifier", true},
		{"Patient", "deceasedBoolean", true},
		{"Patient", "id", false},
		{"Bundle", "entry", true}, // entries are validated by type
		{"Bundle", "id", true},
		{"Observation", "meta", false}, // no profile of ours
		{"Observation", "status", false},
	} {
		t.Run(tt.rt+"."+tt.key, func(t *testing.T) {
			// Twice: the second answer may come from the cache.
			for range 2 {
				if got := v.keepMember(tt.rt, tt.key); got != tt.keep {
					t.Errorf("keepMember = %v, want %v", got, tt.keep)
				}
			}
		})
	}
}

// TestObservedCacheBounded: past maxMatched names the verdicts are still
// right, and not cached.
func TestObservedCacheBounded(t *testing.T) {
	o := &observed{}
	if err := o.add(nil, []string{"^x[0-9]+$"}, false); err != nil {
		t.Fatal(err)
	}
	for i := range 3 * maxMatched {
		if !o.keeps("x" + strconv.Itoa(i)) {
			t.Fatalf("x%d not kept", i)
		}
		if o.keeps("y" + strconv.Itoa(i)) {
			t.Fatalf("y%d kept", i)
		}
	}
	n := len(*o.known.Load())
	if n > maxMatched {
		t.Errorf("%d names cached, want at most %d", n, maxMatched)
	}
	if err := o.add(nil, []string{"("}, false); err == nil {
		t.Error("a bad pattern was accepted")
	}
}
