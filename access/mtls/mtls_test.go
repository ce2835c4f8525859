package mtls_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/schakelpunt/schakelpunt/access"
	"github.com/schakelpunt/schakelpunt/access/mtls"
	"github.com/schakelpunt/schakelpunt/access/pki"
)

// pkiFixture is a CA, a server certificate for 127.0.0.1 and the reasons
// the listener reported.
type pkiFixture struct {
	ca     *pki.CA
	server tls.Certificate

	mu      sync.Mutex
	refused []string
}

func newPKI(tb testing.TB) *pkiFixture {
	tb.Helper()
	ca, err := pki.Init(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	f := &pkiFixture{ca: ca}
	f.server = issue(tb, ca, pki.IssueRequest{DNS: []string{"127.0.0.1"}})
	return f
}

func issue(tb testing.TB, ca *pki.CA, req pki.IssueRequest) tls.Certificate {
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

func gp(ura string) pki.IssueRequest {
	return pki.IssueRequest{CardType: access.CardProfessional, UZI: "11111111", URA: ura, Role: "01.015", Name: "Dr. Huisarts"}
}

func (f *pkiFixture) onRefused(reason string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refused = append(f.refused, reason)
}

func (f *pkiFixture) takeRefused() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.refused
	f.refused = nil
	return r
}

func (f *pkiFixture) config(tb testing.TB, crlFiles ...string) *tls.Config {
	tb.Helper()
	cfg, err := mtls.NewServerConfig(mtls.ServerOptions{
		Certificate: f.server,
		ClientCAs:   []*x509.Certificate{f.ca.Cert},
		CRLFiles:    crlFiles,
		OnRefused:   f.onRefused,
	})
	if err != nil {
		tb.Fatal(err)
	}
	return cfg
}

// handshake is the server side's view of one connection.
type handshake struct {
	err       error
	principal access.Principal
	idErr     error
}

// listen serves cfg on 127.0.0.1 and reports each server-side handshake.
func listen(tb testing.TB, cfg *tls.Config) (string, <-chan handshake) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	results := make(chan handshake, 16)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				c := tls.Server(conn, cfg)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				var h handshake
				if h.err = c.HandshakeContext(ctx); h.err == nil {
					st := c.ConnectionState()
					h.principal, h.idErr = access.PrincipalFromTLS(&st)
					_, _ = c.Write([]byte("ok\n"))
				}
				results <- h
			}()
		}
	}()
	tb.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().String(), results
}

