package fhir

import (
	"bytes"
	"fmt"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestBaseDeliberateDifferences pins down where Validate departs from
// google/fhir on purpose (base.go lists them): google/fhir's verdict, ours,
// and ours with baseRules{google: true}, which must be google/fhir's.
func TestBaseDeliberateDifferences(t *testing.T) {
	tests := []struct {
		name, body string
		ours       Kind // 0: valid
		why        string
	}{
		{"null in a primitive array with its extension", `{"resourceType":"Patient","name":[{"given":[null,"Jan"],"_given":[{"extension":[{"url":"http://x","valueString":"y"}]},null]}]}`,
			0, "R4 JSON: a null stands for a primitive that has only extensions; google/fhir rejects every null"},
		{"_x array with nulls next to values", `{"resourceType":"Patient","name":[{"given":["Jan"],"_given":[null]}]}`,
			0, "R4 JSON: null in the _ array for a value without extensions"},
		{"code with only extensions", `{"resourceType":"Patient","_language":{"extension":[{"url":"http://x","valueString":"y"}]}}`,
			0, "google/fhir checks the empty string against the code pattern"},
		{"id with only an id", `{"resourceType":"Patient","meta":{"_versionId":{"id":"a"}}}`,
			0, "google/fhir checks the empty string against the id pattern"},
		{"base64Binary with an escaped slash", `{"resourceType":"Patient","photo":[{"data":"aGV\/bG8="}]}`,
			0, `JSON's "\/" is "/": google/fhir checks the raw bytes`},
		{"empty code of a required binding", `{"resourceType":"Patient","gender":""}`,
			KindInvalid, `google/fhir reads "" as the enum's zero value, which is no code`},
		{"contained resource without a required element", `{"resourceType":"MedicationDispense","status":"completed","medicationReference":{"reference":"#rx"},` +
			`"contained":[{"resourceType":"MedicationRequest","id":"rx","status":"active","subject":{"reference":"Patient/p"},"medicationCodeableConcept":{"text":"x"}}]}`,
			KindUnprocessable, "HAPI validates contained resources; google/fhir's validation pass does not enter them"},
		{"contained resource with a malformed id", `{"resourceType":"MedicationDispense","status":"completed","medicationReference":{"reference":"#m"},` +
			`"contained":[{"resourceType":"Medication","id":"m m"}]}`,
			KindUnprocessable, "as above: the id format is checked in the validation pass"},
		{"still invalid: null without a paired value", `{"resourceType":"Patient","name":[{"given":[null],"_given":[null]}]}`,
			KindInvalid, "a null needs a paired value or extension"},
		{"still invalid: null in a lone array", `{"resourceType":"Patient","name":[{"given":["Jan",null]}]}`,
			KindInvalid, "nothing pairs with the null"},
		{"still invalid: null for a single primitive", `{"resourceType":"Patient","birthDate":null}`,
			KindInvalid, "R4 JSON has no null for a single element"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := []byte(tt.body)
			g := googleVerdict(t, body)
			compat := ourVerdict(body)
			if g.kind != compat.kind && !strings.Contains(tt.name, "escaped") {
				// (The walk sees decoded JSON: it cannot read base64Binary
				// google/fhir's way.)
				t.Errorf("with google/fhir's rules: %v, google/fhir: %v", compat, g)
			}
			_, err := MustCodec(t).Validate(body, "")
			o := verdictOf(err)
			if o.kind != tt.ours {
				t.Errorf("ours: %v, want kind %d (%s)", o, tt.ours, tt.why)
			}
			if o.kind == g.kind && !strings.HasPrefix(tt.name, "still") {
				t.Errorf("google/fhir agrees (%v): not a difference", g)
			}
		})
	}
}

