package audit_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/schakelpunt/schakelpunt/audit"
	"github.com/schakelpunt/schakelpunt/fhir"
)

var update = flag.Bool("update", false, "rewrite the golden AuditEvents in testdata/events")

func yes() *bool { v := true; return &v }
func no() *bool  { v := false; return &v }

var (
	gp = &audit.Agent{UZINumber: "11111111", CardType: "Z", Role: "01.015", URA: "90000111", AGB: "01234567",
		Name: "CN=J. de Vries", Address: "192.0.2.10"}
	pharmacist = &audit.Agent{UZINumber: "33333333", CardType: "Z", Role: "17.000", URA: "90000222", Address: "192.0.2.11"}
	sourceSys  = &audit.Agent{UZINumber: "44444444", CardType: "S", Role: "00.000", URA: "90000002", Address: "192.0.2.20"}
	employee   = &audit.Agent{UZINumber: "55555555", CardType: "N", Role: "00.000", URA: "90000002", AGB: "00000000", Address: "192.0.2.21"}
	supervisor = &audit.Agent{UZINumber: "66666666", CardType: "Z", Role: "01.000", URA: "90000009", Address: "192.0.2.30"}
	patientAg  = &audit.Agent{BSN: "999911120", Address: "198.51.100.7"}
	retention  = &audit.Agent{System: "Schakelpunt audit retention"}
)

// eventCase is one event to render, with what its AuditEvent must say.
type eventCase struct {
	name string
	ev   audit.Event
	// The BALP shape expected.
	subtype, ours   string   // restful-interaction code; our own name in the extension ("" none)
	action, outcome string   // AuditEvent.action and .outcome
	agents          []string // who.identifier system|value of each agent, in order
	address         string   // network.address of the requestor ("" none)
	patient         string   // BSN of the patient entity ("" none): purposeOfEvent TREAT then
	sources         []string // URA|count of each source entity
	decision        string   // permit, deny or ""
}

const (
	uziPers = fhir.SystemUZIPerson + "|"
	uziSys  = fhir.SystemUZISystem + "|"
	ura     = fhir.SystemURA + "|"
	bsn     = fhir.SystemBSN + "|"
	client  = "http://schakelpunt.nl/fhir/NamingSystem/network-address|"
	comp    = "http://schakelpunt.nl/fhir/NamingSystem/system-component|"
)

