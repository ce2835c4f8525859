package fhir

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"unicode/utf8"
)

// The differential test: Validate (base.go) against google/fhir's
// jsonformat unmarshaller with its validation pass (Parse), on every JSON
// fixture of the repository and systematic mutations of them. Validate runs
// with baseRules{google: true}, which restores google/fhir's behaviour at
// the three deliberate differences base.go lists; TestBaseDeliberateDifferences
// pins those down.
//
// What must agree: the verdict (valid or not), the kind (400: does not read
// as R4, 422: fails validation) and, for errors of the first phase, the
// element of google/fhir's first error must be among ours. google/fhir
// iterates Go maps, so on a few inputs (keys that fill the same field, such
// as "given": [] and "_given": [{}]) its own verdict depends on the order it
// meets the keys: a disagreement counts only if google/fhir gives the same
// verdict on every one of 100 runs.

// corpusFiles returns every JSON fixture of the repository and our
// StructureDefinitions.
func corpusFiles(tb testing.TB) []string {
	tb.Helper()
	var files []string
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); n == "node_modules" || strings.HasPrefix(n, ".") && path != ".." {
				return filepath.SkipDir
			}
			return nil
		}
		slash := filepath.ToSlash(path)
		if strings.HasSuffix(path, ".json") && (strings.Contains(slash, "/testdata/") || strings.Contains(slash, "profiles/definitions/")) {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	if len(files) < 60 {
		tb.Fatalf("only %d fixtures found: the walk is broken", len(files))
	}
	sort.Strings(files)
	return files
}

// verdict is the outcome of one validation: kind 0 for valid.
type verdict struct {
	kind   Kind
	issues []Issue
}

func (v verdict) String() string {
	if v.kind == 0 {
		return "valid"
	}
	var parts []string
	for _, is := range v.issues {
		parts = append(parts, fmt.Sprintf("%s %s %v", is.Code, is.Diagnostics, is.Expression))
	}
	return fmt.Sprintf("kind %d: %s", v.kind, strings.Join(parts, "; "))
}

func verdictOf(err error) verdict {
	if err == nil {
		return verdict{}
	}
	fe := AsError(err)
	return verdict{kind: fe.Kind, issues: fe.Issues}
}

func googleVerdict(tb testing.TB, body []byte) verdict {
	_, err := MustCodec(tb).Parse(body, "")
	return verdictOf(err)
}

func ourVerdict(body []byte) verdict {
	_, err := validateBase(body, "", baseRules{google: true}, nil, nil)
	return verdictOf(err)
}

// normaliseExpression makes google/fhir's and our paths comparable: no _
// on primitive extensions, no resource type after contained[i] or resource,
// U+FFFD for invalid UTF-8.
func normaliseExpression(e string) string {
	// google/fhir keeps a key's invalid UTF-8; encoding/json (ours) makes
	// it U+FFFD.
	if !utf8.ValidString(e) {
		var b strings.Builder
		for i := 0; i < len(e); {
			r, n := utf8.DecodeRuneInString(e[i:])
			b.WriteRune(r)
			i += n
		}
		e = b.String()
	}
	segs := strings.Split(e, ".")
	out := segs[:0]
	for i, s := range segs {
		s = strings.TrimPrefix(s, "_")
		if i > 0 && s != "" && s[0] >= 'A' && s[0] <= 'Z' {
			prev := segs[i-1]
			if strings.HasPrefix(prev, "contained[") || strings.HasPrefix(prev, "resource") || strings.HasPrefix(prev, "_") {
				continue
			}
		}
		out = append(out, s)
	}
	return strings.Join(out, ".")
}

// agree compares google/fhir's verdict with ours and says how they differ.
func agree(g, o verdict) string {
	if g.kind != o.kind {
		return fmt.Sprintf("google/fhir: %v\nours:        %v", g, o)
	}
	if g.kind != KindInvalid || len(g.issues) == 0 || len(g.issues[0].Expression) == 0 {
		return ""
	}
	want := normaliseExpression(g.issues[0].Expression[0])
	for _, is := range o.issues {
		for _, e := range is.Expression {
			// Ours may name the child at fault (the resourceType, the
			// reference string) where google/fhir names the element; and
			// Codec.Parse puts every unknown resource type at the root's
			// resourceType.
			e = normaliseExpression(e)
			if e == want || strings.HasPrefix(e, want+".") || want == "resourceType" && strings.HasSuffix(e, ".resourceType") {
				return ""
			}
		}
	}
	return fmt.Sprintf("google/fhir's first error is at %s, ours are not\ngoogle/fhir: %v\nours:        %v", want, g, o)
}