// TestBaseVerdicts checks Validate's own verdicts, issue codes and
// expressions on the cases the brief names.
func TestBaseVerdicts(t *testing.T) {
	md := func(extra string) string {
		return `{"resourceType":"MedicationDispense","status":"completed","medicationCodeableConcept":{"text":"x"}` + extra + `}`
	}
	tests := []struct {
		name, body string
		kind       Kind
		code, expr string
	}{
		{"valid", md(``), 0, "", ""},
		{"unknown element", md(`,"foo":1`), KindInvalid, "structure", "MedicationDispense.foo"},
		{"missing status", `{"resourceType":"MedicationDispense","medicationCodeableConcept":{"text":"x"}}`, KindUnprocessable, "required", "MedicationDispense.status"},
		{"missing medication[x]", `{"resourceType":"MedicationDispense","status":"completed"}`, KindUnprocessable, "required", "MedicationDispense.medication"},
		{"status not in the value set", md(`,"status":"done"`), KindInvalid, "value", "MedicationDispense.status"},
		{"two medication[x]", md(`,"medicationReference":{"reference":"Medication/1"}`), KindInvalid, "value", "MedicationDispense"},
		{"array for a single element", md(`,"subject":[{"reference":"Patient/1"}]`), KindInvalid, "value", "MedicationDispense.subject"},
		{"single for an array", md(`,"performer":{"actor":{"reference":"Practitioner/1"}}`), KindInvalid, "value", "MedicationDispense.performer"},
		{"wrong reference type", md(`,"subject":{"reference":"Organization/1"}`), KindUnprocessable, "value", "MedicationDispense.subject"},
		{"bad dateTime", md(`,"whenHandedOver":"2026-02-30T10:00:00Z"`), KindInvalid, "value", "MedicationDispense.whenHandedOver"},
		{"dateTime without zone", md(`,"whenHandedOver":"2026-02-03T10:00:00"`), KindInvalid, "value", "MedicationDispense.whenHandedOver"},
		{"decimal as a string", md(`,"quantity":{"value":"1"}`), KindInvalid, "value", "MedicationDispense.quantity.value"},
		{"positiveInt zero", md(`,"dosageInstruction":[{"timing":{"repeat":{"frequency":0}}}]`), KindInvalid, "value", "MedicationDispense.dosageInstruction[0].timing.repeat.frequency"},
		{"boolean as a string", md(`,"substitution":{"wasSubstituted":"true"}`), KindInvalid, "value", "MedicationDispense.substitution.wasSubstituted"},
		{"bad id", md(`,"id":"a b"`), KindUnprocessable, "invalid", "MedicationDispense.id"},
		{"bad code", md(`,"language":"a  b"`), KindUnprocessable, "invalid", "MedicationDispense.language"},
		{"control character", md(`,"note":[{"authorString":"a\u0001","text":"x"}]`), KindUnprocessable, "invalid", "MedicationDispense.note[0].authorString"},
		{"contained of unknown type", md(`,"contained":[{"resourceType":"Foo"}]`), KindInvalid, "value", "MedicationDispense.contained[0].resourceType"},
		{"contained without resourceType", md(`,"contained":[{"id":"m"}]`), KindInvalid, "value", "MedicationDispense.contained[0]"},
		{"unknown element in contained", md(`,"contained":[{"resourceType":"Medication","foo":1}]`), KindInvalid, "structure", "MedicationDispense.contained[0].foo"},
		{"contained without a required element", md(`,"contained":[{"resourceType":"Medication","id":"m"},{"resourceType":"Observation","id":"o","code":{"text":"x"}}]`),
			KindUnprocessable, "required", "MedicationDispense.contained[1].status"},
		{"contained reference of the wrong type", md(`,"contained":[{"resourceType":"MedicationRequest","id":"rx","status":"active","intent":"order","medicationCodeableConcept":{"text":"x"},"subject":{"reference":"Medication/1"}}]`),
			KindUnprocessable, "value", "MedicationDispense.contained[0].subject"},
		{"extension without url", md(`,"_status":{"extension":[{"valueString":"x"}]}`), KindUnprocessable, "required", "MedicationDispense.status.extension[0].url"},
		{"extension array length", `{"resourceType":"Patient","name":[{"given":["a","b"],"_given":[null]}]}`, KindInvalid, "value", "Patient.name[0].given"},
		{"empty object", `{"resourceType":"Patient","text":{}}`, KindUnprocessable, "required", "Patient.text.status"},
		{"resourceType unknown", `{"resourceType":"Foo"}`, KindInvalid, "value", "resourceType"},
		{"resourceType missing", `{"id":"a"}`, KindInvalid, "structure", "resourceType"},
		{"not JSON", `{"resourceType":`, KindInvalid, "structure", ""},
		{"invalid UTF-8", "{\"resourceType\":\"Patient\",\"id\":\"\xff\"}", KindInvalid, "value", "Patient.id"},
		{"too deep", `{"resourceType":"Patient","extension":[` + strings.Repeat(`{"url":"x","extension":[`, 70) + strings.Repeat(`]}`, 70) + `]}`, KindInvalid, "value", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := MustCodec(t).Validate([]byte(tt.body), "")
			o := verdictOf(err)
			if o.kind != tt.kind {
				t.Fatalf("got %v, want kind %d", o, tt.kind)
			}
			if tt.kind == 0 {
				if res == nil || res.Type != "MedicationDispense" || res.Doc["status"] != "completed" {
					t.Errorf("resource %+v", res)
				}
				return
			}
			for _, is := range o.issues {
				if is.Code == tt.code && (tt.expr == "" || len(is.Expression) > 0 && is.Expression[0] == tt.expr) {
					return
				}
			}
			t.Errorf("no issue %s at %q in %v", tt.code, tt.expr, o)
		})
	}
}

