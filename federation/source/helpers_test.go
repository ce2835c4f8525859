package source_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/schakelpunt/schakelpunt/access"
	"github.com/schakelpunt/schakelpunt/access/pki"
	"github.com/schakelpunt/schakelpunt/federation/source"
)

// testPKI is a development CA issued in-process, with the switching
// point's client certificate.
type testPKI struct {
	ca     *pki.CA
	client tls.Certificate
}

func mustPKI(tb testing.TB) *testPKI {
	tb.Helper()
	ca, err := pki.Init(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	return &testPKI{ca: ca, client: mustIssue(tb, ca, pki.IssueRequest{
		CardType: access.CardServer, UZI: "22222229", URA: "90000999", Name: "Schakelpunt", DNS: []string{"127.0.0.1"},
	})}
}

func mustIssue(tb testing.TB, ca *pki.CA, req pki.IssueRequest) tls.Certificate {
	tb.Helper()
	certPEM, keyPEM, _, err := ca.Issue(req)
	if err != nil {
		tb.Fatal(err)
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// serverCert is a source's S-card certificate, which it also serves with.
func (p *testPKI) serverCert(tb testing.TB, ura string) tls.Certificate {
	return mustIssue(tb, p.ca, pki.IssueRequest{CardType: access.CardServer, UZI: "2222222" + ura[7:], URA: ura, DNS: []string{"localhost", "127.0.0.1"}})
}

// httpClient trusts the CA and presents cert (none when nil).
func (p *testPKI) httpClient(cert *tls.Certificate) *http.Client {
	pool := x509.NewCertPool()
	pool.AddCert(p.ca.Cert)
	conf := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if cert != nil {
		conf.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: conf}}
}

// mustServe runs a source on 127.0.0.1:0 until the test ends and returns
// its FHIR base URL.
func mustServe(tb testing.TB, p *testPKI, d *source.Data, opts source.Options) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	if len(opts.Certificate.Certificate) == 0 {
		opts.Certificate = p.serverCert(tb, "90000002")
	}
	if opts.ClientCAs == nil {
		opts.ClientCAs = []*x509.Certificate{p.ca.Cert}
	}
	srv, err := source.NewServer(d, opts)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("Serve: %v", err)
		}
	})
	return "https://" + ln.Addr().String() + source.BasePath
}

func mustLoadDemo(tb testing.TB, dir string) *source.Data {
	tb.Helper()
	d, err := source.LoadDemo(dir)
	if err != nil {
		tb.Fatal(err)
	}
	return d
}

// response is an answer decoded.
type response struct {
	status int
	header http.Header
	raw    []byte
	body   map[string]any
}

func do(tb testing.TB, c *http.Client, method, url string, header ...string) response {
	tb.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		tb.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	r := response{status: resp.StatusCode, header: resp.Header, raw: raw}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &r.body); err != nil {
			tb.Fatalf("%s %s: body is not JSON: %v: %s", method, url, err, raw)
		}
	}
	return r
}

// entries are the resources of a Bundle answer.
func (r response) entries() []map[string]any {
	var out []map[string]any
	list, _ := r.body["entry"].([]any)
	for _, e := range list {
		m, _ := e.(map[string]any)
		out = append(out, m)
	}
	return out
}

func (r response) resources() []map[string]any {
	var out []map[string]any
	for _, e := range r.entries() {
		res, _ := e["resource"].(map[string]any)
		out = append(out, res)
	}
	return out
}

// issueCodes are the codes of an OperationOutcome answer.
func (r response) issueCodes() []string {
	if r.body["resourceType"] != "OperationOutcome" {
		return nil
	}
	var codes []string
	issues, _ := r.body["issue"].([]any)
	for _, is := range issues {
		m, _ := is.(map[string]any)
		c, _ := m["code"].(string)
		codes = append(codes, c)
	}
	return codes
}

func (r response) link(rel string) string {
	links, _ := r.body["link"].([]any)
	for _, l := range links {
		m, _ := l.(map[string]any)
		if m["relation"] == rel {
			s, _ := m["url"].(string)
			return s
		}
	}
	return ""
}

// ref is the reference string at a dotted path of a resource.
func ref(res map[string]any, path string) string {
	var v any = res
	for _, k := range strings.Split(path, ".") {
		m, _ := v.(map[string]any)
		v = m[k]
	}
	s, _ := v.(string)
	return s
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }
