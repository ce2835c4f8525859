package routing

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/schakelpunt/schakelpunt/fhir"
	"github.com/schakelpunt/schakelpunt/store"
)

// paramsOf flattens query values into search params (sorted by name: the
// order of ANDed parameters does not matter; it keeps tests stable).
func paramsOf(q url.Values) []fhir.Param {
	names := make([]string, 0, len(q))
	for k := range q {
		names = append(names, k)
	}
	sort.Strings(names)
	var out []fhir.Param
	for _, k := range names {
		for _, v := range q[k] {
			out = append(out, fhir.Param{Name: k, Value: v})
		}
	}
	return out
}

func (s *server) search(t string) gin.HandlerFunc {
	return func(c *gin.Context) {
		q := c.Request.URL.Query()
		if c.Request.Method == http.MethodPost {
			if err := c.Request.ParseForm(); err != nil {
				s.fail(c, fhir.Errorf(fhir.KindInvalid, "invalid", "the _search body is not a form").Wrap(err))
				return
			}
			for k, v := range c.Request.PostForm {
				q[k] = append(q[k], v...)
			}
		}
		params := paramsOf(q)
		if len(bsnsIn(params)) > 1 {
			s.fail(c, errSeveralPatients)
			return
		}
		notePatientInQuery(c, params)
		search, err := fhir.ParseSearch(t, params, lenient(c))
		if err != nil {
			s.fail(c, err)
			return
		}
		search.Clauses = append(search.Clauses, scopeClauses(c, t)...)
		if wantsNDJSON(c) {
			s.streamSearch(c, search)
			return
		}
		s.runSearch(c, &page{owner: requester(c), kind: "search", search: search, action: routeAction(c)})
	}
}

// nextPage serves a paging link. The page was made for this requester
// (pages are bound to the client certificate) and the policy is asked
// again: a page outlives no permission.
func (s *server) nextPage(c *gin.Context) {
	tok := c.Param("token")
	p, ok := s.pages.get(tok, requester(c))
	if !ok {
		// Unknown, expired and another requester's tokens are one answer:
		// a token's existence tells nobody else anything.
		s.fail(c, fhir.Errorf(fhir.KindNotFound, "not-found", "this page has expired or does not exist; repeat the search"))
		return
	}
	if s.authorize(p.action)(c); c.IsAborted() {
		return
	}
	switch p.kind {
	case "history":
		s.runHistory(c, p)
	case "federated":
		s.federatedPage(c, p, tok)
	default:
		s.runSearch(c, p)
	}
}

func (s *server) runSearch(c *gin.Context, p *page) {
	ctx := c.Request.Context()
	sr := p.search
	q := store.Query{Type: sr.Type, Clauses: sr.Clauses, Sort: sr.Sort, Limit: sr.Count, After: p.after}
	b := fhir.NewBundle("searchset", s.now())
	if sr.Summary == "count" || sr.Total == "accurate" {
		n, err := s.store.Count(ctx, q)
		if err != nil {
			s.fail(c, err)
			return
		}
		b.Total = &n
	}
	if sr.Summary != "count" && sr.Count > 0 {
		res, err := s.store.Search(ctx, q)
		if err != nil {
			s.fail(c, err)
			return
		}
		if b.Total == nil && sr.Total != "none" && p.after == nil && res.Next == nil {
			n := len(res.Resources)
			b.Total = &n
		}
		base := s.baseURL(c)
		notePatientOfResults(c, res.Resources)
		for _, r := range res.Resources {
			noteResource(c, r)
			body := s.shown(r)
			if len(sr.Elements) > 0 {
				body = elements(body, sr.Elements)
			}
			b.Entry = append(b.Entry, fhir.BundleEntry{FullURL: base + "/" + r.Type + "/" + r.ID, Resource: body, Search: &fhir.EntrySearch{Mode: "match"}})
		}
		self := s.pages.put(p)
		b.Link = append(b.Link, fhir.BundleLink{Relation: "self", URL: base + "/_page/" + self})
		if res.Next != nil {
			next := s.pages.put(&page{owner: p.owner, kind: "search", search: sr, after: res.Next, prev: self, action: p.action})
			b.Link = append(b.Link, fhir.BundleLink{Relation: "next", URL: base + "/_page/" + next})
		}
		if p.prev != "" {
			b.Link = append(b.Link, fhir.BundleLink{Relation: "previous", URL: base + "/_page/" + p.prev})
		}
	}
	if len(sr.Ignored) > 0 {
		b.Entry = append(b.Entry, fhir.BundleEntry{Resource: fhir.OperationOutcome(sr.Ignored...), Search: &fhir.EntrySearch{Mode: "outcome"}})
	}
	body, err := b.Marshal()
	if err != nil {
		s.fail(c, err)
		return
	}
	s.write(c, http.StatusOK, body)
}

