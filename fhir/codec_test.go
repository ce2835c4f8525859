package fhir

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseValid(t *testing.T) {
	tests := []struct {
		fixture, typ, id string
	}{
		{"patient-index.json", "Patient", "idx-1"},
		{"consent.json", "Consent", "c1"},
		{"auditevent.json", "AuditEvent", "ae1"},
		{"auditevent-patient-refs.json", "AuditEvent", "ae2"},
		{"organization.json", "Organization", "org-2"},
		{"endpoint.json", "Endpoint", "ep-2"},
	}
	c := MustCodec(t)
	for _, tt := range tests {
		t.Run(tt.fixture, func(t *testing.T) {
			body := MustRead(t, filepath.Join("resources", tt.fixture))
			for _, want := range []string{"", tt.typ} {
				res, err := c.Parse(body, want)
				if err != nil {
					t.Fatalf("Parse(%q): %v", want, err)
				}
				if res.Type != tt.typ || res.ID != tt.id {
					t.Errorf("Type, ID = %q, %q", res.Type, res.ID)
				}
				if !bytes.Equal(res.Raw, body) {
					t.Error("Raw is not the body as given")
				}
				if res.Doc["resourceType"] != tt.typ {
					t.Errorf("Doc = %v", res.Doc)
				}
			}
		})
	}
	t.Run("every fixture is covered", func(t *testing.T) {
		entries, err := os.ReadDir(filepath.Join("testdata", "resources"))
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != len(tests) {
			t.Errorf("%d fixtures, %d tested", len(entries), len(tests))
		}
	})
	t.Run("numbers stay json.Number", func(t *testing.T) {
		res, err := c.Parse([]byte(`{"resourceType":"Organization","extension":[{"url":"urn:x","valueDecimal":1.50}]}`), "")
		if err != nil {
			t.Fatal(err)
		}
		v := res.Doc["extension"].([]any)[0].(map[string]any)["valueDecimal"]
		if n, ok := v.(json.Number); !ok || n.String() != "1.50" {
			t.Errorf("valueDecimal = %#v", v)
		}
	})
	t.Run("whitespace around the object", func(t *testing.T) {
		if _, err := c.Parse([]byte("\n\t {\"resourceType\":\"Patient\"} \r\n"), "Patient"); err != nil {
			t.Error(err)
		}
	})
}

