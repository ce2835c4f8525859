package patienttoken_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/schakelpunt/schakelpunt/access/patienttoken"
	"github.com/schakelpunt/schakelpunt/fhir"
)

const (
	issuer   = "https://login.example.nl"
	audience = "https://schakelpunt.example.nl/patient"
	bsn      = "999911120"
)

var now = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

type keys struct {
	rsa  *rsa.PrivateKey
	ec   *ecdsa.PrivateKey
	ec2  *ecdsa.PrivateKey // not in the JWKS
	jwks []byte
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func ecJWK(kid string, k *ecdsa.PublicKey) map[string]string {
	b, _ := k.Bytes()
	return map[string]string{"kty": "EC", "kid": kid, "use": "sig", "crv": "P-256", "x": b64(b[1:33]), "y": b64(b[33:])}
}

func rsaJWK(kid string, k *rsa.PublicKey) map[string]string {
	return map[string]string{"kty": "RSA", "kid": kid, "alg": "RS256", "n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())}
}

func newKeys(t testing.TB) *keys {
	t.Helper()
	r, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	e1, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	e2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	jwks, _ := json.Marshal(map[string]any{"keys": []any{rsaJWK("rsa-1", &r.PublicKey), ecJWK("ec-1", &e1.PublicKey),
		map[string]string{"kty": "oct", "kid": "sym", "k": b64([]byte("secret"))}}})
	return &keys{rsa: r, ec: e1, ec2: e2, jwks: jwks}
}

// claims builds valid claims; edit mutates them.
func claims(edit func(jwt.MapClaims)) jwt.MapClaims {
	c := jwt.MapClaims{"iss": issuer, "aud": audience, "sub": "p-1", "bsn": bsn,
		"iat": now.Unix(), "nbf": now.Add(-time.Minute).Unix(), "exp": now.Add(time.Hour).Unix()}
	if edit != nil {
		edit(c)
	}
	return c
}

func sign(t testing.TB, m jwt.SigningMethod, kid string, key any, c jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func verifier(t testing.TB, k *keys) *patienttoken.Verifier {
	t.Helper()
	path := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(path, k.jwks, 0o600); err != nil {
		t.Fatal(err)
	}
	v, err := patienttoken.New(context.Background(), patienttoken.Config{Issuer: issuer, Audience: audience, JWKS: path, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestVerify(t *testing.T) {
	k := newKeys(t)
	v := verifier(t, k)
	rsaDER, _ := x509.MarshalPKIXPublicKey(&k.rsa.PublicKey)
	cases := []struct {
		name  string
		token string
		code  string // "" for a valid token
	}{
		{"ES256", sign(t, jwt.SigningMethodES256, "ec-1", k.ec, claims(nil)), ""},
		{"RS256", sign(t, jwt.SigningMethodRS256, "rsa-1", k.rsa, claims(nil)), ""},
		{"ES256 without kid", sign(t, jwt.SigningMethodES256, "", k.ec, claims(nil)), ""},
		{"audience among several", sign(t, jwt.SigningMethodES256, "ec-1", k.ec, claims(func(c jwt.MapClaims) { c["aud"] = []string{"other", audience} })), ""},
		{"expired", sign(t, jwt.SigningMethodES256, "ec-1", k.ec, claims(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Hour).Unix() })), "expired"},
		{"no exp", sign(t, jwt.SigningMethodES256, "ec-1", k.ec, claims(func(c jwt.MapClaims) { delete(c, "exp") })), "security"},
		{"not yet valid", sign(t, jwt.SigningMethodES256, "ec-1", k.ec, claims(func(c jwt.MapClaims) { c["nbf"] = now.Add(time.Hour).Unix() })), "security"},
		{"wrong aud", sign(t, jwt.SigningMethodES256, "ec-1", k.ec, claims(func(c jwt.MapClaims) { c["aud"] = "https://other.example.nl" })), "security"},
		{"no aud", sign(t, jwt.SigningMethodES256, "ec-1", k.ec, claims(func(c jwt.MapClaims) { delete(c, "aud") })), "security"},
		{"wrong iss", sign(t, jwt.SigningMethodES256, "ec-1", k.ec, claims(func(c jwt.MapClaims) { c["iss"] = "https://evil.example" })), "security"},
		{"key not in the JWKS", sign(t, jwt.SigningMethodES256, "ec-1", k.ec2, claims(nil)), "security"},
		{"unknown kid", sign(t, jwt.SigningMethodES256, "ec-9", k.ec, claims(nil)), "security"},
		{"RS256 kid on an EC key", sign(t, jwt.SigningMethodES256, "rsa-1", k.ec, claims(nil)), "security"},
		{"alg none", sign(t, jwt.SigningMethodNone, "", jwt.UnsafeAllowNoneSignatureType, claims(nil)), "security"},
		{"HS256 with the RSA public key as secret", sign(t, jwt.SigningMethodHS256, "rsa-1", rsaDER, claims(nil)), "security"},
		{"HS256 with the oct key of the JWKS", sign(t, jwt.SigningMethodHS256, "sym", []byte("secret"), claims(nil)), "security"},
		{"missing bsn", sign(t, jwt.SigningMethodES256, "ec-1", k.ec, claims(func(c jwt.MapClaims) { delete(c, "bsn") })), "security"},
		{"bsn fails the eleven-check", sign(t, jwt.SigningMethodES256, "ec-1", k.ec, claims(func(c jwt.MapClaims) { c["bsn"] = "999911121" })), "security"},
		{"bsn all zeros", sign(t, jwt.SigningMethodES256, "ec-1", k.ec, claims(func(c jwt.MapClaims) { c["bsn"] = "000000000" })), "security"},
		{"bsn a number", sign(t, jwt.SigningMethodES256, "ec-1", k.ec, claims(func(c jwt.MapClaims) { c["bsn"] = 999911120 })), "security"},
		{"tampered payload", tamper(sign(t, jwt.SigningMethodES256, "ec-1", k.ec, claims(nil))), "security"},
		{"empty", "", "security"},
		{"garbage", "not.a.token", "security"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := v.Verify(context.Background(), c.token)
			if c.code == "" {
				if err != nil {
					t.Fatal(err)
				}
				if p.BSN != bsn || p.Issuer != issuer || p.Subject != "p-1" {
					t.Errorf("patient %+v", p)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted: %+v", p)
			}
			if !errors.Is(err, patienttoken.ErrInvalidToken) {
				t.Errorf("error %v does not wrap ErrInvalidToken", err)
			}
			fe := fhir.AsError(err)
			if fe.Kind != fhir.KindUnauthorized || len(fe.Issues) != 1 || fe.Issues[0].Code != c.code {
				t.Errorf("kind %v issues %+v, want unauthorized %s", fe.Kind, fe.Issues, c.code)
			}
		})
	}
}

// tamper swaps the payload for another BSN, keeping the signature.
func tamper(tok string) string {
	parts := splitDots(tok)
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var m map[string]any
	_ = json.Unmarshal(payload, &m)
	m["bsn"] = "999900006"
	b, _ := json.Marshal(m)
	return parts[0] + "." + b64(b) + "." + parts[2]
}

func splitDots(s string) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '.' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

func TestNewRefuses(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	_ = os.WriteFile(bad, []byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`), 0o600)
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	weak := filepath.Join(dir, "weak.json")
	b, _ := json.Marshal(map[string]any{"keys": []any{rsaJWK("small", &small.PublicKey)}})
	_ = os.WriteFile(weak, b, 0o600)
	cases := map[string]patienttoken.Config{
		"no issuer":           {Audience: audience, JWKS: bad},
		"no audience":         {Issuer: issuer, JWKS: bad},
		"no JWKS":             {Issuer: issuer, Audience: audience},
		"missing file":        {Issuer: issuer, Audience: audience, JWKS: filepath.Join(dir, "none.json")},
		"only symmetric keys": {Issuer: issuer, Audience: audience, JWKS: bad},
		"RSA under 2048 bits": {Issuer: issuer, Audience: audience, JWKS: weak},
		"plain http URL":      {Issuer: issuer, Audience: audience, JWKS: "http://127.0.0.1:1/jwks.json"},
	}
	for name, cfg := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := patienttoken.New(context.Background(), cfg); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

// TestJWKSURL: keys fetched over https, cached, and fetched again when a
// token names a kid the cache lacks (key rotation), at most every
// MinRefresh.
func TestJWKSURL(t *testing.T) {
	k := newKeys(t)
	var served atomic.Value
	served.Store(k.jwks)
	var fetches atomic.Int32
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(served.Load().([]byte))
	}))
	defer srv.Close()
	clock := now
	v, err := patienttoken.New(context.Background(), patienttoken.Config{
		Issuer: issuer, Audience: audience, JWKS: srv.URL + "/jwks.json", Client: srv.Client(),
		Now: func() time.Time { return clock }, MinRefresh: time.Minute, Refresh: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for range 3 {
		if _, err := v.Verify(ctx, sign(t, jwt.SigningMethodES256, "ec-1", k.ec, claims(nil))); err != nil {
			t.Fatal(err)
		}
	}
	if n := fetches.Load(); n != 1 {
		t.Fatalf("%d fetches for three tokens, want 1 (cached)", n)
	}
	// The issuer rotates to ec2. Within MinRefresh the cache is kept.
	rotated, _ := json.Marshal(map[string]any{"keys": []any{ecJWK("ec-2", &k.ec2.PublicKey)}})
	served.Store(rotated)
	tok2 := sign(t, jwt.SigningMethodES256, "ec-2", k.ec2, claims(nil))
	if _, err := v.Verify(ctx, tok2); err == nil {
		t.Fatal("a kid fetched within MinRefresh of the last fetch was accepted")
	}
	clock = clock.Add(2 * time.Minute)
	if _, err := v.Verify(ctx, tok2); err != nil {
		t.Fatalf("after rotation: %v", err)
	}
	if n := fetches.Load(); n != 2 {
		t.Errorf("%d fetches, want 2", n)
	}
	// The issuer goes down: the cached keys stay in use.
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) })
	clock = clock.Add(2 * time.Hour)
	if _, err := v.Verify(ctx, sign(t, jwt.SigningMethodES256, "ec-2", k.ec2, claims(func(c jwt.MapClaims) {
		c["exp"] = clock.Add(time.Hour).Unix()
	}))); err != nil {
		t.Fatalf("with the issuer down, cached keys: %v", err)
	}
}

func TestDevIssuer(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "patient-issuer")
	if _, _, err := patienttoken.OpenDevIssuer(dir, false); err == nil {
		t.Fatal("opened a missing issuer without create")
	}
	d, created, err := patienttoken.OpenDevIssuer(dir, true)
	if err != nil || !created {
		t.Fatal(created, err)
	}
	again, created, err := patienttoken.OpenDevIssuer(dir, true)
	if err != nil || created {
		t.Fatal(created, err)
	}
	tok, err := again.Issue(bsn, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	v, err := patienttoken.New(context.Background(), patienttoken.Config{Issuer: patienttoken.DevIssuer, Audience: patienttoken.DevAudience, JWKS: d.JWKSPath()})
	if err != nil {
		t.Fatal(err)
	}
	p, err := v.Verify(context.Background(), tok)
	if err != nil || p.BSN != bsn {
		t.Fatal(p, err)
	}
	if _, err := d.Issue("999911121", time.Hour); err == nil {
		t.Error("issued a token for a BSN that fails the eleven-check")
	}
}

// FuzzVerify: nothing but a valid signed token verifies, and nothing
// panics.
func FuzzVerify(f *testing.F) {
	k := newKeys(f)
	v := verifier(f, k)
	good := sign(f, jwt.SigningMethodES256, "ec-1", k.ec, claims(nil))
	f.Add(good)
	f.Add(tamper(good))
	f.Add("eyJhbGciOiJub25lIn0.eyJic24iOiI5OTk5MTExMjAifQ.")
	f.Fuzz(func(t *testing.T, s string) {
		p, err := v.Verify(context.Background(), s)
		if err == nil && strings.TrimSpace(s) != good {
			t.Fatalf("verified %q as %+v", s, p)
		}
	})
}
