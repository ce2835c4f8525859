package source_test

import (
	"context"
	"crypto/x509"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/schakelpunt/schakelpunt/access"
	"github.com/schakelpunt/schakelpunt/access/pki"
	"github.com/schakelpunt/schakelpunt/federation/source"
	"github.com/schakelpunt/schakelpunt/fhir"
	"github.com/schakelpunt/schakelpunt/profiles"
)

// demo runs the three demo sources in this process, each on its own
// listener with its own data and certificate.
type demo struct {
	pki   *testPKI
	c     *http.Client
	bases map[string]string // demo dir → FHIR base
}

func mustRunDemo(t *testing.T) *demo {
	t.Helper()
	p := mustPKI(t)
	d := &demo{pki: p, c: p.httpClient(&p.client), bases: map[string]string{}}
	for _, ds := range source.DemoSources() {
		d.bases[ds.Dir] = mustServe(t, p, mustLoadDemo(t, ds.Dir), source.Options{Certificate: p.serverCert(t, ds.URA)})
	}
	return d
}

// check inspects a successful answer.
type check func(t *testing.T, base string, r response)

// searchset: a searchset Bundle with total and these resource ids, in
// order, each with its absolute fullUrl at the source.
func searchset(total int, ids ...string) check {
	return func(t *testing.T, base string, r response) {
		t.Helper()
		if r.body["resourceType"] != "Bundle" || r.body["type"] != "searchset" {
			t.Fatalf("not a searchset: %s", r.raw)
		}
		if got, _ := r.body["total"].(float64); int(got) != total {
			t.Errorf("total %v, want %d", r.body["total"], total)
		}
		var got []string
		for _, e := range r.entries() {
			res := e["resource"].(map[string]any)
			id := res["id"].(string)
			got = append(got, id)
			if want := base + "/" + res["resourceType"].(string) + "/" + id; e["fullUrl"] != want {
				t.Errorf("fullUrl %v, want %s", e["fullUrl"], want)
			}
			if s, _ := e["search"].(map[string]any); s["mode"] != "match" {
				t.Errorf("search.mode %v", e["search"])
			}
		}
		if ids != nil && !slices.Equal(got, ids) {
			t.Errorf("ids %v, want %v", got, ids)
		}
	}
}

// count: a searchset with n entries (total n).
func count(n int) check {
	return func(t *testing.T, base string, r response) {
		t.Helper()
		searchset(n)(t, base, r)
		if len(r.entries()) != n {
			t.Errorf("%d entries, want %d", len(r.entries()), n)
		}
	}
}

func all(cs ...check) check {
	return func(t *testing.T, base string, r response) {
		for _, c := range cs {
			c(t, base, r)
		}
	}
}

// aboutPatient: every entry's subject is Patient/id.
func aboutPatient(id string) check {
	return func(t *testing.T, base string, r response) {
		t.Helper()
		for _, res := range r.resources() {
			if got := ref(res, "subject.reference"); got != "Patient/"+id {
				t.Errorf("%v is about %q", res["id"], got)
			}
		}
	}
}

// handedOverNewestFirst: whenHandedOver descending.
func handedOverNewestFirst(t *testing.T, base string, r response) {
	t.Helper()
	var prev int64 = fhir.MaxTime
	for _, res := range r.resources() {
		s, _ := res["whenHandedOver"].(string)
		dr, ok := fhir.ParseDateRange(s)
		if !ok {
			continue
		}
		if dr.Lo > prev {
			t.Errorf("%v handed over %s after a newer one", res["id"], s)
		}
		prev = dr.Lo
	}
}

func resourceIs(typ, id string) check {
	return func(t *testing.T, base string, r response) {
		t.Helper()
		if got, _ := r.body["id"].(string); r.body["resourceType"] != typ || got != id {
			t.Errorf("got %v/%v, want %s/%s", r.body["resourceType"], r.body["id"], typ, id)
		}
	}
}

