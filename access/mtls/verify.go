package mtls

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// verifier checks client certificates in the handshake.
type verifier struct {
	pool      *x509.CertPool
	crls      *crlSet
	onRefused func(reason string)
	now       func() time.Time
}

func newVerifier(opts ServerOptions) (*verifier, error) {
	if len(opts.ClientCAs) == 0 {
		return nil, errors.New("mtls: no client CA configured")
	}
	v := &verifier{pool: x509.NewCertPool(), onRefused: opts.OnRefused, now: time.Now}
	for _, c := range opts.ClientCAs {
		v.pool.AddCert(c)
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	crls, err := newCRLSet(opts.CRLFiles, opts.ClientCAs, logger)
	if err != nil {
		return nil, err
	}
	v.crls = crls
	return v, nil
}

// verifyConnection is the tls.Config.VerifyConnection of the listener.
func (v *verifier) verifyConnection(cs tls.ConnectionState) error {
	reason, err := v.verify(cs.PeerCertificates)
	if err != nil && v.onRefused != nil {
		v.onRefused(reason)
	}
	return err
}

// verify verifies the client's chain for client authentication, then
// revocation of every certificate in it, and classifies a failure.
func (v *verifier) verify(certs []*x509.Certificate) (reason string, err error) {
	if len(certs) == 0 {
		return ReasonNoCertificate, ErrNoCertificate
	}
	leaf := certs[0]
	opts := x509.VerifyOptions{
		Roots:       v.pool,
		CurrentTime: v.now(),
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if len(certs) > 1 {
		opts.Intermediates = x509.NewCertPool()
		for _, c := range certs[1:] {
			opts.Intermediates.AddCert(c)
		}
	}
	chains, err := leaf.Verify(opts)
	if err != nil {
		return classify(leaf, opts, err)
	}
	idx := v.crls.current()
	for _, chain := range chains {
		for i := 0; i+1 < len(chain); i++ {
			if reason, err := idx.check(chain[i], chain[i+1], opts.CurrentTime); err != nil {
				return reason, err
			}
		}
	}
	return "", nil
}

// classify turns an x509 verification error into a reason and an error
// wrapping both the package's sentinel and the x509 error.
func classify(leaf *x509.Certificate, opts x509.VerifyOptions, err error) (string, error) {
	var unknown x509.UnknownAuthorityError
	if errors.As(err, &unknown) {
		return ReasonUnknownCA, fmt.Errorf("%w: %w", ErrUnknownIssuer, err)
	}
	var invalid x509.CertificateInvalidError
	if errors.As(err, &invalid) && invalid.Reason == x509.Expired {
		// x509 checks validity dates before it looks for an issuer: an
		// expired certificate from a stranger is first of all a stranger.
		during := opts
		during.CurrentTime = leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore) / 2)
		if _, err2 := leaf.Verify(during); errors.As(err2, &unknown) {
			return ReasonUnknownCA, fmt.Errorf("%w: %w", ErrUnknownIssuer, err2)
		}
		if opts.CurrentTime.Before(leaf.NotBefore) {
			return ReasonNotYetValid, fmt.Errorf("%w: %w", ErrNotYetValid, err)
		}
		return ReasonExpired, fmt.Errorf("%w: %w", ErrExpired, err)
	}
	return ReasonInvalid, fmt.Errorf("%w: %w", ErrInvalidCertificate, err)
}

// crlSet holds the CRL files, reloading a file when its modification time
// or size changes. Readers use an immutable index swapped atomically.
type crlSet struct {
	files  []string
	cas    []*x509.Certificate
	logger *slog.Logger

	mu    sync.Mutex
	state map[string]crlFile
	index atomic.Pointer[crlIndex]
}

// crlFile is what was loaded from one file.
type crlFile struct {
	modTime time.Time
	size    int64
	lists   []*crl
}

// crl is one loaded revocation list.
type crl struct {
	issuer     *x509.Certificate // the client CA whose signature it carries
	nextUpdate time.Time
	revoked    map[string]bool // by serial (big-endian bytes)
}

// crlIndex finds the CRLs of an issuing certificate.
type crlIndex struct {
	byIssuer map[string][]*crl // by the issuer certificate's DER
}

func newCRLSet(files []string, cas []*x509.Certificate, logger *slog.Logger) (*crlSet, error) {
	s := &crlSet{files: files, cas: cas, logger: logger, state: map[string]crlFile{}}
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			return nil, fmt.Errorf("mtls: CRL: %w", err)
		}
		lists, err := s.load(f)
		if err != nil {
			return nil, err
		}
		s.state[f] = crlFile{modTime: fi.ModTime(), size: fi.Size(), lists: lists}
	}
	s.rebuild()
	return s, nil
}

