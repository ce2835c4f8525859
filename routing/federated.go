package routing

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/schakelpunt/schakelpunt/access"
	"github.com/schakelpunt/schakelpunt/federation"
	"github.com/schakelpunt/schakelpunt/fhir"
)

// Federator resolves queries across the sources; declared here, where it
// is used (federation.Engine implements it).
type Federator interface {
	// MedicationDispenses hands fetched, when not nil, what the
	// AuditEvent records once the sources have answered, before their
	// answers are checked (see federation.Fetched).
	MedicationDispenses(ctx context.Context, p access.Principal, bsn string, params url.Values, fetched federation.Fetched) (federation.Result, error)
	// MedicationSources re-decides, asking no source, which sources the
	// requester may see medication of now (for a held result's later
	// pages).
	MedicationSources(ctx context.Context, p access.Principal, bsn string) ([]string, federation.Result, error)
	GPSummary(ctx context.Context, p access.Principal, bsn string, fetched federation.Fetched) (federation.Result, error)
}

// federatedRoutes serve the federated queries (503 when no Federator is
// configured).
func (s *server) federatedRoutes() []route {
	return []route{
		{http.MethodGet, "/MedicationDispense", "search-type", access.QueryMedication, s.medication},
		{http.MethodPost, "/MedicationDispense/_search", "search-type", access.QueryMedication, s.medication},
		{http.MethodGet, "/Patient/$summary", "$summary", access.QueryGPSummary, s.summary},
	}
}

// medicationParams are what MedicationDispense search accepts.
var medicationParams = map[string]bool{"whenhandedover": true, "status": true, "_count": true, "_format": true, "_pretty": true}

// bsnOf reads the one BSN of a patient identifier parameter.
func bsnOf(q url.Values, names ...string) (string, error) {
	var found []string
	for _, n := range names {
		found = append(found, q[n]...)
	}
	if len(found) != 1 {
		return "", fhir.Errorf(fhir.KindInvalid, "required", "give the patient's BSN once: %s=%s|<bsn>", names[0], fhir.SystemBSN).At(names[0])
	}
	sys, bsn, ok := strings.Cut(found[0], "|")
	if !ok || sys != fhir.SystemBSN || !fhir.ValidBSN(bsn) {
		return "", fhir.Errorf(fhir.KindInvalid, "value", "%s must be %s|<a valid BSN>", names[0], fhir.SystemBSN).At(names[0])
	}
	return bsn, nil
}

func (s *server) medication(c *gin.Context) {
	if s.federator == nil {
		s.fail(c, fhir.Errorf(fhir.KindUnavailable, "not-supported", "no sources are configured"))
		return
	}
	q := c.Request.URL.Query()
	if c.Request.Method == http.MethodPost {
		if err := c.Request.ParseForm(); err != nil {
			s.fail(c, fhir.Errorf(fhir.KindInvalid, "invalid", "the _search body is not a form"))
			return
		}
		for k, v := range c.Request.PostForm {
			q[k] = append(q[k], v...)
		}
	}
	for k := range q {
		if k != "patient.identifier" && k != "patient:identifier" && !medicationParams[k] {
			s.fail(c, fhir.Errorf(fhir.KindInvalid, "not-supported", "unknown MedicationDispense search parameter %q", k).At(k))
			return
		}
	}
	bsn, err := bsnOf(q, "patient.identifier", "patient:identifier")
	if err != nil {
		s.fail(c, err)
		return
	}
	count, err := countOf(q)
	if err != nil {
		s.fail(c, err)
		return
	}
	t := trailOf(c)
	t.patientBSN, t.category = bsn, fhir.CategoryMedication
	res, err := s.federator.MedicationDispenses(c.Request.Context(), t.principal, bsn, q, s.fetched(c, searchSettled))
	if err == nil && res.Searchset != nil {
		s.recordFederated(c, res)
		h := newHeld(res.Searchset, bsn, fhir.CategoryMedication, count)
		s.servePage(c, &page{owner: requester(c), kind: "federated", held: h, action: routeAction(c)}, "")
		return
	}
	s.answerFederated(c, res, err)
}

// countOf reads _count as fhir.ParseSearch does: the page size of the
// merged result, DefaultCount when absent, at most MaxCount.
func countOf(q url.Values) (int, error) {
	vs := q["_count"]
	if len(vs) == 0 {
		return fhir.DefaultCount, nil
	}
	n, err := strconv.Atoi(vs[0])
	if len(vs) > 1 || err != nil || n < 0 {
		return 0, fhir.Errorf(fhir.KindInvalid, "invalid", "_count must be one non-negative integer").At("_count")
	}
	return min(n, fhir.MaxCount), nil
}

func (s *server) summary(c *gin.Context) {
	if s.federator == nil {
		s.fail(c, fhir.Errorf(fhir.KindUnavailable, "not-supported", "no sources are configured"))
		return
	}
	q := c.Request.URL.Query()
	for k := range q {
		if k != "identifier" && k != "_format" && k != "_pretty" {
			s.fail(c, fhir.Errorf(fhir.KindInvalid, "not-supported", "unknown $summary parameter %q", k).At(k))
			return
		}
	}
	bsn, err := bsnOf(q, "identifier")
	if err != nil {
		s.fail(c, err)
		return
	}
	t := trailOf(c)
	t.patientBSN, t.category = bsn, fhir.CategoryGPSummary
	res, err := s.federator.GPSummary(c.Request.Context(), t.principal, bsn, s.fetched(c, summarySettled))
	s.answerFederated(c, res, err)
}

// fetched starts the AuditEvent of a federated query while the sources'
// answers are checked, when the record settles that the answer is a 200:
// what each source returned is known by then, and what checking finds
// becomes outcome entries of the Bundle. Otherwise (settles200 false) the
// event is recorded as the answer goes out, with its status.
func (s *server) fetched(c *gin.Context, settles200 func(federation.Result) bool) federation.Fetched {
	return func(r federation.Result) {
		if !settles200(r) {
			return
		}
		s.recordFederated(c, r)
		s.recordEarly(c, http.StatusOK)
	}
}

// searchSettled: a permitted federated search answers 200, each source
// that failed an outcome entry, even when none answered.
func searchSettled(federation.Result) bool { return true }

// summarySettled: a permitted GP summary that no source answered is a 503
// (see answerFederated).
func summarySettled(r federation.Result) bool { return r.Answered }

// answerFederated records the decision and the sources asked for the
// AuditEvent and answers. A denial says only that access is denied: the
// reasons (which may name sources) go to the audit record, so that a
// requester never learns which sources hold data they may not see.
func (s *server) answerFederated(c *gin.Context, res federation.Result, err error) {
	s.recordFederated(c, res)
	if err != nil {
		if errors.Is(err, access.ErrDenied) {
			s.fail(c, fhir.Errorf(fhir.KindForbidden, "forbidden", "access denied: no data may be shown for this request"))
			return
		}
		s.fail(c, err)
		return
	}
	if !res.Answered && len(res.Bundle) == 0 {
		s.fail(c, fhir.Errorf(fhir.KindUnavailable, "transient", "no source could answer"))
		return
	}
	s.write(c, http.StatusOK, res.Bundle)
}

// recordFederated notes the decision and the sources asked for the
// AuditEvent.
func (s *server) recordFederated(c *gin.Context, res federation.Result) {
	t := trailOf(c)
	d := access.Decision{Permit: res.Permit, Reasons: res.Reasons}
	t.decision = &d
	t.sources = res.Sources
}
