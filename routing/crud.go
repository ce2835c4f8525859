package routing

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/schakelpunt/schakelpunt/access"
	"github.com/schakelpunt/schakelpunt/fhir"
	"github.com/schakelpunt/schakelpunt/store"
)

var idRE = regexp.MustCompile(`^[A-Za-z0-9\-.]{1,64}$`)

func newID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = (b[6] & 0x0f) | 0x40
	b[8] = (b[8] & 0x3f) | 0x80
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// keyedMutex serialises conditional writes per resource type in this
// process, so that a search-then-write cannot interleave with another.
type keyedMutex struct {
	mu    sync.Mutex
	locks map[string]*sync.Mutex
}

func newKeyedMutex() *keyedMutex { return &keyedMutex{locks: map[string]*sync.Mutex{}} }

func (k *keyedMutex) lock(key string) func() {
	k.mu.Lock()
	l, ok := k.locks[key]
	if !ok {
		l = &sync.Mutex{}
		k.locks[key] = l
	}
	k.mu.Unlock()
	l.Lock()
	return l.Unlock
}

func pathID(c *gin.Context) (string, error) {
	id := c.Param("id")
	if !idRE.MatchString(id) {
		return "", fhir.Errorf(fhir.KindInvalid, "invalid", "%q is not a valid resource id", id)
	}
	return id, nil
}

// parse reads, parses and validates the body as a resource of type t.
func (s *server) parse(c *gin.Context, t string) (*fhir.Resource, error) {
	body, err := readBody(c)
	if err != nil {
		return nil, err
	}
	var head struct {
		ResourceType string `json:"resourceType"`
	}
	if json.Unmarshal(body, &head) == nil && head.ResourceType != "" && head.ResourceType != t {
		return nil, fhir.Errorf(fhir.KindInvalid, "invalid", "expected a %s resource, got %s", t, head.ResourceType).At("resourceType")
	}
	res, err := s.validator.Check(c.Request.Context(), body, s.validator.ProfileFor(t))
	if err != nil {
		return nil, err
	}
	terms := fhir.ExtractTerms(res.Type, res.Doc)
	notePatient(c, t, terms)
	if err := ownOrganisation(c, t, terms); err != nil {
		return nil, err
	}
	if err := ownPatient(c, t, terms, res.Doc); err != nil {
		return nil, err
	}
	return res, nil
}

func writeOf(res *fhir.Resource, id string) store.Write {
	return store.Write{Type: res.Type, ID: id, Body: res.Raw, Terms: fhir.ExtractTerms(res.Type, res.Doc)}
}

// ifMatch parses If-Match: W/"3" (or "3").
func ifMatch(c *gin.Context) (int64, error) {
	h := c.GetHeader("If-Match")
	if h == "" {
		return 0, nil
	}
	v := strings.TrimPrefix(strings.TrimSpace(h), "W/")
	v = strings.Trim(v, `"`)
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 1 {
		return 0, fhir.Errorf(fhir.KindInvalid, "invalid", "If-Match %q is not a version ETag such as W/\"1\"", h)
	}
	return n, nil
}

func etag(r store.Resource) string { return `W/"` + strconv.FormatInt(r.Version, 10) + `"` }

func (s *server) location(c *gin.Context, r store.Resource) string {
	return s.baseURL(c) + "/" + r.Type + "/" + r.ID + "/_history/" + strconv.FormatInt(r.Version, 10)
}

// respond sends a stored version per the Prefer header.
func (s *server) respond(c *gin.Context, status int, r store.Resource, withLocation bool) {
	h := c.Writer.Header()
	h.Set("ETag", etag(r))
	h.Set("Last-Modified", r.Updated.UTC().Format(http.TimeFormat))
	if withLocation {
		h.Set("Location", s.location(c, r))
	}
	switch preferReturn(c) {
	case "minimal":
		c.Status(status)
		c.Writer.WriteHeaderNow()
	case "OperationOutcome":
		s.write(c, status, fhir.OperationOutcome(fhir.Issue{Severity: "information", Code: "informational", Diagnostics: r.Type + "/" + r.ID + " version " + strconv.FormatInt(r.Version, 10)}))
	default:
		s.write(c, status, s.shown(r))
	}
}

