package audit

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/schakelpunt/schakelpunt/fhir"
)

// checkRender holds render to the reference it replaces: the canonical
// form is Canonical of the event's JSON, the terms are fhir.ExtractTerms
// of it, and the stored body (with its chain link) is that JSON with the
// link, shows the link and gives the same canonical form.
func checkRender(t *testing.T, ev Event) {
	t.Helper()
	ev.validUTF8() // as Record does
	rd, err := render(&ev)
	if err != nil {
		t.Fatal(err)
	}
	ae := ev.build()
	content, err := json.Marshal(ae) // the reference: any key order, HTML escaped
	if err != nil {
		t.Fatal(err)
	}
	want, err := Canonical(content)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(rd.canon, want) {
		t.Fatalf("%+v: canonical form\n got %s\nwant %s", ev, rd.canon, want)
	}
	doc, err := decodeDoc(content)
	if err != nil {
		t.Fatal(err)
	}
	wantTerms := fhir.ExtractTerms("AuditEvent", doc)
	if !slices.Equal(rd.terms.Strings, wantTerms.Strings) || !slices.Equal(rd.terms.Dates, wantTerms.Dates) {
		t.Fatalf("%+v: terms\n got %v\nwant %v", ev, rd.terms, wantTerms)
	}
	for _, prev := range []string{"", "0f" + strings.Repeat("a", 62)} {
		hash := strings.Repeat("b", 64)
		body := rd.body(12, prev, hash)
		if !json.Valid(body) {
			t.Fatalf("%+v: stored body is not JSON: %s", ev, body)
		}
		if !bytes.HasPrefix(body, []byte(`{"resourceType":"AuditEvent","id":`)) {
			t.Fatalf("stored body does not start with resourceType and id: %s", body)
		}
		canon, err := Canonical(body)
		if err != nil || !bytes.Equal(canon, want) {
			t.Fatalf("%+v: canonical form of the stored body (%v)\n got %s\nwant %s", ev, err, canon, want)
		}
		if shown, ok := shownLink(body); !ok || shown != hash {
			t.Fatalf("shown link %q, %v", shown, ok)
		}
		// The stored body is the event with the link as first extension.
		withLink := ae
		link := []extension{{URL: "seq", ValueString: "12"}}
		if prev != "" {
			link = append(link, extension{URL: "previous", ValueString: prev})
		}
		link = append(link, extension{URL: "hash", ValueString: hash})
		withLink.Extension = append([]extension{{URL: ChainExtension, Extension: link}}, ae.Extension...)
		wantBody, err := json.Marshal(withLink)
		if err != nil {
			t.Fatal(err)
		}
		var got, wantDoc any
		if json.Unmarshal(body, &got) != nil || json.Unmarshal(wantBody, &wantDoc) != nil || !reflect.DeepEqual(got, wantDoc) {
			t.Fatalf("stored body\n got %s\nwant %s", body, wantBody)
		}
	}
}

// Events of every shape, with text that needs escaping.
func TestRenderMatchesReference(t *testing.T) {
	permit, deny := true, false
	at := time.Date(2026, 11, 22, 10, 0, 0, 123456789, time.UTC)
	for _, ev := range []Event{
		{ID: "plain", Interaction: "read", Status: 200},
		{ID: "ours", Interaction: "$verify", Status: 200, Agent: &Agent{UZINumber: "1", CardType: "Z", Role: "01.015", URA: "90000111", AGB: "01234567", Name: "Dr. A <x> & \"y\"", Address: "192.0.2.1"}},
		{ID: "html<&>", Interaction: "page", Status: 403, Description: "a<b>&c \u2028 \x01 \\ \"q\"", Permit: &permit},
		{ID: "system", Interaction: "retention", Status: 200, Agent: &Agent{System: "retention"}, Resources: []string{"AuditEvent/1", "", "https://x.example/fhir/Patient/2/_history/3", "urn:uuid:1"}},
		{ID: "patient", Interaction: "search-type", Status: 200, Agent: &Agent{BSN: "999911120", Address: "::1"}, PatientBSN: "999911120", Query: "patient=1&_sort=-date"},
		{ID: "anonymous", Interaction: "", Status: 401, Agent: &Agent{Address: "198.51.100.7"}},
		{ID: "nobody", Status: 500},
		{ID: "server card", Interaction: "create", Status: 201, Agent: &Agent{UZINumber: "9", CardType: "S", URA: "90000222"}, Resources: []string{"Patient/p1"}},
		{ID: "federated", Interaction: "$summary", Status: 200, Agent: &Agent{UZINumber: "2", CardType: "Z", Role: "01.015", URA: "90000111"},
			PatientBSN: "999900006", Category: "60591-5", Permit: &deny, Reasons: []string{"no consent", "", "ünïcode ✓"},
			Sources: []Source{{URA: "90000002", Name: "GP <one>", URL: "https://gp.example/fhir", Count: 3}, {Name: "no ura", Count: 0, Outcome: "timeout"}}},
		{ID: "invalid \xff utf8", Interaction: "read", Status: 200, Description: "bad \xc3\x28 bytes", Reasons: []string{"ok", "\xed\xa0\x80"},
			Agent: &Agent{UZINumber: "\xff1", Name: "x\xfe"}, Sources: []Source{{Name: "s\xff"}}},
	} {
		ev.Recorded = at
		t.Run(ev.ID, func(t *testing.T) { checkRender(t, ev) })
	}
}

