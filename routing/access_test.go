package routing

import (
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/schakelpunt/schakelpunt/fhir"
)

// TestPolicyAtTheEdge: each role on each kind of route, with the
// OperationOutcome codes a denial carries.
func TestPolicyAtTheEdge(t *testing.T) {
	h := mustServe(t)
	created := do(t, h, "POST", "/Patient", fixture(t, "patient.json"))
	if created.status != 201 {
		t.Fatalf("seed: %d %s", created.status, created.raw)
	}
	id := created.body["id"].(string)
	consent := do(t, h, "POST", "/Consent", fixture(t, "consent.json"))
	if consent.status != 201 {
		t.Fatalf("seed: %d %s", consent.status, consent.raw)
	}
	cases := []struct {
		role, method, path string
		body               []byte
		status             int
		code               string
	}{
		{"no-uzi", "GET", "/metadata", nil, 200, ""},
		{"no-uzi", "GET", "/Patient/" + id, nil, 403, "security"},
		{"no-uzi", "GET", "/Organization", nil, 403, "security"},
		{"gp", "GET", "/metadata", nil, 200, ""},
		{"gp", "GET", "/Patient/" + id, nil, 403, "forbidden"},
		{"gp", "GET", "/Patient?identifier=http://fhir.nl/fhir/NamingSystem/bsn|999911120", nil, 403, "forbidden"},
		{"gp", "POST", "/Patient", fixture(t, "patient.json"), 403, "forbidden"},
		{"gp", "POST", "/Consent", fixture(t, "consent.json"), 403, "forbidden"},
		{"gp", "GET", "/Consent?patient:identifier=http://fhir.nl/fhir/NamingSystem/bsn|999911120", nil, 403, "forbidden"},
		{"gp", "GET", "/Organization", nil, 200, ""},
		{"gp", "GET", "/AuditEvent", nil, 200, ""},
		{"physio", "GET", "/AuditEvent", nil, 200, ""},
		{"physio", "GET", "/Patient/" + id, nil, 403, "forbidden"},
		{"source", "GET", "/Patient/" + id, nil, 200, ""},
		{"source", "GET", "/AuditEvent", nil, 403, "forbidden"},
		{"employee", "GET", "/Patient/" + id, nil, 200, ""},
		{"employee", "POST", "/Consent", fixture(t, "consent.json"), 201, ""},
		{"other-source", "GET", "/Patient/" + id, nil, 404, "not-found"},
		{"other-source", "DELETE", "/Patient/" + id, nil, 404, "not-found"},
		{"other-source", "PUT", "/Patient/" + id, withID(t, fixture(t, "patient.json"), id), 403, "forbidden"},
		{"other-source", "POST", "/Patient", fixture(t, "patient.json"), 403, "forbidden"},
		{"other-source", "POST", "/Consent", fixture(t, "consent.json"), 403, "forbidden"},
		{"supervisor", "GET", "/Patient/" + id, nil, 200, ""},
		{"supervisor", "GET", "/AuditEvent", nil, 200, ""},
		{"supervisor", "POST", "/Patient", fixture(t, "patient.json"), 201, ""}, // an employee of its own organisation? no: URA differs
	}
	// The supervisor is an N card of URA 90000009: registering an entry of
	// 90000002 is not its own organisation.
	cases[len(cases)-1].status, cases[len(cases)-1].code = 403, "forbidden"
	for _, c := range cases {
		t.Run(c.role+" "+c.method+" "+c.path, func(t *testing.T) {
			r := do(t, h.as(c.role), c.method, c.path, c.body)
			if r.status != c.status {
				t.Fatalf("status %d, want %d: %s", r.status, c.status, r.raw)
			}
			if c.code != "" && !contains(r.issueCodes(), c.code) {
				t.Errorf("codes %v, want %q", r.issueCodes(), c.code)
			}
			if r.status == 403 && strings.Contains(string(r.raw), "999911120") {
				t.Errorf("a denial mentions the patient: %s", r.raw)
			}
		})
	}

	t.Run("the same BSN at two sources is two entries", func(t *testing.T) {
		other := do(t, h.as("other-source"), "PUT", "/Patient?identifier=http://fhir.nl/fhir/NamingSystem/bsn|999911120",
			[]byte(strings.ReplaceAll(string(fixture(t, "patient.json")), "90000002", "90000003")))
		if other.status != 201 || other.body["id"] == id {
			t.Fatalf("other source's registration: %d %s", other.status, other.raw)
		}
		mine := do(t, h, "GET", "/Patient?identifier=http://fhir.nl/fhir/NamingSystem/bsn|999911120", nil)
		if len(mine.entries()) != 1 {
			t.Errorf("a source sees %d entries, want its own 1", len(mine.entries()))
		}
		all := do(t, h.as("supervisor"), "GET", "/Patient?identifier=http://fhir.nl/fhir/NamingSystem/bsn|999911120", nil)
		if len(all.entries()) != 2 {
			t.Errorf("a supervisor sees %d entries, want 2", len(all.entries()))
		}
	})
}

