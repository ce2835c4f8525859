package routing

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/schakelpunt/schakelpunt/access"
	"github.com/schakelpunt/schakelpunt/access/mtls"
	"github.com/schakelpunt/schakelpunt/access/pki"
	"github.com/schakelpunt/schakelpunt/audit"
	"github.com/schakelpunt/schakelpunt/conformance"
	"github.com/schakelpunt/schakelpunt/fhir"
	"github.com/schakelpunt/schakelpunt/profiles"
	"github.com/schakelpunt/schakelpunt/store"
	"github.com/schakelpunt/schakelpunt/store/sqlite"
)

// harness is the edge on a fresh embedded store behind real mutual TLS,
// with a client per role from the test CA.
type harness struct {
	srv     *httptest.Server
	st      *sqlite.Store
	audit   *faultyAudit
	clients map[string]*http.Client
	client  *http.Client
	// What a second listener on the same store needs (patient_test.go).
	rec       *audit.Recorder
	codec     *fhir.Codec
	validator *profiles.Validator
	ca        *pki.CA
}

// roles are the test identities (DESIGN.md section 1).
var roles = map[string]pki.IssueRequest{
	"source":       {CardType: access.CardServer, UZI: "22222222", URA: "90000002"},
	"other-source": {CardType: access.CardServer, UZI: "22222223", URA: "90000003"},
	"employee":     {CardType: access.CardNamedEmployee, UZI: "11111116", URA: "90000002"},
	"gp":           {CardType: access.CardProfessional, UZI: "11111111", URA: "90000001", Role: "01.015"},
	"pharmacist":   {CardType: access.CardProfessional, UZI: "11111112", URA: "90000004", Role: "17.075"},
	"physio":       {CardType: access.CardProfessional, UZI: "11111114", URA: "90000111", Role: "04.000"},
	"supervisor":   {CardType: access.CardNamedEmployee, UZI: "33333331", URA: "90000009"},
	"no-uzi":       {Name: "a client without UZI identity", DNS: []string{"client.test"}, ClientAuth: true},
}

// faultyAudit passes audit writes to the real store until broken.
type faultyAudit struct {
	store.AuditLog
	broken atomic.Bool
}

func (f *faultyAudit) AppendAudit(ctx context.Context, recs []store.AuditRecord) error {
	if f.broken.Load() {
		return errors.New("disk full (injected)")
	}
	return f.AuditLog.AppendAudit(ctx, recs)
}

func mustServe(tb testing.TB) *harness {
	tb.Helper()
	return mustServeWith(tb, nil)
}

