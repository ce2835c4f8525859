package federation_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/schakelpunt/schakelpunt/access"
	"github.com/schakelpunt/schakelpunt/access/pki"
	"github.com/schakelpunt/schakelpunt/federation"
	"github.com/schakelpunt/schakelpunt/federation/source"
	"github.com/schakelpunt/schakelpunt/fhir"
	"github.com/schakelpunt/schakelpunt/profiles"
	"github.com/schakelpunt/schakelpunt/store"
	"github.com/schakelpunt/schakelpunt/store/sqlite"
)

const (
	testBSN   = "999911120" // at De Brug (brug-20417, 6 dispenses) and Het Kruis (kruis-5521, 8)
	uraGP     = "90000001"
	uraBrug   = "90000002"
	uraKruis  = "90000003"
	nBrug     = 6
	nKruis    = 8
	requester = "90000050"
)

func professional(role string) access.Principal {
	return access.Principal{OID: access.UZIPolicyOID, Version: "1", UZINumber: "11111111",
		CardType: access.CardProfessional, URA: requester, Role: role, AGB: "00000000"}
}

var gp = professional("01.015")

// shared is what every test may reuse: the CA, our client certificate,
// the source certificates and the validator (slow to build).
var shared = sync.OnceValues(func() (*fixtures, error) {
	dir, err := mkdirTemp()
	if err != nil {
		return nil, err
	}
	ca, err := pki.Init(dir)
	if err != nil {
		return nil, err
	}
	f := &fixtures{ca: ca, certs: map[string]tls.Certificate{}}
	if f.client, err = issue(ca, pki.IssueRequest{CardType: access.CardServer, UZI: "22222229", URA: "90000999", Name: "Schakelpunt", DNS: []string{"127.0.0.1"}}); err != nil {
		return nil, err
	}
	for _, ura := range []string{uraGP, uraBrug, uraKruis} {
		if f.certs[ura], err = issue(ca, pki.IssueRequest{CardType: access.CardServer, UZI: "2222222" + ura[7:], URA: ura, DNS: []string{"localhost", "127.0.0.1"}}); err != nil {
			return nil, err
		}
	}
	codec, err := fhir.NewCodec()
	if err != nil {
		return nil, err
	}
	if f.validator, err = profiles.New(codec); err != nil {
		return nil, err
	}
	return f, nil
})

type fixtures struct {
	ca        *pki.CA
	client    tls.Certificate
	certs     map[string]tls.Certificate
	validator *profiles.Validator
}

func issue(ca *pki.CA, req pki.IssueRequest) (tls.Certificate, error) {
	certPEM, keyPEM, _, err := ca.Issue(req)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(certPEM, keyPEM)
}

// envOptions shape one test's world.
type envOptions struct {
	wrap     map[string]func(http.Handler) http.Handler // by URA
	down     map[string]bool                            // by URA: a closed listener
	consents []string                                   // Consent JSON bodies
	config   func(*federation.Config)
}

type env struct {
	engine *federation.Engine
	bases  map[string]string // URA → base URL
	cats   map[string][]string
}

// basesFor are the base URLs of the sources providing cat, by URA.
func (e *env) basesFor(cat string) map[string]string {
	m := map[string]string{}
	for ura, cs := range e.cats {
		if slices.Contains(cs, cat) {
			m[ura] = e.bases[ura]
		}
	}
	return m
}

func mustEnv(t *testing.T, o envOptions) *env {
	t.Helper()
	f, err := shared()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "index.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })

	e := &env{bases: map[string]string{}, cats: map[string][]string{}}
	var registry []federation.Source
	for _, ds := range source.DemoSources() {
		d, err := source.LoadDemo(ds.Dir)
		if err != nil {
			t.Fatal(err)
		}
		base := mustServe(t, f, ds.URA, d, o.wrap[ds.URA], o.down[ds.URA])
		e.bases[ds.URA] = base
		e.cats[ds.URA] = ds.Categories
		registry = append(registry, federation.Source{URA: ds.URA, Name: ds.Name, BaseURL: base, Categories: ds.Categories})
		for _, p := range d.Patients() {
			if p.BSN != "" {
				mustWrite(t, st, "Patient", "idx-"+p.ID, indexEntry(p.BSN, ds.URA, base+"/Patient/"+p.ID))
			}
		}
	}
	for i, c := range o.consents {
		mustWrite(t, st, "Consent", fmt.Sprintf("c%d", i), c)
	}
	cfg := federation.Config{
		Registry: registry, Index: st, Policy: access.DefaultPolicy(), Validator: f.validator,
		ClientCert: f.client, SourceCAs: []*x509.Certificate{f.ca.Cert},
		PerSourceTimeout: 2 * time.Second, Deadline: 4 * time.Second,
	}
	if o.config != nil {
		o.config(&cfg)
	}
	if e.engine, err = federation.New(cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.engine.Close)
	return e
}