func TestSourceAPI(t *testing.T) {
	d := mustRunDemo(t)
	const (
		gp    = source.DemoGP
		brug  = source.DemoPharmacy1
		kruis = source.DemoPharmacy2
	)
	tests := []struct {
		name   string
		src    string
		path   string // after the base; "{base}" is replaced by the base
		header []string
		status int
		check  check  // for 200
		issue  string // the OperationOutcome issue code otherwise
	}{
		// read
		{name: "read Patient", src: brug, path: "/Patient/brug-20417", status: 200, check: resourceIs("Patient", "brug-20417")},
		{name: "read MedicationDispense", src: kruis, path: "/MedicationDispense/kruis-md-0001", status: 200, check: resourceIs("MedicationDispense", "kruis-md-0001")},
		{name: "read a document entry", src: gp, path: "/Condition/linde-1001-c1", status: 200, check: resourceIs("Condition", "linde-1001-c1")},
		{name: "read the document", src: gp, path: "/Bundle/samenvatting-linde-1001", status: 200, check: resourceIs("Bundle", "samenvatting-linde-1001")},
		{name: "read unknown id", src: brug, path: "/Patient/kruis-5521", status: 404, issue: "not-found"},
		{name: "read with _format=json", src: brug, path: "/Patient/brug-20417?_format=json", status: 200, check: resourceIs("Patient", "brug-20417")},
		{name: "read with an unknown parameter", src: brug, path: "/Patient/brug-20417?_elements=name", status: 400, issue: "not-supported"},

		// search by patient, subject, _id
		{name: "patient=id", src: brug, path: "/MedicationDispense?patient=brug-20417", status: 200,
			check: all(count(6), aboutPatient("brug-20417"), handedOverNewestFirst)},
		{name: "patient=Patient/id", src: brug, path: "/MedicationDispense?patient=Patient/brug-20417", status: 200, check: count(6)},
		{name: "patient=absolute URL here", src: brug, path: "/MedicationDispense?patient={base}/Patient/brug-20417", status: 200, check: count(6)},
		{name: "patient=absolute URL elsewhere", src: brug, path: "/MedicationDispense?patient=https://elders.example/fhir/R4/Patient/brug-20417", status: 200, check: count(0)},
		{name: "subject=id", src: brug, path: "/MedicationDispense?subject=brug-18230", status: 200, check: all(count(16), aboutPatient("brug-18230"), handedOverNewestFirst)},
		{name: "patient with two ids", src: brug, path: "/MedicationDispense?patient=brug-20417,brug-20988", status: 200, check: count(9)},
		{name: "patient unknown here", src: brug, path: "/MedicationDispense?patient=kruis-5521", status: 200, check: count(0)},
		{name: "_id", src: brug, path: "/MedicationDispense?_id=brug-md-0001,brug-md-0003", status: 200, check: searchset(2, "brug-md-0001", "brug-md-0003")},
		{name: "Patient?_id", src: kruis, path: "/Patient?_id=kruis-5790", status: 200, check: searchset(1, "kruis-5790")},
		{name: "all dispenses", src: brug, path: "/MedicationDispense?_count=1000", status: 200, check: all(count(25), handedOverNewestFirst)},
		{name: "GP: Condition?patient", src: gp, path: "/Condition?patient=linde-1001", status: 200, check: searchset(3, "linde-1001-c1", "linde-1001-c2", "linde-1001-c3")},
		{name: "GP: MedicationStatement?subject", src: gp, path: "/MedicationStatement?subject=Patient/linde-1004", status: 200, check: count(4)},
		{name: "GP: AllergyIntolerance?patient", src: gp, path: "/AllergyIntolerance?patient=linde-1003", status: 200, check: searchset(1, "linde-1003-a1")},
		{name: "type held nowhere in the table nor data", src: brug, path: "/Observation?patient=brug-20417", status: 404, issue: "not-supported"},
		{name: "type in the table, not in the data", src: gp, path: "/MedicationDispense?patient=linde-1001", status: 200, check: count(0)},

		// whenhandedover: brug-20417 was handed over 2026-01-12 (3) and 2026-04-13 (3)
		{name: "whenhandedover ge", src: brug, path: "/MedicationDispense?patient=brug-20417&whenhandedover=ge2026-04-01", status: 200, check: all(count(3), handedOverNewestFirst)},
		{name: "whenhandedover lt", src: brug, path: "/MedicationDispense?patient=brug-20417&whenhandedover=lt2026-04-01", status: 200, check: count(3)},
		{name: "whenhandedover day (eq)", src: brug, path: "/MedicationDispense?patient=brug-20417&whenhandedover=2026-01-12", status: 200, check: count(3)},
		{name: "whenhandedover eq month", src: brug, path: "/MedicationDispense?patient=brug-20417&whenhandedover=eq2026-04", status: 200, check: count(3)},
		{name: "whenhandedover ne", src: brug, path: "/MedicationDispense?patient=brug-20417&whenhandedover=ne2026-01-12", status: 200, check: count(3)},
		{name: "whenhandedover gt", src: brug, path: "/MedicationDispense?patient=brug-20417&whenhandedover=gt2026-01-12", status: 200, check: count(3)},
		{name: "whenhandedover le", src: brug, path: "/MedicationDispense?patient=brug-20417&whenhandedover=le2026-04-13", status: 200, check: count(6)},
		{name: "whenhandedover sa", src: brug, path: "/MedicationDispense?patient=brug-20417&whenhandedover=sa2026-04-12", status: 200, check: count(3)},
		{name: "whenhandedover eb", src: brug, path: "/MedicationDispense?patient=brug-20417&whenhandedover=eb2026-04-13", status: 200, check: count(3)},
		{name: "whenhandedover to the second, with zone", src: brug, path: "/MedicationDispense?patient=brug-20417&whenhandedover=" + url.QueryEscape("2026-04-13T16:20:00+02:00"), status: 200, check: count(3)},
		{name: "whenhandedover range (repeated: AND)", src: brug, path: "/MedicationDispense?patient=brug-18230&whenhandedover=ge2026-02-01&whenhandedover=lt2026-09-01", status: 200, check: count(8)},
		{name: "whenhandedover either (comma: OR)", src: brug, path: "/MedicationDispense?patient=brug-18230&whenhandedover=2026-01-05,2026-10-05", status: 200, check: count(8)},
		{name: "whenhandedover skips dispenses not handed over", src: kruis, path: "/MedicationDispense?patient=kruis-5521&whenhandedover=ge2026-01-01", status: 200, check: count(7)},
		{name: "whenhandedover bad prefix", src: brug, path: "/MedicationDispense?patient=brug-20417&whenhandedover=ap2026", status: 400, issue: "invalid"},
		{name: "whenhandedover bad date", src: brug, path: "/MedicationDispense?patient=brug-20417&whenhandedover=2026-13", status: 400, issue: "invalid"},

		// status: kruis-5521 has 7 completed dispenses and 1 in progress
		{name: "status completed", src: kruis, path: "/MedicationDispense?patient=kruis-5521&status=completed", status: 200, check: count(7)},
		{name: "status in-progress", src: kruis, path: "/MedicationDispense?patient=kruis-5521&status=in-progress", status: 200, check: count(1)},
		{name: "status either", src: kruis, path: "/MedicationDispense?patient=kruis-5521&status=completed,in-progress", status: 200, check: count(8)},
		{name: "status none", src: kruis, path: "/MedicationDispense?patient=kruis-5521&status=cancelled", status: 200, check: count(0)},
		{name: "status with a system", src: kruis, path: "/MedicationDispense?status=x|completed", status: 400, issue: "invalid"},

		// _count
		{name: "_count", src: brug, path: "/MedicationDispense?patient=brug-20417&_count=2", status: 200, check: func(t *testing.T, base string, r response) {
			searchset(6)(t, base, r)
			if len(r.entries()) != 2 || r.link("next") == "" {
				t.Errorf("%d entries, next %q", len(r.entries()), r.link("next"))
			}
		}},
		{name: "_count=0", src: brug, path: "/MedicationDispense?patient=brug-20417&_count=0", status: 200, check: searchset(6, []string(nil)...)},
		{name: "_count negative", src: brug, path: "/MedicationDispense?patient=brug-20417&_count=-1", status: 400, issue: "invalid"},

		// $summary
		{name: "$summary", src: gp, path: "/Patient/linde-1001/$summary", status: 200, check: func(t *testing.T, base string, r response) {
			if r.body["resourceType"] != "Bundle" || r.body["type"] != "document" {
				t.Fatalf("not a document: %s", r.raw)
			}
			comp := r.resources()[0]
			if comp["resourceType"] != "Composition" || ref(comp, "subject.reference") != "Patient/linde-1001" {
				t.Errorf("first entry %v about %q", comp["resourceType"], ref(comp, "subject.reference"))
			}
			for _, e := range r.entries() {
				res := e["resource"].(map[string]any)
				if want := base + "/" + res["resourceType"].(string) + "/" + res["id"].(string); e["fullUrl"] != want {
					t.Errorf("fullUrl %v, want %s", e["fullUrl"], want)
				}
			}
		}},
		{name: "$summary percent-encoded", src: gp, path: "/Patient/linde-1003/%24summary", status: 200, check: resourceIs("Bundle", "samenvatting-linde-1003")},
		{name: "$summary unknown patient", src: gp, path: "/Patient/linde-9999/$summary", status: 404, issue: "not-found"},
		{name: "$summary at a pharmacy", src: brug, path: "/Patient/brug-20417/$summary", status: 404, issue: "not-found"},

		// errors
		{name: "unknown parameter", src: brug, path: "/MedicationDispense?patient=brug-20417&foo=bar", status: 400, issue: "not-supported"},
		{name: "modifier", src: brug, path: "/MedicationDispense?patient=brug-20417&status:not=completed", status: 400, issue: "not-supported"},
		{name: "patient on Patient", src: brug, path: "/Patient?patient=brug-20417", status: 400, issue: "not-supported"},
		{name: "patient of another type", src: brug, path: "/MedicationDispense?patient=Group/g1", status: 400, issue: "invalid"},
		{name: "empty value", src: brug, path: "/MedicationDispense?patient=", status: 400, issue: "invalid"},
		{name: "XML asked", src: brug, path: "/Patient/brug-20417", header: []string{"Accept", "application/fhir+xml"}, status: 406, issue: "not-supported"},
		{name: "_format xml", src: brug, path: "/Patient/brug-20417?_format=xml", status: 406, issue: "not-supported"},
		{name: "outside the base", src: brug, path: "/../../other", status: 404, issue: "not-found"},
		{name: "metadata", src: gp, path: "/metadata", status: 200, check: resourceIs("CapabilityStatement", "")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := d.bases[tt.src]
			r := do(t, d.c, "GET", base+strings.ReplaceAll(tt.path, "{base}", url.QueryEscape(base)), tt.header...)
			if r.status != tt.status {
				t.Fatalf("status %d, want %d: %s", r.status, tt.status, r.raw)
			}
			if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/fhir+json") {
				t.Errorf("Content-Type %q", ct)
			}
			if tt.status != 200 {
				if codes := r.issueCodes(); !slices.Equal(codes, []string{tt.issue}) {
					t.Errorf("issue codes %v, want [%s]: %s", codes, tt.issue, r.raw)
				}
				return
			}
			tt.check(t, base, r)
		})
	}
}