// dial connects as a client and reads the server's greeting; in TLS 1.3
// a refused client certificate only shows on that read.
func dial(addr string, cfg *tls.Config) error {
	d := &net.Dialer{Timeout: 10 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "ok\n" {
		return errors.New("unexpected greeting " + line)
	}
	return nil
}

func clientConfig(f *pkiFixture, version uint16, certs ...tls.Certificate) *tls.Config {
	roots := x509.NewCertPool()
	roots.AddCert(f.ca.Cert)
	return &tls.Config{RootCAs: roots, Certificates: certs, MinVersion: version, MaxVersion: version}
}

func TestHandshake(t *testing.T) {
	f := newPKI(t)
	other, err := pki.Init(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	revokedPEM, revokedKey, revokedSerial, err := f.ca.Issue(gp("90000111"))
	if err != nil {
		t.Fatal(err)
	}
	revoked, err := tls.X509KeyPair(revokedPEM, revokedKey)
	if err != nil {
		t.Fatal(err)
	}
	// The listener starts with the empty CRL of pki.Init; the revocation
	// comes later and must be picked up without a restart.
	cfg := f.config(t, filepath.Join(f.ca.Dir(), pki.CRLFile))
	addr, results := listen(t, cfg)
	if err := pki.Revoke(f.ca.Dir(), revokedSerial); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		certs  []tls.Certificate
		reason string // "" for accepted
		err    error
	}{
		{"good", []tls.Certificate{issue(t, f.ca, gp("90000111"))}, "", nil},
		{"source system", []tls.Certificate{issue(t, f.ca, pki.IssueRequest{CardType: access.CardServer, UZI: "2", URA: "90000002"})}, "", nil},
		{"expired", []tls.Certificate{issue(t, f.ca, pki.IssueRequest{CardType: access.CardProfessional, UZI: "1", URA: "90000111", Role: "01.015",
			NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-24 * time.Hour)})}, mtls.ReasonExpired, mtls.ErrExpired},
		{"not yet valid", []tls.Certificate{issue(t, f.ca, pki.IssueRequest{CardType: access.CardProfessional, UZI: "1", URA: "90000111", Role: "01.015",
			NotBefore: now.Add(24 * time.Hour), NotAfter: now.Add(48 * time.Hour)})}, mtls.ReasonNotYetValid, mtls.ErrNotYetValid},
		{"wrong CA", []tls.Certificate{issue(t, other, gp("90000111"))}, mtls.ReasonUnknownCA, mtls.ErrUnknownIssuer},
		{"wrong CA and expired", []tls.Certificate{issue(t, other, pki.IssueRequest{CardType: access.CardProfessional, UZI: "1", URA: "90000111", Role: "01.015",
			NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-24 * time.Hour)})}, mtls.ReasonUnknownCA, mtls.ErrUnknownIssuer},
		{"revoked", []tls.Certificate{revoked}, mtls.ReasonRevoked, mtls.ErrRevoked},
		{"no certificate", nil, mtls.ReasonNoCertificate, mtls.ErrNoCertificate},
		{"server certificate as client", []tls.Certificate{issue(t, f.ca, pki.IssueRequest{DNS: []string{"client.example"}})}, mtls.ReasonInvalid, mtls.ErrInvalidCertificate},
	}
	for _, version := range []struct {
		name string
		v    uint16
	}{{"TLS1.2", tls.VersionTLS12}, {"TLS1.3", tls.VersionTLS13}} {
		for _, tc := range tests {
			t.Run(version.name+"/"+tc.name, func(t *testing.T) {
				clientErr := dial(addr, clientConfig(f, version.v, tc.certs...))
				h := <-results
				refused := f.takeRefused()
				if tc.reason == "" {
					if clientErr != nil || h.err != nil {
						t.Fatalf("refused: client %v, server %v", clientErr, h.err)
					}
					if len(refused) != 0 {
						t.Errorf("hook called with %v", refused)
					}
					if h.idErr != nil {
						t.Errorf("PrincipalFromTLS: %v", h.idErr)
					}
					return
				}
				if clientErr == nil {
					t.Error("client was not refused")
				}
				if !errors.Is(h.err, tc.err) {
					t.Errorf("server handshake error = %v, want %v", h.err, tc.err)
				}
				if !slices.Equal(refused, []string{tc.reason}) {
					t.Errorf("hook reasons = %v, want [%s]", refused, tc.reason)
				}
			})
		}
	}
}

func TestPrincipalFromHandshake(t *testing.T) {
	f := newPKI(t)
	addr, results := listen(t, f.config(t))
	client := issue(t, f.ca, gp("90000111"))
	if err := dial(addr, mtls.NewClientConfig(client, []*x509.Certificate{f.ca.Cert})); err != nil {
		t.Fatal(err)
	}
	h := <-results
	if h.err != nil || h.idErr != nil {
		t.Fatalf("handshake %v, identity %v", h.err, h.idErr)
	}
	want := access.Principal{OID: access.UZIPolicyOID, Version: "1", UZINumber: "11111111", CardType: access.CardProfessional,
		URA: "90000111", Role: "01.015", AGB: "00000000", Subject: client.Leaf.Subject.String()}
	if h.principal != want {
		t.Errorf("principal = %+v, want %+v", h.principal, want)
	}

	// A plain server certificate connects (it is valid) but is no UZI identity.
	noUZI := issue(t, f.ca, pki.IssueRequest{DNS: []string{"x.example"}, ClientAuth: true})
	if err := dial(addr, mtls.NewClientConfig(noUZI, []*x509.Certificate{f.ca.Cert})); err != nil {
		t.Fatal(err)
	}
	if h := <-results; !errors.Is(h.idErr, access.ErrNoUZI) {
		t.Errorf("identity of a certificate without UZI: %v, want ErrNoUZI", h.idErr)
	}
}

func TestPrincipalFromTLSWithoutHandshake(t *testing.T) {
	for name, st := range map[string]*tls.ConnectionState{
		"nil":            nil,
		"incomplete":     {},
		"no certificate": {HandshakeComplete: true},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := access.PrincipalFromTLS(st); !errors.Is(err, access.ErrNoUZI) {
				t.Fatalf("err = %v, want ErrNoUZI", err)
			}
		})
	}
}