func TestParseInvalid(t *testing.T) {
	tests := []struct {
		name string
		body string // inline, or @file under testdata/invalid
		typ  string
		want wantErr
	}{
		// Not JSON, or not one JSON object: 400 structure.
		{"empty body", "", "", wantErr{KindInvalid, "structure", "-"}},
		{"truncated JSON", "@truncated.json", "", wantErr{KindInvalid, "structure", "-"}},
		{"syntax error", `{"resourceType": "Patient",}`, "", wantErr{KindInvalid, "structure", "-"}},
		{"two objects", `{"resourceType":"Patient"} {"resourceType":"Patient"}`, "", wantErr{KindInvalid, "structure", "-"}},
		{"trailing brace", `{"resourceType":"Patient"}}`, "", wantErr{KindInvalid, "structure", "-"}},
		{"trailing garbage", `{"resourceType":"Patient"} x`, "", wantErr{KindInvalid, "structure", "-"}},
		{"array", `[{"resourceType":"Patient"}]`, "", wantErr{KindInvalid, "structure", "-"}},
		{"string", `"Patient"`, "", wantErr{KindInvalid, "structure", "-"}},
		{"null", `null`, "", wantErr{KindInvalid, "structure", "-"}},
		{"number", `42`, "", wantErr{KindInvalid, "structure", "-"}},
		// No or the wrong resourceType.
		{"no resourceType", `{"id":"x"}`, "", wantErr{KindInvalid, "structure", "resourceType"}},
		{"empty object", `{}`, "Patient", wantErr{KindInvalid, "structure", "resourceType"}},
		{"resourceType not a string", `{"resourceType":5}`, "", wantErr{KindInvalid, "structure", "resourceType"}},
		{"empty resourceType", `{"resourceType":""}`, "", wantErr{KindInvalid, "structure", "resourceType"}},
		{"wrong type", "@unknown-resource-type.json", "Patient", wantErr{KindInvalid, "invalid", "resourceType"}},
		{"Consent posted as Patient", `{"resourceType":"Consent"}`, "Patient", wantErr{KindInvalid, "invalid", "resourceType"}},
		{"unknown resource type", "@unknown-resource-type.json", "", wantErr{KindInvalid, "value", "resourceType"}},
		// Unknown or malformed elements: 400.
		{"unknown element", "@patient-unknown-element.json", "Patient", wantErr{KindInvalid, "structure", "Patient.foo"}},
		{"unknown nested element", "@patient-nested-unknown-element.json", "Patient", wantErr{KindInvalid, "structure", "Patient.identifier[0].colour"}},
		{"bad boolean", "@patient-bad-boolean.json", "Patient", wantErr{KindInvalid, "value", "Patient.active"}},
		{"bad date", "@patient-bad-date.json", "Patient", wantErr{KindInvalid, "value", "Patient.birthDate"}},
		{"object for an array", "@patient-identifier-not-array.json", "Patient", wantErr{KindInvalid, "value", "Patient.identifier"}},
		// Codes outside a required binding are parse errors in google/fhir.
		{"bad code in a required binding", "@consent-bad-status.json", "Consent", wantErr{KindInvalid, "value", "Consent.status"}},
		{"bad AuditEvent outcome", "@auditevent-bad-outcome.json", "AuditEvent", wantErr{KindInvalid, "value", "AuditEvent.outcome"}},
		// Base validation: 422.
		{"missing required", "@consent-missing-required.json", "Consent", wantErr{KindUnprocessable, "required", "Consent"}},
		{"wrong reference type", "@patient-wrong-reference-type.json", "Patient", wantErr{KindUnprocessable, "value", "Patient.managingOrganization"}},
		{"malformed id", "@patient-bad-id.json", "Patient", wantErr{KindUnprocessable, "invalid", "Patient.id"}},
	}
	c := MustCodec(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := []byte(tt.body)
			if name, ok := strings.CutPrefix(tt.body, "@"); ok {
				body = MustRead(t, filepath.Join("invalid", name))
			}
			res, err := c.Parse(body, tt.typ)
			if res != nil {
				t.Errorf("got a resource with the error")
			}
			fe := checkError(t, err, tt.want)
			for _, is := range fe.Issues {
				if is.Diagnostics == "" {
					t.Errorf("issue %+v has no diagnostics", is)
				}
			}
		})
	}
	t.Run("every invalid fixture is covered", func(t *testing.T) {
		entries, err := os.ReadDir(filepath.Join("testdata", "invalid"))
		if err != nil {
			t.Fatal(err)
		}
		used := map[string]bool{}
		for _, tt := range tests {
			if name, ok := strings.CutPrefix(tt.body, "@"); ok {
				used[name] = true
			}
		}
		for _, e := range entries {
			if !used[e.Name()] {
				t.Errorf("testdata/invalid/%s is not used", e.Name())
			}
		}
	})
}

func TestParseMissingRequiredListsEveryField(t *testing.T) {
	_, err := MustCodec(t).Parse(MustRead(t, "invalid/consent-missing-required.json"), "Consent")
	fe := checkError(t, err, wantErr{KindUnprocessable, "required", "Consent"})
	var diags []string
	for _, is := range fe.Issues {
		diags = append(diags, is.Diagnostics)
	}
	all := strings.Join(diags, "\n")
	for _, field := range []string{"scope", "category"} {
		if !strings.Contains(all, field) {
			t.Errorf("no issue names %q: %q", field, diags)
		}
	}
}

func TestParseDeepNesting(t *testing.T) {
	// Nested extensions beyond the codec's depth limit fail cleanly.
	var b strings.Builder
	b.WriteString(`{"resourceType":"Patient","extension":[`)
	const depth = 200
	for i := 0; i < depth; i++ {
		b.WriteString(`{"url":"urn:x","extension":[`)
	}
	for i := 0; i < depth; i++ {
		b.WriteString(`]}`)
	}
	b.WriteString(`]}`)
	_, err := MustCodec(t).Parse([]byte(b.String()), "Patient")
	if err == nil {
		t.Fatal("a resource nested 200 deep was accepted")
	}
	if k := KindOf(err); k != KindInvalid {
		t.Errorf("kind %d, want KindInvalid", k)
	}
}

