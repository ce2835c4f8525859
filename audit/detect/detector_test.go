package detect_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/schakelpunt/schakelpunt/audit/detect"
	"github.com/schakelpunt/schakelpunt/fhir"
)

var (
	ams  = mustLocation("Europe/Amsterdam")
	base = time.Date(2026, 11, 10, 9, 0, 0, 0, ams)
)

func mustLocation(name string) *time.Location {
	loc, err := time.LoadLocation(name)
	if err != nil {
		panic(err)
	}
	return loc
}

// Demo BSNs (they pass the eleven-check).
var bsns = []string{"999911120", "999900006", "999900018", "999900031", "999900043", "999900055"}

// q is a medication query at base+at by professional uzi of organisation
// ura for patient bsn, permitted or denied.
func q(at time.Duration, uzi, ura, bsn string, d detect.Decision) detect.Observation {
	return detect.Observation{
		ID: fmt.Sprintf("ev-%s-%s-%s-%d", uzi, ura, bsn, at), At: base.Add(at), UZI: uzi, Card: "Z", URA: ura, BSN: bsn,
		Category: fhir.CategoryMedication, Decision: d, Success: d == detect.Permitted,
	}
}

// lookup is a permitted read or search at base+at by professional uzi
// of organisation ura that names patient bsn but asks for none of their
// data: an index search by BSN, $ihe-pix, a Consent or AuditEvent
// search. Its observation has no data category.
func lookup(at time.Duration, uzi, ura, bsn string) detect.Observation {
	o := q(at, uzi, ura, bsn, detect.Permitted)
	o.ID, o.Category = "lookup-"+o.ID, ""
	return o
}

const (
	permit = detect.Permitted
	deny   = detect.Denied
)

// run feeds a stream through a fresh detector and returns the hits.
func run(t *testing.T, rules detect.Rules, rel detect.Relations, stream []detect.Observation) []detect.Hit {
	t.Helper()
	d, err := detect.New(rules, detect.Options{Relations: rel})
	if err != nil {
		t.Fatal(err)
	}
	var hits []detect.Hit
	for _, o := range stream {
		hits = append(hits, d.Observe(context.Background(), o)...)
	}
	return hits
}

// only is rules with every rule off but the one set up by f.
func only(f func(r *detect.Rules)) detect.Rules {
	var r detect.Rules
	f(&r)
	return r
}

type wantHit struct {
	rule     string
	subject  string // Type|value
	trigger  string // the id of the triggering event, which must be in the evidence
	evidence int    // number of AuditEvents pointed at
}

func checkHits(t *testing.T, got []detect.Hit, want []wantHit) {
	t.Helper()
	if len(got) != len(want) {
		for _, h := range got {
			t.Logf("hit: %s %s %v", h.Rule, h.Subject.Value, h.Evidence)
		}
		t.Fatalf("%d hits, want %d", len(got), len(want))
	}
	for i, w := range want {
		h := got[i]
		if h.Rule != w.rule || h.Subject.Type+"|"+h.Subject.Value != w.subject {
			t.Errorf("hit %d: %s about %s|%s, want %s about %s", i, h.Rule, h.Subject.Type, h.Subject.Value, w.rule, w.subject)
		}
		if !slices.Contains(h.Evidence, w.trigger) {
			t.Errorf("hit %d: evidence %v lacks the triggering event %s", i, h.Evidence, w.trigger)
		}
		if len(h.Evidence) != w.evidence {
			t.Errorf("hit %d: %d AuditEvents as evidence, want %d", i, len(h.Evidence), w.evidence)
		}
		for _, b := range bsns {
			if strings.Contains(h.Text, b) {
				t.Errorf("hit %d: text names a BSN: %s", i, h.Text)
			}
		}
	}
}

