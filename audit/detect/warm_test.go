package detect_test

import (
	"context"
	"testing"
	"time"

	"github.com/schakelpunt/schakelpunt/audit"
	"github.com/schakelpunt/schakelpunt/audit/detect"
	"github.com/schakelpunt/schakelpunt/fhir"
)

// TestWarmFromTheLog: a detector started after a week of office hours
// was recorded learns them from the store, and then flags the night; one
// that did not warm up has no history to judge by.
func TestWarmFromTheLog(t *testing.T) {
	st := mustStore(t)
	rec := audit.NewRecorder(st, audit.Options{})
	for _, o := range officeHistory("90000001", 6, 20) {
		permit := true
		ev := audit.Event{Recorded: o.At, Interaction: "search-type", Status: 200, PatientBSN: o.BSN, Category: fhir.CategoryMedication, Permit: &permit,
			Agent: &audit.Agent{UZINumber: o.UZI, CardType: "Z", Role: "01.015", URA: o.URA}}
		if _, err := rec.Record(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	rec.Close()
	rules := only(func(r *detect.Rules) {
		r.UnusualHour.Days, r.UnusualHour.MinShare, r.UnusualHour.MinHistory, r.UnusualHour.Location = 7, 0.02, 50, ams
		r.NoRelationship.Lookback = 30 * 24 * time.Hour
	})
	night := q(-6*time.Hour, "111", "90000001", bsns[0], permit)
	for _, warm := range []bool{true, false} {
		rel := &relations{}
		d, err := detect.New(rules, detect.Options{Relations: rel})
		if err != nil {
			t.Fatal(err)
		}
		if warm {
			n, err := detect.Warm(context.Background(), d, st, rules.WarmSince(night.At), night.At)
			if err != nil || n != 120 {
				t.Fatalf("Warm = %d, %v; want the 120 events of the week", n, err)
			}
		}
		hits := d.Observe(context.Background(), night)
		var unusual, unrelated int
		for _, h := range hits {
			switch h.Rule {
			case detect.RuleUnusualHour:
				unusual++
			case detect.RuleNoRelationship:
				unrelated++
			}
		}
		if warm && (unusual != 1 || unrelated != 0 || rel.asked != 0) {
			t.Errorf("warmed up: %d unusual-hour, %d no-relationship hits, relations asked %d times; want 1, 0, 0", unusual, unrelated, rel.asked)
		}
		if !warm && (unusual != 0 || unrelated != 1) {
			t.Errorf("cold: %d unusual-hour, %d no-relationship hits; want 0 and 1", unusual, unrelated)
		}
	}
}
