package access

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/schakelpunt/schakelpunt/fhir"
)

// ErrDenied is wrapped by Decision.Err for every denial.
var ErrDenied = errors.New("access denied")

// ErrInvalidPolicy is wrapped by NewPolicy for a configuration it refuses.
var ErrInvalidPolicy = errors.New("invalid access policy")

// Action is something a principal asks to do. The edge maps each route
// and interaction to one Action.
type Action string

// The actions, in the order of the decision table.
const (
	ReadMetadata     Action = "read-metadata"    // GET /metadata
	ReadRegistry     Action = "read-registry"    // Organization and Endpoint read and search
	ValidateResource Action = "validate"         // $validate of a posted resource
	QueryMedication  Action = "query-medication" // federated MedicationDispense search
	QueryGPSummary   Action = "query-gp-summary" // federated Patient/$summary
	RegisterIndex    Action = "register-index"   // conditional update of an index entry (Patient)
	DeregisterIndex  Action = "deregister-index" // delete of an index entry
	ReadIndex        Action = "read-index"       // Patient read, vread, search, history
	QueryPIX         Action = "query-pix"        // Patient/$ihe-pix
	RecordConsent    Action = "record-consent"   // Consent create and update
	WithdrawConsent  Action = "withdraw-consent" // Consent delete, or update to inactive
	ReadConsent      Action = "read-consent"     // Consent read, vread, search, history
	ReadAuditOwn     Action = "read-audit-own"   // AuditEvent read and search of one's own accesses
	ReadAuditAll     Action = "read-audit-all"   // AuditEvent read, search and export of everyone's
	ReadAlerts       Action = "read-alerts"      // Flag (abuse alert) read, search and history
	ReviewAlerts     Action = "review-alerts"    // Flag update: its status and period.end only
)

var actionText = map[Action]string{
	ReadMetadata:     "read the CapabilityStatement",
	ReadRegistry:     "read the source registry",
	ValidateResource: "validate a resource",
	QueryMedication:  "query medication",
	QueryGPSummary:   "query the GP summary",
	RegisterIndex:    "register in the index",
	DeregisterIndex:  "deregister from the index",
	ReadIndex:        "read the index",
	QueryPIX:         "cross-reference a BSN ($ihe-pix)",
	RecordConsent:    "record consent",
	WithdrawConsent:  "withdraw consent",
	ReadConsent:      "read consent",
	ReadAuditOwn:     "read the log of their own accesses",
	ReadAuditAll:     "read the whole access log",
	ReadAlerts:       "read abuse alerts",
	ReviewAlerts:     "review abuse alerts",
}

// Actions lists every action in table order.
func Actions() []Action {
	return []Action{ReadMetadata, ReadRegistry, ValidateResource, QueryMedication, QueryGPSummary,
		RegisterIndex, DeregisterIndex, ReadIndex, QueryPIX,
		RecordConsent, WithdrawConsent, ReadConsent, ReadAuditOwn, ReadAuditAll, ReadAlerts, ReviewAlerts}
}

// Description is the action in words ("query medication").
func (a Action) Description() string {
	if t, ok := actionText[a]; ok {
		return t
	}
	return string(a)
}

// Scope narrows a permit: what the caller must still restrict the request
// to.
type Scope int

// The scopes.
const (
	ScopeNone            Scope = iota // a denial
	ScopeAll                          // no restriction from the policy (consent may still apply)
	ScopeOwnOrganisation              // only resources of the principal's URA: check with RequireOwnOrganisation
	ScopeOwnEvents                    // only AuditEvents whose agent is the principal's UZI number
	ScopeOwnPatient                   // only resources about the patient's own BSN (a patient acting for themselves)
)

func (s Scope) String() string {
	switch s {
	case ScopeAll:
		return "all"
	case ScopeOwnOrganisation:
		return "own organisation"
	case ScopeOwnEvents:
		return "own events"
	case ScopeOwnPatient:
		return "own patient data"
	}
	return "none"
}

// Decision is the outcome of a policy question with its reasons, for the
// AuditEvent. Reasons never say whether a patient exists: the policy never
// sees one. Reasons may be shared between decisions: do not modify it.
type Decision struct {
	Permit  bool
	Scope   Scope
	Reasons []string
}

// And is the conjunction of d and o: a permit only when both permit, with
// the reasons of both and d's scope.
func (d Decision) And(o Decision) Decision {
	r := Decision{Permit: d.Permit && o.Permit, Scope: d.Scope, Reasons: slices.Concat(d.Reasons, o.Reasons)}
	if !r.Permit {
		r.Scope = ScopeNone
	}
	return r
}

