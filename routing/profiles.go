package routing

import (
	"encoding/json"
	"net/http"
	"net/url"
	"path"

	"github.com/gin-gonic/gin"

	"github.com/schakelpunt/schakelpunt/access"
	"github.com/schakelpunt/schakelpunt/conformance"
	"github.com/schakelpunt/schakelpunt/fhir"
	"github.com/schakelpunt/schakelpunt/store"
)

// profileRoutes serve our StructureDefinitions and $validate on every
// type of the table.
func (s *server) profileRoutes() []route {
	rs := []route{
		{http.MethodGet, "/StructureDefinition", "search-type", access.ReadMetadata, s.searchProfiles},
		{http.MethodGet, "/StructureDefinition/:id", "read", access.ReadMetadata, s.readProfile},
	}
	for _, r := range conformance.Table() {
		for _, op := range r.Operations {
			if op.Name != "validate" {
				continue
			}
			rs = append(rs,
				route{http.MethodPost, "/" + r.Type + "/$validate", "$validate", access.ValidateResource, s.validate(r.Type, false)},
				route{http.MethodPost, "/" + r.Type + "/:id/$validate", "$validate", access.ValidateResource, s.validate(r.Type, true)})
		}
	}
	return rs
}

// definitionID is the logical id of a definition: the last segment of its
// canonical URL.
func definitionID(canonical string) string { return path.Base(canonical) }

// definitionResources are our definitions as stored-like resources, so
// that the ordinary search machinery (terms, Matches) applies to them.
func (s *server) definitionResources() []store.Resource {
	var out []store.Resource
	for _, d := range s.validator.StructureDefinitions() {
		out = append(out, store.Resource{Type: "StructureDefinition", ID: definitionID(d.URL), Version: 1, Updated: s.started, Body: d.JSON})
	}
	return out
}

func (s *server) readProfile(c *gin.Context) {
	for _, r := range s.definitionResources() {
		if r.ID == c.Param("id") {
			s.write(c, http.StatusOK, r.Body)
			return
		}
	}
	s.fail(c, fhir.Errorf(fhir.KindNotFound, "not-found", "no such StructureDefinition"))
}

func (s *server) searchProfiles(c *gin.Context) {
	search, err := fhir.ParseSearch("StructureDefinition", paramsOf(c.Request.URL.Query()), lenient(c))
	if err != nil {
		s.fail(c, err)
		return
	}
	b := fhir.NewBundle("searchset", s.now())
	base := s.baseURL(c)
	for _, r := range s.definitionResources() {
		terms := termsOf(r.Type, r.Body)
		terms.Strings = append(terms.Strings, fhir.TermCode("_id", r.ID))
		if !store.Matches(search.Clauses, terms) {
			continue
		}
		b.Entry = append(b.Entry, fhir.BundleEntry{FullURL: base + "/StructureDefinition/" + r.ID, Resource: r.Body, Search: &fhir.EntrySearch{Mode: "match"}})
	}
	n := len(b.Entry)
	b.Total = &n
	if search.Summary == "count" {
		b.Entry = nil
	}
	body, err := b.Marshal()
	if err != nil {
		s.fail(c, err)
		return
	}
	s.write(c, http.StatusOK, body)
}

// validate is $validate: the resource (or a Parameters with a resource
// and a profile) is checked against the base spec, the profile asked for
// (by the profile parameter, else the one a write of this type must meet)
// and its meta.profile: it answers whether a write would pass. The answer is an
// OperationOutcome with every issue, 200 whether or not it is valid; a
// body that is no resource at all is 400.
func (s *server) validate(t string, instance bool) gin.HandlerFunc {
	return func(c *gin.Context) {
		body, err := readBody(c)
		if err != nil {
			s.fail(c, err)
			return
		}
		profile := c.Query("profile")
		body, profile, err = unwrapParameters(body, profile)
		if err != nil {
			s.fail(c, err)
			return
		}
		if profile != "" {
			if _, err := url.Parse(profile); err != nil {
				s.fail(c, fhir.Errorf(fhir.KindInvalid, "invalid", "profile is not a URL").At("profile"))
				return
			}
		}
		var head struct {
			ResourceType string `json:"resourceType"`
			ID           string `json:"id"`
		}
		if json.Unmarshal(body, &head) != nil || head.ResourceType == "" {
			s.fail(c, fhir.Errorf(fhir.KindInvalid, "structure", "the body is not a FHIR resource"))
			return
		}
		var issues []fhir.Issue
		if head.ResourceType != t {
			issues = append(issues, fhir.Issue{Severity: "error", Code: "invalid", Diagnostics: "expected a " + t + " resource, got " + head.ResourceType, Expression: []string{"resourceType"}})
		}
		if instance && head.ID != c.Param("id") {
			issues = append(issues, fhir.Issue{Severity: "error", Code: "invalid", Diagnostics: "the resource id does not match the id in the URL", Expression: []string{t + ".id"}})
		}
		if profile == "" && head.ResourceType == t {
			profile = s.validator.ProfileFor(t)
		}
		issues = append(issues, s.validator.Validate(c.Request.Context(), body, profile)...)
		if len(issues) == 0 {
			issues = []fhir.Issue{{Severity: "information", Code: "informational", Diagnostics: "the resource is valid"}}
		}
		s.write(c, http.StatusOK, fhir.OperationOutcome(issues...))
	}
}

// unwrapParameters takes the resource and profile out of a Parameters
// body; any other resource is returned as is.
func unwrapParameters(body []byte, profile string) ([]byte, string, error) {
	var p struct {
		ResourceType string `json:"resourceType"`
		Parameter    []struct {
			Name        string          `json:"name"`
			Resource    json.RawMessage `json:"resource"`
			ValueURI    string          `json:"valueUri"`
			ValueCanon  string          `json:"valueCanonical"`
			ValueString string          `json:"valueString"`
		} `json:"parameter"`
	}
	if json.Unmarshal(body, &p) != nil || p.ResourceType != "Parameters" {
		return body, profile, nil
	}
	var res []byte
	for _, prm := range p.Parameter {
		switch prm.Name {
		case "resource":
			res = prm.Resource
		case "profile":
			profile = prm.ValueURI + prm.ValueCanon + prm.ValueString
		}
	}
	if len(res) == 0 {
		return nil, "", fhir.Errorf(fhir.KindInvalid, "required", "the Parameters carry no resource parameter").At("Parameters.parameter")
	}
	return res, profile, nil
}
