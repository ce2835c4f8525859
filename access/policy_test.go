package access_test

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/schakelpunt/schakelpunt/access"
	"github.com/schakelpunt/schakelpunt/fhir"
)

var update = flag.Lookup("update") // defined by the package's internal tests

func updating() bool { return update != nil && update.Value.String() == "true" }

// Principals of the matrix.

func professional(role string) access.Principal {
	return access.Principal{OID: access.UZIPolicyOID, Version: "1", UZINumber: "11111111",
		CardType: access.CardProfessional, URA: "90000111", Role: role, AGB: "00000000"}
}

func card(c access.CardType, role string) access.Principal {
	p := professional(role)
	p.CardType, p.UZINumber = c, "22222222"
	return p
}

const (
	supervisorURA = "90000009"
	supervisorUZI = "99999999"
)

func testPolicy(t testing.TB) *access.Policy {
	t.Helper()
	pol, err := access.NewPolicy(access.PolicyConfig{Supervisors: []access.Supervisor{{URA: supervisorURA}, {UZI: supervisorUZI}}})
	if err != nil {
		t.Fatal(err)
	}
	return pol
}

type grants map[access.Action]access.Scope

// with returns g plus actions granted with scope s.
func (g grants) with(s access.Scope, actions ...access.Action) grants {
	out := grants{}
	for a, sc := range g {
		out[a] = sc
	}
	for _, a := range actions {
		out[a] = s
	}
	return out
}

var (
	all    = access.ScopeAll
	ownOrg = access.ScopeOwnOrganisation
	ownEvt = access.ScopeOwnEvents

	anyone       = grants{access.ReadMetadata: all}
	anyIdentity  = anyone.with(all, access.ReadRegistry, access.ValidateResource)
	anyZ         = anyIdentity.with(ownEvt, access.ReadAuditOwn)
	medication   = anyZ.with(all, access.QueryMedication)
	gpRoles      = medication.with(all, access.QueryGPSummary)
	organisation = anyIdentity.with(ownOrg, access.RegisterIndex, access.DeregisterIndex, access.ReadIndex,
		access.RecordConsent, access.WithdrawConsent, access.ReadConsent)
	sourceSystem = organisation.with(all, access.QueryPIX)
	supervision  = grants{access.ReadIndex: all, access.QueryPIX: all, access.ReadAuditAll: all, access.ReadAuditOwn: ownEvt, access.ReadAlerts: all, access.ReviewAlerts: all}
)

func merge(a, b grants) grants {
	out := a.with(all)
	for k, v := range b {
		out[k] = v
	}
	return out
}

type row struct {
	label string
	p     access.Principal
	want  grants
}

// matrix is every principal of the decision table with what it is granted.
func matrix() []row {
	rows := []row{}
	for _, r := range []struct {
		role string
		want grants
	}{
		{"01.000", anyZ}, // physician without specialism
		{"01.004", gpRoles},
		{"01.008", anyZ}, // company doctor
		{"01.010", medication},
		{"01.015", gpRoles},
		{"01.047", medication}, // elderly-care physician: summary only when configured
		{"01.048", anyZ},       // insurance doctor
		{"01.055", anyZ},       // public health
		{"04.000", anyZ},       // physiotherapist
		{"16.000", anyZ},       // psychologist
		{"17.000", medication},
		{"17.060", medication},
		{"17.075", medication},
		{"25.000", anyZ}, // midwife
		{"30.000", anyZ}, // nurse
		{"00.000", anyZ},
	} {
		rows = append(rows, row{"Z " + r.role, professional(r.role), r.want})
	}
	supURA := card(access.CardNamedEmployee, access.RoleNone)
	supURA.URA = supervisorURA
	supUZI := professional("01.010")
	supUZI.UZINumber = supervisorUZI
	return append(rows,
		row{"N 00.000", card(access.CardNamedEmployee, access.RoleNone), organisation},
		row{"M 00.000", card(access.CardUnnamedEmployee, access.RoleNone), organisation},
		row{"S 00.000", card(access.CardServer, access.RoleNone), sourceSystem},
		row{"N 01.015 (invalid)", card(access.CardNamedEmployee, "01.015"), anyone},
		row{"M 17.075 (invalid)", card(access.CardUnnamedEmployee, "17.075"), anyone},
		row{"S 01.015 (invalid)", card(access.CardServer, "01.015"), anyone},
		row{"N 00.000 supervisor by URA", supURA, merge(organisation, supervision)},
		row{"Z 01.010 supervisor by UZI", supUZI, merge(medication, supervision)},
		row{"no UZI identity", access.Principal{}, anyone},
	)
}

