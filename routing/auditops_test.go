package routing

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/schakelpunt/schakelpunt/access"
	"github.com/schakelpunt/schakelpunt/access/mtls"
	"github.com/schakelpunt/schakelpunt/access/pki"
	"github.com/schakelpunt/schakelpunt/audit"
	"github.com/schakelpunt/schakelpunt/store"
)

// storedEvent is an AuditEvent as the store keeps it, with what the tests
// look at.
type storedEvent struct {
	seq      int64
	id       string
	updated  time.Time
	subtype  string
	outcome  string
	agentUZI string
	query    string
}

// storedEvents reads the whole chain straight from the store: reading it
// this way adds no AuditEvent of its own.
func storedEvents(tb testing.TB, h *harness) []storedEvent {
	tb.Helper()
	return storedEventsAfter(tb, h, 0)
}

// storedEventsAfter reads the chain after sequence number after.
func storedEventsAfter(tb testing.TB, h *harness, after int64) []storedEvent {
	tb.Helper()
	var out []storedEvent
	for {
		entries, err := h.audit.ScanAudit(context.Background(), after, 1000)
		if err != nil {
			tb.Fatal(err)
		}
		for _, e := range entries {
			out = append(out, eventOf(tb, e))
			after = e.Seq
		}
		if len(entries) == 0 {
			return out
		}
	}
}

func eventOf(tb testing.TB, e store.AuditEntry) storedEvent {
	tb.Helper()
	var doc struct {
		ID        string `json:"id"`
		Extension []struct {
			URL         string `json:"url"`
			ValueCoding *struct {
				Code string `json:"code"`
			} `json:"valueCoding"`
		} `json:"extension"`
		Subtype []struct {
			Code string `json:"code"`
		} `json:"subtype"`
		Outcome string `json:"outcome"`
		Agent   []struct {
			Who struct {
				Identifier *struct {
					Value string `json:"value"`
				} `json:"identifier"`
			} `json:"who"`
		} `json:"agent"`
		Entity []struct {
			Query string `json:"query"`
		} `json:"entity"`
	}
	if err := json.Unmarshal(e.Resource.Body, &doc); err != nil {
		tb.Fatalf("stored AuditEvent %d: %v", e.Seq, err)
	}
	ev := storedEvent{seq: e.Seq, id: doc.ID, updated: e.Resource.Updated, outcome: doc.Outcome}
	if len(doc.Subtype) > 0 {
		ev.subtype = doc.Subtype[0].Code
	}
	// Our own name of an interaction that is no restful-interaction code
	// ($verify, $export) is kept in an extension beside the subtype.
	for _, x := range doc.Extension {
		if x.ValueCoding != nil && strings.HasSuffix(x.URL, "-interaction") {
			ev.subtype = x.ValueCoding.Code
		}
	}
	if len(doc.Agent) > 0 && doc.Agent[0].Who.Identifier != nil {
		ev.agentUZI = doc.Agent[0].Who.Identifier.Value
	}
	for _, en := range doc.Entity {
		if en.Query != "" {
			q, _ := base64.StdEncoding.DecodeString(en.Query)
			ev.query = string(q)
		}
	}
	return ev
}

// rawDo sends a request and returns the answer unparsed (NDJSON, empty
// bodies). target is a path under the base or an absolute URL at the
// harness's public base.
func rawDo(tb testing.TB, h *harness, method, target string, headers ...string) (int, http.Header, []byte) {
	tb.Helper()
	target = strings.TrimPrefix(target, "https://sp.test"+BasePath)
	req, err := http.NewRequest(method, h.srv.URL+BasePath+target, nil)
	if err != nil {
		tb.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := h.client.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		// Typically a Content-Length header that does not fit the body.
		tb.Errorf("%s %s: %d, Content-Length %q, body of %d bytes cut off: %v", method, target, resp.StatusCode, resp.Header.Get("Content-Length"), len(b), err)
	}
	return resp.StatusCode, resp.Header, b
}

// ndjsonLines parses an NDJSON body into its resources.
func ndjsonLines(tb testing.TB, body []byte) []map[string]any {
	tb.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			tb.Fatalf("empty NDJSON line")
		}
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			tb.Fatalf("NDJSON line is not JSON: %s", line)
		}
		out = append(out, m)
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
	return out
}