// differ returns "" when Validate agrees with google/fhir on body, or when
// google/fhir's own verdict varies between runs on it.
func differ(tb testing.TB, body []byte) string {
	g := googleVerdict(tb, body)
	o := ourVerdict(body)
	d := agree(g, o)
	if d == "" {
		return ""
	}
	for range 100 {
		if again := googleVerdict(tb, body); again.kind != g.kind || agree(again, o) == "" {
			return ""
		}
	}
	return d
}

func TestBaseAgreesOnFixtures(t *testing.T) {
	valid := 0
	for _, path := range corpusFiles(t) {
		t.Run(filepath.ToSlash(path), func(t *testing.T) {
			body, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if d := differ(t, body); d != "" {
				t.Fatal(d)
			}
			if googleVerdict(t, body).kind == 0 {
				valid++
			}
		})
	}
	if valid < 40 {
		t.Errorf("only %d fixtures are valid R4: the comparison says little", valid)
	}
}

// TestBaseAgreesOnMutations mutates every node of every fixture: wrong JSON
// types, bad values for each primitive type, missing and unknown elements,
// arrays for single values and back, upper-case keys, _extensions (with
// nulls), second choice-type alternatives, contained resources.
func TestBaseAgreesOnMutations(t *testing.T) {
	perSite, sites := 3, 100
	switch {
	case os.Getenv("BASE_DIFF_FULL") != "":
		perSite, sites = 12, 400
	case testing.Short() || raceDetector:
		perSite, sites = 1, 25
	}
	type mutant struct {
		path string
		m    mutation
	}
	var all []mutant
	for _, path := range corpusFiles(t) {
		body, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		doc, err := decodeAnyNumber(body)
		if err != nil {
			continue
		}
		for _, m := range mutations(doc, perSite, sites) {
			all = append(all, mutant{path, m})
		}
	}
	// Compared on every core: google/fhir's parser makes this the
	// package's longest test.
	var (
		next     atomic.Int64
		failures atomic.Int64
		wg       sync.WaitGroup
	)
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < len(all); i = int(next.Add(1) - 1) {
				mt := all[i]
				d := differ(t, mt.m.body)
				if d == "" {
					continue
				}
				if n := failures.Add(1); os.Getenv("BASE_DIFF_ALL") != "" {
					t.Errorf("%s: %s", mt.m.name, strings.ReplaceAll(d, "\n", " | "))
				} else if n <= 20 {
					t.Errorf("%s, %s:\n%s\nbody: %.600s", mt.path, mt.m.name, d, mt.m.body)
				}
			}
		})
	}
	wg.Wait()
	cases, failed := len(all), failures.Load()
	t.Logf("%d mutations compared", cases)
	if failed > 0 {
		t.Errorf("%d of %d mutations disagree", failed, cases)
	}
	if cases < 500 {
		t.Errorf("only %d mutations: the generator is broken", cases)
	}
}

func decodeAnyNumber(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	err := dec.Decode(&v)
	return v, err
}

func mustJSON(s string) any {
	v, err := decodeAnyNumber([]byte(s))
	if err != nil {
		panic(s + ": " + err.Error())
	}
	return v
}

