package routing

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/schakelpunt/schakelpunt/access"
	"github.com/schakelpunt/schakelpunt/fhir"
	"github.com/schakelpunt/schakelpunt/store"
)

// pixRoutes serve Patient/$ihe-pix (IHE PIXm): which sources know a BSN,
// and the patient's reference at each.
func (s *server) pixRoutes() []route {
	return []route{{http.MethodGet, "/Patient/$ihe-pix", "$ihe-pix", access.QueryPIX, s.pix}}
}

func (s *server) pix(c *gin.Context) {
	q := c.Request.URL.Query()
	var bsn string
	for k, vs := range q {
		switch k {
		case "sourceIdentifier":
			if len(vs) != 1 {
				s.fail(c, fhir.Errorf(fhir.KindInvalid, "invalid", "give sourceIdentifier once").At("sourceIdentifier"))
				return
			}
			sys, val, ok := strings.Cut(vs[0], "|")
			if !ok || sys != fhir.SystemBSN || !fhir.ValidBSN(val) {
				s.fail(c, fhir.Errorf(fhir.KindInvalid, "invalid", "sourceIdentifier must be %s|<a valid BSN>", fhir.SystemBSN).At("sourceIdentifier"))
				return
			}
			bsn = val
		case "_format", "_pretty":
		default:
			s.fail(c, fhir.Errorf(fhir.KindInvalid, "not-supported", "unknown $ihe-pix parameter %q (targetSystem is not supported: every source is returned)", k).At(k))
			return
		}
	}
	if bsn == "" {
		s.fail(c, fhir.Errorf(fhir.KindInvalid, "required", "sourceIdentifier is required").At("sourceIdentifier"))
		return
	}
	trailOf(c).patientBSN = bsn
	ident := fhir.TermSystemCode("identifier", fhir.SystemBSN, bsn)
	q2 := store.Query{Type: "Patient", Clauses: []fhir.Clause{{Param: "identifier", Strings: []string{ident}}}, Limit: fhir.MaxCount}
	type param struct {
		Name           string          `json:"name"`
		ValueReference json.RawMessage `json:"valueReference,omitempty"`
	}
	params := []param{}
	for {
		page, err := s.store.Search(c.Request.Context(), q2)
		if err != nil {
			s.fail(c, err)
			return
		}
		for _, r := range page.Resources {
			noteResource(c, r)
			var entry struct {
				ManagingOrganization struct {
					Identifier struct{ Value string } `json:"identifier"`
				} `json:"managingOrganization"`
				Link []struct {
					Other struct{ Reference string } `json:"other"`
				} `json:"link"`
			}
			if json.Unmarshal(r.Body, &entry) != nil {
				continue
			}
			for _, l := range entry.Link {
				ref, _ := json.Marshal(map[string]any{
					"reference":  l.Other.Reference,
					"type":       "Patient",
					"identifier": map[string]string{"system": fhir.SystemURA, "value": entry.ManagingOrganization.Identifier.Value},
				})
				params = append(params, param{Name: "targetId", ValueReference: ref})
			}
		}
		if page.Next == nil {
			break
		}
		q2.After = page.Next
	}
	body, err := json.Marshal(map[string]any{"resourceType": "Parameters", "parameter": params})
	if err != nil {
		s.fail(c, err)
		return
	}
	s.write(c, http.StatusOK, body)
}