// mustServeWith is mustServe with the Config changed by with (when not
// nil) before the handler is built.
func mustServeWith(tb testing.TB, with func(*Config)) *harness {
	tb.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	dir := tb.TempDir()
	st, err := sqlite.Open(context.Background(), filepath.Join(dir, "test.db"), sqlite.Options{Logger: log})
	if err != nil {
		tb.Fatal(err)
	}
	codec, err := fhir.NewCodec()
	if err != nil {
		tb.Fatal(err)
	}
	policy, err := access.NewPolicy(access.PolicyConfig{Supervisors: []access.Supervisor{{URA: "90000009"}}})
	if err != nil {
		tb.Fatal(err)
	}
	validator, err := profiles.New(codec)
	if err != nil {
		tb.Fatal(err)
	}
	fa := &faultyAudit{AuditLog: st}
	rec := audit.NewRecorder(fa, audit.Options{Logger: log})
	cfg := Config{Store: st, Codec: codec, Logger: log, Metrics: NewMetrics(prometheus.NewRegistry()),
		Policy: policy, Audit: rec, Validator: validator, AuditLog: fa, ExportDir: filepath.Join(dir, "exports"),
		MaxBody: 64 << 10, PublicBase: "https://sp.test/fhir/R4"}
	if with != nil {
		with(&cfg)
	}
	h, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	ca, err := pki.Init(filepath.Join(dir, "pki"))
	if err != nil {
		tb.Fatal(err)
	}
	serverCert := mustCert(tb, ca, pki.IssueRequest{Name: "server", DNS: []string{"127.0.0.1"}, ServerAuth: true})
	tlsConf, err := mtls.NewServerConfig(mtls.ServerOptions{Certificate: serverCert, ClientCAs: []*x509.Certificate{ca.Cert}})
	if err != nil {
		tb.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = tlsConf
	srv.StartTLS()
	hs := &harness{srv: srv, st: st, audit: fa, clients: map[string]*http.Client{}, rec: rec, codec: codec, validator: validator, ca: ca}
	for name, req := range roles {
		conf := mtls.NewClientConfig(mustCert(tb, ca, req), []*x509.Certificate{ca.Cert})
		hs.clients[name] = &http.Client{Transport: &http.Transport{TLSClientConfig: conf, MaxIdleConnsPerHost: 32}}
	}
	hs.client = hs.clients["source"]
	tb.Cleanup(func() {
		srv.Close()
		rec.Close()
		st.Close()
	})
	return hs
}

func mustCert(tb testing.TB, ca *pki.CA, req pki.IssueRequest) tls.Certificate {
	tb.Helper()
	certPEM, keyPEM, _, err := ca.Issue(req)
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		tb.Fatal(err)
	}
	return cert
}

// as is the harness seen by another role.
func (h *harness) as(role string) *harness {
	c := *h
	c.client = h.clients[role]
	return &c
}

func fixture(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

type response struct {
	status int
	header http.Header
	body   map[string]any
	raw    []byte
}

func do(tb testing.TB, h *harness, method, path string, body []byte, headers ...string) response {
	tb.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, h.srv.URL+BasePath+path, rd)
	if err != nil {
		tb.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := h.client.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("%s %s: reading the body: %v", method, path, err)
	}
	r := response{status: resp.StatusCode, header: resp.Header, raw: raw}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &r.body); err != nil {
			tb.Fatalf("%s %s: body is not JSON: %s", method, path, raw)
		}
	}
	return r
}

// issueCodes lists the OperationOutcome's issue codes.
func (r response) issueCodes() []string {
	var out []string
	if r.body == nil || r.body["resourceType"] != "OperationOutcome" {
		return nil
	}
	for _, is := range r.body["issue"].([]any) {
		out = append(out, is.(map[string]any)["code"].(string))
	}
	return out
}

func (r response) expressions() []string {
	var out []string
	if r.body == nil || r.body["resourceType"] != "OperationOutcome" {
		return nil
	}
	for _, is := range r.body["issue"].([]any) {
		exprs, _ := is.(map[string]any)["expression"].([]any)
		for _, e := range exprs {
			out = append(out, e.(string))
		}
	}
	return out
}

func (r response) entries() []map[string]any {
	var out []map[string]any
	es, _ := r.body["entry"].([]any)
	for _, e := range es {
		out = append(out, e.(map[string]any))
	}
	return out
}

func (r response) link(rel string) string {
	ls, _ := r.body["link"].([]any)
	for _, l := range ls {
		m := l.(map[string]any)
		if m["relation"] == rel {
			return m["url"].(string)
		}
	}
	return ""
}

func withBSN(tb testing.TB, name, bsn string) []byte {
	return bytes.ReplaceAll(fixture(tb, name), []byte("999911120"), []byte(bsn))
}

// TestBodiesAnnounceTheirLength: a FHIR body goes out with its length (one
// write), pretty or not, an error too.
func TestBodiesAnnounceTheirLength(t *testing.T) {
	srv := mustServe(t)
	for _, path := range []string{"/metadata", "/metadata?_pretty=true", "/Patient/nope"} {
		t.Run(path, func(t *testing.T) {
			r := do(t, srv, "GET", path, nil)
			if got := r.header.Get("Content-Length"); got != strconv.Itoa(len(r.raw)) || len(r.raw) == 0 {
				t.Errorf("Content-Length %q for a body of %d bytes", got, len(r.raw))
			}
		})
	}
}

