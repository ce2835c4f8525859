package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/schakelpunt/schakelpunt/access/pki"
	"github.com/schakelpunt/schakelpunt/federation"
	"github.com/schakelpunt/schakelpunt/federation/source"
	"github.com/schakelpunt/schakelpunt/fhir"
	"github.com/schakelpunt/schakelpunt/routing"
)

// serve --demo (DESIGN.md section 8): a GP system and two pharmacies run
// in this process as reference sources on loopback, with the embedded
// demo fixtures and server certificates of the development CA. Each
// registers its patients in the index and records the consents of
// demoConsents through the public API, with its own certificate, like any
// source: validated and audited.

// demoCert names the development PKI's server card of each demo source.
var demoCert = map[string]string{
	uraGP:        "bron-huisarts",
	uraPharmacy1: "bron-apotheek-1",
	uraPharmacy2: "bron-apotheek-2",
}

func isDemoURA(ura string) bool { _, ok := demoCert[ura]; return ok }

// Demo patients (BSNs of the fixtures).
const (
	demoBSNAll      = "999911120" // at all three sources; consented at all three
	demoBSNNone     = "999900006" // at De Brug and the GP; no consent
	demoBSNUnasked  = "999900018" // at Het Kruis and the GP; no consent
	demoBSNOnlyBrug = "999900031" // at both pharmacies and the GP; consented at De Brug only
)

// demoConsent is a consent a demo source records at its desk: the patient
// permits its own data of its categories (custodian: itself).
type demoConsent struct{ ura, bsn string }

var demoConsents = []demoConsent{
	{uraPharmacy1, demoBSNAll}, {uraPharmacy2, demoBSNAll}, {uraGP, demoBSNAll},
	{uraPharmacy1, demoBSNOnlyBrug},
}

// demo is the running demo sources.
type demo struct {
	sources []federation.Source
	data    map[string]*source.Data // by URA
	stop    context.CancelFunc
	wg      sync.WaitGroup
}

// demoSources are the running demo sources (none without --demo).
func (a *app) demoSources() []federation.Source {
	if a.demo == nil {
		return nil
	}
	return slices.Clone(a.demo.sources)
}

// startDemo starts the demo sources on 127.0.0.1, each on a port of its
// own, with its server card from DATA/pki/clients; they admit clients of
// the development CA (the switching point's federation certificate).
func (a *app) startDemo() (err error) {
	if a.pkiDir == "" {
		return errors.New("demo: needs the development PKI (no tls.cert configured)")
	}
	ca, err := pki.Load(a.pkiDir)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	ctx, stop := context.WithCancel(context.Background())
	d := &demo{data: map[string]*source.Data{}, stop: stop}
	defer func() {
		if err != nil {
			d.close()
		}
	}()
	for _, ds := range source.DemoSources() {
		data, err := source.LoadDemo(ds.Dir)
		if err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		prefix := filepath.Join(a.pkiDir, "clients", demoCert[ds.URA])
		cert, err := tls.LoadX509KeyPair(prefix+".crt", prefix+".key")
		if err != nil {
			return fmt.Errorf("demo: %s server certificate: %w", ds.Name, err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("demo: %s: %w", ds.Name, err)
		}
		base := "https://" + ln.Addr().String() + source.BasePath
		srv, err := source.NewServer(data, source.Options{
			Certificate: cert, ClientCAs: []*x509.Certificate{ca.Cert}, BaseURL: base,
			Logger: a.log.With(slog.String("demo_source", ds.URA)), ShutdownTimeout: 2 * time.Second,
		})
		if err != nil {
			ln.Close()
			return fmt.Errorf("demo: %s: %w", ds.Name, err)
		}
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			if err := srv.Serve(ctx, ln); err != nil {
				a.log.Error("demo source stopped", slog.String("ura", ds.URA), slog.String("error", err.Error()))
			}
		}()
		d.sources = append(d.sources, federation.Source{URA: ds.URA, Name: ds.Name, BaseURL: base, Categories: ds.Categories})
		d.data[ds.URA] = data
	}
	a.demo = d
	a.log.Warn("DEMO: a GP system and two pharmacies run in this process with sample data", slog.Int("sources", len(d.sources)))
	return nil
}

