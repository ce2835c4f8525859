package fhir

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"testing"
	"time"
)

func TestOperationOutcome(t *testing.T) {
	tests := []struct {
		name   string
		issues []Issue
		want   string
	}{
		{
			name: "no issues is all ok",
			want: `{"resourceType":"OperationOutcome","issue":[{"severity":"information","code":"informational","diagnostics":"All OK"}]}`,
		},
		{
			name:   "one issue",
			issues: []Issue{{Severity: "error", Code: "structure", Diagnostics: `unknown element "foo"`, Expression: []string{"Patient.foo"}}},
			want:   `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"structure","diagnostics":"unknown element \"foo\"","expression":["Patient.foo"]}]}`,
		},
		{
			name: "several issues, empty members left out",
			issues: []Issue{
				{Severity: "error", Code: "required", Diagnostics: "missing scope", Expression: []string{"Consent"}},
				{Severity: "warning", Code: "not-supported"},
			},
			want: `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"required","diagnostics":"missing scope","expression":["Consent"]},{"severity":"warning","code":"not-supported"}]}`,
		},
		{
			name:   "HTML-ish diagnostics stay JSON",
			issues: []Issue{{Severity: "error", Code: "invalid", Diagnostics: "<script>&"}},
			want:   `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"invalid","diagnostics":"\u003cscript\u003e\u0026"}]}`,
		},
	}
	c := MustCodec(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := OperationOutcome(tt.issues...)
			if string(got) != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
			if _, err := c.Parse(got, "OperationOutcome"); err != nil {
				t.Errorf("not a valid R4 OperationOutcome: %v", err)
			}
		})
	}
}

func TestErrorOutcomesAreValid(t *testing.T) {
	// Every issue code this package produces is an R4 IssueType.
	c := MustCodec(t)
	var errs []error
	for _, p := range [][]Param{
		q("foo=1"), q("identifier=|"), q("_count=-1"), make([]Param, MaxParams+1),
		q("identifier=" + string(make([]byte, MaxValueLen+1))),
	} {
		_, err := ParseSearch("Patient", p, false)
		errs = append(errs, err)
	}
	for _, body := range []string{``, `{}`, `{"resourceType":"Consent","status":"active"}`, `{"resourceType":"Patient","foo":1}`, `{"resourceType":"Patient","active":1}`, `{"resourceType":"Patient","id":"a b"}`} {
		_, err := c.Parse([]byte(body), "")
		errs = append(errs, err)
	}
	errs = append(errs, errors.New("boom"))
	for i, err := range errs {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			fe := AsError(err)
			if _, perr := c.Parse(OperationOutcome(fe.Issues...), "OperationOutcome"); perr != nil {
				t.Errorf("issues %+v make an invalid OperationOutcome: %v", fe.Issues, perr)
			}
		})
	}
}

func TestErrorType(t *testing.T) {
	t.Run("Errorf and At", func(t *testing.T) {
		e := Errorf(KindInvalid, "invalid", "bad %s", "value").At("Patient.active", "Patient.gender")
		want := []Issue{{Severity: "error", Code: "invalid", Diagnostics: "bad value", Expression: []string{"Patient.active", "Patient.gender"}}}
		if e.Kind != KindInvalid || !reflect.DeepEqual(e.Issues, want) {
			t.Errorf("%+v", e)
		}
		if e.Error() != "invalid: bad value" {
			t.Errorf("Error() = %q", e.Error())
		}
	})
	t.Run("At without issues", func(t *testing.T) {
		e := (&Error{Kind: KindFault}).At("x")
		if len(e.Issues) != 0 {
			t.Errorf("%+v", e)
		}
	})
	t.Run("Wrap and Unwrap", func(t *testing.T) {
		e := Errorf(KindUnavailable, "transient", "store down").Wrap(io.ErrUnexpectedEOF)
		if !errors.Is(e, io.ErrUnexpectedEOF) {
			t.Error("errors.Is does not see the cause")
		}
		if e.Error() != "transient: store down: unexpected EOF" {
			t.Errorf("Error() = %q", e.Error())
		}
		wrapped := fmt.Errorf("routing: %w", e)
		if AsError(wrapped) != e || KindOf(wrapped) != KindUnavailable {
			t.Error("AsError does not find the *Error in the chain")
		}
	})
	t.Run("cause only", func(t *testing.T) {
		if got := (&Error{Err: io.EOF}).Error(); got != "EOF" {
			t.Errorf("Error() = %q", got)
		}
		if got := (&Error{}).Error(); got != "" {
			t.Errorf("Error() = %q", got)
		}
	})
	t.Run("a plain error is a fault that shows nothing", func(t *testing.T) {
		cause := errors.New("mongo: connection refused to 10.0.0.7")
		fe := AsError(cause)
		if fe.Kind != KindFault || len(fe.Issues) != 1 || fe.Issues[0].Code != "exception" || fe.Issues[0].Diagnostics != "internal error" {
			t.Errorf("%+v", fe)
		}
		if !errors.Is(fe, cause) {
			t.Error("the cause is lost for the log")
		}
		if KindOf(cause) != KindFault || KindOf(nil) != KindFault {
			t.Error("KindOf")
		}
	})
}