func TestRoutesAgreeWithCapabilityStatement(t *testing.T) {
	srv := mustServe(t)
	r := do(t, srv, "GET", "/metadata", nil)
	if r.status != 200 || r.body["resourceType"] != "CapabilityStatement" {
		t.Fatalf("metadata: %d %s", r.status, r.raw)
	}
	declared := map[string]bool{}
	for _, rest := range r.body["rest"].([]any) {
		for _, res := range rest.(map[string]any)["resource"].([]any) {
			m := res.(map[string]any)
			for _, i := range m["interaction"].([]any) {
				declared[m["type"].(string)+" "+i.(map[string]any)["code"].(string)] = true
			}
			ops, _ := m["operation"].([]any)
			for _, op := range ops {
				declared[m["type"].(string)+" $"+op.(map[string]any)["name"].(string)] = true
			}
		}
	}
	s := &server{}
	routed := map[string]bool{}
	for _, rt := range s.routes() {
		parts := strings.Split(strings.TrimPrefix(rt.path, "/"), "/")
		if rt.name == "capabilities" || strings.HasPrefix(parts[0], "$") {
			continue // system level: metadata and the export endpoints
		}
		routed[parts[0]+" "+rt.name] = true
	}
	for k := range declared {
		if !routed[k] {
			t.Errorf("CapabilityStatement declares %q but no route serves it", k)
		}
	}
	for k := range routed {
		if !declared[k] {
			t.Errorf("route %q is not in the CapabilityStatement", k)
		}
	}
	if len(declared) == 0 {
		t.Fatal("no interactions declared")
	}
	// Every type of the table is declared.
	for _, res := range conformance.Table() {
		if !declared[res.Type+" "+string(res.Interactions[0])] {
			t.Errorf("%s missing", res.Type)
		}
	}
}

