package main

import (
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// fedBundle is what the tests read of a federated searchset.
type fedBundle struct {
	Total *int `json:"total"`
	Link  []struct {
		Relation string `json:"relation"`
		URL      string `json:"url"`
	} `json:"link"`
	Entry []struct {
		FullURL  string `json:"fullUrl"`
		Resource struct {
			ResourceType   string `json:"resourceType"`
			WhenHandedOver string `json:"whenHandedOver"`
		} `json:"resource"`
		Search struct {
			Mode string `json:"mode"`
		} `json:"search"`
	} `json:"entry"`
}

func mustBundle(t *testing.T, body []byte) fedBundle {
	t.Helper()
	var b fedBundle
	if err := json.Unmarshal(body, &b); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	return b
}

func (b fedBundle) link(rel string) string {
	for _, l := range b.Link {
		if l.Relation == rel {
			return l.URL
		}
	}
	return ""
}

// matches are the fullUrls of the match entries, in order.
func (b fedBundle) matches() []string {
	var out []string
	for _, e := range b.Entry {
		if e.Search.Mode == "match" {
			out = append(out, e.FullURL)
		}
	}
	return out
}

// auditEvents are the AuditEvents of the professional with UZI number uzi
// about bsn, as a supervisor reads them.
func (e *fedEnv) auditEvents(bsn, uzi string) []map[string]any {
	e.t.Helper()
	status, body := e.do("toezichthouder", "GET", "/AuditEvent?_count=200&patient:identifier=http://fhir.nl/fhir/NamingSystem/bsn|"+bsn+
		"&agent:identifier=http://fhir.nl/fhir/NamingSystem/uzi-nr-pers|"+uzi, "")
	if status != 200 {
		e.t.Fatalf("audit search: %d %s", status, body)
	}
	var b struct {
		Entry []struct {
			Resource map[string]any `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(body, &b); err != nil {
		e.t.Fatal(err)
	}
	var evs []map[string]any
	for _, en := range b.Entry {
		evs = append(evs, en.Resource)
	}
	return evs
}

// auditDetail is the value of the "access decision" entity's detail typ
// ("decision", "category") in an AuditEvent.
func auditDetail(ev map[string]any, typ string) string {
	ents, _ := ev["entity"].([]any)
	for _, en := range ents {
		en := en.(map[string]any)
		if en["name"] != "access decision" {
			continue
		}
		ds, _ := en["detail"].([]any)
		for _, d := range ds {
			d := d.(map[string]any)
			if d["type"] == typ {
				s, _ := d["valueString"].(string)
				return s
			}
		}
	}
	return ""
}

// auditInteraction is our name of the AuditEvent's interaction: the
// interaction extension when there is one, else the subtype.
func auditInteraction(ev map[string]any) string {
	exts, _ := ev["extension"].([]any)
	for _, x := range exts {
		x := x.(map[string]any)
		if x["url"] == "http://schakelpunt.nl/fhir/StructureDefinition/audit-interaction" {
			code, _ := x["valueCoding"].(map[string]any)["code"].(string)
			return code
		}
	}
	subs, _ := ev["subtype"].([]any)
	for _, sub := range subs {
		code, _ := sub.(map[string]any)["code"].(string)
		return code
	}
	return ""
}

// TestFederatedPaging: a merged result of two pharmacies read in pages of
// _count: opaque tokens, the union of the pages is the whole result in
// the same order, newest first; a token is only its certificate's; every
// page read is audited with the patient and category.
func TestFederatedPaging(t *testing.T) {
	e := mustFedEnv(t)
	const bsn = "999900031" // 16 dispenses at De Brug, 2 at Het Kruis
	e.register("bron-apotheek-1", uraPharmacy1, bsn, e.brug+"/Patient/brug-18230")
	e.register("bron-apotheek-2", uraPharmacy2, bsn, e.kruis+"/Patient/kruis-6012")
	e.consent("bron-apotheek-1", uraPharmacy1, bsn, "10160-0")

	status, body := e.do("apotheker", "GET", medicationQuery(bsn)+"&_count=1000", "")
	if status != 200 {
		t.Fatalf("%d %s", status, body)
	}
	whole := mustBundle(t, body)
	if len(whole.matches()) != 18 || len(whole.Link) != 0 || whole.Total != nil {
		t.Fatalf("one page: %d matches, links %v, total %v; want 18, no links (nothing held), no total", len(whole.matches()), whole.Link, whole.Total)
	}
	last := time.Time{}
	for i, en := range whole.Entry {
		at, err := time.Parse(time.RFC3339, en.Resource.WhenHandedOver)
		if err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		if i > 0 && at.After(last) {
			t.Errorf("not newest first: %s after %s", at, last)
		}
		last = at
	}

	token := regexp.MustCompile(`^` + regexp.QuoteMeta(e.base) + `/_page/[A-Za-z0-9_-]{24}$`)
	var union []string
	var tokens []string
	next := medicationQuery(bsn) + "&_count=4"
	pages := 0
	for next != "" {
		status, body := e.do("apotheker", "GET", next, "")
		if status != 200 {
			t.Fatalf("page %d: %d %s", pages+1, status, body)
		}
		b := mustBundle(t, body)
		pages++
		if n := len(b.matches()); n == 0 || n > 4 {
			t.Errorf("page %d has %d matches", pages, n)
		}
		for _, l := range b.Link {
			if !token.MatchString(l.URL) || strings.Contains(l.URL, bsn) {
				t.Errorf("link %s %s is not an opaque token", l.Relation, l.URL)
			}
		}
		if b.link("self") == "" || (pages > 1) != (b.link("previous") != "") {
			t.Errorf("page %d links: %v", pages, b.Link)
		}
		union = append(union, b.matches()...)
		next = b.link("next")
		if next != "" {
			tokens = append(tokens, next)
		}
		if pages > 10 {
			t.Fatal("no end of pages")
		}
	}
	if pages != 5 || !slices.Equal(union, whole.matches()) {
		t.Errorf("%d pages; union of the pages:\n%v\nwant the whole result:\n%v", pages, union, whole.matches())
	}

	t.Run("another certificate gets 404", func(t *testing.T) {
		for _, role := range []string{"huisarts", "toezichthouder", "fysiotherapeut"} {
			status, body := e.do(role, "GET", tokens[0], "")
			if status != 404 || !strings.Contains(string(body), `"code":"not-found"`) || strings.Contains(string(body), "MedicationDispense") {
				t.Errorf("%s: %d %s", role, status, body)
			}
		}
		status, body := e.do("apotheker", "GET", e.base+"/_page/AAAAAAAAAAAAAAAAAAAAAAAA", "")
		if status != 404 || !strings.Contains(string(body), `"code":"not-found"`) {
			t.Errorf("unknown token: %d %s", status, body)
		}
		if status, body := e.do("apotheker", "GET", tokens[0], ""); status != 200 {
			t.Errorf("the owner lost the page after another's attempt: %d %s", status, body)
		}
	})

	t.Run("page reads audited", func(t *testing.T) {
		evs := e.auditEvents(bsn, "11111112")
		var pageReads, searches int
		for _, ev := range evs {
			switch auditInteraction(ev) {
			case "page":
				pageReads++
				if auditDetail(ev, "decision") != "permit" || !strings.HasSuffix(auditDetail(ev, "category"), "|10160-0") {
					raw, _ := json.Marshal(ev)
					t.Errorf("page read without decision or category: %s", raw)
				}
			case "search-type":
				searches++
			}
		}
		// Pages 2-5, and the owner's read after the foreign attempts.
		if pageReads != 5 || searches != 2 {
			t.Errorf("%d page reads, %d searches audited; want 5 and 2", pageReads, searches)
		}
		// The foreign attempts are audited too, as the huisarts's, naming
		// no patient: the token told them nothing.
		for _, ev := range e.auditEvents(bsn, "11111111") {
			if auditInteraction(ev) == "page" {
				raw, _ := json.Marshal(ev)
				t.Errorf("a refused page read names the patient: %s", raw)
			}
		}
	})
}