// parameters reads a Parameters resource into name → value.
func parameters(tb testing.TB, r response) map[string]any {
	tb.Helper()
	if r.body["resourceType"] != "Parameters" {
		tb.Fatalf("not Parameters: %s", r.raw)
	}
	out := map[string]any{}
	for _, p := range r.body["parameter"].([]any) {
		m := p.(map[string]any)
		for k, v := range m {
			if strings.HasPrefix(k, "value") {
				out[m["name"].(string)] = v
			}
		}
	}
	return out
}

// tamper opens the harness's database file beside the running store, as
// someone with access to the disk would.
func tamper(tb testing.TB, h *harness, stmts func(db *sql.DB) error) {
	tb.Helper()
	db, err := sql.Open("sqlite", h.st.Path()+"?_pragma=busy_timeout(10000)")
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	if err := stmts(db); err != nil {
		tb.Fatalf("tamper: %v", err)
	}
}

func seedRequests(tb testing.TB, h *harness) {
	tb.Helper()
	for i, bsn := range []string{"999911120", "999900006", "999900018"} {
		if r := do(tb, h, "POST", "/Patient", withBSN(tb, "patient.json", bsn)); r.status != 201 {
			tb.Fatalf("seed %d: %d %s", i, r.status, r.raw)
		}
	}
	if r := do(tb, h.as("gp"), "GET", "/Patient?identifier=999911120", nil); r.status != 403 {
		tb.Fatalf("seed: %d", r.status)
	}
	if r := do(tb, h.as("gp"), "GET", "/metadata", nil); r.status != 200 {
		tb.Fatalf("seed: %d", r.status)
	}
}

