package source

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/schakelpunt/schakelpunt/fhir"
)

// BasePath is where a source serves FHIR R4.
const BasePath = "/fhir/R4"

const contentType = "application/fhir+json; charset=utf-8"

// Search result sizes.
const (
	DefaultCount = 50
	MaxCount     = 1000
)

// Search parameters beyond _id, _count and _offset, per resource type. A
// type the data holds but this table lacks is searched by patient and
// subject; any other type is not supported (404).
var typeParams = map[string][]string{
	"MedicationDispense":  {"patient", "subject", "whenhandedover", "status"},
	"MedicationStatement": {"patient", "subject", "status"},
	"Condition":           {"patient", "subject"},
	"AllergyIntolerance":  {"patient"},
	"Composition":         {"patient", "subject", "status"},
	"Patient":             nil,
	"Organization":        nil,
	"Bundle":              nil, // documents: read, and Patient/{id}/$summary
}

func paramsOf(typ string) []string {
	if ps, ok := typeParams[typ]; ok {
		return ps
	}
	return []string{"patient", "subject"}
}

// handler serves one source's Data.
type handler struct {
	data *Data
	base string // configured public base, or "" to take it from the request
	log  *slog.Logger
	now  func() time.Time
}

// NewHandler returns the FHIR API of d at BasePath, without TLS: Server
// wraps it in mutual TLS. Only opts.BaseURL, Logger and Now are used.
func NewHandler(d *Data, opts Options) http.Handler {
	h := &handler{data: d, base: strings.TrimSuffix(opts.BaseURL, "/"), log: opts.Logger, now: opts.Now}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if h.now == nil {
		h.now = time.Now
	}
	return h
}

var typeRE = regexp.MustCompile(`^[A-Z][A-Za-z]{1,63}$`)

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.Path, BasePath)
	if !ok || (rest != "" && rest[0] != '/') {
		h.fail(w, http.StatusNotFound, "not-found", "not found: the FHIR API is at "+BasePath)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		h.fail(w, http.StatusMethodNotAllowed, "not-supported", "this source is read-only: only GET is supported")
		return
	}
	if !acceptsJSON(r) {
		h.fail(w, http.StatusNotAcceptable, "not-supported", "only FHIR JSON (application/fhir+json) is served")
		return
	}
	parts := strings.Split(strings.Trim(rest, "/"), "/")
	switch {
	case len(parts) == 1 && parts[0] == "metadata":
		h.metadata(w, r)
	case len(parts) == 1 && typeRE.MatchString(parts[0]):
		h.search(w, r, parts[0])
	case len(parts) == 2 && typeRE.MatchString(parts[0]):
		h.read(w, r, parts[0], parts[1])
	case len(parts) == 3 && parts[0] == "Patient" && parts[2] == "$summary":
		h.summary(w, r, parts[1])
	default:
		h.fail(w, http.StatusNotFound, "not-found", "no such interaction at this source")
	}
}

// acceptsJSON checks Accept and _format: JSON or anything.
func acceptsJSON(r *http.Request) bool {
	if f := r.URL.Query().Get("_format"); f != "" {
		switch f {
		case "json", "application/json", "application/fhir+json":
		default:
			return false
		}
	}
	acc := r.Header.Get("Accept")
	if acc == "" {
		return true
	}
	for _, part := range strings.Split(acc, ",") {
		mt, _, _ := strings.Cut(strings.TrimSpace(part), ";")
		switch strings.TrimSpace(mt) {
		case "*/*", "application/*", "application/json", "application/fhir+json", "json":
			return true
		}
	}
	return false
}

// baseURL is the absolute base of this source's FHIR API as the client
// reached it, unless one is configured.
func (h *handler) baseURL(r *http.Request) string {
	if h.base != "" {
		return h.base
	}
	host := r.Host
	if host == "" {
		if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
			host = a.String()
		}
	}
	return "https://" + host + BasePath
}

func (h *handler) read(w http.ResponseWriter, r *http.Request, typ, id string) {
	res, ok := h.data.resources[typ+"/"+id]
	if !ok {
		h.fail(w, http.StatusNotFound, "not-found", fmt.Sprintf("%s/%s is not known here", typ, id))
		return
	}
	if len(r.URL.Query()) > 0 {
		if err := onlyFormat(r.URL.Query()); err != nil {
			h.failErr(w, err)
			return
		}
	}
	body := []byte(res.raw)
	if res.doc != nil {
		body = res.doc.render(h.baseURL(r))
	}
	h.write(w, http.StatusOK, body)
}