func TestProtocolFloor(t *testing.T) {
	f := newPKI(t)
	addr, results := listen(t, f.config(t))
	client := issue(t, f.ca, gp("90000111"))
	tests := []struct {
		name string
		cfg  *tls.Config
	}{
		{"TLS 1.1", &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}},
		{"CBC suite", &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256}}},
		{"RSA key exchange", &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_RSA_WITH_AES_128_GCM_SHA256}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := clientConfig(f, 0, client)
			cfg.MinVersion, cfg.MaxVersion, cfg.CipherSuites = tc.cfg.MinVersion, tc.cfg.MaxVersion, tc.cfg.CipherSuites
			if err := dial(addr, cfg); err == nil {
				t.Fatal("connected")
			}
			if h := <-results; h.err == nil {
				t.Fatal("server accepted the handshake")
			}
		})
	}
	if r := f.takeRefused(); len(r) != 0 {
		t.Errorf("protocol failures reported as certificate refusals: %v", r)
	}
}

func TestCRLExpired(t *testing.T) {
	f := newPKI(t)
	path := writeCRL(t, f.ca, time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour))
	addr, results := listen(t, f.config(t, path))
	if err := dial(addr, clientConfig(f, 0, issue(t, f.ca, gp("90000111")))); err == nil {
		t.Error("connected with an expired CRL")
	}
	if h := <-results; !errors.Is(h.err, mtls.ErrCRLExpired) {
		t.Errorf("server error = %v, want ErrCRLExpired", h.err)
	}
	if r := f.takeRefused(); !slices.Equal(r, []string{mtls.ReasonCRLExpired}) {
		t.Errorf("reasons = %v", r)
	}
	// A current CRL replacing it admits the client again.
	writeCRLTo(t, f.ca, path, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	if err := dial(addr, clientConfig(f, 0, issue(t, f.ca, gp("90000111")))); err != nil {
		t.Errorf("refused after the CRL was renewed: %v", err)
	}
	<-results
}

func TestCRLReloadKeepsLastGood(t *testing.T) {
	f := newPKI(t)
	certPEM, keyPEM, serial, err := f.ca.Issue(gp("90000111"))
	if err != nil {
		t.Fatal(err)
	}
	client, _ := tls.X509KeyPair(certPEM, keyPEM)
	if err := pki.Revoke(f.ca.Dir(), serial); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(f.ca.Dir(), pki.CRLFile)
	addr, results := listen(t, f.config(t, path))
	for name, change := range map[string]func(){
		"garbage": func() { _ = os.WriteFile(path, []byte("not a CRL, and longer than before to change the size"), 0o644) },
		"removed": func() { _ = os.Remove(path) },
	} {
		t.Run(name, func(t *testing.T) {
			change()
			if err := dial(addr, clientConfig(f, 0, client)); err == nil {
				t.Error("a revoked client connected after the CRL file broke")
			}
			if h := <-results; !errors.Is(h.err, mtls.ErrRevoked) {
				t.Errorf("server error = %v, want ErrRevoked", h.err)
			}
		})
	}
}

func TestNewServerConfigRefuses(t *testing.T) {
	f := newPKI(t)
	other, err := pki.Init(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "none.pem")
	tests := []struct {
		name string
		opts mtls.ServerOptions
		err  error
	}{
		{"no client CA", mtls.ServerOptions{Certificate: f.server}, nil},
		{"CRL of another CA", mtls.ServerOptions{Certificate: f.server, ClientCAs: []*x509.Certificate{f.ca.Cert},
			CRLFiles: []string{filepath.Join(other.Dir(), pki.CRLFile)}}, mtls.ErrUnknownIssuer},
		{"missing CRL", mtls.ServerOptions{Certificate: f.server, ClientCAs: []*x509.Certificate{f.ca.Cert},
			CRLFiles: []string{missing}}, os.ErrNotExist},
		{"CRL file without CRL", mtls.ServerOptions{Certificate: f.server, ClientCAs: []*x509.Certificate{f.ca.Cert},
			CRLFiles: []string{filepath.Join(f.ca.Dir(), pki.CertFile)}}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := mtls.NewServerConfig(tc.opts)
			if err == nil || (tc.err != nil && !errors.Is(err, tc.err)) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
		})
	}
}

