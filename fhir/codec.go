package fhir

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/google/fhir/go/fhirversion"
	"github.com/google/fhir/go/jsonformat"
)

// Codec parses FHIR R4 JSON with base validation (google/fhir's validating
// unmarshaller). It keeps the client's bytes: we store and forward JSON, we
// never re-marshal protos (slow, and it rewrites its input).
// A Codec is safe for concurrent use.
type Codec struct {
	u *jsonformat.Unmarshaller
}

// NewCodec returns a Codec for FHIR R4.
func NewCodec() (*Codec, error) {
	u, err := jsonformat.NewUnmarshaller("UTC", fhirversion.R4)
	if err != nil {
		return nil, fmt.Errorf("fhir: new unmarshaller: %w", err)
	}
	u.MaxNestingDepth = 64
	return &Codec{u: u}, nil
}

// Resource is a parsed resource: its type and id, the raw JSON as it came,
// and a generic decoding of it for index terms and inspection.
type Resource struct {
	Type string
	ID   string
	Raw  []byte
	Doc  map[string]any
	// Members are the top-level members of Raw as Members splits them,
	// when what made the Resource split them (Validate and ValidateSome
	// do, from their own decoding); nil otherwise.
	Members []Member
}

// collector gathers the validation errors google/fhir reports.
type collector struct{ issues []Issue }

func (c *collector) ReportValidationError(path string, err error) error {
	c.issues = append(c.issues, validationIssue("error", path, err))
	return nil
}

func (c *collector) ReportValidationWarning(path string, err error) error {
	c.issues = append(c.issues, validationIssue("warning", path, err))
	return nil
}

func validationIssue(severity, path string, err error) Issue {
	msg := err.Error()
	code := "invalid"
	switch {
	case strings.Contains(msg, "missing required"):
		code = "required"
	case strings.Contains(msg, "code"), strings.Contains(msg, "value"), strings.Contains(msg, "reference"):
		code = "value"
	}
	is := Issue{Severity: severity, Code: code, Diagnostics: msg}
	if path != "" {
		is.Expression = []string{path}
	}
	return is
}

// Parse checks that body is one valid FHIR R4 resource, of type wantType
// unless wantType is empty. Malformed JSON, unknown or malformed elements
// and codes outside a required binding (google/fhir reads those as enums,
// so they fail to parse: code "value") are KindInvalid (400); other
// failures of base validation (missing required elements, wrong reference
// types, malformed ids) are KindUnprocessable (422). Each issue names the
// element at fault.
func (c *Codec) Parse(body []byte, wantType string) (*Resource, error) {
	doc, err := decodeObject(body)
	if err != nil {
		return nil, err
	}
	rt, err := resourceType(doc, wantType)
	if err != nil {
		return nil, err
	}
	col := &collector{}
	if _, err := c.u.UnmarshalWithErrorReporter(body, col); err != nil {
		return nil, parseError(rt, err)
	}
	var errs []Issue
	for _, is := range col.issues {
		if is.Severity == "error" {
			errs = append(errs, is)
		}
	}
	if len(errs) > 0 {
		return nil, &Error{Kind: KindUnprocessable, Issues: errs}
	}
	id, _ := doc["id"].(string)
	return &Resource{Type: rt, ID: id, Raw: body, Doc: doc}, nil
}

// resourceType returns doc's resourceType, which must be wantType unless
// that is empty.
func resourceType(doc map[string]any, wantType string) (string, error) {
	rt, _ := doc["resourceType"].(string)
	return rt, checkResourceType(rt, wantType)
}

// checkResourceType checks a resource's resourceType rt ("" when it has
// none) against the type wanted ("" for any).
func checkResourceType(rt, wantType string) error {
	if rt == "" {
		return Errorf(KindInvalid, "structure", "resource has no resourceType").At("resourceType")
	}
	if wantType != "" && rt != wantType {
		return Errorf(KindInvalid, "invalid", "expected a %s resource, got %s", wantType, rt).At("resourceType")
	}
	return nil
}

