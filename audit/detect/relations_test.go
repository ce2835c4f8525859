package detect_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/schakelpunt/schakelpunt/audit"
	"github.com/schakelpunt/schakelpunt/audit/detect"
	"github.com/schakelpunt/schakelpunt/fhir"
)

// The organisation whose contacts the store-backed tests examine, and a
// professional of it.
const (
	hospital = "90000003"
	other    = "90000001"
)

func professionalOf(ura string) *audit.Agent {
	return &audit.Agent{UZINumber: "11111113", CardType: "Z", Role: "01.010", URA: ura, Address: "127.0.0.1"}
}

// Events as the edge records them for the hospital's professional about
// a patient, at base+at.
func indexSearch(at time.Duration, bsn string) audit.Event {
	return audit.Event{Recorded: base.Add(at), Interaction: "search-type", Status: 200, PatientBSN: bsn, Permit: boolp(true),
		Query: "GET /fhir/R4/Patient?identifier=" + fhir.SystemBSN + "|" + bsn, Agent: professionalOf(hospital)}
}

func indexRead(at time.Duration, bsn string) audit.Event {
	return audit.Event{Recorded: base.Add(at), Interaction: "read", Status: 200, PatientBSN: bsn, Permit: boolp(true),
		Query: "GET /fhir/R4/Patient/p1", Resources: []string{"Patient/p1"}, Agent: professionalOf(hospital)}
}

func pix(at time.Duration, bsn string) audit.Event {
	return audit.Event{Recorded: base.Add(at), Interaction: "$ihe-pix", Status: 200, PatientBSN: bsn, Permit: boolp(true),
		Query: "GET /fhir/R4/Patient/$ihe-pix?sourceIdentifier=" + fhir.SystemBSN + "|" + bsn, Agent: professionalOf(hospital)}
}

func consentSearch(at time.Duration, bsn string) audit.Event {
	return audit.Event{Recorded: base.Add(at), Interaction: "search-type", Status: 200, PatientBSN: bsn, Permit: boolp(true),
		Query: "GET /fhir/R4/Consent?patient.identifier=" + fhir.SystemBSN + "|" + bsn, Agent: professionalOf(hospital)}
}

func auditSearch(at time.Duration, bsn string) audit.Event {
	return audit.Event{Recorded: base.Add(at), Interaction: "search-type", Status: 200, PatientBSN: bsn, Permit: boolp(true),
		Query: "GET /fhir/R4/AuditEvent?patient.identifier=" + fhir.SystemBSN + "|" + bsn, Agent: professionalOf(hospital)}
}

func medicationQuery(at time.Duration, ura, bsn string, permitted bool) audit.Event {
	ev := audit.Event{Recorded: base.Add(at), Interaction: "search-type", Status: 200, PatientBSN: bsn, Permit: boolp(permitted),
		Category: fhir.CategoryMedication, Query: "GET /fhir/R4/MedicationDispense?patient.identifier=" + fhir.SystemBSN + "|" + bsn, Agent: professionalOf(ura)}
	if !permitted {
		ev.Status, ev.Reasons = 403, []string{"no consent"}
	}
	return ev
}

func summary(at time.Duration, bsn string) audit.Event {
	return audit.Event{Recorded: base.Add(at), Interaction: "$summary", Status: 200, PatientBSN: bsn, Permit: boolp(true),
		Category: fhir.CategoryGPSummary, Query: "GET /fhir/R4/Patient/$summary?identifier=" + fhir.SystemBSN + "|" + bsn, Agent: professionalOf(hospital)}
}

