package patienttoken

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/schakelpunt/schakelpunt/fhir"
)

// The development issuer's iss and aud. Its tokens are trusted only by a
// serve that has no patient issuer configured.
const (
	DevIssuer   = "urn:schakelpunt:development-patient-issuer"
	DevAudience = "urn:schakelpunt:patient"
)

// Files of a development issuer directory.
const (
	devKeyFile  = "issuer.key" // PKCS#8 PEM, ES256 (P-256)
	devJWKSFile = "jwks.json"  // its public key, for the verifier
)

// DevIssuerSetup is a development issuer: an ES256 key in a directory,
// with its JWKS beside it. Never for production: anyone with the data
// directory can sign in as any patient.
type DevIssuerSetup struct {
	Dir string
	key *ecdsa.PrivateKey
	kid string
	Now func() time.Time
}

// JWKSPath is the JWKS file a Verifier reads to trust this issuer.
func (d *DevIssuerSetup) JWKSPath() string { return filepath.Join(d.Dir, devJWKSFile) }

// OpenDevIssuer loads the development issuer in dir; with create, it
// makes one (dir, key and JWKS) when dir has none. created reports that.
func OpenDevIssuer(dir string, create bool) (_ *DevIssuerSetup, created bool, err error) {
	keyPath := filepath.Join(dir, devKeyFile)
	b, err := os.ReadFile(keyPath)
	switch {
	case err == nil:
	case errors.Is(err, os.ErrNotExist) && create:
		if b, err = newDevKey(dir); err != nil {
			return nil, false, err
		}
		created = true
	case errors.Is(err, os.ErrNotExist):
		return nil, false, fmt.Errorf("no development patient issuer in %s (serve creates it when no patient issuer is configured)", dir)
	default:
		return nil, false, fmt.Errorf("development patient issuer: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, false, fmt.Errorf("development patient issuer: %s is not PEM", keyPath)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, false, fmt.Errorf("development patient issuer: %w", err)
	}
	ec, ok := k.(*ecdsa.PrivateKey)
	if !ok || ec.Curve != elliptic.P256() {
		return nil, false, fmt.Errorf("development patient issuer: %s is not a P-256 key", keyPath)
	}
	d := &DevIssuerSetup{Dir: dir, key: ec, kid: kidOf(&ec.PublicKey), Now: time.Now}
	// The JWKS is derived from the key: written again, it cannot drift.
	jwks, err := d.jwks()
	if err != nil {
		return nil, false, err
	}
	if err := os.WriteFile(d.JWKSPath(), jwks, 0o644); err != nil {
		return nil, false, fmt.Errorf("development patient issuer: %w", err)
	}
	return d, created, nil
}

func newDevKey(dir string) ([]byte, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("development patient issuer: %w", err)
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	b := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	if err := os.WriteFile(filepath.Join(dir, devKeyFile), b, 0o600); err != nil {
		return nil, fmt.Errorf("development patient issuer: %w", err)
	}
	return b, nil
}

// kidOf is the RFC 7638 thumbprint of a P-256 public key.
func kidOf(pub *ecdsa.PublicKey) string {
	x, y := coords(pub)
	canon := `{"crv":"P-256","kty":"EC","x":"` + x + `","y":"` + y + `"}`
	sum := sha256.Sum256([]byte(canon))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func coords(pub *ecdsa.PublicKey) (x, y string) {
	b, _ := pub.Bytes() // uncompressed point: 0x04 || X || Y (P-256 keys always encode)
	return base64.RawURLEncoding.EncodeToString(b[1:33]), base64.RawURLEncoding.EncodeToString(b[33:])
}

func (d *DevIssuerSetup) jwks() ([]byte, error) {
	x, y := coords(&d.key.PublicKey)
	return json.MarshalIndent(map[string]any{"keys": []jwk{{Kty: "EC", Kid: d.kid, Use: "sig", Alg: "ES256", Crv: "P-256", X: x, Y: y}}}, "", "  ")
}

// Issue signs a token for bsn, valid for ttl from now, with the
// development issuer and audience.
func (d *DevIssuerSetup) Issue(bsn string, ttl time.Duration) (string, error) {
	if !fhir.ValidBSN(bsn) {
		return "", errors.New("the BSN fails the eleven-check")
	}
	if ttl <= 0 || ttl > 24*time.Hour {
		return "", errors.New("the lifetime must be more than 0 and at most 24h")
	}
	now := d.Now()
	c := claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    DevIssuer,
			Subject:   "development-patient", // never the BSN: sub may end up in logs
			Audience:  jwt.ClaimStrings{DevAudience},
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now.Add(-time.Minute)),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
		},
		BSN: bsn,
	}
	t := jwt.NewWithClaims(jwt.SigningMethodES256, c)
	t.Header["kid"] = d.kid
	return t.SignedString(d.key)
}
