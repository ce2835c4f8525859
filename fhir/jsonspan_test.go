package fhir

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/schakelpunt/schakelpunt/fhir/jsonscan"
)

func TestMembersElements(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		keys     []string
		values   []string
	}{
		{"plain", `{"a":1,"b":"x","c":[1,{"d":"]"}]}`, []string{"a", "b", "c"}, []string{`1`, `"x"`, `[1,{"d":"]"}]`}},
		{"white space", " {\n \"a\" : { } ,\t\"b\":null }\n", []string{"a", "b"}, []string{`{ }`, `null`}},
		{"escaped key", `{"k\u0041":true}`, []string{"kA"}, []string{`true`}},
		{"duplicates: the last value at the place of the first", `{"a":1,"b":2,"a":3}`, []string{"a", "b"}, []string{`3`, `2`}},
		{"empty", `{}`, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ms, err := Members([]byte(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			var keys, values []string
			for _, m := range ms {
				keys, values = append(keys, m.Key), append(values, string(m.Value))
			}
			if !reflect.DeepEqual(keys, tc.keys) || !reflect.DeepEqual(values, tc.values) {
				t.Errorf("got %q %q, want %q %q", keys, values, tc.keys, tc.values)
			}
		})
	}
	for _, in := range []string{``, `[]`, `"x"`, `1`} {
		if _, err := Members([]byte(in)); err == nil {
			t.Errorf("Members(%q): no error", in)
		}
	}
	els, err := Elements([]byte(` [ 1 ,"a,b", {"c":[2]} ,[] ] `))
	if err != nil {
		t.Fatal(err)
	}
	if got := len(els); got != 4 || string(els[1]) != `"a,b"` || string(els[2]) != `{"c":[2]}` {
		t.Errorf("Elements: %q", els)
	}
	if _, err := Elements([]byte(`{}`)); err == nil {
		t.Error("Elements of an object: no error")
	}
	for in, want := range map[string]string{`"x"`: "x", `"\u00e9\n"`: "é\n", ` "" `: ""} {
		if got, ok := StringValue([]byte(in)); !ok || got != want {
			t.Errorf("StringValue(%s) = %q, %v", in, got, ok)
		}
	}
	for _, in := range []string{`1`, `null`, `{}`, `"`} {
		if _, ok := StringValue([]byte(in)); ok {
			t.Errorf("StringValue(%s): ok", in)
		}
	}
}

// FuzzMembers holds Members and Elements to what decoding gives.
func FuzzMembers(f *testing.F) {
	for _, s := range []string{`{"a":[1,"]",{"b":{}}],"c":"\"}"}`, `[{"a":1}, [], "x", 2.5e3, null]`, `{"a":1,"a":{"b":2}}`} {
		f.Add([]byte(s))
	}
	for _, s := range []string{`{"a" 1}`, `{"a":1 "b":2}`, `[1 2]`, `{"a":tru}`, `{"a":01}`, `{"a":[1,]}`, `{"a":"\x"}`, "{\"a\":\"\x01\"}", `{"a":1}}`, `{"a":"b\"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if c := bytes.TrimSpace(raw); len(c) > 0 && (c[0] == '{' || c[0] == '[') {
			if got, want := deepSplit(raw), json.Valid(raw); got != want {
				t.Fatalf("%q: split all the way down: %v, json.Valid: %v", raw, got, want)
			}
		}
		var v any
		if json.Unmarshal(raw, &v) != nil {
			return
		}
		switch want := v.(type) {
		case map[string]any:
			ms, err := Members(raw)
			if err != nil {
				t.Fatalf("%q: %v", raw, err)
			}
			got := map[string]any{}
			for _, m := range ms {
				var x any
				if err := json.Unmarshal(m.Value, &x); err != nil {
					t.Fatalf("%q: member %q value %q: %v", raw, m.Key, m.Value, err)
				}
				got[m.Key] = x
			}
			if len(ms) != len(got) || !reflect.DeepEqual(got, want) {
				t.Fatalf("%q: got %v, want %v", raw, got, want)
			}
		case []any:
			els, err := Elements(raw)
			if err != nil {
				t.Fatalf("%q: %v", raw, err)
			}
			got := []any{}
			for _, e := range els {
				var x any
				if err := json.Unmarshal(e, &x); err != nil {
					t.Fatalf("%q: element %q: %v", raw, e, err)
				}
				got = append(got, x)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("%q: got %v, want %v", raw, got, want)
			}
		case string:
			if got, ok := StringValue(raw); !ok || got != want {
				t.Fatalf("StringValue(%q) = %q, %v; want %q", raw, got, ok, want)
			}
		}
	})
}

// deepSplit splits raw with Members and Elements all the way down, reading
// strings with StringValue: what a caller that reads every value checks.
func deepSplit(raw []byte) bool {
	raw = jsonscan.TrimSpace(raw)
	if len(raw) == 0 {
		return false
	}
	switch raw[0] {
	case '{':
		ms, err := Members(raw)
		if err != nil {
			return false
		}
		for _, m := range ms {
			if !deepSplit(m.Value) {
				return false
			}
		}
		return true
	case '[':
		els, err := Elements(raw)
		if err != nil {
			return false
		}
		for _, e := range els {
			if !deepSplit(e) {
				return false
			}
		}
		return true
	case '"':
		_, ok := StringValue(raw)
		return ok
	}
	return json.Valid(raw) // numbers and literals: valueEnd checked them
}

// TestSplitChecksSyntax: splitting all the way down refuses what
// encoding/json refuses.
func TestSplitChecksSyntax(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want bool
	}{
		{`{}`, true}, {` { "a" : [ 1 , {"b":null} ] } `, true}, {`[]`, true}, {`{"a":-0.5e+3}`, true},
		{`{"a" 1}`, false}, {`{"a":1 "b":2}`, false}, {`[1 2]`, false}, {`{"a":tru}`, false}, {`{"a":01}`, false},
		{`{"a":[1,]}`, false}, {`{"a":1,}`, false}, {`{,}`, false}, {`{"a":"\x"}`, false}, {"{\"a\":\"\x01\"}", false},
		{`{"a":1}}`, false}, {`{"a":"b\"}`, false}, {`{"a":{"b":1}`, false}, {`[[1]`, false}, {`{"a":}`, false}, {`{1:2}`, false},
	} {
		t.Run(tt.in, func(t *testing.T) {
			if got := deepSplit([]byte(tt.in)); got != tt.want {
				t.Errorf("deepSplit = %v, want %v", got, tt.want)
			}
			if json.Valid([]byte(tt.in)) != tt.want {
				t.Fatalf("the table is wrong about %q", tt.in)
			}
		})
	}
}