// TestEveryInteractionIsAudited: exactly one AuditEvent per request,
// permitted or denied, with who, what and the outcome.
func TestEveryInteractionIsAudited(t *testing.T) {
	h := mustServe(t)
	requests := []struct {
		role, method, path string
		body               []byte
		status             int
		subtype, outcome   string
		decision           string
	}{
		{"source", "POST", "/Patient", fixture(t, "patient.json"), 201, "create", "0", "permit"},
		{"gp", "GET", "/Patient?identifier=http://fhir.nl/fhir/NamingSystem/bsn|999911120", nil, 403, "search-type", "4", "deny"},
		{"no-uzi", "GET", "/Consent", nil, 403, "search-type", "4", "deny"},
		{"source", "GET", "/Patient?bogus=1", nil, 400, "search-type", "4", "permit"},
		{"source", "GET", "/Observation", nil, 404, "operation", "4", ""}, // no interaction matched: kept as "unknown" in an extension
		{"gp", "GET", "/metadata", nil, 200, "capabilities", "0", "permit"},
	}
	for _, r := range requests {
		got := do(t, h.as(r.role), r.method, r.path, r.body)
		if got.status != r.status {
			t.Fatalf("%s %s %s: %d %s", r.role, r.method, r.path, got.status, got.raw)
		}
	}
	log := do(t, h.as("supervisor"), "GET", "/AuditEvent?_sort=date&_count=100", nil)
	events := log.entries()
	if len(events) != len(requests) {
		t.Fatalf("%d AuditEvents for %d requests", len(events), len(requests))
	}
	for i, r := range requests {
		ev := events[i]["resource"].(map[string]any)
		t.Run(r.method+" "+r.path, func(t *testing.T) {
			if got := ev["subtype"].([]any)[0].(map[string]any)["code"]; got != r.subtype {
				t.Errorf("subtype %v, want %s", got, r.subtype)
			}
			if ev["outcome"] != r.outcome {
				t.Errorf("outcome %v, want %s", ev["outcome"], r.outcome)
			}
			if r.decision != "" && !strings.Contains(string(mustJSON(t, ev)), `"valueString":"`+r.decision+`"`) {
				t.Errorf("no %s decision recorded: %s", r.decision, mustJSON(t, ev))
			}
			agent := ev["agent"].([]any)[0].(map[string]any)
			if r.role == "no-uzi" {
				if agent["who"].(map[string]any)["display"] != "unidentified client" {
					t.Errorf("agent %v", agent)
				}
			} else if agent["who"].(map[string]any)["identifier"].(map[string]any)["value"] != roles[r.role].UZI {
				t.Errorf("agent %v, want UZI %s", agent, roles[r.role].UZI)
			}
			if agent["network"].(map[string]any)["address"] != "127.0.0.1" {
				t.Errorf("network %v", agent["network"])
			}
			query := ""
			for _, e := range ev["entity"].([]any) {
				if q, ok := e.(map[string]any)["query"].(string); ok {
					b, _ := base64.StdEncoding.DecodeString(q)
					query = string(b)
				}
			}
			if !strings.HasSuffix(query, r.path) {
				t.Errorf("query %q, want the request %s", query, r.path)
			}
		})
	}
	t.Run("patient is searchable", func(t *testing.T) {
		r := do(t, h.as("supervisor"), "GET", "/AuditEvent?patient:identifier=http://fhir.nl/fhir/NamingSystem/bsn|999911120", nil)
		// The registration, the denied search, and the supervisor's
		// reading of the log above, whose events were about this patient
		// or nobody (see TestSearchWithoutBSNNamesThePatient).
		if len(r.entries()) != 3 {
			t.Errorf("%d events about the patient, want 3", len(r.entries()))
		}
	})
	t.Run("professionals see only their own events", func(t *testing.T) {
		r := do(t, h.as("gp"), "GET", "/AuditEvent?_count=100", nil)
		for _, e := range r.entries() {
			if !strings.Contains(string(mustJSON(t, e)), `"11111111"`) {
				t.Errorf("the GP sees someone else's event: %s", mustJSON(t, e))
			}
		}
		if len(r.entries()) != 2 { // the denied search and the metadata read; this search is recorded after it answers
			t.Errorf("the GP sees %d events, want 2", len(r.entries()))
		}
	})
	t.Run("agent is searchable", func(t *testing.T) {
		r := do(t, h.as("supervisor"), "GET", "/AuditEvent?agent:identifier=http://fhir.nl/fhir/NamingSystem/uzi-nr-pers|11111111&outcome=4", nil)
		if len(r.entries()) != 1 {
			t.Errorf("%d denied events of the GP, want 1", len(r.entries()))
		}
	})
}