// TestVerify: AuditEvent/$verify for supervisors only, intact on an
// untouched store and reporting the first broken link after the database
// file was edited behind the server's back.
func TestVerify(t *testing.T) {
	h := mustServe(t)
	seedRequests(t, h)

	who := []struct {
		role, method string
		status       int
		code         string
	}{
		{"supervisor", "GET", 200, ""},
		{"supervisor", "POST", 200, ""},
		{"gp", "GET", 403, "forbidden"},
		{"pharmacist", "POST", 403, "forbidden"},
		{"source", "GET", 403, "forbidden"},
		{"employee", "GET", 403, "forbidden"},
		{"no-uzi", "GET", 403, "security"},
	}
	for _, c := range who {
		t.Run(c.role+" "+c.method, func(t *testing.T) {
			before := storedEvents(t, h)
			r := do(t, h.as(c.role), c.method, "/AuditEvent/$verify", nil)
			if r.status != c.status {
				t.Fatalf("status %d, want %d: %s", r.status, c.status, r.raw)
			}
			if c.code != "" && !contains(r.issueCodes(), c.code) {
				t.Errorf("codes %v, want %q", r.issueCodes(), c.code)
			}
			if r.status == 200 {
				p := parameters(t, r)
				if p["intact"] != true {
					t.Errorf("intact %v on an untouched store: %s", p["intact"], r.raw)
				}
				// The $verify's own event is stored after it answered.
				if p["checked"] != float64(len(before)) {
					t.Errorf("checked %v, want %d", p["checked"], len(before))
				}
				last := before[len(before)-1]
				if head, _ := p["head"].(string); !strings.HasPrefix(head, fmt.Sprintf("%d ", last.seq)) {
					t.Errorf("head %q, want seq %d", head, last.seq)
				}
				if _, broken := p["brokenAt"]; broken {
					t.Errorf("brokenAt on an intact chain: %s", r.raw)
				}
			}
			after := storedEvents(t, h)
			if len(after) != len(before)+1 {
				t.Fatalf("%d AuditEvents for one $verify", len(after)-len(before))
			}
			ev := after[len(after)-1]
			wantOutcome := "0"
			if c.status >= 400 {
				wantOutcome = "4"
			}
			if ev.subtype != "$verify" || ev.outcome != wantOutcome || (roles[c.role].UZI != "" && ev.agentUZI != roles[c.role].UZI) {
				t.Errorf("audit of the $verify: %+v", ev)
			}
		})
	}

	// Each case edits a fresh store directly and expects the first broken
	// link. victim picks the event (index into the chain) to attack.
	tampering := []struct {
		name   string
		victim func(evs []storedEvent) storedEvent
		attack func(db *sql.DB, ev storedEvent) error
		// brokenAt is relative to the victim's seq.
		brokenAt int64
		reason   string
		names    bool // the report names the event
	}{
		{
			name:   "edited event",
			victim: func(evs []storedEvent) storedEvent { return evs[1] },
			attack: func(db *sql.DB, ev storedEvent) error {
				var body []byte
				if err := db.QueryRow(`SELECT body FROM audit_chain WHERE id = ?`, ev.id).Scan(&body); err != nil {
					return err
				}
				edited := bytes.Replace(body, []byte(`"outcome":"4"`), []byte(`"outcome":"0"`), 1)
				if bytes.Equal(edited, body) {
					edited = bytes.Replace(body, []byte(`"outcome":"0"`), []byte(`"outcome":"4"`), 1)
				}
				_, err := db.Exec(`UPDATE audit_chain SET body = ? WHERE id = ?`, edited, ev.id)
				return err
			},
			reason: "changed",
			names:  true,
		},
		{
			name:   "edited chain link",
			victim: func(evs []storedEvent) storedEvent { return evs[2] },
			attack: func(db *sql.DB, ev storedEvent) error {
				_, err := db.Exec(`UPDATE audit_chain SET prev = 'forged' WHERE seq = ?`, ev.seq)
				return err
			},
			reason: "previous link",
			names:  true,
		},
		{
			name:   "deleted event",
			victim: func(evs []storedEvent) storedEvent { return evs[1] },
			attack: func(db *sql.DB, ev storedEvent) error {
				_, err := db.Exec(`DELETE FROM audit_chain WHERE id = ?`, ev.id)
				return err
			},
			reason: "missing",
		},
		{
			name:   "removed tail",
			victim: func(evs []storedEvent) storedEvent { return evs[len(evs)-1] },
			attack: func(db *sql.DB, ev storedEvent) error {
				_, err := db.Exec(`DELETE FROM audit_chain WHERE id = ?`, ev.id)
				return err
			},
			reason: "removed",
		},
	}
	for _, c := range tampering {
		t.Run(c.name, func(t *testing.T) {
			h := mustServe(t)
			seedRequests(t, h)
			victim := c.victim(storedEvents(t, h))
			tamper(t, h, func(db *sql.DB) error { return c.attack(db, victim) })
			r := do(t, h.as("supervisor"), "GET", "/AuditEvent/$verify", nil)
			if r.status != 200 {
				t.Fatalf("%d %s", r.status, r.raw)
			}
			p := parameters(t, r)
			if p["intact"] != false {
				t.Fatalf("intact %v after tampering: %s", p["intact"], r.raw)
			}
			if p["brokenAt"] != float64(victim.seq+c.brokenAt) {
				t.Errorf("brokenAt %v, want %d", p["brokenAt"], victim.seq+c.brokenAt)
			}
			if reason, _ := p["reason"].(string); !strings.Contains(reason, c.reason) {
				t.Errorf("reason %q, want it to mention %q", reason, c.reason)
			}
			if c.names && p["event"] != "AuditEvent/"+victim.id {
				t.Errorf("event %v, want AuditEvent/%s", p["event"], victim.id)
			}
			if p["checked"] != float64(victim.seq-1) {
				t.Errorf("checked %v, want the %d events before the break", p["checked"], victim.seq-1)
			}
		})
	}
}

// secondSupervisor is a client for another supervisor certificate (same
// supervising organisation, another person), issued by the harness's CA.
func secondSupervisor(tb testing.TB, h *harness) *harness {
	tb.Helper()
	ca, err := pki.Load(filepath.Join(filepath.Dir(h.st.Path()), "pki"))
	if err != nil {
		tb.Fatal(err)
	}
	cert := mustCert(tb, ca, pki.IssueRequest{CardType: access.CardNamedEmployee, UZI: "33333332", URA: "90000009"})
	c := *h
	c.client = &http.Client{Transport: &http.Transport{TLSClientConfig: mtls.NewClientConfig(cert, []*x509.Certificate{ca.Cert})}}
	return &c
}

