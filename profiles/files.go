package profiles

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/schakelpunt/schakelpunt/fhir"
)

// ValidateFiles is `schakelpunt validate [--profile URL] FILE...`: it
// validates each file (one resource in FHIR JSON) as Validate does and
// prints, per file, "OK" or its issues, one a line:
//
//	testdata/patient.json: error structure Patient.name: Patient.name is not allowed (max 0): ...
//
// ok is false when any file has an error (or cannot be read); err is set
// only when writing to w fails or ctx ends.
func ValidateFiles(ctx context.Context, v *Validator, w io.Writer, profileURL string, files ...string) (ok bool, err error) {
	ok = true
	for _, name := range files {
		if err := ctx.Err(); err != nil {
			return false, fmt.Errorf("profiles: validate files: %w", err)
		}
		body, rerr := os.ReadFile(name)
		var issues []fhir.Issue
		if rerr != nil {
			issues = []fhir.Issue{{Severity: "fatal", Code: "exception", Diagnostics: rerr.Error()}}
		} else {
			issues = v.Validate(ctx, body, profileURL)
		}
		if HasErrors(issues) {
			ok = false
		}
		if err := writeIssues(w, name, issues); err != nil {
			return false, fmt.Errorf("profiles: write report: %w", err)
		}
	}
	return ok, nil
}

func writeIssues(w io.Writer, name string, issues []fhir.Issue) error {
	if !HasErrors(issues) && len(issues) == 0 {
		_, err := fmt.Fprintf(w, "%s: OK\n", name)
		return err
	}
	if !HasErrors(issues) {
		if _, err := fmt.Fprintf(w, "%s: OK with %d warning(s)\n", name, len(issues)); err != nil {
			return err
		}
	}
	for _, is := range issues {
		at := strings.Join(is.Expression, ", ")
		if at != "" {
			at = " " + at
		}
		if _, err := fmt.Fprintf(w, "%s: %s %s%s: %s\n", name, is.Severity, is.Code, at, is.Diagnostics); err != nil {
			return err
		}
	}
	return nil
}
