package detect

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/schakelpunt/schakelpunt/fhir"
)

// Subject is whom a hit is about: a professional (Practitioner by UZI
// number), an organisation (Organization by URA) or a patient (Patient
// by BSN).
type Subject struct {
	Type   string // Practitioner, Organization or Patient
	System string
	Value  string
}

// Hit is one rule firing.
type Hit struct {
	Rule     string
	At       time.Time // the triggering event's recorded time
	Since    time.Time // the oldest event in the evidence
	Subject  Subject
	URAs     []string // the organisations involved
	Evidence []string // AuditEvent ids, oldest first; the triggering event is among them
	Text     string   // the finding in words; never a BSN
}

// Relations answers, for the no-relationship rule, what the detector's
// bounded memory cannot: the index and the log itself.
type Relations interface {
	// Registered reports whether organisation ura registered the patient
	// in the index.
	Registered(ctx context.Context, ura, bsn string) (bool, error)
	// EarlierContact reports whether the log holds a contact (see
	// Observation.Contact: a permitted query for the patient's data) of
	// organisation ura with the patient recorded in [since, before).
	EarlierContact(ctx context.Context, ura, bsn string, since, before time.Time) (bool, error)
}

// Options are a detector's dependencies.
type Options struct {
	// Relations is asked when memory holds no contact between an
	// organisation and a patient; without it the no-relationship rule is
	// off.
	Relations Relations
	// LookupTimeout bounds each question to Relations (default
	// DefaultLookupTimeout); one that runs out leaves the event's
	// no-relationship unchecked, logged.
	LookupTimeout time.Duration
	Logger        *slog.Logger
}

// DefaultLookupTimeout is Options.LookupTimeout when unset.
const DefaultLookupTimeout = 2 * time.Second

// Detector applies the rules to observations in (nearly) time order. It
// is not safe for concurrent use: one goroutine feeds it (see Runner).
type Detector struct {
	rules  Rules
	rel    Relations
	logger *slog.Logger
	// lookupTimeout bounds each Relations call.
	lookupTimeout time.Duration
	newest        time.Time
	seen          int // observations since the last sweep

	professionals *keyed[*distinctWindow] // distinct patients per UZI number
	denials       *keyed[*countWindow]    // denials per UZI number
	patients      *keyed[*distinctWindow] // distinct organisations per BSN
	hours         *keyed[*hourTable]      // queries per hour of the day per URA
	contacts      *contacts               // organisation-patient contacts
}

// sweepEvery is how many observations pass between sweeps of keys whose
// windows have passed.
const sweepEvery = 4096

// New builds a detector; it refuses rules that fail Check.
func New(rules Rules, opts Options) (*Detector, error) {
	if err := rules.Check(); err != nil {
		return nil, err
	}
	if rules.MaxKeys == 0 {
		rules.MaxKeys = 100_000
	}
	if rules.MaxEvidence == 0 {
		rules.MaxEvidence = 50
	}
	if rules.UnusualHour.Location == nil {
		rules.UnusualHour.Location = time.UTC
	}
	d := &Detector{
		rules: rules, rel: opts.Relations, logger: opts.Logger, lookupTimeout: opts.LookupTimeout,
		professionals: newKeyed[*distinctWindow](rules.MaxKeys),
		denials:       newKeyed[*countWindow](rules.MaxKeys),
		patients:      newKeyed[*distinctWindow](rules.MaxKeys),
		hours:         newKeyed[*hourTable](rules.MaxKeys),
		contacts:      newContacts(rules.MaxKeys),
	}
	if d.lookupTimeout <= 0 {
		d.lookupTimeout = DefaultLookupTimeout
	}
	if d.logger == nil {
		d.logger = slog.New(slog.DiscardHandler)
	}
	return d, nil
}

