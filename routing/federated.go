package routing

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/schakelpunt/schakelpunt/access"
	"github.com/schakelpunt/schakelpunt/federation"
	"github.com/schakelpunt/schakelpunt/fhir"
)

// Federator resolves queries across the sources; declared here, where it
// is used (federation.Engine implements it).
type Federator interface {
	MedicationDispenses(ctx context.Context, p access.Principal, bsn string, params url.Values) (federation.Result, error)
	GPSummary(ctx context.Context, p access.Principal, bsn string) (federation.Result, error)
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
	t := trailOf(c)
	t.patientBSN, t.category = bsn, fhir.CategoryMedication
	res, err := s.federator.MedicationDispenses(c.Request.Context(), t.principal, bsn, q)
	s.answerFederated(c, res, err)
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
	res, err := s.federator.GPSummary(c.Request.Context(), t.principal, bsn)
	s.answerFederated(c, res, err)
}

// answerFederated records the decision and the sources asked for the
// AuditEvent and answers. A denial says only that access is denied: the
// reasons (which may name sources) go to the audit record, so that a
// requester never learns which sources hold data they may not see.
func (s *server) answerFederated(c *gin.Context, res federation.Result, err error) {
	t := trailOf(c)
	d := access.Decision{Permit: res.Permit, Reasons: res.Reasons}
	t.decision = &d
	t.sources = res.Sources
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