// TestBaseWantType: like Parse, Validate checks the resource type asked for.
func TestBaseWantType(t *testing.T) {
	_, err := MustCodec(t).Validate([]byte(`{"resourceType":"Patient"}`), "Consent")
	if KindOf(err) != KindInvalid {
		t.Fatalf("got %v, want KindInvalid", err)
	}
}

// TestBaseMatchers: the hand-written matchers agree with the value_regex
// annotations of google/fhir's R4 Code and Id, and plainURI never says yes
// to what net/url refuses.
func TestBaseMatchers(t *testing.T) {
	tab, err := loadBaseTable()
	if err != nil {
		t.Fatal(err)
	}
	samples := []string{"", " ", "a", "a b", "a  b", " a", "a ", "a\tb", "a\t\tb", "a\nb", "a\u00a0b", "ÄÖ", "abc-DEF.12",
		strings.Repeat("a", 64), strings.Repeat("a", 65), "a_b", "a/b", "x\x01", "a \u2028b"}
	for _, s := range samples {
		if got, want := validCode(s), tab.codeRE.MatchString(s); got != want {
			t.Errorf("validCode(%q) = %v, value_regex says %v", s, got, want)
		}
		if got, want := validID(s), tab.idRE.MatchString(s); got != want {
			t.Errorf("validID(%q) = %v, value_regex says %v", s, got, want)
		}
	}
	for _, s := range []string{"http://snomed.info/sct", "urn:oid:2.16.840.1", "https://x.nl:8443/a", "http://a b/", "http://[::1]/",
		"http://x/%zz", "a:b", ":b", "1a:b", "http://user@host/", "mailto:a@b", "http://ho^st/", "http:///x", "x", ""} {
		_, err := url.Parse(s)
		if plainURI(s) && err != nil {
			t.Errorf("plainURI(%q) but url.Parse: %v", s, err)
		}
		if validURI(s) != (err == nil) {
			t.Errorf("validURI(%q) = %v, url.Parse: %v", s, validURI(s), err)
		}
	}
}

// google/fhir's patterns for date, dateTime, instant and time
// (jsonformat/internal/jsonpbhelper).
var (
	googleDateRE     = regexp.MustCompile(`^-?[0-9]{4}(-(0[1-9]|1[0-2])(-(0[0-9]|[1-2][0-9]|3[0-1]))?)?$`)
	googleDateTimeRE = regexp.MustCompile(`^-?[0-9]{4}(-(0[1-9]|1[0-2])(-(0[0-9]|[1-2][0-9]|3[0-1])(T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]+)?(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00)))?)?)?$`)
	googleInstantRE  = regexp.MustCompile(`^-?[0-9]{4}-(0[1-9]|1[0-2])-(0[0-9]|[1-2][0-9]|3[0-1])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]+)?(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))$`)
	googleTimeRE     = regexp.MustCompile(`^([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]+)?$`)
)