// badValues are put in place of every value in turn: wrong JSON types and,
// for each primitive type, values its pattern or range rejects or just
// accepts.
var badValues = func() []any {
	texts := []string{
		`null`, `{}`, `[]`, `""`, `" "`, `"x"`, `"a  b"`, `" a"`, `true`, `"true"`, `0`, `1`, `-1`, `-0`, `1.5`, `1.0`, `1e2`,
		`2147483647`, `2147483648`, `4294967295`, `4294967296`, `-2147483649`, `"1"`,
		`"2021"`, `"2021-02"`, `"2021-02-28"`, `"2021-02-29"`, `"2020-02-29"`, `"2021-02-30"`, `"2021-13-01"`, `"2021-00"`, `"-2021"`, `"0000"`, `"20210228"`,
		`"2021-02-28T10:00:00Z"`, `"2021-02-28T10:00:00.123+01:00"`, `"2021-02-28T10:00Z"`, `"2021-02-28T24:00:00Z"`,
		`"2021-02-28T10:00:60Z"`, `"2021-02-28T10:00:00"`, `"2021-02-28T10:00:00+14:00"`, `"2021-02-28T10:00:00+14:30"`, `"2021-02-28T10:00:00-13:59"`,
		`"10:00:00"`, `"10:00"`, `"25:00:00"`, `"10:00:00.5"`, `"10:00:00Z"`,
		`"urn:oid:1.2.3"`, `"urn:oid:1.02"`, `"urn:oid:3.1"`, `"urn:uuid:c757873d-ec9a-4326-a141-556f43239520"`, `"urn:uuid:C757873D-EC9A-4326-A141-556F43239520"`,
		`"http://example.org/a b"`, `"http://exa mple.org/"`, `"%zz"`, `"http://x/%zz"`, `"http://[::1"`, `":x"`, `"a:b/c"`, `"a/b:c"`, `"http://x:port/"`, `"http://x:8080/p?q=%zz#f"`,
		`"a\u0001b"`, `"tab\there"`, `"line\nbreak"`, `"ÄÖü"`, `"Patient/1"`, `"Organization/o1"`, `"Practitioner/p1/_history/2"`, `"Patient/1/_history"`,
		`"ProcessRequest/1"`, `"#m1"`, `"http://x/fhir/Patient/1"`, `"Medication/m1"`,
		`"completed"`, `"COMPLETED"`, `"Completed"`, `"in-progress"`, `"in_progress"`, `"entered-in-error"`, `"final"`, `"male"`, `"<"`, `"document"`, `"searchset"`,
		`"aGVsbG8="`, `"aGVs bG8="`, `"aGV"`, `"aG Vs bG 8="`,
		strconv.Quote(strings.Repeat("a", 64)), strconv.Quote(strings.Repeat("a", 65)), `"a.b-c"`, `"a_b"`,
		`{"extension":[{"url":"http://x","valueString":"y"}]}`, `{"id":"a"}`, `{"value":"x"}`, `{"url":"http://x"}`,
		`[null]`, `["x"]`, `[{}]`, `[1]`,
		`{"reference":"Patient/1"}`, `{"reference":"Organization/1"}`, `{"reference":"ProcessRequest/1"}`, `{"patientId":{}}`, `{"fragment":"x"}`,
		`{"resourceType":"Patient"}`, `{"coding":[{"system":"http://x","code":"a"}]}`, `{"system":"http://x","code":"a"}`,
	}
	out := make([]any, len(texts))
	for i, s := range texts {
		out[i] = mustJSON(s)
	}
	return out
}()

// extras are siblings added next to a key: its _extension in several
// shapes, an unknown element, a second choice alternative.
var extensionValues = []string{
	`{"extension":[{"url":"http://x","valueString":"y"}]}`, `{"id":"a"}`, `null`, `[null]`, `[{"id":"a"}]`,
	`[{"extension":[{"url":"http://x","valueBoolean":true}]},null]`, `[]`, `{}`, `"x"`, `{"extension":[{"valueString":"y"}]}`,
}

var containedValues = []string{
	`[{"resourceType":"Medication","id":"m1","code":{"text":"x"}}]`,
	`[{"resourceType":"Foo"}]`, `[{"id":"x"}]`, `[{"resourceType":"Patient","link":[{}]}]`, `[{"resourceType":"Patient","gender":"x"}]`,
	`[{"resourceType":"Patient","managingOrganization":{"reference":"Patient/1"}}]`, `[null]`, `{}`, `[{"resourceType":"Patient","contained":[{"resourceType":"Patient"}]}]`,
	`[{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueString":"a","valueBoolean":true}]`,
}

var choiceSuffixes = []string{"Boolean", "String", "Reference", "CodeableConcept", "DateTime", "Quantity", "Foo"}

type mutation struct {
	name string
	body []byte
}

