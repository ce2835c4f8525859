package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/schakelpunt/schakelpunt/access"
	"github.com/schakelpunt/schakelpunt/access/pki"
	"github.com/schakelpunt/schakelpunt/federation/source"
)

// lockedBuffer is a bytes.Buffer safe for the command's logger and the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *lockedBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *lockedBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// sourceFiles writes a CA, the source's server certificate and the
// switching point's client certificate, and returns their paths.
func sourceFiles(t *testing.T) (dir string, client tls.Certificate, roots *x509.CertPool) {
	t.Helper()
	dir = t.TempDir()
	ca, err := pki.Init(filepath.Join(dir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	for prefix, req := range map[string]pki.IssueRequest{
		"bron": {CardType: access.CardServer, UZI: "22222222", URA: uraPharmacy1, DNS: []string{"localhost", "127.0.0.1"}},
		"sp":   {CardType: access.CardServer, UZI: "22222229", URA: "90000999"},
	} {
		certPEM, keyPEM, _, err := ca.Issue(req)
		if err != nil {
			t.Fatal(err)
		}
		if err := pki.WriteFiles(filepath.Join(dir, prefix), certPEM, keyPEM); err != nil {
			t.Fatal(err)
		}
	}
	client, err = tls.LoadX509KeyPair(filepath.Join(dir, "sp.crt"), filepath.Join(dir, "sp.key"))
	if err != nil {
		t.Fatal(err)
	}
	roots = x509.NewCertPool()
	roots.AddCert(ca.Cert)
	return dir, client, roots
}

func TestSourceCommand(t *testing.T) {
	dir, client, roots := sourceFiles(t)
	data := filepath.Join("..", "..", "federation", "source", "testdata", "demo", source.DemoPharmacy1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stderr lockedBuffer
	done := make(chan error, 1)
	go func() {
		done <- realMain(ctx, []string{"source", "--listen", "127.0.0.1:0", "--data", data,
			"--tls-cert", filepath.Join(dir, "bron.crt"), "--tls-key", filepath.Join(dir, "bron.key"),
			"--client-ca", filepath.Join(dir, "pki", "ca.crt")}, &bytes.Buffer{}, &stderr, func(string) string { return "" })
	}()

	// The command logs its base URL once it listens.
	var base string
	for deadline := time.Now().Add(10 * time.Second); base == "" && time.Now().Before(deadline); {
		select {
		case err := <-done:
			t.Fatalf("source ended: %v\n%s", err, stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
		for _, line := range strings.Split(stderr.String(), "\n") {
			var rec struct{ Msg, Base string }
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "source serving" {
				base = rec.Base
			}
		}
	}
	if base == "" {
		t.Fatalf("no base URL logged:\n%s", stderr.String())
	}

	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{client}}}}
	resp, err := c.Get(base + "/MedicationDispense?patient=brug-20417&whenhandedover=ge2026-04-01")
	if err != nil {
		t.Fatal(err)
	}
	var b struct {
		ResourceType, Type string
		Total              int
		Entry              []struct{ FullURL string }
	}
	err = json.NewDecoder(resp.Body).Decode(&b)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || b.Type != "searchset" || b.Total != 3 || len(b.Entry) != 3 || !strings.HasPrefix(b.Entry[0].FullURL, base+"/MedicationDispense/") {
		t.Fatalf("search: %d %+v %v", resp.StatusCode, b, err)
	}

	// Without a client certificate: refused in the handshake.
	bare := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	if resp, err := bare.Get(base + "/metadata"); err == nil {
		resp.Body.Close()
		t.Errorf("no client certificate: admitted with %d", resp.StatusCode)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("source after shutdown: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("source did not shut down")
	}
	if strings.Contains(stderr.String(), "999911120") {
		t.Error("a BSN in the log")
	}
}

func TestSourceCommandErrors(t *testing.T) {
	dir, _, _ := sourceFiles(t)
	good := map[string]string{
		"--listen": "127.0.0.1:0", "--data": filepath.Join("..", "..", "federation", "source", "testdata", "demo", source.DemoGP),
		"--tls-cert": filepath.Join(dir, "bron.crt"), "--tls-key": filepath.Join(dir, "bron.key"), "--client-ca": filepath.Join(dir, "pki", "ca.crt"),
	}
	args := func(change map[string]string) []string {
		out := []string{"source"}
		for _, k := range []string{"--listen", "--data", "--tls-cert", "--tls-key", "--client-ca"} {
			v, ok := change[k]
			if !ok {
				v = good[k]
			}
			if v != "" {
				out = append(out, k, v)
			}
		}
		return out
	}
	tests := []struct {
		name   string
		change map[string]string
		env    map[string]string
		code   int
		want   string
	}{
		{name: "no data", change: map[string]string{"--data": ""}, code: 2, want: "--data"},
		{name: "no client CA", change: map[string]string{"--client-ca": ""}, code: 2, want: "--client-ca"},
		{name: "data from the environment", change: map[string]string{"--data": "", "--client-ca": filepath.Join(dir, "missing.crt")}, env: map[string]string{"SCHAKELPUNT_SOURCE_DATA": good["--data"]}, code: 1, want: "--client-ca"},
		{name: "data directory missing", change: map[string]string{"--data": filepath.Join(dir, "nowhere")}, code: 1, want: "nowhere"},
		{name: "data that is no FHIR", change: map[string]string{"--data": filepath.Join(dir, "pki")}, code: 1, want: "no FHIR JSON files"},
		{name: "key that does not match", change: map[string]string{"--tls-key": filepath.Join(dir, "sp.key")}, code: 1, want: "--tls-cert/--tls-key"},
		{name: "address in use or bad", change: map[string]string{"--listen": "127.0.0.1:notaport"}, code: 1, want: "source"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var stderr lockedBuffer
			err := realMain(ctx, args(tt.change), &bytes.Buffer{}, &stderr, func(k string) string { return tt.env[k] })
			if err == nil {
				t.Fatal("no error")
			}
			if code := exitCode(err); code != tt.code {
				t.Errorf("exit code %d, want %d (%v)", code, tt.code, err)
			}
			var ee *exitError
			if !strings.Contains(err.Error(), tt.want) && !(errors.As(err, &ee) && strings.Contains(ee.err.Error(), tt.want)) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}