// googleDate is google/fhir's reading of the four date types: the pattern,
// then each layout it tries in turn.
func googleDate(kind, s string) bool {
	any := func(layouts ...string) bool {
		for _, l := range layouts {
			if parses(l, s) {
				return true
			}
		}
		return false
	}
	switch kind {
	case "date":
		return googleDateRE.MatchString(s) && any(layoutDay, layoutMonth, layoutYear)
	case "dateTime":
		return googleDateTimeRE.MatchString(s) && any(layoutSeconds, layoutSecondsUTC, layoutDay, layoutMonth, layoutYear)
	case "instant":
		return googleInstantRE.MatchString(s) && any(layoutSecondsUTC, layoutSeconds)
	}
	return googleTimeRE.MatchString(s) && any(layoutTime)
}

var dateSamples = []string{"", "2021", "0000", "-2021", "202", "20210", "2021-", "2021-1", "2021-00", "2021-01", "2021-12", "2021-13",
	"2021-02-28", "2021-02-29", "2020-02-29", "2021-02-30", "2021-04-31", "2021-01-00", "2021-01-32", "2021-01-3", "2021-01-01T",
	"2021-01-01T10:00:00Z", "2021-01-01T10:00:00", "2021-01-01T10:00Z", "2021-01-01T24:00:00Z", "2021-01-01T23:59:60Z",
	"2021-01-01T10:00:00.Z", "2021-01-01T10:00:00.123456789123Z", "2021-01-01T10:00:00+01:00", "2021-01-01T10:00:00+14:00",
	"2021-01-01T10:00:00+14:01", "2021-01-01T10:00:00-13:59", "2021-01-01T10:00:00+1:00", "2021-01-01T10:00:00+01:60",
	"2021-01-01T10:00:00+0100", "2021-01-01T10:00:00z", "2021-02-30T10:00:00Z", "-2021-01-01T10:00:00Z", "2021-01T10:00:00Z",
	"10:00:00", "10:00", "23:59:59.5", "24:00:00", "10:00:00.", "10:00:00Z", "1:00:00", "10:60:00", "2021-01-01T10:00:00.5+01:00x"}

// TestBaseDates: the hand-written date matchers read as google/fhir does.
func TestBaseDates(t *testing.T) {
	for _, s := range dateSamples {
		for kind, got := range map[string]bool{"date": validDate(s), "dateTime": validDateTime(s), "instant": validInstant(s), "time": validTime(s)} {
			if want := googleDate(kind, s); got != want {
				t.Errorf("%s %q: %v, google/fhir %v", kind, s, got, want)
			}
		}
	}
}

// FuzzBaseDates compares the date matchers with google/fhir's reading.
func FuzzBaseDates(f *testing.F) {
	for _, s := range dateSamples {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for kind, got := range map[string]bool{"date": validDate(s), "dateTime": validDateTime(s), "instant": validInstant(s), "time": validTime(s)} {
			if want := googleDate(kind, s); got != want {
				t.Errorf("%s %q: %v, google/fhir %v", kind, s, got, want)
			}
		}
	})
}

// TestDecodeFast: the fast decoder gives encoding/json's document, or
// declines.
func TestDecodeFast(t *testing.T) {
	inputs := []string{`{}`, `{"a":1}`, ` {"a":[1,2.5e-3,-0,"x",true,false,null,{}]} `, `{"a":"\u00e9\ud83d\ude00\ud800x\"\\\/\b\f\n\r\t"}`,
		`{"a":1,"a":2}`, `{"a":"\ud800\u0041"}`, `{"a":01}`, `{"a":1.}`, `{"a":"x`, `{"a":1}{}`, `[1]`, `{"a":tru}`, "{\"a\":\"\x01\"}",
		"{\"a\":\"\xff\"}", `{"a":"\uZZZZ"}`, `{"a" 1}`, `{"a":1,}`, `{"a":[1,]}`,
		`{"a":1,"b":{"c":1,"c":[2]},"a":{"d":null}}`, `{"\u0061":1,"b":"\n","a":2,"\u0062":[3]}`, manyKeys(40)}
	for _, path := range corpusFiles(t)[:20] {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		inputs = append(inputs, string(b))
	}
	for _, in := range inputs {
		checkDecodeFast(t, []byte(in))
	}
}

