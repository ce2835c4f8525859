package main

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files and the README's configuration table")

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(file, []byte("listen: 127.0.0.1:1111\nadmin_listen: 127.0.0.1:2222\ndata_dir: /from/yaml\ntls:\n  crl: [a.pem, b.pem]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig([]string{"--config", file, "--admin-listen", "127.0.0.1:3333"}, env(map[string]string{
		"SCHAKELPUNT_ADMIN_LISTEN":     "127.0.0.1:4444",
		"SCHAKELPUNT_DATA_DIR":         "/from/env",
		"SCHAKELPUNT_SHUTDOWN_TIMEOUT": "5s",
	}))
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"yaml over default", cfg.Listen, "127.0.0.1:1111"},
		{"flag over env over yaml", cfg.AdminListen, "127.0.0.1:3333"},
		{"env over yaml", cfg.DataDir, "/from/env"},
		{"default", cfg.MongoDBDatabase, "schakelpunt"},
		{"duration from env", cfg.ShutdownTimeout, 5 * time.Second},
		{"list from yaml", strings.Join(cfg.TLS.CRL, ","), "a.pem,b.pem"},
		{"store default", cfg.Store, "embedded"},
		{"demo default", cfg.Demo, false},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			if c.got != c.want {
				t.Errorf("got %v, want %v", c.got, c.want)
			}
		})
	}
}

func TestConfigRejectsBadInput(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := []struct {
		name    string
		args    []string
		env     map[string]string
		message string
	}{
		{"unknown key", []string{"--config", write("unknown.yaml", "listen: x\nlisten_adress: y\n")}, nil, "listen_adress"},
		{"unknown nested key", []string{"--config", write("nested.yaml", "tls:\n  certt: x\n")}, nil, "certt"},
		{"bad store", []string{"--store", "postgres"}, nil, "postgres"},
		{"mongodb without uri", []string{"--store", "mongodb"}, nil, "mongodb_uri"},
		{"bad duration in env", nil, map[string]string{"SCHAKELPUNT_AUDIT_RETENTION": "forever"}, "SCHAKELPUNT_AUDIT_RETENTION"},
		{"bad number", []string{"--max-body-bytes", "lots"}, nil, "max-body-bytes"},
		{"bad duration", []string{"--shutdown-timeout", "soon"}, nil, "shutdown_timeout"},
		{"bad log level", []string{"--log-level", "loud"}, nil, "log_level"},
		{"no source requests at all", []string{"--federation-max-parallel", "0"}, nil, "federation.max_parallel"},
		{"too many source requests at once", nil, map[string]string{"SCHAKELPUNT_FEDERATION_MAX_PARALLEL": "1000000"}, "federation.max_parallel"},
		{"cert without key", []string{"--tls-cert", "a.pem"}, nil, "tls.key"},
		{"missing file", []string{"--config", filepath.Join(dir, "absent.yaml")}, nil, "absent.yaml"},
		{"unknown flag", []string{"--nonsense"}, nil, "nonsense"},
		{"demo with a configured server certificate", []string{"--demo", "--tls-cert", "a.pem", "--tls-key", "a.key", "--tls-client-ca", "ca.pem"}, nil, "development PKI"},
		{"demo with a configured federation certificate", []string{"--demo", "--federation-client-cert", "a.pem", "--federation-client-key", "a.key"}, nil, "federation.client_cert"},
		{"demo not true or false", nil, map[string]string{"SCHAKELPUNT_DEMO": "yes please"}, "demo"},
		{"source with a bad ura", []string{"--config", write("badura.yaml", "sources:\n  - ura: \"123\"\n    base_url: https://x/fhir/R4\n    categories: [medication]\n")}, nil, "sources[0]"},
		{"source over plain http", []string{"--config", write("http.yaml", "sources:\n  - ura: \"90000123\"\n    base_url: http://x/fhir/R4\n    categories: [medication]\n")}, nil, "https base_url"},
		{"source without categories", []string{"--config", write("nocat.yaml", "sources:\n  - ura: \"90000123\"\n    base_url: https://x/fhir/R4\n")}, nil, "categories"},
		{"source with an unknown category", []string{"--config", write("badcat.yaml", "sources:\n  - ura: \"90000123\"\n    base_url: https://x/fhir/R4\n    categories: [lab]\n")}, nil, `"lab"`},
		{"two sources of one organisation", []string{"--config", write("dup.yaml", "sources:\n  - ura: \"90000123\"\n    base_url: https://x/fhir/R4\n    categories: [medication]\n  - ura: \"90000123\"\n    base_url: https://y/fhir/R4\n    categories: [gp-summary]\n")}, nil, "both have ura 90000123"},
		{"a demo source's ura with --demo", []string{"--demo", "--config", write("demoura.yaml", "sources:\n  - ura: \"90000002\"\n    base_url: https://x/fhir/R4\n    categories: [medication]\n")}, nil, "demo source"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := loadConfig(c.args, env(c.env))
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), c.message) {
				t.Errorf("error %q does not name %q", err, c.message)
			}
		})
	}
}

// TestDemoFlag: --demo is a switch; it takes no value (a value would be
// taken as an argument), and --demo=false turns it off again.
func TestDemoFlag(t *testing.T) {
	cases := []struct {
		name string
		args []string
		env  map[string]string
		want bool
	}{
		{"absent", nil, nil, false},
		{"alone", []string{"--demo"}, nil, true},
		{"before another flag", []string{"--demo", "--log-level", "warn"}, nil, true},
		{"false", []string{"--demo=false"}, nil, false},
		{"from the environment", nil, map[string]string{"SCHAKELPUNT_DEMO": "true"}, true},
		{"flag over environment", []string{"--demo=false"}, map[string]string{"SCHAKELPUNT_DEMO": "true"}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := loadConfig(c.args, env(c.env))
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Demo != c.want {
				t.Errorf("demo %v, want %v", cfg.Demo, c.want)
			}
		})
	}
}

// TestREADMEDocumentsEverySetting keeps the README's configuration table
// generated from the settings table (go test -run README -update).
func TestREADMEDocumentsEverySetting(t *testing.T) {
	path := filepath.Join("..", "..", "README.md")
	readme, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const head = "|---|---|---|---|---|\n"
	text := string(readme)
	start := strings.Index(text, head)
	if start < 0 {
		t.Fatal("README has no configuration table")
	}
	start += len(head)
	end := strings.Index(text[start:], "\n\n")
	if end < 0 {
		end = len(text) - start
	}
	got, want := text[start:start+end+1], configTable()
	if got == want {
		return
	}
	if *update {
		if err := os.WriteFile(path, []byte(text[:start]+want+text[start+end+1:]), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("README configuration table is stale; run go test ./cmd/schakelpunt -run README -update\nwant:\n%s", want)
}
