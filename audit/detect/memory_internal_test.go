package detect

import (
	"context"
	"fmt"
	"testing"
	"time"
)

type everyoneRegistered struct{}

func (everyoneRegistered) Registered(context.Context, string, string) (bool, error) { return true, nil }
func (everyoneRegistered) EarlierContact(context.Context, string, string, time.Time, time.Time) (bool, error) {
	return false, nil
}

// TestMemoryBounded feeds many more professionals, patients and
// organisations than the detector may remember, and checks that each
// rule's state stays within its bounds and forgets what its window left.
func TestMemoryBounded(t *testing.T) {
	rules := DefaultRules()
	rules.MaxKeys = 200
	d, err := New(rules, Options{Relations: everyoneRegistered{}})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 11, 2, 8, 0, 0, 0, time.UTC)
	const n = 20_000
	for i := range n {
		o := Observation{
			ID: fmt.Sprint(i), At: start.Add(time.Duration(i) * time.Second),
			UZI: fmt.Sprint(1_000_000 + i%5000), URA: fmt.Sprintf("9%07d", i%3000), BSN: fmt.Sprintf("%09d", i),
			Category: "10160-0", Decision: Permitted, Success: true,
		}
		if i%7 == 0 {
			o.Decision, o.Success = Denied, false
		}
		d.Observe(context.Background(), o)
		for name, size := range map[string]int{
			"professionals": len(d.professionals.m), "denials": len(d.denials.m), "patients": len(d.patients.m),
			"hours": len(d.hours.m), "contacts": len(d.contacts.last),
		} {
			if size > rules.MaxKeys {
				t.Fatalf("after %d events %s holds %d keys, more than %d", i+1, name, size, rules.MaxKeys)
			}
		}
		if q := len(d.contacts.order) - d.contacts.head; q > 2*rules.MaxKeys {
			t.Fatalf("after %d events the contact queue holds %d, more than %d", i+1, q, 2*rules.MaxKeys)
		}
	}
	for _, w := range d.professionals.m {
		if len(w.latest) > rules.DistinctPatients.Max+1 {
			t.Fatalf("a professional's window holds %d patients, more than %d", len(w.latest), rules.DistinctPatients.Max+1)
		}
	}
	// A day later, one event: the sweep forgets every window that passed.
	later := Observation{ID: "late", At: start.Add(n*time.Second + 48*time.Hour), UZI: "1", URA: "90000001", BSN: "999911120", Category: "10160-0", Decision: Permitted, Success: true}
	for range sweepEvery {
		d.Observe(context.Background(), later)
	}
	if p, den, pat := len(d.professionals.m), len(d.denials.m), len(d.patients.m); p != 1 || den != 0 || pat != 1 {
		t.Fatalf("after the windows passed: %d professionals, %d denial windows, %d patients remembered; want 1, 0, 1", p, den, pat)
	}
}

// TestOddTimes: events out of order, at the zero time, long ago and far
// ahead neither panic nor leave the state inconsistent.
func TestOddTimes(t *testing.T) {
	rules := DefaultRules()
	rules.UnusualHour.MinHistory = 1
	d, err := New(rules, Options{Relations: everyoneRegistered{}})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 10, 12, 0, 0, 0, time.UTC)
	times := []time.Time{now, {}, now.AddDate(-30, 0, 0), now.Add(-time.Hour), now.AddDate(100, 0, 0), now, time.Unix(0, 0), now.Add(time.Minute)}
	for i, at := range times {
		for _, decision := range []Decision{Permitted, Denied} {
			d.Observe(context.Background(), Observation{ID: fmt.Sprint(i), At: at, UZI: "1", URA: "90000001", BSN: "999911120",
				Category: "10160-0", Decision: decision, Success: decision == Permitted})
			d.Learn(Observation{ID: fmt.Sprint(i), At: at, UZI: "1", URA: "90000001", BSN: "999911120", Category: "10160-0", Success: true})
		}
	}
	for row, day := range d.hours.m["90000001"].rowDay {
		if day >= 0 && int((day%int64(rules.UnusualHour.Days)+int64(rules.UnusualHour.Days))%int64(rules.UnusualHour.Days)) != row {
			t.Errorf("row %d holds day %d", row, day)
		}
	}
}