// mustServe runs a source on 127.0.0.1:0 until the test ends and returns
// its base URL; down closes the listener at once instead.
func mustServe(t *testing.T, f *fixtures, ura string, d *source.Data, wrap func(http.Handler) http.Handler, down bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "https://" + ln.Addr().String() + source.BasePath
	if down {
		_ = ln.Close()
		return base
	}
	srv, err := source.NewServer(d, source.Options{Certificate: f.certs[ura], ClientCAs: []*x509.Certificate{f.ca.Cert}, Wrap: wrap, ShutdownTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	return base
}

func mustWrite(t *testing.T, st store.Store, typ, id, body string) {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Create(context.Background(), store.Write{Type: typ, ID: id, Body: []byte(body), Terms: fhir.ExtractTerms(typ, doc)}); err != nil {
		t.Fatal(err)
	}
}

func indexEntry(bsn, ura, link string) string {
	return fmt.Sprintf(`{"resourceType":"Patient",
  "identifier":[{"system":"http://fhir.nl/fhir/NamingSystem/bsn","value":%q}],
  "managingOrganization":{"identifier":{"system":"http://fhir.nl/fhir/NamingSystem/ura","value":%q}},
  "link":[{"other":{"reference":%q},"type":"seealso"}]}`, bsn, ura, link)
}

// consent permits medication for testBSN, from custodian (any source
// when "").
func consent(custodian string) string { return consentFor("10160-0", custodian) }

func consentFor(category, custodian string) string {
	actor := ""
	if custodian != "" {
		actor = fmt.Sprintf(`,"actor":[{"role":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ParticipationType","code":"CST"}]},
      "reference":{"identifier":{"system":"http://fhir.nl/fhir/NamingSystem/ura","value":%q}}}]`, custodian)
	}
	org := custodian
	if org == "" {
		org = uraBrug
	}
	return fmt.Sprintf(`{"resourceType":"Consent","status":"active",
  "scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"patient-privacy"}]},
  "category":[{"coding":[{"system":"http://loinc.org","code":"59284-0"}]}],
  "patient":{"identifier":{"system":"http://fhir.nl/fhir/NamingSystem/bsn","value":%q}},
  "dateTime":%q,
  "organization":[{"identifier":{"system":"http://fhir.nl/fhir/NamingSystem/ura","value":%q}}],
  "provision":{"type":"permit","period":{"start":%q}%s,
    "code":[{"coding":[{"system":"http://loinc.org","code":%q}]}]}}`,
		testBSN, time.Now().Add(-time.Hour).Format(time.RFC3339), org, time.Now().Add(-48*time.Hour).Format(time.RFC3339), actor, category)
}

// bundle is a merged answer decoded.
type bundle struct {
	ResourceType string `json:"resourceType"`
	Type         string `json:"type"`
	Entry        []struct {
		FullURL  string         `json:"fullUrl"`
		Resource map[string]any `json:"resource"`
		Search   struct {
			Mode string `json:"mode"`
		} `json:"search"`
	} `json:"entry"`
}

var tempDirs []string

func mkdirTemp() (string, error) {
	d, err := os.MkdirTemp("", "federation-test-")
	if err == nil {
		tempDirs = append(tempDirs, d)
	}
	return d, err
}

func TestMain(m *testing.M) {
	code := m.Run()
	for _, d := range tempDirs {
		_ = os.RemoveAll(d)
	}
	os.Exit(code)
}
