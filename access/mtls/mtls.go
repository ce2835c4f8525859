// Package mtls builds the TLS configuration of Schakelpunt's mutually
// authenticated listeners: TLS 1.2 or newer with modern cipher suites
// only, a client certificate required and verified against the configured
// client CAs, and certificate revocation lists checked in the handshake and
// reloaded when their files change. Every refused client certificate is
// classified (expired, not yet valid, unknown CA, revoked, no certificate,
// ...) and reported to a hook, so the caller can count refusals by reason.
//
// Verification is done by the package itself rather than by crypto/tls:
// the configuration asks for a client certificate (tls.RequestClientCert)
// and verifies it in VerifyConnection. Go's own verification
// (RequireAndVerifyClientCert) aborts the handshake before any callback,
// so a server could neither classify the failure nor see a client that
// sent no certificate. The consequence: ConnectionState.VerifiedChains is
// empty on connections this package accepted; a completed handshake is
// the proof of verification (access.PrincipalFromTLS relies on it).
// VerifyConnection also runs on resumed sessions, so a certificate revoked
// after the first handshake is refused on resumption.
package mtls

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
)

// Reasons for a refused client certificate, as reported to OnRefused.
const (
	ReasonNoCertificate = "no-certificate"
	ReasonExpired       = "expired"
	ReasonNotYetValid   = "not-yet-valid"
	ReasonUnknownCA     = "unknown-ca"
	ReasonRevoked       = "revoked"
	ReasonCRLExpired    = "crl-expired"
	ReasonInvalid       = "invalid" // anything else: wrong key usage, bad chain, ...
)

// Errors of a refused client certificate (returned from the handshake)
// and of loading CRLs.
var (
	ErrNoCertificate = errors.New("mtls: no client certificate")
	ErrExpired       = errors.New("mtls: certificate expired")
	ErrNotYetValid   = errors.New("mtls: certificate not yet valid")
	// ErrUnknownIssuer: a client certificate, or a CRL, whose issuer is
	// not among the client CAs.
	ErrUnknownIssuer = errors.New("mtls: unknown issuer")
	ErrRevoked       = errors.New("mtls: certificate revoked")
	// ErrCRLExpired: the CRL of the certificate's issuer is past its
	// NextUpdate, so revocation cannot be checked: refused (fail closed).
	ErrCRLExpired = errors.New("mtls: CRL expired")
	// ErrInvalidCertificate: any other verification failure.
	ErrInvalidCertificate = errors.New("mtls: invalid certificate")
)

// cipherSuites are the TLS 1.2 suites offered: ECDHE key exchange with an
// AEAD. TLS 1.3 suites are all modern and not configurable in Go.
var cipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// CipherSuites returns the TLS 1.2 cipher suites the configurations allow.
func CipherSuites() []uint16 { return append([]uint16(nil), cipherSuites...) }

// ServerOptions configures a listener that requires client certificates.
type ServerOptions struct {
	// Certificate is the server's own certificate and key.
	Certificate tls.Certificate
	// ClientCAs are the CAs whose certificates may connect (tls.client_ca).
	ClientCAs []*x509.Certificate
	// CRLFiles are revocation lists, PEM or DER (tls.crl). Each must be
	// signed by one of ClientCAs. A file that changes (modification time
	// or size) is reloaded at the next handshake; if the new content does
	// not load, the previous one stays in force and the error is logged.
	CRLFiles []string
	// OnRefused, if set, is called once for every refused client
	// certificate with one of the Reason constants.
	OnRefused func(reason string)
	// Logger receives CRL reloads and their problems; nil discards them.
	Logger *slog.Logger
}

// NewServerConfig returns the *tls.Config for a listener that only admits
// clients with a valid, unrevoked certificate from one of opts.ClientCAs.
// It fails when no client CA is given or a CRL does not load; CRL errors
// wrap ErrUnknownIssuer when the CRL's signer is not a client CA.
func NewServerConfig(opts ServerOptions) (*tls.Config, error) {
	v, err := newVerifier(opts)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		Certificates:     []tls.Certificate{opts.Certificate},
		MinVersion:       tls.VersionTLS12,
		CipherSuites:     CipherSuites(),
		ClientAuth:       tls.RequestClientCert,
		ClientCAs:        v.pool, // named in the CertificateRequest, so clients pick the right certificate
		VerifyConnection: v.verifyConnection,
	}, nil
}

// NewClientConfig returns a *tls.Config for an outbound mutual-TLS client
// that presents cert and trusts servers issued by serverCAs, with the same
// protocol floor and cipher suites as the listener.
func NewClientConfig(cert tls.Certificate, serverCAs []*x509.Certificate) *tls.Config {
	pool := x509.NewCertPool()
	for _, c := range serverCAs {
		pool.AddCert(c)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		MinVersion:   tls.VersionTLS12,
		CipherSuites: CipherSuites(),
	}
}

// LoadCertificates reads every CERTIFICATE block of the PEM files, e.g.
// the client CA bundle of tls.client_ca.
func LoadCertificates(files ...string) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("mtls: %w", err)
		}
		n := 0
		for {
			var block *pem.Block
			block, data = pem.Decode(data)
			if block == nil {
				break
			}
			if block.Type != "CERTIFICATE" {
				continue
			}
			c, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("mtls: %s: %w", f, err)
			}
			certs = append(certs, c)
			n++
		}
		if n == 0 {
			return nil, fmt.Errorf("mtls: %s: no PEM certificate", f)
		}
	}
	return certs, nil
}
