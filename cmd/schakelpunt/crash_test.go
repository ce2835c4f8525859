package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestCrashKeepsAcknowledged is issue 4 item 3: the switching point is
// killed with SIGKILL under load from 16 clients over mutual TLS;
// restarted on the same data directory, it must hold an AuditEvent for
// every request a client got an answer to (2xx or 4xx), every registration
// that was acknowledged, and a hash chain that verifies.
func TestCrashKeepsAcknowledged(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	cfgFile := filepath.Join(dir, "schakelpunt.yaml")
	if err := os.WriteFile(cfgFile, []byte("supervisors:\n  - ura: \"90000009\"\nlog_level: info\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	first := startServe(t, bin, dataDir, cfgFile)
	src := devClient(t, dataDir, "bron-apotheek-1")
	src.Transport.(*http.Transport).MaxIdleConnsPerHost = 16

	// The load: each worker registers index entries under fresh BSNs, and
	// every fifth request is a bad search (400). Each request carries a
	// token of its own in its query: the BSN, or the bad parameter's value.
	var (
		mu    sync.Mutex
		acked = map[string]int{} // token → status the client received
		regs  []string           // BSNs whose registration was acknowledged 2xx
		bsns  bsnSource
		stop  = make(chan struct{})
		wg    sync.WaitGroup
		sent  atomic.Int64
		// inFlight counts requests sent and not yet answered.
		inFlight atomic.Int64
	)
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				default:
				}
				var req *http.Request
				var token string
				if k%5 == 4 {
					token = fmt.Sprintf("w%dr%d", w, k)
					req, _ = http.NewRequest("GET", first.fhir+"/Patient?nonsense="+token, nil)
				} else {
					token = bsns.next()
					req, _ = http.NewRequest("PUT", first.fhir+"/Patient?identifier="+url.QueryEscape("http://fhir.nl/fhir/NamingSystem/bsn|"+token), strings.NewReader(indexEntry(token)))
					req.Header.Set("Content-Type", "application/fhir+json")
				}
				sent.Add(1)
				inFlight.Add(1)
				resp, err := src.Do(req)
				if err != nil {
					inFlight.Add(-1)
					continue // no answer: not acknowledged (the server is gone, or going)
				}
				_, rerr := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				inFlight.Add(-1)
				if rerr != nil || resp.StatusCode >= 500 {
					continue
				}
				mu.Lock()
				acked[token] = resp.StatusCode
				if resp.StatusCode < 300 && req.Method == "PUT" {
					regs = append(regs, token)
				}
				mu.Unlock()
				if resp.StatusCode >= 300 && resp.StatusCode != 400 {
					t.Errorf("%s %s: %d", req.Method, req.URL, resp.StatusCode)
				}
			}
		}(w)
	}

	// Kill it in the middle of the load, once it has acknowledged a fair
	// number of requests.
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= 300 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	underWay := inFlight.Load()
	first.kill(t)
	close(stop)
	wg.Wait()
	if underWay == 0 {
		t.Error("no request was under way when the process was killed")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(acked) < 50 || len(regs) < 25 {
		t.Fatalf("only %d acknowledged requests (%d registrations) before the kill: the test proves nothing", len(acked), len(regs))
	}
	t.Logf("%d requests sent, %d acknowledged (%d registrations), %d under way at SIGKILL", sent.Load(), len(acked), len(regs), underWay)

	second := startServe(t, bin, dataDir, cfgFile)
	supervisor := devClient(t, dataDir, "toezichthouder")
	src = devClient(t, dataDir, "bron-apotheek-1")

	t.Run("every acknowledged request has its AuditEvent", func(t *testing.T) {
		events := fetchNDJSON(t, supervisor, second.fhir+"/AuditEvent?_format=application/fhir%2Bndjson")
		outcome := map[string]string{} // token → the event's outcome
		for _, ev := range events {
			var doc struct {
				Outcome string `json:"outcome"`
				Entity  []struct {
					Query string `json:"query"`
				} `json:"entity"`
			}
			if err := json.Unmarshal(ev, &doc); err != nil {
				t.Fatal(err)
			}
			for _, e := range doc.Entity {
				if tok := tokenOf(e.Query); tok != "" {
					if _, twice := outcome[tok]; twice {
						t.Errorf("two AuditEvents for request %s", tok)
					}
					outcome[tok] = doc.Outcome
				}
			}
		}
		missing := 0
		for tok, status := range acked {
			got, ok := outcome[tok]
			switch {
			case !ok:
				missing++
				if missing <= 10 {
					t.Errorf("request %s was answered %d but has no AuditEvent", tok, status)
				}
			case got != map[bool]string{true: "0", false: "4"}[status < 400]:
				t.Errorf("request %s was answered %d, its AuditEvent says outcome %s", tok, status, got)
			}
		}
		if missing > 0 {
			t.Errorf("%d of %d acknowledged requests lost their AuditEvent", missing, len(acked))
		}
	})

	t.Run("every acknowledged registration is readable", func(t *testing.T) {
		entries := fetchNDJSON(t, src, second.fhir+"/Patient?_format=application/fhir%2Bndjson")
		stored := map[string]bool{}
		for _, e := range entries {
			var p struct {
				Identifier []struct {
					Value string `json:"value"`
				} `json:"identifier"`
			}
			if err := json.Unmarshal(e, &p); err != nil {
				t.Fatal(err)
			}
			for _, id := range p.Identifier {
				stored[id.Value] = true
			}
		}
		lost := 0
		for _, bsn := range regs {
			if !stored[bsn] {
				lost++
			}
		}
		if lost > 0 {
			t.Errorf("%d of %d acknowledged registrations are gone after the crash", lost, len(regs))
		}
	})

	second.stop(t)

	t.Run("audit verify", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, "audit", "verify", "--data-dir", dataDir, "--log-level", "warn")
		cmd.Env = cleanEnv()
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("audit verify: %v\n%s", err, out)
		}
		if !bytes.Contains(out, []byte("audit chain intact")) {
			t.Errorf("audit verify: %s", out)
		}
	})
}

