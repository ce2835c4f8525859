// Package report builds the supervisors' monthly report of the access
// log: per organisation the requests, permitted and denied decisions,
// distinct patients and professionals, queries per data category and
// abuse alerts, with the patient-data queries per day; rendered as CSV or
// as one self-contained, accessible HTML page. It counts patients but
// never shows a BSN.
package report

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/schakelpunt/schakelpunt/audit/detect"
	"github.com/schakelpunt/schakelpunt/fhir"
	"github.com/schakelpunt/schakelpunt/store"
)

// Searcher finds stored resources (a store.Store does).
type Searcher interface {
	Search(ctx context.Context, q store.Query) (store.Page, error)
}

// Options choose the month and how to show it.
type Options struct {
	Year     int
	Month    time.Month
	Location *time.Location    // the calendar the month and its days follow (default UTC)
	Names    map[string]string // organisation names by URA, where known
}

// Org is one organisation's line.
type Org struct {
	URA           string
	Name          string
	Requests      int // AuditEvents of the organisation's people and systems
	Permitted     int // decisions that permitted
	Denied        int // decisions that denied
	Patients      int // distinct patients the requests were about
	Professionals int // distinct UZI numbers of persons
	Medication    int // medication queries (LOINC 10160-0)
	GPSummary     int // GP summary queries (LOINC 60591-5)
	Alerts        int // abuse alerts naming the organisation
}

// Day is one day's patient-data queries over all organisations.
type Day struct {
	Date      time.Time
	Queries   int
	Permitted int
	Denied    int
}

// Report is one month.
type Report struct {
	Month  string // 2026-11
	Orgs   []Org  // by URA
	Total  Org    // over all organisations (URA "all")
	Days   []Day
	Rules  []RuleCount // alerts by rule, in detect.RuleCodes order
	Events int         // AuditEvents in the month, with or without an organisation
}

// RuleCount is how many alerts a rule raised.
type RuleCount struct {
	Rule, Display string
	Alerts        int
}

type tally struct {
	Org
	patients      map[string]struct{}
	professionals map[string]struct{}
}

func newTally(ura, name string) *tally {
	return &tally{Org: Org{URA: ura, Name: name}, patients: map[string]struct{}{}, professionals: map[string]struct{}{}}
}

func (t *tally) add(o *detect.Observation) {
	t.Requests++
	switch o.Decision {
	case detect.Permitted:
		t.Permitted++
	case detect.Denied:
		t.Denied++
	}
	if o.BSN != "" {
		t.patients[o.BSN] = struct{}{}
	}
	if o.UZI != "" {
		t.professionals[o.UZI] = struct{}{}
	}
	switch o.Category {
	case fhir.CategoryMedication:
		t.Medication++
	case fhir.CategoryGPSummary:
		t.GPSummary++
	}
}

func (t *tally) done() Org {
	t.Patients, t.Professionals = len(t.patients), len(t.professionals)
	return t.Org
}

// Build reads the month's AuditEvents and Flags from the store.
func Build(ctx context.Context, s Searcher, opts Options) (*Report, error) {
	loc := opts.Location
	if loc == nil {
		loc = time.UTC
	}
	if opts.Month < time.January || opts.Month > time.December || opts.Year < 1 {
		return nil, fmt.Errorf("report: no such month %d-%02d", opts.Year, opts.Month)
	}
	start := time.Date(opts.Year, opts.Month, 1, 0, 0, 0, 0, loc)
	end := start.AddDate(0, 1, 0)
	r := &Report{Month: start.Format("2006-01")}
	for d := start; d.Before(end); d = d.AddDate(0, 0, 1) {
		r.Days = append(r.Days, Day{Date: d})
	}
	orgs := map[string]*tally{}
	total := newTally("all", "all organisations")
	err := each(ctx, s, "AuditEvent", start, end, func(body []byte) error {
		o, err := detect.ParseAuditEvent(body)
		if err != nil {
			return err
		}
		if o.At.Before(start) || !o.At.Before(end) {
			return nil
		}
		r.Events++
		if o.Category != "" && o.BSN != "" {
			day := &r.Days[o.At.In(loc).Day()-1]
			day.Queries++
			switch o.Decision {
			case detect.Permitted:
				day.Permitted++
			case detect.Denied:
				day.Denied++
			}
		}
		if o.URA == "" {
			return nil
		}
		t := orgs[o.URA]
		if t == nil {
			t = newTally(o.URA, opts.Names[o.URA])
			orgs[o.URA] = t
		}
		t.add(&o)
		total.add(&o)
		return nil
	})
	if err != nil {
		return nil, err
	}
	byRule := map[string]int{}
	err = each(ctx, s, "Flag", start, end, func(body []byte) error {
		f, err := detect.ParseFlag(body)
		if err != nil {
			return err
		}
		if f.At.Before(start) || !f.At.Before(end) {
			return nil
		}
		byRule[f.Rule]++
		total.Alerts++
		for _, ura := range f.URAs {
			t := orgs[ura]
			if t == nil {
				t = newTally(ura, opts.Names[ura])
				orgs[ura] = t
			}
			t.Alerts++
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, t := range orgs {
		r.Orgs = append(r.Orgs, t.done())
	}
	slices.SortFunc(r.Orgs, func(a, b Org) int { return cmp.Compare(a.URA, b.URA) })
	r.Total = total.done()
	for _, rule := range detect.RuleCodes() {
		r.Rules = append(r.Rules, RuleCount{Rule: rule, Display: detect.RuleDisplay(rule), Alerts: byRule[rule]})
	}
	return r, nil
}

// each pages through the resources of typ whose date lies in [start,
// end) by their search index (a Flag's period has no end: the caller
// checks the start).
func each(ctx context.Context, s Searcher, typ string, start, end time.Time, f func([]byte) error) error {
	search, err := fhir.ParseSearch(typ, []fhir.Param{
		{Name: "date", Value: "ge" + start.Format(time.RFC3339)},
		{Name: "date", Value: "lt" + end.Format(time.RFC3339)},
	}, false)
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	q := store.Query{Type: typ, Clauses: search.Clauses, Limit: 1000}
	for {
		page, err := s.Search(ctx, q)
		if err != nil {
			return fmt.Errorf("report: %s: %w", typ, err)
		}
		for _, res := range page.Resources {
			if err := f(res.Body); err != nil {
				return fmt.Errorf("report: %s/%s: %w", typ, res.ID, err)
			}
		}
		if page.Next == nil {
			return nil
		}
		q.After = page.Next
	}
}
