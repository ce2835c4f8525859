package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/schakelpunt/schakelpunt/access/pki"
	"github.com/schakelpunt/schakelpunt/federation/source"
)

// startDemoSource runs one demo source on loopback with the development
// PKI's server card of its organisation.
func startDemoSource(t testing.TB, dataDir, dir, role string) string {
	t.Helper()
	data, err := source.LoadDemo(dir)
	if err != nil {
		t.Fatal(err)
	}
	pkiDir := filepath.Join(dataDir, "pki")
	cert, err := tls.LoadX509KeyPair(filepath.Join(pkiDir, "clients", role+".crt"), filepath.Join(pkiDir, "clients", role+".key"))
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.Load(pkiDir)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := source.NewServer(data, source.Options{Certificate: cert, ClientCAs: []*x509.Certificate{ca.Cert}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = srv.Serve(ctx, ln); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return "https://" + ln.Addr().String() + "/fhir/R4"
}

// send makes one request; the body is sent as FHIR JSON when not empty.
func send(tb testing.TB, c *http.Client, method, url, body string) (int, []byte) {
	tb.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	resp, err := c.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return resp.StatusCode, b
}

// TestFederatedMedication: a pharmacist's MedicationDispense query through
// serve, resolved at two demo pharmacies over mutual TLS, by role and
// consent, and audited with the sources asked.
func TestFederatedMedication(t *testing.T) {
	dir := t.TempDir()
	first := mustRunMain(t, dir) // creates the development PKI and the demo certificates
	if err := first.shutdown(); err != nil {
		t.Fatal(err)
	}
	brug := startDemoSource(t, dir, source.DemoPharmacy1, "bron-apotheek-1")
	kruis := startDemoSource(t, dir, source.DemoPharmacy2, "bron-apotheek-2")

	cfg, err := loadConfig([]string{"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--patient-listen", "127.0.0.1:0", "--data-dir", dir, "--log-level", "warn"}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	cfg.Sources = []SourceConfig{
		{URA: uraPharmacy1, Name: "Apotheek De Brug", BaseURL: brug, Categories: []string{"medication"}},
		{URA: uraPharmacy2, Name: "Apotheek Het Kruis", BaseURL: kruis, Categories: []string{"medication"}},
	}
	a, err := start(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer a.shutdown()
	base := "https://" + a.PublicAddr() + "/fhir/R4"

	register := func(role, ura, bsn, link string) {
		entry := `{"resourceType":"Patient","identifier":[{"system":"http://fhir.nl/fhir/NamingSystem/bsn","value":"` + bsn + `"}],` +
			`"managingOrganization":{"identifier":{"system":"http://fhir.nl/fhir/NamingSystem/ura","value":"` + ura + `"}},` +
			`"link":[{"other":{"reference":"` + link + `"},"type":"seealso"}]}`
		if status, body := send(t, devClient(t, dir, role), "PUT", base+"/Patient?identifier=http://fhir.nl/fhir/NamingSystem/bsn|"+bsn, entry); status != 201 {
			t.Fatalf("register %s at %s: %d %s", bsn, ura, status, body)
		}
	}
	consent := func(role, ura, bsn string) {
		c := `{"resourceType":"Consent","status":"active",` +
			`"scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"patient-privacy"}]},` +
			`"category":[{"coding":[{"system":"http://loinc.org","code":"59284-0"}]}],` +
			`"patient":{"identifier":{"system":"http://fhir.nl/fhir/NamingSystem/bsn","value":"` + bsn + `"}},` +
			`"dateTime":"2026-01-01T10:00:00+01:00",` +
			`"organization":[{"identifier":{"system":"http://fhir.nl/fhir/NamingSystem/ura","value":"` + ura + `"}}],` +
			`"provision":{"type":"permit","period":{"start":"2026-01-01T00:00:00+01:00"},` +
			`"code":[{"coding":[{"system":"http://loinc.org","code":"10160-0"}]}]}}`
		if status, body := send(t, devClient(t, dir, role), "POST", base+"/Consent", c); status != 201 {
			t.Fatalf("consent %s at %s: %d %s", bsn, ura, status, body)
		}
	}
	// 999911120 is at both pharmacies and consented at both; 999900006 is
	// registered at De Brug without consent.
	register("bron-apotheek-1", uraPharmacy1, "999911120", brug+"/Patient/brug-20417")
	register("bron-apotheek-2", uraPharmacy2, "999911120", kruis+"/Patient/kruis-5521")
	register("bron-apotheek-1", uraPharmacy1, "999900006", brug+"/Patient/brug-20988")
	consent("bron-apotheek-1", uraPharmacy1, "999911120")
	consent("bron-apotheek-2", uraPharmacy2, "999911120")

	query := base + "/MedicationDispense?patient.identifier=http://fhir.nl/fhir/NamingSystem/bsn|"
	cases := []struct {
		name, role, bsn string
		status          int
		sources         []string
	}{
		{"pharmacist, consent at both", "apotheker", "999911120", 200, []string{brug, kruis}},
		{"GP, consent at both", "huisarts", "999911120", 200, []string{brug, kruis}},
		{"physiotherapist: wrong role", "fysiotherapeut", "999911120", 403, nil},
		{"company doctor: wrong role", "bedrijfsarts", "999911120", 403, nil},
		{"no consent", "apotheker", "999900006", 403, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, body := send(t, devClient(t, dir, c.role), "GET", query+c.bsn, "")
			if status != c.status {
				t.Fatalf("%d %s", status, body)
			}
			if status != 200 {
				if !bytes.Contains(body, []byte(`"code":"forbidden"`)) || bytes.Contains(body, []byte("Apotheek")) {
					t.Errorf("denial: %s", body)
				}
				return
			}
			var bundle struct {
				Entry []struct {
					FullURL  string `json:"fullUrl"`
					Resource struct {
						ResourceType string `json:"resourceType"`
						Meta         struct {
							Source string `json:"source"`
						} `json:"meta"`
					} `json:"resource"`
				} `json:"entry"`
			}
			if err := json.Unmarshal(body, &bundle); err != nil {
				t.Fatal(err)
			}
			seen := map[string]int{}
			for _, e := range bundle.Entry {
				if e.Resource.ResourceType == "MedicationDispense" {
					seen[e.Resource.Meta.Source]++
					if !strings.HasPrefix(e.FullURL, e.Resource.Meta.Source+"/MedicationDispense/") {
						t.Errorf("fullUrl %s is not at its source %s", e.FullURL, e.Resource.Meta.Source)
					}
				}
			}
			for _, src := range c.sources {
				if seen[src] == 0 {
					t.Errorf("no dispenses from %s: %v", src, seen)
				}
			}
		})
	}
	t.Run("audited with the sources asked", func(t *testing.T) {
		status, body := send(t, devClient(t, dir, "toezichthouder"), "GET",
			base+"/AuditEvent?agent:identifier=http://fhir.nl/fhir/NamingSystem/uzi-nr-pers|11111112&patient:identifier=http://fhir.nl/fhir/NamingSystem/bsn|999911120", "")
		if status != 200 || !bytes.Contains(body, []byte(`"result-count"`)) || !bytes.Contains(body, []byte(uraPharmacy2)) {
			t.Errorf("%d %s", status, body)
		}
	})
}
