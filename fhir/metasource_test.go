package fhir

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
)

func TestWithMetaSource(t *testing.T) {
	const src = "https://apotheek.example/fhir"
	for _, tc := range []struct {
		name, in, dateKey, want, date string
	}{
		{"no meta: added after resourceType and id",
			`{"resourceType":"MedicationDispense","id":"d1","status":"completed"}`, "",
			`{"resourceType":"MedicationDispense","id":"d1","meta":{"source":"https://apotheek.example/fhir"},"status":"completed"}`, ""},
		{"no id",
			`{"resourceType":"MedicationDispense","status":"completed"}`, "",
			`{"resourceType":"MedicationDispense","meta":{"source":"https://apotheek.example/fhir"},"status":"completed"}`, ""},
		{"meta kept in order, source added last",
			`{"resourceType":"X","meta":{"versionId":"2","profile":["p"]},"id":"a"}`, "",
			`{"resourceType":"X","meta":{"versionId":"2","profile":["p"],"source":"https://apotheek.example/fhir"},"id":"a"}`, ""},
		{"the source's own meta.source is replaced",
			`{"resourceType":"X","meta":{"source":"urn:other","tag":[]}}`, "",
			`{"resourceType":"X","meta":{"source":"https://apotheek.example/fhir","tag":[]}}`, ""},
		{"white space around members",
			"{ \"resourceType\" : \"X\" ,\n \"meta\" : { \"lastUpdated\" : \"2026\" } , \"when\" : \"2026-01-02\" }", "when",
			`{"resourceType":"X","meta":{"lastUpdated":"2026","source":"https://apotheek.example/fhir"},"when":"2026-01-02"}`, `"2026-01-02"`},
		{"duplicate keys: the last value at the place of the first",
			`{"resourceType":"X","when":"1999","when":"2026-03","meta":{"a":1},"meta":{"b":2}}`, "when",
			`{"resourceType":"X","when":"2026-03","meta":{"b":2,"source":"https://apotheek.example/fhir"}}`, `"2026-03"`},
		{"date key absent",
			`{"resourceType":"X","whenPrepared":"2026"}`, "whenHandedOver",
			`{"resourceType":"X","meta":{"source":"https://apotheek.example/fhir"},"whenPrepared":"2026"}`, ""},
		{"meta that is not an object is replaced",
			`{"resourceType":"X","meta":null}`, "",
			`{"resourceType":"X","meta":{"source":"https://apotheek.example/fhir"}}`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, date, err := WithMetaSource([]byte(tc.in), src, tc.dateKey)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
			if string(date) != tc.date {
				t.Errorf("date %q, want %q", date, tc.date)
			}
		})
	}
	for _, in := range []string{``, `  `, `[1]`, `"x"`} {
		if _, _, err := WithMetaSource([]byte(in), src, ""); KindOf(err) != KindInvalid {
			t.Errorf("%q: error %v, want one of kind invalid", in, err)
		}
	}
}

// FuzzWithMetaSource holds WithMetaSource to what decoding gives: for
// every valid JSON object, the output decodes to the input's members
// with meta.source set, and the date is the member's value.
func FuzzWithMetaSource(f *testing.F) {
	for _, s := range []string{
		`{"resourceType":"MedicationDispense","id":"d1","whenHandedOver":"2026-01-02T10:00:00+01:00"}`,
		`{"meta":{"source":"a","profile":["p"]},"resourceType":"X","whenHandedOver":null}`,
		`{"resourceType":"X","k\u0041":{"meta":1},"meta":{"s\"":"}"}}`,
		"{\n\"resourceType\": \"X\",\t\"a\": [1, {\"b\": \"]\"}]\n}",
	} {
		f.Add([]byte(s))
	}
	const src = "https://bron.example/fhir/R4"
	f.Fuzz(func(t *testing.T, raw []byte) {
		var in map[string]any
		if json.Unmarshal(raw, &in) != nil || in == nil {
			return // not a valid JSON object: the decoder upstream refuses it
		}
		got, date, err := WithMetaSource(raw, src, "whenHandedOver")
		if err != nil {
			t.Fatalf("%q: %v", raw, err)
		}
		var out map[string]any
		if err := json.Unmarshal(got, &out); err != nil {
			t.Fatalf("output is not JSON: %q -> %s", raw, got)
		}
		meta, ok := in["meta"].(map[string]any)
		if !ok {
			meta = map[string]any{}
		}
		meta["source"] = src
		in["meta"] = meta
		if !reflect.DeepEqual(in, out) {
			t.Fatalf("input %q\n got %s", raw, got)
		}
		var wantDate []byte
		if v, ok := in["whenHandedOver"]; ok {
			wantDate, _ = json.Marshal(v)
		}
		var gotDate any
		if date != nil {
			if err := json.Unmarshal(date, &gotDate); err != nil {
				t.Fatalf("date %q is not JSON", date)
			}
			date, _ = json.Marshal(gotDate)
		}
		if !bytes.Equal(date, wantDate) {
			t.Fatalf("date %s, want %s (input %q)", date, wantDate, raw)
		}
	})
}
