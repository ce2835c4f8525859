// Package pki is the development and test certificate authority: it
// issues UZI-shaped certificates (the UZI otherName in the subjectAltName,
// for every card type), server certificates, and a CRL of the serials it
// revoked. `schakelpunt ca` is a thin command over it, `serve` uses it for
// its development PKI, and the project's tests issue their certificates
// with it in-process (expired and not-yet-valid variants through
// NotBefore/NotAfter, a wrong CA through a second Init in another
// directory, revoked ones through Revoke).
//
// It is not a production CA: keys live unencrypted in files.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/schakelpunt/schakelpunt/access"
)

// File names inside a CA directory.
const (
	CertFile = "ca.crt"
	KeyFile  = "ca.key"
	CRLFile  = "crl.pem"
)

// Validity periods.
const (
	caValidity   = 10 * 365 * 24 * time.Hour
	leafValidity = 365 * 24 * time.Hour
	crlValidity  = 365 * 24 * time.Hour // a development CRL; revoking renews it
	backdate     = time.Hour            // tolerate clock skew
)

// Errors.
var (
	// ErrExists: Init found a CA in the directory; it never overwrites one.
	ErrExists = errors.New("pki: a CA already exists in this directory")
	// ErrInvalidRequest: an IssueRequest that would not make a usable certificate.
	ErrInvalidRequest = errors.New("pki: invalid issue request")
	// ErrInvalidSerial: a serial that is not a positive hexadecimal number.
	ErrInvalidSerial = errors.New("pki: invalid serial")
)

// CA is a certificate authority loaded from (or created in) a directory.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
	dir  string
}

// Dir is the CA's directory.
func (ca *CA) Dir() string { return ca.dir }

// CertPEM is the CA certificate in PEM.
func (ca *CA) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})
}

// Init creates a CA in dir (created if needed): an ECDSA P-256 key in
// dir/ca.key (mode 0600), a self-signed certificate valid for ten years in
// dir/ca.crt, and an empty CRL in dir/crl.pem, all PEM. It fails with
// ErrExists when dir already holds a ca.crt or ca.key.
func Init(dir string) (*CA, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("pki: init: %w", err)
	}
	for _, name := range []string{CertFile, KeyFile} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			return nil, fmt.Errorf("%w: %s", ErrExists, filepath.Join(dir, name))
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("pki: init: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			CommonName:   "Schakelpunt development CA",
			Organization: []string{"Schakelpunt (development and test only)"},
		},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("pki: init: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("pki: init: %w", err)
	}
	keyPEM, err := marshalKey(key)
	if err != nil {
		return nil, err
	}
	ca := &CA{Cert: cert, Key: key, dir: dir}
	if err := writeNew(filepath.Join(dir, KeyFile), keyPEM, 0o600); err != nil {
		return nil, err
	}
	if err := writeNew(filepath.Join(dir, CertFile), ca.CertPEM(), 0o644); err != nil {
		return nil, err
	}
	if err := ca.writeCRL(nil, big.NewInt(1)); err != nil {
		return nil, err
	}
	return ca, nil
}

// Load reads the CA in dir. A missing directory or file yields an error
// matching fs.ErrNotExist.
func Load(dir string) (*CA, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, CertFile))
	if err != nil {
		return nil, fmt.Errorf("pki: load: %w", err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, KeyFile))
	if err != nil {
		return nil, fmt.Errorf("pki: load: %w", err)
	}
	cert, err := parseCertPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("pki: load %s: %w", filepath.Join(dir, CertFile), err)
	}
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		return nil, fmt.Errorf("pki: load %s: no PEM block", filepath.Join(dir, KeyFile))
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("pki: load %s: %w", filepath.Join(dir, KeyFile), err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("pki: load %s: not an ECDSA key", filepath.Join(dir, KeyFile))
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("pki: load %s: the key does not belong to the certificate", dir)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("pki: load %s: not a CA certificate", filepath.Join(dir, CertFile))
	}
	return &CA{Cert: cert, Key: key, dir: dir}, nil
}