func TestBundle(t *testing.T) {
	now := time.Date(2026, 11, 22, 10, 0, 0, 5e6, time.FixedZone("", 3600))
	b := NewBundle("searchset", now)
	if b.ResourceType != "Bundle" || b.Type != "searchset" || b.Timestamp != "2026-11-22T09:00:00.005Z" {
		t.Fatalf("NewBundle = %+v", b)
	}
	total := 2
	b.ID = "b1"
	b.Meta = &BundleMeta{LastUpdated: FormatInstant(now)}
	b.Total = &total
	b.Link = []BundleLink{{Relation: "self", URL: "https://sp.example/fhir/R4/Consent?_page=tok1"}, {Relation: "next", URL: "https://sp.example/fhir/R4/Consent?_page=tok2"}}
	b.Entry = []BundleEntry{
		{FullURL: "https://sp.example/fhir/R4/Consent/c1", Resource: MustRead(t, "resources/consent.json"), Search: &EntrySearch{Mode: "match"}},
		{Resource: OperationOutcome(Issue{Severity: "warning", Code: "not-supported", Diagnostics: "ignored"}), Search: &EntrySearch{Mode: "outcome"}},
	}
	out, err := b.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	res, err := MustCodec(t).Parse(out, "Bundle")
	if err != nil {
		t.Fatalf("not a valid R4 Bundle: %v\n%s", err, out)
	}
	if res.ID != "b1" || res.Doc["total"] != json.Number("2") {
		t.Errorf("doc %v", res.Doc)
	}
	entries := res.Doc["entry"].([]any)
	if len(entries) != 2 {
		t.Fatalf("%d entries", len(entries))
	}
	if r := entries[0].(map[string]any)["resource"].(map[string]any); r["id"] != "c1" || r["resourceType"] != "Consent" {
		t.Errorf("entry 0 resource %v", r)
	}

	t.Run("empty searchset", func(t *testing.T) {
		zero := 0
		b := NewBundle("searchset", now)
		b.Total = &zero
		out, err := b.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		want := `{"resourceType":"Bundle","type":"searchset","timestamp":"2026-11-22T09:00:00.005Z","total":0}`
		if string(out) != want {
			t.Errorf("got  %s\nwant %s", out, want)
		}
		if _, err := MustCodec(t).Parse(out, "Bundle"); err != nil {
			t.Error(err)
		}
	})
	t.Run("transaction response", func(t *testing.T) {
		b := NewBundle("transaction-response", now)
		b.Entry = []BundleEntry{{Response: &EntryResponse{Status: "201 Created", Location: "Consent/c1/_history/1", Etag: `W/"1"`, LastModified: FormatInstant(now)}}}
		out, err := b.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := MustCodec(t).Parse(out, "Bundle"); err != nil {
			t.Errorf("%v\n%s", err, out)
		}
	})
	t.Run("history with requests", func(t *testing.T) {
		b := NewBundle("history", now)
		b.Entry = []BundleEntry{{FullURL: "https://sp.example/fhir/R4/Consent/c1", Resource: MustRead(t, "resources/consent.json"),
			Request:  &EntryRequest{Method: "PUT", URL: "Consent/c1"},
			Response: &EntryResponse{Status: "200"}}}
		out, err := b.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := MustCodec(t).Parse(out, "Bundle"); err != nil {
			t.Errorf("%v\n%s", err, out)
		}
	})
}
