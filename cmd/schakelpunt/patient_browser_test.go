package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/schakelpunt/schakelpunt/federation/source"
)

// chromiumPath is Debian's chromium package.
const chromiumPath = "/usr/bin/chromium"

// TestPortalInBrowser drives the portal in headless Chromium end to end:
// a GP's federated medication query is in the patient's access log; the
// patient signs in with a development token, withdraws consent for the
// pharmacy's medication with a confirmation, and the GP's next query for
// that patient is denied (403) and audited as denied.
//
// It is skipped only when Chromium is absent outside CI; in CI (CI set)
// a missing Chromium fails it.
func TestPortalInBrowser(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") == "" {
			t.Skipf("no %s (install Debian's chromium package; CI requires it)", chromiumPath)
		}
		t.Fatalf("CI is set but %s is missing: %v", chromiumPath, err)
	}
	const bsn = "999911120"
	dir := t.TempDir()
	first := mustRunMain(t, dir) // the development PKI and demo certificates
	if err := first.shutdown(); err != nil {
		t.Fatal(err)
	}
	brug := startDemoSource(t, dir, source.DemoPharmacy1, "bron-apotheek-1")
	cfg, err := loadConfig([]string{"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--patient-listen", "127.0.0.1:0", "--data-dir", dir, "--log-level", "warn"}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	cfg.Sources = []SourceConfig{
		{URA: uraPharmacy1, Name: "Apotheek De Brug", BaseURL: brug, Categories: []string{"medication"}},
		// Named for the portal; never asked (it registers nobody here).
		{URA: uraGP, Name: "Huisartsenpraktijk De Linde", BaseURL: "https://127.0.0.1:1/fhir/R4", Categories: []string{"gp-summary"}},
	}
	a, err := start(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer a.shutdown()
	base := "https://" + a.PublicAddr() + "/fhir/R4"

	entry := `{"resourceType":"Patient","identifier":[{"system":"http://fhir.nl/fhir/NamingSystem/bsn","value":"` + bsn + `"}],` +
		`"managingOrganization":{"identifier":{"system":"http://fhir.nl/fhir/NamingSystem/ura","value":"` + uraPharmacy1 + `"}},` +
		`"link":[{"other":{"reference":"` + brug + `/Patient/brug-20417"},"type":"seealso"}]}`
	if status, body := send(t, devClient(t, dir, "bron-apotheek-1"), "PUT", base+"/Patient?identifier=http://fhir.nl/fhir/NamingSystem/bsn|"+bsn, entry); status != 201 {
		t.Fatalf("register: %d %s", status, body)
	}
	consent := `{"resourceType":"Consent","status":"active",` +
		`"scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"patient-privacy"}]},` +
		`"category":[{"coding":[{"system":"http://loinc.org","code":"59284-0"}]}],` +
		`"patient":{"identifier":{"system":"http://fhir.nl/fhir/NamingSystem/bsn","value":"` + bsn + `"}},` +
		`"dateTime":"2026-01-01T10:00:00+01:00",` +
		`"organization":[{"identifier":{"system":"http://fhir.nl/fhir/NamingSystem/ura","value":"` + uraPharmacy1 + `"}}],` +
		`"provision":{"type":"permit","period":{"start":"2026-01-01T00:00:00+01:00"},` +
		`"code":[{"coding":[{"system":"http://loinc.org","code":"10160-0"}]}]}}`
	if status, body := send(t, devClient(t, dir, "bron-apotheek-1"), "POST", base+"/Consent", consent); status != 201 {
		t.Fatalf("consent: %d %s", status, body)
	}
	gp := devClient(t, dir, "huisarts")
	query := base + "/MedicationDispense?patient.identifier=http://fhir.nl/fhir/NamingSystem/bsn|" + bsn
	if status, body := send(t, gp, "GET", query, ""); status != 200 || !bytes.Contains(body, []byte(`"MedicationDispense"`)) {
		t.Fatalf("the GP's first query: %d %s", status, body)
	}

	token := devPatientToken(t, dir, bsn)
	portal := "https://" + a.PatientAddr() + "/portal/"

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.NoSandbox,
		chromedp.Flag("disable-dev-shm-usage", true),
		// The development CA is not in the browser's trust store.
		chromedp.Flag("ignore-certificate-errors", true),
		chromedp.Flag("lang", "nl-NL"),
		chromedp.Flag("accept-lang", "nl-NL,nl"),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancelCtx := chromedp.NewContext(allocCtx)
	defer cancelCtx()
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()

	var lang, registrations, logTable, consentTable, confirmText, notice, afterLog string
	var signInProblems, logProblems []string
	err = runSteps(t, ctx,
		chromedp.Navigate(portal),
		chromedp.WaitVisible(`#token`, chromedp.ByID),
		chromedp.AttributeValue(`html`, "lang", &lang, nil, chromedp.ByQuery),
		chromedp.Evaluate(a11yCheck, &signInProblems),
		chromedp.SetValue(`#token`, token, chromedp.ByID),
		chromedp.Click(`#sign-in`, chromedp.ByID),
		chromedp.WaitVisible(`#registrations`, chromedp.ByID),
		chromedp.Text(`#registrations`, &registrations, chromedp.ByID),
		// The access log, through the menu.
		chromedp.Click(`a[href="/portal/log"]`, chromedp.ByQuery),
		chromedp.WaitVisible(`#log`, chromedp.ByID),
		chromedp.Text(`#log`, &logTable, chromedp.ByID),
		chromedp.Evaluate(a11yCheck, &logProblems),
		// Consent: withdraw, confirmed with the keyboard.
		chromedp.Click(`a[href="/portal/consent"]`, chromedp.ByQuery),
		chromedp.WaitVisible(`#consent`, chromedp.ByID),
		chromedp.Text(`#consent`, &consentTable, chromedp.ByID),
		chromedp.Click(`#withdraw-`+uraPharmacy1+`-10160-0`, chromedp.ByID),
		chromedp.WaitVisible(`#confirm`, chromedp.ByID),
		chromedp.Text(`main`, &confirmText, chromedp.ByQuery),
		chromedp.Focus(`#confirm`, chromedp.ByID),
		chromedp.KeyEvent(kb.Enter),
		chromedp.WaitVisible(`#notice`, chromedp.ByID),
		chromedp.Text(`#notice`, &notice, chromedp.ByID),
		chromedp.Text(`#consent`, &consentTable, chromedp.ByID),
	)
	if err != nil {
		t.Fatalf("browser: %v", err)
	}
	if len(signInProblems)+len(logProblems) > 0 {
		t.Errorf("accessibility: sign-in %v, log %v", signInProblems, logProblems)
	}
	if lang != "nl" {
		t.Errorf("html lang %q, want nl", lang)
	}
	if !strings.Contains(registrations, "Apotheek De Brug") || !strings.Contains(registrations, "medicatiegegevens") {
		t.Errorf("registrations: %q", registrations)
	}
	for _, want := range []string{"Huisartsenpraktijk De Linde", "huisarts", "medicatiegegevens", "gelukt"} {
		if !strings.Contains(logTable, want) {
			t.Errorf("the access log lacks %q: %q", want, logTable)
		}
	}
	if !strings.Contains(confirmText, "Apotheek De Brug") || !strings.Contains(confirmText, "trek mijn toestemming in") {
		t.Errorf("confirmation: %q", confirmText)
	}
	if !strings.Contains(notice, "ingetrokken") || !strings.Contains(consentTable, "Nee, niet gedeeld") {
		t.Errorf("after withdrawing: %q / %q", notice, consentTable)
	}

	// The GP's next query is denied and audited.
	status, body := send(t, gp, "GET", query, "")
	if status != 403 || !bytes.Contains(body, []byte(`"code":"forbidden"`)) {
		t.Fatalf("the GP's query after withdrawal: %d %s", status, body)
	}
	status, body = send(t, devClient(t, dir, "toezichthouder"), "GET",
		base+"/AuditEvent?agent:identifier=http://fhir.nl/fhir/NamingSystem/uzi-nr-pers|11111111&patient:identifier=http://fhir.nl/fhir/NamingSystem/bsn|"+bsn+"&outcome=4", "")
	if status != 200 || !bytes.Contains(body, []byte(`"valueString":"deny"`)) || !bytes.Contains(body, []byte(`"total":1`)) {
		t.Errorf("the denied query's AuditEvent: %d %s", status, body)
	}
	// And the patient sees it in their log (after it, the supervisor's
	// search that named them).
	err = chromedp.Run(ctx,
		chromedp.Navigate(portal+"log"),
		chromedp.WaitVisible(`#log`, chromedp.ByID),
		chromedp.Text(`#log tbody`, &afterLog, chromedp.ByQuery),
	)
	if err != nil {
		t.Fatalf("browser: %v", err)
	}
	denied := false
	for _, row := range strings.Split(afterLog, "\n") {
		if strings.Contains(row, "Huisartsenpraktijk De Linde") && strings.Contains(row, "huisarts") && strings.Contains(row, "medicatiegegevens") && strings.Contains(row, "geweigerd") {
			denied = true
		}
	}
	if !denied {
		t.Errorf("no denied GP query in the log: %q", afterLog)
	}
}

// runSteps runs the actions one by one, so that a failure names its step
// and shows the page it met.
func runSteps(t *testing.T, ctx context.Context, actions ...chromedp.Action) error {
	t.Helper()
	// The first Run starts the browser and binds it to its context: on
	// ctx, never on a step's shorter one.
	if err := chromedp.Run(ctx); err != nil {
		return fmt.Errorf("starting chromium: %w", err)
	}
	for i, a := range actions {
		stepCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
		err := chromedp.Run(stepCtx, a)
		cancel()
		if err != nil {
			var html, loc string
			_ = chromedp.Run(ctx, chromedp.Location(&loc), chromedp.OuterHTML("html", &html, chromedp.ByQuery))
			return fmt.Errorf("step %d: %w (at %s: %s)", i+1, err, loc, html)
		}
	}
	return nil
}

// a11yCheck lists basic accessibility problems of the page: form fields
// without a label, tables without a caption or column headers, header
// cells without a scope, a missing lang or main landmark.
const a11yCheck = `(() => {
	const p = [];
	if (!document.documentElement.lang) p.push("no lang attribute");
	if (!document.querySelector("main")) p.push("no main landmark");
	for (const el of document.querySelectorAll("input:not([type=hidden]), textarea, select"))
		if (!el.labels || el.labels.length === 0) p.push("unlabelled " + el.outerHTML);
	for (const t of document.querySelectorAll("table")) {
		if (!t.caption) p.push("table without caption");
		if (!t.querySelector("thead th")) p.push("table without column headers");
	}
	for (const th of document.querySelectorAll("th"))
		if (!th.getAttribute("scope")) p.push("th without scope");
	for (const b of document.querySelectorAll("button, a"))
		if (!b.textContent.trim()) p.push("control without text");
	return p;
})()`