// TestFailClosed: when the audit cannot be written, no data leaves.
func TestFailClosed(t *testing.T) {
	h := mustServe(t)
	created := do(t, h, "POST", "/Patient", fixture(t, "patient.json"))
	id := created.body["id"].(string)
	h.audit.broken.Store(true)
	cases := []struct{ method, path string }{
		{"GET", "/Patient/" + id},
		{"GET", "/Patient?identifier=http://fhir.nl/fhir/NamingSystem/bsn|999911120"},
		{"POST", "/Patient"},
	}
	for _, c := range cases {
		t.Run(c.method+" "+c.path, func(t *testing.T) {
			var body []byte
			if c.method == "POST" {
				body = fixture(t, "patient.json")
			}
			r := do(t, h, c.method, c.path, body)
			if r.status != 503 || !contains(r.issueCodes(), "transient") {
				t.Fatalf("status %d codes %v, want 503 transient", r.status, r.issueCodes())
			}
			if strings.Contains(string(r.raw), "999911120") || r.header.Get("ETag") != "" || r.header.Get("Location") != "" {
				t.Errorf("data left without an audit record: %v %s", r.header, r.raw)
			}
		})
	}
	h.audit.broken.Store(false)
	r := do(t, h.as("supervisor"), "GET", "/AuditEvent?_count=100", nil)
	if len(r.entries()) != 1 {
		t.Errorf("%d events stored, want only the first create's", len(r.entries()))
	}
}

func TestPIX(t *testing.T) {
	h := mustServe(t)
	for _, role := range []string{"source", "other-source"} {
		ura := roles[role].URA
		body := strings.ReplaceAll(string(fixture(t, "patient.json")), "90000002", ura)
		body = strings.ReplaceAll(body, "Patient/p1", "Patient/at-"+ura)
		if r := do(t, h.as(role), "PUT", "/Patient?identifier=http://fhir.nl/fhir/NamingSystem/bsn|999911120", []byte(body)); r.status != 201 {
			t.Fatalf("seed: %d %s", r.status, r.raw)
		}
	}
	cases := []struct {
		role, query string
		status      int
		code        string
		targets     int
	}{
		{"source", "sourceIdentifier=http://fhir.nl/fhir/NamingSystem/bsn|999911120", 200, "", 2},
		{"supervisor", "sourceIdentifier=http://fhir.nl/fhir/NamingSystem/bsn|999911120", 200, "", 2},
		{"source", "sourceIdentifier=http://fhir.nl/fhir/NamingSystem/bsn|999900006", 200, "", 0},
		{"gp", "sourceIdentifier=http://fhir.nl/fhir/NamingSystem/bsn|999911120", 403, "forbidden", 0},
		{"employee", "sourceIdentifier=http://fhir.nl/fhir/NamingSystem/bsn|999911120", 403, "forbidden", 0},
		{"source", "sourceIdentifier=http://fhir.nl/fhir/NamingSystem/bsn|999911121", 400, "invalid", 0},
		{"source", "", 400, "required", 0},
		{"source", "targetSystem=x&sourceIdentifier=http://fhir.nl/fhir/NamingSystem/bsn|999911120", 400, "not-supported", 0},
	}
	for _, c := range cases {
		t.Run(c.role+" "+c.query, func(t *testing.T) {
			r := do(t, h.as(c.role), "GET", "/Patient/$ihe-pix?"+c.query, nil)
			if r.status != c.status {
				t.Fatalf("%d %s", r.status, r.raw)
			}
			if c.code != "" && !contains(r.issueCodes(), c.code) {
				t.Errorf("codes %v", r.issueCodes())
			}
			if c.status == 200 {
				ps, _ := r.body["parameter"].([]any)
				if len(ps) != c.targets {
					t.Errorf("%d targets, want %d: %s", len(ps), c.targets, r.raw)
				}
				if c.targets > 0 && !strings.Contains(string(r.raw), "Patient/at-90000003") {
					t.Errorf("the other source's reference is missing: %s", r.raw)
				}
			}
		})
	}
}

