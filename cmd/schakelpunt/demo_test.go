package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// logBuffer is a bytes.Buffer safe for a writer and a reader at once.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *logBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *logBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// inProcess is `schakelpunt serve` running in this process, as a user runs
// it: through realMain, with its output captured.
type inProcess struct {
	base   string     // the public FHIR base
	out    *logBuffer // stderr: the log and the printed notes
	cancel context.CancelFunc
	done   chan error
}

var servingRE = regexp.MustCompile(`"msg":"schakelpunt serving","fhir":"([^"]+)"`)

// mustServe runs `schakelpunt serve args...` until stop (or the end of
// the test) and waits until it says it is serving.
func mustServeInProcess(t *testing.T, args ...string) *inProcess {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &inProcess{out: &logBuffer{}, cancel: cancel, done: make(chan error, 1)}
	go func() {
		s.done <- realMain(ctx, append([]string{"serve"}, args...), io.Discard, s.out, func(string) string { return "" })
	}()
	t.Cleanup(func() { _ = s.stop() })
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if m := servingRE.FindStringSubmatch(s.out.String()); m != nil {
			s.base = m[1]
			return s
		}
		select {
		case err := <-s.done:
			s.done <- err
			t.Fatalf("serve ended: %v\n%s", err, s.out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("serve did not start:\n%s", s.out.String())
	return nil
}

// stop ends serve as a signal would (its context) and returns its error.
func (s *inProcess) stop() error {
	s.cancel()
	err := <-s.done
	s.done <- err // stop is idempotent
	return err
}

// waitLog waits until the log holds msg at least n times.
func (s *inProcess) waitLog(t *testing.T, msg string, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if strings.Count(s.out.String(), `"msg":"`+msg) >= n {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no log %q (%d times):\n%s", msg, n, s.out.String())
}

// printedCommand is one command of the notes with the comment above it.
type printedCommand struct{ what, line string }

// printedCommands extracts the curl commands from serve's notes.
func printedCommands(notes string) []printedCommand {
	var out []printedCommand
	what := ""
	for _, l := range strings.Split(notes, "\n") {
		switch t := strings.TrimSpace(l); {
		case strings.HasPrefix(t, "# "):
			what = strings.TrimPrefix(t, "# ")
		case strings.HasPrefix(t, "curl "):
			out = append(out, printedCommand{what, t})
			what = ""
		}
	}
	return out
}

// runCurl runs a printed command as a user would paste it: with the real
// curl through a shell when there is one, else by doing what it says
// (certificates, URL) with Go's client. It returns the status and body.
func runCurl(t *testing.T, line string) (int, []byte) {
	t.Helper()
	var out []byte
	if _, err := exec.LookPath("curl"); err == nil {
		if sh, err := exec.LookPath("sh"); err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, sh, "-c", line)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if out, err = cmd.Output(); err != nil {
				t.Fatalf("%s: %v\n%s", line, err, stderr.String())
			}
			i := bytes.LastIndex(out, []byte("\nHTTP "))
			if i < 0 {
				t.Fatalf("%s: no HTTP status at the end of the output:\n%s", line, out)
			}
			status, err := strconv.Atoi(strings.TrimSpace(string(out[i+len("\nHTTP "):])))
			if err != nil {
				t.Fatalf("%s: status: %v", line, err)
			}
			return status, out[:i]
		}
	}
	t.Logf("no curl or sh here: doing the request of %q in Go", line)
	return curlInGo(t, line)
}

// curlInGo does what a printed command asks, parsed with shell quoting.
func curlInGo(t *testing.T, line string) (int, []byte) {
	t.Helper()
	words, err := shellWords(line)
	if err != nil || len(words) == 0 || words[0] != "curl" {
		t.Fatalf("not a curl command: %q (%v)", line, err)
	}
	opts, target := map[string]string{}, ""
	for i := 1; i < len(words); i++ {
		switch w := words[i]; w {
		case "--cacert", "--cert", "--key", "-w":
			if i+1 >= len(words) {
				t.Fatalf("%s without a value", w)
			}
			opts[w] = words[i+1]
			i++
		case "-sS":
		default:
			if strings.HasPrefix(w, "-") {
				t.Fatalf("option %s is not understood here", w)
			}
			target = w
		}
	}
	cert, err := tls.LoadX509KeyPair(opts["--cert"], opts["--key"])
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(opts["--cacert"])
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool}}}
	return get(t, c, target)
}

