package access

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/schakelpunt/schakelpunt/fhir"
)

var update = flag.Bool("update", false, "rewrite golden files and the fuzz seed corpus")

// DER builders for subjectAltName test cases.

func der(v any) []byte {
	b, err := asn1.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func tagged(class, tag int, compound bool, content ...[]byte) []byte {
	return der(asn1.RawValue{Class: class, Tag: tag, IsCompound: compound, Bytes: concat(content...)})
}

func concat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func ia5(s string) []byte  { return tagged(asn1.ClassUniversal, asn1.TagIA5String, false, []byte(s)) }
func utf8(s string) []byte { return tagged(asn1.ClassUniversal, asn1.TagUTF8String, false, []byte(s)) }
func dnsName(s string) []byte {
	return tagged(asn1.ClassContextSpecific, 2, false, []byte(s))
}
func ipAddress(ip ...byte) []byte { return tagged(asn1.ClassContextSpecific, 7, false, ip) }

// otherName builds [0] { type-id, [0] EXPLICIT value }.
func otherName(typeID asn1.ObjectIdentifier, value []byte) []byte {
	return tagged(asn1.ClassContextSpecific, 0, true, der(typeID), tagged(asn1.ClassContextSpecific, 0, true, value))
}

func uziName(value string) []byte { return otherName(OIDUZIOtherName, ia5(value)) }

func generalNames(names ...[]byte) []byte {
	return tagged(asn1.ClassUniversal, asn1.TagSequence, true, names...)
}

const (
	valueZ = "2.16.528.1.1003.1.3.5.5.2-1-11111111-Z-90000111-01.015-00000000"
	valueS = "2.16.528.1.1003.1.3.5.5.2-1-22222222-S-90000002-00.000-00000000"
)

var gp = Principal{OID: UZIPolicyOID, Version: "1", UZINumber: "11111111", CardType: CardProfessional,
	URA: "90000111", Role: "01.015", AGB: "00000000"}

// sanCases are the subjectAltName test cases; they are also the seed
// corpus of FuzzParseSAN (testdata/fuzz/FuzzParseSAN, written by -update).
var sanCases = []struct {
	name string
	der  []byte
	want Principal
	err  error
}{
	{"valid-z", generalNames(uziName(valueZ)), gp, nil},
	{"valid-s-with-dns-and-ip", generalNames(dnsName("bron.example"), uziName(valueS), ipAddress(127, 0, 0, 1)),
		Principal{OID: UZIPolicyOID, Version: "1", UZINumber: "22222222", CardType: CardServer, URA: "90000002", Role: "00.000", AGB: "00000000"}, nil},
	{"valid-m", generalNames(uziName("2.16.528.1.1003.1.3.5.5.2-1-33333333-M-90000003-00.000-00000000")),
		Principal{OID: UZIPolicyOID, Version: "1", UZINumber: "33333333", CardType: CardUnnamedEmployee, URA: "90000003", Role: "00.000", AGB: "00000000"}, nil},
	{"other-othername-first", generalNames(otherName(asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 20, 2, 3}, utf8("x@y")), uziName(valueZ)), gp, nil},
	{"dns-only", generalNames(dnsName("example.org")), Principal{}, ErrNoUZI},
	{"empty-sequence", generalNames(), Principal{}, ErrNoUZI},
	{"other-othername-only", generalNames(otherName(asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 20, 2, 3}, utf8("x@y"))), Principal{}, ErrNoUZI},
	{"empty", nil, Principal{}, ErrMalformedUZI},
	{"truncated", generalNames(uziName(valueZ))[:20], Principal{}, ErrMalformedUZI},
	{"trailing-bytes", append(generalNames(uziName(valueZ)), 0), Principal{}, ErrMalformedUZI},
	{"not-a-sequence", der(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSet, IsCompound: true, Bytes: uziName(valueZ)}), Principal{}, ErrMalformedUZI},
	{"two-uzi-names", generalNames(uziName(valueZ), uziName(valueS)), Principal{}, ErrMalformedUZI},
	{"utf8-value", generalNames(otherName(OIDUZIOtherName, utf8(valueZ))), Principal{}, ErrMalformedUZI},
	{"value-not-explicit", generalNames(tagged(asn1.ClassContextSpecific, 0, true, der(OIDUZIOtherName), ia5(valueZ))), Principal{}, ErrMalformedUZI},
	{"othername-primitive", generalNames(tagged(asn1.ClassContextSpecific, 0, false, der(OIDUZIOtherName))), Principal{}, ErrMalformedUZI},
	{"non-ascii", generalNames(uziName(strings.Replace(valueZ, "Z", "\xc3\x9c", 1))), Principal{}, ErrMalformedUZI},
	{"six-fields", generalNames(uziName("2.16.528.1.1003.1.3.5.5.2-1-11111111-Z-90000111-01.015")), Principal{}, ErrMalformedUZI},
	{"eight-fields", generalNames(uziName(valueZ + "-1")), Principal{}, ErrMalformedUZI},
	{"card-type-x", generalNames(uziName(strings.Replace(valueZ, "-Z-", "-X-", 1))), Principal{}, ErrMalformedUZI},
	{"card-type-lower", generalNames(uziName(strings.Replace(valueZ, "-Z-", "-z-", 1))), Principal{}, ErrMalformedUZI},
	{"n-with-role", generalNames(uziName(strings.Replace(valueZ, "-Z-", "-N-", 1))), Principal{}, ErrMalformedUZI},
	{"s-with-role", generalNames(uziName(strings.Replace(valueZ, "-Z-", "-S-", 1))), Principal{}, ErrMalformedUZI},
	{"role-format", generalNames(uziName(strings.Replace(valueZ, "01.015", "1.015", 1))), Principal{}, ErrMalformedUZI},
	{"ura-seven-digits", generalNames(uziName(strings.Replace(valueZ, "90000111", "9000011", 1))), Principal{}, ErrMalformedUZI},
	{"uzi-letters", generalNames(uziName(strings.Replace(valueZ, "11111111", "1111111a", 1))), Principal{}, ErrMalformedUZI},
	{"uzi-empty", generalNames(uziName(strings.Replace(valueZ, "11111111", "", 1))), Principal{}, ErrMalformedUZI},
	{"agb-short", generalNames(uziName(strings.Replace(valueZ, "-00000000", "-0000", 1))), Principal{}, ErrMalformedUZI},
	{"oid-bad", generalNames(uziName(strings.Replace(valueZ, "2.16.528", "2..528", 1))), Principal{}, ErrMalformedUZI},
	{"version-empty", generalNames(uziName(strings.Replace(valueZ, "-1-", "--", 1))), Principal{}, ErrMalformedUZI},
}