func TestParseConcurrent(t *testing.T) {
	c := MustCodec(t)
	body := MustRead(t, "resources/consent.json")
	t.Run("group", func(t *testing.T) {
		for i := 0; i < 4; i++ {
			t.Run("", func(t *testing.T) {
				t.Parallel()
				for j := 0; j < 10; j++ {
					if _, err := c.Parse(body, "Consent"); err != nil {
						t.Error(err)
					}
				}
			})
		}
	})
}

func TestWithMeta(t *testing.T) {
	when := time.Date(2026, 11, 22, 10, 0, 0, 123456789, time.FixedZone("CET", 3600))
	m := Meta{ID: "new-id", VersionID: 7, LastUpdated: when}
	const stamp = `"id":"new-id","meta":{"versionId":"7","lastUpdated":"2026-11-22T09:00:00.123Z"`
	tests := []struct {
		name, in, want string
	}{
		{
			name: "bare resource",
			in:   `{"resourceType":"Patient","active":true}`,
			want: `{"resourceType":"Patient",` + stamp + `},"active":true}`,
		},
		{
			name: "members keep their bytes and order",
			in:   `{ "active" : true ,"identifier":[ {"system":"s" , "value":"1"} ],"resourceType":"Patient","extension":[{"url":"urn:x","valueDecimal":1.50}],"_birthDate":{"extension":[]}}`,
			want: `{"resourceType":"Patient",` + stamp + `},"active":true,"identifier":[ {"system":"s" , "value":"1"} ],"extension":[{"url":"urn:x","valueDecimal":1.50}],"_birthDate":{"extension":[]}}`,
		},
		{
			name: "old id and version are replaced",
			in:   `{"resourceType":"Patient","id":"old","meta":{"versionId":"1","lastUpdated":"2020-01-01T00:00:00Z"},"active":false}`,
			want: `{"resourceType":"Patient",` + stamp + `},"active":false}`,
		},
		{
			name: "other meta elements are kept in order",
			in:   `{"meta":{"profile":["http://example.org/p"],"versionId":"1","security":[{"code":"R"}],"lastUpdated":"2020-01-01T00:00:00Z","tag":[ {"code":"t"} ],"source":"urn:src"},"resourceType":"Consent","id":"c1","status":"active"}`,
			want: `{"resourceType":"Consent",` + stamp + `,"profile":["http://example.org/p"],"security":[{"code":"R"}],"tag":[ {"code":"t"} ],"source":"urn:src"},"status":"active"}`,
		},
		{
			name: "unicode and escapes in values",
			in:   `{"resourceType":"Organization","name":"Huisartsen \u00e9\"n\" ‘t Hof","alias":["a\nb"]}`,
			want: `{"resourceType":"Organization",` + stamp + `},"name":"Huisartsen \u00e9\"n\" ‘t Hof","alias":["a\nb"]}`,
		},
		{
			name: "pretty printed input",
			in:   "{\n  \"resourceType\": \"Patient\",\n  \"link\": [\n    {\"type\": \"seealso\"}\n  ]\n}\n",
			want: `{"resourceType":"Patient",` + stamp + `},"link":[` + "\n    {\"type\": \"seealso\"}\n  ]}",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := WithMeta([]byte(tt.in), m)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("WithMeta:\n got %s\nwant %s", got, tt.want)
			}
			if !json.Valid(got) {
				t.Errorf("output is not JSON: %s", got)
			}
		})
	}
}