var eventCases = []eventCase{
	{
		name: "gp-medication-permit",
		ev: audit.Event{Interaction: "search-type", Status: 200, Agent: gp, PatientBSN: "999911120",
			Query:    "GET /fhir/R4/MedicationDispense?patient.identifier=http://fhir.nl/fhir/NamingSystem/bsn|999911120",
			Category: "10160-0", Permit: yes(), Reasons: []string{"role 01.015 may see medication", "consent c1 permits 10160-0 from any source"},
			Sources: []audit.Source{
				{URA: "90000002", Name: "Apotheek De Brug", URL: "https://127.0.0.1:9102/fhir/R4", Count: 3, Outcome: "ok"},
				{URA: "90000003", Name: "Apotheek Het Plein", URL: "https://127.0.0.1:9103/fhir/R4", Count: 0, Outcome: "timeout"},
			}},
		subtype: "search-type", action: "E", outcome: "0",
		agents: []string{uziPers + "11111111", ura + "90000111"}, address: "192.0.2.10", patient: "999911120",
		sources: []string{"90000002|3", "90000003|0"}, decision: "permit",
	},
	{
		name: "pharmacist-summary-denied",
		ev: audit.Event{Interaction: "$summary", Status: 403, Agent: pharmacist, PatientBSN: "999900006",
			Query: "GET /fhir/R4/Patient/$summary?identifier=http://fhir.nl/fhir/NamingSystem/bsn|999900006", Category: "60591-5",
			Description: "Forbidden", Permit: no(), Reasons: []string{"role 17.000 may not see the GP summary"}},
		subtype: "operation", ours: "$summary", action: "E", outcome: "4",
		agents: []string{uziPers + "33333333", ura + "90000222"}, address: "192.0.2.11", patient: "999900006", decision: "deny",
	},
	{
		name: "source-registers-patient",
		ev: audit.Event{Interaction: "update", Status: 201, Agent: sourceSys, PatientBSN: "999900018",
			Query: "PUT /fhir/R4/Patient?identifier=http://fhir.nl/fhir/NamingSystem/bsn|999900018", Resources: []string{"Patient/p-1"}, Permit: yes()},
		subtype: "update", action: "U", outcome: "0",
		agents: []string{uziSys + "44444444", ura + "90000002"}, address: "192.0.2.20", patient: "999900018", decision: "permit",
	},
	{
		name: "employee-records-consent",
		ev: audit.Event{Interaction: "create", Status: 201, Agent: employee, PatientBSN: "999900031",
			Query: "POST /fhir/R4/Consent", Resources: []string{"Consent/c-9"}, Permit: yes()},
		subtype: "create", action: "C", outcome: "0",
		agents: []string{uziPers + "55555555", ura + "90000002"}, address: "192.0.2.21", patient: "999900031", decision: "permit",
	},
	{
		name:    "gp-capabilities",
		ev:      audit.Event{Interaction: "capabilities", Status: 200, Agent: gp, Query: "GET /fhir/R4/metadata", Permit: yes()},
		subtype: "capabilities", action: "R", outcome: "0",
		agents: []string{uziPers + "11111111", ura + "90000111"}, address: "192.0.2.10", decision: "permit",
	},
	{
		name: "unidentified-client",
		ev: audit.Event{Interaction: "search-type", Status: 403, Agent: &audit.Agent{Address: "203.0.113.5"},
			Query: "GET /fhir/R4/Consent", Description: "Forbidden", Permit: no(), Reasons: []string{"no UZI certificate"}},
		subtype: "search-type", action: "E", outcome: "4",
		agents: []string{client + "203.0.113.5"}, address: "203.0.113.5", decision: "deny",
	},
	{
		name:    "unknown-route",
		ev:      audit.Event{Interaction: "unknown", Status: 404, Agent: gp, Query: "GET /fhir/R4/Observation", Description: "Not Found"},
		subtype: "operation", ours: "unknown", action: "E", outcome: "4",
		agents: []string{uziPers + "11111111", ura + "90000111"}, address: "192.0.2.10",
	},
	{
		name:    "no-interaction-no-agent",
		ev:      audit.Event{Status: 401, Description: "Unauthorized"},
		subtype: "operation", ours: "unknown", action: "E", outcome: "4",
		agents: []string{client + "unknown"},
	},
	{
		name: "patient-reads-own-log",
		ev: audit.Event{Interaction: "search-type", Status: 200, Agent: patientAg, PatientBSN: "999911120",
			Query: "GET /fhir/R4/AuditEvent?patient:identifier=http://fhir.nl/fhir/NamingSystem/bsn|999911120", Permit: yes()},
		subtype: "search-type", action: "E", outcome: "0",
		agents: []string{bsn + "999911120"}, address: "198.51.100.7", patient: "999911120", decision: "permit",
	},
	{
		name:    "supervisor-next-page",
		ev:      audit.Event{Interaction: "page", Status: 200, Agent: supervisor, Query: "GET /fhir/R4/_page/abc", Permit: yes()},
		subtype: "search", ours: "page", action: "E", outcome: "0",
		agents: []string{uziPers + "66666666", ura + "90000009"}, address: "192.0.2.30", decision: "permit",
	},
	{
		name:    "supervisor-verify",
		ev:      audit.Event{Interaction: "$verify", Status: 200, Agent: supervisor, Query: "GET /fhir/R4/AuditEvent/$verify", Permit: yes()},
		subtype: "operation", ours: "$verify", action: "E", outcome: "0",
		agents: []string{uziPers + "66666666", ura + "90000009"}, address: "192.0.2.30", decision: "permit",
	},
	{
		name:    "supervisor-export",
		ev:      audit.Event{Interaction: "$export", Status: 202, Agent: supervisor, Query: "GET /fhir/R4/AuditEvent/$export?_since=2026-01-01", Permit: yes()},
		subtype: "operation", ours: "$export", action: "E", outcome: "0",
		agents: []string{uziPers + "66666666", ura + "90000009"}, address: "192.0.2.30", decision: "permit",
	},
	{
		name: "store-down",
		ev: audit.Event{Interaction: "read", Status: 503, Agent: sourceSys, Query: "GET /fhir/R4/Consent/c-1",
			Resources: []string{"Consent/c-1"}, Description: "the store is unavailable", Permit: yes()},
		subtype: "read", action: "R", outcome: "8",
		agents: []string{uziSys + "44444444", ura + "90000002"}, address: "192.0.2.20", decision: "permit",
	},
	{
		name:    "internal-error",
		ev:      audit.Event{Interaction: "delete", Status: 500, Agent: sourceSys, Query: "DELETE /fhir/R4/Consent/c-2", Description: "Internal Server Error"},
		subtype: "delete", action: "D", outcome: "8",
		agents: []string{uziSys + "44444444", ura + "90000002"}, address: "192.0.2.20",
	},
	{
		name: "retention",
		ev: audit.Event{Interaction: "retention", Action: "D", Status: 200, Agent: retention,
			Description: "retention removed 30 events recorded before 2026-11-21T10:15:02Z"},
		subtype: "delete", ours: "retention", action: "D", outcome: "0",
		agents: []string{comp + "Schakelpunt audit retention"},
	},
}