// Err is nil for a permit, and for a denial a forbidden *fhir.Error
// wrapping ErrDenied whose diagnostics are the reasons.
func (d Decision) Err() error {
	if d.Permit {
		return nil
	}
	text := "access denied"
	if len(d.Reasons) > 0 {
		text += ": " + strings.Join(d.Reasons, "; ")
	}
	return &fhir.Error{
		Kind:   fhir.KindForbidden,
		Issues: []fhir.Issue{{Severity: "error", Code: "forbidden", Diagnostics: text}},
		Err:    ErrDenied,
	}
}

// RequireOwnOrganisation permits when ura, the organisation a resource
// names (an index entry's managingOrganization, a Consent's organization),
// is the principal's own URA.
func RequireOwnOrganisation(p Principal, ura string) Decision {
	switch {
	case ura == "":
		return Decision{Reasons: []string{"the resource names no organisation (URA)"}}
	case p.URA == "" || ura != p.URA:
		return Decision{Reasons: []string{"the organisation named is not the certificate's own organisation"}}
	}
	return Decision{Permit: true, Scope: ScopeOwnOrganisation, Reasons: []string{"the organisation named is the certificate's own"}}
}

// Rule is one line of the policy. A rule matches a principal when it names
// the action, the principal's card type (or no card types), a role pattern
// matching the principal's role (or no roles), and, for a supervisor rule,
// the principal is a configured supervisor. The first matching rule
// decides; no match is a denial.
type Rule struct {
	Actions    []Action
	Cards      []CardType // empty: any card type
	Roles      []string   // role patterns NN.NNN where x matches any digit; empty: any role
	Supervisor bool       // matches configured supervisors only
	Anyone     bool       // matches even without a valid UZI identity
	Permit     bool
	Scope      Scope // of a permit
	Reason     string
}

// Supervisor names certificates that may read the whole access log (a
// supervisory authority, the operator's audit desk): by organisation or by
// UZI number. Exactly one of the two is set.
type Supervisor struct {
	URA string
	UZI string
}

// PolicyConfig is what an operator may change in the policy; the zero
// value is the default policy.
type PolicyConfig struct {
	// GPSummaryRoles are role codes or patterns (x for any digit), of care
	// professionals (card Z), admitted to the GP summary beyond 01.015 and
	// 01.004: e.g. 01.047 elderly-care physicians, 01.056 ID physicians.
	GPSummaryRoles []string
	// MedicationRoles are role codes or patterns admitted to medication
	// beyond the defaults. They come before the default exclusions.
	MedicationRoles []string
	// Supervisors may read the whole access log, the index and $ihe-pix.
	Supervisors []Supervisor
}

// Policy is the role policy: rules as data, evaluated in order. A Policy
// is immutable and safe for concurrent use.
type Policy struct {
	rules       []Rule
	byAction    map[Action][]*Rule // rules naming each action, in order
	denial      map[Action][]string
	supervisURA map[string]bool
	supervisUZI map[string]bool
}

// Rule groups reused below.
var (
	medicalData = []Action{QueryMedication, QueryGPSummary}
	z           = []CardType{CardProfessional}
	employees   = []CardType{CardNamedEmployee, CardUnnamedEmployee}
	sources     = []CardType{CardServer}
	orgCards    = []CardType{CardServer, CardNamedEmployee, CardUnnamedEmployee}
)