func (h *handler) summary(w http.ResponseWriter, r *http.Request, id string) {
	if err := onlyFormat(r.URL.Query()); err != nil {
		h.failErr(w, err)
		return
	}
	if _, ok := h.data.resources["Patient/"+id]; !ok {
		h.fail(w, http.StatusNotFound, "not-found", fmt.Sprintf("Patient/%s is not known here", id))
		return
	}
	docs := h.data.documents[id]
	if len(docs) == 0 {
		h.fail(w, http.StatusNotFound, "not-found", fmt.Sprintf("no summary document about Patient/%s here", id))
		return
	}
	h.write(w, http.StatusOK, docs[0].doc.render(h.baseURL(r)))
}

// onlyFormat refuses every parameter but _format and _pretty.
func onlyFormat(q url.Values) *fhir.Error {
	for _, k := range sortedKeys(q) {
		if k != "_format" && k != "_pretty" {
			return fhir.Errorf(fhir.KindInvalid, "not-supported", "unknown parameter %q", k).At(k)
		}
	}
	return nil
}

// query is a parsed search: its conditions (ANDed) and page.
type query struct {
	conds  []func(*resource) bool
	count  int
	offset int
}

// parseSearch parses a search of typ at base. Repeated parameters are
// ANDed, comma-separated values ORed.
func parseSearch(typ, base string, q url.Values) (*query, error) {
	s := &query{count: DefaultCount}
	allowed := paramsOf(typ)
	for _, name := range sortedKeys(q) {
		for _, v := range q[name] {
			if len(v) > fhir.MaxValueLen {
				return nil, fhir.Errorf(fhir.KindInvalid, "too-long", "value of %q is too long", name).At(name)
			}
			if err := s.add(typ, base, name, v, allowed); err != nil {
				return nil, err
			}
		}
	}
	return s, nil
}

func (s *query) add(typ, base, name, v string, allowed []string) error {
	bad := func(format string, args ...any) error {
		return fhir.Errorf(fhir.KindInvalid, "invalid", format, args...).At(name)
	}
	switch name {
	case "_format", "_pretty":
		return nil
	case "_count", "_offset":
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return bad("%s must be a non-negative integer", name)
		}
		if name == "_count" {
			s.count = min(n, MaxCount)
		} else {
			s.offset = n
		}
		return nil
	}
	if name != "_id" && !slices.Contains(allowed, name) {
		return fhir.Errorf(fhir.KindInvalid, "not-supported", "unknown search parameter %q for %s", name, typ).At(name)
	}
	values := strings.Split(v, ",")
	for _, x := range values {
		if x == "" {
			return bad("empty value in %q", name)
		}
	}
	switch name {
	case "_id":
		s.conds = append(s.conds, func(r *resource) bool { return slices.Contains(values, r.id) })
	case "patient", "subject":
		var ids []string
		for _, x := range values {
			id, ok, err := patientValue(base, x)
			if err != nil {
				return bad("%s", err.Error())
			}
			if ok {
				ids = append(ids, id)
			}
		}
		s.conds = append(s.conds, func(r *resource) bool { return r.patient != "" && slices.Contains(ids, r.patient) })
	case "status":
		for _, x := range values {
			if strings.Contains(x, "|") {
				return bad("status takes a code, without a system")
			}
		}
		s.conds = append(s.conds, func(r *resource) bool { return slices.Contains(values, r.status) })
	case "whenhandedover":
		var dcs []fhir.DateCond
		for _, x := range values {
			dc, err := dateCond(x)
			if err != nil {
				return bad("%s", err.Error())
			}
			dcs = append(dcs, dc)
		}
		s.conds = append(s.conds, func(r *resource) bool {
			if r.handed == nil {
				return false
			}
			return slices.ContainsFunc(dcs, func(c fhir.DateCond) bool { return c.Match(*r.handed) })
		})
	}
	return nil
}

// patientValue reads a patient or subject value: an id, Patient/<id>, or
// this source's absolute URL of a Patient. ok is false for an absolute
// URL elsewhere (it matches nothing here).
func patientValue(base, v string) (id string, ok bool, err error) {
	if strings.Contains(v, "://") {
		id, found := strings.CutPrefix(v, base+"/Patient/")
		return id, found && idRE.MatchString(id), nil
	}
	if t, rest, found := strings.Cut(v, "/"); found {
		if t != "Patient" || !idRE.MatchString(rest) {
			return "", false, fmt.Errorf("want a Patient id, Patient/<id> or its absolute URL")
		}
		return rest, true, nil
	}
	if !idRE.MatchString(v) {
		return "", false, fmt.Errorf("malformed Patient id")
	}
	return v, true, nil
}

