package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/schakelpunt/schakelpunt/audit"
	"github.com/schakelpunt/schakelpunt/conformance"
	"github.com/schakelpunt/schakelpunt/federation/source"
	"github.com/schakelpunt/schakelpunt/fhir"
	"github.com/schakelpunt/schakelpunt/profiles"
	"github.com/schakelpunt/schakelpunt/routing"
	"github.com/schakelpunt/schakelpunt/store"
	"github.com/schakelpunt/schakelpunt/store/mongo"
	"github.com/schakelpunt/schakelpunt/store/mongo/mongotest"
)

// A consent change takes effect for the very next query, on every
// instance (issue 6). A federated query reads the patient's consents from
// the store, or, over the embedded store, from the engine's cache only
// while no consent was written since (the store's generation of Consent
// is unchanged: federation/readcache.go). These tests run two instances
// over one store and change the consent through one while querying
// through the other, with no pause between.

// TestConsentChangeOnEveryInstanceMongo runs the national deployment
// model: two complete switching points (start) that share one MongoDB
// database (FerretDB here), each with its own listener, engine and audit
// recorder.
func TestConsentChangeOnEveryInstanceMongo(t *testing.T) {
	srv, err := mongotest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)

	dir := t.TempDir()
	first := mustRunMain(t, dir) // the development PKI and the demo certificates
	if err := first.shutdown(); err != nil {
		t.Fatal(err)
	}
	brug := startDemoSource(t, dir, source.DemoPharmacy1, "bron-apotheek-1")
	kruis := startDemoSource(t, dir, source.DemoPharmacy2, "bron-apotheek-2")
	db := mongotest.DatabaseName(t.Name())
	startMongo := func() *app {
		t.Helper()
		cfg, err := loadConfig([]string{"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--patient-listen", "127.0.0.1:0", "--data-dir", dir, "--log-level", "warn",
			"--store", "mongodb", "--mongodb-uri", srv.URI, "--mongodb-database", db}, func(string) string { return "" })
		if err != nil {
			t.Fatal(err)
		}
		cfg.Sources = demoPharmacies(brug, kruis)
		a, err := start(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := a.shutdown(); err != nil {
				t.Error(err)
			}
		})
		if _, ok := a.store.(*mongo.Store); !ok {
			t.Fatalf("the instance runs on %T, not on MongoDB", a.store)
		}
		return a
	}
	a, b := startMongo(), startMongo()
	consentScenario(t, dir, brug, "https://"+a.PublicAddr()+routing.BasePath, "https://"+b.PublicAddr()+routing.BasePath)
}

// TestConsentChangeOnEveryInstanceEmbedded runs two instances over one
// embedded store: a complete switching point (start) and a second
// routing handler with its own federation engine and audit recorder
// over the first one's store, behind the same mutual TLS.
func TestConsentChangeOnEveryInstanceEmbedded(t *testing.T) {
	dir := t.TempDir()
	first := mustRunMain(t, dir)
	if err := first.shutdown(); err != nil {
		t.Fatal(err)
	}
	brug := startDemoSource(t, dir, source.DemoPharmacy1, "bron-apotheek-1")
	kruis := startDemoSource(t, dir, source.DemoPharmacy2, "bron-apotheek-2")
	cfg, err := loadConfig([]string{"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--data-dir", dir, "--log-level", "warn"}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	cfg.Sources = demoPharmacies(brug, kruis)
	a, err := start(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := a.shutdown(); err != nil {
			t.Error(err)
		}
	})
	b := startSecondInstance(t, a) // its cleanup runs first: a's store outlives it
	consentScenario(t, dir, brug, "https://"+a.PublicAddr()+routing.BasePath, b)
}

func demoPharmacies(brug, kruis string) []SourceConfig {
	return []SourceConfig{
		{URA: uraPharmacy1, Name: "Apotheek De Brug", BaseURL: brug, Categories: []string{"medication"}},
		{URA: uraPharmacy2, Name: "Apotheek Het Kruis", BaseURL: kruis, Categories: []string{"medication"}},
	}
}