func TestVersionedLifecycle(t *testing.T) {
	srv := mustServe(t)
	created := do(t, srv, "POST", "/Patient", fixture(t, "patient.json"))
	if created.status != 201 {
		t.Fatalf("create: %d %s", created.status, created.raw)
	}
	id := created.body["id"].(string)
	if got := created.header.Get("ETag"); got != `W/"1"` {
		t.Errorf("ETag = %q", got)
	}
	if loc := created.header.Get("Location"); loc != "https://sp.test/fhir/R4/Patient/"+id+"/_history/1" {
		t.Errorf("Location = %q", loc)
	}
	if created.header.Get("Last-Modified") == "" {
		t.Error("no Last-Modified")
	}
	meta := created.body["meta"].(map[string]any)
	if meta["versionId"] != "1" || meta["lastUpdated"] == nil {
		t.Errorf("meta = %v", meta)
	}

	body := withID(t, fixture(t, "patient.json"), id)
	steps := []struct {
		name      string
		method    string
		path      string
		body      []byte
		headers   []string
		status    int
		issueCode string
		etag      string
	}{
		{"read", "GET", "/Patient/" + id, nil, nil, 200, "", `W/"1"`},
		{"update with matching If-Match", "PUT", "/Patient/" + id, body, []string{"If-Match", `W/"1"`}, 200, "", `W/"2"`},
		{"update with stale If-Match", "PUT", "/Patient/" + id, body, []string{"If-Match", `W/"1"`}, 412, "conflict", ""},
		{"update with id mismatch", "PUT", "/Patient/other", body, nil, 400, "invalid", ""},
		{"update minimal", "PUT", "/Patient/" + id, body, []string{"Prefer", "return=minimal"}, 200, "", `W/"3"`},
		{"update OperationOutcome", "PUT", "/Patient/" + id, body, []string{"Prefer", "return=OperationOutcome"}, 200, "informational", `W/"4"`},
		{"vread 1", "GET", "/Patient/" + id + "/_history/1", nil, nil, 200, "", `W/"1"`},
		{"vread missing", "GET", "/Patient/" + id + "/_history/99", nil, nil, 404, "not-found", ""},
		{"read unknown", "GET", "/Patient/nope", nil, nil, 404, "not-found", ""},
		{"read bad id", "GET", "/Patient/bad$id", nil, nil, 400, "invalid", ""},
		{"delete", "DELETE", "/Patient/" + id, nil, nil, 204, "", `W/"5"`},
		{"read deleted", "GET", "/Patient/" + id, nil, nil, 410, "deleted", ""},
		{"delete again", "DELETE", "/Patient/" + id, nil, nil, 204, "", `W/"5"`},
		{"delete unknown", "DELETE", "/Patient/nope", nil, nil, 404, "not-found", ""},
		{"update recreates", "PUT", "/Patient/" + id, body, nil, 200, "", `W/"6"`},
		{"update as create", "PUT", "/Patient/fresh-id", withID(t, fixture(t, "patient.json"), "fresh-id"), nil, 201, "", `W/"1"`},
		{"AuditEvent create not allowed", "POST", "/AuditEvent", []byte(`{"resourceType":"AuditEvent"}`), nil, 405, "not-supported", ""},
		{"unknown type", "GET", "/Observation", nil, nil, 404, "not-supported", ""},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			r := do(t, srv, st.method, st.path, st.body, st.headers...)
			if r.status != st.status {
				t.Fatalf("status %d, want %d: %s", r.status, st.status, r.raw)
			}
			if st.issueCode != "" && !contains(r.issueCodes(), st.issueCode) {
				t.Errorf("issue codes %v, want %q", r.issueCodes(), st.issueCode)
			}
			if st.etag != "" && r.header.Get("ETag") != st.etag {
				t.Errorf("ETag %q, want %q", r.header.Get("ETag"), st.etag)
			}
		})
	}

	t.Run("history", func(t *testing.T) {
		h := do(t, srv, "GET", "/Patient/"+id+"/_history", nil)
		if h.status != 200 || h.body["type"] != "history" {
			t.Fatalf("%d %s", h.status, h.raw)
		}
		es := h.entries()
		if len(es) != 6 {
			t.Fatalf("%d history entries, want 6", len(es))
		}
		methods := []string{}
		for _, e := range es {
			methods = append(methods, e["request"].(map[string]any)["method"].(string))
		}
		if want := "PUT DELETE PUT PUT PUT POST"; strings.Join(methods, " ") != want {
			t.Errorf("methods %v, want %s", methods, want)
		}
		th := do(t, srv, "GET", "/Patient/_history?_count=2", nil)
		if len(th.entries()) != 2 || th.link("next") == "" {
			t.Errorf("type history paging: %d entries, next %q", len(th.entries()), th.link("next"))
		}
	})
}

