package patienttoken

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// maxJWKSBytes bounds a JWKS document.
const maxJWKSBytes = 1 << 20

// minRSABits is the smallest RSA modulus accepted.
const minRSABits = 2048

// jwk is the part of a JSON Web Key we read (RFC 7517, 7518).
type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
	N   string `json:"n"`
	E   string `json:"e"`
}

// key is one usable verification key.
type key struct {
	kid string
	alg string // RS256 or ES256
	pub any    // *rsa.PublicKey or *ecdsa.PublicKey
}

// keySet is a parsed JWKS.
type keySet []key

// candidates are the keys that may have signed a token with kid and alg:
// of the algorithm's key type and, when the token names a kid, that kid.
func (s keySet) candidates(kid, alg string) []jwt.VerificationKey {
	var out []jwt.VerificationKey
	for _, k := range s {
		if k.alg != alg || (kid != "" && k.kid != kid) {
			continue
		}
		out = append(out, k.pub)
	}
	return out
}

func (s keySet) has(kid string) bool {
	for _, k := range s {
		if k.kid == kid {
			return true
		}
	}
	return false
}

// parseJWKS reads the signature keys of a JWKS: RSA (at least 2048 bits,
// for RS256) and EC P-256 (for ES256). Keys for encryption, of other
// types or curves, or with an alg other than their type's are skipped; a
// set without one usable key is an error.
func parseJWKS(b []byte) (keySet, error) {
	var doc struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("not a JWKS: %w", err)
	}
	var set keySet
	for _, k := range doc.Keys {
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		var (
			kk  key
			err error
		)
		switch k.Kty {
		case "RSA":
			kk, err = rsaKey(k)
		case "EC":
			kk, err = ecKey(k)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("key %q: %w", k.Kid, err)
		}
		if k.Alg != "" && k.Alg != kk.alg {
			continue
		}
		set = append(set, kk)
	}
	if len(set) == 0 {
		return nil, errors.New("the JWKS has no RS256 or ES256 signature key")
	}
	return set, nil
}

func b64(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }

func rsaKey(k jwk) (key, error) {
	n, err := b64(k.N)
	if err != nil || len(n) == 0 {
		return key{}, errors.New("bad RSA modulus n")
	}
	e, err := b64(k.E)
	if err != nil || len(e) == 0 || len(e) > 4 {
		return key{}, errors.New("bad RSA exponent e")
	}
	pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
	if pub.N.BitLen() < minRSABits || pub.E < 3 || pub.E%2 == 0 {
		return key{}, fmt.Errorf("RSA key too small (%d bits) or bad exponent", pub.N.BitLen())
	}
	return key{kid: k.Kid, alg: "RS256", pub: pub}, nil
}

func ecKey(k jwk) (key, error) {
	if k.Crv != "P-256" {
		return key{}, fmt.Errorf("curve %q is not P-256", k.Crv)
	}
	x, errX := b64(k.X)
	y, errY := b64(k.Y)
	if errX != nil || errY != nil || len(x) != 32 || len(y) != 32 {
		return key{}, errors.New("bad EC coordinates")
	}
	// An uncompressed point, parsed by crypto/ecdh rules: it must be on
	// the curve.
	point := append([]byte{4}, append(x, y...)...)
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), point)
	if err != nil {
		return key{}, fmt.Errorf("EC point: %w", err)
	}
	return key{kid: k.Kid, alg: "ES256", pub: pub}, nil
}

// keySource keeps the issuer's keys: read from a file or fetched from an
// https URL, cached, and read again every Refresh, or sooner (at most
// every MinRefresh) when a token names a kid the cached set lacks. When a
// new read fails, the cached keys stay in use and the failure is logged.
type keySource struct {
	cfg     Config
	isURL   bool
	mu      sync.Mutex
	set     keySet
	fetched time.Time // when set was read
	tried   time.Time // the last attempt
}

func newKeySource(cfg Config) (*keySource, error) {
	ks := &keySource{cfg: cfg}
	if u, err := url.Parse(cfg.JWKS); err == nil && u.Scheme != "" && len(u.Scheme) > 1 {
		if u.Scheme != "https" || u.Host == "" {
			return nil, fmt.Errorf("patienttoken: the JWKS URL must be https")
		}
		ks.isURL = true
	}
	return ks, nil
}

// current returns the key set, reading it again when stale or when kid is
// not in it.
func (ks *keySource) current(ctx context.Context, kid string) (keySet, error) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	now := ks.cfg.Now()
	stale := ks.set == nil || now.Sub(ks.fetched) >= ks.cfg.Refresh
	unknown := kid != "" && ks.set != nil && !ks.set.has(kid)
	if (stale || unknown) && (ks.set == nil || now.Sub(ks.tried) >= ks.cfg.MinRefresh) {
		ks.tried = now
		// Not the request's context: a client hanging up must not be
		// able to make the refresh fail (and so keep old keys in use).
		set, err := ks.read(context.WithoutCancel(ctx))
		switch {
		case err == nil:
			ks.set, ks.fetched = set, now
		case ks.set == nil:
			return nil, err
		default:
			ks.cfg.Logger.WarnContext(ctx, "patient token issuer keys could not be read again; keeping the cached keys", slog.Any("err", err))
		}
	}
	return ks.set, nil
}

func (ks *keySource) read(ctx context.Context) (keySet, error) {
	var body []byte
	if !ks.isURL {
		f, err := os.Open(ks.cfg.JWKS)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if body, err = io.ReadAll(io.LimitReader(f, maxJWKSBytes+1)); err != nil {
			return nil, err
		}
	} else {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, ks.cfg.JWKS, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Accept", "application/jwk-set+json, application/json")
		resp, err := ks.cfg.Client.Do(req)
		if err != nil {
			return nil, fmt.Errorf("fetching the JWKS: %w", err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("fetching the JWKS: status %d", resp.StatusCode)
		}
		if body, err = io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1)); err != nil {
			return nil, fmt.Errorf("fetching the JWKS: %w", err)
		}
	}
	if len(body) > maxJWKSBytes {
		return nil, errors.New("the JWKS is larger than 1 MiB")
	}
	return parseJWKS(body)
}
