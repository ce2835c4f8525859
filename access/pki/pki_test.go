package pki_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io/fs"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/schakelpunt/schakelpunt/access"
	"github.com/schakelpunt/schakelpunt/access/pki"
)

func mustInit(t *testing.T) *pki.CA {
	t.Helper()
	ca, err := pki.Init(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func parseCert(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("no certificate PEM in %q", certPEM)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestInitLoad(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	ca, err := pki.Init(dir)
	if err != nil {
		t.Fatal(err)
	}
	for name, perm := range map[string]fs.FileMode{pki.CertFile: 0o644, pki.KeyFile: 0o600, pki.CRLFile: 0o644} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != perm {
			t.Errorf("%s: mode %v, want %v", name, fi.Mode().Perm(), perm)
		}
	}
	if !ca.Cert.IsCA || ca.Dir() != dir {
		t.Errorf("CA cert IsCA=%v dir=%q", ca.Cert.IsCA, ca.Dir())
	}
	if _, err := pki.Init(dir); !errors.Is(err, pki.ErrExists) {
		t.Errorf("second Init: err = %v, want ErrExists", err)
	}
	loaded, err := pki.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !loaded.Cert.Equal(ca.Cert) || !loaded.Key.Equal(ca.Key) {
		t.Error("Load returned another CA")
	}
	again, created, err := pki.LoadOrInit(dir)
	if err != nil || created || !again.Cert.Equal(ca.Cert) {
		t.Errorf("LoadOrInit existing: created=%v err=%v", created, err)
	}
	fresh, created, err := pki.LoadOrInit(filepath.Join(t.TempDir(), "new"))
	if err != nil || !created || fresh.Cert.Equal(ca.Cert) {
		t.Errorf("LoadOrInit new: created=%v err=%v", created, err)
	}
}

func TestLoadRefuses(t *testing.T) {
	if _, err := pki.Load(t.TempDir()); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load of an empty dir: err = %v, want fs.ErrNotExist", err)
	}
	a, b := mustInit(t), mustInit(t)
	// a's certificate with b's key.
	dir := t.TempDir()
	copyFile(t, filepath.Join(a.Dir(), pki.CertFile), filepath.Join(dir, pki.CertFile))
	copyFile(t, filepath.Join(b.Dir(), pki.KeyFile), filepath.Join(dir, pki.KeyFile))
	if _, err := pki.Load(dir); err == nil || errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load with a foreign key: err = %v", err)
	}
	if _, _, err := pki.LoadOrInit(dir); err == nil {
		t.Error("LoadOrInit over a broken CA succeeded")
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func principal(c access.CardType, uzi, ura, role string) access.Principal {
	return access.Principal{OID: access.UZIPolicyOID, Version: "1", UZINumber: uzi, CardType: c, URA: ura, Role: role, AGB: "00000000"}
}

func TestIssue(t *testing.T) {
	ca := mustInit(t)
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	tests := []struct {
		name    string
		req     pki.IssueRequest
		want    *access.Principal // nil: no UZI identity
		usages  []x509.ExtKeyUsage
		dns     []string
		ips     []string
		subject string
	}{
		{"Z huisarts", pki.IssueRequest{CardType: access.CardProfessional, UZI: "11111111", URA: "90000111", Role: "01.015", Name: "Dr. Huisarts"},
			ptr(principal(access.CardProfessional, "11111111", "90000111", "01.015")),
			[]x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, nil, nil, "Dr. Huisarts"},
		{"Z with AGB", pki.IssueRequest{CardType: access.CardProfessional, UZI: "11111112", URA: "90000111", Role: "17.075", AGB: "12345678"},
			ptr(access.Principal{OID: access.UZIPolicyOID, Version: "1", UZINumber: "11111112", CardType: access.CardProfessional, URA: "90000111", Role: "17.075", AGB: "12345678"}),
			[]x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, nil, nil, ""},
		{"N employee", pki.IssueRequest{CardType: access.CardNamedEmployee, UZI: "33333333", URA: "90000111"},
			ptr(principal(access.CardNamedEmployee, "33333333", "90000111", "00.000")),
			[]x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, nil, nil, ""},
		{"M employee", pki.IssueRequest{CardType: access.CardUnnamedEmployee, UZI: "33333334", URA: "90000111", Role: "00.000"},
			ptr(principal(access.CardUnnamedEmployee, "33333334", "90000111", "00.000")),
			[]x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, nil, nil, ""},
		{"S source with DNS and IP", pki.IssueRequest{CardType: access.CardServer, UZI: "22222222", URA: "90000002", DNS: []string{"apotheek.example", "127.0.0.1", "::1"}},
			ptr(principal(access.CardServer, "22222222", "90000002", "00.000")),
			[]x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}, []string{"apotheek.example"}, []string{"127.0.0.1", "::1"}, ""},
		{"S client only", pki.IssueRequest{CardType: access.CardServer, UZI: "22222223", URA: "90000002", ClientAuth: true},
			ptr(principal(access.CardServer, "22222223", "90000002", "00.000")),
			[]x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, nil, nil, ""},
		{"server", pki.IssueRequest{DNS: []string{"localhost", "127.0.0.1"}},
			nil, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, []string{"localhost"}, []string{"127.0.0.1"}, "localhost"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			certPEM, keyPEM, serial, err := ca.Issue(tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
				t.Fatalf("key pair: %v", err)
			}
			cert := parseCert(t, certPEM)
			if cert.SerialNumber.Cmp(serial) != 0 || serial.Sign() <= 0 {
				t.Errorf("serial %v, certificate %v", serial, cert.SerialNumber)
			}
			for _, u := range tc.usages {
				if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{u}}); err != nil {
					t.Errorf("verify for usage %v: %v", u, err)
				}
			}
			if !slices.Equal(sortedUsages(cert.ExtKeyUsage), sortedUsages(tc.usages)) {
				t.Errorf("ExtKeyUsage = %v, want %v", cert.ExtKeyUsage, tc.usages)
			}
			if !slices.Equal(cert.DNSNames, tc.dns) {
				t.Errorf("DNSNames = %v, want %v", cert.DNSNames, tc.dns)
			}
			var ips []string
			for _, ip := range cert.IPAddresses {
				ips = append(ips, ip.String())
			}
			if !slices.Equal(ips, tc.ips) {
				t.Errorf("IPAddresses = %v, want %v", ips, tc.ips)
			}
			if tc.subject != "" && cert.Subject.CommonName != tc.subject {
				t.Errorf("CN = %q, want %q", cert.Subject.CommonName, tc.subject)
			}
			p, err := access.ParseUZI(cert)
			if tc.want == nil {
				if !errors.Is(err, access.ErrNoUZI) {
					t.Errorf("ParseUZI: err = %v, want ErrNoUZI", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseUZI: %v", err)
			}
			want := *tc.want
			want.Subject = cert.Subject.String()
			if p != want {
				t.Errorf("ParseUZI = %+v, want %+v", p, want)
			}
			if cert.Subject.SerialNumber != want.UZINumber {
				t.Errorf("subject serialNumber = %q, want the UZI number", cert.Subject.SerialNumber)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func sortedUsages(u []x509.ExtKeyUsage) []x509.ExtKeyUsage {
	s := slices.Clone(u)
	slices.Sort(s)
	return s
}

func TestIssueValidity(t *testing.T) {
	ca := mustInit(t)
	before := time.Now()
	certPEM, _, _, err := ca.Issue(pki.IssueRequest{CardType: access.CardProfessional, UZI: "1", URA: "90000111", Role: "01.015"})
	if err != nil {
		t.Fatal(err)
	}
	c := parseCert(t, certPEM)
	if c.NotBefore.After(before.Add(-59*time.Minute)) || c.NotAfter.Before(before.Add(364*24*time.Hour)) {
		t.Errorf("default validity %v .. %v", c.NotBefore, c.NotAfter)
	}
	nb, na := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2021, 1, 1, 0, 0, 0, 0, time.UTC)
	certPEM, _, _, err = ca.Issue(pki.IssueRequest{CardType: access.CardProfessional, UZI: "1", URA: "90000111", Role: "01.015", NotBefore: nb, NotAfter: na})
	if err != nil {
		t.Fatal(err)
	}
	if c := parseCert(t, certPEM); !c.NotBefore.Equal(nb) || !c.NotAfter.Equal(na) {
		t.Errorf("validity %v .. %v, want %v .. %v", c.NotBefore, c.NotAfter, nb, na)
	}
}

func TestIssueRefuses(t *testing.T) {
	ca := mustInit(t)
	now := time.Now()
	tests := []struct {
		name string
		req  pki.IssueRequest
	}{
		{"Z without role", pki.IssueRequest{CardType: access.CardProfessional, UZI: "1", URA: "90000111"}},
		{"N with a role", pki.IssueRequest{CardType: access.CardNamedEmployee, UZI: "1", URA: "90000111", Role: "01.015"}},
		{"unknown card", pki.IssueRequest{CardType: "X", UZI: "1", URA: "90000111", Role: "00.000"}},
		{"short URA", pki.IssueRequest{CardType: access.CardServer, UZI: "1", URA: "9000"}},
		{"no UZI number", pki.IssueRequest{CardType: access.CardServer, URA: "90000111"}},
		{"server without names", pki.IssueRequest{}},
		{"ends before it starts", pki.IssueRequest{DNS: []string{"x"}, NotBefore: now, NotAfter: now.Add(-time.Hour)}},
		{"non-ASCII DNS with UZI", pki.IssueRequest{CardType: access.CardServer, UZI: "1", URA: "90000111", DNS: []string{"bäcker.example"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, _, err := ca.Issue(tc.req); !errors.Is(err, pki.ErrInvalidRequest) {
				t.Fatalf("Issue: err = %v, want ErrInvalidRequest", err)
			}
		})
	}
}

// TestOpenSSLReadsCertificate checks the issued certificate with another
// implementation: openssl prints the otherName and the serial we parse.
func TestOpenSSLReadsCertificate(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatal("this test needs openssl on PATH (.ci/run installs it)")
	}
	ca := mustInit(t)
	certPEM, _, serial, err := ca.Issue(pki.IssueRequest{CardType: access.CardServer, UZI: "22222222", URA: "90000002", DNS: []string{"bron.example", "127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "c.crt")
	if err := os.WriteFile(path, certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(openssl, "x509", "-in", path, "-noout", "-serial", "-ext", "subjectAltName").CombinedOutput()
	if err != nil {
		t.Fatalf("openssl: %v\n%s", err, out)
	}
	text := string(out)
	for _, want := range []string{"2.16.528.1.1003.1.3.5.5.2-1-22222222-S-90000002-00.000-00000000", "DNS:bron.example", "IP Address:127.0.0.1"} {
		if !strings.Contains(text, want) {
			t.Errorf("openssl output lacks %q:\n%s", want, text)
		}
	}
	line, _, _ := strings.Cut(text, "\n")
	got, err := pki.ParseSerial(line)
	if err != nil {
		t.Fatalf("ParseSerial(%q): %v", line, err)
	}
	if got.Cmp(serial) != 0 {
		t.Errorf("ParseSerial(%q) = %X, want %X", line, got, serial)
	}
	if !strings.EqualFold("serial="+pki.FormatSerial(serial), strings.TrimSpace(line)) {
		t.Errorf("FormatSerial = %s, openssl printed %s", pki.FormatSerial(serial), line)
	}
}

func TestParseSerial(t *testing.T) {
	tests := []struct {
		in   string
		want int64 // 0: error
	}{
		{"serial=1A2B", 0x1a2b},
		{"1a2b", 0x1a2b},
		{"SERIAL=01A2B\n", 0x1a2b},
		{"  0x1A2B ", 0x1a2b},
		{"1A:2B", 0x1a2b},
		{"7FFFFFFFFFFFFFFF", 0x7fffffffffffffff},
		{"", 0},
		{"serial=", 0},
		{"xyz", 0},
		{"12 34", 0},
		{"0", 0},
		{"00", 0},
		{"-1", 0},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := pki.ParseSerial(tc.in)
			if tc.want == 0 {
				if !errors.Is(err, pki.ErrInvalidSerial) {
					t.Fatalf("ParseSerial(%q) = %v, %v; want ErrInvalidSerial", tc.in, got, err)
				}
				return
			}
			if err != nil || got.Cmp(big.NewInt(tc.want)) != 0 {
				t.Fatalf("ParseSerial(%q) = %v, %v; want %X", tc.in, got, err, tc.want)
			}
		})
	}
}

func readCRL(t *testing.T, ca *pki.CA) *x509.RevocationList {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(ca.Dir(), pki.CRLFile))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "X509 CRL" {
		t.Fatalf("no X509 CRL PEM block")
	}
	crl, err := x509.ParseRevocationList(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if err := crl.CheckSignatureFrom(ca.Cert); err != nil {
		t.Fatalf("CRL signature: %v", err)
	}
	return crl
}

func revokedSerials(crl *x509.RevocationList) []string {
	var s []string
	for _, e := range crl.RevokedCertificateEntries {
		s = append(s, e.SerialNumber.String())
	}
	return s
}

func TestRevoke(t *testing.T) {
	ca := mustInit(t)
	initial := readCRL(t, ca)
	if len(initial.RevokedCertificateEntries) != 0 || initial.Number.Int64() != 1 || !initial.NextUpdate.After(time.Now()) {
		t.Fatalf("initial CRL: %d entries, number %v, next update %v", len(initial.RevokedCertificateEntries), initial.Number, initial.NextUpdate)
	}
	steps := []struct {
		serial int64
		want   []string
		number int64
	}{
		{0x1a2b, []string{"6699"}, 2},
		{77, []string{"6699", "77"}, 3},
		{0x1a2b, []string{"6699", "77"}, 4}, // again: listed once
	}
	for _, s := range steps {
		if err := pki.Revoke(ca.Dir(), big.NewInt(s.serial)); err != nil {
			t.Fatal(err)
		}
		crl := readCRL(t, ca)
		if got := revokedSerials(crl); !slices.Equal(got, s.want) || crl.Number.Int64() != s.number {
			t.Fatalf("after revoking %d: serials %v number %v; want %v number %d", s.serial, got, crl.Number, s.want, s.number)
		}
	}
	if err := pki.Revoke(ca.Dir(), big.NewInt(0)); !errors.Is(err, pki.ErrInvalidSerial) {
		t.Errorf("Revoke(0): err = %v", err)
	}
	if err := pki.Revoke(t.TempDir(), big.NewInt(1)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Revoke without a CA: err = %v", err)
	}
}

func TestRevokeKeepsForeignCRL(t *testing.T) {
	a, b := mustInit(t), mustInit(t)
	foreign, err := os.ReadFile(filepath.Join(b.Dir(), pki.CRLFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(a.Dir(), pki.CRLFile), foreign, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := pki.Revoke(a.Dir(), big.NewInt(5)); err == nil {
		t.Fatal("Revoke over another CA's CRL succeeded")
	}
	after, _ := os.ReadFile(filepath.Join(a.Dir(), pki.CRLFile))
	if !bytes.Equal(after, foreign) {
		t.Error("the CRL file was overwritten")
	}
}

func TestWriteFiles(t *testing.T) {
	ca := mustInit(t)
	certPEM, keyPEM, _, err := ca.Issue(pki.IssueRequest{DNS: []string{"localhost"}})
	if err != nil {
		t.Fatal(err)
	}
	prefix := filepath.Join(t.TempDir(), "clients", "huisarts")
	if err := pki.WriteFiles(prefix, certPEM, keyPEM); err != nil {
		t.Fatal(err)
	}
	if _, err := tls.LoadX509KeyPair(prefix+".crt", prefix+".key"); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(prefix + ".key")
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file: %v, mode %v", err, fi.Mode().Perm())
	}
}

// The SAN must not make Go's verifier choke on IP names of a UZI server
// certificate: a TLS client dialling 127.0.0.1 accepts it.
func TestUZIServerCertificateVerifiesForIP(t *testing.T) {
	ca := mustInit(t)
	certPEM, _, _, err := ca.Issue(pki.IssueRequest{CardType: access.CardServer, UZI: "2", URA: "90000002", DNS: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	c := parseCert(t, certPEM)
	if _, err := c.Verify(x509.VerifyOptions{Roots: roots, DNSName: "127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	if !c.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) {
		t.Errorf("IP SAN %v", c.IPAddresses)
	}
}
