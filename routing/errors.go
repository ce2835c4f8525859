package routing

import (
	"errors"
	"log/slog"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/schakelpunt/schakelpunt/fhir"
	"github.com/schakelpunt/schakelpunt/store"
)

// statusOf is the one table from error kind to HTTP status.
var statusOf = map[fhir.Kind]int{
	fhir.KindFault:         http.StatusInternalServerError,
	fhir.KindInvalid:       http.StatusBadRequest,
	fhir.KindUnauthorized:  http.StatusUnauthorized,
	fhir.KindForbidden:     http.StatusForbidden,
	fhir.KindNotFound:      http.StatusNotFound,
	fhir.KindNotAllowed:    http.StatusMethodNotAllowed,
	fhir.KindNotAcceptable: http.StatusNotAcceptable,
	fhir.KindConflict:      http.StatusConflict,
	fhir.KindGone:          http.StatusGone,
	fhir.KindPrecondition:  http.StatusPreconditionFailed,
	fhir.KindTooLarge:      http.StatusRequestEntityTooLarge,
	fhir.KindUnsupported:   http.StatusUnsupportedMediaType,
	fhir.KindUnprocessable: http.StatusUnprocessableEntity,
	fhir.KindTooMany:       http.StatusTooManyRequests,
	fhir.KindUnavailable:   http.StatusServiceUnavailable,
}

// asFHIRError maps any error to a *fhir.Error: store sentinels become
// their kinds, anything unknown a fault.
func asFHIRError(err error) *fhir.Error {
	var fe *fhir.Error
	if errors.As(err, &fe) {
		return fe
	}
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return fhir.Errorf(fhir.KindTooLarge, "too-long", "request body exceeds %d bytes", mbe.Limit)
	case errors.Is(err, store.ErrNotFound):
		return fhir.Errorf(fhir.KindNotFound, "not-found", "resource not found").Wrap(err)
	case errors.Is(err, store.ErrGone):
		return fhir.Errorf(fhir.KindGone, "deleted", "resource was deleted").Wrap(err)
	case errors.Is(err, store.ErrVersionConflict):
		return fhir.Errorf(fhir.KindPrecondition, "conflict", "the resource's current version is not the one given in If-Match").Wrap(err)
	case errors.Is(err, store.ErrExists):
		return fhir.Errorf(fhir.KindConflict, "duplicate", "a resource with this id exists").Wrap(err)
	case errors.Is(err, store.ErrClosed):
		return fhir.Errorf(fhir.KindUnavailable, "transient", "the store is shutting down").Wrap(err)
	}
	return fhir.AsError(err)
}

// fail writes err as an OperationOutcome with its status. Faults are
// logged (the message of a wrapped cause never carries a search value or
// resource content) and the client sees only "internal error".
func (s *server) fail(c *gin.Context, err error) {
	fe := asFHIRError(err)
	status := statusOf[fe.Kind]
	if status == 0 {
		status = http.StatusInternalServerError
	}
	issues := fe.Issues
	if status >= 500 && fe.Kind == fhir.KindFault {
		s.log.ErrorContext(c.Request.Context(), "request failed", slog.String("route", c.FullPath()), slog.String("method", c.Request.Method), slog.Any("err", err))
		issues = []fhir.Issue{{Severity: "error", Code: "exception", Diagnostics: "internal error"}}
	}
	s.write(c, status, fhir.OperationOutcome(issues...))
}
