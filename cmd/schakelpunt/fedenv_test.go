package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"testing"

	"github.com/schakelpunt/schakelpunt/federation/source"
)

// fedEnv is the switching point with the three demo sources (a GP system
// and two pharmacies) on loopback over mutual TLS, everything it logs
// captured at debug level.
type fedEnv struct {
	t               testing.TB
	dir, base       string
	gp, brug, kruis string // the sources' base URLs
	logs            *lockedBuffer
	stop            func() // shuts the switching point down (once)
}

func mustFedEnv(t testing.TB) *fedEnv {
	t.Helper()
	return mustFedEnvWith(t, false)
}

// mustFedEnvWith is mustFedEnv, or with bench set the benchmark's set-up:
// the GP system's certificate serves a copy of De Brug's medication
// instead of the GP summaries, registered as a third medication source,
// and the logs are kept at info level (as served by default).
func mustFedEnvWith(t testing.TB, bench bool) *fedEnv {
	t.Helper()
	dir := t.TempDir()
	first := mustRunMain(t, dir) // creates the development PKI and the demo certificates
	if err := first.shutdown(); err != nil {
		t.Fatal(err)
	}
	e := &fedEnv{t: t, dir: dir, logs: &lockedBuffer{}}
	gpData, gpCategory := source.DemoGP, "gp-summary"
	if bench {
		gpData, gpCategory = source.DemoPharmacy1, "medication"
	}
	e.gp = startDemoSource(t, dir, gpData, "bron-huisarts")
	e.brug = startDemoSource(t, dir, source.DemoPharmacy1, "bron-apotheek-1")
	e.kruis = startDemoSource(t, dir, source.DemoPharmacy2, "bron-apotheek-2")
	cfg, err := loadConfig([]string{"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--data-dir", dir, "--log-level", "debug"}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	cfg.Supervisors = []SupervisorConfig{{URA: uraSupervisor}}
	cfg.Sources = []SourceConfig{
		{URA: uraGP, Name: "Huisartsenpraktijk De Linde", BaseURL: e.gp, Categories: []string{gpCategory}},
		{URA: uraPharmacy1, Name: "Apotheek De Brug", BaseURL: e.brug, Categories: []string{"medication"}},
		{URA: uraPharmacy2, Name: "Apotheek Het Kruis", BaseURL: e.kruis, Categories: []string{"medication"}},
	}
	level := slog.LevelDebug
	if bench {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: level}))
	a, err := start(context.Background(), cfg, log, e.logs)
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	e.stop = func() {
		once.Do(func() {
			if err := a.shutdown(); err != nil {
				t.Error(err)
			}
		})
	}
	t.Cleanup(e.stop)
	e.base = "https://" + a.PublicAddr() + "/fhir/R4"
	return e
}

// do sends a request as a demo role; path is under the FHIR base unless
// it is absolute.
func (e *fedEnv) do(role, method, path, body string) (int, []byte) {
	e.t.Helper()
	u := path
	if len(u) == 0 || u[0] == '/' {
		u = e.base + path
	}
	return send(e.t, devClient(e.t, e.dir, role), method, u, body)
}

// register puts an index entry for bsn at the source of role.
func (e *fedEnv) register(role, ura, bsn, link string) {
	e.t.Helper()
	entry := `{"resourceType":"Patient","identifier":[{"system":"http://fhir.nl/fhir/NamingSystem/bsn","value":"` + bsn + `"}],` +
		`"managingOrganization":{"identifier":{"system":"http://fhir.nl/fhir/NamingSystem/ura","value":"` + ura + `"}},` +
		`"link":[{"other":{"reference":"` + link + `"},"type":"seealso"}]}`
	if status, body := e.do(role, "PUT", "/Patient?identifier=http://fhir.nl/fhir/NamingSystem/bsn|"+bsn, entry); status != 201 {
		e.t.Fatalf("register %s at %s: %d %s", bsn, ura, status, body)
	}
}

// consentBody is an active opt-in of bsn, recorded at ura, for the data
// category loinc from any source.
func consentBody(ura, bsn, loinc, status string) string {
	return `{"resourceType":"Consent","status":"` + status + `",` +
		`"scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"patient-privacy"}]},` +
		`"category":[{"coding":[{"system":"http://loinc.org","code":"59284-0"}]}],` +
		`"patient":{"identifier":{"system":"http://fhir.nl/fhir/NamingSystem/bsn","value":"` + bsn + `"}},` +
		`"dateTime":"2026-01-01T10:00:00+01:00",` +
		`"organization":[{"identifier":{"system":"http://fhir.nl/fhir/NamingSystem/ura","value":"` + ura + `"}}],` +
		`"provision":{"type":"permit","period":{"start":"2026-01-01T00:00:00+01:00"},` +
		`"code":[{"coding":[{"system":"http://loinc.org","code":"` + loinc + `"}]}]}}`
}

// consent records consent and returns the Consent's id.
func (e *fedEnv) consent(role, ura, bsn, loinc string) string {
	e.t.Helper()
	status, body := e.do(role, "POST", "/Consent", consentBody(ura, bsn, loinc, "active"))
	if status != 201 {
		e.t.Fatalf("consent %s at %s: %d %s", bsn, ura, status, body)
	}
	var c struct{ ID string }
	if err := json.Unmarshal(body, &c); err != nil || c.ID == "" {
		e.t.Fatalf("consent answer without id: %s", body)
	}
	return c.ID
}

// medicationQuery is the federated MedicationDispense search for bsn.
func medicationQuery(bsn string) string {
	return "/MedicationDispense?patient.identifier=http://fhir.nl/fhir/NamingSystem/bsn|" + bsn
}
