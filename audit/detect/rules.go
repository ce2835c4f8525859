package detect

import (
	"errors"
	"fmt"
	"time"
)

// The rule codes: Flag.code in SystemRule, and the counter's label.
const (
	RuleDistinctPatients  = "distinct-patients"
	RuleNoRelationship    = "no-relationship"
	RuleDenialBurst       = "denial-burst"
	RuleUnusualHour       = "unusual-hour"
	RuleManyOrganisations = "many-organisations"
)

// RuleCodes lists the rule codes in a fixed order.
func RuleCodes() []string {
	return []string{RuleDistinctPatients, RuleNoRelationship, RuleDenialBurst, RuleUnusualHour, RuleManyOrganisations}
}

// ErrInvalidRules is wrapped by Rules.Check.
var ErrInvalidRules = errors.New("invalid detection rules")

// Rules configure the detector. A rule whose threshold is zero is off.
type Rules struct {
	// DistinctPatients: more than Max distinct patients queried by one
	// professional within Window.
	DistinctPatients struct {
		Max    int
		Window time.Duration
	}
	// NoRelationship: a permitted query for a patient by an organisation
	// that did not register the patient in the index and had no
	// successful event about the patient within Lookback before it. On
	// (Lookback > 0) only when the detector has Relations to ask.
	NoRelationship struct {
		Lookback time.Duration
	}
	// DenialBurst: Count denials of one professional within Window.
	DenialBurst struct {
		Count  int
		Window time.Duration
	}
	// UnusualHour: a query in an hour of the day (in Location) in which
	// the organisation made less than MinShare of its queries over the
	// trailing Days, once it has MinHistory queries in them. Each
	// organisation and hour fires at most once a day.
	UnusualHour struct {
		Days       int
		MinShare   float64
		MinHistory int
		Location   *time.Location
	}
	// ManyOrganisations: more than Max distinct organisations querying
	// one patient within Window.
	ManyOrganisations struct {
		Max    int
		Window time.Duration
	}
	// MaxKeys bounds the professionals, organisation-patient pairs,
	// organisations and patients each rule remembers (default 100000);
	// beyond it the oldest are forgotten first.
	MaxKeys int
	// MaxEvidence bounds the AuditEvents a Flag points at (default 50).
	MaxEvidence int
}

// DefaultRules are the rules with their default thresholds, all on.
func DefaultRules() Rules {
	var r Rules
	r.DistinctPatients.Max, r.DistinctPatients.Window = 50, time.Hour
	r.NoRelationship.Lookback = 90 * 24 * time.Hour
	r.DenialBurst.Count, r.DenialBurst.Window = 10, 5*time.Minute
	r.UnusualHour.Days, r.UnusualHour.MinShare, r.UnusualHour.MinHistory = 28, 0.01, 500
	r.UnusualHour.Location = amsterdam()
	r.ManyOrganisations.Max, r.ManyOrganisations.Window = 5, 24*time.Hour
	r.MaxKeys, r.MaxEvidence = 100_000, 50
	return r
}

func amsterdam() *time.Location {
	if loc, err := time.LoadLocation("Europe/Amsterdam"); err == nil {
		return loc
	}
	return time.UTC
}

// Check refuses thresholds without a window and values out of range.
func (r *Rules) Check() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalidRules}, args...)...)
	}
	switch {
	case r.DistinctPatients.Max < 0 || (r.DistinctPatients.Max > 0 && r.DistinctPatients.Window <= 0):
		return bad("distinct_patients needs max >= 0 and, when on, a window > 0")
	case r.NoRelationship.Lookback < 0:
		return bad("no_relationship lookback must be >= 0")
	case r.DenialBurst.Count < 0 || (r.DenialBurst.Count > 0 && r.DenialBurst.Window <= 0):
		return bad("denial_burst needs count >= 0 and, when on, a window > 0")
	case r.UnusualHour.Days < 0 || r.UnusualHour.Days > 366:
		return bad("unusual_hours days must be between 0 and 366")
	case r.UnusualHour.Days > 0 && (r.UnusualHour.MinShare <= 0 || r.UnusualHour.MinShare >= 1 || r.UnusualHour.MinHistory < 1):
		return bad("unusual_hours needs a min_share between 0 and 1 and a min_history of at least 1")
	case r.ManyOrganisations.Max < 0 || (r.ManyOrganisations.Max > 0 && r.ManyOrganisations.Window <= 0):
		return bad("many_organisations needs max >= 0 and, when on, a window > 0")
	case r.MaxKeys < 0 || r.MaxEvidence < 0:
		return bad("max_keys and max_evidence must be >= 0")
	}
	return nil
}
