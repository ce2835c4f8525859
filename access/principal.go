package access

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"strings"

	"github.com/schakelpunt/schakelpunt/fhir"
)

// Sentinel errors. The errors this package returns wrap one of them and are
// *fhir.Error values of kind forbidden.
var (
	// ErrNoUZI: no certificate, or a certificate without a UZI otherName.
	ErrNoUZI = errors.New("no UZI identity")
	// ErrMalformedUZI: a UZI otherName (or the subjectAltName holding it)
	// that does not parse or fails validation.
	ErrMalformedUZI = errors.New("malformed UZI identity")
)

// CardType is the UZI card type, the fourth field of the UZI otherName.
type CardType string

// The UZI card types.
const (
	CardProfessional    CardType = "Z" // zorgverlenerpas: a care professional, with a role code
	CardNamedEmployee   CardType = "N" // medewerkerpas op naam: a named employee, role 00.000
	CardUnnamedEmployee CardType = "M" // medewerkerpas niet op naam: an unnamed employee, role 00.000
	CardServer          CardType = "S" // servercertificaat: a system of the organisation, role 00.000
)

// CardTypes lists the card types in a stable order.
func CardTypes() []CardType {
	return []CardType{CardProfessional, CardNamedEmployee, CardUnnamedEmployee, CardServer}
}

// RoleNone is the role code of cards that carry no profession (N, M, S).
const RoleNone = "00.000"

// UZIPolicyOID is the CA policy OID of the UZI register that leads the UZI
// otherName value; the development CA uses it too.
const UZIPolicyOID = "2.16.528.1.1003.1.3.5.5.2"

// OIDUZIOtherName is the otherName type-id of the UZI identity in the
// subjectAltName. Do not modify.
var OIDUZIOtherName = asn1.ObjectIdentifier{2, 5, 5, 5}

var oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}

// Principal is the identity a UZI certificate carries. It travels as a
// value from the edge to the layers below; nothing takes identity from a
// header. Whether a principal is a supervisor is configuration, not
// identity: see Policy.
type Principal struct {
	OID       string   // CA policy OID, e.g. 2.16.528.1.1003.1.3.5.5.2
	Version   string   // version of the otherName value format, e.g. "1"
	UZINumber string   // UZI number of the card holder or system
	CardType  CardType // Z, N, M or S
	URA       string   // subscriber number: the organisation (8 digits)
	Role      string   // role code NN.NNN; 00.000 for N, M and S
	AGB       string   // AGB code (8 digits, 00000000 when none)
	Subject   string   // the certificate subject, for logs and audit
}

// String is a short description for logs: card type, UZI number, URA and
// role. It holds nothing about patients.
func (p Principal) String() string {
	return fmt.Sprintf("%s/%s URA %s role %s", p.CardType, p.UZINumber, p.URA, p.Role)
}

// SANValue is the IA5String of the UZI otherName for p:
// <OID>-<version>-<UZI number>-<card type>-<URA>-<role>-<AGB>.
func (p Principal) SANValue() string {
	return strings.Join([]string{p.OID, p.Version, p.UZINumber, string(p.CardType), p.URA, p.Role, p.AGB}, "-")
}

// Validate checks every field as ParseUZI does: a dotted OID, a numeric
// version, a UZI number of digits, a known card type, an 8-digit URA, a
// role code NN.NNN (00.000 for N, M and S) and an 8-digit AGB code. The
// error wraps ErrMalformedUZI.
func (p Principal) Validate() error {
	switch {
	case !validOID(p.OID):
		return malformed("CA policy OID %q is not a dotted OID", clip(p.OID))
	case !digits(p.Version, 1, 4):
		return malformed("version %q is not a number", clip(p.Version))
	case !digits(p.UZINumber, 1, 16):
		return malformed("UZI number %q is not 1 to 16 digits", clip(p.UZINumber))
	case !validCardType(p.CardType):
		return malformed("card type %q is not one of Z, N, M, S", clip(string(p.CardType)))
	case !digits(p.URA, 8, 8):
		return malformed("URA %q is not 8 digits", clip(p.URA))
	case !validRole(p.Role):
		return malformed("role code %q is not NN.NNN", clip(p.Role))
	case p.CardType != CardProfessional && p.Role != RoleNone:
		return malformed("card type %s must carry role %s, not %q", p.CardType, RoleNone, clip(p.Role))
	case !digits(p.AGB, 8, 8):
		return malformed("AGB code %q is not 8 digits", clip(p.AGB))
	}
	return nil
}