// mutations returns mutated copies of doc: at each node (every so many in
// large documents, at most maxSites), perSite of the bad values (rotating
// through the list) and the structural changes.
func mutations(doc any, perSite, maxSites int) []mutation {
	var out []mutation
	add := func(name string, v any) {
		b, err := json.Marshal(v)
		if err != nil {
			panic(err)
		}
		out = append(out, mutation{name, b})
	}
	var all [][]step
	collectSites(doc, nil, &all)
	// Large Bundles: every stride-th node, at most maxSites.
	sites := all
	if stride := (len(all) + maxSites - 1) / maxSites; stride > 1 {
		sites = nil
		for i := 0; i < len(all); i += stride {
			sites = append(sites, all[i])
		}
	}
	for n, site := range sites {
		where := renderSteps(site)
		for j := 0; j < perSite; j++ {
			bad := badValues[(n*7+j*13)%len(badValues)]
			add(where+" = "+compact(bad), edit(doc, site, func(parent any, last step) any { return setAt(parent, last, bad) }))
		}
		add(where+" wrapped in an array", edit(doc, site, func(p any, l step) any { return setAt(p, l, []any{getAt(p, l)}) }))
		if a, ok := get(doc, site).([]any); ok && len(a) > 0 {
			add(where+" unwrapped", edit(doc, site, func(p any, l step) any { return setAt(p, l, a[0]) }))
			add(where+" with a null", edit(doc, site, func(p any, l step) any { return setAt(p, l, append(slices.Clone(a), nil)) }))
		}
		if len(site) == 0 {
			continue
		}
		last := site[len(site)-1]
		if last.idx >= 0 {
			continue
		}
		add(where+" deleted", edit(doc, site, func(p any, l step) any { delete(p.(map[string]any), l.key); return p }))
		add(where+" upper-case key", edit(doc, site, func(p any, l step) any {
			m := p.(map[string]any)
			v := m[l.key]
			delete(m, l.key)
			m[strings.ToUpper(l.key[:1])+l.key[1:]] = v
			return p
		}))
		for k, ev := range extensionValues {
			if (n+k)%3 != 0 {
				continue
			}
			add(where+" with _"+last.key+" = "+ev, edit(doc, site, func(p any, l step) any {
				p.(map[string]any)["_"+l.key] = mustJSON(ev)
				return p
			}))
		}
		if i := strings.IndexFunc(last.key, func(r rune) bool { return r >= 'A' && r <= 'Z' }); i > 0 {
			suffix := choiceSuffixes[n%len(choiceSuffixes)]
			add(where+" and a second alternative "+suffix, edit(doc, site, func(p any, l step) any {
				p.(map[string]any)[l.key[:i]+suffix] = badValues[n%len(badValues)]
				return p
			}))
		}
	}
	// Objects: unknown elements, contained resources, resourceType.
	for n, site := range sites {
		if _, ok := get(doc, site).(map[string]any); !ok {
			continue
		}
		where := renderSteps(site)
		add(where+" with an unknown element", editNode(doc, site, func(m map[string]any) { m["bogusElement"] = "x" }))
		if _, ok := get(doc, site).(map[string]any)["resourceType"]; ok {
			cv := containedValues[n%len(containedValues)]
			add(where+" contained "+cv, editNode(doc, site, func(m map[string]any) { m["contained"] = mustJSON(cv) }))
			add(where+" without resourceType", editNode(doc, site, func(m map[string]any) { delete(m, "resourceType") }))
			add(where+" resourceType Foo", editNode(doc, site, func(m map[string]any) { m["resourceType"] = "Foo" }))
		}
	}
	return out
}

type step struct {
	key string
	idx int
}

func collectSites(v any, prefix []step, out *[][]step) {
	*out = append(*out, slices.Clone(prefix))
	switch x := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			collectSites(x[k], append(prefix, step{key: k, idx: -1}), out)
		}
	case []any:
		for i, it := range x {
			collectSites(it, append(prefix, step{idx: i}), out)
		}
	}
}

func renderSteps(s []step) string {
	var b strings.Builder
	b.WriteString("$")
	for _, st := range s {
		if st.idx >= 0 {
			fmt.Fprintf(&b, "[%d]", st.idx)
		} else {
			b.WriteString("." + st.key)
		}
	}
	return b.String()
}

func compact(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func deepCopy(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = deepCopy(e)
		}
		return m
	case []any:
		a := make([]any, len(x))
		for i, e := range x {
			a[i] = deepCopy(e)
		}
		return a
	}
	return v
}

func get(v any, path []step) any {
	for _, s := range path {
		if s.idx >= 0 {
			v = v.([]any)[s.idx]
		} else {
			v = v.(map[string]any)[s.key]
		}
	}
	return v
}

func getAt(parent any, last step) any { return get(parent, []step{last}) }

func setAt(parent any, last step, v any) any {
	if last.idx >= 0 {
		parent.([]any)[last.idx] = v
	} else {
		parent.(map[string]any)[last.key] = v
	}
	return parent
}

// edit copies doc and applies f to the parent of the node at path (the
// whole document for the root, whose "parent" f replaces).
func edit(doc any, path []step, f func(parent any, last step) any) any {
	c := deepCopy(doc)
	if len(path) == 0 {
		wrapper := []any{c}
		f(wrapper, step{idx: 0})
		return wrapper[0]
	}
	parent := get(c, path[:len(path)-1])
	f(parent, path[len(path)-1])
	return c
}

func editNode(doc any, path []step, f func(map[string]any)) any {
	c := deepCopy(doc)
	f(get(c, path).(map[string]any))
	return c
}