// rules builds the rule list: the defaults of DESIGN.md section 3, with
// the operator's extra roles placed before the default exclusions.
func rules(cfg PolicyConfig) []Rule {
	r := []Rule{
		{Actions: []Action{ReadMetadata}, Anyone: true, Permit: true, Scope: ScopeAll,
			Reason: "the CapabilityStatement is open to every client of the listener"},
		{Actions: medicalData, Roles: []string{RoleNone},
			Reason: "role 00.000 never sees patient data"},
	}
	for _, role := range cfg.MedicationRoles {
		r = append(r, Rule{Actions: []Action{QueryMedication}, Cards: z, Roles: []string{role}, Permit: true, Scope: ScopeAll,
			Reason: "role " + role + " is admitted to medication by configuration"})
	}
	for _, role := range cfg.GPSummaryRoles {
		r = append(r, Rule{Actions: []Action{QueryGPSummary}, Cards: z, Roles: []string{role}, Permit: true, Scope: ScopeAll,
			Reason: "role " + role + " is admitted to the GP summary by configuration"})
	}
	return append(r,
		// Medication: GPs, dispensing GPs, pharmacists, medical specialists.
		Rule{Actions: medicalData, Cards: z, Roles: []string{"01.015"}, Permit: true, Scope: ScopeAll,
			Reason: "general practitioners (01.015) may query medication and the GP summary"},
		Rule{Actions: medicalData, Cards: z, Roles: []string{"01.004"}, Permit: true, Scope: ScopeAll,
			Reason: "dispensing general practitioners (01.004) may query medication and the GP summary"},
		Rule{Actions: []Action{QueryMedication}, Cards: z, Roles: []string{"17.xxx"}, Permit: true, Scope: ScopeAll,
			Reason: "pharmacists (17.xxx) may query medication"},
		Rule{Actions: []Action{QueryMedication}, Roles: []string{"01.000"},
			Reason: "physicians without a specialism (01.000) are not admitted to medication"},
		Rule{Actions: []Action{QueryMedication}, Roles: []string{"01.008"},
			Reason: "company doctors (01.008) are not admitted to medication"},
		Rule{Actions: []Action{QueryMedication}, Roles: []string{"01.048"},
			Reason: "insurance doctors (01.048) are not admitted to medication"},
		Rule{Actions: []Action{QueryMedication}, Roles: []string{"01.055"},
			Reason: "public health physicians (01.055) are not admitted to medication"},
		Rule{Actions: []Action{QueryMedication}, Cards: z, Roles: []string{"01.0xx"}, Permit: true, Scope: ScopeAll,
			Reason: "medical specialists (01.0xx) may query medication"},

		// The index: its own organisation's entries, by its systems and employees.
		Rule{Actions: []Action{RegisterIndex, DeregisterIndex}, Cards: sources, Permit: true, Scope: ScopeOwnOrganisation,
			Reason: "source systems (S) maintain the index entries of their own organisation"},
		Rule{Actions: []Action{RegisterIndex, DeregisterIndex}, Cards: employees, Permit: true, Scope: ScopeOwnOrganisation,
			Reason: "employees (N, M) maintain the index entries of their own organisation"},
		Rule{Actions: []Action{ReadIndex, QueryPIX}, Supervisor: true, Permit: true, Scope: ScopeAll,
			Reason: "configured supervisors may read the whole index"},
		Rule{Actions: []Action{ReadIndex}, Cards: orgCards, Permit: true, Scope: ScopeOwnOrganisation,
			Reason: "source systems and employees (S, N, M) read the index entries of their own organisation"},
		Rule{Actions: []Action{QueryPIX}, Cards: sources, Permit: true, Scope: ScopeAll,
			Reason: "source systems (S) may cross-reference a BSN"},

		// Consent: recorded where it was given.
		Rule{Actions: []Action{RecordConsent, WithdrawConsent, ReadConsent}, Cards: orgCards, Permit: true, Scope: ScopeOwnOrganisation,
			Reason: "source systems and employees (S, N, M) manage the consents of their own organisation"},

		// The access log.
		Rule{Actions: []Action{ReadAuditAll}, Supervisor: true, Permit: true, Scope: ScopeAll,
			Reason: "configured supervisors may read the whole access log"},
		Rule{Actions: []Action{ReadAuditOwn}, Supervisor: true, Permit: true, Scope: ScopeOwnEvents,
			Reason: "configured supervisors may read the log of their own accesses"},
		Rule{Actions: []Action{ReadAuditOwn}, Cards: z, Permit: true, Scope: ScopeOwnEvents,
			Reason: "care professionals (Z) may read the log of their own accesses"},
		Rule{Actions: []Action{ReadAlerts}, Supervisor: true, Permit: true, Scope: ScopeAll,
			Reason: "configured supervisors may read the abuse alerts"},
		Rule{Actions: []Action{ReviewAlerts}, Supervisor: true, Permit: true, Scope: ScopeAll,
			Reason: "configured supervisors may close an abuse alert they reviewed (its status and end only)"},

		// No patient data.
		Rule{Actions: []Action{ReadRegistry}, Permit: true, Scope: ScopeAll,
			Reason: "every UZI identity may read the source registry"},
		Rule{Actions: []Action{ValidateResource}, Permit: true, Scope: ScopeAll,
			Reason: "every UZI identity may validate a resource"},
	)
}

// DefaultPolicy is the policy of DESIGN.md section 3 without supervisors.
func DefaultPolicy() *Policy {
	p, err := NewPolicy(PolicyConfig{})
	if err != nil {
		panic(err) // the defaults are constants
	}
	return p
}

