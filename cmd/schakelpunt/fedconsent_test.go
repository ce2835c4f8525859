package main

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

// TestConsentWithdrawnBetweenQueries: a consent that is present permits
// the first query; withdrawn (set inactive with PUT, or deleted) between
// two queries, the very next query is denied, and both AuditEvents carry
// their decision.
func TestConsentWithdrawnBetweenQueries(t *testing.T) {
	e := mustFedEnv(t)
	cases := []struct {
		name, bsn, role, ura, link string
		withdraw                   func(id string) (int, []byte)
	}{
		{"status inactive by PUT", "999900018", "bron-apotheek-2", uraPharmacy2, e.kruis + "/Patient/kruis-5790", func(id string) (int, []byte) {
			body := strings.Replace(consentBody(uraPharmacy2, "999900018", "10160-0", "inactive"), `{"resourceType":"Consent",`, `{"resourceType":"Consent","id":"`+id+`",`, 1)
			return e.do("bron-apotheek-2", "PUT", "/Consent/"+id, body)
		}},
		{"deleted", "999900006", "bron-apotheek-1", uraPharmacy1, e.brug + "/Patient/brug-20988", func(id string) (int, []byte) {
			return e.do("bron-apotheek-1", "DELETE", "/Consent/"+id, "")
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e.register(c.role, c.ura, c.bsn, c.link)
			id := e.consent(c.role, c.ura, c.bsn, "10160-0")

			status, body := e.do("apotheker", "GET", medicationQuery(c.bsn), "")
			if status != 200 || len(mustBundle(t, body).matches()) == 0 {
				t.Fatalf("with consent: %d %s", status, body)
			}
			if status, body := c.withdraw(id); status != 200 && status != 204 {
				t.Fatalf("withdraw: %d %s", status, body)
			}
			status, body = e.do("apotheker", "GET", medicationQuery(c.bsn), "")
			if status != 403 || !strings.Contains(string(body), `"code":"forbidden"`) || strings.Contains(string(body), "MedicationDispense/") {
				t.Fatalf("after withdrawal: %d %s", status, body)
			}

			evs := e.auditEvents(c.bsn, "11111112")
			slices.SortFunc(evs, func(a, b map[string]any) int { return strings.Compare(a["recorded"].(string), b["recorded"].(string)) })
			var got []string
			for _, ev := range evs {
				if auditInteraction(ev) != "search-type" {
					continue
				}
				got = append(got, ev["outcome"].(string)+" "+auditDetail(ev, "decision")+" "+auditDetail(ev, "category"))
			}
			// In the order recorded: the permit, then the denial.
			want := []string{"0 permit http://loinc.org|10160-0", "4 deny http://loinc.org|10160-0"}
			if !slices.Equal(got, want) {
				raw, _ := json.Marshal(evs)
				t.Errorf("audited %v, want %v: %s", got, want, raw)
			}
		})
	}
}
