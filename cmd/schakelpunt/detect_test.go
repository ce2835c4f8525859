package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/schakelpunt/schakelpunt/federation/source"
)

type flagBundle struct {
	Total int `json:"total"`
	Entry []struct {
		Resource struct {
			ID        string `json:"id"`
			Status    string `json:"status"`
			Extension []struct {
				URL            string `json:"url"`
				ValueReference struct {
					Reference string `json:"reference"`
				} `json:"valueReference"`
			} `json:"extension"`
			Subject struct {
				Type       string `json:"type"`
				Identifier struct {
					Value string `json:"value"`
				} `json:"identifier"`
			} `json:"subject"`
		} `json:"resource"`
	} `json:"entry"`
}

// waitFlags searches Flags as client until the search finds want of them
// (detection runs behind the response) or a deadline passes.
func waitFlags(t *testing.T, c *http.Client, url string, want int) flagBundle {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		status, body := get(t, c, url)
		if status != 200 {
			t.Fatalf("%s: %d %s", url, status, body)
		}
		var b flagBundle
		if err := json.Unmarshal(body, &b); err != nil {
			t.Fatal(err)
		}
		if len(b.Entry) >= want || time.Now().After(deadline) {
			if len(b.Entry) != want {
				t.Fatalf("%s: %d Flags, want %d: %s", url, len(b.Entry), want, body)
			}
			return b
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestAbuseDetectionEndToEnd: requests over real mTLS are audited by the
// Recorder into the embedded store, the hook feeds the detector, and its
// Flags are stored, readable and searchable by the supervisor only, point
// at the AuditEvents that triggered them, and are counted by rule.
func TestAbuseDetectionEndToEnd(t *testing.T) {
	dir := t.TempDir()
	first := mustRunMain(t, dir) // the development PKI and demo certificates
	if err := first.shutdown(); err != nil {
		t.Fatal(err)
	}
	brug := startDemoSource(t, dir, source.DemoPharmacy1, "bron-apotheek-1")
	cfg, err := loadConfig([]string{"--config", filepath.Join("testdata", "detection.yaml"),
		"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--patient-listen", "127.0.0.1:0", "--data-dir", dir, "--log-level", "warn"}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	cfg.Sources = []SourceConfig{{URA: uraPharmacy1, Name: "Apotheek De Brug", BaseURL: brug, Categories: []string{"medication"}}}
	cfg.Supervisors = []SupervisorConfig{{URA: uraSupervisor}}
	a, err := start(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer a.shutdown()
	base := "https://" + a.PublicAddr() + "/fhir/R4"
	supervisor, gp := devClient(t, dir, "toezichthouder"), devClient(t, dir, "huisarts")

	const bsn = "999911120"
	entry := `{"resourceType":"Patient","identifier":[{"system":"http://fhir.nl/fhir/NamingSystem/bsn","value":"` + bsn + `"}],` +
		`"managingOrganization":{"identifier":{"system":"http://fhir.nl/fhir/NamingSystem/ura","value":"` + uraPharmacy1 + `"}},` +
		`"link":[{"other":{"reference":"` + brug + `/Patient/brug-20417"},"type":"seealso"}]}`
	if status, body := send(t, devClient(t, dir, "bron-apotheek-1"), "PUT", base+"/Patient?identifier=http://fhir.nl/fhir/NamingSystem/bsn|"+bsn, entry); status != 201 {
		t.Fatalf("register: %d %s", status, body)
	}
	consent := `{"resourceType":"Consent","status":"active",` +
		`"scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"patient-privacy"}]},` +
		`"category":[{"coding":[{"system":"http://loinc.org","code":"59284-0"}]}],` +
		`"patient":{"identifier":{"system":"http://fhir.nl/fhir/NamingSystem/bsn","value":"` + bsn + `"}},` +
		`"dateTime":"2026-01-01T10:00:00+01:00",` +
		`"organization":[{"identifier":{"system":"http://fhir.nl/fhir/NamingSystem/ura","value":"` + uraPharmacy1 + `"}}],` +
		`"provision":{"type":"permit","period":{"start":"2026-01-01T00:00:00+01:00"},"code":[{"coding":[{"system":"http://loinc.org","code":"10160-0"}]}]}}`
	if status, body := send(t, devClient(t, dir, "bron-apotheek-1"), "POST", base+"/Consent", consent); status != 201 {
		t.Fatalf("consent: %d %s", status, body)
	}

	query := base + "/MedicationDispense?patient.identifier=http://fhir.nl/fhir/NamingSystem/bsn|" + bsn
	// The pharmacist's organisation registered the patient: no alert. The
	// cardiologist's hospital never had contact with them: an alert.
	for _, role := range []string{"apotheker", "apotheker", "cardioloog"} {
		if status, body := get(t, devClient(t, dir, role), query); status != 200 {
			t.Fatalf("%s: %d %s", role, status, body)
		}
	}
	// A physiotherapist may not see medication: three denials in a row.
	for range 3 {
		if status, _ := get(t, devClient(t, dir, "fysiotherapeut"), query); status != 403 {
			t.Fatalf("physiotherapist: %d", status)
		}
	}

	flags := base + "/Flag?code=http://schakelpunt.nl/fhir/CodeSystem/abuse-rule|"
	t.Run("no relationship", func(t *testing.T) {
		b := waitFlags(t, supervisor, flags+"no-relationship", 1)
		f := b.Entry[0].Resource
		if f.Status != "active" || f.Subject.Type != "Practitioner" || f.Subject.Identifier.Value != "11111113" {
			t.Fatalf("flag: %+v", f)
		}
		ev := evidenceOf(t, f.Extension)
		if len(ev) != 1 {
			t.Fatalf("evidence %v, want the one query", ev)
		}
		// The evidence is the cardiologist's permitted query.
		status, body := get(t, supervisor, base+"/"+ev[0])
		if status != 200 || !bytes.Contains(body, []byte(`"11111113"`)) || !bytes.Contains(body, []byte(`"permit"`)) {
			t.Fatalf("%s: %d %s", ev[0], status, body)
		}
	})
	t.Run("denial burst", func(t *testing.T) {
		b := waitFlags(t, supervisor, base+"/Flag?subject:identifier=http://fhir.nl/fhir/NamingSystem/uzi-nr-pers|11111114", 1)
		ev := evidenceOf(t, b.Entry[0].Resource.Extension)
		if len(ev) != 3 {
			t.Fatalf("evidence %v, want the three denials", ev)
		}
		for _, id := range ev {
			status, body := get(t, supervisor, base+"/"+id)
			if status != 200 || !bytes.Contains(body, []byte(`"deny"`)) || !bytes.Contains(body, []byte(`"11111114"`)) {
				t.Fatalf("%s: %d %s", id, status, body)
			}
		}
	})
	t.Run("nothing about the pharmacist", func(t *testing.T) {
		waitFlags(t, supervisor, base+"/Flag?subject:identifier=http://fhir.nl/fhir/NamingSystem/uzi-nr-pers|11111112", 0)
		waitFlags(t, supervisor, base+"/Flag", 2)
	})
	t.Run("a GP may not read alerts", func(t *testing.T) {
		b := waitFlags(t, supervisor, base+"/Flag", 2)
		id := b.Entry[0].Resource.ID
		for _, path := range []string{"/Flag", "/Flag/" + id, "/Flag/does-not-exist", "/Flag?code=denial-burst"} {
			status, body := get(t, gp, base+path)
			if status != 403 || !bytes.Contains(body, []byte(`"code":"forbidden"`)) || bytes.Contains(body, []byte(`"resourceType":"Flag"`)) {
				t.Errorf("GP %s: %d %s", path, status, body)
			}
		}
		// Each refusal is in the log, as a denied read of alerts.
		status, body := get(t, supervisor, base+"/AuditEvent?agent:identifier=http://fhir.nl/fhir/NamingSystem/uzi-nr-pers|11111111&outcome=4")
		var audits struct {
			Total int `json:"total"`
		}
		_ = json.Unmarshal(body, &audits)
		if status != 200 || audits.Total < 4 || !bytes.Contains(body, []byte("read abuse alerts")) {
			t.Errorf("GP's refusals in the log: %d total %d %s", status, audits.Total, body)
		}
		status, _ = get(t, supervisor, base+"/Flag/does-not-exist")
		if status != 404 {
			t.Errorf("supervisor, unknown Flag: %d", status)
		}
	})
	t.Run("counted by rule", func(t *testing.T) {
		// The GP's four refused reads of alerts are a burst of denials too.
		waitFlags(t, supervisor, base+"/Flag?subject:identifier=http://fhir.nl/fhir/NamingSystem/uzi-nr-pers|11111111", 1)
		_, metrics := get(t, http.DefaultClient, "http://"+a.AdminAddr()+"/metrics")
		for _, want := range []string{
			`schakelpunt_abuse_alerts_total{rule="denial-burst"} 2`, // the physiotherapist, and the GP asking for alerts four times
			`schakelpunt_abuse_alerts_total{rule="no-relationship"} 1`,
			`schakelpunt_abuse_alerts_total{rule="distinct-patients"} 0`,
			`schakelpunt_abuse_detection_dropped_events_total 0`,
		} {
			if !strings.Contains(string(metrics), want) {
				t.Errorf("metrics lack %s", want)
			}
		}
	})
	t.Run("a supervisor closes an alert", func(t *testing.T) {
		id := waitFlags(t, supervisor, flags+"no-relationship", 1).Entry[0].Resource.ID
		url := base + "/Flag/" + id
		status, body := get(t, supervisor, url)
		if status != 200 {
			t.Fatalf("%s: %d %s", url, status, body)
		}
		var flag map[string]any
		if err := json.Unmarshal(body, &flag); err != nil {
			t.Fatal(err)
		}
		delete(flag, "meta")
		with := func(change func(f map[string]any)) string {
			b, _ := json.Marshal(flag)
			var f map[string]any
			_ = json.Unmarshal(b, &f)
			change(f)
			out, _ := json.Marshal(f)
			return string(out)
		}
		closed := with(func(f map[string]any) {
			f["status"] = "inactive"
			f["period"].(map[string]any)["end"] = time.Now().UTC().Add(time.Minute).Format(time.RFC3339) // after the alert's start
		})
		for _, tc := range []struct {
			name, role, id, body string
			status               int
			code                 string
		}{
			{"a GP may not", "huisarts", id, closed, 403, "forbidden"},
			{"the evidence stays", "toezichthouder", id, with(func(f map[string]any) {
				f["status"] = "inactive"
				f["extension"] = f["extension"].([]any)[:1] // drops the AuditEvent it points at
			}), 422, "business-rule"},
			{"the subject stays", "toezichthouder", id, with(func(f map[string]any) {
				f["subject"].(map[string]any)["identifier"].(map[string]any)["value"] = "11111112"
			}), 422, "business-rule"},
			{"no alert is made by an update", "toezichthouder", "made-up", with(func(f map[string]any) { f["id"] = "made-up" }), 404, "not-found"},
			{"status and end change", "toezichthouder", id, closed, 200, ""},
		} {
			t.Run(tc.name, func(t *testing.T) {
				status, body := send(t, devClient(t, dir, tc.role), "PUT", base+"/Flag/"+tc.id, tc.body)
				if status != tc.status || (tc.code != "" && !bytes.Contains(body, []byte(`"code":"`+tc.code+`"`))) {
					t.Fatalf("%d %s, want %d %s", status, body, tc.status, tc.code)
				}
			})
		}
		// One new version, found as inactive; the refused updates changed
		// nothing and made nothing.
		status, body = get(t, supervisor, url+"/_history")
		if status != 200 || strings.Count(string(body), `"resourceType":"Flag"`) != 2 {
			t.Errorf("history: %d %s, want two versions", status, body)
		}
		if b := waitFlags(t, supervisor, base+"/Flag?status=inactive", 1); b.Entry[0].Resource.ID != id || len(evidenceOf(t, b.Entry[0].Resource.Extension)) != 1 {
			t.Errorf("inactive Flags: %+v", b)
		}
		if status, _ := get(t, supervisor, base+"/Flag/made-up"); status != 404 {
			t.Errorf("Flag/made-up: %d, want 404", status)
		}
		// The review is on record: who closed which version.
		status, body = get(t, supervisor, base+"/AuditEvent?subtype=update&outcome=0&agent:identifier=http://fhir.nl/fhir/NamingSystem/uzi-nr-pers|33333331")
		if status != 200 || !bytes.Contains(body, []byte(`"Flag/`+id+`/_history/2"`)) {
			t.Errorf("the review's AuditEvent: %d %s", status, body)
		}
	})
}

func evidenceOf(t *testing.T, exts []struct {
	URL            string `json:"url"`
	ValueReference struct {
		Reference string `json:"reference"`
	} `json:"valueReference"`
}) []string {
	t.Helper()
	var out []string
	for _, e := range exts {
		if e.URL == "http://schakelpunt.nl/fhir/StructureDefinition/flag-evidence" {
			if !strings.HasPrefix(e.ValueReference.Reference, "AuditEvent/") {
				t.Fatalf("evidence %q is not an AuditEvent reference", e.ValueReference.Reference)
			}
			out = append(out, e.ValueReference.Reference)
		}
	}
	return out
}

func TestDetectionConfig(t *testing.T) {
	cases := []struct {
		name, yaml string
		ok         bool
	}{
		{"the test file", "", true},
		{"unknown key in a rule", "detection:\n  denial_burst: {count: 3, window: 1m, burst: 2}\n", false},
		{"unknown rule", "detection:\n  strange_hours: {days: 3}\n", false},
		{"threshold without a window", "detection:\n  denial_burst: {count: 3, window: 0s}\n", false},
		{"a share above one", "detection:\n  unusual_hours: {days: 7, min_share: 2, min_history: 10}\n", false},
		{"unknown time zone", "detection:\n  time_zone: Mars/Olympus\n", false},
		{"off", "detection:\n  enabled: false\n", true},
		{"one rule off", "detection:\n  many_organisations: {max: 0}\n", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join("testdata", "detection.yaml")
			if tc.yaml != "" {
				path = filepath.Join(t.TempDir(), "config.yaml")
				if err := os.WriteFile(path, []byte(tc.yaml), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			cfg, err := loadConfig([]string{"--config", path}, func(string) string { return "" })
			if (err == nil) != tc.ok {
				t.Fatalf("loadConfig = %v, want ok %v", err, tc.ok)
			}
			if err != nil {
				return
			}
			if tc.yaml == "" {
				r, err := cfg.Detection.rules()
				if err != nil || r.DenialBurst.Count != 3 || r.DenialBurst.Window != time.Minute || r.NoRelationship.Lookback != 24*time.Hour ||
					r.DistinctPatients.Max != 0 || r.UnusualHour.Days != 0 || r.UnusualHour.Location.String() != "Europe/Amsterdam" {
					t.Fatalf("rules %+v, %v", r, err)
				}
			}
		})
	}
	t.Run("defaults without a file", func(t *testing.T) {
		cfg, err := loadConfig(nil, func(string) string { return "" })
		if err != nil {
			t.Fatal(err)
		}
		if !cfg.Detection.Enabled || cfg.Detection.DistinctPatients.Max != 50 || cfg.Detection.DenialBurst.Count != 10 {
			t.Fatalf("defaults: %+v", cfg.Detection)
		}
	})
}