// dateCond parses [prefix]date, the prefixes of R4 date search.
func dateCond(v string) (fhir.DateCond, error) {
	prefix := fhir.PrefixEq
	if len(v) >= 2 && v[0] >= 'a' && v[0] <= 'z' {
		prefix, v = v[:2], v[2:]
		switch prefix {
		case fhir.PrefixEq, fhir.PrefixNe, fhir.PrefixGt, fhir.PrefixLt, fhir.PrefixGe, fhir.PrefixLe, fhir.PrefixSa, fhir.PrefixEb:
		default:
			return fhir.DateCond{}, fmt.Errorf("unknown date prefix %q (eq ne lt gt le ge sa eb)", prefix)
		}
	}
	r, ok := fhir.ParseDateRange(v)
	if !ok {
		return fhir.DateCond{}, fmt.Errorf("%q is not a FHIR date, dateTime or instant", v)
	}
	return fhir.DateCond{Prefix: prefix, DateRange: r}, nil
}

func (h *handler) search(w http.ResponseWriter, r *http.Request, typ string) {
	all, known := h.data.byType[typ]
	if _, inTable := typeParams[typ]; !known && !inTable {
		h.fail(w, http.StatusNotFound, "not-supported", fmt.Sprintf("resource type %s is not served here", typ))
		return
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		h.fail(w, http.StatusBadRequest, "invalid", "malformed query string")
		return
	}
	base := h.baseURL(r)
	s, err := parseSearch(typ, base, q)
	if err != nil {
		h.failErr(w, err)
		return
	}
	var matches []*resource
	for _, res := range all {
		if !slices.ContainsFunc(s.conds, func(c func(*resource) bool) bool { return !c(res) }) {
			matches = append(matches, res)
		}
	}
	total := len(matches)
	b := fhir.NewBundle("searchset", h.now())
	b.ID = newID()
	b.Meta = &fhir.BundleMeta{LastUpdated: b.Timestamp}
	b.Total = &total
	b.Link = []fhir.BundleLink{{Relation: "self", URL: pageURL(base, typ, q, s.offset)}}
	lo := min(s.offset, total)
	hi := min(lo+s.count, total)
	if hi < total && s.count > 0 {
		b.Link = append(b.Link, fhir.BundleLink{Relation: "next", URL: pageURL(base, typ, q, hi)})
	}
	for _, res := range matches[lo:hi] {
		b.Entry = append(b.Entry, fhir.BundleEntry{
			FullURL:  base + "/" + res.typ + "/" + res.id,
			Resource: res.raw,
			Search:   &fhir.EntrySearch{Mode: "match"},
		})
	}
	body, err := b.Marshal()
	if err != nil {
		h.failErr(w, err)
		return
	}
	h.write(w, http.StatusOK, body)
}

// pageURL is the search's URL with _offset set to offset.
func pageURL(base, typ string, q url.Values, offset int) string {
	p := url.Values{}
	for k, v := range q {
		if k != "_offset" {
			p[k] = v
		}
	}
	if offset > 0 {
		p.Set("_offset", strconv.Itoa(offset))
	}
	u := base + "/" + typ
	if enc := p.Encode(); enc != "" {
		u += "?" + enc
	}
	return u
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}

func sortedKeys(q url.Values) []string {
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// render serves a document with the fullUrl of each entry that had its
// RESTful URL (or none) at base.
func (d *document) render(base string) []byte {
	var b bytes.Buffer
	entries := make([]json.RawMessage, len(d.entries))
	for i, e := range d.entries {
		obj := e.obj
		if e.rest != "" {
			obj = obj.set("fullUrl", jsonString(base+"/"+e.rest))
		}
		var eb bytes.Buffer
		obj.appendTo(&eb)
		entries[i] = eb.Bytes()
	}
	list, _ := json.Marshal(entries) // raw messages of valid JSON always marshal
	d.bundle.set("entry", list).appendTo(&b)
	return b.Bytes()
}

func (h *handler) write(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func (h *handler) fail(w http.ResponseWriter, status int, code, diagnostics string) {
	h.write(w, status, fhir.OperationOutcome(fhir.Issue{Severity: "error", Code: code, Diagnostics: diagnostics}))
}

// failErr answers err as an OperationOutcome; a fault is logged and shown
// only as "internal error".
func (h *handler) failErr(w http.ResponseWriter, err error) {
	fe := fhir.AsError(err)
	status := http.StatusInternalServerError
	switch fe.Kind {
	case fhir.KindInvalid:
		status = http.StatusBadRequest
	case fhir.KindNotFound:
		status = http.StatusNotFound
	default:
		h.log.Error("source: internal error", slog.Any("err", err))
	}
	h.write(w, status, fhir.OperationOutcome(fe.Issues...))
}