// ParseUZI reads the UZI identity from cert's subjectAltName (extension
// 2.5.29.17): the otherName with type-id 2.5.5.5, whose value is an
// IA5String <OID>-<version>-<UZI number>-<card type>-<URA>-<role>-<AGB>.
// A certificate without one yields an error wrapping ErrNoUZI; a malformed
// subjectAltName, more than one UZI otherName, or a value that fails
// Validate yields one wrapping ErrMalformedUZI. ParseUZI does not verify
// the certificate: that is the TLS layer's job (see package mtls).
func ParseUZI(cert *x509.Certificate) (Principal, error) {
	if cert == nil {
		return Principal{}, noUZI("no certificate")
	}
	var san []byte
	found := false
	for _, ext := range cert.Extensions {
		if !ext.Id.Equal(oidSubjectAltName) {
			continue
		}
		if found {
			return Principal{}, malformed("more than one subjectAltName extension")
		}
		san, found = ext.Value, true
	}
	if !found {
		return Principal{}, noUZI("certificate has no subjectAltName")
	}
	p, err := parseSAN(san)
	if err != nil {
		return Principal{}, err
	}
	p.Subject = cert.Subject.String()
	return p, nil
}

// PrincipalFromTLS returns the identity of the client of a TLS connection:
// ParseUZI of its leaf certificate. It trusts the connection's tls.Config
// to have verified the certificate (package mtls does, in the handshake);
// it does not look at VerifiedChains, which stays empty when verification
// is done in VerifyConnection.
func PrincipalFromTLS(state *tls.ConnectionState) (Principal, error) {
	if state == nil || !state.HandshakeComplete {
		return Principal{}, noUZI("no completed TLS handshake")
	}
	if len(state.PeerCertificates) == 0 {
		return Principal{}, noUZI("no client certificate")
	}
	return ParseUZI(state.PeerCertificates[0])
}

// parseSAN parses the DER of a subjectAltName extension value,
// GeneralNames ::= SEQUENCE OF GeneralName, and returns the UZI identity
// in its otherName with type-id 2.5.5.5. The other GeneralNames are
// skipped after their tag and length are checked.
func parseSAN(der []byte) (Principal, error) {
	var names asn1.RawValue
	rest, err := asn1.Unmarshal(der, &names)
	if err != nil {
		return Principal{}, malformed("subjectAltName: %w", err)
	}
	if len(rest) > 0 {
		return Principal{}, malformed("subjectAltName: %d bytes after GeneralNames", len(rest))
	}
	if names.Class != asn1.ClassUniversal || names.Tag != asn1.TagSequence || !names.IsCompound {
		return Principal{}, malformed("subjectAltName: GeneralNames is not a SEQUENCE")
	}
	var value string
	count := 0
	for b := names.Bytes; len(b) > 0; {
		var name asn1.RawValue
		b, err = asn1.Unmarshal(b, &name)
		if err != nil {
			return Principal{}, malformed("subjectAltName: GeneralName: %w", err)
		}
		// otherName [0] IMPLICIT SEQUENCE { type-id OID, value [0] EXPLICIT ANY }
		if name.Class != asn1.ClassContextSpecific || name.Tag != 0 {
			continue
		}
		if !name.IsCompound {
			return Principal{}, malformed("subjectAltName: otherName is not constructed")
		}
		var typeID asn1.ObjectIdentifier
		inner, err := asn1.Unmarshal(name.Bytes, &typeID)
		if err != nil {
			return Principal{}, malformed("subjectAltName: otherName type-id: %w", err)
		}
		if !typeID.Equal(OIDUZIOtherName) {
			continue
		}
		count++
		if count > 1 {
			return Principal{}, malformed("subjectAltName: more than one UZI otherName")
		}
		if value, err = parseOtherNameValue(inner); err != nil {
			return Principal{}, err
		}
	}
	if count == 0 {
		return Principal{}, noUZI("subjectAltName has no UZI otherName (type-id 2.5.5.5)")
	}
	return parseUZIValue(value)
}

