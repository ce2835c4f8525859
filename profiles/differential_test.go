package profiles

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/schakelpunt/schakelpunt/fhir"
)

// The differential test: ValidateSourceResource (base validation with
// ValidateSome, the profile over the members it can see, the invariants
// over the decoded tree, or the bytes when base validation fails) and
// Validate must give exactly the issues of the reference
// path (reference_test.go: the whole resource decoded, the invariants over
// the decoded document), on every fixture of this package, the demo
// sources' data (each resource on its own and whole Bundles), the official
// R4 examples of our types, and mutations of them.

// variant is one body to validate, named for the failure message.
type variant struct {
	name string
	body []byte
}

// differentialInput is a resource the variants are made from.
type differentialInput struct {
	name string
	body []byte
	deep bool // mutate nested objects too, not only the top level
}

func TestSourceValidationMatchesReference(t *testing.T) {
	v := MustNewValidator(t)
	// Under -short and -race a third of the demo resources and a tenth of
	// the R4 examples are taken (all of them take minutes under -race).
	light := testing.Short() || raceDetector
	groups := []struct {
		name  string
		load  func(t testing.TB) []differentialInput
		write bool // compare Validate (writes, google/fhir's parser) too
		every int  // when light, one input in every
	}{
		{"profiles testdata", profilesTestdata, true, 1},
		{"demo sources", demoResources, false, 3},
		{"R4 examples", r4Examples, false, 10},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			inputs := g.load(t)
			if len(inputs) == 0 {
				t.Fatal("no inputs")
			}
			if light {
				inputs = everyNth(inputs, g.every)
			}
			var stats differentialStats
			for _, in := range inputs {
				t.Run(in.name, func(t *testing.T) {
					for i, vr := range variants(t, in) {
						// Validate is google/fhir's parser, 400 µs a
						// dispense: when light, one variant in sixteen.
						stats.compare(t, v, vr, g.write && (!light || i%16 == 0))
					}
				})
			}
			t.Logf("%d bodies: %d base failures, %d with invariant issues (%d base-valid), %d with profile issues, %d valid",
				stats.bodies, stats.baseFailed, stats.invariant, stats.invariantBaseValid, stats.profile, stats.valid)
			// The variants must exercise each part of run.
			if stats.baseFailed == 0 || stats.invariant == 0 || stats.profile == 0 || stats.valid == 0 || stats.invariantBaseValid == 0 {
				t.Errorf("the variants miss a case: %+v", stats)
			}
		})
	}
}

func everyNth(in []differentialInput, n int) []differentialInput {
	var out []differentialInput
	for i := 0; i < len(in); i += n {
		out = append(out, in[i])
	}
	return out
}

type differentialStats struct {
	bodies, baseFailed, invariant, profile, valid int
	invariantBaseValid                            int // invariant issues, base validation passed
}

// compare validates one body both ways.
func (s *differentialStats) compare(t *testing.T, v *Validator, vr variant, write bool) {
	t.Helper()
	ctx := context.Background()
	got := v.ValidateSourceResource(ctx, vr.body)
	res, want, _, _ := v.referenceRun(ctx, vr.body, "", true)
	if !sameIssues(got, want) {
		t.Errorf("%s: ValidateSourceResource\n got  %s\n want %s\n body %.600s", vr.name, render(got), render(want), vr.body)
	}
	s.bodies++
	invariant, other := false, false
	for _, is := range want {
		if is.Code == "invariant" {
			invariant = true
		} else {
			other = true
		}
	}
	switch {
	case len(want) == 0:
		s.valid++
	case res == nil: // base validation failed
		s.baseFailed++
	case other:
		s.profile++
	}
	if invariant {
		s.invariant++
		if res != nil {
			s.invariantBaseValid++
		}
	}
	if !write {
		return
	}
	for _, p := range []string{"", v.ProfileFor(rootType(vr.body))} {
		got := v.Validate(ctx, vr.body, p)
		_, want, _, _ := v.referenceRun(ctx, vr.body, p, false)
		if !sameIssues(got, want) {
			t.Errorf("%s: Validate(%q)\n got  %s\n want %s", vr.name, p, render(got), render(want))
		}
	}
}

func sameIssues(a, b []fhir.Issue) bool {
	return len(a) == 0 && len(b) == 0 || reflect.DeepEqual(a, b)
}

func render(issues []fhir.Issue) string {
	var out []string
	for _, is := range issues {
		out = append(out, fmt.Sprintf("%s %s %v %q", is.Severity, is.Code, is.Expression, is.Diagnostics))
	}
	return "[" + strings.Join(out, "\n       ") + "]"
}

func rootType(body []byte) string {
	var doc struct{ ResourceType string }
	_ = json.Unmarshal(body, &doc)
	return doc.ResourceType
}

func profilesTestdata(t testing.TB) []differentialInput {
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	var out []differentialInput
	for _, f := range files {
		out = append(out, differentialInput{name: filepath.Base(f), body: mustReadFile(t, f), deep: true})
	}
	return out
}