func TestDistinctPatients(t *testing.T) {
	rules := only(func(r *detect.Rules) { r.DistinctPatients.Max, r.DistinctPatients.Window = 3, time.Hour })
	min := time.Minute
	cases := []struct {
		name   string
		stream []detect.Observation
		want   []wantHit
	}{
		{"four patients in 45 minutes", []detect.Observation{
			q(0, "111", "90000001", bsns[0], permit), q(15*min, "111", "90000001", bsns[1], permit),
			q(30*min, "111", "90000001", bsns[2], deny), q(45*min, "111", "90000001", bsns[3], permit),
		}, []wantHit{{detect.RuleDistinctPatients, "Practitioner|111", q(45*min, "111", "90000001", bsns[3], permit).ID, 4}}},
		{"four patients over two hours", []detect.Observation{
			q(0, "111", "90000001", bsns[0], permit), q(40*min, "111", "90000001", bsns[1], permit),
			q(80*min, "111", "90000001", bsns[2], permit), q(120*min, "111", "90000001", bsns[3], permit),
		}, nil},
		{"three patients asked again and again", func() []detect.Observation {
			var s []detect.Observation
			for i := range 12 {
				s = append(s, q(time.Duration(i)*min, "111", "90000001", bsns[i%3], permit))
			}
			return s
		}(), nil},
		{"four patients by two professionals", []detect.Observation{
			q(0, "111", "90000001", bsns[0], permit), q(1*min, "111", "90000001", bsns[1], permit),
			q(2*min, "222", "90000001", bsns[2], permit), q(3*min, "222", "90000001", bsns[3], permit),
		}, nil},
		{"six patients in ten minutes: one alert", func() []detect.Observation {
			var s []detect.Observation
			for i := range 6 {
				s = append(s, q(time.Duration(i)*2*min, "111", "90000001", bsns[i], permit))
			}
			return s
		}(), []wantHit{{detect.RuleDistinctPatients, "Practitioner|111", q(6*min, "111", "90000001", bsns[3], permit).ID, 4}}},
		{"refused before the query: the patients are still named", func() []detect.Observation {
			var s []detect.Observation
			for i := range 4 {
				o := q(time.Duration(i)*min, "114", "90000111", bsns[i], deny)
				o.Category = "" // refused by the role policy before the query was read
				s = append(s, o)
			}
			return s
		}(), []wantHit{{detect.RuleDistinctPatients, "Practitioner|114", func() string {
			o := q(3*min, "114", "90000111", bsns[3], deny)
			return o.ID
		}(), 4}}},
		{"a source system registering its patients", func() []detect.Observation {
			var s []detect.Observation
			for i := range 6 {
				s = append(s, detect.Observation{ID: fmt.Sprint("reg", i), At: base.Add(time.Duration(i) * min), Card: "S", URA: "90000002",
					BSN: bsns[i], Decision: permit, Success: true})
			}
			return s
		}(), nil},
		{"again after the window", []detect.Observation{
			q(0, "111", "90000001", bsns[0], permit), q(1*min, "111", "90000001", bsns[1], permit),
			q(2*min, "111", "90000001", bsns[2], permit), q(3*min, "111", "90000001", bsns[3], permit),
			q(180*min, "111", "90000001", bsns[4], permit), q(181*min, "111", "90000001", bsns[5], permit),
			q(182*min, "111", "90000001", bsns[0], permit), q(183*min, "111", "90000001", bsns[1], permit),
		}, []wantHit{
			{detect.RuleDistinctPatients, "Practitioner|111", q(3*min, "111", "90000001", bsns[3], permit).ID, 4},
			{detect.RuleDistinctPatients, "Practitioner|111", q(183*min, "111", "90000001", bsns[1], permit).ID, 4},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { checkHits(t, run(t, rules, nil, tc.stream), tc.want) })
	}
}

func TestDenialBurst(t *testing.T) {
	rules := only(func(r *detect.Rules) { r.DenialBurst.Count, r.DenialBurst.Window = 3, 5*time.Minute })
	min := time.Minute
	cases := []struct {
		name   string
		stream []detect.Observation
		want   []wantHit
	}{
		{"three denials in four minutes", []detect.Observation{
			q(0, "111", "90000001", bsns[0], deny), q(2*min, "111", "90000001", bsns[0], deny), q(4*min, "111", "90000001", bsns[1], deny),
		}, []wantHit{{detect.RuleDenialBurst, "Practitioner|111", q(4*min, "111", "90000001", bsns[1], deny).ID, 3}}},
		{"three denials in ten minutes", []detect.Observation{
			q(0, "111", "90000001", bsns[0], deny), q(5*min, "111", "90000001", bsns[0], deny), q(10*min, "111", "90000001", bsns[1], deny),
		}, nil},
		{"three permits", []detect.Observation{
			q(0, "111", "90000001", bsns[0], permit), q(1*min, "111", "90000001", bsns[0], permit), q(2*min, "111", "90000001", bsns[1], permit),
		}, nil},
		{"denials spread over two professionals", []detect.Observation{
			q(0, "111", "90000001", bsns[0], deny), q(1*min, "222", "90000001", bsns[0], deny), q(2*min, "111", "90000001", bsns[1], deny),
		}, nil},
		{"seven denials in a row: one alert", func() []detect.Observation {
			var s []detect.Observation
			for i := range 7 {
				s = append(s, q(time.Duration(i)*30*time.Second, "111", "90000001", bsns[i%6], deny))
			}
			return s
		}(), []wantHit{{detect.RuleDenialBurst, "Practitioner|111", q(60*time.Second, "111", "90000001", bsns[2], deny).ID, 3}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { checkHits(t, run(t, rules, nil, tc.stream), tc.want) })
	}
}

func TestManyOrganisations(t *testing.T) {
	rules := only(func(r *detect.Rules) { r.ManyOrganisations.Max, r.ManyOrganisations.Window = 2, 24*time.Hour })
	h := time.Hour
	cases := []struct {
		name   string
		stream []detect.Observation
		want   []wantHit
	}{
		{"three organisations in three hours", []detect.Observation{
			q(0, "111", "90000001", bsns[0], permit), q(1*h, "222", "90000002", bsns[0], deny), q(3*h, "333", "90000003", bsns[0], permit),
		}, []wantHit{{detect.RuleManyOrganisations, "Patient|" + bsns[0], q(3*h, "333", "90000003", bsns[0], permit).ID, 3}}},
		{"three organisations over three days", []detect.Observation{
			q(0, "111", "90000001", bsns[0], permit), q(25*h, "222", "90000002", bsns[0], permit), q(50*h, "333", "90000003", bsns[0], permit),
		}, nil},
		{"one organisation, many professionals", []detect.Observation{
			q(0, "111", "90000001", bsns[0], permit), q(1*h, "222", "90000001", bsns[0], permit), q(2*h, "333", "90000001", bsns[0], permit),
			q(3*h, "444", "90000001", bsns[0], permit),
		}, nil},
		{"three organisations, three patients", []detect.Observation{
			q(0, "111", "90000001", bsns[0], permit), q(1*h, "222", "90000002", bsns[1], permit), q(2*h, "333", "90000003", bsns[2], permit),
		}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { checkHits(t, run(t, rules, nil, tc.stream), tc.want) })
	}
}

// officeHistory is an organisation's queries between 09:00 and 17:00 on
// the days before base: perDay a day for days days.
func officeHistory(ura string, days, perDay int) []detect.Observation {
	var s []detect.Observation
	for d := days; d >= 1; d-- {
		for i := range perDay {
			at := -time.Duration(d)*24*time.Hour + time.Duration(i)*(8*time.Hour)/time.Duration(perDay)
			s = append(s, q(at, "111", ura, bsns[i%6], permit))
		}
	}
	return s
}

func TestUnusualHour(t *testing.T) {
	rules := only(func(r *detect.Rules) {
		r.UnusualHour.Days, r.UnusualHour.MinShare, r.UnusualHour.MinHistory, r.UnusualHour.Location = 7, 0.02, 50, ams
	})
	h := time.Hour
	night := q(-6*h, "111", "90000001", bsns[0], permit) // 03:00 on base's day
	cases := []struct {
		name   string
		stream []detect.Observation
		want   []wantHit
	}{
		{"a query at three at night after a week of office hours",
			append(officeHistory("90000001", 6, 20), night),
			[]wantHit{{detect.RuleUnusualHour, "Organization|90000001", night.ID, 1}}},
		{"too little history to judge",
			append(officeHistory("90000001", 2, 20), night), nil},
		{"a query at ten in the morning",
			append(officeHistory("90000001", 6, 20), q(1*h, "111", "90000001", bsns[0], permit)), nil},
		{"the night is another organisation's",
			append(officeHistory("90000002", 6, 20), night), nil},
		{"the same hour again: one alert a day",
			append(officeHistory("90000001", 6, 20), night, q(-6*h+10*time.Minute, "111", "90000001", bsns[1], permit)),
			[]wantHit{{detect.RuleUnusualHour, "Organization|90000001", night.ID, 1}}},
		{"an organisation that works nights",
			append(append(officeHistory("90000001", 6, 20), func() []detect.Observation {
				var s []detect.Observation
				for d := 6; d >= 1; d-- {
					s = append(s, q(-time.Duration(d)*24*h-6*h, "111", "90000001", bsns[d%6], permit))
				}
				return s
			}()...), night), nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			stream := slices.Clone(tc.stream)
			slices.SortStableFunc(stream, func(a, b detect.Observation) int { return a.At.Compare(b.At) })
			checkHits(t, run(t, rules, nil, stream), tc.want)
		})
	}
}

// relations is the index and the log as a test declares them.
type relations struct {
	registered map[string]bool        // ura|bsn
	contacts   map[string][]time.Time // ura|bsn: successful events in the log
	err        error
	asked      int
}

func (r *relations) Registered(_ context.Context, ura, bsn string) (bool, error) {
	r.asked++
	return r.registered[ura+"|"+bsn], r.err
}

func (r *relations) EarlierContact(_ context.Context, ura, bsn string, since, before time.Time) (bool, error) {
	for _, at := range r.contacts[ura+"|"+bsn] {
		if !at.Before(since) && at.Before(before) {
			return true, r.err
		}
	}
	return false, r.err
}

func TestNoRelationship(t *testing.T) {
	rules := only(func(r *detect.Rules) { r.NoRelationship.Lookback = 30 * 24 * time.Hour })
	day := 24 * time.Hour
	first := q(0, "111", "90000003", bsns[0], permit)
	cases := []struct {
		name   string
		rel    relations
		stream []detect.Observation
		want   []wantHit
	}{
		{"no registration and no contact", relations{}, []detect.Observation{first},
			[]wantHit{{detect.RuleNoRelationship, "Practitioner|111", first.ID, 1}}},
		{"registered in the index", relations{registered: map[string]bool{"90000003|" + bsns[0]: true}}, []detect.Observation{first}, nil},
		{"an earlier contact in the log", relations{contacts: map[string][]time.Time{"90000003|" + bsns[0]: {base.Add(-10 * day)}}}, []detect.Observation{first}, nil},
		{"a contact in the log too long ago", relations{contacts: map[string][]time.Time{"90000003|" + bsns[0]: {base.Add(-40 * day)}}}, []detect.Observation{first},
			[]wantHit{{detect.RuleNoRelationship, "Practitioner|111", first.ID, 1}}},
		{"another organisation's contact", relations{registered: map[string]bool{"90000001|" + bsns[0]: true}, contacts: map[string][]time.Time{"90000001|" + bsns[0]: {base.Add(-1 * day)}}}, []detect.Observation{first},
			[]wantHit{{detect.RuleNoRelationship, "Practitioner|111", first.ID, 1}}},
		{"an earlier permitted query in the stream", relations{}, []detect.Observation{
			q(-20*day, "222", "90000003", bsns[0], permit), first,
		}, []wantHit{{detect.RuleNoRelationship, "Practitioner|222", q(-20*day, "222", "90000003", bsns[0], permit).ID, 1}}},
		{"an earlier query in the stream beyond the look-back", relations{}, []detect.Observation{
			q(-40*day, "222", "90000003", bsns[0], permit), first,
		}, []wantHit{
			{detect.RuleNoRelationship, "Practitioner|222", q(-40*day, "222", "90000003", bsns[0], permit).ID, 1},
			{detect.RuleNoRelationship, "Practitioner|111", first.ID, 1},
		}},
		{"earlier index, $ihe-pix and consent lookups in the stream", relations{}, []detect.Observation{
			lookup(-3*time.Hour, "111", "90000003", bsns[0]), lookup(-2*time.Hour, "111", "90000003", bsns[0]), lookup(-time.Hour, "222", "90000003", bsns[0]), first,
		}, []wantHit{{detect.RuleNoRelationship, "Practitioner|111", first.ID, 1}}},
		{"an earlier denied query in the stream", relations{}, []detect.Observation{
			q(-time.Hour, "111", "90000003", bsns[0], deny), first,
		}, []wantHit{{detect.RuleNoRelationship, "Practitioner|111", first.ID, 1}}},
		{"an earlier permitted query that failed", relations{}, []detect.Observation{
			func() detect.Observation {
				o := q(-time.Hour, "222", "90000003", bsns[0], permit)
				o.Success = false
				return o
			}(), first,
		}, []wantHit{{detect.RuleNoRelationship, "Practitioner|111", first.ID, 1}}},
		{"a denied query", relations{}, []detect.Observation{q(0, "111", "90000003", bsns[0], deny)}, nil},
		{"the index cannot be asked", relations{err: errors.New("store down")}, []detect.Observation{first}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rel := tc.rel
			checkHits(t, run(t, rules, &rel, tc.stream), tc.want)
		})
	}
	// Warming up from the log remembers only permitted queries as
	// contacts.
	learned := []struct {
		name  string
		learn []detect.Observation
		want  []wantHit
	}{
		{"learned lookups", []detect.Observation{lookup(-2*day, "111", "90000003", bsns[0]), lookup(-day, "222", "90000003", bsns[0])},
			[]wantHit{{detect.RuleNoRelationship, "Practitioner|111", first.ID, 1}}},
		{"a learned denied query", []detect.Observation{q(-day, "111", "90000003", bsns[0], deny)},
			[]wantHit{{detect.RuleNoRelationship, "Practitioner|111", first.ID, 1}}},
		{"a learned permitted query", []detect.Observation{q(-day, "222", "90000003", bsns[0], permit)}, nil},
	}
	for _, tc := range learned {
		t.Run(tc.name, func(t *testing.T) {
			d, err := detect.New(rules, detect.Options{Relations: &relations{}})
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range tc.learn {
				d.Learn(o)
			}
			checkHits(t, d.Observe(context.Background(), first), tc.want)
		})
	}
	t.Run("without relations the rule is off", func(t *testing.T) {
		checkHits(t, run(t, rules, nil, []detect.Observation{first}), nil)
	})
	t.Run("memory saves asking", func(t *testing.T) {
		rel := &relations{registered: map[string]bool{"90000003|" + bsns[0]: true}}
		var stream []detect.Observation
		for i := range 20 {
			stream = append(stream, q(time.Duration(i)*time.Hour, "111", "90000003", bsns[0], permit))
		}
		checkHits(t, run(t, rules, rel, stream), nil)
		if rel.asked != 1 {
			t.Errorf("the index was asked %d times for one pair, want 1", rel.asked)
		}
	})
}

