package fhir

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// fixtureBundle is a searchset of every fixture under testdata/resources
// (as written, white space included), with the entry elements Marshal
// writes in all their combinations.
func fixtureBundle(tb testing.TB) *Bundle {
	tb.Helper()
	names, err := filepath.Glob(filepath.Join("testdata", "resources", "*.json"))
	if err != nil || len(names) == 0 {
		tb.Fatalf("fixtures: %v", err)
	}
	total := 7
	b := NewBundle("searchset", time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC))
	b.ID, b.Total, b.Meta = "page-1", &total, &BundleMeta{LastUpdated: "2026-11-23T12:00:00Z"}
	b.Link = []BundleLink{{Relation: "self", URL: "https://sp.example/fhir/Consent?a=1&b=<2>"}}
	for i, name := range names {
		raw, err := os.ReadFile(name)
		if err != nil {
			tb.Fatal(err)
		}
		e := BundleEntry{FullURL: "https://sp.example/fhir/X/" + filepath.Base(name), Resource: raw}
		switch i % 3 {
		case 0:
			e.Search = &EntrySearch{Mode: "match"}
		case 1:
			e.Request = &EntryRequest{Method: "PUT", URL: "X/1"}
			e.Response = &EntryResponse{Status: "201 Created", Location: "X/1/_history/1", Etag: `W/"1"`}
		}
		b.Entry = append(b.Entry, e)
	}
	b.Entry = append(b.Entry, BundleEntry{Response: &EntryResponse{Status: "204 No Content"}},
		BundleEntry{FullURL: "urn:uuid:1", Resource: OperationOutcome(Issue{Severity: "warning", Code: "invalid", Diagnostics: `"quoted" & <tagged>`}),
			Search: &EntrySearch{Mode: "outcome"}})
	return b
}

// TestBundleMarshal holds Marshal to json.Marshal: the same document,
// with the resources as they were written instead of compacted.
func TestBundleMarshal(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    *Bundle
	}{
		{"fixtures", fixtureBundle(t)},
		{"no entries", NewBundle("history", time.Unix(0, 0))},
		{"empty entry", &Bundle{ResourceType: "Bundle", Type: "batch-response", Entry: []BundleEntry{{}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.b.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			want, err := json.Marshal(tc.b)
			if err != nil {
				t.Fatal(err)
			}
			var compact bytes.Buffer
			if err := json.Compact(&compact, got); err != nil {
				t.Fatalf("not JSON: %v\n%s", err, got)
			}
			if !bytes.Equal(compact.Bytes(), want) {
				t.Errorf("got (compacted)\n%s\nwant\n%s", compact.Bytes(), want)
			}
		})
	}
}

// BenchmarkBundleMarshal compares Marshal with json.Marshal on a
// searchset of the fixtures.
//
//	go test ./fhir -run '^$' -bench BundleMarshal
func BenchmarkBundleMarshal(b *testing.B) {
	bundle := fixtureBundle(b)
	for _, bb := range []struct {
		name string
		f    func() ([]byte, error)
	}{{"json.Marshal", func() ([]byte, error) { return json.Marshal(bundle) }}, {"Marshal", bundle.Marshal}} {
		b.Run(bb.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := bb.f(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
