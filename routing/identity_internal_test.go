package routing

import (
	"net/http/httptest"
	"reflect"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/schakelpunt/schakelpunt/store"
)

// TestNotePatientOfResults: how a search's results name the patients of
// its AuditEvents.
func TestNotePatientOfResults(t *testing.T) {
	const bsn, other = "999911120", "999900031"
	consent := func(id, b string) store.Resource {
		return store.Resource{Type: "Consent", ID: id, Version: 1, Body: withBSN(t, "consent.json", b)}
	}
	org := store.Resource{Type: "Organization", ID: "o", Version: 2, Body: []byte(`{"resourceType":"Organization","id":"o"}`)}
	logged := store.Resource{Type: "AuditEvent", ID: "e", Version: 1, Body: []byte(`{"resourceType":"AuditEvent","id":"e","entity":[{"what":{"type":"Patient","identifier":{"system":"http://fhir.nl/fhir/NamingSystem/bsn","value":"` + other + `"}}}]}`)}
	for _, tc := range []struct {
		name        string
		results     []store.Resource
		wantPatient string
		wantParts   []patientPart
	}{
		{"nothing", nil, "", nil},
		{"about nobody", []store.Resource{org}, "", nil},
		{"one patient, and a resource about nobody", []store.Resource{consent("a", bsn), org, consent("b", bsn)}, bsn, nil},
		{"two patients, and a resource about nobody", []store.Resource{consent("a", bsn), org, consent("b", other), consent("c", bsn)}, "", []patientPart{
			{bsn: bsn, resources: []string{"Consent/a/_history/1", "Consent/c/_history/1"}},
			{bsn: other, resources: []string{"Consent/b/_history/1"}},
			{resources: []string{"Organization/o/_history/2"}},
		}},
		{"two patients in the log: not split", []store.Resource{consent("a", bsn), logged}, "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := gin.CreateTestContext(httptest.NewRecorder())
			trailOf(c).identified = true
			notePatientOfResults(c, tc.results)
			tr := trailOf(c)
			if tr.patientBSN != tc.wantPatient || !reflect.DeepEqual(tr.byPatient, tc.wantParts) {
				t.Errorf("patient %q, parts %+v; want %q, %+v", tr.patientBSN, tr.byPatient, tc.wantPatient, tc.wantParts)
			}
		})
	}
}