// decodeObject decodes a JSON object with numbers kept as json.Number.
func decodeObject(body []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, Errorf(KindInvalid, "structure", "body is not valid JSON: %s", jsonSyntaxMessage(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, Errorf(KindInvalid, "structure", "body holds more than one JSON value")
	}
	doc, ok := v.(map[string]any)
	if !ok {
		return nil, Errorf(KindInvalid, "structure", "body is not a JSON object")
	}
	return doc, nil
}

func jsonSyntaxMessage(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("%s at offset %d", se.Error(), se.Offset)
	}
	return err.Error()
}

// parseError turns google/fhir's unmarshal errors (an unexported type we
// read through reflection: Path and Details) into issues.
func parseError(rt string, err error) error {
	var issues []Issue
	rv := reflect.ValueOf(err)
	add := func(v reflect.Value) {
		for v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
			if v.IsNil() {
				return
			}
			v = v.Elem()
		}
		if v.Kind() != reflect.Struct {
			return
		}
		path, details, diag := "", "", ""
		if f := v.FieldByName("Path"); f.IsValid() && f.Kind() == reflect.String {
			path = f.String()
		}
		if f := v.FieldByName("Details"); f.IsValid() && f.Kind() == reflect.String {
			details = f.String()
		}
		if f := v.FieldByName("Diagnostics"); f.IsValid() && f.Kind() == reflect.String {
			diag = f.String()
		}
		if details == "" {
			return
		}
		// An unknown element is a structure error at that element (its
		// name is in Diagnostics); anything else is a bad value.
		is := Issue{Severity: "error", Code: "value", Diagnostics: details}
		if details == "unknown field" {
			is.Code = "structure"
			if name, err := strconv.Unquote(diag); err == nil && name != "" {
				is.Diagnostics = "unknown element " + strconv.Quote(name)
				path = strings.TrimSuffix(path, ".") + "." + name
			}
		}
		if details == "unknown resource type" {
			path = "resourceType"
		}
		if path != "" {
			is.Expression = []string{normalisePath(rt, strings.TrimPrefix(path, "."))}
		}
		issues = append(issues, is)
	}
	if rv.Kind() == reflect.Slice {
		for i := 0; i < rv.Len(); i++ {
			add(rv.Index(i))
		}
	} else {
		add(rv)
	}
	if len(issues) == 0 {
		issues = []Issue{{Severity: "error", Code: "structure", Diagnostics: err.Error()}}
	}
	return &Error{Kind: KindInvalid, Issues: issues, Err: err}
}

// normalisePath makes google/fhir's paths FHIRPath-like: "Patient.foo".
func normalisePath(rt, p string) string {
	if p == "" || p == "resourceType" || p == rt || strings.HasPrefix(p, rt+".") {
		return p
	}
	return rt + "." + strings.TrimPrefix(p, ".")
}

// Meta is what the server sets on a stored version.
type Meta struct {
	ID          string
	VersionID   int64
	LastUpdated time.Time
}

// FormatInstant renders t as a FHIR instant in UTC with millisecond
// precision.
func FormatInstant(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000Z07:00")
}

// jsonString renders s as a JSON string (strconv.Quote would write Go
// escapes such as \x01, which are not JSON), as encoding/json does. A
// string of printable ASCII that encoding/json leaves as it is (no quote,
// backslash or HTML character) is only quoted: meta.source, a base URL,
// is one, set on every resource of a federated answer.
func jsonString(s string) []byte {
	if plainJSONString(s) {
		b := make([]byte, 0, len(s)+2)
		return append(append(append(b, '"'), s...), '"')
	}
	b, err := json.Marshal(s)
	if err != nil {
		panic(err) // cannot happen: a string always marshals
	}
	return b
}

// plainJSONString reports whether encoding/json writes s as it is between
// quotes: printable ASCII without '"', '\\' and the characters it escapes
// for HTML ('<', '>', '&').
func plainJSONString(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 || c > 0x7e, c == '"', c == '\\', c == '<', c == '>', c == '&':
			return false
		}
	}
	return true
}
