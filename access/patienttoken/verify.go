// Package patienttoken verifies the bearer tokens of patients on the
// patient listener: JWTs signed by a configured issuer with RS256 or
// ES256, whose keys come from a JWKS file or https URL, checked for exp
// (required), nbf, aud and iss, and carrying a bsn claim that passes the
// eleven-check. It also keeps the development issuer that serve creates
// when none is configured. It is the only importer of golang-jwt.
package patienttoken

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/schakelpunt/schakelpunt/access"
	"github.com/schakelpunt/schakelpunt/fhir"
)

// ErrInvalidToken is wrapped by every error Verify returns.
var ErrInvalidToken = errors.New("invalid patient token")

// Algorithms are the only signature algorithms accepted. none, HS256 and
// the others are refused before any key is looked at.
var Algorithms = []string{"RS256", "ES256"}

// maxTokenBytes bounds the token Verify reads.
const maxTokenBytes = 8 << 10

// Config names the trusted issuer and where its keys are.
type Config struct {
	Issuer   string // the iss every token must carry
	Audience string // an aud every token must carry
	// JWKS is a file path or an https URL of the issuer's JSON Web Key Set.
	JWKS string
	// Client fetches a JWKS URL (default: a client with a 10s timeout).
	Client *http.Client
	// Refresh is how often a JWKS is read again (default 10 minutes); an
	// unknown kid makes it read again sooner, at most every MinRefresh
	// (default 30s).
	Refresh    time.Duration
	MinRefresh time.Duration
	// Leeway allows for clock skew on exp and nbf (default 30s).
	Leeway time.Duration
	Now    func() time.Time
	Logger *slog.Logger
}

// Verifier checks patient tokens. It is safe for concurrent use.
type Verifier struct {
	cfg    Config
	keys   *keySource
	parser *jwt.Parser
}

// New builds a verifier and reads the JWKS once: a verifier that cannot
// read its keys at start is an error, not a listener that refuses every
// patient.
func New(ctx context.Context, cfg Config) (*Verifier, error) {
	switch {
	case cfg.Issuer == "":
		return nil, errors.New("patienttoken: an issuer is required")
	case cfg.Audience == "":
		return nil, errors.New("patienttoken: an audience is required")
	case cfg.JWKS == "":
		return nil, errors.New("patienttoken: a JWKS file or URL is required")
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.Refresh <= 0 {
		cfg.Refresh = 10 * time.Minute
	}
	if cfg.MinRefresh <= 0 {
		cfg.MinRefresh = 30 * time.Second
	}
	if cfg.Leeway <= 0 {
		cfg.Leeway = 30 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	ks, err := newKeySource(cfg)
	if err != nil {
		return nil, err
	}
	if _, err := ks.current(ctx, ""); err != nil {
		return nil, fmt.Errorf("patienttoken: JWKS: %w", err)
	}
	v := &Verifier{cfg: cfg, keys: ks}
	v.parser = jwt.NewParser(
		jwt.WithValidMethods(Algorithms),
		jwt.WithIssuer(cfg.Issuer),
		jwt.WithAudience(cfg.Audience),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(cfg.Leeway),
		jwt.WithTimeFunc(cfg.Now),
	)
	return v, nil
}

// claims are the token's claims Verify reads.
type claims struct {
	jwt.RegisteredClaims
	BSN string `json:"bsn"`
}

// Verify checks raw (the compact JWS, without "Bearer ") and returns the
// patient it names. Every failure is an unauthorized *fhir.Error wrapping
// ErrInvalidToken, with issue code expired for an expired token and
// security otherwise; the diagnostics never repeat the token or a BSN.
func (v *Verifier) Verify(ctx context.Context, raw string) (access.Patient, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" || len(raw) > maxTokenBytes {
		return access.Patient{}, invalid("security", "the token is empty or too long", nil)
	}
	var c claims
	_, err := v.parser.ParseWithClaims(raw, &c, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		alg, _ := t.Header["alg"].(string)
		set, err := v.keys.current(ctx, kid)
		if err != nil {
			return nil, err
		}
		keys := set.candidates(kid, alg)
		if len(keys) == 0 {
			return nil, errors.New("no key of the issuer matches the token's kid and alg")
		}
		return jwt.VerificationKeySet{Keys: keys}, nil
	})
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return access.Patient{}, invalid("expired", "the token has expired", err)
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return access.Patient{}, invalid("security", "the token is not valid yet", err)
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return access.Patient{}, invalid("security", "the token is not meant for this service (aud)", err)
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return access.Patient{}, invalid("security", "the token's issuer is not trusted (iss)", err)
	case err != nil:
		return access.Patient{}, invalid("security", "the token is not valid", err)
	}
	p := access.Patient{BSN: c.BSN, Issuer: c.Issuer, Subject: c.Subject}
	if c.BSN == "" {
		return access.Patient{}, invalid("security", "the token carries no bsn claim", nil)
	}
	if err := p.Validate(); err != nil {
		return access.Patient{}, invalid("security", "the token's bsn claim is not a valid BSN", err)
	}
	return p, nil
}

func invalid(code, diagnostics string, cause error) *fhir.Error {
	err := ErrInvalidToken
	if cause != nil {
		err = fmt.Errorf("%w: %w", ErrInvalidToken, cause)
	}
	return &fhir.Error{
		Kind:   fhir.KindUnauthorized,
		Issues: []fhir.Issue{{Severity: "error", Code: code, Diagnostics: diagnostics}},
		Err:    err,
	}
}
