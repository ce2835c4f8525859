package fhir

import (
	"strings"
	"testing"
)

func TestValidBSN(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		// The test BSNs of DESIGN.md section 9.
		{"999911120", true},
		{"999900006", true},
		{"999900018", true},
		{"999900031", true},
		{"999900043", true},
		{"999900055", true},
		// Worked by hand: 9·1+8·1+7·1+6·2+5·2+4·2+3·3+2·3 − 3 = 66 = 6·11,
		// and 9·1+8·2+7·3+6·4+5·5+4·6+3·7+2·8 − 2 = 154 = 14·11.
		{"111222333", true},
		{"123456782", true},
		// Failing the eleven-check.
		{"999911121", false},
		{"999900007", false},
		{"123456789", false},
		{"111111111", false},
		// Not nine digits, or all zero.
		{"000000000", false},
		{"", false},
		{"99991112", false},
		{"9999111200", false},
		{"099991112", false},
		{"99991112a", false},
		{"9999 1120", false},
		{" 99991112", false},
		{"999911120 ", false},
		{"-99991112", false},
		{"９９９９１１１２０", false}, // full-width digits
		{"٩٩٩٩١١١٢٠", false}, // Arabic-Indic digits
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := ValidBSN(tt.in); got != tt.want {
				t.Errorf("ValidBSN(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

// TestValidBSNEveryLastDigit checks that exactly one last digit completes
// a valid prefix, or none when the check needs a "10".
func TestValidBSNEveryLastDigit(t *testing.T) {
	for _, prefix := range []string{"99991112", "99990000", "12345678", "00000001", "10000000"} {
		t.Run(prefix, func(t *testing.T) {
			sum := 0
			for i := 0; i < 8; i++ {
				sum += (9 - i) * int(prefix[i]-'0')
			}
			want := sum % 11 // the ninth digit d must satisfy sum − d ≡ 0
			n := 0
			for d := byte('0'); d <= '9'; d++ {
				if ValidBSN(prefix + string(d)) {
					n++
					if int(d-'0') != want {
						t.Errorf("%s%c valid, want only %d", prefix, d, want)
					}
				}
			}
			if wantN := map[bool]int{true: 1, false: 0}[want < 10]; n != wantN {
				t.Errorf("%d valid last digits, want %d", n, wantN)
			}
		})
	}
}

func TestValidURA(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"90000002", true},
		{"90000111", true},
		{"00000000", true},
		{"", false},
		{"9000000", false},
		{"900000020", false},
		{"9000000a", false},
		{"9000 002", false},
		{"９0000002", false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := ValidURA(tt.in); got != tt.want {
				t.Errorf("ValidURA(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestSystems(t *testing.T) {
	for _, s := range []string{SystemBSN, SystemUZIPerson, SystemUZISystem, SystemURA, SystemAGB, SystemUZIRole} {
		if !strings.HasPrefix(s, "http://fhir.nl/fhir/NamingSystem/") || strings.HasSuffix(s, "/") {
			t.Errorf("system %q", s)
		}
	}
	if SystemBSN != "http://fhir.nl/fhir/NamingSystem/bsn" || SystemURA != "http://fhir.nl/fhir/NamingSystem/ura" {
		t.Error("BSN or URA system changed")
	}
}
