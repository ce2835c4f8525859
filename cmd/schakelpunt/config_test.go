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
		{"cert without key", []string{"--tls-cert", "a.pem"}, nil, "tls.key"},
		{"missing file", []string{"--config", filepath.Join(dir, "absent.yaml")}, nil, "absent.yaml"},
		{"unknown flag", []string{"--nonsense"}, nil, "nonsense"},
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