// LoadOrInit loads the CA in dir, or creates one when dir holds none;
// created says which happened.
func LoadOrInit(dir string) (ca *CA, created bool, err error) {
	ca, err = Load(dir)
	if err == nil {
		return ca, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, err
	}
	ca, err = Init(dir)
	return ca, err == nil, err
}

// IssueRequest describes a certificate to issue.
type IssueRequest struct {
	// CardType Z, N, M or S gives a UZI certificate; empty gives a plain
	// server certificate, which needs DNS.
	CardType access.CardType
	UZI      string   // UZI number (card holder or system)
	URA      string   // the organisation, 8 digits
	Role     string   // role code NN.NNN; defaults to 00.000 for N, M and S
	AGB      string   // defaults to 00000000
	Name     string   // subject common name; defaults to a description of the card
	DNS      []string // DNS names; IP addresses become IP SANs

	NotBefore time.Time // default: now - 1h
	NotAfter  time.Time // default: now + 1 year

	// Extended key usages. With neither set: Z, N and M cards get client
	// auth, S cards both (a source system serves and calls), server
	// certificates server auth.
	ServerAuth bool
	ClientAuth bool
}

// Issue signs a new certificate for req with a fresh ECDSA P-256 key. For
// a UZI card type, the subjectAltName holds the otherName 2.5.5.5 with the
// IA5String <UZIPolicyOID>-1-<UZI>-<card>-<URA>-<role>-<AGB>, built with
// encoding/asn1, together with the DNS and IP names. It returns the
// certificate and the PKCS#8 key in PEM, and the serial.
func (ca *CA) Issue(req IssueRequest) (certPEM, keyPEM []byte, serial *big.Int, err error) {
	tmpl, err := ca.template(req)
	if err != nil {
		return nil, nil, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("pki: issue: %w", err)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("pki: issue: %w", err)
	}
	keyPEM, err = marshalKey(key)
	if err != nil {
		return nil, nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, tmpl.SerialNumber, nil
}

// template validates req and turns it into a certificate template.
func (ca *CA) template(req IssueRequest) (*x509.Certificate, error) {
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		NotBefore:    req.NotBefore,
		NotAfter:     req.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore = now.Add(-backdate)
	}
	if tmpl.NotAfter.IsZero() {
		tmpl.NotAfter = now.Add(leafValidity)
	}
	if !tmpl.NotAfter.After(tmpl.NotBefore) {
		return nil, fmt.Errorf("%w: NotAfter %s is not after NotBefore %s", ErrInvalidRequest, tmpl.NotAfter, tmpl.NotBefore)
	}
	var dnsNames []string
	var ips []net.IP
	for _, n := range req.DNS {
		if ip := net.ParseIP(n); ip != nil {
			ips = append(ips, ip)
		} else if n != "" {
			dnsNames = append(dnsNames, n)
		}
	}

	serverAuth, clientAuth := req.ServerAuth, req.ClientAuth
	if req.CardType == "" {
		if len(req.DNS) == 0 {
			return nil, fmt.Errorf("%w: a server certificate needs a DNS name or IP address", ErrInvalidRequest)
		}
		if !serverAuth && !clientAuth {
			serverAuth = true
		}
		tmpl.Subject = pkix.Name{CommonName: req.Name}
		if tmpl.Subject.CommonName == "" {
			tmpl.Subject.CommonName = req.DNS[0]
		}
		tmpl.DNSNames, tmpl.IPAddresses = dnsNames, ips
	} else {
		p := access.Principal{
			OID: access.UZIPolicyOID, Version: "1",
			UZINumber: req.UZI, CardType: req.CardType, URA: req.URA, Role: req.Role, AGB: req.AGB,
		}
		if p.Role == "" && p.CardType != access.CardProfessional {
			p.Role = access.RoleNone
		}
		if p.AGB == "" {
			p.AGB = "00000000"
		}
		if err := p.Validate(); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidRequest, err)
		}
		if !serverAuth && !clientAuth {
			clientAuth = true
			serverAuth = p.CardType == access.CardServer
		}
		san, err := marshalSAN(p.SANValue(), dnsNames, ips)
		if err != nil {
			return nil, err
		}
		tmpl.ExtraExtensions = []pkix.Extension{{Id: oidSubjectAltName, Value: san}}
		tmpl.Subject = pkix.Name{CommonName: req.Name, SerialNumber: p.UZINumber}
		if tmpl.Subject.CommonName == "" {
			tmpl.Subject.CommonName = fmt.Sprintf("UZI %s %s (URA %s, role %s)", p.CardType, p.UZINumber, p.URA, p.Role)
		}
	}
	if serverAuth {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	if clientAuth {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	return tmpl, nil
}

var oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}

