package fhir

import (
	"errors"
	"fmt"
)

// Kind is the category of an error. Kinds are mapped to an HTTP status in
// exactly one place, at the edge (package routing); nothing below it knows
// about HTTP.
type Kind int

// The error kinds, after Blaze's anomaly categories, refined where FHIR asks
// for a distinct status.
const (
	KindFault         Kind = iota // 500: a bug or an unexpected failure; details are never shown
	KindInvalid                   // 400: malformed request, bad search parameter
	KindUnauthorized              // 401: no usable identity
	KindForbidden                 // 403: identity known, access denied
	KindNotFound                  // 404
	KindNotAcceptable             // 406: unsupported Accept / _format
	KindConflict                  // 409: version conflict
	KindGone                      // 410: deleted
	KindPrecondition              // 412: If-Match mismatch, multiple matches
	KindTooLarge                  // 413: body over the limit
	KindUnsupported               // 415: unsupported Content-Type
	KindUnprocessable             // 422: fails validation or business rules
	KindTooMany                   // 429: overload
	KindUnavailable               // 503: a dependency is down
	KindNotAllowed                // 405: interaction not supported on this type
)

// Issue is one OperationOutcome issue.
type Issue struct {
	Severity    string   // fatal | error | warning | information
	Code        string   // the IssueType code: invalid, structure, required, value, not-found, ...
	Diagnostics string   // human readable; never a BSN or medical content
	Expression  []string // FHIRPath of the element at fault
}

// Error is an error with a kind and the issues a client sees. The wrapped
// cause (if any) is for logs only and never reaches the client for
// KindFault.
type Error struct {
	Kind   Kind
	Issues []Issue
	Err    error
}

func (e *Error) Error() string {
	msg := ""
	if len(e.Issues) > 0 {
		msg = e.Issues[0].Code + ": " + e.Issues[0].Diagnostics
	}
	if e.Err != nil {
		if msg != "" {
			msg += ": "
		}
		msg += e.Err.Error()
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf builds an Error of kind with a single error-severity issue.
func Errorf(kind Kind, code, format string, args ...any) *Error {
	return &Error{Kind: kind, Issues: []Issue{{Severity: "error", Code: code, Diagnostics: fmt.Sprintf(format, args...)}}}
}

// At adds a FHIRPath expression to the first issue and returns e.
func (e *Error) At(expression ...string) *Error {
	if len(e.Issues) > 0 {
		e.Issues[0].Expression = append(e.Issues[0].Expression, expression...)
	}
	return e
}

// Wrap sets the cause of e and returns e.
func (e *Error) Wrap(err error) *Error {
	e.Err = err
	return e
}

// AsError returns the *Error in err's chain, or a fault wrapping err.
func AsError(err error) *Error {
	var fe *Error
	if errors.As(err, &fe) {
		return fe
	}
	return &Error{Kind: KindFault, Issues: []Issue{{Severity: "error", Code: "exception", Diagnostics: "internal error"}}, Err: err}
}

// KindOf reports the kind of err (KindFault when err carries none).
func KindOf(err error) Kind { return AsError(err).Kind }
