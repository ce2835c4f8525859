package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/schakelpunt/schakelpunt/access"
	"github.com/schakelpunt/schakelpunt/access/mtls"
	"github.com/schakelpunt/schakelpunt/access/pki"
	"github.com/schakelpunt/schakelpunt/routing"
)

// demoClient is a client certificate written for the development CA.
type demoClient struct {
	file string
	req  pki.IssueRequest
}

// Demo organisations: the sources of --demo and the supervisor.
const (
	uraGP         = "90000001" // Huisartsenpraktijk De Linde (GP system)
	uraPharmacy1  = "90000002" // Apotheek De Brug
	uraPharmacy2  = "90000003" // Apotheek Het Kruis
	uraHospital   = "90000111" // Ziekenhuis Rijnoever
	uraSupervisor = "90000009" // Autoriteit Persoonsgegevens (demo)
)

// demoClients are the certificates of DESIGN.md section 8 for each demo
// role.
var demoClients = []demoClient{
	{"huisarts", pki.IssueRequest{CardType: access.CardProfessional, UZI: "11111111", URA: uraGP, Role: "01.015", AGB: "01000001", Name: "Dr. A. de Vries, huisarts"}},
	{"apotheker", pki.IssueRequest{CardType: access.CardProfessional, UZI: "11111112", URA: uraPharmacy1, Role: "17.075", AGB: "06000002", Name: "B. Jansen, apotheker"}},
	{"cardioloog", pki.IssueRequest{CardType: access.CardProfessional, UZI: "11111113", URA: uraHospital, Role: "01.010", AGB: "01000003", Name: "C. Bakker, cardioloog"}},
	{"fysiotherapeut", pki.IssueRequest{CardType: access.CardProfessional, UZI: "11111114", URA: uraHospital, Role: "04.000", AGB: "04000004", Name: "D. Visser, fysiotherapeut"}},
	{"bedrijfsarts", pki.IssueRequest{CardType: access.CardProfessional, UZI: "11111115", URA: "90000222", Role: "01.008", AGB: "01000005", Name: "E. Smit, bedrijfsarts"}},
	{"medewerker", pki.IssueRequest{CardType: access.CardNamedEmployee, UZI: "11111116", URA: uraPharmacy1, Name: "F. Mulder, medewerker Apotheek De Brug"}},
	{"bron-huisarts", pki.IssueRequest{CardType: access.CardServer, UZI: "22222221", URA: uraGP, Name: "HIS Huisartsenpraktijk De Linde", DNS: []string{"localhost", "127.0.0.1"}}},
	{"bron-apotheek-1", pki.IssueRequest{CardType: access.CardServer, UZI: "22222222", URA: uraPharmacy1, Name: "AIS Apotheek De Brug", DNS: []string{"localhost", "127.0.0.1"}}},
	{"bron-apotheek-2", pki.IssueRequest{CardType: access.CardServer, UZI: "22222223", URA: uraPharmacy2, Name: "AIS Apotheek Het Kruis", DNS: []string{"localhost", "127.0.0.1"}}},
	{"toezichthouder", pki.IssueRequest{CardType: access.CardNamedEmployee, UZI: "33333331", URA: uraSupervisor, Name: "G. de Boer, toezichthouder"}},
}

// serverTLS builds the public listener's TLS: from configuration, or from
// a development CA under DATA/pki that serve creates when none is
// configured.
func (a *app) serverTLS(metrics *routing.Metrics) (*tls.Config, error) {
	opts := mtls.ServerOptions{
		CRLFiles:  a.cfg.TLS.CRL,
		OnRefused: func(reason string) { metrics.Handshakes.WithLabelValues(reason).Inc() },
		Logger:    a.log,
	}
	if a.cfg.TLS.Cert != "" {
		cert, err := tls.LoadX509KeyPair(a.cfg.TLS.Cert, a.cfg.TLS.Key)
		if err != nil {
			return nil, fmt.Errorf("tls.cert/tls.key: %w", err)
		}
		cas, err := mtls.LoadCertificates(a.cfg.TLS.ClientCA...)
		if err != nil {
			return nil, fmt.Errorf("tls.client_ca: %w", err)
		}
		opts.Certificate, opts.ClientCAs = cert, cas
		return mtls.NewServerConfig(opts)
	}

	dir := filepath.Join(a.cfg.DataDir, "pki")
	ca, created, err := pki.LoadOrInit(dir)
	if err != nil {
		return nil, fmt.Errorf("development CA: %w", err)
	}
	a.pkiDir = dir
	cert, err := devServerCert(ca, dir)
	if err != nil {
		return nil, err
	}
	if err := writeDemoClients(ca, filepath.Join(dir, "clients")); err != nil {
		return nil, err
	}
	if created {
		a.log.Warn("NO TLS CONFIGURED: created a DEVELOPMENT CA; never use it in production", slog.String("dir", dir))
	} else {
		a.log.Warn("NO TLS CONFIGURED: using the DEVELOPMENT CA; never use it in production", slog.String("dir", dir))
	}
	a.log.Warn("development client certificates for each demo role", slog.String("dir", filepath.Join(dir, "clients")))
	opts.Certificate, opts.ClientCAs = cert, []*x509.Certificate{ca.Cert}
	crl := filepath.Join(dir, "crl.pem")
	if _, err := os.Stat(crl); err == nil && len(opts.CRLFiles) == 0 {
		opts.CRLFiles = []string{crl}
	}
	return mtls.NewServerConfig(opts)
}

// devServerCert loads DATA/pki/server.{crt,key}, issuing it (localhost,
// 127.0.0.1, ::1) when absent or about to expire.
func devServerCert(ca *pki.CA, dir string) (tls.Certificate, error) {
	prefix := filepath.Join(dir, "server")
	if cert, err := tls.LoadX509KeyPair(prefix+".crt", prefix+".key"); err == nil {
		if leaf, err := x509.ParseCertificate(cert.Certificate[0]); err == nil && time.Until(leaf.NotAfter) > 24*time.Hour && leaf.CheckSignatureFrom(ca.Cert) == nil {
			return cert, nil
		}
	}
	certPEM, keyPEM, _, err := ca.Issue(pki.IssueRequest{Name: "schakelpunt development server", DNS: []string{"localhost", "127.0.0.1", "::1"}, ServerAuth: true})
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("development server certificate: %w", err)
	}
	if err := pki.WriteFiles(prefix, certPEM, keyPEM); err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(certPEM, keyPEM)
}

// writeDemoClients writes a certificate for each demo role that has none
// yet (or whose certificate the CA did not sign).
func writeDemoClients(ca *pki.CA, dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("demo clients: %w", err)
	}
	for _, c := range demoClients {
		prefix := filepath.Join(dir, c.file)
		if b, err := os.ReadFile(prefix + ".crt"); err == nil {
			if blk, _ := pem.Decode(b); blk != nil {
				if leaf, err := x509.ParseCertificate(blk.Bytes); err == nil && leaf.CheckSignatureFrom(ca.Cert) == nil && time.Until(leaf.NotAfter) > 24*time.Hour {
					continue
				}
			}
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("demo client %s: %w", c.file, err)
		}
		certPEM, keyPEM, _, err := ca.Issue(c.req)
		if err != nil {
			return fmt.Errorf("demo client %s: %w", c.file, err)
		}
		if err := pki.WriteFiles(prefix, certPEM, keyPEM); err != nil {
			return err
		}
	}
	return nil
}