// The elements an AuditEvent of ours may have: nothing else is ever
// written (no medical content has a place to go).
var allowedElements = []string{"action", "agent", "entity", "extension", "id", "meta", "outcome", "outcomeDesc",
	"purposeOfEvent", "recorded", "resourceType", "source", "subtype", "type"}

// TestEventShapes renders each event through the Recorder into the
// embedded store and checks the stored AuditEvent: the BALP shape, base
// R4 and our profile, and the golden JSON in testdata/events (go test
// -update rewrites it; review the diff).
func TestEventShapes(t *testing.T) {
	s := MustOpenStore(t)
	rec := MustRecorder(t, s, audit.Options{Observer: "Schakelpunt test"})
	for _, tc := range eventCases {
		t.Run(tc.name, func(t *testing.T) {
			ev := tc.ev
			ev.ID, ev.Recorded = tc.name, fixed
			res := recordOne(t, s, rec, ev)
			mustValidate(t, res.Body)
			doc := decode(t, res.Body)
			checkShape(t, tc, doc)
			golden(t, tc.name, res.Body)
		})
	}
}

func checkShape(t *testing.T, tc eventCase, doc map[string]any) {
	t.Helper()
	for k := range doc {
		if !slices.Contains(allowedElements, k) {
			t.Errorf("unexpected element %q", k)
		}
	}
	if got := path(doc, "type.system") + "|" + path(doc, "type.code"); got != "http://terminology.hl7.org/CodeSystem/audit-event-type|rest" {
		t.Errorf("type %s, want audit-event-type|rest", got)
	}
	subtypes := list(doc, "subtype")
	if len(subtypes) != 1 || path(subtypes[0], "system") != "http://hl7.org/fhir/restful-interaction" || path(subtypes[0], "code") != tc.subtype {
		t.Errorf("subtype %v, want restful-interaction|%s", doc["subtype"], tc.subtype)
	}
	ours := ""
	for _, x := range list(doc, "extension") {
		if path(x, "url") == audit.InteractionExtension {
			if path(x, "valueCoding.system") != audit.SystemInteraction {
				t.Errorf("interaction extension %v", x)
			}
			ours = path(x, "valueCoding.code")
		}
	}
	if ours != tc.ours {
		t.Errorf("our interaction %q, want %q", ours, tc.ours)
	}
	if doc["action"] != tc.action || doc["outcome"] != tc.outcome {
		t.Errorf("action %v outcome %v, want %s %s", doc["action"], doc["outcome"], tc.action, tc.outcome)
	}
	if doc["recorded"] != "2026-11-22T10:15:02.123Z" {
		t.Errorf("recorded %v", doc["recorded"])
	}
	if path(doc, "source.observer.display") != "Schakelpunt test" {
		t.Errorf("source %v", doc["source"])
	}
	if doc["outcomeDesc"] != nil && doc["outcomeDesc"] != tc.ev.Description || doc["outcomeDesc"] == nil && tc.ev.Description != "" {
		t.Errorf("outcomeDesc %v, want %q", doc["outcomeDesc"], tc.ev.Description)
	}

	// purposeOfEvent: PATRQT when patients ask about themselves, else
	// TREAT exactly when a patient is concerned.
	purpose := ""
	for _, p := range list(doc, "purposeOfEvent") {
		for _, c := range list(p, "coding") {
			purpose += path(c, "system") + "|" + path(c, "code")
		}
	}
	want := map[bool]string{true: "http://terminology.hl7.org/CodeSystem/v3-ActReason|TREAT"}[tc.patient != ""]
	if tc.ev.Agent != nil && tc.ev.Agent.BSN != "" {
		want = "http://terminology.hl7.org/CodeSystem/v3-ActReason|PATRQT"
	}
	if purpose != want {
		t.Errorf("purposeOfEvent %q, want %q", purpose, want)
	}

	// Agents: the requestor first, by UZI number (person or system by
	// card type), BSN, network address or component; then the
	// organisation by URA.
	var agents []string
	for i, a := range list(doc, "agent") {
		agents = append(agents, path(a, "who.identifier.system")+"|"+path(a, "who.identifier.value"))
		if req, _ := a.(map[string]any)["requestor"].(bool); req != (i == 0) {
			t.Errorf("agent %d requestor %v", i, req)
		}
		if i == 0 && path(a, "network.address") != tc.address {
			t.Errorf("network address %q, want %q", path(a, "network.address"), tc.address)
		}
		if i == 0 && tc.ev.Agent != nil && tc.ev.Agent.Role != "" {
			roles := list(a, "role")
			if len(roles) == 0 || path(list(roles[0], "coding")[0], "code") != tc.ev.Agent.Role ||
				path(list(roles[0], "coding")[0], "system") != fhir.SystemUZIRole {
				t.Errorf("agent role %v, want %s", a.(map[string]any)["role"], tc.ev.Agent.Role)
			}
		}
	}
	if !slices.Equal(agents, tc.agents) {
		t.Errorf("agents %v, want %v", agents, tc.agents)
	}

	// Entities: the patient, the query, the sources with their counts,
	// the decision with its reasons and the category.
	var (
		patients, sources []string
		query, decision   string
		reasons           []string
		category          string
	)
	for _, e := range list(doc, "entity") {
		role := path(e, "role.code")
		switch {
		case role == "1":
			patients = append(patients, path(e, "what.identifier.system")+"|"+path(e, "what.identifier.value"))
		case role == "24":
			b, err := base64.StdEncoding.DecodeString(path(e, "query"))
			if err != nil {
				t.Errorf("query is not base64: %v", err)
			}
			query = string(b)
		case path(e, "name") == "access decision":
			for _, d := range list(e, "detail") {
				switch v := path(d, "valueString"); path(d, "type") {
				case "decision":
					decision = v
				case "reason":
					reasons = append(reasons, v)
				case "category":
					category = v
				}
			}
		case path(e, "what.type") == "Organization":
			count := ""
			for _, d := range list(e, "detail") {
				if path(d, "type") == "result-count" {
					count = path(d, "valueString")
				}
			}
			sources = append(sources, path(e, "what.identifier.value")+"|"+count)
		}
	}
	wantPatients := []string(nil)
	if tc.patient != "" {
		wantPatients = []string{bsn + tc.patient}
	}
	if !slices.Equal(patients, wantPatients) {
		t.Errorf("patient entities %v, want %v", patients, wantPatients)
	}
	if query != tc.ev.Query {
		t.Errorf("query %q, want %q", query, tc.ev.Query)
	}
	if !slices.Equal(sources, tc.sources) {
		t.Errorf("sources %v, want %v", sources, tc.sources)
	}
	if decision != tc.decision || !slices.Equal(reasons, tc.ev.Reasons) {
		t.Errorf("decision %q %v, want %q %v", decision, reasons, tc.decision, tc.ev.Reasons)
	}
	if wantCat := map[bool]string{true: fhir.SystemLOINC + "|" + tc.ev.Category}[tc.ev.Category != ""]; category != wantCat {
		t.Errorf("category %q, want %q", category, wantCat)
	}
}