// parseOtherNameValue parses value [0] EXPLICIT IA5String, with nothing
// after it.
func parseOtherNameValue(der []byte) (string, error) {
	var explicit asn1.RawValue
	rest, err := asn1.Unmarshal(der, &explicit)
	if err != nil {
		return "", malformed("UZI otherName value: %w", err)
	}
	if len(rest) > 0 || explicit.Class != asn1.ClassContextSpecific || explicit.Tag != 0 || !explicit.IsCompound {
		return "", malformed("UZI otherName value is not [0] EXPLICIT")
	}
	var str asn1.RawValue
	rest, err = asn1.Unmarshal(explicit.Bytes, &str)
	if err != nil {
		return "", malformed("UZI otherName value: %w", err)
	}
	if len(rest) > 0 || str.Class != asn1.ClassUniversal || str.Tag != asn1.TagIA5String || str.IsCompound {
		return "", malformed("UZI otherName value is not an IA5String")
	}
	for _, c := range str.Bytes {
		if c >= 0x80 {
			return "", malformed("UZI otherName value has a non-IA5 byte")
		}
	}
	return string(str.Bytes), nil
}

// parseUZIValue splits the otherName value into its seven fields and
// validates them.
func parseUZIValue(s string) (Principal, error) {
	f := strings.Split(s, "-")
	if len(f) != 7 {
		return Principal{}, malformed("UZI value has %d fields, want 7", len(f))
	}
	p := Principal{OID: f[0], Version: f[1], UZINumber: f[2], CardType: CardType(f[3]), URA: f[4], Role: f[5], AGB: f[6]}
	if err := p.Validate(); err != nil {
		return Principal{}, err
	}
	return p, nil
}

func validCardType(c CardType) bool {
	switch c {
	case CardProfessional, CardNamedEmployee, CardUnnamedEmployee, CardServer:
		return true
	}
	return false
}

// validRole reports whether s is a role code NN.NNN.
func validRole(s string) bool {
	return len(s) == 6 && s[2] == '.' && digits(s[:2], 2, 2) && digits(s[3:], 3, 3)
}

// validOID reports whether s is a dotted OID of at least two arcs, each a
// number without leading zeros.
func validOID(s string) bool {
	if len(s) > 128 {
		return false
	}
	arcs, start := 0, 0
	for i := 0; i <= len(s); i++ {
		if i < len(s) && s[i] != '.' {
			if s[i] < '0' || s[i] > '9' || i-start >= 10 {
				return false
			}
			continue
		}
		// s[start:i] is an arc: not empty, no leading zero.
		if i == start || (i-start > 1 && s[start] == '0') {
			return false
		}
		arcs++
		start = i + 1
	}
	return arcs >= 2
}

// digits reports whether s is between min and max ASCII digits long.
func digits(s string, min, max int) bool {
	if len(s) < min || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// clip shortens s for an error message.
func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// identityDiagnostics is what a client is told; details stay in the wrapped
// error, for logs.
const identityDiagnostics = "the client certificate carries no valid UZI identity"

func noUZI(detail string) error {
	return &fhir.Error{
		Kind:   fhir.KindForbidden,
		Issues: []fhir.Issue{{Severity: "error", Code: "forbidden", Diagnostics: identityDiagnostics}},
		Err:    fmt.Errorf("%w: %s", ErrNoUZI, detail),
	}
}

func malformed(format string, args ...any) error {
	return &fhir.Error{
		Kind:   fhir.KindForbidden,
		Issues: []fhir.Issue{{Severity: "error", Code: "forbidden", Diagnostics: identityDiagnostics}},
		Err:    fmt.Errorf("%w: %w", ErrMalformedUZI, fmt.Errorf(format, args...)),
	}
}
