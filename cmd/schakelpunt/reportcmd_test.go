package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/schakelpunt/schakelpunt/audit"
	"github.com/schakelpunt/schakelpunt/audit/detect"
	"github.com/schakelpunt/schakelpunt/store/sqlite"
)

// The synthetic month and its golden reports belong to audit/report; the
// command must produce the same bytes from a data directory.
var monthDir = filepath.Join("..", "..", "audit", "report", "testdata")

// mustDataDirWithMonth records the synthetic month into the embedded
// store of a fresh data directory, through a Recorder with abuse
// detection on its hook (the rules of audit/report's golden test).
func mustDataDirWithMonth(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	st, err := sqlite.Open(context.Background(), filepath.Join(dir, "schakelpunt.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var rules detect.Rules
	rules.DenialBurst.Count, rules.DenialBurst.Window = 3, 5*time.Minute
	rules.ManyOrganisations.Max, rules.ManyOrganisations.Window = 2, 24*time.Hour
	rules.DistinctPatients.Max, rules.DistinctPatients.Window = 3, time.Hour
	d, err := detect.New(rules, detect.Options{Relations: detect.StoreRelations{Store: st}})
	if err != nil {
		t.Fatal(err)
	}
	runner := detect.Start(d, detect.RunnerOptions{Store: st})
	rec := audit.NewRecorder(st, audit.Options{OnRecorded: runner.Offer})
	f, err := os.Open(filepath.Join(monthDir, "month.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e struct {
			At                                               time.Time
			UZI, Card, Role, URA, BSN, Category, Interaction string
			Permit                                           *bool
			Status                                           int
		}
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatal(err)
		}
		ev := audit.Event{Recorded: e.At, Interaction: e.Interaction, Status: e.Status, PatientBSN: e.BSN, Category: e.Category, Permit: e.Permit,
			Agent: &audit.Agent{Address: "192.0.2.7"}}
		if e.UZI != "" {
			ev.Agent = &audit.Agent{UZINumber: e.UZI, CardType: e.Card, Role: e.Role, URA: e.URA, Address: "127.0.0.1"}
		}
		if _, err := rec.Record(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	rec.Close()
	runner.Close()
	return dir
}

const reportConfig = `sources:
  - {ura: "90000001", name: Huisartsenpraktijk De Linde, base_url: "https://127.0.0.1:9101/fhir/R4", categories: [gp-summary]}
  - {ura: "90000002", name: Apotheek De Brug, base_url: "https://127.0.0.1:9102/fhir/R4", categories: [medication]}
  - {ura: "90000111", name: Ziekenhuis Rijnoever, base_url: "https://127.0.0.1:9111/fhir/R4", categories: [medication]}
`

func TestAuditReportCommand(t *testing.T) {
	dir := mustDataDirWithMonth(t)
	config := filepath.Join(t.TempDir(), "schakelpunt.yaml")
	if err := os.WriteFile(config, []byte(reportConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	env := func(string) string { return "" }
	run := func(args ...string) (string, string, error) {
		var out, errOut bytes.Buffer
		err := realMain(context.Background(), append([]string{"audit", "report"}, args...), &out, &errOut, env)
		return out.String(), errOut.String(), err
	}
	t.Run("csv to stdout", func(t *testing.T) {
		out, _, err := run("--config", config, "--data-dir", dir, "--month", "2026-11", "--format", "csv")
		if err != nil {
			t.Fatal(err)
		}
		want, _ := os.ReadFile(filepath.Join(monthDir, "month.golden.csv"))
		if out != string(want) {
			t.Errorf("got:\n%s\nwant:\n%s", out, want)
		}
	})
	t.Run("html to a file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "report.html")
		if _, _, err := run("--config", config, "--data-dir="+dir, "--month=2026-11", "--format=html", "--out", path); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := os.ReadFile(filepath.Join(monthDir, "month.golden.html"))
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from audit/report's golden page", path)
		}
	})
	t.Run("another month is empty", func(t *testing.T) {
		out, _, err := run("--data-dir", dir, "--month", "2026-09")
		if err != nil {
			t.Fatal(err)
		}
		if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 2 || lines[1] != "2026-09,all,all organisations,0,0,0,0,0,0,0,0" {
			t.Errorf("September: %q", out)
		}
	})
	empty := t.TempDir()
	cases := []struct {
		name string
		args []string
	}{
		{"no month", []string{"--data-dir", dir}},
		{"a month that is no month", []string{"--data-dir", dir, "--month", "2026-13"}},
		{"a format we do not write", []string{"--data-dir", dir, "--month", "2026-11", "--format", "pdf"}},
		{"an unknown flag", []string{"--data-dir", dir, "--month", "2026-11", "--bsn", "999911120"}},
		{"a flag without its value", []string{"--data-dir", dir, "--month"}},
		{"an unknown time zone", []string{"--data-dir", dir, "--month", "2026-11", "--time-zone", "Mars/Olympus"}},
		{"no store", []string{"--data-dir", empty, "--month", "2026-11"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, _, err := run(tc.args...)
			var ee *exitError
			if !errors.As(err, &ee) || ee.code != 2 || out != "" {
				t.Fatalf("err %v, stdout %q: want exit 2 and nothing written", err, out)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(empty, "schakelpunt.db")); err == nil {
		t.Error("a report on an empty data directory created a store")
	}
}
