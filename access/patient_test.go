package access_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/schakelpunt/schakelpunt/access"
)

// TestDecidePatient is the patient's decision table: the index, the
// access log and consents about their own BSN, nothing else.
func TestDecidePatient(t *testing.T) {
	p := access.Patient{BSN: "999911120", Issuer: "https://login.example.nl"}
	permitted := map[access.Action]bool{
		access.ReadIndex: true, access.ReadAuditOwn: true, access.ReadConsent: true,
		access.RecordConsent: true, access.WithdrawConsent: true,
	}
	for _, a := range access.Actions() {
		t.Run(string(a), func(t *testing.T) {
			d := access.DecidePatient(p, a)
			if d.Permit != permitted[a] || len(d.Reasons) != 1 {
				t.Fatalf("%+v", d)
			}
			if d.Permit && d.Scope != access.ScopeOwnPatient {
				t.Errorf("scope %v", d.Scope)
			}
			if !d.Permit && !errors.Is(d.Err(), access.ErrDenied) {
				t.Errorf("err %v", d.Err())
			}
		})
	}
	if got := access.PatientActions(); len(got) != len(permitted) {
		t.Errorf("PatientActions %v", got)
	}
	t.Run("a BSN that fails the eleven-check gets nothing", func(t *testing.T) {
		if d := access.DecidePatient(access.Patient{BSN: "999911121"}, access.ReadConsent); d.Permit {
			t.Error("permitted")
		}
	})
}

func TestRequireOwnPatient(t *testing.T) {
	p := access.Patient{BSN: "999911120"}
	cases := []struct {
		bsn    string
		permit bool
	}{{"999911120", true}, {"999900006", false}, {"", false}}
	for _, c := range cases {
		t.Run(c.bsn, func(t *testing.T) {
			d := access.RequireOwnPatient(p, c.bsn)
			if d.Permit != c.permit {
				t.Fatalf("%+v", d)
			}
			for _, r := range d.Reasons {
				if c.bsn != "" && strings.Contains(r, c.bsn) {
					t.Errorf("a reason names the BSN: %s", r)
				}
			}
		})
	}
	if s := p.String(); strings.Contains(s, p.BSN) {
		t.Errorf("String() names the BSN: %s", s)
	}
}