// recordAll stores evs through a Recorder, concurrently so that they
// are committed in batches, and returns them with their ids.
func recordAll(t *testing.T, rec *audit.Recorder, evs []audit.Event) []audit.Event {
	t.Helper()
	out := make([]audit.Event, len(evs))
	var wg sync.WaitGroup
	errs := make(chan error, len(evs))
	for i, ev := range evs {
		wg.Go(func() {
			id, err := rec.Record(context.Background(), ev)
			if err != nil {
				errs <- err
				return
			}
			ev.ID = id
			out[i] = ev
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return out
}

// TestStoreContacts: through the real log, only an earlier permitted
// query of the organisation for the patient's data is a contact. Index,
// consent and log lookups are not: a professional who first looks the
// patient up and then queries their data is flagged.
func TestStoreContacts(t *testing.T) {
	rules := only(func(r *detect.Rules) { r.NoRelationship.Lookback = 30 * 24 * time.Hour })
	day := 24 * time.Hour
	flood := make([]audit.Event, 1001)
	for i := range flood {
		flood[i] = indexSearch(-time.Duration(i+1)*time.Minute, bsns[0])
	}
	behind := []audit.Event{medicationQuery(-10*day, hospital, bsns[0], true)}
	for i := range 250 {
		behind = append(behind, indexSearch(-time.Duration(i+1)*time.Minute, bsns[0]))
	}
	cases := []struct {
		name    string
		earlier []audit.Event
		contact bool // EarlierContact, and so no Flag
	}{
		{"nothing earlier", nil, false},
		{"an index search by BSN", []audit.Event{indexSearch(-time.Hour, bsns[0])}, false},
		{"an index read", []audit.Event{indexRead(-time.Hour, bsns[0])}, false},
		{"$ihe-pix", []audit.Event{pix(-time.Hour, bsns[0])}, false},
		{"a consent search", []audit.Event{consentSearch(-time.Hour, bsns[0])}, false},
		{"a log search", []audit.Event{auditSearch(-time.Hour, bsns[0])}, false},
		{"every lookup at once", []audit.Event{indexSearch(-4*time.Hour, bsns[0]), indexRead(-3*time.Hour, bsns[0]),
			pix(-2*time.Hour, bsns[0]), consentSearch(-time.Hour, bsns[0])}, false},
		{"a permitted medication query", []audit.Event{medicationQuery(-10*day, hospital, bsns[0], true)}, true},
		{"a permitted summary", []audit.Event{summary(-10*day, bsns[0])}, true},
		{"a permitted query among lookups", []audit.Event{indexSearch(-20*day, bsns[0]), medicationQuery(-10*day, hospital, bsns[0], true),
			pix(-2*time.Hour, bsns[0]), consentSearch(-time.Hour, bsns[0])}, true},
		{"a denied medication query", []audit.Event{medicationQuery(-time.Hour, hospital, bsns[0], false)}, false},
		{"another organisation's permitted query", []audit.Event{medicationQuery(-time.Hour, other, bsns[0], true)}, false},
		{"a permitted query for another patient", []audit.Event{medicationQuery(-time.Hour, hospital, bsns[1], true)}, false},
		{"a permitted query before the look-back", []audit.Event{medicationQuery(-40*day, hospital, bsns[0], true)}, false},
		{"a permitted query behind pages of lookups", behind, true},
		{"a thousand and one index searches", flood, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := mustStore(t)
			rec := audit.NewRecorder(st, audit.Options{})
			recordAll(t, rec, tc.earlier)
			trigger := recordAll(t, rec, []audit.Event{medicationQuery(0, hospital, bsns[0], true)})[0]
			rec.Close()

			rel := detect.StoreRelations{Store: st}
			got, err := rel.EarlierContact(context.Background(), hospital, bsns[0], trigger.Recorded.Add(-rules.NoRelationship.Lookback), trigger.Recorded)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.contact {
				t.Errorf("EarlierContact = %v, want %v", got, tc.contact)
			}

			// Reading a thousand events may take longer than the default
			// lookup limit under -race on a busy machine; the limit is
			// TestLookupTimeout's subject, not this test's.
			d, err := detect.New(rules, detect.Options{Relations: rel, LookupTimeout: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			o := detect.FromEvent(&trigger)
			var want []wantHit
			if !tc.contact {
				want = []wantHit{{detect.RuleNoRelationship, "Practitioner|11111113", trigger.ID, 1}}
			}
			checkHits(t, d.Observe(context.Background(), o), want)
		})
	}
}
