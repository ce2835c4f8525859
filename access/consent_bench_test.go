package access_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/schakelpunt/schakelpunt/access"
)

// benchConsents is n consents of one patient, as a busy patient might
// have: one per organisation, a quarter of them withdrawn, each permitting
// medication from its own organisation with a nested deny of another
// recipient. The consent that permits the request, of orgA, is the
// oldest, so the decision reads them all.
func benchConsents(n int) []access.Consent {
	cs := make([]access.Consent, 0, n)
	for i := range n {
		org := fmt.Sprintf("9100%04d", i)
		if i == 0 {
			org = orgA
		}
		status := access.ConsentActive
		if i%4 == 3 {
			status = access.ConsentInactive
		}
		cs = append(cs, access.Consent{
			ID: fmt.Sprintf("consent-%d", i), Status: status,
			DateTime:      day("2026-01-01").Add(time.Duration(i) * time.Hour),
			Organizations: []string{org},
			Provision: access.Provision{Type: access.ProvisionPermit, Period: access.Period{Start: day("2026-01-01")},
				Codes: loinc(med), Custodians: []string{org},
				Provisions: []access.Provision{{Type: access.ProvisionDeny, Recipients: []string{recR2}}}},
		})
	}
	return cs
}

func BenchmarkConsentDecide(b *testing.B) {
	for _, n := range []int{1, 10, 100} {
		cs := benchConsents(n)
		for _, bc := range []struct {
			name   string
			req    access.ConsentRequest
			permit bool
		}{
			{"permit", request(med, orgA, recR), true},
			{"deny-category", request(gps, orgA, recR), false},
			{"deny-recipient", request(med, orgA, recR2), false},
		} {
			b.Run(fmt.Sprintf("consents=%d/%s", n, bc.name), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if d := access.DecideConsent(cs, bc.req); d.Permit != bc.permit {
						b.Fatalf("permit = %v: %q", d.Permit, d.Reasons)
					}
				}
			})
		}
	}
}

func BenchmarkParseConsent(b *testing.B) {
	body, err := os.ReadFile(filepath.Join("testdata", "consent", "permit-all-deny-recipient.json"))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := access.ParseConsent(body); err != nil {
			b.Fatal(err)
		}
	}
}
