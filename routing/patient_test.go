package routing

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/schakelpunt/schakelpunt/access/patienttoken"
	"github.com/schakelpunt/schakelpunt/access/pki"
	"github.com/schakelpunt/schakelpunt/fhir"
	"github.com/schakelpunt/schakelpunt/store"
)

const (
	bsnA = "999911120" // the patient signed in
	bsnB = "999900006" // another patient
)

// patientHarness is the public listener (mutual TLS) and the patient
// listener (TLS, bearer tokens) on one store and one audit recorder.
type patientHarness struct {
	*harness
	patient *httptest.Server
	issuer  *patienttoken.DevIssuerSetup
}

func mustServePatient(tb testing.TB, configure ...func(*PatientConfig)) *patientHarness {
	tb.Helper()
	h := mustServe(tb)
	issuer, _, err := patienttoken.OpenDevIssuer(filepath.Join(tb.TempDir(), "issuer"), true)
	if err != nil {
		tb.Fatal(err)
	}
	v, err := patienttoken.New(context.Background(), patienttoken.Config{Issuer: patienttoken.DevIssuer, Audience: patienttoken.DevAudience, JWKS: issuer.JWKSPath()})
	if err != nil {
		tb.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := PatientConfig{Store: h.st, Codec: h.codec, Logger: log, Metrics: NewMetrics(prometheus.NewRegistry()),
		Audit: h.rec, Validator: h.validator, Verifier: v, PublicBase: "https://patient.test/fhir/R4",
		Portal: PortalConfig{Organisations: map[string]PortalOrganisation{
			"90000002": {Name: "Apotheek De Brug", Categories: []string{fhir.CategoryMedication}},
		}}}
	for _, f := range configure {
		f(&cfg)
	}
	ph, err := NewPatient(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(ph)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{mustCert(tb, h.ca, pki.IssueRequest{Name: "server", DNS: []string{"127.0.0.1"}, ServerAuth: true})}, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	tb.Cleanup(srv.Close)
	return &patientHarness{harness: h, patient: srv, issuer: issuer}
}

func (ph *patientHarness) token(tb testing.TB, bsn string) string {
	tb.Helper()
	tok, err := ph.issuer.Issue(bsn, time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

// asPatient sends a request to the patient listener with a bearer token
// (none when token is empty). path is under /fhir/R4, or a paging URL.
func (ph *patientHarness) asPatient(tb testing.TB, token, method, path string, body []byte, headers ...string) response {
	tb.Helper()
	target := ph.patient.URL + BasePath + path
	if rest, ok := strings.CutPrefix(path, "https://patient.test"); ok {
		target = ph.patient.URL + rest
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, target, rd)
	if err != nil {
		tb.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	pool := x509.NewCertPool()
	pool.AddCert(ph.ca.Cert)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := client.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := response{status: resp.StatusCode, header: resp.Header, raw: raw}
	if len(raw) > 0 && !strings.Contains(resp.Header.Get("Content-Type"), "ndjson") {
		if err := json.Unmarshal(raw, &r.body); err != nil {
			tb.Fatalf("%s %s: body is not JSON: %s", method, path, raw)
		}
	}
	return r
}

// seed registers A and B at the source and records a consent for each;
// it returns the ids: index entries and consents by BSN.
func (ph *patientHarness) seed(tb testing.TB) (index, consent map[string]string) {
	tb.Helper()
	index, consent = map[string]string{}, map[string]string{}
	for _, bsn := range []string{bsnA, bsnB} {
		r := do(tb, ph.as("source"), "PUT", "/Patient?identifier="+fhir.SystemBSN+"|"+bsn, withBSN(tb, "patient.json", bsn))
		if r.status != 201 {
			tb.Fatalf("register %d %s", r.status, r.raw)
		}
		index[bsn] = r.body["id"].(string)
		r = do(tb, ph.as("source"), "POST", "/Consent", withBSN(tb, "consent.json", bsn))
		if r.status != 201 {
			tb.Fatalf("consent %d %s", r.status, r.raw)
		}
		consent[bsn] = r.body["id"].(string)
	}
	return index, consent
}

// storedVersion reads a resource's current version from the store.
func (ph *patientHarness) storedVersion(tb testing.TB, typ, id string) (int64, bool) {
	tb.Helper()
	r, err := ph.st.Read(context.Background(), typ, id)
	if err != nil {
		return 0, false
	}
	return r.Version, !r.Deleted
}

func entryIDs(r response) []string {
	var out []string
	for _, e := range r.entries() {
		if res, ok := e["resource"].(map[string]any); ok && res["resourceType"] != "OperationOutcome" {
			out = append(out, res["id"].(string))
		}
	}
	return out
}

// TestPatientSeesOnlyTheirOwnBSN hits every patient route with another
// patient's resources: reads are not found, searches come back empty,
// writes are forbidden, and nothing about the other patient changes.
func TestPatientSeesOnlyTheirOwnBSN(t *testing.T) {
	ph := mustServePatient(t)
	index, consent := ph.seed(t)
	// An event about B that A could try to read.
	do(t, ph.as("supervisor"), "GET", "/AuditEvent?patient:identifier="+fhir.SystemBSN+"|"+bsnB, nil)
	eventsB := do(t, ph.as("supervisor"), "GET", "/AuditEvent?patient:identifier="+fhir.SystemBSN+"|"+bsnB, nil)
	if len(eventsB.entries()) == 0 {
		t.Fatal("no AuditEvents about B")
	}
	eventB := entryIDs(eventsB)[0]
	tokA, tokB := ph.token(t, bsnA), ph.token(t, bsnB)
	// A page of B's own search, which A must not be able to follow.
	pageB := ph.asPatient(t, tokB, "GET", "/AuditEvent?_count=1", nil).link("next")
	if pageB == "" {
		t.Fatal("no next page for B")
	}
	consentVersionB, _ := ph.storedVersion(t, "Consent", consent[bsnB])
	ownConsentAsB := withID(t, withBSN(t, "consent.json", bsnB), consent[bsnB])
	takeOver := withID(t, withBSN(t, "consent.json", bsnA), consent[bsnB])
	moveOwn := withID(t, withBSN(t, "consent.json", bsnB), consent[bsnA])
	form := url.Values{"identifier": {fhir.SystemBSN + "|" + bsnB}}.Encode()
	// A consent B wrote and deleted: A must not learn it existed.
	createdB := ph.asPatient(t, tokB, "POST", "/Consent", withBSN(t, "consent.json", bsnB))
	if createdB.status != 201 {
		t.Fatalf("B's second consent: %d %s", createdB.status, createdB.raw)
	}
	deletedB, _ := createdB.body["id"].(string)
	if r := ph.asPatient(t, tokB, "DELETE", "/Consent/"+deletedB, nil); r.status != 204 && r.status != 200 {
		t.Fatalf("B deletes: %d %s", r.status, r.raw)
	}
	reviveAsA := withID(t, withBSN(t, "consent.json", bsnA), deletedB)

	cases := []struct {
		name, method, path string
		body               []byte
		status             int
		code               string // the OperationOutcome issue code; "" for an empty searchset
	}{
		{"read B's index entry", "GET", "/Patient/" + index[bsnB], nil, 404, "not-found"},
		{"vread B's index entry", "GET", "/Patient/" + index[bsnB] + "/_history/1", nil, 404, "not-found"},
		{"search the index for B", "GET", "/Patient?identifier=" + fhir.SystemBSN + "|" + bsnB, nil, 200, ""},
		{"search the index for B by _id", "GET", "/Patient?_id=" + index[bsnB], nil, 200, ""},
		{"POST _search the index for B", "POST", "/Patient/_search?" + form, nil, 200, ""},
		{"read an event about B", "GET", "/AuditEvent/" + eventB, nil, 404, "not-found"},
		{"search events about B", "GET", "/AuditEvent?patient:identifier=" + fhir.SystemBSN + "|" + bsnB, nil, 200, ""},
		{"search events by B's event id", "GET", "/AuditEvent?_id=" + eventB, nil, 200, ""},
		{"POST _search events about B", "POST", "/AuditEvent/_search?patient:identifier=" + url.QueryEscape(fhir.SystemBSN+"|"+bsnB), nil, 200, ""},
		{"follow B's paging link", "GET", pageB, nil, 404, "not-found"},
		{"read B's consent", "GET", "/Consent/" + consent[bsnB], nil, 404, "not-found"},
		{"vread B's consent", "GET", "/Consent/" + consent[bsnB] + "/_history/1", nil, 404, "not-found"},
		{"history of B's consent", "GET", "/Consent/" + consent[bsnB] + "/_history", nil, 404, "not-found"},
		{"search B's consents", "GET", "/Consent?patient:identifier=" + fhir.SystemBSN + "|" + bsnB, nil, 200, ""},
		{"POST _search B's consents", "POST", "/Consent/_search?_id=" + consent[bsnB], nil, 200, ""},
		{"create a consent about B", "POST", "/Consent", withBSN(t, "consent.json", bsnB), 403, "forbidden"},
		{"update B's consent as B's", "PUT", "/Consent/" + consent[bsnB], ownConsentAsB, 403, "forbidden"},
		{"take B's consent over", "PUT", "/Consent/" + consent[bsnB], takeOver, 403, "forbidden"},
		{"move A's consent to B", "PUT", "/Consent/" + consent[bsnA], moveOwn, 403, "forbidden"},
		{"delete B's consent", "DELETE", "/Consent/" + consent[bsnB], nil, 404, "not-found"},
		{"read B's deleted consent", "GET", "/Consent/" + deletedB, nil, 404, "not-found"},
		{"vread B's deleted consent's tombstone", "GET", "/Consent/" + deletedB + "/_history/2", nil, 404, "not-found"},
		{"delete B's deleted consent", "DELETE", "/Consent/" + deletedB, nil, 404, "not-found"},
		{"revive B's deleted consent as A's", "PUT", "/Consent/" + deletedB, reviveAsA, 403, "forbidden"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := ph.asPatient(t, tokA, c.method, c.path, c.body)
			if r.status != c.status {
				t.Fatalf("%d %s", r.status, r.raw)
			}
			if c.code == "" {
				if ids := entryIDs(r); len(ids) != 0 {
					t.Errorf("A sees %v", ids)
				}
				return
			}
			if codes := r.issueCodes(); len(codes) == 0 || codes[0] != c.code {
				t.Errorf("issue codes %v, want %s: %s", codes, c.code, r.raw)
			}
			if bytes.Contains(r.raw, []byte(bsnB)) {
				t.Errorf("the answer names B's BSN: %s", r.raw)
			}
		})
	}
	t.Run("nothing about B changed", func(t *testing.T) {
		if v, live := ph.storedVersion(t, "Consent", consent[bsnB]); v != consentVersionB || !live {
			t.Errorf("B's consent is at version %d (live %v), was %d", v, live, consentVersionB)
		}
		if v, _ := ph.storedVersion(t, "Consent", consent[bsnA]); v != 1 {
			t.Errorf("A's consent is at version %d", v)
		}
		bs := ph.asPatient(t, tokB, "GET", "/Consent", nil)
		if ids := entryIDs(bs); len(ids) != 1 || ids[0] != consent[bsnB] {
			t.Errorf("B's consents are now %v", ids)
		}
	})
	t.Run("a professional's query naming A and B shows A no BSN of B", func(t *testing.T) {
		// Refused (one patient per search), and logged about A.
		r := do(t, ph.as("supervisor"), "GET", "/Patient?identifier="+url.QueryEscape(fhir.SystemBSN+"|"+bsnA+","+fhir.SystemBSN+"|"+bsnB), nil)
		if r.status != 400 || len(r.issueCodes()) == 0 || r.issueCodes()[0] != "not-supported" {
			t.Fatalf("%d %s", r.status, r.raw)
		}
		// The supervisor's event is about A; as stored, its query names B.
		stored := false
		for _, e := range storedEvents(t, ph.harness) {
			stored = stored || strings.Contains(e.query, bsnB) && strings.Contains(e.query, bsnA)
		}
		if !stored {
			t.Fatal("no stored event with a query naming A and B")
		}
		// namesB looks in the bodies and in the base64 queries.
		namesB := func(raw []byte) bool {
			if bytes.Contains(raw, []byte(bsnB)) {
				return true
			}
			for _, m := range regexp.MustCompile(`"query":"([^"]*)"`).FindAllSubmatch(raw, -1) {
				if q, _ := base64.StdEncoding.DecodeString(string(m[1])); bytes.Contains(q, []byte(bsnB)) {
					return true
				}
			}
			return false
		}
		for _, p := range []string{"/AuditEvent?_count=500", "/AuditEvent?_count=500&_format=ndjson"} {
			log := ph.asPatient(t, tokA, "GET", p, nil, "Accept", "*/*")
			if log.status != 200 || namesB(log.raw) {
				t.Errorf("%s: %d, names B: %v", p, log.status, namesB(log.raw))
			}
		}
		ids := entryIDs(ph.asPatient(t, tokA, "GET", "/AuditEvent?_count=500", nil))
		for _, id := range ids {
			if r := ph.asPatient(t, tokA, "GET", "/AuditEvent/"+id, nil); r.status != 200 || namesB(r.raw) {
				t.Errorf("AuditEvent/%s: %d, names B", id, r.status)
			}
		}
	})
	t.Run("A's requests are audited as A, about A", func(t *testing.T) {
		events := ph.asPatient(t, tokA, "GET", "/AuditEvent?_count=200&_sort=date", nil)
		byA := 0
		for _, e := range events.entries() {
			agent := e["resource"].(map[string]any)["agent"].([]any)[0].(map[string]any)
			who := agent["who"].(map[string]any)
			if id, _ := who["identifier"].(map[string]any); who["type"] == "Patient" && id["system"] == fhir.SystemBSN && id["value"] == bsnA {
				byA++
			}
		}
		if byA < len(cases) {
			t.Errorf("%d events by A for %d requests", byA, len(cases))
		}
		// B's log names no request of A's: A's attempts are about A.
		for _, e := range ph.asPatient(t, tokB, "GET", "/AuditEvent?_count=200", nil).entries() {
			if raw := mustJSON(t, e["resource"]); bytes.Contains(raw, []byte(bsnA)) {
				t.Errorf("B's log names A: %s", raw)
			}
		}
	})
}

// TestPatientAPI: what a patient may do with their own data.
func TestPatientAPI(t *testing.T) {
	ph := mustServePatient(t)
	index, consent := ph.seed(t)
	tok := ph.token(t, bsnA)

	t.Run("index entries", func(t *testing.T) {
		r := ph.asPatient(t, tok, "GET", "/Patient", nil)
		if ids := entryIDs(r); r.status != 200 || len(ids) != 1 || ids[0] != index[bsnA] {
			t.Fatalf("%d %v", r.status, ids)
		}
		if r := ph.asPatient(t, tok, "GET", "/Patient/"+index[bsnA], nil); r.status != 200 {
			t.Errorf("read %d %s", r.status, r.raw)
		}
	})
	t.Run("access log with date filter and paging", func(t *testing.T) {
		all := ph.asPatient(t, tok, "GET", "/AuditEvent?_count=1&_sort=-date", nil)
		if all.status != 200 || len(entryIDs(all)) != 1 || all.link("next") == "" {
			t.Fatalf("%d %s", all.status, all.raw)
		}
		if strings.Contains(all.link("next"), bsnA) {
			t.Error("a paging link carries the BSN")
		}
		next := ph.asPatient(t, tok, "GET", all.link("next"), nil)
		if next.status != 200 || len(entryIDs(next)) != 1 {
			t.Fatalf("next page %d %s", next.status, next.raw)
		}
		future := ph.asPatient(t, tok, "GET", "/AuditEvent?date=ge2999-01-01", nil)
		if future.status != 200 || len(entryIDs(future)) != 0 {
			t.Errorf("future %d %v", future.status, entryIDs(future))
		}
		today := ph.asPatient(t, tok, "GET", "/AuditEvent?date=ge"+time.Now().UTC().Add(-time.Hour).Format("2006-01-02T15:04:05Z")+"&_count=100", nil)
		ids := entryIDs(today)
		if len(ids) < 2 {
			t.Fatalf("%d events today", len(ids))
		}
		if r := ph.asPatient(t, tok, "GET", "/AuditEvent/"+ids[0], nil); r.status != 200 {
			t.Errorf("read own event %d %s", r.status, r.raw)
		}
	})
	t.Run("consent: create, withdraw by status, delete", func(t *testing.T) {
		mine := bytes.Replace(withBSN(t, "consent.json", bsnA), []byte(`"dateTime": "2026-11-22T10:00:00+01:00"`), []byte(`"dateTime": "2026-11-23T10:00:00+01:00"`), 1)
		r := ph.asPatient(t, tok, "POST", "/Consent", mine)
		if r.status != 201 {
			t.Fatalf("%d %s", r.status, r.raw)
		}
		id := r.body["id"].(string)
		inactive := withID(t, bytes.Replace(mine, []byte(`"status": "active"`), []byte(`"status": "inactive"`), 1), id)
		if r := ph.asPatient(t, tok, "PUT", "/Consent/"+id, inactive); r.status != 200 || r.body["status"] != "inactive" {
			t.Fatalf("withdraw %d %s", r.status, r.raw)
		}
		if r := ph.asPatient(t, tok, "GET", "/Consent/"+id+"/_history", nil); r.status != 200 || len(r.entries()) != 2 {
			t.Errorf("history %d %s", r.status, r.raw)
		}
		if r := ph.asPatient(t, tok, "DELETE", "/Consent/"+consent[bsnA], nil); r.status != 204 {
			t.Fatalf("delete %d %s", r.status, r.raw)
		}
		if _, live := ph.storedVersion(t, "Consent", consent[bsnA]); live {
			t.Error("the deleted consent is live")
		}
	})
	t.Run("the performer of a patient's consent is the patient", func(t *testing.T) {
		base := string(withBSN(t, "consent.json", bsnA))
		self := strings.Replace(base, `"dateTime"`, `"performer": [{"type": "Patient", "identifier": {"system": "`+fhir.SystemBSN+`", "value": "`+bsnA+`"}}], "dateTime"`, 1)
		if r := ph.asPatient(t, tok, "POST", "/Consent", []byte(self)); r.status != 201 {
			t.Fatalf("self as performer: %d %s", r.status, r.raw)
		}
		for name, performer := range map[string]string{
			"another patient": `{"type": "Patient", "identifier": {"system": "` + fhir.SystemBSN + `", "value": "` + bsnB + `"}}`,
			"an organisation": `{"type": "Organization", "identifier": {"system": "` + fhir.SystemURA + `", "value": "90000002"}}`,
		} {
			body := strings.Replace(base, `"dateTime"`, `"performer": [`+performer+`], "dateTime"`, 1)
			before, _ := ph.st.Count(context.Background(), storeQuery("Consent"))
			r := ph.asPatient(t, tok, "POST", "/Consent", []byte(body))
			if r.status != 403 || !contains(r.expressions(), "Consent.performer") {
				t.Errorf("%s as performer: %d %s", name, r.status, r.raw)
			}
			if after, _ := ph.st.Count(context.Background(), storeQuery("Consent")); after != before {
				t.Errorf("%s: stored anyway", name)
			}
		}
	})
	t.Run("a consent that fails the profile changes nothing", func(t *testing.T) {
		before, _ := ph.st.Count(context.Background(), storeQuery("Consent"))
		bad := bytes.Replace(withBSN(t, "consent.json", bsnA), []byte(`"scope"`), []byte(`"scopeX"`), 1)
		r := ph.asPatient(t, tok, "POST", "/Consent", bad)
		if r.status < 400 || r.status >= 500 || len(r.issueCodes()) == 0 {
			t.Fatalf("%d %s", r.status, r.raw)
		}
		if after, _ := ph.st.Count(context.Background(), storeQuery("Consent")); after != before {
			t.Errorf("%d consents, was %d", after, before)
		}
	})
	t.Run("no medical data, registry or whole log on this listener", func(t *testing.T) {
		for _, p := range []string{"/MedicationDispense?patient.identifier=" + fhir.SystemBSN + "|" + bsnA, "/Organization", "/Patient/$ihe-pix", "/AuditEvent/$export", "/Patient?identifier=x&_format=xml", "/metadata"} {
			r := ph.asPatient(t, tok, "GET", p, nil)
			if r.status != 404 && r.status != 405 && r.status != 406 && r.status != 400 {
				t.Errorf("%s: %d %s", p, r.status, r.raw)
			}
		}
		for _, m := range []string{"PUT", "DELETE"} {
			if r := ph.asPatient(t, tok, m, "/Patient/"+index[bsnA], fixture(t, "patient.json")); r.status != 405 {
				t.Errorf("%s index entry: %d %s", m, r.status, r.raw)
			}
		}
	})
}

func storeQuery(typ string) store.Query { return store.Query{Type: typ} }

// TestPatientAuthentication: no token or a bad one is 401 with a Bearer
// challenge and an OperationOutcome, and audited; the public listener
// never takes a bearer token.
func TestPatientAuthentication(t *testing.T) {
	ph := mustServePatient(t)
	ph.seed(t)
	other, _, err := patienttoken.OpenDevIssuer(filepath.Join(t.TempDir(), "other"), true)
	if err != nil {
		t.Fatal(err)
	}
	foreign, _ := other.Issue(bsnA, time.Hour)
	cases := []struct {
		name, auth, code, challenge string
	}{
		{"no token", "", "login", `Bearer realm="schakelpunt-patient"`},
		{"basic auth", "Basic dXNlcjpwYXNz", "login", `Bearer realm="schakelpunt-patient"`},
		{"garbage", "Bearer x.y.z", "security", `Bearer realm="schakelpunt-patient", error="invalid_token"`},
		{"another issuer's key", "Bearer " + foreign, "security", `Bearer realm="schakelpunt-patient", error="invalid_token"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := ph.asPatient(t, "", "GET", "/Consent", nil, "Authorization", c.auth)
			if r.status != 401 || r.header.Get("WWW-Authenticate") != c.challenge {
				t.Fatalf("%d %q %s", r.status, r.header.Get("WWW-Authenticate"), r.raw)
			}
			if codes := r.issueCodes(); len(codes) != 1 || codes[0] != c.code {
				t.Errorf("codes %v", codes)
			}
		})
	}
	t.Run("audited as unidentified, outcome 4", func(t *testing.T) {
		events := storedEvents(t, ph.harness)
		n := 0
		for _, e := range events[len(events)-len(cases):] {
			if e.outcome == "4" && e.agentUZI == "127.0.0.1" && strings.HasSuffix(e.query, "/Consent") {
				n++
			}
		}
		if n != len(cases) {
			t.Errorf("%d of %d refusals audited as unidentified: %+v", n, len(cases), events[len(events)-len(cases):])
		}
	})
	t.Run("the public listener ignores bearer tokens", func(t *testing.T) {
		tok := ph.token(t, bsnA)
		for _, role := range []string{"no-uzi", "gp"} {
			r := do(t, ph.as(role), "GET", "/Consent?patient:identifier="+fhir.SystemBSN+"|"+bsnA, nil, "Authorization", "Bearer "+tok)
			if r.status != 403 || len(entryIDs(r)) != 0 {
				t.Errorf("%s with a patient token: %d %s", role, r.status, r.raw)
			}
		}
	})
}