// TestSourcePaging follows next links to the end.
func TestSourcePaging(t *testing.T) {
	d := mustRunDemo(t)
	u := d.bases[source.DemoPharmacy1] + "/MedicationDispense?patient=brug-18230&_count=5"
	var ids []string
	pages := 0
	for u != "" {
		r := do(t, d.c, "GET", u)
		if r.status != 200 {
			t.Fatalf("%s: %d %s", u, r.status, r.raw)
		}
		for _, res := range r.resources() {
			ids = append(ids, res["id"].(string))
		}
		u = r.link("next")
		if pages++; pages > 10 {
			t.Fatal("paging does not end")
		}
	}
	if pages != 4 || len(ids) != 16 || len(slices.Compact(slices.Sorted(slices.Values(ids)))) != 16 {
		t.Errorf("%d pages, ids %v", pages, ids)
	}
}

// TestSourceAnswersValidate: what the sources serve passes the validation
// the switching point applies to source answers: every MedicationDispense
// of each searchset, and every summary document as served (rebased).
func TestSourceAnswersValidate(t *testing.T) {
	d := mustRunDemo(t)
	codec, v := mustValidator(t)
	ctx := context.Background()
	for _, ds := range source.DemoSources() {
		data := mustLoadDemo(t, ds.Dir)
		for _, p := range data.Patients() {
			base := d.bases[ds.Dir]
			if data.HasSummary(p.ID) {
				r := do(t, d.c, "GET", base+"/Patient/"+p.ID+"/$summary")
				if r.status != 200 {
					t.Fatalf("%s $summary: %d", p.ID, r.status)
				}
				if issues := v.Validate(ctx, r.raw, profiles.ProfileSummaryBundle); profiles.HasErrors(issues) {
					t.Errorf("%s: summary as served: %+v", p.ID, issues)
				}
			}
			r := do(t, d.c, "GET", base+"/MedicationDispense?patient="+p.ID)
			if _, err := codec.Parse(r.raw, "Bundle"); err != nil {
				t.Errorf("%s: searchset: %v", p.ID, err)
			}
			for _, e := range r.entries() {
				raw, _ := jsonMarshal(e["resource"])
				if issues := v.ValidateSourceResource(ctx, raw); profiles.HasErrors(issues) {
					t.Errorf("%s: %v: %+v", p.ID, e["fullUrl"], issues)
				}
			}
		}
	}
	r := do(t, d.c, "GET", d.bases[source.DemoGP]+"/metadata")
	if _, err := codec.Parse(r.raw, "CapabilityStatement"); err != nil {
		t.Errorf("metadata: %v", err)
	}
}