// golden compares the stored body, without meta and chain link, with
// testdata/events/name.json.
func golden(t *testing.T, name string, body []byte) {
	t.Helper()
	canon, err := audit.Canonical(body)
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if err := json.Indent(&got, canon, "", "  "); err != nil {
		t.Fatal(err)
	}
	got.WriteByte('\n')
	file := filepath.Join("testdata", "events", name+".json")
	if *update {
		if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, got.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("%v (run go test -update to write it)", err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Errorf("%s differs from the golden file (go test -update rewrites it):\n%s", file, got.Bytes())
	}
}

// Every stored event carries its chain link, as an extension the profile
// accepts; the link is what the store keeps beside it.
func TestEventShowsChainLink(t *testing.T) {
	s := MustOpenStore(t)
	rec := MustRecorder(t, s, audit.Options{})
	for i := range 3 {
		recordOne(t, s, rec, audit.Event{Interaction: "read", Status: 200, Agent: gp, Recorded: fixed.Add(time.Duration(i) * time.Second)})
	}
	entries := scanAll(t, s)
	if len(entries) != 3 {
		t.Fatalf("%d entries", len(entries))
	}
	for i, e := range entries {
		mustValidate(t, e.Resource.Body)
		var link map[string]string
		for _, x := range list(decode(t, e.Resource.Body), "extension") {
			if path(x, "url") == audit.ChainExtension {
				link = map[string]string{}
				for _, sub := range list(x, "extension") {
					link[path(sub, "url")] = path(sub, "valueString")
				}
			}
		}
		want := map[string]string{"seq": strconv.FormatInt(e.Seq, 10), "hash": e.Hash}
		if i > 0 {
			want["previous"] = e.Prev
		}
		if !maps.Equal(link, want) {
			t.Errorf("event %d shows link %v, want %v", e.Seq, link, want)
		}
		canon, err := audit.Canonical(e.Resource.Body)
		if err != nil {
			t.Fatal(err)
		}
		if audit.Link(e.Prev, canon) != e.Hash {
			t.Errorf("event %d: hash is not Link(prev, Canonical(body))", e.Seq)
		}
		if strings.Contains(string(canon), audit.ChainExtension) || strings.Contains(string(canon), `"meta"`) {
			t.Errorf("canonical form keeps meta or the chain link: %s", canon)
		}
	}
}

// Canonical ignores key order, white space, meta and the chain link, and
// nothing else.
func TestCanonical(t *testing.T) {
	base := `{"resourceType":"AuditEvent","id":"a","action":"R","outcome":"0","extension":[{"url":"` + audit.ChainExtension + `","extension":[{"url":"hash","valueString":"x"}]}]}`
	same := []string{
		`{"outcome":"0","action":"R","id":"a","resourceType":"AuditEvent"}`,
		"{\n  \"resourceType\": \"AuditEvent\", \"id\": \"a\",\n \"action\": \"R\", \"outcome\": \"0\",\n \"meta\": {\"versionId\": \"1\"}}",
		`{"resourceType":"AuditEvent","id":"a","action":"R","outcome":"0","extension":[{"url":"` + audit.ChainExtension + `","extension":[{"url":"hash","valueString":"y"}]}]}`,
	}
	different := []string{
		`{"resourceType":"AuditEvent","id":"a","action":"R","outcome":"4"}`,
		`{"resourceType":"AuditEvent","id":"b","action":"R","outcome":"0"}`,
		`{"resourceType":"AuditEvent","id":"a","action":"R","outcome":"0","extension":[{"url":"http://example.org/x","valueString":"1"}]}`,
		`{"resourceType":"AuditEvent","id":"a","action":"R","outcome":"0","outcomeDesc":"<&>"}`,
	}
	want, err := audit.Canonical([]byte(base))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range same {
		got, err := audit.Canonical([]byte(s))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("Canonical(%s) = %s, %v; want %s", s, got, err, want)
		}
	}
	for _, s := range different {
		got, err := audit.Canonical([]byte(s))
		if err != nil || bytes.Equal(got, want) {
			t.Errorf("Canonical(%s) = %s, %v; want it to differ", s, got, err)
		}
	}
	if got, _ := audit.Canonical([]byte(different[3])); !bytes.Contains(got, []byte(`"<&>"`)) {
		t.Errorf("Canonical escapes HTML: %s", got)
	}
	if _, err := audit.Canonical([]byte(`{"resourceType":`)); err == nil {
		t.Error("Canonical of broken JSON: no error")
	}
}