// demoResources returns the demo sources' Bundles, whole, and each of their
// entries' resources on its own (as a source returns them).
func demoResources(t testing.TB) []differentialInput {
	root := filepath.Join("..", "federation", "source", "testdata", "demo")
	var out []differentialInput
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".json") {
			return err
		}
		body := mustReadFile(t, path)
		rel, _ := filepath.Rel(root, path)
		out = append(out, differentialInput{name: rel, body: body})
		var b struct {
			Entry []struct {
				Resource json.RawMessage `json:"resource"`
			} `json:"entry"`
		}
		if err := json.Unmarshal(body, &b); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		for i, e := range b.Entry {
			if len(e.Resource) > 0 {
				out = append(out, differentialInput{name: fmt.Sprintf("%s/entry%d", rel, i), body: e.Resource, deep: !testing.Short() && !raceDetector})
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// r4Examples returns the official examples of our types (MustR4Examples:
// skipped with SCHAKELPUNT_SKIP_NPM=1), but the big ones.
func r4Examples(t testing.TB) []differentialInput {
	dir := MustR4Examples(t)
	var out []differentialInput
	for _, typ := range exampleTypes {
		files, err := filepath.Glob(filepath.Join(dir, typ+"-*.json"))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if fi, err := os.Stat(f); err != nil || fi.Size() > 64<<10 {
				continue
			}
			out = append(out, differentialInput{name: filepath.Base(f), body: mustReadFile(t, f)})
		}
	}
	return out
}

func mustReadFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Values the mutations put in.
var (
	badBSN      = map[string]any{"system": fhir.SystemBSN, "value": "999911121"}
	goodBSN     = map[string]any{"system": fhir.SystemBSN, "value": "999911120"}
	badURA      = map[string]any{"system": fhir.SystemURA, "value": "900000021"}
	badPeriod   = map[string]any{"start": "2027-01-01", "end": "2026-12-31"}
	goodPeriod  = map[string]any{"start": "2026-01-01", "end": "2026-12-31"}
	wrongValues = []any{json.Number("1"), "x", []any{}, map[string]any{}, true, nil}
)

// variants returns in's body and its mutations: members dropped and given
// values of other types; bad identifiers, periods and Consents put into
// objects; meta.profile naming profiles known and unknown; and byte-level
// changes a decoder sees through (repeated keys, escaped keys, invalid
// UTF-8) or not (trailing data, truncation).
func variants(t testing.TB, in differentialInput) []variant {
	t.Helper()
	doc, ok := decodeAny(t, string(in.body)).(map[string]any)
	if !ok {
		t.Fatalf("%s: not an object", in.name)
	}
	out := []variant{{"as is", in.body}}
	add := func(name string, d map[string]any) {
		b, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, variant{name, b})
	}
	// mutate applies f to a copy of doc, at the object at path.
	mutate := func(name string, path []any, f func(obj map[string]any)) {
		c := decodeAny(t, string(in.body)).(map[string]any)
		f(objectAt(c, path))
		add(name, c)
	}

	// Top-level members: dropped, and of every JSON type.
	for _, k := range sortedMembers(doc) {
		if k == "resourceType" {
			continue
		}
		mutate("drop "+k, nil, func(o map[string]any) { delete(o, k) })
		for _, wv := range wrongValues {
			mutate(fmt.Sprintf("%s=%v", k, wv), nil, func(o map[string]any) { o[k] = wv })
		}
	}

	// meta.profile.
	urls := []string{"http://example.org/fhir/StructureDefinition/unknown", ProfileMedicationDispense + "|9.9.9"}
	for u := range ourProfiles() {
		urls = append(urls, u)
	}
	sort.Strings(urls)
	for _, u := range urls {
		mutate("meta.profile "+u, nil, func(o map[string]any) { o["meta"] = map[string]any{"profile": []any{u}} })
	}
	mutate("meta.profile two", nil, func(o map[string]any) {
		o["meta"] = map[string]any{"profile": []any{ProfileIndexPatient, urls[0], ProfileMedicationDispense}}
	})
	mutate("meta.profile not a list", nil, func(o map[string]any) { o["meta"] = map[string]any{"profile": ProfileMedicationDispense} })

	// Objects, at every depth (or the top only), get bad content.
	paths := [][]any{nil}
	if in.deep {
		paths = objectPaths(doc, nil, nil)
	}
	for _, p := range paths {
		at := fmt.Sprint(p)
		mutate("bad BSN at "+at, p, func(o map[string]any) { o["identifier"] = []any{goodBSN, badBSN} })
		mutate("bad URA at "+at, p, func(o map[string]any) { o["identifier"] = badURA })
		mutate("bad identifier values at "+at, p, func(o map[string]any) { o["system"], o["value"] = fhir.SystemBSN, "12345" })
		mutate("bad period at "+at, p, func(o map[string]any) { o["period"] = badPeriod })
		mutate("bad periods at "+at, p, func(o map[string]any) { o["usePeriod"] = []any{goodPeriod, "x", badPeriod} })
		mutate("consent at "+at, p, func(o map[string]any) { o["resourceType"] = "Consent" })
		// In place, where base validation still passes.
		obj := objectAt(doc, p)
		if _, ok := obj["value"].(string); ok && obj["system"] != nil {
			mutate("BSN in place at "+at, p, func(o map[string]any) { o["system"], o["value"] = fhir.SystemBSN, "999911121" })
			mutate("URA in place at "+at, p, func(o map[string]any) { o["system"], o["value"] = fhir.SystemURA, "9000000" })
		}
		if obj["start"] != nil || obj["end"] != nil {
			mutate("period in place at "+at, p, func(o map[string]any) { o["start"], o["end"] = "2026-11-24T10:00:00Z", "2026-11-24" })
		}
		if in.deep && len(p) > 0 {
			obj := objectAt(doc, p)
			for _, k := range sortedMembers(obj) {
				mutate("drop "+at+" "+k, p, func(o map[string]any) { delete(o, k) })
			}
		}
	}

	// Byte level.
	trimmed := bytes.TrimRight(in.body, " \t\r\n")
	last := len(trimmed) - 1 // the closing brace
	withMember := func(member string) []byte {
		b := slices.Clone(trimmed[:last])
		return append(append(b, ","+member...), trimmed[last:]...)
	}
	bsn := func(value string) string {
		return `{"system":"` + fhir.SystemBSN + `","value":"` + value + `"}`
	}
	out = append(out,
		variant{"repeated key, bad first", withMember(`"identifier":[` + bsn("999911121") + `],"identifier":[` + bsn("999911120") + `]`)},
		variant{"repeated key, bad last", withMember(`"identifier":[` + bsn("999911120") + `],"identifier":[` + bsn("999911121") + `]`)},
		variant{"repeated period", withMember(`"period":{"start":"2027","end":"2026","end":"2028"}`)},
		variant{"repeated value", withMember(`"identifier":{"system":"` + fhir.SystemBSN + `","value":"1","value":"999911120"}`)},
		variant{"escaped keys", bytes.ReplaceAll(bytes.ReplaceAll(in.body, []byte(`"system"`), []byte(`"\u0073ystem"`)), []byte(`"value"`), []byte(`"valu\u0065"`))},
		variant{"escaped value", withMember(`"identifier":[{"system":"http:\/\/fhir.nl\/fhir\/NamingSystem\/bsn","value":"99991112\u0031"}]`)},
		variant{"escaped period key", withMember(`"p\u0065riod":{"start":"2027","end":"2026"}`)},
		variant{"digit key", withMember(`"0":{"period":{"start":"2027","end":"2026"}}`)},
		variant{"invalid UTF-8 in a key", withMember("\"per\xffiod\":{\"start\":\"2027\",\"end\":\"2026\"}")},
		variant{"invalid UTF-8 in a value", withMember("\"identifier\":[{\"system\":\"" + fhir.SystemBSN + "\",\"value\":\"99991112\xff\"}]")},
		variant{"consent with null policy", withMember(`"contained":[{"resourceType":"Consent","policy":null,"policyRule":null}]`)},
		variant{"nested arrays", withMember(`"x":[[{"period":{"start":"2027","end":"2026"}}],[[` + bsn("1") + `]]]`)},
		variant{"trailing data", append(slices.Clone(in.body), `{"resourceType":"Patient","identifier":[`+bsn("1")+`]}`...)},
		variant{"trailing garbage", append(slices.Clone(in.body), " ]x"...)},
		variant{"leading space", append([]byte(" \n\t"), in.body...)},
		variant{"truncated", in.body[:len(in.body)/2]},
		variant{"not an object", append(append([]byte("["), in.body...), ']')},
	)
	return out
}

// ourProfiles returns the URLs of our profiles.
func ourProfiles() map[string]bool {
	return map[string]bool{ProfileIndexPatient: true, ProfileConsent: true, ProfileAuditEvent: true,
		ProfileMedicationDispense: true, ProfileSummaryBundle: true, ProfileSummaryComposition: true}
}

func sortedMembers(o map[string]any) []string {
	keys := make([]string, 0, len(o))
	for k := range o {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// objectPaths returns the paths (member names and array indexes) to the
// objects within v, v's own first.
func objectPaths(v any, path []any, out [][]any) [][]any {
	switch x := v.(type) {
	case map[string]any:
		out = append(out, slices.Clone(path))
		for _, k := range sortedMembers(x) {
			out = objectPaths(x[k], append(path, k), out)
		}
	case []any:
		for i, it := range x {
			out = objectPaths(it, append(path, i), out)
		}
	}
	return out
}

func objectAt(v any, path []any) map[string]any {
	for _, step := range path {
		switch s := step.(type) {
		case string:
			v = v.(map[string]any)[s]
		case int:
			v = v.([]any)[s]
		}
	}
	return v.(map[string]any)
}