// Observe applies every rule to o and returns the hits, if any.
func (d *Detector) Observe(ctx context.Context, o Observation) []Hit {
	if o.At.After(d.newest) {
		d.newest = o.At
	}
	if d.seen++; d.seen >= sweepEvery {
		d.sweep()
	}
	var hits []Hit
	if o.AboutPatient() {
		if h, ok := d.distinctPatients(&o); ok {
			hits = append(hits, h)
		}
		if h, ok := d.unusualHour(&o); ok {
			hits = append(hits, h)
		}
		if h, ok := d.manyOrganisations(&o); ok {
			hits = append(hits, h)
		}
	}
	if h, ok := d.noRelationship(ctx, &o); ok {
		hits = append(hits, h)
	}
	if h, ok := d.denialBurst(&o); ok {
		hits = append(hits, h)
	}
	return hits
}

// sweep forgets the keys whose windows have passed.
func (d *Detector) sweep() {
	d.seen = 0
	r := &d.rules
	if r.DistinctPatients.Max > 0 {
		d.professionals.sweep(d.newest.Add(-r.DistinctPatients.Window))
	}
	if r.DenialBurst.Count > 0 {
		d.denials.sweep(d.newest.Add(-r.DenialBurst.Window))
	}
	if r.ManyOrganisations.Max > 0 {
		d.patients.sweep(d.newest.Add(-r.ManyOrganisations.Window))
	}
	if r.UnusualHour.Days > 0 {
		d.hours.sweep(d.newest.AddDate(0, 0, -r.UnusualHour.Days))
	}
	d.contacts.expire(d.newest.Add(-r.NoRelationship.Lookback))
}

func practitioner(uzi string) Subject {
	return Subject{Type: "Practitioner", System: fhir.SystemUZIPerson, Value: uzi}
}

func (d *Detector) distinctPatients(o *Observation) (Hit, bool) {
	r := d.rules.DistinctPatients
	if r.Max == 0 {
		return Hit{}, false
	}
	w := d.professionals.get(o.UZI, newDistinct)
	if !w.tripped(entry{at: o.At, val: o.BSN, id: o.ID}, r.Max, r.Window) {
		return Hit{}, false
	}
	ids, since := w.evidence(d.rules.MaxEvidence)
	return Hit{
		Rule: RuleDistinctPatients, At: o.At, Since: since, Subject: practitioner(o.UZI), URAs: []string{o.URA}, Evidence: ids,
		Text: fmt.Sprintf("professional %s (organisation %s) queried more than %d distinct patients within %s", o.UZI, o.URA, r.Max, r.Window),
	}, true
}

func (d *Detector) denialBurst(o *Observation) (Hit, bool) {
	r := d.rules.DenialBurst
	if r.Count == 0 || o.UZI == "" || o.Decision != Denied {
		return Hit{}, false
	}
	w := d.denials.get(o.UZI, func() *countWindow { return &countWindow{} })
	w.expire(o.At.Add(-r.Window))
	w.add(entry{at: o.At, id: o.ID}, r.Count)
	if len(w.items) < r.Count || o.At.Before(w.quiet) {
		return Hit{}, false
	}
	w.quiet = o.At.Add(r.Window)
	ids, since := idsOf(append([]entry(nil), w.items...), d.rules.MaxEvidence)
	return Hit{
		Rule: RuleDenialBurst, At: o.At, Since: since, Subject: practitioner(o.UZI), URAs: nonEmpty(o.URA), Evidence: ids,
		Text: fmt.Sprintf("professional %s (organisation %s) was denied %d times within %s", o.UZI, o.URA, r.Count, r.Window),
	}, true
}

func (d *Detector) manyOrganisations(o *Observation) (Hit, bool) {
	r := d.rules.ManyOrganisations
	if r.Max == 0 {
		return Hit{}, false
	}
	w := d.patients.get(o.BSN, newDistinct)
	if !w.tripped(entry{at: o.At, val: o.URA, id: o.ID}, r.Max, r.Window) {
		return Hit{}, false
	}
	ids, since := w.evidence(d.rules.MaxEvidence)
	uras := make([]string, 0, len(w.latest))
	for ura := range w.latest {
		uras = append(uras, ura)
	}
	return Hit{
		Rule: RuleManyOrganisations, At: o.At, Since: since, Subject: Subject{Type: "Patient", System: fhir.SystemBSN, Value: o.BSN},
		URAs: sortedCopy(uras), Evidence: ids,
		Text: fmt.Sprintf("one patient was queried by more than %d distinct organisations within %s", r.Max, r.Window),
	}, true
}

func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}
