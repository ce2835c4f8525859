package fhir

import (
	"bytes"
	"encoding/json"
	"reflect"
	"slices"
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
	for _, s := range []string{
		`{}`, `{"id":"x"}`, `{"resourceType":"X"}`, `{"resourceType":"X","id":"y"}`, `{"a":1,"resourceType":"X"}`,
		`{"meta":{},"a":1}`, `{"a":1,"meta":[],"b":2}`, `{"resourceType":"X","id":"y","meta":{"source":"z"}}`,
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
		// Copied around meta or written member by member: the same bytes.
		ms, err := Members(raw)
		if err != nil {
			t.Fatal(err)
		}
		if written, err := setMetaSource(raw, ms, src, false); err != nil || !bytes.Equal(got, written) {
			t.Fatalf("input %q\nspliced %s\nwritten %s (%v)", raw, got, written, err)
		}
		var compact bytes.Buffer
		if json.Compact(&compact, raw) == nil {
			cms, err := Members(compact.Bytes())
			if err != nil {
				t.Fatal(err)
			}
			spliced, err1 := setMetaSource(compact.Bytes(), cms, src, true)
			written, err2 := setMetaSource(compact.Bytes(), cms, src, false)
			if err1 != nil || err2 != nil || !bytes.Equal(spliced, written) {
				t.Fatalf("compact input %s\nspliced %s\nwritten %s (%v, %v)", compact.Bytes(), spliced, written, err1, err2)
			}
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

// TestSpliceMeta: a compact object is copied around its new meta, and the
// bytes are those written member by member; any other object is left to
// the writer.
func TestSpliceMeta(t *testing.T) {
	const src = "https://bron.example/fhir/R4"
	for _, tc := range []struct {
		in      string
		spliced bool
	}{
		{`{}`, true},
		{`{"resourceType":"X"}`, true},
		{`{"resourceType":"X","id":"y"}`, true},
		{`{"resourceType":"X","id":"y","status":"completed"}`, true},
		{`{"status":"completed","resourceType":"X"}`, true},
		{`{"resourceType":"X","meta":{"profile":["p"]},"id":"a"}`, true},
		{`{"meta":null}`, true},
		{`{ "resourceType":"X"}`, false},            // white space
		{`{"resourceType":"X","a":1,"a":2}`, false}, // a key given twice
		{`{"resourceType":"X","k\u0041":1}`, false}, // an escaped key
	} {
		t.Run(tc.in, func(t *testing.T) {
			raw := []byte(tc.in)
			ms, err := Members(raw)
			if err != nil {
				t.Fatal(err)
			}
			meta := []byte(`{"source":"` + src + `"}`)
			at := slices.IndexFunc(ms, func(m Member) bool { return m.Key == "meta" })
			replace := at >= 0
			if !replace {
				at = 0
				for at < len(ms) && at < 2 && (ms[at].Key == "resourceType" || ms[at].Key == "id") {
					at++
				}
			}
			_, ok := spliceMeta(raw, ms, meta, at, replace)
			if ok != tc.spliced {
				t.Fatalf("spliced %v, want %v", ok, tc.spliced)
			}
			got, err1 := setMetaSource(raw, ms, src, true)
			want, err2 := setMetaSource(raw, ms, src, false)
			if err1 != nil || err2 != nil || !bytes.Equal(got, want) {
				t.Errorf("spliced %s\nwritten %s (%v, %v)", got, want, err1, err2)
			}
		})
	}
}