// pollExport polls a status URL until the export is done.
func pollExport(tb testing.TB, h *harness, statusURL string) response {
	tb.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		status, header, body := rawDo(tb, h, "GET", statusURL)
		switch status {
		case http.StatusOK:
			r := response{status: status, header: header, raw: body}
			if err := json.Unmarshal(body, &r.body); err != nil {
				tb.Fatalf("manifest is not JSON: %s", body)
			}
			return r
		case http.StatusAccepted:
			if header.Get("Retry-After") == "" {
				tb.Errorf("202 without Retry-After")
			}
		default:
			tb.Fatalf("export status: %d %s", status, body)
		}
		if time.Now().After(deadline) {
			tb.Fatal("the export did not finish in time")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type manifestOutput struct {
	Type  string `json:"type"`
	URL   string `json:"url"`
	Count int    `json:"count"`
}

func outputOf(tb testing.TB, m response) manifestOutput {
	tb.Helper()
	var man struct {
		TransactionTime string           `json:"transactionTime"`
		Request         string           `json:"request"`
		Output          []manifestOutput `json:"output"`
		Error           []any            `json:"error"`
	}
	if err := json.Unmarshal(m.raw, &man); err != nil {
		tb.Fatal(err)
	}
	if len(man.Output) != 1 || man.Output[0].Type != "AuditEvent" || man.TransactionTime == "" || man.Error == nil {
		tb.Fatalf("manifest: %s", m.raw)
	}
	if man.Request != "https://sp.test/fhir/R4/AuditEvent/$export" {
		tb.Errorf("manifest request %q", man.Request)
	}
	if !strings.HasPrefix(man.Output[0].URL, "https://sp.test/fhir/R4/$export-file/") {
		tb.Errorf("output url %q", man.Output[0].URL)
	}
	return man.Output[0]
}

// kickOff starts an export and returns its status URL.
func kickOff(tb testing.TB, h *harness, query string) string {
	tb.Helper()
	r := do(tb, h, "GET", "/AuditEvent/$export"+query, nil, "Prefer", "respond-async")
	if r.status != http.StatusAccepted {
		tb.Fatalf("kick-off: %d %s", r.status, r.raw)
	}
	loc := r.header.Get("Content-Location")
	if !strings.HasPrefix(loc, "https://sp.test/fhir/R4/$export-status/") {
		tb.Fatalf("Content-Location %q", loc)
	}
	return loc
}

// TestExport: the Bulk Data style export of the access log, end to end.
func TestExport(t *testing.T) {
	h := mustServe(t)
	sup := h.as("supervisor")
	seedRequests(t, h)

	t.Run("kick-off refusals", func(t *testing.T) {
		cases := []struct {
			name, role, query string
			async             bool
			status            int
			code, expression  string
		}{
			{"without Prefer: respond-async", "supervisor", "", false, 400, "invalid", ""},
			{"_type other than AuditEvent", "supervisor", "?_type=Patient", true, 400, "not-supported", "_type"},
			{"a second _type", "supervisor", "?_type=AuditEvent&_type=Patient", true, 400, "not-supported", "_type"},
			{"_since not an instant", "supervisor", "?_since=yesterday", true, 400, "invalid", "_since"},
			{"_outputFormat other than NDJSON", "supervisor", "?_outputFormat=text/csv", true, 400, "not-supported", "_outputFormat"},
			{"unknown parameter", "supervisor", "?_elements=id", true, 400, "not-supported", "_elements"},
			{"a GP", "gp", "", true, 403, "forbidden", ""},
			{"a source system", "source", "", true, 403, "forbidden", ""},
			{"an employee", "employee", "", true, 403, "forbidden", ""},
			{"no UZI identity", "no-uzi", "", true, 403, "security", ""},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				var hdr []string
				if c.async {
					hdr = []string{"Prefer", "respond-async"}
				}
				before := len(storedEvents(t, h))
				r := do(t, h.as(c.role), "GET", "/AuditEvent/$export"+c.query, nil, hdr...)
				if r.status != c.status {
					t.Fatalf("status %d, want %d: %s", r.status, c.status, r.raw)
				}
				if !contains(r.issueCodes(), c.code) {
					t.Errorf("codes %v, want %q", r.issueCodes(), c.code)
				}
				if c.expression != "" && !contains(r.expressions(), c.expression) {
					t.Errorf("expressions %v, want %q", r.expressions(), c.expression)
				}
				if r.header.Get("Content-Location") != "" {
					t.Errorf("a refused kick-off has a status URL")
				}
				evs := storedEvents(t, h)
				if len(evs) != before+1 || evs[len(evs)-1].subtype != "$export" || evs[len(evs)-1].outcome != "4" {
					t.Errorf("the refusal is not audited once as a failed $export: %+v", evs[before:])
				}
			})
		}
	})

	t.Run("kick-off, status, download", func(t *testing.T) {
		before := storedEvents(t, h)
		statusURL := kickOff(t, sup, "")
		out := outputOf(t, pollExport(t, sup, statusURL))
		// The export is the chain as it stood at kick-off: its own
		// kick-off is recorded after.
		if out.Count != len(before) {
			t.Errorf("manifest count %d, want the %d events before the kick-off", out.Count, len(before))
		}
		status, header, body := rawDo(t, sup, "GET", out.URL)
		if status != 200 || !strings.HasPrefix(header.Get("Content-Type"), "application/fhir+ndjson") {
			t.Fatalf("download: %d %s %s", status, header.Get("Content-Type"), body)
		}
		lines := ndjsonLines(t, body)
		if len(lines) != out.Count {
			t.Fatalf("%d lines, manifest says %d", len(lines), out.Count)
		}
		for i, l := range lines {
			if l["resourceType"] != "AuditEvent" || l["id"] != before[i].id {
				t.Errorf("line %d: %v %v, want AuditEvent %s (chain order)", i, l["resourceType"], l["id"], before[i].id)
			}
			if !strings.Contains(string(mustJSON(t, l)), audit.ChainExtension) {
				t.Errorf("line %d carries no chain link", i)
			}
		}
		// Downloading again works: the file stays until cancelled.
		if status, _, again := rawDo(t, sup, "GET", out.URL); status != 200 || !bytes.Equal(again, body) {
			t.Errorf("second download: %d, same %v", status, bytes.Equal(again, body))
		}
		t.Run("every step is audited", func(t *testing.T) {
			evs := storedEvents(t, h)[len(before):]
			count := map[string]int{}
			for _, ev := range evs {
				if ev.agentUZI != roles["supervisor"].UZI {
					t.Errorf("event of %s: %+v", ev.agentUZI, ev)
				}
				if ev.outcome != "0" {
					t.Errorf("failed step: %+v", ev)
				}
				count[ev.subtype]++
			}
			if count["$export"] != 1 || count["$export-file"] != 2 || count["$export-status"] < 1 || len(evs) != 3+count["$export-status"] {
				t.Errorf("audited steps %v (%d events)", count, len(evs))
			}
			if !strings.HasSuffix(evs[0].query, "/AuditEvent/$export") || !strings.HasSuffix(evs[len(evs)-1].query, "/AuditEvent.ndjson") {
				t.Errorf("queries: %q ... %q", evs[0].query, evs[len(evs)-1].query)
			}
		})
	})

	t.Run("_since", func(t *testing.T) {
		time.Sleep(5 * time.Millisecond)
		since := time.Now().UTC()
		time.Sleep(5 * time.Millisecond)
		if r := do(t, h.as("pharmacist"), "GET", "/metadata", nil); r.status != 200 {
			t.Fatal(r.status)
		}
		if r := do(t, h.as("gp"), "GET", "/Patient?identifier=999900006", nil); r.status != 403 {
			t.Fatal(r.status)
		}
		all := storedEvents(t, h)
		var want []string
		for _, ev := range all {
			if !ev.updated.Before(since) {
				want = append(want, ev.id)
			}
		}
		if len(want) != 2 {
			t.Fatalf("%d events after the mark, want the 2 just made", len(want))
		}
		statusURL := kickOff(t, sup, "?_type=AuditEvent&_outputFormat=application/fhir%2Bndjson&_since="+url.QueryEscape(since.Format("2006-01-02T15:04:05.000000Z07:00")))
		out := outputOf(t, pollExport(t, sup, statusURL))
		_, _, body := rawDo(t, sup, "GET", out.URL)
		lines := ndjsonLines(t, body)
		if out.Count != len(want) || len(lines) != len(want) {
			t.Fatalf("count %d, %d lines, want %d", out.Count, len(lines), len(want))
		}
		for i, l := range lines {
			if l["id"] != want[i] {
				t.Errorf("line %d: %v, want %s", i, l["id"], want[i])
			}
		}
	})

	t.Run("an export belongs to whoever started it", func(t *testing.T) {
		statusURL := kickOff(t, sup, "")
		out := outputOf(t, pollExport(t, sup, statusURL))
		other := secondSupervisor(t, h)
		cases := []struct {
			name        string
			who         *harness
			method, url string
			status      int
			code        string
		}{
			{"another supervisor's status", other, "GET", statusURL, 404, "not-found"},
			{"another supervisor's download", other, "GET", out.URL, 404, "not-found"},
			{"another supervisor's cancel", other, "DELETE", statusURL, 404, "not-found"},
			{"a GP's status", h.as("gp"), "GET", statusURL, 403, "forbidden"},
			{"a GP's download", h.as("gp"), "GET", out.URL, 403, "forbidden"},
			{"a source's cancel", h.as("source"), "DELETE", statusURL, 403, "forbidden"},
			{"an unknown job", sup, "GET", "/$export-status/nope", 404, "not-found"},
			{"an unknown file", sup, "GET", strings.TrimSuffix(out.URL, "AuditEvent.ndjson") + "Patient.ndjson", 404, "not-found"},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				before := len(storedEvents(t, h))
				status, _, body := rawDo(t, c.who, c.method, c.url)
				r := response{status: status, raw: body}
				_ = json.Unmarshal(body, &r.body)
				if status != c.status || !contains(r.issueCodes(), c.code) {
					t.Fatalf("%d %v, want %d %s: %s", status, r.issueCodes(), c.status, c.code, body)
				}
				if bytes.Contains(body, []byte(`"resourceType":"AuditEvent"`)) {
					t.Error("the export leaked")
				}
				evs := storedEvents(t, h)
				if len(evs) != before+1 || evs[before].outcome != "4" {
					t.Errorf("the refusal is not audited once: %+v", evs[before:])
				}
			})
		}
		// The owner still has it.
		if status, _, _ := rawDo(t, sup, "GET", out.URL); status != 200 {
			t.Errorf("the owner's download after the others tried: %d", status)
		}

		t.Run("DELETE cancels", func(t *testing.T) {
			status, _, body := rawDo(t, sup, "DELETE", statusURL)
			if status != http.StatusAccepted {
				t.Fatalf("cancel: %d %s", status, body)
			}
			evs := storedEvents(t, h)
			if last := evs[len(evs)-1]; last.subtype != "$export-status" || last.outcome != "0" || !strings.HasPrefix(last.query, "DELETE ") {
				t.Errorf("the cancel is not audited: %+v", last)
			}
			for _, u := range []string{statusURL, out.URL} {
				status, _, body := rawDo(t, sup, "GET", u)
				if status != 404 {
					t.Errorf("%s after cancel: %d %s", u, status, body)
				}
			}
			if status, _, _ := rawDo(t, sup, "DELETE", statusURL); status != 404 {
				t.Errorf("second cancel: %d", status)
			}
			job := statusURL[strings.LastIndex(statusURL, "/")+1:]
			if _, err := os.Stat(filepath.Join(filepath.Dir(h.st.Path()), "exports", job)); !os.IsNotExist(err) {
				t.Errorf("the cancelled export's files remain: %v", err)
			}
		})
	})

	t.Run("fail closed: no download without its AuditEvent", func(t *testing.T) {
		statusURL := kickOff(t, sup, "")
		out := outputOf(t, pollExport(t, sup, statusURL))
		h.audit.broken.Store(true)
		defer h.audit.broken.Store(false)
		for _, u := range []string{out.URL, statusURL} {
			status, header, body := rawDo(t, sup, "GET", u)
			if status != 503 || bytes.Contains(body, []byte(`"AuditEvent"`)) || strings.Contains(header.Get("Content-Type"), "ndjson") {
				t.Errorf("%s with the audit down: %d %s %s", u, status, header.Get("Content-Type"), body)
			}
		}
		r := do(t, sup, "GET", "/AuditEvent/$export", nil, "Prefer", "respond-async")
		if r.status != 503 || r.header.Get("Content-Location") != "" || !contains(r.issueCodes(), "transient") {
			t.Errorf("kick-off with the audit down: %d %v %v", r.status, r.header, r.issueCodes())
		}
	})
}