func withID(tb testing.TB, body []byte, id string) []byte {
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		tb.Fatal(err)
	}
	m["id"] = id
	b, _ := json.Marshal(m)
	return b
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestConditionalInteractions(t *testing.T) {
	srv := mustServe(t)
	ident := "identifier=http://fhir.nl/fhir/NamingSystem/bsn|999900006"
	body := withBSN(t, "patient.json", "999900006")

	first := do(t, srv, "POST", "/Patient", body, "If-None-Exist", ident)
	again := do(t, srv, "POST", "/Patient", body, "If-None-Exist", ident)
	if first.status != 201 || again.status != 200 || first.body["id"] != again.body["id"] {
		t.Fatalf("conditional create: %d then %d (%v, %v)", first.status, again.status, first.body["id"], again.body["id"])
	}

	upd := do(t, srv, "PUT", "/Patient?"+ident, body)
	if upd.status != 200 || upd.body["id"] != first.body["id"] || upd.header.Get("ETag") != `W/"2"` {
		t.Fatalf("conditional update of the match: %d %s", upd.status, upd.raw)
	}
	other := "identifier=http://fhir.nl/fhir/NamingSystem/bsn|999900018"
	created := do(t, srv, "PUT", "/Patient?"+other, withBSN(t, "patient.json", "999900018"))
	if created.status != 201 {
		t.Fatalf("conditional update without a match creates: %d %s", created.status, created.raw)
	}

	// A second entry for the same BSN (another source) makes the
	// criteria ambiguous.
	dup := do(t, srv, "POST", "/Patient", body)
	if dup.status != 201 {
		t.Fatal(dup.status)
	}
	cases := []struct {
		name, method, path string
		body               []byte
		headers            []string
		status             int
		code               string
	}{
		{"create with ambiguous If-None-Exist", "POST", "/Patient", body, []string{"If-None-Exist", ident}, 412, "multiple-matches"},
		{"update with ambiguous criteria", "PUT", "/Patient?" + ident, body, nil, 412, "multiple-matches"},
		{"delete with ambiguous criteria", "DELETE", "/Patient?" + ident, nil, nil, 412, "multiple-matches"},
		{"delete without match", "DELETE", "/Patient?identifier=http://fhir.nl/fhir/NamingSystem/bsn|999900031", nil, nil, 404, "not-found"},
		{"delete with bad criteria", "DELETE", "/Patient?bogus=1", nil, nil, 400, "not-supported"},
		{"delete with match", "DELETE", "/Patient?" + other, nil, nil, 204, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := do(t, srv, c.method, c.path, c.body, c.headers...)
			if r.status != c.status {
				t.Fatalf("status %d, want %d: %s", r.status, c.status, r.raw)
			}
			if c.code != "" && !contains(r.issueCodes(), c.code) {
				t.Errorf("codes %v, want %s", r.issueCodes(), c.code)
			}
		})
	}
}