func TestDecideMatrix(t *testing.T) {
	pol := testPolicy(t)
	covered := map[access.CardType]bool{}
	for _, r := range matrix() {
		covered[r.p.CardType] = true
	}
	for _, c := range access.CardTypes() {
		if !covered[c] {
			t.Errorf("card type %s is not in the matrix", c)
		}
	}
	for _, r := range matrix() {
		t.Run(r.label, func(t *testing.T) {
			for _, a := range access.Actions() {
				t.Run(string(a), func(t *testing.T) {
					d := pol.Decide(r.p, a)
					want, permit := r.want[a]
					if d.Permit != permit || (permit && d.Scope != want) {
						t.Fatalf("Decide = permit %v scope %v (%v); want permit %v scope %v", d.Permit, d.Scope, d.Reasons, permit, want)
					}
					if !permit && d.Scope != access.ScopeNone {
						t.Errorf("denial with scope %v", d.Scope)
					}
					if len(d.Reasons) == 0 || d.Reasons[0] == "" {
						t.Errorf("no reason")
					}
					if (d.Err() == nil) != permit {
						t.Errorf("Err() = %v for permit %v", d.Err(), permit)
					}
				})
			}
		})
	}
}

var number = regexp.MustCompile(`[0-9]{8,}`)

// TestReasonsRevealNoPatient: denial texts go to the client, so they must
// not speak about a patient's existence or carry identifiers.
func TestReasonsRevealNoPatient(t *testing.T) {
	pol := testPolicy(t)
	for _, r := range matrix() {
		for _, a := range access.Actions() {
			d := pol.Decide(r.p, a)
			for _, reason := range d.Reasons {
				l := strings.ToLower(reason)
				for _, bad := range []string{"exist", "not found", "unknown patient", "no such", "registered"} {
					if strings.Contains(l, bad) {
						t.Errorf("%s %s: reason %q contains %q", r.label, a, reason, bad)
					}
				}
				if number.MatchString(reason) {
					t.Errorf("%s %s: reason %q carries a number that may be an identifier", r.label, a, reason)
				}
			}
		}
	}
}

func TestPolicyConfig(t *testing.T) {
	widened, err := access.NewPolicy(access.PolicyConfig{
		GPSummaryRoles:  []string{"01.047", "01.056"},
		MedicationRoles: []string{"01.008", "81.xxx"},
	})
	if err != nil {
		t.Fatal(err)
	}
	def := access.DefaultPolicy()
	tests := []struct {
		role   string
		action access.Action
		def    bool
		wide   bool
	}{
		{"01.047", access.QueryGPSummary, false, true},
		{"01.056", access.QueryGPSummary, false, true},
		{"01.010", access.QueryGPSummary, false, false},
		{"01.015", access.QueryGPSummary, true, true},
		{"01.008", access.QueryMedication, false, true}, // the operator's extra role precedes the default exclusion
		{"81.003", access.QueryMedication, false, true},
		{"01.048", access.QueryMedication, false, false},
		{"00.000", access.QueryMedication, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.role+"/"+string(tc.action), func(t *testing.T) {
			if got := def.Decide(professional(tc.role), tc.action).Permit; got != tc.def {
				t.Errorf("default policy: permit = %v, want %v", got, tc.def)
			}
			if got := widened.Decide(professional(tc.role), tc.action).Permit; got != tc.wide {
				t.Errorf("widened policy: permit = %v, want %v", got, tc.wide)
			}
		})
	}
}

func TestNewPolicyRefuses(t *testing.T) {
	tests := []struct {
		name string
		cfg  access.PolicyConfig
	}{
		{"role none to summary", access.PolicyConfig{GPSummaryRoles: []string{"00.000"}}},
		{"pattern matching role none", access.PolicyConfig{MedicationRoles: []string{"0x.xxx"}}},
		{"malformed role", access.PolicyConfig{GPSummaryRoles: []string{"1.015"}}},
		{"wildcard letter", access.PolicyConfig{GPSummaryRoles: []string{"01.0y5"}}},
		{"supervisor with both", access.PolicyConfig{Supervisors: []access.Supervisor{{URA: "90000009", UZI: "1"}}}},
		{"supervisor with neither", access.PolicyConfig{Supervisors: []access.Supervisor{{}}}},
		{"supervisor short URA", access.PolicyConfig{Supervisors: []access.Supervisor{{URA: "9000"}}}},
		{"supervisor UZI letters", access.PolicyConfig{Supervisors: []access.Supervisor{{UZI: "abc"}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := access.NewPolicy(tc.cfg); !errors.Is(err, access.ErrInvalidPolicy) {
				t.Fatalf("NewPolicy: err = %v, want ErrInvalidPolicy", err)
			}
		})
	}
}

func TestDecideUnknownAction(t *testing.T) {
	d := access.DefaultPolicy().Decide(professional("01.015"), "delete-everything")
	if d.Permit {
		t.Fatal("unknown action permitted")
	}
}

func TestRequireOwnOrganisation(t *testing.T) {
	src := card(access.CardServer, access.RoleNone)
	tests := []struct {
		name   string
		ura    string
		permit bool
	}{
		{"own", src.URA, true},
		{"other", "90000002", false},
		{"none", "", false},
	}
	pol := access.DefaultPolicy()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := pol.Decide(src, access.RegisterIndex).And(access.RequireOwnOrganisation(src, tc.ura))
			if d.Permit != tc.permit {
				t.Fatalf("permit = %v, want %v (%v)", d.Permit, tc.permit, d.Reasons)
			}
			if len(d.Reasons) != 2 {
				t.Errorf("reasons = %q, want both decisions' reasons", d.Reasons)
			}
			err := d.Err()
			if tc.permit {
				if err != nil || d.Scope != access.ScopeOwnOrganisation {
					t.Errorf("Err() = %v, scope %v", err, d.Scope)
				}
				return
			}
			if !errors.Is(err, access.ErrDenied) || fhir.KindOf(err) != fhir.KindForbidden {
				t.Errorf("Err() = %v, want forbidden wrapping ErrDenied", err)
			}
			if d.Scope != access.ScopeNone {
				t.Errorf("scope of a denial = %v", d.Scope)
			}
		})
	}
	if access.RequireOwnOrganisation(access.Principal{}, "").Permit {
		t.Error("empty principal and empty URA permitted")
	}
}

