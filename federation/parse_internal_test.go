package federation

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"testing/iotest"
	"time"

	"github.com/schakelpunt/schakelpunt/fhir"
)

// TestParseSearchset holds the span-splitting reader of a source's answer
// to what the searchset means: match entries (search.mode match or
// absent) in order, the next link, garbage for anything that is not a
// searchset Bundle.
func TestParseSearchset(t *testing.T) {
	const md = `{"resourceType":"MedicationDispense","id":"1"}`
	for _, tc := range []struct {
		name, body string
		want       page
		err        error
	}{
		{"matches, outcome left out, next link",
			`{"resourceType":"Bundle","type":"searchset","link":[{"relation":"self","url":"s"},{"relation":"next","url":"n"}],
			  "entry":[{"fullUrl":"u1","resource":` + md + `,"search":{"mode":"match"}},
			           {"fullUrl":"u2","resource":{"resourceType":"OperationOutcome"},"search":{"mode":"outcome"}},
			           {"resource":` + md + `, "fullUrl" : "u3"}]}`,
			page{entries: []entry{{FullURL: "u1", Resource: []byte(md)}, {FullURL: "u3", Resource: []byte(md)}}, next: "n"}, nil},
		{"no entries", `{"type":"searchset","resourceType":"Bundle","total":0}`, page{}, nil},
		{"entry null", `{"type":"searchset","resourceType":"Bundle","entry":null}`, page{}, nil},
		{"a resource that is not an object is kept for the check to refuse",
			`{"resourceType":"Bundle","type":"searchset","entry":[{"fullUrl":"u","resource":5}]}`,
			page{entries: []entry{{FullURL: "u", Resource: []byte("5")}}}, nil},
		{"not JSON", `<html>oops`, page{}, errGarbage},
		{"truncated", `{"resourceType":"Bundle","type":"searchset","entry":[`, page{}, errGarbage},
		{"not a Bundle", `{"resourceType":"OperationOutcome","type":"searchset"}`, page{}, errGarbage},
		{"not a searchset", `{"resourceType":"Bundle","type":"document"}`, page{}, errGarbage},
		{"an array", `[1]`, page{}, errGarbage},
		{"an entry that is not an object", `{"resourceType":"Bundle","type":"searchset","entry":[1]}`, page{}, errGarbage},
		{"links of the wrong shape", `{"resourceType":"Bundle","type":"searchset","link":{"url":1}}`, page{}, errGarbage},
		{"a search of the wrong shape", `{"resourceType":"Bundle","type":"searchset","entry":[{"search":"match"}]}`, page{}, errGarbage},
		{"a fullUrl that is not a string is kept for the check to refuse",
			`{"resourceType":"Bundle","type":"searchset","entry":[{"fullUrl":7,"resource":` + md + `}]}`,
			page{entries: []entry{{Resource: []byte(md)}}}, nil},
		{"malformed JSON in a member not read", `{"resourceType":"Bundle","type":"searchset","meta":{"x" 1}}`, page{}, errGarbage},
		{"malformed JSON in an entry member not read", `{"resourceType":"Bundle","type":"searchset","entry":[{"request":[1,],"resource":` + md + `}]}`, page{}, errGarbage},
		{"malformed JSON in an outcome entry's resource",
			`{"resourceType":"Bundle","type":"searchset","entry":[{"resource":{"a":tru},"search":{"mode":"outcome"}}]}`, page{}, errGarbage},
		{"a missing comma between entries", `{"resourceType":"Bundle","type":"searchset","entry":[{"resource":` + md + `} {"resource":` + md + `}]}`, page{}, errGarbage},
		{"something after the Bundle", `{"resourceType":"Bundle","type":"searchset"} {}`, page{}, errGarbage},
		{"a search with a score and a null mode is a match",
			`{"resourceType":"Bundle","type":"searchset","link":null,"entry":[{"fullUrl":"u","resource":` + md + `,"search":{"score":0.5,"mode":null,"extension":[{"url":"x"}]}}]}`,
			page{entries: []entry{{FullURL: "u", Resource: []byte(md)}}}, nil},
		{"a mode that is not a string", `{"resourceType":"Bundle","type":"searchset","entry":[{"resource":` + md + `,"search":{"mode":1}}]}`, page{}, errGarbage},
		{"a link relation that is not a string", `{"resourceType":"Bundle","type":"searchset","link":[{"relation":["next"],"url":"n"}]}`, page{}, errGarbage},
		{"malformed JSON beside the mode", `{"resourceType":"Bundle","type":"searchset","entry":[{"resource":` + md + `,"search":{"mode":"match","score":.5}}]}`, page{}, errGarbage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseSearchset([]byte(tc.body))
			if !errors.Is(err, tc.err) {
				t.Fatalf("error %v, want %v", err, tc.err)
			}
			if len(got.entries) == 0 {
				got.entries = nil
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// typicalDispense is the profiles' typical MedicationDispense fixture,
// compact, as sources send it.
func typicalDispense(tb testing.TB) []byte {
	tb.Helper()
	md, err := os.ReadFile(filepath.Join("..", "profiles", "testdata", "md-valid.json"))
	if err != nil {
		tb.Fatal(err)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, md); err != nil {
		tb.Fatal(err)
	}
	return compact.Bytes()
}

// BenchmarkParseSearchset reads a searchset of 20 typical dispenses.
//
//	go test ./federation -run '^$' -bench ParseSearchset
func BenchmarkParseSearchset(b *testing.B) {
	md := typicalDispense(b)
	bundle := fhir.NewBundle("searchset", time.Unix(0, 0))
	for i := range 20 {
		bundle.Entry = append(bundle.Entry, fhir.BundleEntry{FullURL: fmt.Sprintf("https://bron.example/fhir/MedicationDispense/%d", i),
			Resource: md, Search: &fhir.EntrySearch{Mode: "match"}})
	}
	body, err := bundle.Marshal()
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		p, err := parseSearchset(body)
		if err != nil || len(p.entries) != 20 {
			b.Fatal(err, len(p.entries))
		}
	}
}

// FuzzParseSearchset: an answer is read only when it is valid JSON, except
// inside the match entries' resources, which validation reads whole; and
// it reads what splitting it level by level read (spanParseSearchset),
// except that a key given twice makes it garbage.
func FuzzParseSearchset(f *testing.F) {
	md := `{"resourceType":"MedicationDispense","id":"1"}`
	for _, s := range []string{
		`{"resourceType":"Bundle","type":"searchset","link":[{"relation":"next","url":"n"}],"entry":[{"fullUrl":"u1","resource":` + md + `,"search":{"mode":"match"}}]}`,
		`{"resourceType":"Bundle","type":"searchset","total":0,"meta":{"lastUpdated":"2026-01-01T00:00:00Z"}}`,
		`{"resourceType":"Bundle","type":"searchset","entry":[{"resource":{},"search":{"mode":"include"}}]}`,
		` { "resourceType" : "Bundle" , "type":"searchset","link":null,"entry":[ {"fullUrl":1,"resource":` + md + `} ] } `,
		`{"resourceType":"Bundle","type":"searchset","entry":[{"resource":` + md + `,"resource":{}}]}`,
		`{"resourc\u0065Type":"Bundle","type":"searchset","entry":null,"link":[{"relation":null,"url":"x"},{"relation":"next","url":"y"}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := parseSearchset(body)
		ref, refErr := spanParseSearchset(body)
		switch {
		case err != nil && refErr == nil:
			if c := (&cursor{b: body}); !hasDuplicateKey(c) {
				t.Fatalf("refused an answer the reference read: %q", body)
			}
		case err == nil && refErr != nil:
			t.Fatalf("read an answer the reference refused: %q", body)
		case err == nil && (p.next != ref.next || len(p.entries) != len(ref.entries) || (len(p.entries) > 0 && !reflect.DeepEqual(p.entries, ref.entries))):
			t.Fatalf("%q:\nread      %+v\nreference %+v", body, p, ref)
		}
		if err != nil {
			return
		}
		for _, en := range p.entries {
			if !json.Valid(en.Resource) {
				return // validation refuses it
			}
		}
		if !json.Valid(body) {
			t.Fatalf("read an answer that is not JSON: %q", body)
		}
	})
}

// TestReadAll: the body is read whole whatever length the answer
// announced, and a read error is passed on.
func TestReadAll(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789"), 1000)
	for _, tc := range []struct {
		name     string
		n, limit int64
	}{
		{"announced", int64(len(body)), 1 << 20},
		{"unknown", -1, 1 << 20},
		{"announced short", 10, 1 << 20},
		{"announced long", int64(len(body)) * 3, 1 << 20},
		{"announced beyond the limit", int64(len(body)), 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readAll(iotest.OneByteReader(bytes.NewReader(body)), tc.n, tc.limit)
			if err != nil || !bytes.Equal(got, body) {
				t.Fatalf("read %d bytes, %v; want %d", len(got), err, len(body))
			}
		})
	}
	t.Run("error", func(t *testing.T) {
		if _, err := readAll(iotest.ErrReader(errTimeout), 10, 100); !errors.Is(err, errTimeout) {
			t.Fatalf("error %v, want %v", err, errTimeout)
		}
	})
}

// BenchmarkCheckShape is what check did to a dispense besides
// validating it: split its members, read its identity and date, and set
// meta.source. check now reads the members the validator split while
// decoding, and splits only when it was not handed them; BenchmarkCheck
// is the whole of it.
//
//	go test ./federation -run '^$' -bench CheckShape -benchmem
func BenchmarkCheckShape(b *testing.B) {
	body := typicalDispense(b)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		ms, err := fhir.Members(body)
		if err != nil {
			b.Fatal(err)
		}
		if _, _, _, ok := identity(ms); !ok {
			b.Fatal("no identity")
		}
		if _, err := fhir.SetMetaSource(body, ms, "https://bron.example/fhir"); err != nil {
			b.Fatal(err)
		}
		_ = dateOf(ms, "whenHandedOver")
	}
}

// spanParseSearchset is the parseSearchset that split the answer level
// by level (the reference of FuzzParseSearchset): it returns the match entries of a searchset and its next
// link. The answer is split by byte spans (fhir.Members, Elements), which
// check its syntax as they go, and is not decoded: each match entry's
// resource is kept as the source wrote it, to be checked on its own
// (validation reads all of it); every other value is checked here.
// Decoding the whole Bundle was a tenth of a federated query's CPU, and
// checking it whole first (json.Valid) another twentieth.
func spanParseSearchset(body []byte) (page, error) {
	top, err := fhir.Members(body)
	if err != nil {
		return page{}, errGarbage
	}
	var p page
	var isBundle, isSearchset bool
	for _, m := range top {
		ok := true
		switch m.Key {
		case "resourceType":
			var s string
			s, ok = fhir.StringValue(m.Value)
			isBundle = s == "Bundle"
		case "type":
			var s string
			s, ok = fhir.StringValue(m.Value)
			isSearchset = s == "searchset"
		case "link":
			p.next, ok = spanNextLink(m.Value)
		case "entry":
			p.entries, err = spanMatchEntries(m.Value)
			ok = err == nil
		default:
			ok = json.Valid(m.Value)
		}
		if !ok {
			return page{}, errGarbage
		}
	}
	if !isBundle || !isSearchset {
		return page{}, errGarbage
	}
	return p, nil
}

// matchEntries returns the entries of a searchset's entry array whose
// search.mode is match or absent, checking the syntax of all but their
// resources (see parseSearchset).
func spanMatchEntries(list []byte) ([]entry, error) {
	if string(list) == "null" {
		return nil, nil
	}
	els, err := fhir.Elements(list)
	if err != nil {
		return nil, err
	}
	out := make([]entry, 0, len(els))
	for _, el := range els {
		ms, err := fhir.Members(el)
		if err != nil {
			return nil, err
		}
		var en entry
		mode := ""
		for _, m := range ms {
			ok := true
			switch m.Key {
			case "fullUrl": // not a string: the entry is left out later
				if en.FullURL, ok = fhir.StringValue(m.Value); !ok {
					ok = json.Valid(m.Value)
				}
			case "resource":
				en.Resource = m.Value
			case "search":
				var got []string
				got, ok = spanStringMembers(m.Value, "mode")
				if ok {
					mode = got[0]
				}
			default:
				ok = json.Valid(m.Value)
			}
			if !ok {
				return nil, errGarbage
			}
		}
		if mode == "" || mode == "match" {
			out = append(out, en)
		} else if en.Resource != nil && !json.Valid(en.Resource) {
			return nil, errGarbage
		}
	}
	return out, nil
}

// nextLink returns the url of a Bundle's link array's next link
// (checking the array's syntax, see parseSearchset).
func spanNextLink(list []byte) (next string, ok bool) {
	if string(list) == "null" {
		return "", true
	}
	els, err := fhir.Elements(list)
	if err != nil {
		return "", false
	}
	for _, el := range els {
		l, ok := spanStringMembers(el, "relation", "url")
		if !ok {
			return "", false
		}
		if l[0] == "next" {
			next = l[1]
		}
	}
	return next, true
}

// stringMembers reads the string members named keys of a JSON object, in
// the order of keys (a null or absent one reads as ""), checking the
// syntax of the others; ok
// is false when obj is no object, a named member is no string, or
// anything in it is not JSON. It reads what decoding into a struct of
// string fields would, several times faster.
func spanStringMembers(obj []byte, keys ...string) ([]string, bool) {
	ms, err := fhir.Members(obj)
	if err != nil {
		return nil, false
	}
	out := make([]string, len(keys))
	for _, m := range ms {
		i := slices.Index(keys, m.Key)
		switch {
		case i < 0:
			if !json.Valid(m.Value) {
				return nil, false
			}
		case string(m.Value) != "null":
			v, ok := fhir.StringValue(m.Value)
			if !ok {
				return nil, false
			}
			out[i] = v
		}
	}
	return out, true
}

// hasDuplicateKey reports whether an object anywhere in the JSON at c
// (valid up to its resources) gives a key twice, outside the inside of
// strings.
func hasDuplicateKey(c *cursor) bool {
	var dup bool
	var value func() error
	value = func() error {
		c.space()
		if c.i >= len(c.b) {
			return errSyntax
		}
		switch c.b[c.i] {
		case '{':
			err := c.object(func([]byte) error { return value() })
			if errors.Is(err, errDuplicate) {
				dup = true
			}
			return err
		case '[':
			return c.array(value)
		}
		_, err := c.span()
		return err
	}
	_ = value()
	return dup
}