func TestBadInput(t *testing.T) {
	srv := mustServe(t)
	big := append([]byte(`{"resourceType":"Patient","id":"x","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">`), bytes.Repeat([]byte("a"), 70<<10)...)
	big = append(big, []byte(`</div>"}}`)...)
	cases := []struct {
		name, method, path string
		body               []byte
		headers            []string
		status             int
		code               string
		expression         string
	}{
		{"not JSON", "POST", "/Patient", []byte("{nope"), nil, 400, "structure", ""},
		{"JSON array", "POST", "/Patient", []byte("[]"), nil, 400, "structure", ""},
		{"wrong type", "POST", "/Patient", fixture(t, "consent.json"), nil, 400, "invalid", "resourceType"},
		{"unknown element", "POST", "/Patient", []byte(`{"resourceType":"Patient","foo":1}`), nil, 400, "structure", "Patient.foo"},
		{"bad primitive", "POST", "/Patient", []byte(`{"resourceType":"Patient","birthDate":"23-11-2026"}`), nil, 400, "value", "Patient.birthDate"},
		{"missing required", "POST", "/Consent", []byte(`{"resourceType":"Consent","status":"active"}`), nil, 422, "required", ""},
		{"bad code in required binding", "POST", "/Consent", bytes.Replace(fixture(t, "consent.json"), []byte(`"status": "active"`), []byte(`"status": "nonsense"`), 1), nil, 400, "value", ""},
		{"empty body", "POST", "/Patient", []byte(" "), nil, 400, "required", ""},
		{"XML body", "POST", "/Patient", []byte("<Patient/>"), []string{"Content-Type", "application/fhir+xml"}, 415, "not-supported", ""},
		{"XML accepted", "GET", "/Patient", nil, []string{"Accept", "application/fhir+xml"}, 406, "not-supported", ""},
		{"XML format", "GET", "/metadata?_format=xml", nil, nil, 406, "not-supported", "_format"},
		{"too large", "POST", "/Patient", big, nil, 413, "too-long", ""},
		{"unknown search parameter", "GET", "/Patient?nonsense=1", nil, nil, 400, "not-supported", "nonsense"},
		{"bad date", "GET", "/Consent?date=yesterday", nil, nil, 400, "invalid", "date"},
		{"bad prefix", "GET", "/Consent?date=xx2026", nil, nil, 400, "invalid", "date"},
		{"bad count", "GET", "/Patient?_count=-1", nil, nil, 400, "invalid", "_count"},
		{"bad sort", "GET", "/Patient?_sort=identifier", nil, nil, 400, "invalid", "_sort"},
		{"bad reference type", "GET", "/Consent?patient=Observation/1", nil, nil, 400, "invalid", "patient"},
		{"bad If-Match", "PUT", "/Patient/x", withID(t, fixture(t, "patient.json"), "x"), []string{"If-Match", "nope"}, 400, "invalid", ""},
		{"expired page", "GET", "/_page/nope", nil, nil, 404, "not-found", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := do(t, srv, c.method, c.path, c.body, c.headers...)
			if r.status != c.status {
				t.Fatalf("status %d, want %d: %s", r.status, c.status, r.raw)
			}
			if !contains(r.issueCodes(), c.code) {
				t.Errorf("codes %v, want %q (%s)", r.issueCodes(), c.code, r.raw)
			}
			if c.expression != "" && !contains(r.expressions(), c.expression) {
				t.Errorf("expressions %v, want %q", r.expressions(), c.expression)
			}
		})
	}
	if n := do(t, srv, "GET", "/Patient?_summary=count", nil); n.body["total"] != 0.0 {
		t.Errorf("bad input changed the store: total %v", n.body["total"])
	}
	t.Run("lenient handling ignores and reports", func(t *testing.T) {
		r := do(t, srv, "GET", "/Patient?nonsense=1", nil, "Prefer", "handling=lenient")
		if r.status != 200 {
			t.Fatalf("%d %s", r.status, r.raw)
		}
		es := r.entries()
		if len(es) != 1 || es[0]["search"].(map[string]any)["mode"] != "outcome" {
			t.Errorf("want one outcome entry, got %s", r.raw)
		}
	})
}