// TestSourceRequiresClientCertificate: no certificate, or one from
// another CA, and the handshake is refused; the right one gets in.
func TestSourceRequiresClientCertificate(t *testing.T) {
	p := mustPKI(t)
	base := mustServe(t, p, mustLoadDemo(t, source.DemoPharmacy1), source.Options{})
	other, err := pki.Init(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	stranger := mustIssue(t, other, pki.IssueRequest{CardType: access.CardServer, UZI: "22222228", URA: "90000888"})
	tests := []struct {
		name   string
		client *http.Client
		ok     bool
	}{
		{"no client certificate", p.httpClient(nil), false},
		{"certificate of another CA", p.httpClient(&stranger), false},
		{"certificate of the client CA", p.httpClient(&p.client), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := tt.client.Get(base + "/Patient/brug-20417")
			if resp != nil {
				resp.Body.Close()
			}
			if tt.ok && (err != nil || resp.StatusCode != 200) {
				t.Fatalf("refused: %v", err)
			}
			if !tt.ok && err == nil {
				t.Fatalf("admitted: %d", resp.StatusCode)
			}
		})
	}
}

// TestSourceBaseURLAndMethods: a configured public base is used in
// fullUrls; writes are refused.
func TestSourceBaseURLAndMethods(t *testing.T) {
	p := mustPKI(t)
	const public = "https://apotheek.example:9102/fhir/R4"
	base := mustServe(t, p, mustLoadDemo(t, source.DemoPharmacy1), source.Options{BaseURL: public + "/"})
	c := p.httpClient(&p.client)
	r := do(t, c, "GET", base+"/MedicationDispense?_id=brug-md-0001")
	if e := r.entries(); len(e) != 1 || e[0]["fullUrl"] != public+"/MedicationDispense/brug-md-0001" {
		t.Errorf("entries %v", e)
	}
	if r.link("self") != public+"/MedicationDispense?_id=brug-md-0001" {
		t.Errorf("self %q", r.link("self"))
	}
	for _, m := range []string{"POST", "PUT", "DELETE", "PATCH"} {
		r := do(t, c, m, base+"/Patient/brug-20417")
		if r.status != 405 || !slices.Equal(r.issueCodes(), []string{"not-supported"}) || r.header.Get("Allow") == "" {
			t.Errorf("%s: %d %s", m, r.status, r.raw)
		}
	}
}