func TestDERCRLAndBundle(t *testing.T) {
	f := newPKI(t)
	certPEM, keyPEM, serial, err := f.ca.Issue(gp("90000111"))
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(9), ThisUpdate: time.Now().Add(-time.Hour), NextUpdate: time.Now().Add(time.Hour),
		RevokedCertificateEntries: []x509.RevocationListEntry{{SerialNumber: serial, RevocationTime: time.Now()}},
	}, f.ca.Cert, f.ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "crl.der")
	if err := os.WriteFile(path, der, 0o644); err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, f.ca.CertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	cas, err := mtls.LoadCertificates(caFile)
	if err != nil || len(cas) != 1 || !cas[0].Equal(f.ca.Cert) {
		t.Fatalf("LoadCertificates: %v, %d", err, len(cas))
	}
	cfg, err := mtls.NewServerConfig(mtls.ServerOptions{Certificate: f.server, ClientCAs: cas, CRLFiles: []string{path}})
	if err != nil {
		t.Fatal(err)
	}
	addr, results := listen(t, cfg)
	client, _ := tls.X509KeyPair(certPEM, keyPEM)
	if err := dial(addr, clientConfig(f, 0, client)); err == nil {
		t.Error("revoked client (DER CRL) connected")
	}
	if h := <-results; !errors.Is(h.err, mtls.ErrRevoked) {
		t.Errorf("server error = %v, want ErrRevoked", h.err)
	}
	if _, err := mtls.LoadCertificates(path); err == nil {
		t.Error("LoadCertificates accepted a file without PEM certificates")
	}
}

func writeCRL(t *testing.T, ca *pki.CA, thisUpdate, nextUpdate time.Time) string {
	path := filepath.Join(t.TempDir(), "crl.pem")
	writeCRLTo(t, ca, path, thisUpdate, nextUpdate)
	return path
}

func writeCRLTo(t *testing.T, ca *pki.CA, path string, thisUpdate, nextUpdate time.Time) {
	t.Helper()
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(time.Now().UnixNano()), ThisUpdate: thisUpdate, NextUpdate: nextUpdate}, ca.Cert, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkHandshakeAndIdentity: one new mutual-TLS connection over
// loopback per op (full handshake, both sides, with the CRL check) and the
// UZI identity parsed on the server.
func BenchmarkHandshakeAndIdentity(b *testing.B) {
	f := newPKI(b)
	cfg := f.config(b, filepath.Join(f.ca.Dir(), pki.CRLFile))
	addr, results := listen(b, cfg)
	client := mtls.NewClientConfig(issue(b, f.ca, gp("90000111")), []*x509.Certificate{f.ca.Cert})
	for b.Loop() {
		if err := dial(addr, client); err != nil {
			b.Fatal(err)
		}
		if h := <-results; h.err != nil || h.idErr != nil {
			b.Fatal(h.err, h.idErr)
		}
	}
}

// BenchmarkKeptAliveRequest: one HTTPS GET on a kept-alive mutual-TLS
// connection per op, the handler parsing the UZI identity.
func BenchmarkKeptAliveRequest(b *testing.B) {
	f := newPKI(b)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := access.PrincipalFromTLS(r.TLS)
		if err != nil {
			http.Error(w, "forbidden", http.StatusForbidden)
			return
		}
		_, _ = io.WriteString(w, p.URA)
	}))
	srv.TLS = f.config(b, filepath.Join(f.ca.Dir(), pki.CRLFile))
	srv.StartTLS()
	b.Cleanup(srv.Close)
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig:     mtls.NewClientConfig(issue(b, f.ca, gp("90000111")), []*x509.Certificate{f.ca.Cert}),
		MaxIdleConnsPerHost: 1,
	}}
	b.Cleanup(client.CloseIdleConnections)
	get := func() {
		resp, err := client.Get(srv.URL)
		if err != nil {
			b.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || string(body) != "90000111" {
			b.Fatalf("%v %d %q", err, resp.StatusCode, body)
		}
	}
	get() // the handshake, outside the measurement
	for b.Loop() {
		get()
	}
}