func TestSearch(t *testing.T) {
	srv := mustServe(t)
	bsns := []string{"999911120", "999900006", "999900018", "999900031", "999900043", "999900055"}
	for i, bsn := range bsns {
		c := withBSN(t, "consent.json", bsn)
		c = bytes.Replace(c, []byte("2026-11-22T10:00:00+01:00"), []byte(fmt.Sprintf("2026-11-%02dT10:00:00+01:00", 10+i)), 1)
		if i%2 == 1 {
			c = bytes.Replace(c, []byte(`"status": "active"`), []byte(`"status": "inactive"`), 1)
		}
		if r := do(t, srv, "POST", "/Consent", c); r.status != 201 {
			t.Fatalf("seed: %d %s", r.status, r.raw)
		}
		if r := do(t, srv, "POST", "/Patient", withBSN(t, "patient.json", bsn)); r.status != 201 {
			t.Fatalf("seed: %d %s", r.status, r.raw)
		}
	}
	bsn := "http://fhir.nl/fhir/NamingSystem/bsn|"
	cases := []struct {
		query string
		want  int
	}{
		{"/Consent?patient:identifier=" + bsn + "999900006", 1},
		{"/Consent?patient.identifier=" + bsn + "999900006", 1},
		{"/Consent?patient:identifier=999900006", 1},
		{"/Consent?status=active", 3},
		{"/Consent?status=inactive&patient:identifier=" + bsn + "999900006", 1},
		{"/Consent?status=active&patient:identifier=" + bsn + "999900006", 0},
		{"/Consent?category=http://loinc.org|59284-0", 6},
		{"/Consent?category=59284-0", 6},
		{"/Consent?category=http://loinc.org|", 6},
		{"/Consent?category=|59284-0", 0},
		{"/Consent?date=2026-11-12", 1},
		{"/Consent?date=2026-11", 6},
		{"/Consent?date=ge2026-11-12", 4},
		{"/Consent?date=gt2026-11-12", 3},
		{"/Consent?date=lt2026-11-12", 2},
		{"/Consent?date=le2026-11-12", 3},
		{"/Consent?date=ne2026-11-12", 5},
		{"/Consent?date=sa2026-11-12", 3},
		{"/Consent?date=eb2026-11-12", 2},
		{"/Consent?date=ge2026-11-11&date=le2026-11-13", 3},
		{"/Consent?period=2026-12-01", 0},
		{"/Consent?period=ge2026-12-01", 6},
		{"/Consent?actor:identifier=http://fhir.nl/fhir/NamingSystem/ura|90000002", 6},
		{"/Consent?organization:identifier=http://fhir.nl/fhir/NamingSystem/ura|90000002", 6},
		{"/Patient?identifier=" + bsn + "999900043", 1},
		{"/Patient?identifier=999900043", 1},
		{"/Patient?identifier=http://fhir.nl/fhir/NamingSystem/bsn|", 6},
		{"/Patient?organization:identifier=http://fhir.nl/fhir/NamingSystem/ura|90000002", 6},
		{"/Patient?link=https://127.0.0.1:9102/fhir/R4/Patient/p1", 6},
		{"/Patient?_lastUpdated=gt2000-01-01", 6},
		{"/Patient?_lastUpdated=lt2000-01-01", 0},
	}
	t.Run("one patient per search", func(t *testing.T) {
		// Each patient's access log must show every search about them,
		// and an AuditEvent names one patient.
		for _, q := range []string{
			"/Consent?patient:identifier=" + bsn + "999900006," + bsn + "999900018",
			"/Consent?patient:identifier=" + bsn + "999900006&patient.identifier=" + bsn + "999900018",
			"/Patient?identifier=" + bsn + "999900006," + bsn + "999900018",
		} {
			r := do(t, srv, "GET", q, nil)
			if codes := r.issueCodes(); r.status != 400 || len(codes) == 0 || codes[0] != "not-supported" {
				t.Errorf("%s: %d %s", q, r.status, r.raw)
			}
		}
		if r := do(t, srv, "GET", "/Consent?patient:identifier="+bsn+"999900006,"+bsn+"999900006", nil); r.status != 200 {
			t.Errorf("the same BSN twice: %d %s", r.status, r.raw)
		}
	})
	for _, c := range cases {
		t.Run(c.query, func(t *testing.T) {
			r := do(t, srv, "GET", c.query, nil)
			if r.status != 200 {
				t.Fatalf("%d %s", r.status, r.raw)
			}
			if got := len(r.entries()); got != c.want {
				t.Errorf("%d matches, want %d", got, c.want)
			}
			if r.body["total"] != float64(c.want) {
				t.Errorf("total %v, want %d", r.body["total"], c.want)
			}
			if strings.Contains(string(r.raw), "link") && strings.Contains(r.link("self"), "99990") {
				t.Errorf("a search value leaked into a link: %s", r.link("self"))
			}
		})
	}

	t.Run("POST _search", func(t *testing.T) {
		req, _ := http.NewRequest("POST", srv.srv.URL+BasePath+"/Consent/_search", strings.NewReader("patient:identifier="+bsn+"999900006"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := srv.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&b)
		if resp.StatusCode != 200 || b["total"] != 1.0 {
			t.Errorf("%d total %v", resp.StatusCode, b["total"])
		}
	})

	t.Run("sort and paging", func(t *testing.T) {
		for _, dir := range []string{"date", "-date", "_lastUpdated", "-_lastUpdated"} {
			seen := map[string]bool{}
			var dates []string
			r := do(t, srv, "GET", "/Consent?_count=4&_sort="+dir, nil)
			pages := 0
			for {
				pages++
				for _, e := range r.entries() {
					res := e["resource"].(map[string]any)
					if seen[res["id"].(string)] {
						t.Fatalf("%s: %s twice", dir, res["id"])
					}
					seen[res["id"].(string)] = true
					dates = append(dates, res["dateTime"].(string))
				}
				for _, rel := range []string{"self", "next", "previous"} {
					if l := r.link(rel); strings.Contains(l, "date") || strings.Contains(l, "_sort") {
						t.Errorf("link %s carries the query: %s", rel, l)
					}
				}
				next := r.link("next")
				if next == "" {
					break
				}
				prev := r
				r = do(t, srv, "GET", strings.TrimPrefix(next, "https://sp.test/fhir/R4"), nil)
				if back := r.link("previous"); back != prev.link("self") {
					t.Errorf("previous %q, want %q", back, prev.link("self"))
				}
			}
			if len(seen) != 6 || pages != 2 {
				t.Errorf("%s: %d results over %d pages", dir, len(seen), pages)
			}
			if dir == "date" || dir == "-date" {
				for i := 1; i < len(dates); i++ {
					if (dir == "date") != (dates[i-1] < dates[i]) {
						t.Errorf("%s: out of order: %v", dir, dates)
						break
					}
				}
			}
		}
	})

	t.Run("_summary=count and _total and _elements", func(t *testing.T) {
		r := do(t, srv, "GET", "/Consent?_summary=count&status=active", nil)
		if r.body["total"] != 3.0 || len(r.entries()) != 0 {
			t.Errorf("_summary=count: %s", r.raw)
		}
		r = do(t, srv, "GET", "/Consent?_count=2&_total=accurate", nil)
		if r.body["total"] != 6.0 || len(r.entries()) != 2 {
			t.Errorf("_total=accurate: total %v, %d entries", r.body["total"], len(r.entries()))
		}
		r = do(t, srv, "GET", "/Consent?_count=2", nil)
		if _, has := r.body["total"]; has {
			t.Errorf("total given without counting: %v", r.body["total"])
		}
		r = do(t, srv, "GET", "/Consent?_elements=status&_count=1", nil)
		res := r.entries()[0]["resource"].(map[string]any)
		if _, has := res["patient"]; has || res["status"] == nil {
			t.Errorf("_elements: %v", res)
		}
		tags := res["meta"].(map[string]any)["tag"].([]any)
		if tags[0].(map[string]any)["code"] != "SUBSETTED" {
			t.Errorf("no SUBSETTED tag: %v", tags)
		}
	})

	t.Run("pages belong to their requester", func(t *testing.T) {
		// Over plain HTTP every requester is anonymous; the owner check is
		// exercised in the mTLS end-to-end tests. Here: an unknown token.
		r := do(t, srv, "GET", "/_page/AAAAAAAAAAAAAAAAAAAAAAAA", nil)
		if r.status != 404 {
			t.Errorf("%d", r.status)
		}
	})
}

func TestConcurrentUpdatesLoseNothing(t *testing.T) {
	srv := mustServe(t)
	body := withID(t, fixture(t, "patient.json"), "shared")
	if r := do(t, srv, "PUT", "/Patient/shared", body); r.status != 201 {
		t.Fatal(r.status)
	}
	const writers, each = 16, 5
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if r := do(t, srv, "PUT", "/Patient/shared", body); r.status != 200 {
					t.Errorf("update: %d %s", r.status, r.raw)
				}
			}
		}()
	}
	wg.Wait()
	r := do(t, srv, "GET", "/Patient/shared", nil)
	if want := fmt.Sprint(writers*each + 1); r.body["meta"].(map[string]any)["versionId"] != want {
		t.Errorf("version %v, want %s", r.body["meta"].(map[string]any)["versionId"], want)
	}
}

func mustJSON(tb testing.TB, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}