// startSecondInstance serves, beside a, a second instance over a's store:
// the handler wired as start wires it, with its own metrics, validator,
// federation engine and audit recorder, behind a's TLS configuration. It
// returns its FHIR base URL.
func startSecondInstance(t *testing.T, a *app) string {
	t.Helper()
	metrics := routing.NewMetrics(prometheus.NewRegistry())
	codec, err := fhir.NewCodec()
	if err != nil {
		t.Fatal(err)
	}
	validator, err := profiles.New(codec)
	if err != nil {
		t.Fatal(err)
	}
	policy, err := newPolicy(a.cfg)
	if err != nil {
		t.Fatal(err)
	}
	engine, err := a.federationEngine(metrics, policy, validator, a.engine.Registry())
	if err != nil {
		t.Fatal(err)
	}
	auditLog := a.store.(store.AuditLog)
	recorder := audit.NewRecorder(auditLog, audit.Options{Logger: a.log, Observer: "Schakelpunt (second instance)"})
	handler, err := routing.New(routing.Config{
		Store: metrics.InstrumentStore(a.store), Codec: codec, Logger: a.log, Metrics: metrics,
		Policy: policy, Validator: validator, Federator: engine, Audit: recorder, AuditLog: auditLog,
		ExportDir: filepath.Join(t.TempDir(), "exports"), MaxBody: a.cfg.MaxBodyBytes, PublicBase: a.cfg.PublicBaseURL,
		Software: conformance.Software{Name: "Schakelpunt", Version: version},
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: handler, TLSConfig: a.public.TLSConfig, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() { _ = srv.Serve(tls.NewListener(ln, a.public.TLSConfig)); close(done) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Error(err)
		}
		<-done
		engine.Close()
		if err := recorder.Close(); err != nil {
			t.Error(err)
		}
	})
	return "https://" + ln.Addr().String() + routing.BasePath
}

// consentScenario: registered at De Brug through instance a; then, each
// step followed at once by a query on the other instance: no consent
// (denied), consent recorded via a (permitted via b), withdrawn via a
// (denied via b), permitted again via b (permitted via a).
func consentScenario(t *testing.T, dir, brug, a, b string) {
	const bsn = "999911120"
	source, employee := devClient(t, dir, "bron-apotheek-1"), devClient(t, dir, "medewerker")
	pharmacist, supervisor := devClient(t, dir, "apotheker"), devClient(t, dir, "toezichthouder")

	entry := `{"resourceType":"Patient","identifier":[{"system":"http://fhir.nl/fhir/NamingSystem/bsn","value":"` + bsn + `"}],` +
		`"managingOrganization":{"identifier":{"system":"http://fhir.nl/fhir/NamingSystem/ura","value":"` + uraPharmacy1 + `"}},` +
		`"link":[{"other":{"reference":"` + brug + `/Patient/brug-20417"},"type":"seealso"}]}`
	if status, body := send(t, source, "PUT", a+"/Patient?identifier=http://fhir.nl/fhir/NamingSystem/bsn|"+bsn, entry); status != 201 {
		t.Fatalf("register: %d %s", status, body)
	}

	// query asks for the medication through base and checks the answer
	// and its AuditEvent (read back through the other instance).
	query := func(step, base, other string, permit bool) {
		t.Helper()
		status, body := send(t, pharmacist, "GET", base+"/MedicationDispense?patient.identifier=http://fhir.nl/fhir/NamingSystem/bsn|"+bsn, "")
		if permit {
			if status != 200 || !bytes.Contains(body, []byte(`"resourceType":"MedicationDispense"`)) || !bytes.Contains(body, []byte(brug+"/MedicationDispense/")) {
				t.Fatalf("%s: want dispenses from De Brug, got %d %.400s", step, status, body)
			}
		} else {
			var oo struct {
				ResourceType string `json:"resourceType"`
				Issue        []struct {
					Code string `json:"code"`
				} `json:"issue"`
			}
			if err := json.Unmarshal(body, &oo); err != nil || status != 403 || oo.ResourceType != "OperationOutcome" || len(oo.Issue) == 0 || oo.Issue[0].Code != "forbidden" {
				t.Fatalf("%s: want 403 OperationOutcome forbidden, got %d %.600s", step, status, body)
			}
			if bytes.Contains(body, []byte("Brug")) || bytes.Contains(body, []byte(uraPharmacy1)) {
				t.Errorf("%s: the denial names the source: %s", step, body)
			}
		}
		decision, reasons := lastDecision(t, supervisor, other, bsn)
		want := map[bool]string{true: "permit", false: "deny"}[permit]
		if decision != want {
			t.Errorf("%s: AuditEvent decision %q, want %q (reasons %q)", step, decision, want, reasons)
		}
		if !permit && !strings.Contains(strings.Join(reasons, "\n"), "consent") {
			t.Errorf("%s: the AuditEvent gives no consent reason: %q", step, reasons)
		}
	}

	query("no consent yet, via b", b, a, false)

	status, body := send(t, employee, "POST", a+"/Consent", pharmacyConsent("", bsn, "active"))
	if status != 201 {
		t.Fatalf("record consent via a: %d %s", status, body)
	}
	var created struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(body, &created); err != nil || created.ID == "" {
		t.Fatalf("created consent: %v %s", err, body)
	}
	query("consent recorded via a, query via b", b, a, true)

	if status, body := send(t, source, "PUT", a+"/Consent/"+created.ID, pharmacyConsent(created.ID, bsn, "inactive")); status != 200 {
		t.Fatalf("withdraw via a: %d %s", status, body)
	}
	query("withdrawn via a, query via b", b, a, false)

	if status, body := send(t, source, "PUT", b+"/Consent/"+created.ID, pharmacyConsent(created.ID, bsn, "active")); status != 200 {
		t.Fatalf("permit again via b: %d %s", status, body)
	}
	query("permitted again via b, query via a", a, b, true)

	if status, body := send(t, employee, "DELETE", b+"/Consent/"+created.ID, ""); status != 200 && status != 204 {
		t.Fatalf("delete via b: %d %s", status, body)
	}
	query("deleted via b, query via a", a, b, false)
}