func preferReturn(c *gin.Context) string {
	for _, part := range strings.Split(c.GetHeader("Prefer"), ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		if strings.TrimSpace(k) == "return" {
			return strings.Trim(strings.TrimSpace(v), `"`)
		}
	}
	return ""
}

func lenient(c *gin.Context) bool {
	for _, part := range strings.Split(c.GetHeader("Prefer"), ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		if strings.TrimSpace(k) == "handling" && strings.TrimSpace(v) == "lenient" {
			return true
		}
	}
	return false
}

func (s *server) read(t string) gin.HandlerFunc {
	return func(c *gin.Context) {
		id, err := pathID(c)
		if err != nil {
			s.fail(c, err)
			return
		}
		r, err := s.store.Read(c.Request.Context(), t, id)
		s.answerRead(c, r, err)
	}
}

// answerRead answers a read or vread: the version if the requester may
// see it, else not found; a deletion is 410.
func (s *server) answerRead(c *gin.Context, r store.Resource, err error) {
	if err == nil || isGone(err) {
		err = s.visible(c, r, err)
	}
	if err != nil {
		s.fail(c, err)
		return
	}
	s.respond(c, http.StatusOK, r, false)
}

func (s *server) vread(t string) gin.HandlerFunc {
	return func(c *gin.Context) {
		id, err := pathID(c)
		if err != nil {
			s.fail(c, err)
			return
		}
		v, err := strconv.ParseInt(c.Param("vid"), 10, 64)
		if err != nil || v < 1 {
			s.fail(c, fhir.Errorf(fhir.KindInvalid, "invalid", "%q is not a version id", c.Param("vid")))
			return
		}
		r, err := s.store.VRead(c.Request.Context(), t, id, v)
		s.answerRead(c, r, err)
	}
}

func (s *server) create(t string) gin.HandlerFunc {
	return func(c *gin.Context) {
		res, err := s.parse(c, t)
		if err != nil {
			s.fail(c, err)
			return
		}
		ctx := c.Request.Context()
		if cond := c.GetHeader("If-None-Exist"); cond != "" {
			unlock := s.condLocks.lock(t)
			defer unlock()
			matches, err := s.matchCondition(c, t, cond)
			if err != nil {
				s.fail(c, err)
				return
			}
			switch len(matches) {
			case 0:
			case 1:
				noteResource(c, matches[0]) // the AuditEvent names what was returned
				s.respond(c, http.StatusOK, matches[0], true)
				return
			default:
				s.fail(c, fhir.Errorf(fhir.KindPrecondition, "multiple-matches", "If-None-Exist matches more than one %s", t))
				return
			}
		}
		r, err := s.store.Create(ctx, writeOf(res, s.newID()))
		if err != nil {
			s.fail(c, err)
			return
		}
		noteResource(c, r)
		s.respond(c, http.StatusCreated, r, true)
	}
}

// matchCondition runs a conditional search (a query string), narrowed to
// the requester's scope, and returns at most two matches: enough to tell
// none, one and many apart.
func (s *server) matchCondition(c *gin.Context, t, query string) ([]store.Resource, error) {
	ctx := c.Request.Context()
	q, err := url.ParseQuery(strings.TrimPrefix(query, "?"))
	if err != nil {
		return nil, fhir.Errorf(fhir.KindInvalid, "invalid", "the condition is not a query string")
	}
	params := paramsOf(q)
	if len(params) == 0 {
		return nil, fhir.Errorf(fhir.KindPrecondition, "invalid", "a conditional interaction needs search criteria")
	}
	search, err := fhir.ParseSearch(t, params, false)
	if err != nil {
		return nil, err
	}
	clauses := append(search.Clauses, scopeClauses(c, t)...)
	page, err := s.store.Search(ctx, store.Query{Type: t, Clauses: clauses, Limit: 2})
	if err != nil {
		return nil, err
	}
	return page.Resources, nil
}