// buildBinary builds schakelpunt into a temporary directory, with -race
// when the test itself runs with it (the build cache is then shared).
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "schakelpunt")
	args := []string{"build", "-o", bin}
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			if s.Key == "-race" && s.Value == "true" {
				args = append(args, "-race")
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", append(args, ".")...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// cleanEnv is the environment without SCHAKELPUNT_* settings that would
// change what the test starts.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SCHAKELPUNT_") {
			env = append(env, kv)
		}
	}
	return env
}

// served is a running schakelpunt serve process.
type served struct {
	cmd         *exec.Cmd
	fhir, admin string
	exited      chan struct{}
	logs        *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) add(line string) {
	s.mu.Lock()
	s.b.WriteString(line + "\n")
	s.mu.Unlock()
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startServe starts `schakelpunt serve` on loopback ports the system
// chooses, learns them from its "schakelpunt serving" log line, and waits
// until /ready answers.
func startServe(t *testing.T, bin, dataDir, cfgFile string) *served {
	t.Helper()
	cmd := exec.Command(bin, "serve", "--config", cfgFile, "--data-dir", dataDir,
		"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--patient-listen", "127.0.0.1:0")
	cmd.Env = cleanEnv()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &served{cmd: cmd, exited: make(chan struct{}), logs: &syncBuffer{}}
	t.Cleanup(func() { s.kill(t) })
	addrs := make(chan [2]string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			s.logs.add(line)
			var rec struct {
				Msg   string `json:"msg"`
				FHIR  string `json:"fhir"`
				Admin string `json:"admin"`
			}
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "schakelpunt serving" {
				addrs <- [2]string{rec.FHIR, rec.Admin}
			}
		}
		_ = cmd.Wait()
		close(s.exited)
	}()
	select {
	case a := <-addrs:
		s.fhir, s.admin = a[0], a[1]
	case <-s.exited:
		t.Fatalf("serve exited before serving:\n%s", s.logs)
	case <-time.After(60 * time.Second):
		t.Fatalf("serve did not start:\n%s", s.logs)
	}
	for _, u := range []string{s.fhir, s.admin} {
		if pu, err := url.Parse(u); err != nil || pu.Hostname() != "127.0.0.1" {
			t.Fatalf("serve listens on %s, not on loopback", u)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(s.admin + "/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s/ready never answered 200:\n%s", s.admin, s.logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill sends SIGKILL to the process this test started, and reaps it.
func (s *served) kill(t *testing.T) {
	select {
	case <-s.exited:
		return
	default:
	}
	if err := s.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("kill: %v", err)
	}
	<-s.exited
}

// stop asks the process to shut down (SIGTERM) and waits for it.
func (s *served) stop(t *testing.T) {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.exited:
		if code := s.cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("serve exited %d after SIGTERM:\n%s", code, s.logs)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("serve did not stop after SIGTERM:\n%s", s.logs)
		s.kill(t)
	}
}

// fetchNDJSON reads an NDJSON search, one raw resource a line.
func fetchNDJSON(t *testing.T, c *http.Client, u string) [][]byte {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/fhir+ndjson") {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %d %s %s", u, resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	var out [][]byte
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		out = append(out, bytes.Clone(sc.Bytes()))
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// tokenOf finds the load's token in an AuditEvent's query entity: the BSN
// of a registration, or the value of the bad parameter.
func tokenOf(query64 string) string {
	q, err := base64.StdEncoding.DecodeString(query64)
	if err != nil {
		return ""
	}
	_, raw, ok := strings.Cut(string(q), "?")
	if !ok {
		return ""
	}
	v, err := url.ParseQuery(raw)
	if err != nil {
		return ""
	}
	if tok := v.Get("nonsense"); tok != "" {
		return tok
	}
	if id := v.Get("identifier"); strings.HasPrefix(id, "http://fhir.nl/fhir/NamingSystem/bsn|") {
		return strings.TrimPrefix(id, "http://fhir.nl/fhir/NamingSystem/bsn|")
	}
	return ""
}

// bsnSource hands out distinct BSNs that pass the eleven-check.
type bsnSource struct{ n atomic.Int64 }

func (b *bsnSource) next() string {
	for {
		prefix := fmt.Sprintf("%08d", 30000000+b.n.Add(1))
		sum := 0
		for i := 0; i < 8; i++ {
			sum += (9 - i) * int(prefix[i]-'0')
		}
		if d := sum % 11; d < 10 { // 9·d1 + … + 2·d8 − d9 ≡ 0 (mod 11)
			return prefix + string(rune('0'+d))
		}
	}
}

// indexEntry is an index entry of Apotheek De Brug (DESIGN.md section 9).
func indexEntry(bsn string) string {
	return `{"resourceType":"Patient","identifier":[{"system":"http://fhir.nl/fhir/NamingSystem/bsn","value":"` + bsn + `"}],` +
		`"managingOrganization":{"identifier":{"system":"http://fhir.nl/fhir/NamingSystem/ura","value":"` + uraPharmacy1 + `"}},` +
		`"link":[{"other":{"reference":"https://127.0.0.1:9102/fhir/R4/Patient/` + bsn + `"},"type":"seealso"}]}`
}