// NewPolicy builds the default policy widened by cfg. It refuses role
// patterns that are not NN.NNN with x wildcards, patterns that match role
// 00.000 (which never sees patient data), and supervisors that are not
// exactly one of an 8-digit URA or a UZI number. Errors wrap
// ErrInvalidPolicy.
func NewPolicy(cfg PolicyConfig) (*Policy, error) {
	for _, role := range slices.Concat(cfg.GPSummaryRoles, cfg.MedicationRoles) {
		if !validRolePattern(role) {
			return nil, fmt.Errorf("%w: role %q is not NN.NNN (x for any digit)", ErrInvalidPolicy, role)
		}
		if roleMatches(role, RoleNone) {
			return nil, fmt.Errorf("%w: role %q would admit role 00.000 to patient data", ErrInvalidPolicy, role)
		}
	}
	pol := &Policy{rules: rules(cfg), byAction: map[Action][]*Rule{}, denial: map[Action][]string{},
		supervisURA: map[string]bool{}, supervisUZI: map[string]bool{}}
	for i := range pol.rules {
		for _, a := range pol.rules[i].Actions {
			pol.byAction[a] = append(pol.byAction[a], &pol.rules[i])
		}
	}
	for a, text := range actionText {
		pol.denial[a] = []string{"this card type and role may not " + text}
	}
	for i, s := range cfg.Supervisors {
		switch {
		case s.URA != "" && s.UZI == "" && digits(s.URA, 8, 8):
			pol.supervisURA[s.URA] = true
		case s.UZI != "" && s.URA == "" && digits(s.UZI, 1, 16):
			pol.supervisUZI[s.UZI] = true
		default:
			return nil, fmt.Errorf("%w: supervisor %d needs exactly one of an 8-digit URA or a UZI number", ErrInvalidPolicy, i+1)
		}
	}
	return pol, nil
}

// Rules returns a copy of the rules in evaluation order, for rendering.
func (pol *Policy) Rules() []Rule {
	out := make([]Rule, len(pol.rules))
	for i, r := range pol.rules {
		r.Actions = slices.Clone(r.Actions)
		r.Cards = slices.Clone(r.Cards)
		r.Roles = slices.Clone(r.Roles)
		out[i] = r
	}
	return out
}

// IsSupervisor reports whether p is a configured supervisor (by URA or UZI
// number).
func (pol *Policy) IsSupervisor(p Principal) bool {
	return (p.URA != "" && pol.supervisURA[p.URA]) || (p.UZINumber != "" && pol.supervisUZI[p.UZINumber])
}

// Reasons of denials that no rule gives.
const (
	reasonNoIdentity    = "no valid UZI identity"
	reasonUnknownAction = "unknown action"
)

// Decide answers whether p may do a. It is a pure function of the policy,
// p and a: it sees no patient, so its reasons cannot reveal one. A
// principal that fails Validate only gets what a rule grants to anyone.
// A permit with a scope other than ScopeAll binds the caller to enforce
// that scope; a permit for patient data still needs the patient's consent.
func (pol *Policy) Decide(p Principal, a Action) Decision {
	denial, ok := pol.denial[a]
	if !ok {
		return Decision{Reasons: []string{reasonUnknownAction}}
	}
	valid := p.Validate() == nil
	for _, r := range pol.byAction[a] {
		if (!valid && !r.Anyone) || !pol.matches(r, &p) {
			continue
		}
		if !r.Permit {
			return Decision{Reasons: []string{r.Reason}}
		}
		return Decision{Permit: true, Scope: r.Scope, Reasons: []string{r.Reason}}
	}
	if !valid {
		return Decision{Reasons: []string{reasonNoIdentity}}
	}
	// Shared and never modified by the policy; callers must not modify
	// Reasons either (And copies).
	return Decision{Reasons: denial}
}

func (pol *Policy) matches(r *Rule, p *Principal) bool {
	if r.Anyone {
		return true
	}
	if len(r.Cards) > 0 && !slices.Contains(r.Cards, p.CardType) {
		return false
	}
	if len(r.Roles) > 0 {
		match := false
		for _, pat := range r.Roles {
			if roleMatches(pat, p.Role) {
				match = true
				break
			}
		}
		if !match {
			return false
		}
	}
	return !r.Supervisor || pol.IsSupervisor(*p)
}

// validRolePattern reports whether s is NN.NNN where each N is a digit or x.
func validRolePattern(s string) bool {
	if len(s) != 6 || s[2] != '.' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if i != 2 && s[i] != 'x' && (s[i] < '0' || s[i] > '9') {
			return false
		}
	}
	return true
}

// roleMatches reports whether role matches pattern, x matching any digit.
func roleMatches(pattern, role string) bool {
	if len(pattern) != len(role) {
		return false
	}
	for i := 0; i < len(pattern); i++ {
		if pattern[i] != role[i] && !(pattern[i] == 'x' && role[i] >= '0' && role[i] <= '9') {
			return false
		}
	}
	return true
}