func (s *server) update(t string) gin.HandlerFunc {
	return func(c *gin.Context) {
		id, err := pathID(c)
		if err != nil {
			s.fail(c, err)
			return
		}
		res, err := s.parse(c, t)
		if err != nil {
			s.fail(c, err)
			return
		}
		if res.ID != id {
			s.fail(c, fhir.Errorf(fhir.KindInvalid, "invalid", "the resource id %q does not match the id in the URL %q", res.ID, id).At(t+".id"))
			return
		}
		if err := s.writable(c, t, id); err != nil {
			s.fail(c, err)
			return
		}
		if err := s.guardUpdate(c, t, id, res); err != nil {
			s.fail(c, err)
			return
		}
		s.storeUpdate(c, res, id)
	}
}

// storeUpdate stores res as the next version of id (honouring If-Match)
// and answers 200, or 201 when it created the resource.
func (s *server) storeUpdate(c *gin.Context, res *fhir.Resource, id string) {
	match, err := ifMatch(c)
	if err != nil {
		s.fail(c, err)
		return
	}
	r, err := s.store.Update(c.Request.Context(), writeOf(res, id), match)
	if err != nil {
		s.fail(c, err)
		return
	}
	noteResource(c, r)
	status := http.StatusOK
	if r.Version == 1 {
		status = http.StatusCreated
	}
	s.respond(c, status, r, status == http.StatusCreated)
}

func (s *server) conditionalUpdate(t string) gin.HandlerFunc {
	return func(c *gin.Context) {
		if c.Request.URL.RawQuery == "" {
			s.fail(c, fhir.Errorf(fhir.KindNotAllowed, "not-supported", "PUT on a type needs search criteria (conditional update)"))
			return
		}
		res, err := s.parse(c, t)
		if err != nil {
			s.fail(c, err)
			return
		}
		ctx := c.Request.Context()
		unlock := s.condLocks.lock(t)
		defer unlock()
		matches, err := s.matchCondition(c, t, searchQuery(c.Request.URL.Query()))
		if err != nil {
			s.fail(c, err)
			return
		}
		var id string
		switch len(matches) {
		case 0:
			id = res.ID
			if id == "" {
				id = s.newID()
			} else if _, err := s.store.Read(ctx, t, id); err == nil || isGone(err) {
				s.fail(c, fhir.Errorf(fhir.KindConflict, "conflict", "resource %s/%s exists but does not match the criteria", t, id))
				return
			}
		case 1:
			id = matches[0].ID
			if res.ID != "" && res.ID != id {
				s.fail(c, fhir.Errorf(fhir.KindInvalid, "invalid", "the resource id does not match the resource the criteria found").At(t+".id"))
				return
			}
		default:
			s.fail(c, fhir.Errorf(fhir.KindPrecondition, "multiple-matches", "the criteria match more than one %s", t))
			return
		}
		s.storeUpdate(c, res, id)
	}
}

// searchQuery re-encodes the query without the result and format
// parameters, as a condition.
func searchQuery(q url.Values) string {
	out := url.Values{}
	for k, v := range q {
		if k == "_format" || k == "_pretty" {
			continue
		}
		out[k] = v
	}
	return out.Encode()
}

func (s *server) delete(t string) gin.HandlerFunc {
	return func(c *gin.Context) {
		id, err := pathID(c)
		if err != nil {
			s.fail(c, err)
			return
		}
		match, err := ifMatch(c)
		if err != nil {
			s.fail(c, err)
			return
		}
		existing, err := s.store.Read(c.Request.Context(), t, id)
		if err == nil || isGone(err) {
			err = s.visible(c, existing, nil)
		}
		if err != nil {
			s.fail(c, err)
			return
		}
		s.storeDelete(c, t, id, match)
	}
}

