package fhir

// Identifier systems (DESIGN.md section 4).
const (
	NamingSystemBase = "http://fhir.nl/fhir/NamingSystem/"
	SystemBSN        = NamingSystemBase + "bsn"
	SystemUZIPerson  = NamingSystemBase + "uzi-nr-pers"
	SystemUZISystem  = NamingSystemBase + "uzi-nr-sys"
	SystemURA        = NamingSystemBase + "ura"
	SystemAGB        = NamingSystemBase + "agb-z"
	SystemUZIRole    = NamingSystemBase + "uzi-rolcode"
)

// Data categories as LOINC codes (DESIGN.md section 9).
const (
	SystemLOINC        = "http://loinc.org"
	CategoryMedication = "10160-0" // History of medication use
	CategoryGPSummary  = "60591-5" // Patient summary document
)

// ValidBSN reports whether s is a BSN: nine digits, not all zero, passing
// the eleven-check 9·d1 + 8·d2 + … + 2·d8 − 1·d9 ≡ 0 (mod 11).
func ValidBSN(s string) bool {
	if len(s) != 9 {
		return false
	}
	sum, nonzero := 0, false
	for i := 0; i < 9; i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return false
		}
		d := int(c - '0')
		if d != 0 {
			nonzero = true
		}
		if i == 8 {
			sum -= d
		} else {
			sum += (9 - i) * d
		}
	}
	return nonzero && sum%11 == 0
}

// ValidURA reports whether s looks like a URA (UZI register subscriber
// number): eight digits.
func ValidURA(s string) bool {
	if len(s) != 8 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