// close stops the demo sources and waits for them.
func (d *demo) close() {
	d.stop()
	d.wg.Wait()
}

// seedDemo registers each demo source's patients in the index (a
// conditional update: one entry per source and BSN, however often it
// runs) and records demoConsents (a conditional create: a source that
// already recorded a consent of the patient, also one withdrawn since,
// records none), through the public API at base.
func (a *app) seedDemo(ctx context.Context, base string) error {
	caCert, err := pki.Load(a.pkiDir)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert.Cert)
	registered, consents := 0, 0
	for _, s := range a.demo.sources {
		prefix := filepath.Join(a.pkiDir, "clients", demoCert[s.URA])
		cert, err := tls.LoadX509KeyPair(prefix+".crt", prefix+".key")
		if err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		tr := &http.Transport{TLSClientConfig: &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS12}}
		c := &http.Client{Timeout: 30 * time.Second, Transport: tr}
		for _, p := range a.demo.data[s.URA].Patients() {
			if p.BSN == "" {
				continue
			}
			body := fmt.Sprintf(`{"resourceType":"Patient",`+
				`"identifier":[{"system":%q,"value":%q}],`+
				`"managingOrganization":{"identifier":{"system":%q,"value":%q}},`+
				`"link":[{"other":{"reference":%q},"type":"seealso"}]}`,
				fhir.SystemBSN, p.BSN, fhir.SystemURA, s.URA, s.BaseURL+"/Patient/"+p.ID)
			target := base + "/Patient?identifier=" + url.QueryEscape(fhir.SystemBSN+"|"+p.BSN)
			if err := demoRequest(ctx, c, http.MethodPut, target, body, nil, 200, 201); err != nil {
				return fmt.Errorf("demo: %s registers a patient: %w", s.Name, err)
			}
			registered++
		}
		for _, dc := range demoConsents {
			if dc.ura != s.URA {
				continue
			}
			cond := "patient:identifier=" + url.QueryEscape(fhir.SystemBSN+"|"+dc.bsn)
			err := demoRequest(ctx, c, http.MethodPost, base+"/Consent", demoConsentBody(s, dc.bsn, time.Now()),
				map[string]string{"If-None-Exist": cond}, 200, 201, 412) // 412: it recorded several already
			if err != nil {
				return fmt.Errorf("demo: %s records a consent: %w", s.Name, err)
			}
			consents++
		}
		tr.CloseIdleConnections()
	}
	a.log.Info("demo: index registrations and consents sent through the API", slog.Int("registrations", registered), slog.Int("consents", consents))
	return nil
}

// demoConsentBody is an opt-in consent recorded at s's desk: s's data of
// its categories may be shared with any care provider the policy admits.
func demoConsentBody(s federation.Source, bsn string, now time.Time) string {
	var codes []string
	for _, cat := range s.Categories {
		codes = append(codes, fmt.Sprintf(`{"coding":[{"system":"http://loinc.org","code":%q}]}`, loincOf[cat].code))
	}
	start := now.Add(-time.Minute).UTC().Format(time.RFC3339)
	return fmt.Sprintf(`{"resourceType":"Consent","status":"active",`+
		`"scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"patient-privacy"}]},`+
		`"category":[{"coding":[{"system":"http://loinc.org","code":"59284-0"}]}],`+
		`"patient":{"identifier":{"system":%q,"value":%q}},`+
		`"dateTime":%q,`+
		`"organization":[{"identifier":{"system":%q,"value":%q}}],`+
		`"provision":{"type":"permit","period":{"start":%q},`+
		`"actor":[{"role":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ParticipationType","code":"CST"}]},`+
		`"reference":{"identifier":{"system":%q,"value":%q}}}],`+
		`"code":[%s]}}`,
		fhir.SystemBSN, bsn, start, fhir.SystemURA, s.URA, start, fhir.SystemURA, s.URA, strings.Join(codes, ","))
}