// pharmacyConsent is the medication consent of bsn at the first pharmacy,
// with id when it is an update.
func pharmacyConsent(id, bsn, status string) string {
	body := consentBody(uraPharmacy1, bsn, "10160-0", status)
	if id == "" {
		return body
	}
	return strings.Replace(body, `{"resourceType":"Consent",`, `{"resourceType":"Consent","id":"`+id+`",`, 1)
}

// lastDecision reads, through base as the supervisor, the newest
// AuditEvent of the demo pharmacist (UZI 11111112) about bsn and returns
// its access decision and reasons.
func lastDecision(t *testing.T, supervisor *http.Client, base, bsn string) (string, []string) {
	t.Helper()
	status, body := send(t, supervisor, "GET", base+"/AuditEvent?agent:identifier=http://fhir.nl/fhir/NamingSystem/uzi-nr-pers|11111112"+
		"&patient:identifier=http://fhir.nl/fhir/NamingSystem/bsn|"+bsn+"&_sort=-date&_count=1", "")
	if status != 200 {
		t.Fatalf("AuditEvent search: %d %s", status, body)
	}
	var b struct {
		Entry []struct {
			Resource struct {
				Entity []struct {
					Name   string `json:"name"`
					Detail []struct {
						Type        string `json:"type"`
						ValueString string `json:"valueString"`
					} `json:"detail"`
				} `json:"entity"`
			} `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(body, &b); err != nil || len(b.Entry) != 1 {
		t.Fatalf("AuditEvent search: %v %s", err, body)
	}
	var (
		decision string
		reasons  []string
	)
	for _, e := range b.Entry[0].Resource.Entity {
		if e.Name != "access decision" {
			continue
		}
		for _, d := range e.Detail {
			switch d.Type {
			case "decision":
				decision = d.ValueString
			case "reason":
				reasons = append(reasons, d.ValueString)
			}
		}
	}
	return decision, reasons
}