func TestSubtypeOf(t *testing.T) {
	for _, tc := range []struct {
		in, code string
		ours     bool
	}{
		{"read", "read", false}, {"vread", "vread", false}, {"search-type", "search-type", false},
		{"create", "create", false}, {"update", "update", false}, {"delete", "delete", false},
		{"history-instance", "history-instance", false}, {"history-type", "history-type", false},
		{"capabilities", "capabilities", false},
		{"page", "search", true}, {"unknown", "operation", true}, {"", "operation", true},
		{"$verify", "operation", true}, {"$export", "operation", true}, {"$export-status", "operation", true},
		{"$summary", "operation", true}, {"$validate", "operation", true}, {"retention", "delete", true},
	} {
		code, ours := audit.SubtypeOf(tc.in)
		if code != tc.code || ours != tc.ours {
			t.Errorf("SubtypeOf(%q) = %s %v, want %s %v", tc.in, code, ours, tc.code, tc.ours)
		}
	}
}

// Events are searchable by what the design promises: patient and agent
// identifiers, type, subtype, action, outcome, date.
func TestEventsAreSearchable(t *testing.T) {
	s := MustOpenStore(t)
	rec := MustRecorder(t, s, audit.Options{})
	ids := map[string]string{}
	for _, tc := range eventCases {
		ev := tc.ev
		ev.ID, ev.Recorded = tc.name, fixed
		id, err := rec.Record(context.Background(), ev)
		if err != nil {
			t.Fatal(err)
		}
		ids[tc.name] = id
	}
	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"patient:identifier=" + bsn + "999911120", []string{"gp-medication-permit", "patient-reads-own-log"}},
		{"agent:identifier=" + uziPers + "11111111&outcome=4", []string{"unknown-route"}},
		{"agent:identifier=" + uziSys + "44444444", []string{"internal-error", "source-registers-patient", "store-down"}},
		{"agent:identifier=" + client + "203.0.113.5", []string{"unidentified-client"}},
		{"subtype=operation&outcome=0", []string{"supervisor-export", "supervisor-verify"}},
		{"subtype=http://hl7.org/fhir/restful-interaction|delete", []string{"internal-error", "retention"}},
		{"action=C", []string{"employee-records-consent"}},
		{"outcome=8", []string{"internal-error", "store-down"}},
		{"type=rest&date=2026-11-22&agent:identifier=" + ura + "90000009", []string{"supervisor-export", "supervisor-next-page", "supervisor-verify"}},
		{"entity:identifier=" + ura + "90000003", []string{"gp-medication-permit"}},
	} {
		t.Run(tc.query, func(t *testing.T) {
			var params []fhir.Param
			for _, kv := range strings.Split(tc.query, "&") {
				k, v, _ := strings.Cut(kv, "=")
				params = append(params, fhir.Param{Name: k, Value: v})
			}
			sr, err := fhir.ParseSearch("AuditEvent", params, false)
			if err != nil {
				t.Fatal(err)
			}
			page, err := s.Search(context.Background(), storeQuery(sr))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range page.Resources {
				got = append(got, r.ID)
			}
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}