func TestRulesCheck(t *testing.T) {
	cases := []struct {
		name string
		set  func(r *detect.Rules)
		ok   bool
	}{
		{"defaults", func(r *detect.Rules) { *r = detect.DefaultRules() }, true},
		{"all off", func(r *detect.Rules) {}, true},
		{"threshold without window", func(r *detect.Rules) { r.DistinctPatients.Max = 3 }, false},
		{"negative count", func(r *detect.Rules) { r.DenialBurst.Count, r.DenialBurst.Window = -1, time.Minute }, false},
		{"share of one", func(r *detect.Rules) {
			r.UnusualHour.Days, r.UnusualHour.MinShare, r.UnusualHour.MinHistory = 7, 1, 10
		}, false},
		{"no history", func(r *detect.Rules) { r.UnusualHour.Days, r.UnusualHour.MinShare = 7, 0.01 }, false},
		{"negative look-back", func(r *detect.Rules) { r.NoRelationship.Lookback = -time.Hour }, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var r detect.Rules
			tc.set(&r)
			_, err := detect.New(r, detect.Options{})
			if (err == nil) != tc.ok {
				t.Fatalf("New = %v, want ok %v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, detect.ErrInvalidRules) {
				t.Fatalf("error %v does not wrap ErrInvalidRules", err)
			}
		})
	}
}