// storeDelete deletes id (honouring ifMatch) and answers 204.
func (s *server) storeDelete(c *gin.Context, t, id string, ifMatch int64) {
	r, err := s.store.Delete(c.Request.Context(), t, id, ifMatch)
	if err != nil {
		s.fail(c, err)
		return
	}
	noteResource(c, r)
	c.Header("ETag", etag(r))
	c.Status(http.StatusNoContent)
	c.Writer.WriteHeaderNow()
}

func (s *server) conditionalDelete(t string) gin.HandlerFunc {
	return func(c *gin.Context) {
		if c.Request.URL.RawQuery == "" {
			s.fail(c, fhir.Errorf(fhir.KindNotAllowed, "not-supported", "DELETE on a type needs search criteria (conditional delete)"))
			return
		}
		unlock := s.condLocks.lock(t)
		defer unlock()
		matches, err := s.matchCondition(c, t, searchQuery(c.Request.URL.Query()))
		if err != nil {
			s.fail(c, err)
			return
		}
		switch len(matches) {
		case 0:
			s.fail(c, fhir.Errorf(fhir.KindNotFound, "not-found", "no %s matches the criteria", t))
			return
		case 1:
		default:
			s.fail(c, fhir.Errorf(fhir.KindPrecondition, "multiple-matches", "the criteria match more than one %s", t))
			return
		}
		notePatient(c, t, termsOf(t, matches[0].Body))
		s.storeDelete(c, t, matches[0].ID, 0)
	}
}

func isGone(err error) bool { return errors.Is(err, store.ErrGone) }

func timeOfMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }

// visible answers a resource outside the requester's scope as not found:
// they do not learn it exists. err is the store's answer (nil or ErrGone)
// and is returned for visible resources.
func (s *server) visible(c *gin.Context, r store.Resource, err error) error {
	if r.Deleted && !s.inScopeAt(c, r) {
		return fhir.Errorf(fhir.KindNotFound, "not-found", "resource not found")
	}
	if !r.Deleted {
		terms := termsOf(r.Type, r.Body) // decoded once: scope and audit both need them
		if !inScopeTerms(c, r.Type, terms) {
			return fhir.Errorf(fhir.KindNotFound, "not-found", "resource not found")
		}
		notePatient(c, r.Type, terms)
	}
	noteResource(c, r)
	return err
}

// writable checks that an update does not take over a resource outside
// the requester's scope.
func (s *server) writable(c *gin.Context, t, id string) error {
	r, err := s.store.Read(c.Request.Context(), t, id)
	switch {
	case err == nil:
		if !inScope(c, r) {
			if decisionOf(c).Scope == access.ScopeOwnPatient {
				return fhir.Errorf(fhir.KindForbidden, "forbidden", "access denied: the resource is about another patient")
			}
			return fhir.Errorf(fhir.KindForbidden, "forbidden", "access denied: the resource is not one of your organisation's")
		}
		return nil
	case isGone(err):
		// Re-creating a deleted id: only over the requester's own.
		if !s.inScopeAt(c, r) {
			return fhir.Errorf(fhir.KindForbidden, "forbidden", "access denied: the id belongs to a resource outside your scope")
		}
		return nil
	case errors.Is(err, store.ErrNotFound):
		return nil
	}
	return err
}

func noteResource(c *gin.Context, r store.Resource) {
	t := trailOf(c)
	t.resources = append(t.resources, resourceRef(r))
}

// resourceRef is the versioned reference the AuditEvent names r by.
func resourceRef(r store.Resource) string {
	return r.Type + "/" + r.ID + "/_history/" + strconv.FormatInt(r.Version, 10)
}