// TestLogReadAboutSeveralPatients: a supervisor's read of the log whose
// events are about several patients is one event about nobody, not one
// per patient (each reading of the log would otherwise add to it).
func TestLogReadAboutSeveralPatients(t *testing.T) {
	h := mustServe(t)
	for _, b := range []string{"999911120", "999900031"} {
		if r := do(t, h, "POST", "/Consent", withBSN(t, "consent.json", b)); r.status != 201 {
			t.Fatalf("seed: %d %s", r.status, r.raw)
		}
	}
	sup := h.as("supervisor")
	read := do(t, sup, "GET", "/AuditEvent?_count=100&agent:identifier="+fhir.SystemUZISystem+"|"+roles["source"].UZI, nil)
	if n := len(read.entries()); n != 2 {
		t.Fatalf("%d events of the source, want its 2 writes", n)
	}
	newest := do(t, sup, "GET", "/AuditEvent?_sort=-date&_count=2&agent:identifier="+fhir.SystemUZIPerson+"|"+roles["supervisor"].UZI, nil)
	var patients []string
	for i, e := range newest.entries() {
		for _, en := range e["resource"].(map[string]any)["entity"].([]any) {
			what, _ := en.(map[string]any)["what"].(map[string]any)
			if idf, ok := what["identifier"].(map[string]any); ok && idf["system"] == fhir.SystemBSN {
				patients = append(patients, fmt.Sprintf("event %d: %s", i, idf["value"]))
			}
		}
	}
	if len(newest.entries()) != 1 || len(patients) != 0 {
		t.Errorf("the supervisor's read of the log left %d events naming patients %v, want one naming none", len(newest.entries()), patients)
	}
}

// TestSearchWithoutBSNNamesThePatient: a search that names no BSN (by
// _id, or a later page) is logged about the patient its results are
// about, as a read is, so that the patient finds it in their log; results
// about several patients are logged as one event per patient (IHE BALP),
// each naming only that patient's resources.
func TestSearchWithoutBSNNamesThePatient(t *testing.T) {
	h := mustServe(t)
	const bsn, other = "999911120", "999900031"
	first := do(t, h, "POST", "/Patient", fixture(t, "patient.json"))
	second := do(t, h, "POST", "/Patient", withBSN(t, "patient.json", other))
	consent := do(t, h, "POST", "/Consent", fixture(t, "consent.json"))
	otherConsent := do(t, h, "POST", "/Consent", withBSN(t, "consent.json", other))
	for _, r := range []response{first, second, consent, otherConsent} {
		if r.status != 201 {
			t.Fatalf("seed: %d %s", r.status, r.raw)
		}
	}
	id := func(r response) string { return r.body["id"].(string) }
	ref := func(typ string, r response) string { return typ + "/" + id(r) + "/_history/1" }
	// The source's events about b, newest first (the supervisor's
	// reading of the log is itself logged about b).
	eventsAbout := func(b string) []map[string]any {
		r := do(t, h.as("supervisor"), "GET", "/AuditEvent?_count=100&_sort=-date&agent:identifier="+fhir.SystemUZISystem+"|"+
			roles["source"].UZI+"&patient:identifier=http://fhir.nl/fhir/NamingSystem/bsn|"+b, nil)
		var out []map[string]any
		for _, e := range r.entries() {
			out = append(out, e["resource"].(map[string]any))
		}
		return out
	}
	for _, tc := range []struct {
		name, path string
		want       map[string][]string // the resources the new event about each BSN names (nil: no new event)
	}{
		{"a consent by _id", "/Consent?_id=" + id(consent), map[string][]string{bsn: {ref("Consent", consent)}, other: nil}},
		{"a patient by _id", "/Patient?_id=" + id(second), map[string][]string{bsn: nil, other: {ref("Patient", second)}}},
		{"two patients: one event each", "/Patient?_id=" + id(first) + "," + id(second),
			map[string][]string{bsn: {ref("Patient", first)}, other: {ref("Patient", second)}}},
		{"an organisation's consents: one event each", "/Consent?_sort=_lastUpdated",
			map[string][]string{bsn: {ref("Consent", consent)}, other: {ref("Consent", otherConsent)}}},
		{"nothing found: about nobody", "/Patient?_id=unknown", map[string][]string{bsn: nil, other: nil}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := map[string]int{bsn: len(eventsAbout(bsn)), other: len(eventsAbout(other))}
			if r := do(t, h, "GET", tc.path, nil); r.status != 200 {
				t.Fatalf("%d %s", r.status, r.raw)
			}
			for b, want := range tc.want {
				evs := eventsAbout(b)
				n := len(evs) - before[b]
				if want == nil {
					if n != 0 {
						t.Errorf("%d new events about %s, want none", n, b)
					}
					continue
				}
				if n != 1 {
					t.Fatalf("%d new events about %s, want 1", n, b)
				}
				var patients, resources []string
				for _, e := range evs[0]["entity"].([]any) {
					what, _ := e.(map[string]any)["what"].(map[string]any)
					if idf, ok := what["identifier"].(map[string]any); ok {
						patients = append(patients, idf["value"].(string))
					}
					if r, ok := what["reference"].(string); ok {
						resources = append(resources, r)
					}
				}
				if !slices.Equal(patients, []string{b}) || !slices.Equal(resources, want) {
					t.Errorf("the event about %s names patients %v and resources %v, want only %s and %v", b, patients, resources, b, want)
				}
			}
		})
	}
}
