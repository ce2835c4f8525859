package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/schakelpunt/schakelpunt/federation"
	"github.com/schakelpunt/schakelpunt/federation/source"
	"github.com/schakelpunt/schakelpunt/fhir"
	"github.com/schakelpunt/schakelpunt/profiles"
	"github.com/schakelpunt/schakelpunt/store"
	"github.com/schakelpunt/schakelpunt/store/sqlite"
)

// TestRegistrySync: the registry's resources follow the sources; what did
// not change gets no new version.
func TestRegistrySync(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "r.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	codec, err := fhir.NewCodec()
	if err != nil {
		t.Fatal(err)
	}
	v, err := profiles.New(codec)
	if err != nil {
		t.Fatal(err)
	}
	brug := federation.Source{URA: uraPharmacy1, Name: "Apotheek De Brug", BaseURL: "https://127.0.0.1:9102/fhir/R4", Categories: []string{"medication"}}
	gp := federation.Source{URA: uraGP, Name: "Huisartsenpraktijk De Linde", BaseURL: "https://127.0.0.1:9101/fhir/R4", Categories: []string{"gp-summary", "medication"}}
	moved := brug
	moved.BaseURL = "https://127.0.0.1:9202/fhir/R4"

	version := func(typ, ura string) string {
		r, err := st.Read(ctx, typ, registryID(ura))
		switch {
		case errors.Is(err, store.ErrGone):
			return "gone"
		case err != nil:
			return err.Error()
		}
		return fmt.Sprint(r.Version)
	}
	steps := []struct {
		name    string
		sources []federation.Source
		want    registrySync
		// versions of Organization and Endpoint, by URA
		versions map[string][2]string
	}{
		{"first", []federation.Source{brug, gp}, registrySync{Written: 4}, map[string][2]string{uraPharmacy1: {"1", "1"}, uraGP: {"1", "1"}}},
		{"again: nothing changed", []federation.Source{brug, gp}, registrySync{Unchanged: 4}, map[string][2]string{uraPharmacy1: {"1", "1"}, uraGP: {"1", "1"}}},
		{"a source moved", []federation.Source{moved, gp}, registrySync{Written: 1, Unchanged: 3}, map[string][2]string{uraPharmacy1: {"1", "2"}, uraGP: {"1", "1"}}},
		{"a source removed", []federation.Source{moved}, registrySync{Unchanged: 2, Deleted: 2}, map[string][2]string{uraPharmacy1: {"1", "2"}, uraGP: {"gone", "gone"}}},
		{"and back", []federation.Source{moved, gp}, registrySync{Written: 2, Unchanged: 2}, map[string][2]string{uraPharmacy1: {"1", "2"}, uraGP: {"3", "3"}}},
		{"none", nil, registrySync{Deleted: 4}, map[string][2]string{uraPharmacy1: {"gone", "gone"}, uraGP: {"gone", "gone"}}},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			got, err := syncRegistry(ctx, st, v, s.sources)
			if err != nil {
				t.Fatal(err)
			}
			if got != s.want {
				t.Errorf("sync: %+v, want %+v", got, s.want)
			}
			for ura, want := range s.versions {
				if got := [2]string{version("Organization", ura), version("Endpoint", ura)}; got != want {
					t.Errorf("%s: Organization, Endpoint versions %v, want %v", ura, got, want)
				}
			}
		})
	}
}