// Many random events.
func TestRenderRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 2))
	n := 2000
	if testing.Short() {
		n = 200
	}
	for range n {
		checkRender(t, randomEvent(rng))
	}
}

// randomEvent draws an event whose fields are empty, ordinary or awkward.
func randomEvent(rng *rand.Rand) Event {
	texts := []string{"", "a", "Patient/p1", "MedicationDispense/x/_history/2", "http://x/Patient/9", "<&>", "\"\\", "\u2028\u2029", "\x00\x1f", "é✓", "\xff\xfe", "a b", "Organization/", "/x"}
	str := func() string {
		if rng.IntN(3) == 0 {
			return texts[rng.IntN(len(texts))] + texts[rng.IntN(len(texts))]
		}
		return texts[rng.IntN(len(texts))]
	}
	interactions := []string{"", "read", "vread", "search-type", "create", "update", "delete", "history-instance", "capabilities", "$summary", "$verify", "page", "unknown", "retention"}
	ev := Event{
		ID:          "id" + str(),
		Recorded:    time.Unix(rng.Int64N(4e9), rng.Int64N(1e9)),
		Interaction: interactions[rng.IntN(len(interactions))],
		Status:      []int{200, 201, 401, 403, 404, 500, 503}[rng.IntN(7)],
		Description: str(),
		PatientBSN:  str(),
		Query:       str(),
		Category:    str(),
		Observer:    str(),
	}
	if rng.IntN(4) == 0 {
		ev.Action = "R"
	}
	for range rng.IntN(3) {
		ev.Resources = append(ev.Resources, str())
	}
	for range rng.IntN(3) {
		ev.Reasons = append(ev.Reasons, str())
	}
	for range rng.IntN(3) {
		ev.Sources = append(ev.Sources, Source{URA: str(), Name: str(), URL: str(), Count: rng.IntN(5), Outcome: str()})
	}
	if rng.IntN(3) > 0 {
		ev.Agent = &Agent{UZINumber: str(), CardType: []string{"", "Z", "S", "N"}[rng.IntN(4)], Role: str(), URA: str(), AGB: str(), Name: str(), Address: str()}
		switch rng.IntN(4) {
		case 0:
			ev.Agent.BSN = str()
		case 1:
			ev.Agent.System = str()
		}
	}
	if rng.IntN(2) == 0 {
		p := rng.IntN(2) == 0
		ev.Permit = &p
	}
	return ev
}

func FuzzRender(f *testing.F) {
	f.Add("id", "read", "desc", "999911120", "q=1", "Patient/p1", "reason", "name", "90000111", int64(0), 200)
	f.Add("x<y", "$summary", "\u2028", "", "", "http://x/Patient/1", "\xff", "\"", "", int64(1e15), 403)
	f.Fuzz(func(t *testing.T, id, interaction, desc, bsn, query, resource, reason, name, ura string, at int64, status int) {
		permit := status < 400
		checkRender(t, Event{
			ID: id, Recorded: time.UnixMicro(at % 1e17), Interaction: interaction, Status: status, Description: desc,
			PatientBSN: bsn, Query: query, Resources: []string{resource}, Reasons: []string{reason}, Permit: &permit,
			Agent:   &Agent{UZINumber: name, Name: name, URA: ura, Role: reason, Address: desc},
			Sources: []Source{{URA: ura, Name: name, URL: resource, Count: len(id)}},
		})
	})
}