// TestPolicyTable renders the rules and the decision matrix to
// testdata/policy.golden: review policy changes as a diff of that file.
// Run with -update to rewrite it.
func TestPolicyTable(t *testing.T) {
	pol := testPolicy(t)
	var b strings.Builder
	b.WriteString("# Role policy\n\n")
	b.WriteString("Generated by `go test ./access -run TestPolicyTable -update`; review changes as a diff.\n")
	fmt.Fprintf(&b, "Supervisors in this table: URA %s and UZI number %s.\n\n", supervisorURA, supervisorUZI)
	b.WriteString("## Rules, first match decides, no match denies\n\n")
	b.WriteString("| # | actions | cards | roles | who | effect | scope | reason |\n|---|---|---|---|---|---|---|---|\n")
	for i, r := range pol.Rules() {
		who := "valid UZI identity"
		switch {
		case r.Anyone:
			who = "anyone"
		case r.Supervisor:
			who = "supervisor"
		}
		effect := "deny"
		if r.Permit {
			effect = "permit"
		}
		var acts []string
		for _, a := range r.Actions {
			acts = append(acts, string(a))
		}
		var cards []string
		for _, c := range r.Cards {
			cards = append(cards, string(c))
		}
		fmt.Fprintf(&b, "| %d | %s | %s | %s | %s | %s | %s | %s |\n", i+1, strings.Join(acts, ", "),
			orAny(strings.Join(cards, ", ")), orAny(strings.Join(r.Roles, ", ")), who, effect, scopeOf(r.Permit, r.Scope), r.Reason)
	}
	b.WriteString("\n## Decisions\n\n")
	b.WriteString("`all`: permitted; `org`: own organisation only; `own`: own events only; `-`: denied.\n\n")
	b.WriteString("| principal |")
	for _, a := range access.Actions() {
		b.WriteString(" " + string(a) + " |")
	}
	b.WriteString("\n|---|" + strings.Repeat("---|", len(access.Actions())) + "\n")
	for _, r := range matrix() {
		b.WriteString("| " + r.label + " |")
		for _, a := range access.Actions() {
			d := pol.Decide(r.p, a)
			b.WriteString(" " + cell(d) + " |")
		}
		b.WriteString("\n")
	}
	b.WriteString("\n## Denial reasons\n\n| principal | action | reason |\n|---|---|---|\n")
	for _, r := range matrix() {
		for _, a := range access.Actions() {
			if d := pol.Decide(r.p, a); !d.Permit {
				fmt.Fprintf(&b, "| %s | %s | %s |\n", r.label, a, strings.Join(d.Reasons, "; "))
			}
		}
	}
	golden(t, filepath.Join("testdata", "policy.golden"), b.String())
}

func orAny(s string) string {
	if s == "" {
		return "any"
	}
	return s
}

func scopeOf(permit bool, s access.Scope) string {
	if !permit {
		return ""
	}
	return s.String()
}

func cell(d access.Decision) string {
	if !d.Permit {
		return "-"
	}
	switch d.Scope {
	case access.ScopeOwnOrganisation:
		return "org"
	case access.ScopeOwnEvents:
		return "own"
	}
	return "all"
}

func golden(t *testing.T, path, got string) {
	t.Helper()
	if updating() {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update)", err)
	}
	if string(want) != got {
		t.Errorf("%s is out of date; run go test ./access -run TestPolicyTable -update and review the diff.\ngot:\n%s", path, got)
	}
}

func BenchmarkDecide(b *testing.B) {
	pol := testPolicy(b)
	for _, bc := range []struct {
		name string
		p    access.Principal
		a    access.Action
	}{
		{"permit-gp-medication", professional("01.015"), access.QueryMedication},
		{"deny-physio-audit-all", professional("04.000"), access.ReadAuditAll},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if d := pol.Decide(bc.p, bc.a); d.Permit != (bc.a == access.QueryMedication) {
					b.Fatal("unexpected decision")
				}
			}
		})
	}
}