// current reloads changed files and returns the index to check against.
func (s *crlSet) current() *crlIndex {
	if len(s.files) > 0 {
		s.refresh()
	}
	return s.index.Load()
}

func (s *crlSet) refresh() {
	s.mu.Lock()
	defer s.mu.Unlock()
	changed := false
	for _, f := range s.files {
		fi, err := os.Stat(f)
		old := s.state[f]
		if err != nil {
			if !old.modTime.IsZero() {
				s.logger.Error("CRL file unreadable; keeping the revocations loaded before", "file", f, "err", err)
				old.modTime, old.size = time.Time{}, -1
				s.state[f] = old
			}
			continue
		}
		if fi.ModTime().Equal(old.modTime) && fi.Size() == old.size {
			continue
		}
		lists, err := s.load(f)
		// Remember what was seen either way, so a bad file is not reparsed
		// on every handshake.
		old.modTime, old.size = fi.ModTime(), fi.Size()
		if err != nil {
			s.logger.Error("CRL reload failed; keeping the revocations loaded before", "file", f, "err", err)
			s.state[f] = old
			continue
		}
		old.lists = lists
		s.state[f] = old
		changed = true
		s.logger.Info("CRL reloaded", "file", f, "lists", len(lists))
	}
	if changed {
		s.rebuild()
	}
}

// rebuild indexes the loaded lists by issuer. Callers hold mu or own s.
func (s *crlSet) rebuild() {
	idx := &crlIndex{byIssuer: map[string][]*crl{}}
	for _, f := range s.files {
		for _, l := range s.state[f].lists {
			k := string(l.issuer.Raw)
			idx.byIssuer[k] = append(idx.byIssuer[k], l)
		}
	}
	s.index.Store(idx)
}

// load parses the CRLs of a file (PEM blocks "X509 CRL", or one DER CRL)
// and checks that each is signed by a client CA.
func (s *crlSet) load(file string) ([]*crl, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("mtls: CRL: %w", err)
	}
	var ders [][]byte
	if bytes.Contains(data, []byte("-----BEGIN")) {
		for {
			var block *pem.Block
			block, data = pem.Decode(data)
			if block == nil {
				break
			}
			if block.Type == "X509 CRL" {
				ders = append(ders, block.Bytes)
			}
		}
		if len(ders) == 0 {
			return nil, fmt.Errorf("mtls: CRL %s: no X509 CRL PEM block", file)
		}
	} else {
		ders = [][]byte{data}
	}
	var lists []*crl
	for _, der := range ders {
		rl, err := x509.ParseRevocationList(der)
		if err != nil {
			return nil, fmt.Errorf("mtls: CRL %s: %w", file, err)
		}
		issuer := s.issuerOf(rl)
		if issuer == nil {
			return nil, fmt.Errorf("mtls: CRL %s (issuer %s): %w", file, rl.Issuer, ErrUnknownIssuer)
		}
		l := &crl{issuer: issuer, nextUpdate: rl.NextUpdate, revoked: make(map[string]bool, len(rl.RevokedCertificateEntries))}
		for _, e := range rl.RevokedCertificateEntries {
			l.revoked[string(e.SerialNumber.Bytes())] = true
		}
		lists = append(lists, l)
	}
	return lists, nil
}

// issuerOf returns the client CA that signed rl, or nil.
func (s *crlSet) issuerOf(rl *x509.RevocationList) *x509.Certificate {
	for _, ca := range s.cas {
		if bytes.Equal(ca.RawSubject, rl.RawIssuer) && rl.CheckSignatureFrom(ca) == nil {
			return ca
		}
	}
	return nil
}

// check tells whether cert, issued by issuer, is revoked. When issuer has
// CRLs, at least one must be current (fail closed); a serial listed on any
// of them is revoked. An issuer without a CRL is not checked.
func (idx *crlIndex) check(cert, issuer *x509.Certificate, now time.Time) (string, error) {
	lists := idx.byIssuer[string(issuer.Raw)]
	if len(lists) == 0 {
		return "", nil
	}
	serial := string(cert.SerialNumber.Bytes())
	current := false
	for _, l := range lists {
		if l.revoked[serial] {
			return ReasonRevoked, fmt.Errorf("%w: serial %X by %s", ErrRevoked, cert.SerialNumber, issuer.Subject)
		}
		if l.nextUpdate.IsZero() || !now.After(l.nextUpdate) {
			current = true
		}
	}
	if !current {
		return ReasonCRLExpired, fmt.Errorf("%w: the CRL of %s", ErrCRLExpired, issuer.Subject)
	}
	return "", nil
}
