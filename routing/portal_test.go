package routing

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/schakelpunt/schakelpunt/access"
	"github.com/schakelpunt/schakelpunt/fhir"
	"github.com/schakelpunt/schakelpunt/store"
)

// browser is a cookie-keeping HTTPS client of the portal that does not
// follow redirects (the tests look at them).
type browser struct {
	tb     testing.TB
	c      *http.Client
	base   string
	lang   string
	origin string
}

func (ph *patientHarness) browser(tb testing.TB) *browser {
	jar, _ := cookiejar.New(nil)
	pool := x509.NewCertPool()
	pool.AddCert(ph.ca.Cert)
	return &browser{tb: tb, base: ph.patient.URL, origin: ph.patient.URL, c: &http.Client{
		Jar:           jar,
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

func (b *browser) do(method, path string, form url.Values) (int, http.Header, string) {
	b.tb.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, b.base+path, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", b.origin)
	}
	if b.lang != "" {
		req.Header.Set("Accept-Language", b.lang)
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.tb.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(raw)
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func csrfOf(tb testing.TB, page string) string {
	tb.Helper()
	m := csrfRE.FindStringSubmatch(page)
	if m == nil {
		tb.Fatalf("no CSRF field in %s", page)
	}
	return m[1]
}

// text is the page without tags, entities decoded, spaces collapsed.
func text(page string) string {
	s := regexp.MustCompile(`<[^>]*>`).ReplaceAllString(page, " ")
	return strings.Join(strings.Fields(html.UnescapeString(s)), " ")
}

func TestPortal(t *testing.T) {
	ph := mustServePatient(t)
	_, consent := ph.seed(t)
	// An earlier professional request about A: a GP's (denied) index search.
	if r := do(t, ph.as("gp"), "GET", "/Patient?identifier="+fhir.SystemBSN+"|"+bsnA, nil); r.status != 403 {
		t.Fatalf("gp search %d", r.status)
	}
	b := ph.browser(t)

	status, h, page := b.do("GET", "/portal/", nil)
	if status != 401 || !strings.Contains(page, `<html lang="nl">`) || !strings.Contains(page, `<label for="token">`) {
		t.Fatalf("sign-in page %d %s", status, page)
	}
	if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("CSP %q", csp)
	}
	csrf := csrfOf(t, page)

	t.Run("sign-in needs the CSRF token and a valid token", func(t *testing.T) {
		if status, _, _ := b.do("POST", "/portal/sign-in", url.Values{"token": {ph.token(t, bsnA)}}); status != 403 {
			t.Errorf("without CSRF: %d", status)
		}
		other := *b
		other.origin = "https://evil.example"
		if status, _, _ := other.do("POST", "/portal/sign-in", url.Values{"token": {ph.token(t, bsnA)}, "csrf": {csrf}}); status != 403 {
			t.Errorf("from another origin: %d", status)
		}
		if status, _, page := b.do("POST", "/portal/sign-in", url.Values{"token": {"x.y.z"}, "csrf": {csrf}}); status != 401 || !strings.Contains(page, `role="alert"`) {
			t.Errorf("bad token: %d %s", status, page)
		}
	})
	status, h, _ = b.do("POST", "/portal/sign-in", url.Values{"token": {ph.token(t, bsnA)}, "csrf": {csrf}})
	if status != 303 || h.Get("Location") != "/portal/" {
		t.Fatalf("sign-in %d %v", status, h)
	}
	cookie := strings.Join(h.Values("Set-Cookie"), "\n")
	for _, want := range []string{sessionCookie + "=", "Secure", "HttpOnly", "SameSite=Strict", "Path=/"} {
		if !strings.Contains(cookie, want) {
			t.Errorf("session cookie lacks %s: %s", want, cookie)
		}
	}

	t.Run("registrations", func(t *testing.T) {
		status, _, page := b.do("GET", "/portal/", nil)
		if status != 200 || !strings.Contains(text(page), "Apotheek De Brug medicatiegegevens") || !strings.Contains(page, `<th scope="col">`) {
			t.Fatalf("%d %s", status, text(page))
		}
	})
	t.Run("access log, in Dutch and English, with a date filter", func(t *testing.T) {
		status, _, page := b.do("GET", "/portal/log", nil)
		txt := text(page)
		if status != 200 || !strings.Contains(txt, "huisarts") || !strings.Contains(txt, "geweigerd") || !strings.Contains(txt, "systeem van de zorgaanbieder") {
			t.Fatalf("%d %s", status, txt)
		}
		if strings.Contains(txt, "Aanmelden") && strings.Contains(txt, "portal") {
			t.Errorf("the patient's own visits are listed: %s", txt)
		}
		en := *b
		en.lang = "en-GB,en;q=0.9,nl;q=0.5"
		_, h, page := en.do("GET", "/portal/log", nil)
		if !strings.Contains(page, `<html lang="en">`) || !strings.Contains(text(page), "general practitioner") || h.Get("Content-Language") != "en" {
			t.Errorf("English: %s", text(page))
		}
		if _, _, page := b.do("GET", "/portal/log?from=2999-01-01", nil); strings.Contains(text(page), "huisarts") {
			t.Errorf("future filter shows %s", text(page))
		}
		// The portal's days are Amsterdam's (a UTC date is wrong between
		// 23:00 and midnight UTC in winter).
		amsterdam, err := time.LoadLocation("Europe/Amsterdam")
		if err != nil {
			t.Fatal(err)
		}
		today := time.Now().In(amsterdam).Format("2006-01-02")
		if _, _, page := b.do("GET", "/portal/log?from="+today+"&to="+today, nil); !strings.Contains(text(page), "huisarts") {
			t.Errorf("today's filter hides the GP: %s", text(page))
		}
		if status, _, _ := b.do("GET", "/portal/log?from=yesterday", nil); status != 400 {
			t.Errorf("bad date: %d", status)
		}
	})
	t.Run("withdraw a consent, with confirmation", func(t *testing.T) {
		_, _, page := b.do("GET", "/portal/consent", nil)
		if !strings.Contains(text(page), "Apotheek De Brug medicatiegegevens Ja, gedeeld") {
			t.Fatalf("consent page: %s", text(page))
		}
		status, _, page := b.do("GET", "/portal/consent/confirm?org=90000002&category="+fhir.CategoryMedication+"&change=withdraw", nil)
		if status != 200 || !strings.Contains(page, `id="confirm"`) {
			t.Fatalf("confirm %d %s", status, page)
		}
		form := url.Values{"org": {"90000002"}, "category": {fhir.CategoryMedication}, "change": {"withdraw"}}
		if status, _, _ := b.do("POST", "/portal/consent", form); status != 403 {
			t.Errorf("without CSRF: %d", status)
		}
		if !ph.consentPermits(t, bsnA) {
			t.Fatal("a refused form changed the consent")
		}
		form.Set("csrf", csrfOf(t, page))
		status, h, _ := b.do("POST", "/portal/consent", form)
		if status != 303 || h.Get("Location") != "/portal/consent?done=withdraw" {
			t.Fatalf("withdraw %d %v", status, h)
		}
		if ph.consentPermits(t, bsnA) {
			t.Error("the GP would still get A's medication")
		}
		_, _, page = b.do("GET", "/portal/consent?done=withdraw", nil)
		if !strings.Contains(text(page), "Apotheek De Brug medicatiegegevens Nee, niet gedeeld") || !strings.Contains(page, `role="status"`) {
			t.Errorf("after: %s", text(page))
		}
		if v, live := ph.storedVersion(t, "Consent", consent[bsnA]); v != 1 || !live {
			t.Error("the provider's consent was modified")
		}
		// And given again.
		form.Set("change", "give")
		if status, h, _ := b.do("POST", "/portal/consent", form); status != 303 || h.Get("Location") != "/portal/consent?done=give" {
			t.Fatalf("give %d %v", status, h)
		}
		if !ph.consentPermits(t, bsnA) {
			t.Error("consent given again does not permit")
		}
		if ph.consentPermits(t, bsnB) != true {
			t.Error("B's consent changed")
		}
	})
	t.Run("bad consent changes", func(t *testing.T) {
		for _, q := range []string{"org=9000000&category=10160-0&change=withdraw", "org=90000002&category=1-1&change=withdraw", "org=90000002&category=10160-0&change=delete"} {
			if status, _, _ := b.do("GET", "/portal/consent/confirm?"+q, nil); status != 400 {
				t.Errorf("%s: %d", q, status)
			}
		}
	})
	t.Run("portal requests are audited with the patient as agent", func(t *testing.T) {
		n := 0
		for _, e := range storedEvents(t, ph.harness) {
			if e.subtype == "portal-consent-change" && e.agentUZI == bsnA {
				n++
			}
		}
		if n != 3 { // the refused form, the withdrawal and the new consent
			t.Errorf("%d audited consent changes by A, want 3", n)
		}
	})
	t.Run("sign out", func(t *testing.T) {
		_, _, page := b.do("GET", "/portal/", nil)
		if status, _, _ := b.do("POST", "/portal/sign-out", url.Values{"csrf": {csrfOf(t, page)}}); status != 303 {
			t.Fatalf("sign out %d", status)
		}
		if status, _, _ := b.do("GET", "/portal/log", nil); status != 401 {
			t.Errorf("after sign-out %d", status)
		}
	})
}

// consentPermits reports whether bsn's consents let a GP elsewhere have
// the medication of the source 90000002 now: the federated query's
// consent question.
func (ph *patientHarness) consentPermits(tb testing.TB, bsn string) bool {
	tb.Helper()
	page, err := ph.st.Search(context.Background(), store.Query{Type: "Consent", Limit: fhir.MaxCount,
		Clauses: []fhir.Clause{{Param: "patient", Strings: []string{fhir.TermRefIdentifier("patient", fhir.SystemBSN, bsn)}}}})
	if err != nil {
		tb.Fatal(err)
	}
	var cs []access.Consent
	for _, r := range page.Resources {
		c, err := access.ParseConsent(r.Body)
		if err != nil {
			tb.Fatal(err)
		}
		cs = append(cs, c)
	}
	return access.DecideConsent(cs, access.ConsentRequest{Requester: access.Principal{URA: "90000001"}, Category: fhir.CategoryMedication, Source: "90000002", At: time.Now()}).Permit
}
