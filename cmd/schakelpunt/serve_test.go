package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/schakelpunt/schakelpunt/fhir"
	"github.com/schakelpunt/schakelpunt/store/sqlite"
)

// mustRunMain starts the switching point on loopback ports chosen by the
// system, with a fresh data directory (or the one given).
func mustRunMain(tb testing.TB, dataDir string) *app {
	tb.Helper()
	cfg, err := loadConfig([]string{
		"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--patient-listen", "127.0.0.1:0",
		"--data-dir", dataDir, "--log-level", "warn",
	}, func(string) string { return "" })
	if err != nil {
		tb.Fatal(err)
	}
	cfg.Supervisors = []SupervisorConfig{{URA: uraSupervisor}}
	a, err := start(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), io.Discard)
	if err != nil {
		tb.Fatal(err)
	}
	return a
}

// devClient is an HTTPS client with a demo role's certificate from the
// development PKI that serve wrote.
func devClient(tb testing.TB, dataDir, role string) *http.Client {
	tb.Helper()
	pkiDir := filepath.Join(dataDir, "pki")
	cert, err := tls.LoadX509KeyPair(filepath.Join(pkiDir, "clients", role+".crt"), filepath.Join(pkiDir, "clients", role+".key"))
	if err != nil {
		tb.Fatal(err)
	}
	caPEM, err := os.ReadFile(filepath.Join(pkiDir, "ca.crt"))
	if err != nil {
		tb.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool}}}
}

func get(tb testing.TB, c *http.Client, url string) (int, []byte) {
	tb.Helper()
	return send(tb, c, "GET", url, "")
}

func TestServeEndToEnd(t *testing.T) {
	dir := t.TempDir()
	a := mustRunMain(t, dir)
	base := "https://" + a.PublicAddr() + "/fhir/R4"

	src := devClient(t, dir, "bron-apotheek-1")
	status, body := get(t, src, base+"/metadata")
	if status != 200 || !bytes.Contains(body, []byte(`"CapabilityStatement"`)) {
		t.Fatalf("metadata: %d %s", status, body)
	}
	entry := `{"resourceType":"Patient","identifier":[{"system":"http://fhir.nl/fhir/NamingSystem/bsn","value":"999900006"}],` +
		`"managingOrganization":{"identifier":{"system":"http://fhir.nl/fhir/NamingSystem/ura","value":"` + uraPharmacy1 + `"}},` +
		`"link":[{"other":{"reference":"https://127.0.0.1:9102/fhir/R4/Patient/p1"},"type":"seealso"}]}`
	req, _ := http.NewRequest("PUT", base+"/Patient?identifier=http://fhir.nl/fhir/NamingSystem/bsn|999900006", strings.NewReader(entry))
	req.Header.Set("Content-Type", "application/fhir+json")
	resp, err := src.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("registration: %d", resp.StatusCode)
	}

	t.Run("plain TLS without a client certificate is refused", func(t *testing.T) {
		caPEM, _ := os.ReadFile(filepath.Join(dir, "pki", "ca.crt"))
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(caPEM)
		anon := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
		if _, err := anon.Get(base + "/metadata"); err == nil {
			t.Error("a client without a certificate got an answer")
		}
	})
	t.Run("admin", func(t *testing.T) {
		admin := "http://" + a.AdminAddr()
		for path, want := range map[string]string{"/health": "ok", "/ready": "ready", "/metrics": "schakelpunt_http_requests_total"} {
			status, body := get(t, http.DefaultClient, admin+path)
			if status != 200 || !strings.Contains(string(body), want) {
				t.Errorf("%s: %d %s", path, status, body)
			}
		}
		_, metrics := get(t, http.DefaultClient, admin+"/metrics")
		for _, m := range []string{`schakelpunt_store_duration_seconds`, `schakelpunt_tls_handshake_refused_total{reason="no-certificate"}`, `interaction="update",status="201"`} {
			if !strings.Contains(string(metrics), m) {
				t.Errorf("metrics lack %s", m)
			}
		}
	})
	if err := a.shutdown(); err != nil {
		t.Fatal(err)
	}

	t.Run("restart keeps what was acknowledged", func(t *testing.T) {
		b := mustRunMain(t, dir)
		defer b.shutdown()
		status, body := get(t, devClient(t, dir, "toezichthouder"), "https://"+b.PublicAddr()+"/fhir/R4/Patient?identifier=999900006")
		var bundle struct {
			Total int `json:"total"`
		}
		_ = json.Unmarshal(body, &bundle)
		if status != 200 || bundle.Total != 1 {
			t.Fatalf("after restart: %d %s", status, body)
		}
		status, body = get(t, devClient(t, dir, "toezichthouder"), "https://"+b.PublicAddr()+"/fhir/R4/AuditEvent?_summary=count")
		if status != 200 || !bytes.Contains(body, []byte(`"total":`)) {
			t.Fatalf("audit after restart: %d %s", status, body)
		}
	})
}