// TestSourceGracefulShutdown: a request in flight when the context ends
// is answered, then Serve returns nil.
func TestSourceGracefulShutdown(t *testing.T) {
	p := mustPKI(t)
	entered, release := make(chan struct{}), make(chan struct{})
	srv, err := source.NewServer(mustLoadDemo(t, source.DemoPharmacy2), source.Options{
		Certificate: p.serverCert(t, "90000003"),
		ClientCAs:   []*x509.Certificate{p.ca.Cert},
		Wrap: func(h http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				close(entered)
				<-release
				h.ServeHTTP(w, r)
			})
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()

	answered := make(chan int, 1)
	go func() {
		resp, err := p.httpClient(&p.client).Get("https://" + ln.Addr().String() + source.BasePath + "/Patient/kruis-5790")
		if err != nil {
			answered <- 0
			return
		}
		resp.Body.Close()
		answered <- resp.StatusCode
	}()
	<-entered
	cancel()
	select {
	case err := <-served:
		t.Fatalf("Serve returned with a request in flight: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	if s := <-answered; s != 200 {
		t.Errorf("request in flight: status %d", s)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve: %v", err)
	}
}

func TestNewServerNeedsCertificateAndCA(t *testing.T) {
	p := mustPKI(t)
	data := mustLoadDemo(t, source.DemoGP)
	if _, err := source.NewServer(data, source.Options{ClientCAs: []*x509.Certificate{p.ca.Cert}}); err == nil {
		t.Error("no server certificate: accepted")
	}
	if _, err := source.NewServer(data, source.Options{Certificate: p.serverCert(t, "90000001")}); err == nil {
		t.Error("no client CA: accepted")
	}
}
