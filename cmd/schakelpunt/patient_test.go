package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// patientClient trusts the development CA and presents no certificate.
func patientClient(tb testing.TB, dataDir string) *http.Client {
	tb.Helper()
	caPEM, err := os.ReadFile(filepath.Join(dataDir, "pki", "ca.crt"))
	if err != nil {
		tb.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}

// devPatientToken runs `schakelpunt patient-token` for bsn.
func devPatientToken(tb testing.TB, dataDir, bsn string) string {
	tb.Helper()
	var out, errOut bytes.Buffer
	if err := realMain(context.Background(), []string{"patient-token", "--data-dir", dataDir, "--bsn", bsn, "--ttl", "30m"}, &out, &errOut, func(string) string { return "" }); err != nil {
		tb.Fatalf("patient-token: %v %s", err, errOut.String())
	}
	return strings.TrimSpace(out.String())
}

func sendBearer(tb testing.TB, c *http.Client, method, url, token, body string) (int, http.Header, []byte) {
	tb.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

// TestPatientListener: serve creates the development patient issuer,
// patient-token prints a token it trusts, the patient listener takes it
// without a client certificate, and the public listener takes none.
func TestPatientListener(t *testing.T) {
	dir := t.TempDir()
	var out, errOut bytes.Buffer
	err := realMain(context.Background(), []string{"patient-token", "--data-dir", dir, "--bsn", "999911120"}, &out, &errOut, func(string) string { return "" })
	if err == nil {
		t.Fatal("patient-token worked before serve created the development issuer")
	}
	a := mustRunMain(t, dir)
	defer a.shutdown()
	if _, err := os.Stat(filepath.Join(dir, "patient-issuer", "jwks.json")); err != nil {
		t.Fatal(err)
	}
	for _, bad := range [][]string{{"--bsn", "999911121"}, {}, {"--bsn", "999911120", "--ttl", "48h"}} {
		if err := realMain(context.Background(), append([]string{"patient-token", "--data-dir", dir}, bad...), io.Discard, io.Discard, func(string) string { return "" }); exitCode(err) != 2 {
			t.Errorf("patient-token %v: %v", bad, err)
		}
	}
	token := devPatientToken(t, dir, "999911120")
	base := "https://" + a.PatientAddr() + "/fhir/R4"
	pc := patientClient(t, dir)

	// The source registers the patient; the patient sees the entry.
	entry := `{"resourceType":"Patient","identifier":[{"system":"http://fhir.nl/fhir/NamingSystem/bsn","value":"999911120"}],` +
		`"managingOrganization":{"identifier":{"system":"http://fhir.nl/fhir/NamingSystem/ura","value":"90000002"}},` +
		`"link":[{"other":{"reference":"https://127.0.0.1:9102/fhir/R4/Patient/p1"},"type":"seealso"}]}`
	if status, body := send(t, devClient(t, dir, "bron-apotheek-1"), "PUT", "https://"+a.PublicAddr()+"/fhir/R4/Patient?identifier=http://fhir.nl/fhir/NamingSystem/bsn|999911120", entry); status != 201 {
		t.Fatalf("register: %d %s", status, body)
	}
	status, _, body := sendBearer(t, pc, "GET", base+"/Patient", token, "")
	if status != 200 || !bytes.Contains(body, []byte(`"90000002"`)) {
		t.Fatalf("own index entries: %d %s", status, body)
	}
	status, h, body := sendBearer(t, pc, "GET", base+"/Patient", "", "")
	if status != 401 || !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") || !bytes.Contains(body, []byte(`"code":"login"`)) {
		t.Errorf("without a token: %d %v %s", status, h, body)
	}
	// The public listener: a bearer token is no way in.
	if _, err := pc.Get("https://" + a.PublicAddr() + "/fhir/R4/Patient"); err == nil {
		t.Error("the public listener accepted a client without a certificate")
	}
	// The patient's own requests are in their log, with them as agent.
	status, _, body = sendBearer(t, pc, "GET", base+"/AuditEvent?_sort=-date&_count=5", token, "")
	if status != 200 || !bytes.Contains(body, []byte(`"type":"Patient"`)) {
		t.Errorf("own log: %d %s", status, body)
	}
}

// TestPatientSettings: the issuer, audience and JWKS go together; the
// listener may be turned off.
func TestPatientSettings(t *testing.T) {
	none := func(string) string { return "" }
	cases := []struct {
		name string
		args []string
		ok   bool
	}{
		{"defaults: development issuer", nil, true},
		{"a full issuer", []string{"--patient-issuer", "https://login.example.nl", "--patient-audience", "schakelpunt", "--patient-jwks", "https://login.example.nl/jwks.json"}, true},
		{"issuer without audience", []string{"--patient-issuer", "https://login.example.nl", "--patient-jwks", "jwks.json"}, false},
		{"issuer without keys", []string{"--patient-issuer", "https://login.example.nl", "--patient-audience", "schakelpunt"}, false},
		{"keys without issuer", []string{"--patient-jwks", "jwks.json"}, false},
		{"audience without issuer", []string{"--patient-audience", "schakelpunt"}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := loadConfig(c.args, none)
			if (err == nil) != c.ok {
				t.Fatalf("err %v", err)
			}
			if err == nil && cfg.PatientListen != "127.0.0.1:8444" {
				t.Errorf("patient_listen %q", cfg.PatientListen)
			}
		})
	}
	t.Run("off", func(t *testing.T) {
		dir := t.TempDir()
		cfg, err := loadConfig([]string{"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--patient-listen", "", "--data-dir", dir, "--log-level", "warn"}, none)
		if err != nil {
			t.Fatal(err)
		}
		a, err := start(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if a.PatientAddr() != "" {
			t.Errorf("patient listener on %s", a.PatientAddr())
		}
		if err := a.shutdown(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("a configured issuer whose keys cannot be read stops serve", func(t *testing.T) {
		dir := t.TempDir()
		cfg, err := loadConfig([]string{"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--patient-listen", "127.0.0.1:0", "--data-dir", dir,
			"--patient-issuer", "https://login.example.nl", "--patient-audience", "x", "--patient-jwks", filepath.Join(dir, "missing.json")}, none)
		if err != nil {
			t.Fatal(err)
		}
		if a, err := start(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), io.Discard); err == nil {
			a.shutdown()
			t.Fatal("started without the issuer's keys")
		}
	})
}