func TestCACommand(t *testing.T) {
	dir := t.TempDir()
	var out, errOut bytes.Buffer
	run := func(args ...string) error {
		out.Reset()
		errOut.Reset()
		return realMain(context.Background(), append([]string{"ca"}, args...), &out, &errOut, func(string) string { return "" })
	}
	if err := run("init", "--dir", dir); err != nil {
		t.Fatal(err)
	}
	if err := run("issue", "--dir", dir, "--type", "Z", "--uzi", "12345678", "--ura", "90000123", "--role", "01.015", "--out", filepath.Join(dir, "gp")); err != nil {
		t.Fatal(err, errOut.String())
	}
	serial := strings.TrimSpace(out.String()[strings.Index(out.String(), "serial=")+len("serial="):])
	if err := run("revoke", "--dir", dir, "--serial", serial); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "crl.pem")); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		args []string
	}{
		{"bad card type", []string{"issue", "--dir", dir, "--type", "Q", "--uzi", "1", "--ura", "90000123", "--out", filepath.Join(dir, "x")}},
		{"no dir", []string{"init"}},
		{"bad serial", []string{"revoke", "--dir", dir, "--serial", "zz"}},
		{"unknown subcommand", []string{"frobnicate"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := run(c.args...)
			if err == nil || exitCode(err) != 2 {
				t.Errorf("err %v (exit %d), want a usage error", err, exitCode(err))
			}
		})
	}
}

// TestShutdownLosesNothingAcknowledged: registrations race a graceful
// shutdown; after a restart every acknowledged one is there, with its
// AuditEvent.
func TestShutdownLosesNothingAcknowledged(t *testing.T) {
	dir := t.TempDir()
	a := mustRunMain(t, dir)
	base := "https://" + a.PublicAddr() + "/fhir/R4"
	src := devClient(t, dir, "bron-apotheek-1")
	bsns := validBSNs(400)
	var (
		mu    sync.Mutex
		acked []string
		wg    sync.WaitGroup
	)
	next := make(chan string)
	stopped := make(chan error, 1)
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for bsn := range next {
				if registered(src, base, bsn) {
					mu.Lock()
					acked = append(acked, bsn)
					mu.Unlock()
				}
			}
		}()
	}
	for i, bsn := range bsns {
		if i == len(bsns)/2 {
			go func() { stopped <- a.shutdown() }()
		}
		next <- bsn
	}
	close(next)
	wg.Wait()
	if len(acked) == 0 {
		t.Fatal("nothing was acknowledged before the shutdown")
	}
	if err := <-stopped; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	b := mustRunMain(t, dir)
	defer b.shutdown()
	sup := devClient(t, dir, "toezichthouder")
	for _, bsn := range acked {
		status, body := get(t, sup, "https://"+b.PublicAddr()+"/fhir/R4/Patient?_summary=count&identifier=http://fhir.nl/fhir/NamingSystem/bsn|"+bsn)
		if status != 200 || !bytes.Contains(body, []byte(`"total":1`)) {
			t.Errorf("acknowledged registration %s lost: %d %s", bsn, status, body)
		}
		status, body = get(t, sup, "https://"+b.PublicAddr()+"/fhir/R4/AuditEvent?_summary=count&subtype=update&patient:identifier=http://fhir.nl/fhir/NamingSystem/bsn|"+bsn)
		if status != 200 || !bytes.Contains(body, []byte(`"total":1`)) {
			t.Errorf("AuditEvent of acknowledged registration %s lost: %d %s", bsn, status, body)
		}
	}
	t.Logf("%d of %d registrations acknowledged before shutdown; all kept", len(acked), len(bsns))
}

// registered sends one index registration; true when it was acknowledged.
func registered(c *http.Client, base, bsn string) bool {
	entry := `{"resourceType":"Patient","identifier":[{"system":"http://fhir.nl/fhir/NamingSystem/bsn","value":"` + bsn + `"}],` +
		`"managingOrganization":{"identifier":{"system":"http://fhir.nl/fhir/NamingSystem/ura","value":"` + uraPharmacy1 + `"}},` +
		`"link":[{"other":{"reference":"https://127.0.0.1:9102/fhir/R4/Patient/` + bsn + `"},"type":"seealso"}]}`
	req, _ := http.NewRequest("PUT", base+"/Patient?identifier=http://fhir.nl/fhir/NamingSystem/bsn|"+bsn, strings.NewReader(entry))
	req.Header.Set("Content-Type", "application/fhir+json")
	resp, err := c.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == 201
}

// validBSNs returns n distinct numbers that pass the eleven-check.
func validBSNs(n int) []string {
	var out []string
	for i := 100000000; len(out) < n; i++ {
		s := strconv.Itoa(i)
		if fhir.ValidBSN(s) {
			out = append(out, s)
		}
	}
	return out
}

// TestOneServePerDataDirectory: a second serve on a data directory that
// a running serve uses stops at start, naming the reason (its consent
// writes would go unseen by the first one's cache); audit verify still
// opens the store beside the running server.
func TestOneServePerDataDirectory(t *testing.T) {
	dir := t.TempDir()
	a := mustRunMain(t, dir)
	defer a.shutdown()
	cfg, err := loadConfig([]string{"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--patient-listen", "",
		"--data-dir", dir, "--log-level", "warn"}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if b, err := start(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), io.Discard); !errors.Is(err, sqlite.ErrServing) {
		if b != nil {
			b.shutdown()
		}
		t.Fatalf("a second serve on %s: %v, want ErrServing", dir, err)
	}
	var out, errOut bytes.Buffer
	if err := realMain(context.Background(), []string{"audit", "verify", "--data-dir", dir}, &out, &errOut, func(string) string { return "" }); err != nil {
		t.Fatalf("audit verify beside the server: %v\n%s", err, errOut.String())
	}
	if !strings.Contains(out.String(), "audit chain intact") {
		t.Errorf("audit verify: %s", out.String())
	}
}