// manyKeys is an object of n members whose keys repeat (k0 to k{n/2-1},
// twice), large enough for appendUnique to index them with a map.
func manyKeys(n int) string {
	var b strings.Builder
	b.WriteByte('{')
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"k%d":%d`, i%(n/2), i)
	}
	b.WriteByte('}')
	return b.String()
}

// repeatedKey returns a key that an object within v holds twice, or "".
func repeatedKey(d *jsonDecoder, v jval) string {
	switch v.kind {
	case jObject:
		seen := map[string]bool{}
		for _, p := range d.members(v) {
			k := d.key(p)
			if seen[k] {
				return k
			}
			seen[k] = true
			if k := repeatedKey(d, p.v); k != "" {
				return k
			}
		}
	case jArray:
		for _, e := range d.elems(v) {
			if k := repeatedKey(d, e); k != "" {
				return k
			}
		}
	}
	return ""
}

func checkDecodeFast(t *testing.T, body []byte) {
	t.Helper()
	d := getDecoder()
	defer d.release()
	fast, ok := d.decodeFast(body)
	slow, err := decodeObject(body)
	if !ok {
		return // declined: Validate uses decodeObject
	}
	if err != nil {
		t.Fatalf("decodeFast took %q, which encoding/json refuses: %v", body, err)
	}
	if got := d.toAny(fast); !reflect.DeepEqual(got, slow) {
		t.Fatalf("decodeFast(%q) = %v, encoding/json: %v", body, got, slow)
	}
	if k := repeatedKey(d, fast); k != "" {
		t.Fatalf("decodeFast(%q) holds key %q twice in one object", body, k)
	}
	if want, err := Members(body); err != nil || !reflect.DeepEqual(d.topMembers(fast), want) {
		t.Fatalf("decodeFast(%q) split the root into %q, Members: %q (%v)", body, d.topMembers(fast), want, err)
	}
	d.reset()
	if again := d.fromAny(slow); !reflect.DeepEqual(d.toAny(again), slow) {
		t.Fatalf("fromAny(%v) does not turn back into it", slow)
	}
}

// FuzzBaseValidation compares Validate (with google/fhir's rules) and
// google/fhir on arbitrary input, seeded with every fixture of the
// repository; the normal test run runs the seeds. It also checks the fast
// decoder against encoding/json.
func FuzzBaseValidation(f *testing.F) {
	for _, path := range corpusFiles(f) {
		b, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		if len(b) < 20000 {
			f.Add(b)
		}
	}
	f.Add([]byte(`{"resourceType":"Patient","name":[{"given":[null,"a"],"_given":[{"id":"x"},null]}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		checkDecodeFast(t, body)
		checkResourceMembers(t, body)
		if _, err := decodeObject(body); err != nil {
			return
		}
		if d := differ(t, body); d != "" {
			// google/fhir reads base64Binary before unescaping (difference 3).
			if bytes.Contains(body, []byte(`\`)) && strings.Contains(d, "binary") {
				return
			}
			t.Fatalf("%s\nbody: %s", d, body)
		}
	})
}

// checkResourceMembers: a resource Validate accepts has the members
// Members splits it into, and the Node ValidateSome visits reads as
// encoding/json decodes it.
func checkResourceMembers(t *testing.T, body []byte) {
	t.Helper()
	var seen any
	var visited []Member
	res, err := validateBase(body, "", baseRules{}, keepNoMember, func(n Node, ms []Member) { seen, visited = nodeAny(n), ms })
	if err != nil {
		if seen != nil {
			t.Fatalf("Validate(%q) visited a resource it refused", body)
		}
		return
	}
	if want, err := Members(body); err != nil || !reflect.DeepEqual(res.Members, want) {
		t.Fatalf("Validate(%q) split it into %q, Members: %q (%v)", body, res.Members, want, err)
	}
	if !reflect.DeepEqual(visited, res.Members) {
		t.Fatalf("Validate(%q) visited with members %q, not its own %q", body, visited, res.Members)
	}
	if want, err := decodeObject(body); err != nil || !reflect.DeepEqual(seen, want) {
		t.Fatalf("Validate(%q) visited %v, encoding/json: %v (%v)", body, seen, want, err)
	}
}

// nodeAny turns n into what encoding/json decodes, through Node's
// methods where it has them.
func nodeAny(n Node) any {
	switch {
	case n.IsObject():
		m := make(map[string]any, n.Len())
		for i := range n.Len() {
			k, v := n.Member(i)
			if got, ok := n.Get(k); !ok || got != v {
				panic("Get(" + k + ") is not the member")
			}
			m[k] = nodeAny(v)
		}
		return m
	case n.IsArray():
		a := make([]any, n.Len())
		for i := range a {
			a[i] = nodeAny(n.Elem(i))
		}
		return a
	case n.IsNull():
		return nil
	}
	if s, ok := n.Str(); ok {
		return s
	}
	return n.d.toAny(n.v) // a number or a boolean
}

func keepNoMember(string, string) bool { return false }

// TestValidateSplitsAsMembers: the members a valid resource's Resource
// holds are Members', on every fixture and its mutations (some valid,
// with keys repeated, escaped or in another case).
func TestValidateSplitsAsMembers(t *testing.T) {
	perSite, sites := 3, 100
	if testing.Short() || raceDetector {
		perSite, sites = 1, 25
	}
	valid := 0
	for _, path := range corpusFiles(t) {
		body, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		bodies := [][]byte{body, []byte("  " + string(body) + "\n")}
		if doc, err := decodeAnyNumber(body); err == nil {
			for _, m := range mutations(doc, perSite, sites) {
				bodies = append(bodies, m.body)
			}
		}
		for _, b := range bodies {
			if _, err := validateBase(b, "", baseRules{}, nil, nil); err == nil {
				valid++
			}
			checkResourceMembers(t, b)
		}
	}
	if valid < 100 {
		t.Errorf("only %d valid bodies: the comparison says little", valid)
	}
}

func TestValidateSomeKeepsOnlyWhatIsAsked(t *testing.T) {
	body := []byte(`{"resourceType":"Patient","id":"p1","active":true,"gender":"female"}`)
	var asked []string
	res, err := MustCodec(t).ValidateSome(body, "", func(rt, key string) bool {
		asked = append(asked, rt+"."+key)
		return key == "gender"
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Doc) != 2 || res.Doc["gender"] != "female" || res.Doc["resourceType"] != "Patient" {
		t.Errorf("Doc = %v, want resourceType and gender only", res.Doc)
	}
	if res.ID != "p1" {
		t.Errorf("ID = %q, want p1", res.ID)
	}
	slices.Sort(asked)
	if want := []string{"Patient.active", "Patient.gender", "Patient.id"}; !slices.Equal(asked, want) {
		t.Errorf("keep asked about %v, want %v", asked, want)
	}
	if _, err := MustCodec(t).ValidateSome([]byte(`{"resourceType":"Patient","gender":"x"}`), "", func(string, string) bool { return false }, nil); err == nil {
		t.Error("an invalid resource passed ValidateSome")
	}
}

// BenchmarkValidate is base validation of a typical MedicationDispense
// from a pharmacy system (1.6 kB), as a federated query checks each one a
// source returns:
//
//	go test ./fhir -run '^$' -bench BenchmarkValidate -benchtime 20000x
func BenchmarkValidate(b *testing.B) {
	body, err := os.ReadFile("../profiles/testdata/md-valid.json")
	if err != nil {
		b.Fatal(err)
	}
	c := MustCodec(b)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.Run("whole", func(b *testing.B) {
		for b.Loop() {
			if _, err := c.Validate(body, ""); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("some", func(b *testing.B) { // as profiles asks for a MedicationDispense
		keep := func(_, k string) bool { return k == "meta" || k == "subject" || k == "status" }
		for b.Loop() {
			if _, err := c.ValidateSome(body, "", keep, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestValidDay: the dates the pattern takes are the ones time.Parse takes
// with google/fhir's layout, on every month and day of years that are and
// are not leap years.
func TestValidDay(t *testing.T) {
	for _, year := range []string{"0000", "0001", "0004", "0100", "1900", "2000", "2021", "2024", "9999"} {
		for month := 0; month <= 13; month++ {
			for day := 0; day <= 39; day++ {
				s := fmt.Sprintf("%s-%02d-%02d", year, month, day)
				if got, want := validDate(s), googleDate("date", s); got != want {
					t.Errorf("date %q: %v, google/fhir %v", s, got, want)
				}
				for _, clock := range []string{"T10:00:00Z", "T23:59:59.5+01:00", "T00:00:00-14:00"} {
					if got, want := validDateTime(s+clock), googleDate("dateTime", s+clock); got != want {
						t.Errorf("dateTime %q: %v, google/fhir %v", s+clock, got, want)
					}
				}
			}
		}
	}
}
