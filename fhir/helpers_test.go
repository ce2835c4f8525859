package fhir

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"
)

// sharedCodec is built once: google/fhir's unmarshaller is costly to make
// and safe for concurrent use.
var sharedCodec = sync.OnceValues(NewCodec)

func MustCodec(tb testing.TB) *Codec {
	tb.Helper()
	c, err := sharedCodec()
	if err != nil {
		tb.Fatalf("NewCodec: %v", err)
	}
	return c
}

// MustRead reads a file under testdata.
func MustRead(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// MustParse parses a fixture under testdata/resources with base
// validation, so the fixtures cannot drift away from R4.
func MustParse(tb testing.TB, name string) *Resource {
	tb.Helper()
	res, err := MustCodec(tb).Parse(MustRead(tb, filepath.Join("resources", name)), "")
	if err != nil {
		tb.Fatalf("fixture %s is not a valid R4 resource: %v (%+v)", name, err, AsError(err).Issues)
	}
	return res
}

// MustRange parses a date that the test knows to be valid.
func MustRange(tb testing.TB, s string) DateRange {
	tb.Helper()
	r, ok := ParseDateRange(s)
	if !ok {
		tb.Fatalf("ParseDateRange(%q) failed", s)
	}
	return r
}

// at is an instant given as RFC 3339, in Unix microseconds.
func at(tb testing.TB, s string) int64 {
	tb.Helper()
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		tb.Fatal(err)
	}
	return t.UnixMicro()
}

// wantErr is the part of a *Error a test asserts on.
type wantErr struct {
	kind Kind
	code string // Issues[0].Code
	expr string // Issues[0].Expression[0]; "-" for none
}

func checkError(tb testing.TB, err error, w wantErr) *Error {
	tb.Helper()
	if err == nil {
		tb.Fatalf("no error, want kind %d code %q", w.kind, w.code)
	}
	var fe *Error
	if !errors.As(err, &fe) {
		tb.Fatalf("error %v (%T) is not a *fhir.Error", err, err)
	}
	if fe.Kind != w.kind {
		tb.Errorf("kind = %d, want %d (%v)", fe.Kind, w.kind, err)
	}
	if len(fe.Issues) == 0 {
		tb.Fatalf("error %v has no issues", err)
	}
	is := fe.Issues[0]
	if is.Code != w.code {
		tb.Errorf("issue code = %q, want %q (%s)", is.Code, w.code, is.Diagnostics)
	}
	if is.Severity != "error" {
		tb.Errorf("issue severity = %q, want error", is.Severity)
	}
	switch {
	case w.expr == "-":
		if len(is.Expression) != 0 {
			tb.Errorf("expression = %q, want none", is.Expression)
		}
	case w.expr != "":
		if !slices.Equal(is.Expression, []string{w.expr}) {
			tb.Errorf("expression = %q, want [%q]", is.Expression, w.expr)
		}
	}
	return fe
}