func TestParseSAN(t *testing.T) {
	for _, tc := range sanCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseSAN(tc.der)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("parseSAN: err = %v, want %v", err, tc.err)
				}
				if k := fhir.KindOf(err); k != fhir.KindForbidden {
					t.Errorf("kind = %v, want forbidden", k)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseSAN: %v", err)
			}
			if got != tc.want {
				t.Errorf("parseSAN = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestFuzzSeedCorpus keeps testdata/fuzz/FuzzParseSAN equal to sanCases.
func TestFuzzSeedCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzParseSAN")
	for _, tc := range sanCases {
		t.Run(tc.name, func(t *testing.T) {
			want := fmt.Sprintf("go test fuzz v1\n[]byte(%s)\n", strconv.Quote(string(tc.der)))
			path := filepath.Join(dir, tc.name)
			if *update {
				if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update)", err)
			}
			if string(got) != want {
				t.Errorf("%s differs from sanCases (run with -update)", path)
			}
		})
	}
}

// FuzzParseSAN: any bytes parse to a valid principal that round-trips, or
// to an identity error; never a panic.
func FuzzParseSAN(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := parseSAN(b)
		if err != nil {
			if !errors.Is(err, ErrNoUZI) && !errors.Is(err, ErrMalformedUZI) {
				t.Fatalf("error is neither ErrNoUZI nor ErrMalformedUZI: %v", err)
			}
			if p != (Principal{}) {
				t.Fatalf("principal %+v returned with error", p)
			}
			return
		}
		if err := p.Validate(); err != nil {
			t.Fatalf("parsed principal fails Validate: %v", err)
		}
		again, err := parseUZIValue(p.SANValue())
		if err != nil || again != p {
			t.Fatalf("round trip: %+v, %v; want %+v", again, err, p)
		}
	})
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Principal)
		ok     bool
	}{
		{"gp", func(*Principal) {}, true},
		{"z-with-role-none", func(p *Principal) { p.Role = RoleNone }, true},
		{"n-with-role-none", func(p *Principal) { p.CardType, p.Role = CardNamedEmployee, RoleNone }, true},
		{"zero", func(p *Principal) { *p = Principal{} }, false},
		{"m-with-role", func(p *Principal) { p.CardType = CardUnnamedEmployee }, false},
		{"unknown-card", func(p *Principal) { p.CardType = "Q" }, false},
		{"oid-leading-zero", func(p *Principal) { p.OID = "2.16.0528" }, false},
		{"oid-one-arc", func(p *Principal) { p.OID = "2" }, false},
		{"oid-two-arcs", func(p *Principal) { p.OID = "2.0" }, true},
		{"oid-trailing-dot", func(p *Principal) { p.OID = "2.16." }, false},
		{"oid-leading-dot", func(p *Principal) { p.OID = ".2.16" }, false},
		{"oid-empty", func(p *Principal) { p.OID = "" }, false},
		{"oid-letter", func(p *Principal) { p.OID = "2.16.a" }, false},
		{"oid-long-arc", func(p *Principal) { p.OID = "2.12345678901" }, false},
		{"role-letters", func(p *Principal) { p.Role = "01.0x5" }, false},
		{"ura-nine", func(p *Principal) { p.URA = "900001111" }, false},
		{"uzi-too-long", func(p *Principal) { p.UZINumber = strings.Repeat("1", 17) }, false},
		{"agb-letters", func(p *Principal) { p.AGB = "0000000a" }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := gp
			tc.modify(&p)
			err := p.Validate()
			if (err == nil) != tc.ok {
				t.Fatalf("Validate(%+v) = %v, want ok=%v", p, err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrMalformedUZI) {
				t.Errorf("error %v does not wrap ErrMalformedUZI", err)
			}
		})
	}
}

func TestParseUZI(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	selfSigned := func(exts ...pkix.Extension) *x509.Certificate {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Dr. Huisarts", SerialNumber: "11111111"},
			NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), ExtraExtensions: exts}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	san := func(b []byte) pkix.Extension { return pkix.Extension{Id: oidSubjectAltName, Value: b} }
	withUZI := selfSigned(san(generalNames(dnsName("x.example"), uziName(valueZ))))
	twice := *withUZI
	twice.Extensions = append(slices.Clone(withUZI.Extensions), san(generalNames(uziName(valueZ))))
	want := gp
	want.Subject = "SERIALNUMBER=11111111,CN=Dr. Huisarts"

	tests := []struct {
		name string
		cert *x509.Certificate
		err  error
	}{
		{"uzi", withUZI, nil},
		{"nil", nil, ErrNoUZI},
		{"no subjectAltName", selfSigned(), ErrNoUZI},
		{"two subjectAltName extensions", &twice, ErrMalformedUZI},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ParseUZI(tc.cert)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err = %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil || p != want {
				t.Fatalf("ParseUZI = %+v, %v; want %+v", p, err, want)
			}
		})
	}
}