func TestRegistryResources(t *testing.T) {
	ws, err := registryResources([]federation.Source{{URA: uraGP, Name: "Huisartsenpraktijk De Linde", BaseURL: "https://gp.example/fhir/R4", Categories: []string{"gp-summary", "medication"}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(ws) != 2 || ws[0].Type != "Organization" || ws[1].Type != "Endpoint" || ws[0].ID != "ura-90000001" || ws[1].ID != "ura-90000001" {
		t.Fatalf("%+v", ws)
	}
	var org, ep map[string]any
	_ = json.Unmarshal(ws[0].Body, &org)
	_ = json.Unmarshal(ws[1].Body, &ep)
	checks := []struct {
		name      string
		got, want any
	}{
		{"URA", org["identifier"].([]any)[0].(map[string]any)["value"], uraGP},
		{"URA system", org["identifier"].([]any)[0].(map[string]any)["system"], fhir.SystemURA},
		{"active", org["active"], true},
		{"endpoint", org["endpoint"].([]any)[0].(map[string]any)["reference"], "Endpoint/ura-90000001"},
		{"status", ep["status"], "active"},
		{"connection type", ep["connectionType"].(map[string]any)["code"], "hl7-fhir-rest"},
		{"address", ep["address"], "https://gp.example/fhir/R4"},
		{"managing organisation", ep["managingOrganization"].(map[string]any)["reference"], "Organization/ura-90000001"},
		{"first payload", ep["payloadType"].([]any)[0].(map[string]any)["coding"].([]any)[0].(map[string]any)["code"], "60591-5"},
		{"second payload", ep["payloadType"].([]any)[1].(map[string]any)["text"], "medication"},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			if c.got != c.want {
				t.Errorf("got %v, want %v", c.got, c.want)
			}
		})
	}
	terms := strings.Join(ws[1].Terms.Strings, " ")
	for _, want := range []string{
		fhir.TermRefIdentifier("organization", fhir.SystemURA, uraGP),
		fhir.TermCode("status", "active"),
	} {
		if !strings.Contains(terms, want) {
			t.Errorf("Endpoint terms lack %s: %s", want, terms)
		}
	}
}

// TestReloadOnSIGHUP runs the binary with a configuration file, changes
// the file and sends SIGHUP: the registry's resources and the federated
// queries follow; a bad file changes nothing; a change to another setting
// is named as needing a restart.
func TestReloadOnSIGHUP(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	cfgFile := filepath.Join(dir, "schakelpunt.yaml")
	writeConfig := func(content string) {
		t.Helper()
		if err := os.WriteFile(cfgFile, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeConfig("log_level: info\n")
	s := startServe(t, bin, dataDir, cfgFile) // creates the development PKI the sources use
	brug := startDemoSource(t, dataDir, source.DemoPharmacy1, "bron-apotheek-1")
	kruis := startDemoSource(t, dataDir, source.DemoPharmacy2, "bron-apotheek-2")
	sourceYAML := func(logLevel, ura, name, base string) string {
		return fmt.Sprintf("log_level: %s\nsources:\n  - ura: %q\n    name: %s\n    base_url: %s\n    categories: [medication]\n", logLevel, ura, name, base)
	}
	syncs := 1 // "source registry in the store" at start
	hup := func(wantLog string, n int) {
		t.Helper()
		if err := s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for strings.Count(s.logs.String(), `"msg":"`+wantLog) < n {
			if time.Now().After(deadline) {
				t.Fatalf("no log %q after SIGHUP:\n%s", wantLog, s.logs)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	gp := devClient(t, dataDir, "huisarts")
	read := func(path string) int {
		t.Helper()
		status, _ := get(t, gp, s.fhir+path)
		return status
	}
	asked := func() map[string]int {
		t.Helper()
		status, body := get(t, devClient(t, dataDir, "apotheker"), s.fhir+"/MedicationDispense?patient.identifier=http://fhir.nl/fhir/NamingSystem/bsn|999911120")
		if status != 200 {
			t.Fatalf("medication: %d %s", status, body)
		}
		_, heads := decodeBundle(t, body)
		m := map[string]int{}
		for _, h := range heads {
			if h.ResourceType == "MedicationDispense" {
				m[h.Meta.Source]++
			}
		}
		return m
	}

	// Add De Brug.
	writeConfig(sourceYAML("info", uraPharmacy1, "Apotheek De Brug", brug))
	syncs++
	hup("source registry in the store", syncs)
	if st := read("/Organization/ura-" + uraPharmacy1); st != 200 {
		t.Fatalf("the added source's Organization: %d", st)
	}
	status, body := get(t, gp, s.fhir+"/Endpoint?organization:identifier=http://fhir.nl/fhir/NamingSystem/ura|"+uraPharmacy1)
	if status != 200 || !strings.Contains(string(body), `"address":"`+brug+`"`) {
		t.Fatalf("the added source's Endpoint: %d %s", status, body)
	}

	// The patient is at both pharmacies and consented at both.
	for _, reg := range []struct{ role, ura, base, id string }{
		{"bron-apotheek-1", uraPharmacy1, brug, "brug-20417"},
		{"bron-apotheek-2", uraPharmacy2, kruis, "kruis-5521"},
	} {
		c := devClient(t, dataDir, reg.role)
		entry := fmt.Sprintf(`{"resourceType":"Patient","identifier":[{"system":%q,"value":"999911120"}],"managingOrganization":{"identifier":{"system":%q,"value":%q}},"link":[{"other":{"reference":%q},"type":"seealso"}]}`,
			fhir.SystemBSN, fhir.SystemURA, reg.ura, reg.base+"/Patient/"+reg.id)
		if status, body := send(t, c, "PUT", s.fhir+"/Patient?identifier=http://fhir.nl/fhir/NamingSystem/bsn|999911120", entry); status != 201 {
			t.Fatalf("register at %s: %d %s", reg.ura, status, body)
		}
		consent := demoConsentBody(federation.Source{URA: reg.ura, Categories: []string{"medication"}}, "999911120", time.Now())
		if status, body := send(t, c, "POST", s.fhir+"/Consent", consent); status != 201 {
			t.Fatalf("consent at %s: %d %s", reg.ura, status, body)
		}
	}
	if got := asked(); got[brug] == 0 || len(got) != 1 {
		t.Fatalf("with De Brug registered: dispenses by source %v, want only %s", got, brug)
	}

	// Replace De Brug by Het Kruis.
	writeConfig(sourceYAML("info", uraPharmacy2, "Apotheek Het Kruis", kruis))
	syncs++
	hup("source registry in the store", syncs)
	if st := read("/Organization/ura-" + uraPharmacy1); st != 410 {
		t.Errorf("the removed source's Organization: %d, want 410", st)
	}
	if st := read("/Endpoint/ura-" + uraPharmacy1); st != 410 {
		t.Errorf("the removed source's Endpoint: %d, want 410", st)
	}
	if st := read("/Organization/ura-" + uraPharmacy2); st != 200 {
		t.Errorf("the new source's Organization: %d", st)
	}
	if got := asked(); got[kruis] == 0 || len(got) != 1 {
		t.Errorf("after the reload: dispenses by source %v, want only %s", got, kruis)
	}

	// A bad file keeps the registry as it was.
	for i, bad := range []string{
		"sources:\n  - ura: \"123\"\n    base_url: https://x/fhir/R4\n    categories: [medication]\n",
		"sources: [unclosed\n",
		fmt.Sprintf("sources:\n  - ura: %q\n    base_url: %s\n    categories: [medication]\n  - ura: %q\n    base_url: %s\n    categories: [medication]\n", uraPharmacy2, kruis, uraPharmacy2, brug),
	} {
		writeConfig(bad)
		hup("configuration reload refused", i+1)
	}
	if st := read("/Organization/ura-" + uraPharmacy2); st != 200 {
		t.Errorf("after bad files, the Organization: %d", st)
	}
	if got := asked(); got[kruis] == 0 || len(got) != 1 {
		t.Errorf("after bad files: dispenses by source %v, want only %s", got, kruis)
	}

	// Another setting changed: taken over only after a restart, and said.
	writeConfig(sourceYAML("debug", uraPharmacy2, "Apotheek Het Kruis", kruis))
	syncs++
	hup("source registry in the store", syncs)
	if !strings.Contains(s.logs.String(), "take effect after a restart") {
		t.Errorf("no word that the other settings need a restart:\n%s", s.logs)
	}
	if strings.Contains(s.logs.String(), `"level":"DEBUG"`) {
		t.Errorf("log_level changed without a restart")
	}
	s.stop(t)
}