// elements keeps only the named top-level elements (and the mandatory
// ones) and marks the resource SUBSETTED.
func elements(body []byte, keep []string) []byte {
	var m map[string]json.RawMessage
	if json.Unmarshal(body, &m) != nil {
		return body
	}
	want := map[string]bool{"resourceType": true, "id": true, "meta": true}
	for _, k := range keep {
		want[k] = true
	}
	for k := range m {
		if !want[k] {
			delete(m, k)
		}
	}
	var meta map[string]json.RawMessage
	if json.Unmarshal(m["meta"], &meta) != nil || meta == nil {
		meta = map[string]json.RawMessage{}
	}
	meta["tag"] = json.RawMessage(`[{"system":"http://terminology.hl7.org/CodeSystem/v3-ObservationValue","code":"SUBSETTED"}]`)
	mb, _ := json.Marshal(meta)
	m["meta"] = mb
	out, err := json.Marshal(m)
	if err != nil {
		return body
	}
	return out
}

func (s *server) history(t string, instance bool) gin.HandlerFunc {
	return func(c *gin.Context) {
		hq := store.HistoryQuery{Type: t, Limit: fhir.DefaultCount}
		if instance {
			id, err := pathID(c)
			if err != nil {
				s.fail(c, err)
				return
			}
			hq.ID = id
			r, err := s.store.Read(c.Request.Context(), t, id)
			if err == nil || isGone(err) {
				err = s.visible(c, r, nil)
			}
			if err != nil {
				s.fail(c, err)
				return
			}
		}
		for k, vs := range c.Request.URL.Query() {
			v := vs[0]
			switch k {
			case "_count":
				n, err := strconv.Atoi(v)
				if err != nil || n < 1 {
					s.fail(c, fhir.Errorf(fhir.KindInvalid, "invalid", "_count must be a positive integer").At("_count"))
					return
				}
				hq.Limit = min(n, fhir.MaxCount)
			case "_since":
				r, ok := fhir.ParseDateRange(v)
				if !ok {
					s.fail(c, fhir.Errorf(fhir.KindInvalid, "invalid", "_since must be an instant").At("_since"))
					return
				}
				hq.Since = timeOfMicros(r.Lo)
			case "_format", "_pretty":
			default:
				if !lenient(c) {
					s.fail(c, fhir.Errorf(fhir.KindInvalid, "not-supported", "unknown history parameter %q", k).At(k))
					return
				}
			}
		}
		s.runHistory(c, &page{owner: requester(c), kind: "history", history: hq, action: routeAction(c)})
	}
}

func (s *server) runHistory(c *gin.Context, p *page) {
	hq := p.history
	hq.Offset = p.offset
	limit := hq.Limit
	hq.Limit = limit + 1
	versions, err := s.store.History(c.Request.Context(), hq)
	if err != nil {
		s.fail(c, err)
		return
	}
	more := len(versions) > limit
	if more {
		versions = versions[:limit]
	}
	base := s.baseURL(c)
	b := fhir.NewBundle("history", s.now())
	for _, r := range versions {
		if !s.inScopeAt(c, r) {
			continue // another organisation's (or patient's): not shown, not hinted at
		}
		noteResource(c, r)
		e := fhir.BundleEntry{FullURL: base + "/" + r.Type + "/" + r.ID}
		method, status := http.MethodPut, "200 OK"
		switch {
		case r.Deleted:
			method, status = http.MethodDelete, "204 No Content"
		case r.Version == 1:
			method, status = http.MethodPost, "201 Created"
		}
		if !r.Deleted {
			e.Resource = s.shown(r)
		}
		url := r.Type + "/" + r.ID
		if method == http.MethodPost {
			url = r.Type
		}
		e.Request = &fhir.EntryRequest{Method: method, URL: url}
		e.Response = &fhir.EntryResponse{Status: status, Etag: etag(r), LastModified: fhir.FormatInstant(r.Updated)}
		b.Entry = append(b.Entry, e)
	}
	self := s.pages.put(p)
	b.Link = append(b.Link, fhir.BundleLink{Relation: "self", URL: base + "/_page/" + self})
	if more {
		next := s.pages.put(&page{owner: p.owner, kind: "history", history: p.history, offset: p.offset + limit, prev: self, action: p.action})
		b.Link = append(b.Link, fhir.BundleLink{Relation: "next", URL: base + "/_page/" + next})
	}
	if p.prev != "" {
		b.Link = append(b.Link, fhir.BundleLink{Relation: "previous", URL: base + "/_page/" + p.prev})
	}
	if p.offset == 0 && !more {
		n := len(b.Entry)
		b.Total = &n
	}
	body, err := b.Marshal()
	if err != nil {
		s.fail(c, err)
		return
	}
	s.write(c, http.StatusOK, bytes.TrimSpace(body))
}

// streamSearch answers a search as NDJSON, every match, one resource per
// line, read from the store a page at a time.
func (s *server) streamSearch(c *gin.Context, sr *fhir.Search) {
	ctx := c.Request.Context()
	q := store.Query{Type: sr.Type, Clauses: sr.Clauses, Sort: sr.Sort, Limit: fhir.MaxCount}
	first, err := s.store.Search(ctx, q)
	if err != nil {
		s.fail(c, err)
		return
	}
	s.stream(c, ndjson, func(w io.Writer) error {
		page := first
		for {
			for _, r := range page.Resources {
				if _, err := w.Write(s.shown(r)); err != nil {
					return err
				}
				if _, err := w.Write([]byte{'\n'}); err != nil {
					return err
				}
			}
			if page.Next == nil {
				return nil
			}
			q.After = page.Next
			if page, err = s.store.Search(ctx, q); err != nil {
				return err
			}
		}
	})
}