// shellWords splits a line as sh does for words, single and double
// quotes (without expansions, which the printed commands do not use).
func shellWords(line string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord, quote := false, rune(0)
	for _, r := range line {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			cur.WriteRune(r)
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == ' ' || r == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, errors.New("unterminated quote")
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// bundleOf decodes a Bundle far enough for the checks.
type bundleOf struct {
	ResourceType string `json:"resourceType"`
	Type         string `json:"type"`
	Entry        []struct {
		FullURL  string          `json:"fullUrl"`
		Resource json.RawMessage `json:"resource"`
		Search   struct {
			Mode string `json:"mode"`
		} `json:"search"`
	} `json:"entry"`
}

type resourceHead struct {
	ResourceType string `json:"resourceType"`
	Meta         struct {
		Source string `json:"source"`
	} `json:"meta"`
	Type string `json:"type"`
}

func decodeBundle(t *testing.T, body []byte) (bundleOf, []resourceHead) {
	t.Helper()
	var b bundleOf
	if err := json.Unmarshal(body, &b); err != nil || b.ResourceType != "Bundle" {
		t.Fatalf("not a Bundle (%v): %.300s", err, body)
	}
	heads := make([]resourceHead, len(b.Entry))
	for i, e := range b.Entry {
		_ = json.Unmarshal(e.Resource, &heads[i])
	}
	return b, heads
}

func issueCodes(body []byte) []string {
	var oo struct {
		ResourceType string `json:"resourceType"`
		Issue        []struct {
			Code string `json:"code"`
		} `json:"issue"`
	}
	if json.Unmarshal(body, &oo) != nil || oo.ResourceType != "OperationOutcome" {
		return nil
	}
	var codes []string
	for _, is := range oo.Issue {
		codes = append(codes, is.Code)
	}
	return codes
}

// demoExpectation is what one printed command must show.
type demoExpectation struct {
	role, path string // the command's role (certificate) and request path with query
	status     int
	issue      string // the OperationOutcome's issue code of a denial
	check      func(t *testing.T, body []byte, sources map[string]string)
}

// medicationFrom checks a merged MedicationDispense searchset: entries
// from exactly the named sources (by URA).
func medicationFrom(uras ...string) func(*testing.T, []byte, map[string]string) {
	return func(t *testing.T, body []byte, sources map[string]string) {
		b, heads := decodeBundle(t, body)
		if b.Type != "searchset" {
			t.Errorf("Bundle type %q", b.Type)
		}
		got := map[string]int{}
		for i, h := range heads {
			if h.ResourceType != "MedicationDispense" {
				continue
			}
			got[h.Meta.Source]++
			if !strings.HasPrefix(b.Entry[i].FullURL, h.Meta.Source+"/MedicationDispense/") {
				t.Errorf("fullUrl %s is not at its source %s", b.Entry[i].FullURL, h.Meta.Source)
			}
		}
		for _, ura := range uras {
			if got[sources[ura]] == 0 {
				t.Errorf("no dispenses from %s (%s): %v", ura, sources[ura], got)
			}
			delete(got, sources[ura])
		}
		if len(got) > 0 {
			t.Errorf("dispenses from sources that may not be asked: %v", got)
		}
	}
}

// TestDemoAsNewUser starts `serve --demo` as a newcomer does, runs every
// curl command it prints as printed, and checks each shows what its
// comment says, with an AuditEvent; a restart on the same data directory
// duplicates no registration or consent.
func TestDemoAsNewUser(t *testing.T) {
	dir := t.TempDir()
	args := []string{"--demo", "--data-dir", dir, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--patient-listen", "127.0.0.1:0"}
	s := mustServeInProcess(t, args...)
	notes := s.out.String()
	sources := demoSourceURLs(t, notes)

	bsn := func(b string) string { return "http://fhir.nl/fhir/NamingSystem/bsn|" + b }
	expect := []demoExpectation{
		{"apotheker", "/MedicationDispense?patient.identifier=" + bsn("999911120"), 200, "", medicationFrom(uraPharmacy1, uraPharmacy2)},
		{"huisarts", "/Patient/$summary?identifier=" + bsn("999911120"), 200, "", func(t *testing.T, body []byte, _ map[string]string) {
			b, heads := decodeBundle(t, body)
			if b.Type != "document" || len(heads) == 0 || heads[0].ResourceType != "Composition" {
				t.Errorf("not the GP's summary document: type %q, %d entries", b.Type, len(heads))
			}
		}},
		{"huisarts", "/MedicationDispense?patient.identifier=" + bsn("999900031"), 200, "", medicationFrom(uraPharmacy1)},
		{"apotheker", "/MedicationDispense?patient.identifier=" + bsn("999900006"), 403, "forbidden", nil},
		{"fysiotherapeut", "/MedicationDispense?patient.identifier=" + bsn("999911120"), 403, "forbidden", nil},
		{"toezichthouder", "/AuditEvent?_sort=-date&_count=10", 200, "", func(t *testing.T, body []byte, _ map[string]string) {
			b, heads := decodeBundle(t, body)
			if b.Type != "searchset" || len(heads) == 0 || heads[0].ResourceType != "AuditEvent" {
				t.Errorf("not the access log: type %q, %d entries", b.Type, len(heads))
			}
		}},
	}

	cmds := printedCommands(notes)
	if len(cmds) != len(expect) {
		t.Fatalf("%d commands printed, want %d:\n%s", len(cmds), len(expect), notes)
	}
	sup := devClient(t, dir, "toezichthouder")
	for i, want := range expect {
		cmd := cmds[i]
		t.Run(cmd.what, func(t *testing.T) {
			for _, part := range []string{"/clients/" + want.role + ".crt", s.base + want.path} {
				if !strings.Contains(cmd.line, part) {
					t.Fatalf("the command does not name %s: %s", part, cmd.line)
				}
			}
			status, body := runCurl(t, cmd.line)
			if status != want.status {
				t.Fatalf("HTTP %d, want %d: %.500s", status, want.status, body)
			}
			if want.issue != "" {
				if codes := issueCodes(body); len(codes) == 0 || codes[0] != want.issue {
					t.Errorf("issue codes %v, want %s", codes, want.issue)
				}
				if !strings.Contains(cmd.what, strconv.Itoa(want.status)) {
					t.Errorf("the comment %q does not say %d", cmd.what, want.status)
				}
			}
			if want.check != nil {
				want.check(t, body, sources)
			}
			assertAudited(t, sup, s.base, want.role, want.path, want.status)
		})
	}

	t.Run("the demo's registrations and consents were audited", func(t *testing.T) {
		for _, uzi := range []string{"22222221", "22222222", "22222223"} {
			status, body := get(t, sup, s.base+"/AuditEvent?_summary=count&subtype=update&agent:identifier=http://fhir.nl/fhir/NamingSystem/uzi-nr-sys|"+uzi)
			if status != 200 || bytes.Contains(body, []byte(`"total":0`)) {
				t.Errorf("source %s: %d %s", uzi, status, body)
			}
		}
	})

	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	for _, base := range sources {
		if _, err := http.Get(base); err == nil { // any answer at all: still listening
			t.Errorf("demo source %s still answers after shutdown", base)
		}
	}

	t.Run("restart: no duplicates", func(t *testing.T) {
		again := mustServeInProcess(t, args...)
		defer again.stop()
		counts := []struct {
			path string
			want int
		}{
			{"/Patient?identifier=" + bsn("999911120"), 3},
			{"/Patient?identifier=" + bsn("999900031"), 3},
			{"/Patient?identifier=" + bsn("999900006"), 2},
			{"/Organization?active=true", 3},
			{"/Endpoint?status=active", 3},
		}
		// Each source sees the consents it recorded.
		for _, c := range []struct{ role, bsn string }{{"bron-huisarts", "999911120"}, {"bron-apotheek-1", "999911120"}, {"bron-apotheek-2", "999911120"}, {"bron-apotheek-1", "999900031"}} {
			if n := total(t, devClient(t, dir, c.role), again.base+"/Consent?patient:identifier="+bsn(c.bsn)); n != 1 {
				t.Errorf("%s has %d consents of %s, want 1", c.role, n, c.bsn)
			}
		}
		for _, role := range []string{"bron-huisarts", "bron-apotheek-1", "bron-apotheek-2"} {
			for _, b := range []string{"999900006", "999900018"} {
				if n := total(t, devClient(t, dir, role), again.base+"/Consent?patient:identifier="+bsn(b)); n != 0 {
					t.Errorf("%s has %d consents of %s, want none", role, n, b)
				}
			}
		}
		for _, c := range counts {
			status, body := get(t, sup, again.base+c.path+"&_summary=count")
			var bundle struct {
				Total *int `json:"total"`
			}
			if err := json.Unmarshal(body, &bundle); status != 200 || err != nil || bundle.Total == nil || *bundle.Total != c.want {
				t.Errorf("%s: %d %s, want total %d", c.path, status, body, c.want)
			}
		}
		// The first printed command works again, on the new ports.
		cmds := printedCommands(again.out.String())
		if len(cmds) == 0 {
			t.Fatal("no commands printed after the restart")
		}
		if status, body := runCurl(t, cmds[0].line); status != 200 {
			t.Errorf("%s: %d %.300s", cmds[0].line, status, body)
		} else {
			medicationFrom(uraPharmacy1, uraPharmacy2)(t, body, demoSourceURLs(t, again.out.String()))
		}
	})
}

// total is the total of a search (with _summary=count).
func total(t *testing.T, c *http.Client, u string) int {
	t.Helper()
	status, body := get(t, c, u+"&_summary=count")
	var b struct {
		Total *int `json:"total"`
	}
	if err := json.Unmarshal(body, &b); status != 200 || err != nil || b.Total == nil {
		t.Fatalf("%s: %d %s", u, status, body)
	}
	return *b.Total
}

// demoSourceURLs reads the demo sources' base URLs (by URA) from the notes.
func demoSourceURLs(t *testing.T, notes string) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, match := range regexp.MustCompile(`URA (\d{8})  (https://\S+)`).FindAllStringSubmatch(notes, -1) {
		m[match[1]] = match[2]
	}
	for _, ura := range []string{uraGP, uraPharmacy1, uraPharmacy2} {
		if m[ura] == "" {
			t.Fatalf("no demo source %s in the notes:\n%s", ura, notes)
		}
	}
	return m
}

// demoUZI is the UZI number of a demo role's certificate.
func demoUZI(t *testing.T, role string) string {
	for _, c := range demoClients {
		if c.file == role {
			return c.req.UZI
		}
	}
	t.Fatalf("no demo role %s", role)
	return ""
}

// assertAudited finds the AuditEvent of the request path (by the agent's
// UZI number and the query it records) and checks its outcome.
func assertAudited(t *testing.T, sup *http.Client, base, role, path string, status int) {
	t.Helper()
	u, err := url.Parse(base + path)
	if err != nil {
		t.Fatal(err)
	}
	status2, body := get(t, sup, base+"/AuditEvent?_count=50&agent:identifier=http://fhir.nl/fhir/NamingSystem/uzi-nr-pers|"+demoUZI(t, role))
	if status2 != 200 {
		t.Fatalf("audit search: %d %s", status2, body)
	}
	var events struct {
		Entry []struct {
			Resource struct {
				Outcome string `json:"outcome"`
				Entity  []struct {
					Query string `json:"query"`
				} `json:"entity"`
			} `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(body, &events); err != nil {
		t.Fatal(err)
	}
	wantQuery := u.Query()
	for _, e := range events.Entry {
		for _, en := range e.Resource.Entity {
			raw, err := base64.StdEncoding.DecodeString(en.Query)
			if err != nil || en.Query == "" {
				continue
			}
			// The entity holds the request line: method, path and query.
			p, rawQuery, _ := strings.Cut(string(raw), "?")
			q, err := url.ParseQuery(rawQuery)
			if err != nil || p != "GET "+u.Path || fmt.Sprint(q) != fmt.Sprint(wantQuery) {
				continue
			}
			wantOutcome := "0"
			if status >= 400 {
				wantOutcome = "4"
			}
			if e.Resource.Outcome != wantOutcome {
				t.Errorf("AuditEvent outcome %s, want %s", e.Resource.Outcome, wantOutcome)
			}
			return
		}
	}
	t.Errorf("no AuditEvent of %s %s among %d of that agent", role, path, len(events.Entry))
}