// demoRequest sends one request and wants one of the statuses; otherwise
// the error names the OperationOutcome's diagnostics.
func demoRequest(ctx context.Context, c *http.Client, method, target, body string, header map[string]string, want ...int) error {
	req, err := http.NewRequestWithContext(ctx, method, target, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/fhir+json")
	req.Header.Set("Accept", "application/fhir+json")
	req.Header.Set("Prefer", "return=minimal")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if slices.Contains(want, resp.StatusCode) {
		return nil
	}
	var oo struct {
		Issue []struct {
			Code        string `json:"code"`
			Diagnostics string `json:"diagnostics"`
		} `json:"issue"`
	}
	_ = json.Unmarshal(b, &oo)
	var why []string
	for _, is := range oo.Issue {
		why = append(why, is.Code+": "+is.Diagnostics)
	}
	return fmt.Errorf("%s %s: HTTP %d %s", method, strings.SplitN(target, "?", 2)[0], resp.StatusCode, strings.Join(why, "; "))
}

// localBase is the public FHIR base as a client on this machine reaches
// it: an unspecified listen address (0.0.0.0, ::) becomes 127.0.0.1, which
// the development server certificate names.
func (a *app) localBase() string {
	host, port, err := net.SplitHostPort(a.PublicAddr())
	if err == nil {
		if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
			host = "127.0.0.1"
		}
		return "https://" + net.JoinHostPort(host, port) + routing.BasePath
	}
	return "https://" + a.PublicAddr() + routing.BasePath
}

// demoNote is one printed demo command: what it shows and how.
type demoNote struct {
	what, role, path string
}

// demoNotes are the commands printed for --demo, one per demo role and
// outcome; cmd tests run each as printed.
func demoNotes() []demoNote {
	bsn := func(b string) string { return fhir.SystemBSN + "|" + b } // as a person types it; curl sends it as is
	return []demoNote{
		{"permit: a pharmacist sees the medication of " + demoBSNAll + ", merged from both pharmacies",
			"apotheker", "/MedicationDispense?patient.identifier=" + bsn(demoBSNAll)},
		{"permit: the GP's summary of " + demoBSNAll + " for a GP",
			"huisarts", "/Patient/$summary?identifier=" + bsn(demoBSNAll)},
		{"permit: a GP sees the medication of " + demoBSNOnlyBrug + " from De Brug only: Het Kruis has no consent and is not asked",
			"huisarts", "/MedicationDispense?patient.identifier=" + bsn(demoBSNOnlyBrug)},
		{"deny (403): " + demoBSNNone + " gave no consent",
			"apotheker", "/MedicationDispense?patient.identifier=" + bsn(demoBSNNone)},
		{"deny (403): a physiotherapist may not see medication, consent or not",
			"fysiotherapeut", "/MedicationDispense?patient.identifier=" + bsn(demoBSNAll)},
		{"the access log, newest first, as the supervisor",
			"toezichthouder", "/AuditEvent?_sort=-date&_count=10"},
	}
}

// printDemoNotes lists the demo sources and a command per demo role.
func (a *app) printDemoNotes(out io.Writer, curl func(role, path string) string) {
	fmt.Fprint(out, "DEMO sources in this process (stopped with it):\n")
	for _, s := range a.demo.sources {
		fmt.Fprintf(out, "  %-28s URA %s  %s  %s\n", s.Name, s.URA, s.BaseURL, strings.Join(s.Categories, ", "))
	}
	fmt.Fprintf(out, `Demo patients: %s registered at all three and consented at all three; %s consented at
De Brug only; %s and %s registered without consent.

Try (each prints the answer, then its HTTP status):
`, demoBSNAll, demoBSNOnlyBrug, demoBSNNone, demoBSNUnasked)
	for _, n := range demoNotes() {
		fmt.Fprintf(out, "\n# %s\n  %s\n", n.what, curl(n.role, n.path))
	}
	fmt.Fprintln(out)
}
