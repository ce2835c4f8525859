package report_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/schakelpunt/schakelpunt/audit"
	"github.com/schakelpunt/schakelpunt/audit/detect"
	"github.com/schakelpunt/schakelpunt/audit/report"
	"github.com/schakelpunt/schakelpunt/store/sqlite"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.*")

// fixtureEvent is one line of testdata/month.jsonl.
type fixtureEvent struct {
	At          time.Time `json:"at"`
	UZI         string    `json:"uzi"`
	Card        string    `json:"card"`
	Role        string    `json:"role"`
	URA         string    `json:"ura"`
	BSN         string    `json:"bsn"`
	Category    string    `json:"category"`
	Permit      *bool     `json:"permit"`
	Status      int       `json:"status"`
	Interaction string    `json:"interaction"`
}

func (f fixtureEvent) event() audit.Event {
	ev := audit.Event{Recorded: f.At, Interaction: f.Interaction, Status: f.Status, PatientBSN: f.BSN, Category: f.Category, Permit: f.Permit}
	if f.UZI != "" {
		ev.Agent = &audit.Agent{UZINumber: f.UZI, CardType: f.Card, Role: f.Role, URA: f.URA, Address: "127.0.0.1"}
	} else {
		ev.Agent = &audit.Agent{Address: "192.0.2.7"}
	}
	return ev
}

// monthRules are the rules the synthetic month is checked with.
func monthRules() detect.Rules {
	var r detect.Rules
	r.DenialBurst.Count, r.DenialBurst.Window = 3, 5*time.Minute
	r.ManyOrganisations.Max, r.ManyOrganisations.Window = 2, 24*time.Hour
	r.DistinctPatients.Max, r.DistinctPatients.Window = 3, time.Hour
	return r
}

// mustRecordMonth records testdata/month.jsonl one event at a time
// through a Recorder on a fresh embedded store, with abuse detection on
// its hook, and returns the store with the events and the Flags in it.
func mustRecordMonth(t *testing.T) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "schakelpunt.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	d, err := detect.New(monthRules(), detect.Options{Relations: detect.StoreRelations{Store: st}})
	if err != nil {
		t.Fatal(err)
	}
	runner := detect.Start(d, detect.RunnerOptions{Store: st})
	rec := audit.NewRecorder(st, audit.Options{OnRecorded: runner.Offer})
	f, err := os.Open(filepath.Join("testdata", "month.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var fe fixtureEvent
		if err := json.Unmarshal(sc.Bytes(), &fe); err != nil {
			t.Fatal(err)
		}
		if _, err := rec.Record(context.Background(), fe.event()); err != nil {
			t.Fatal(err)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	rec.Close()
	runner.Close()
	return st
}

var names = map[string]string{"90000001": "Huisartsenpraktijk De Linde", "90000002": "Apotheek De Brug", "90000111": "Ziekenhuis Rijnoever"}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./audit/report -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs; if intended, run go test ./audit/report -update and review the diff.\ngot:\n%s", path, got)
	}
}

func TestMonthlyReport(t *testing.T) {
	st := mustRecordMonth(t)
	ams, err := time.LoadLocation("Europe/Amsterdam")
	if err != nil {
		t.Fatal(err)
	}
	r, err := report.Build(context.Background(), st, report.Options{Year: 2026, Month: time.November, Location: ams, Names: names})
	if err != nil {
		t.Fatal(err)
	}
	var csvOut, htmlOut bytes.Buffer
	if err := r.CSV(&csvOut); err != nil {
		t.Fatal(err)
	}
	if err := r.HTML(&htmlOut); err != nil {
		t.Fatal(err)
	}
	golden(t, "month.golden.csv", csvOut.Bytes())
	golden(t, "month.golden.html", htmlOut.Bytes())

	t.Run("the month follows the Amsterdam calendar", func(t *testing.T) {
		// 81 lines, one on 31 October 23:30 and one on 1 December 00:10
		// (both within November in UTC) fall outside.
		if r.Events != 79 || len(r.Days) != 30 {
			t.Fatalf("%d events over %d days, want 79 over 30", r.Events, len(r.Days))
		}
		if last := r.Days[29]; last.Queries != 1 {
			t.Errorf("30 November: %d queries, want the one at 23:30", last.Queries)
		}
	})
	t.Run("the days add up to the organisations", func(t *testing.T) {
		var q, p, d int
		for _, day := range r.Days {
			q, p, d = q+day.Queries, p+day.Permitted, d+day.Denied
		}
		if q != r.Total.Medication+r.Total.GPSummary || p+d > q {
			t.Errorf("days: %d queries (%d permitted, %d denied); organisations: %d medication + %d summary", q, p, d, r.Total.Medication, r.Total.GPSummary)
		}
	})
	t.Run("alerts by rule", func(t *testing.T) {
		want := map[string]int{detect.RuleDenialBurst: 1, detect.RuleManyOrganisations: 1}
		for _, rc := range r.Rules {
			if rc.Alerts != want[rc.Rule] {
				t.Errorf("%s: %d alerts, want %d", rc.Rule, rc.Alerts, want[rc.Rule])
			}
		}
	})
	t.Run("no BSN in either form", func(t *testing.T) {
		for _, bsn := range []string{"999911120", "999900006", "999900018", "999900031", "999900043", "999900055"} {
			if strings.Contains(csvOut.String(), bsn) || strings.Contains(htmlOut.String(), bsn) {
				t.Errorf("the report shows BSN %s", bsn)
			}
		}
	})
	t.Run("self-contained HTML", func(t *testing.T) {
		h := htmlOut.String()
		for _, bad := range []string{"<script", "src=", "href=", "@import", "url("} {
			if strings.Contains(h, bad) {
				t.Errorf("the page contains %q", bad)
			}
		}
		for _, want := range []string{`<svg role="img" aria-labelledby="chart-title chart-desc"`, `<caption>Patient-data queries per day</caption>`, `<th scope="row">2026-11-12</th>`} {
			if !strings.Contains(h, want) {
				t.Errorf("the page lacks %s", want)
			}
		}
	})
}

func TestBuildRefusesNoMonth(t *testing.T) {
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "s.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, m := range []time.Month{0, 13} {
		if _, err := report.Build(context.Background(), st, report.Options{Year: 2026, Month: m}); err == nil {
			t.Errorf("month %d accepted", m)
		}
	}
}