func TestWithMetaKeepsFixturesValid(t *testing.T) {
	c := MustCodec(t)
	for _, name := range []string{"patient-index.json", "consent.json", "auditevent.json", "organization.json", "endpoint.json"} {
		t.Run(name, func(t *testing.T) {
			raw := MustRead(t, filepath.Join("resources", name))
			before := MustParse(t, name)
			got, err := WithMeta(raw, Meta{ID: "x-1", VersionID: 12, LastUpdated: time.Unix(1795330800, 0)})
			if err != nil {
				t.Fatal(err)
			}
			res, err := c.Parse(got, before.Type)
			if err != nil {
				t.Fatalf("stamped resource is invalid: %v\n%s", err, got)
			}
			meta := res.Doc["meta"].(map[string]any)
			if res.ID != "x-1" || meta["versionId"] != "12" || meta["lastUpdated"] != "2026-11-22T07:00:00.000Z" {
				t.Errorf("id %q meta %v", res.ID, meta)
			}
			// Apart from id and meta the document is the same.
			for k, v := range before.Doc {
				if k == "id" || k == "meta" {
					continue
				}
				a, _ := json.Marshal(v)
				b, _ := json.Marshal(res.Doc[k])
				if !bytes.Equal(a, b) {
					t.Errorf("%s changed: %s -> %s", k, a, b)
				}
			}
			if len(res.Doc) != len(before.Doc)+boolInt(before.Doc["id"] == nil)+boolInt(before.Doc["meta"] == nil) {
				t.Errorf("members: %d before, %d after", len(before.Doc), len(res.Doc))
			}
			// Other meta elements survive.
			if name == "patient-index.json" {
				if p, _ := meta["profile"].([]any); len(p) != 1 {
					t.Errorf("meta.profile lost: %v", meta)
				}
			}
			// Stamping twice is stamping once.
			again, err := WithMeta(got, Meta{ID: "x-1", VersionID: 12, LastUpdated: time.Unix(1795330800, 0)})
			if err != nil || !bytes.Equal(again, got) {
				t.Errorf("WithMeta is not idempotent:\n%s\n%s", got, again)
			}
		})
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestWithMetaErrors(t *testing.T) {
	tests := []struct{ name, in string }{
		{"empty", ``},
		{"array", `[1,2]`},
		{"string", `"x"`},
		{"truncated", `{"resourceType":"Patient","active":`},
		{"bad member", `{"resourceType":"Patient",5:1}`},
		{"no resourceType", `{"active":true}`},
		{"empty object", `{}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := WithMeta([]byte(tt.in), Meta{ID: "x", VersionID: 1, LastUpdated: time.Unix(0, 0)})
			if err == nil {
				t.Fatalf("no error; got %s", out)
			}
			if k := KindOf(err); k != KindInvalid {
				t.Errorf("kind %d, want KindInvalid", k)
			}
		})
	}
}

func TestFormatInstant(t *testing.T) {
	tests := []struct {
		in   time.Time
		want string
	}{
		{time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC), "2026-11-22T10:00:00.000Z"},
		{time.Date(2026, 11, 22, 10, 0, 0, 0, time.FixedZone("", 3600)), "2026-11-22T09:00:00.000Z"},
		{time.Date(2026, 11, 22, 0, 30, 0, 0, time.FixedZone("", 14*3600)), "2026-11-21T10:30:00.000Z"},
		{time.Date(2026, 11, 22, 10, 0, 0, 123456789, time.UTC), "2026-11-22T10:00:00.123Z"}, // truncated, not rounded
		{time.Date(2026, 11, 22, 10, 0, 0, 999999999, time.UTC), "2026-11-22T10:00:00.999Z"},
		{time.Date(2026, 11, 22, 10, 0, 0, 1000000, time.UTC), "2026-11-22T10:00:00.001Z"},
		{time.Unix(0, 0), "1970-01-01T00:00:00.000Z"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			got := FormatInstant(tt.in)
			if got != tt.want {
				t.Errorf("FormatInstant(%v) = %q, want %q", tt.in, got, tt.want)
			}
			// An instant renders as something the date parser reads back,
			// at millisecond precision.
			r := MustRange(t, got)
			if r.Hi-r.Lo != 1000 || r.Lo != tt.in.Truncate(time.Millisecond).UnixMicro() {
				t.Errorf("%s reads back as [%s, %s)", got, fmtMicro(r.Lo), fmtMicro(r.Hi))
			}
		})
	}
}

// TestJSONString: jsonString writes what encoding/json writes, with its
// shortcut for plain strings or without.
func TestJSONString(t *testing.T) {
	samples := []string{"", "https://bron.example/fhir", "a b", `a"b`, `a\b`, "<a>", "a&b", "\x7f", "é", "\u2028", "\xff", "tab\there"}
	for c := range 256 {
		samples = append(samples, "x"+string(rune(c)), "x"+string([]byte{byte(c)}))
	}
	for _, s := range samples {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := jsonString(s); !bytes.Equal(got, want) {
			t.Errorf("jsonString(%q) = %s, encoding/json: %s", s, got, want)
		}
	}
}