// TestExportSweep: finished exports expire with their files, and export
// directories no job knows are removed once as old.
func TestExportSweep(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	s := &server{exportDir: dir, exports: &exportJobs{jobs: map[string]*exportJob{}}, now: func() time.Time { return now }}
	mk := func(name string, age time.Duration) string {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(p, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(p, "AuditEvent.ndjson"), []byte("{}\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		old := time.Now().Add(-age)
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
		return p
	}
	noop := func() {}
	s.exports.jobs["expired"] = &exportJob{done: true, finished: now.Add(-exportTTL - time.Minute), dir: mk("expired", 0), cancel: noop}
	s.exports.jobs["fresh"] = &exportJob{done: true, finished: now.Add(-time.Hour), dir: mk("fresh", 0), cancel: noop}
	s.exports.jobs["running"] = &exportJob{started: now.Add(-2 * exportTTL), dir: mk("running", 2*exportTTL), cancel: noop}
	mk("orphan-old", exportTTL+time.Hour)
	mk("orphan-new", time.Minute)
	s.sweepExports()
	for name, want := range map[string]bool{"expired": false, "fresh": true, "running": true, "orphan-old": false, "orphan-new": true} {
		_, err := os.Stat(filepath.Join(dir, name))
		if exists := err == nil; exists != want {
			t.Errorf("%s: exists %v, want %v", name, exists, want)
		}
		if _, known := s.exports.jobs[name]; known && !want {
			t.Errorf("%s: still a job", name)
		}
	}
}

// seedEvents records events straight through a second recorder on the
// harness's audit log (the chain is shared: the harness's recorder
// follows the moved head).
func seedEvents(tb testing.TB, h *harness, agent audit.Agent, n int) {
	tb.Helper()
	defer func(start time.Time) { tb.Logf("seeded %d events in %v", n, time.Since(start)) }(time.Now())
	rec := audit.NewRecorder(h.audit, audit.Options{})
	defer rec.Close()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	const workers = 128 // concurrent writers: the recorder groups them into large commits
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n; i += workers {
				a := agent
				_, err := rec.Record(context.Background(), audit.Event{Interaction: "search-type", Status: 200, Agent: &a,
					Query: fmt.Sprintf("GET /fhir/R4/Consent?seed=%d", i)})
				if err != nil {
					errs <- err
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		tb.Fatal(err)
	}
}

// TestNDJSONSearch: _format=application/fhir+ndjson streams every match,
// over all store pages, one resource a line, within the requester's scope.
func TestNDJSONSearch(t *testing.T) {
	h := mustServe(t)
	gp := audit.Agent{UZINumber: roles["gp"].UZI, CardType: "Z", Role: "01.015", URA: roles["gp"].URA, Address: "127.0.0.1"}
	pharmacist := audit.Agent{UZINumber: roles["pharmacist"].UZI, CardType: "Z", Role: "17.075", URA: roles["pharmacist"].URA, Address: "127.0.0.1"}
	seedEvents(t, h, gp, 1050) // more than one store page (fhir.MaxCount)
	seedEvents(t, h, pharmacist, 60)
	seedRequests(t, h) // and the harness's recorder chains on after them
	known := storedEvents(t, h)

	ids := func(evs []storedEvent, keep func(storedEvent) bool) []string {
		var out []string
		for _, ev := range evs {
			if keep(ev) {
				out = append(out, ev.id)
			}
		}
		return out
	}
	cases := []struct {
		role, query string
		status      int
		code        string
		want        func(storedEvent) bool
	}{
		{"supervisor", "", 200, "", func(storedEvent) bool { return true }},
		{"supervisor", "&outcome=4", 200, "", func(ev storedEvent) bool { return ev.outcome == "4" }},
		{"supervisor", "&agent:identifier=http://fhir.nl/fhir/NamingSystem/uzi-nr-pers|" + roles["pharmacist"].UZI, 200, "", func(ev storedEvent) bool { return ev.agentUZI == roles["pharmacist"].UZI }},
		{"gp", "", 200, "", func(ev storedEvent) bool { return ev.agentUZI == roles["gp"].UZI }},
		{"pharmacist", "", 200, "", func(ev storedEvent) bool { return ev.agentUZI == roles["pharmacist"].UZI }},
		{"physio", "", 200, "", func(ev storedEvent) bool { return ev.agentUZI == roles["physio"].UZI }},
		{"source", "", 403, "forbidden", nil},
		{"employee", "", 403, "forbidden", nil},
		{"supervisor", "&bogus=1", 400, "not-supported", nil},
	}
	for _, c := range cases {
		t.Run(c.role+c.query, func(t *testing.T) {
			before := known
			status, header, body := rawDo(t, h.as(c.role), "GET", "/AuditEvent?_format=application/fhir%2Bndjson"+c.query)
			if status != c.status {
				t.Fatalf("status %d, want %d: %.300s", status, c.status, body)
			}
			added := storedEventsAfter(t, h, before[len(before)-1].seq)
			known = append(known, added...)
			if len(added) != 1 {
				t.Fatalf("%d AuditEvents for one search", len(added))
			}
			own := added[0]
			if own.subtype != "search-type" || (roles[c.role].UZI != "" && own.agentUZI != roles[c.role].UZI) || !strings.Contains(own.query, "_format=application/fhir%2Bndjson") {
				t.Errorf("the search's own event: %+v", own)
			}
			if c.want == nil {
				r := response{status: status, raw: body}
				_ = json.Unmarshal(body, &r.body)
				if !contains(r.issueCodes(), c.code) {
					t.Errorf("codes %v, want %q", r.issueCodes(), c.code)
				}
				return
			}
			if ct := header.Get("Content-Type"); !strings.HasPrefix(ct, "application/fhir+ndjson") {
				t.Errorf("Content-Type %q", ct)
			}
			lines := ndjsonLines(t, body)
			got := map[string]bool{}
			for _, l := range lines {
				id, _ := l["id"].(string)
				if l["resourceType"] != "AuditEvent" || got[id] {
					t.Fatalf("line %v (twice: %v)", l["resourceType"], got[id])
				}
				got[id] = true
			}
			want := ids(before, c.want)
			for _, id := range want {
				if !got[id] {
					t.Fatalf("%d lines; %d events stored before the search match, %s among them is missing", len(lines), len(want), id)
				}
			}
			// The streamed search is recorded before it streams: it may
			// see itself, and nothing else.
			if extra := len(lines) - len(want); extra != 0 && !(extra == 1 && got[own.id]) {
				t.Errorf("%d lines, want %d", len(lines), len(want))
			}
			if c.role == "gp" && len(want) < 1050 {
				t.Errorf("the GP's log has %d events, want the 1050 seeded and more", len(want))
			}
		})
	}

	t.Run("fail closed", func(t *testing.T) {
		h.audit.broken.Store(true)
		defer h.audit.broken.Store(false)
		status, header, body := rawDo(t, h.as("supervisor"), "GET", "/AuditEvent?_format=application/fhir%2Bndjson")
		if status != 503 || strings.Contains(header.Get("Content-Type"), "ndjson") || bytes.Contains(body, []byte(`"AuditEvent"`)) {
			t.Errorf("with the audit down: %d %s %.200s", status, header.Get("Content-Type"), body)
		}
	})

	t.Run("the chain holds across both recorders", func(t *testing.T) {
		r := do(t, h.as("supervisor"), "GET", "/AuditEvent/$verify", nil)
		if p := parameters(t, r); p["intact"] != true {
			t.Errorf("%s", r.raw)
		}
	})

	// With an event removed from the database, a scan batch comes back
	// short: the export still goes on to the head, and $verify names the
	// gap.
	t.Run("an export goes past a removed event", func(t *testing.T) {
		sup := h.as("supervisor")
		evs := storedEvents(t, h)
		victim := evs[10]
		tamper(t, h, func(db *sql.DB) error {
			_, err := db.Exec(`DELETE FROM audit_chain WHERE id = ?`, victim.id)
			return err
		})
		out := outputOf(t, pollExport(t, sup, kickOff(t, sup, "")))
		if out.Count != len(evs)-1 {
			t.Errorf("exported %d events, want the %d left", out.Count, len(evs)-1)
		}
		p := parameters(t, do(t, sup, "GET", "/AuditEvent/$verify", nil))
		if p["intact"] != false || p["brokenAt"] != float64(victim.seq) {
			t.Errorf("$verify: %v", p)
		}
	})
}