// GeneralName tags (RFC 5280 section 4.2.1.6).
const (
	tagOtherName = 0
	tagDNSName   = 2
	tagIPAddress = 7
)

// marshalSAN encodes GeneralNames: the UZI otherName
// [0] IMPLICIT SEQUENCE { type-id 2.5.5.5, value [0] EXPLICIT IA5String },
// then each dNSName [2] IA5String and iPAddress [7] OCTET STRING.
func marshalSAN(uzi string, dnsNames []string, ips []net.IP) ([]byte, error) {
	ia5, err := marshalIA5(uzi)
	if err != nil {
		return nil, err
	}
	value, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: ia5})
	if err != nil {
		return nil, fmt.Errorf("pki: subjectAltName: %w", err)
	}
	typeID, err := asn1.Marshal(access.OIDUZIOtherName)
	if err != nil {
		return nil, fmt.Errorf("pki: subjectAltName: %w", err)
	}
	names := []asn1.RawValue{{Class: asn1.ClassContextSpecific, Tag: tagOtherName, IsCompound: true, Bytes: append(typeID, value...)}}
	for _, n := range dnsNames {
		if !isIA5(n) {
			return nil, fmt.Errorf("%w: DNS name %q is not ASCII", ErrInvalidRequest, n)
		}
		names = append(names, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: tagDNSName, Bytes: []byte(n)})
	}
	for _, ip := range ips {
		if v4 := ip.To4(); v4 != nil {
			ip = v4
		}
		names = append(names, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: tagIPAddress, Bytes: ip})
	}
	der, err := asn1.Marshal(names)
	if err != nil {
		return nil, fmt.Errorf("pki: subjectAltName: %w", err)
	}
	return der, nil
}

func marshalIA5(s string) ([]byte, error) {
	if !isIA5(s) {
		return nil, fmt.Errorf("%w: %q is not an IA5String", ErrInvalidRequest, s)
	}
	der, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagIA5String, Bytes: []byte(s)})
	if err != nil {
		return nil, fmt.Errorf("pki: IA5String: %w", err)
	}
	return der, nil
}

func isIA5(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// Revoke adds serial to the CRL of the CA in dir (dir/crl.pem), keeping
// the entries already there, and signs a new CRL with a higher number. An
// existing CRL that is not the CA's is an error, never overwritten.
// Revoking a serial twice keeps its first revocation time. The file is
// replaced atomically, so a server reloading it never reads half of it.
func Revoke(dir string, serial *big.Int) error {
	if serial == nil || serial.Sign() <= 0 {
		return fmt.Errorf("%w: must be positive", ErrInvalidSerial)
	}
	ca, err := Load(dir)
	if err != nil {
		return err
	}
	var entries []x509.RevocationListEntry
	number := big.NewInt(1)
	if crl, err := ca.readCRL(); err == nil {
		entries = crl.RevokedCertificateEntries
		if crl.Number != nil {
			number.Add(crl.Number, big.NewInt(1))
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	for _, e := range entries {
		if e.SerialNumber.Cmp(serial) == 0 {
			return ca.writeCRL(entries, number)
		}
	}
	entries = append(entries, x509.RevocationListEntry{SerialNumber: serial, RevocationTime: time.Now().UTC()})
	return ca.writeCRL(entries, number)
}

// readCRL reads and checks dir/crl.pem.
func (ca *CA) readCRL() (*x509.RevocationList, error) {
	path := filepath.Join(ca.dir, CRLFile)
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "X509 CRL" {
		return nil, fmt.Errorf("pki: %s: no X509 CRL PEM block", path)
	}
	crl, err := x509.ParseRevocationList(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("pki: %s: %w", path, err)
	}
	if err := crl.CheckSignatureFrom(ca.Cert); err != nil {
		return nil, fmt.Errorf("pki: %s is not this CA's CRL: %w", path, err)
	}
	return crl, nil
}

// writeCRL signs a CRL with entries and number and writes it atomically.
func (ca *CA) writeCRL(entries []x509.RevocationListEntry, number *big.Int) error {
	now := time.Now()
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		RevokedCertificateEntries: entries,
		Number:                    number,
		ThisUpdate:                now.Add(-backdate),
		NextUpdate:                now.Add(crlValidity),
	}, ca.Cert, ca.Key)
	if err != nil {
		return fmt.Errorf("pki: CRL: %w", err)
	}
	return writeAtomic(filepath.Join(ca.dir, CRLFile), pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}), 0o644)
}

// ParseSerial parses a serial as `openssl x509 -noout -serial` prints it:
// hexadecimal, with or without a "serial=" prefix; a 0x prefix and colons
// between bytes are accepted too.
func ParseSerial(s string) (*big.Int, error) {
	h := strings.TrimSpace(s)
	if len(h) >= 7 && strings.EqualFold(h[:7], "serial=") {
		h = h[7:]
	}
	h = strings.TrimPrefix(strings.TrimPrefix(h, "0x"), "0X")
	h = strings.ReplaceAll(h, ":", "")
	if h == "" {
		return nil, fmt.Errorf("%w: %q is empty", ErrInvalidSerial, s)
	}
	if _, err := hex.DecodeString(strings.Repeat("0", len(h)%2) + h); err != nil {
		return nil, fmt.Errorf("%w: %q is not hexadecimal", ErrInvalidSerial, s)
	}
	n, _ := new(big.Int).SetString(h, 16)
	if n.Sign() <= 0 {
		return nil, fmt.Errorf("%w: %q is not positive", ErrInvalidSerial, s)
	}
	return n, nil
}

// FormatSerial prints serial as openssl does: upper-case hexadecimal in
// whole bytes.
func FormatSerial(serial *big.Int) string {
	return strings.ToUpper(hex.EncodeToString(serial.Bytes()))
}

// WriteFiles writes certPEM to PREFIX.crt (mode 0644) and keyPEM to
// PREFIX.key (mode 0600), creating the directory if needed.
func WriteFiles(prefix string, certPEM, keyPEM []byte) error {
	if err := os.MkdirAll(filepath.Dir(prefix), 0o755); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	if err := writeAtomic(prefix+".key", keyPEM, 0o600); err != nil {
		return err
	}
	return writeAtomic(prefix+".crt", certPEM, 0o644)
}

func newSerial() (*big.Int, error) {
	// 127 random bits, never zero: positive in DER and unique in practice.
	limit := new(big.Int).Lsh(big.NewInt(1), 127)
	n, err := rand.Int(rand.Reader, limit)
	if err != nil {
		return nil, fmt.Errorf("pki: serial: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

func marshalKey(key crypto.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("pki: key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func parseCertPEM(data []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no CERTIFICATE PEM block")
	}
	return x509.ParseCertificate(block.Bytes)
}

// writeNew writes a file that must not exist yet.
func writeNew(path string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%w: %s", ErrExists, path)
		}
		return fmt.Errorf("pki: %w", err)
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	return nil
}

// writeAtomic replaces path with data through a temporary file and a
// rename.
func writeAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("pki: write %s: %w", path, err)
	}
	return nil
}
