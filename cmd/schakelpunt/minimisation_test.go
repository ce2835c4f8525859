package main

import (
	"bytes"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/schakelpunt/schakelpunt/federation/source"
)

// clinicalTypes are the resource types whose content is medical, and
// clinicalElements the elements of them that name what a patient has or
// takes.
var (
	clinicalTypes    = []string{"MedicationDispense", "MedicationStatement", "Medication", "Condition", "AllergyIntolerance"}
	clinicalElements = []string{"medicationCodeableConcept", "code", "reaction", "dosageInstruction"}
)

// medicalTerms collects from the demo sources' fixtures every medication
// name and code, condition and allergy display, and dosage text they
// serve: each display, text and code string (of 4 characters or more)
// under the clinical elements of the clinical resources.
func medicalTerms(t *testing.T) []string {
	t.Helper()
	seen := map[string]bool{}
	var collect func(v any, inClinical bool)
	collect = func(v any, inClinical bool) {
		switch v := v.(type) {
		case map[string]any:
			rt, _ := v["resourceType"].(string)
			clinical := slices.Contains(clinicalTypes, rt)
			for k, x := range v {
				switch {
				case clinical && slices.Contains(clinicalElements, k):
					collect(x, true)
				case inClinical && (k == "display" || k == "text" || k == "code"):
					if s, ok := x.(string); ok && len(s) >= 4 {
						seen[s] = true
					}
					collect(x, inClinical)
				default:
					collect(x, inClinical && !clinical)
				}
			}
		case []any:
			for _, x := range v {
				collect(x, inClinical)
			}
		}
	}
	err := fs.WalkDir(source.DemoFS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || path.Ext(p) != ".json" {
			return err
		}
		raw, err := fs.ReadFile(source.DemoFS(), p)
		if err != nil {
			return err
		}
		var doc any
		if err := json.Unmarshal(raw, &doc); err != nil {
			return err
		}
		collect(doc, false)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	terms := make([]string, 0, len(seen))
	for s := range seen {
		terms = append(terms, s)
	}
	slices.Sort(terms)
	return terms
}

// scanDir returns, per term, the files under dir that contain it.
func scanDir(t *testing.T, dir string, terms []string) map[string][]string {
	t.Helper()
	hits := map[string][]string{}
	files := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		raw, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files++
		for term := range scanBytes(raw, terms) {
			hits[term] = append(hits[term], p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files == 0 {
		t.Fatalf("no files under %s", dir)
	}
	return hits
}

// scanBytes returns the terms that occur in b.
func scanBytes(b []byte, terms []string) map[string]bool {
	found := map[string]bool{}
	for _, term := range terms {
		if bytes.Contains(b, []byte(term)) {
			found[term] = true
		}
	}
	return found
}

// TestDataMinimisation: after federated MedicationDispense and GP summary
// queries (permitted and denied, and pages read), nothing the sources
// served of medical content is anywhere in the data directory (the
// SQLite database with its WAL, the audit export, the PKI) or in what the
// switching point logged, while the same scan finds all of it in the
// sources' own fixture files and much of it in the answers.
func TestDataMinimisation(t *testing.T) {
	terms := medicalTerms(t)
	if len(terms) < 30 {
		t.Fatalf("only %d medical terms in the demo fixtures: %v", len(terms), terms)
	}

	// Control: the scan finds every term in the sources' fixture files
	// written to disk, so a leak would be found.
	control := t.TempDir()
	if err := os.CopyFS(control, source.DemoFS()); err != nil {
		t.Fatal(err)
	}
	if hits := scanDir(t, control, terms); len(hits) != len(terms) {
		for _, term := range terms {
			if len(hits[term]) == 0 {
				t.Errorf("control: %q not found in the fixtures", term)
			}
		}
	}

	e := mustFedEnv(t)
	e.register("bron-apotheek-1", uraPharmacy1, "999911120", e.brug+"/Patient/brug-20417")
	e.register("bron-apotheek-2", uraPharmacy2, "999911120", e.kruis+"/Patient/kruis-5521")
	e.register("bron-huisarts", uraGP, "999911120", e.gp+"/Patient/linde-1001")
	e.register("bron-apotheek-1", uraPharmacy1, "999900031", e.brug+"/Patient/brug-18230")
	e.register("bron-apotheek-2", uraPharmacy2, "999900031", e.kruis+"/Patient/kruis-6012")
	e.register("bron-huisarts", uraGP, "999900018", e.gp+"/Patient/linde-1003")
	e.consent("bron-apotheek-1", uraPharmacy1, "999911120", "10160-0")
	e.consent("bron-huisarts", uraGP, "999911120", "60591-5")
	e.consent("bron-apotheek-2", uraPharmacy2, "999900031", "10160-0")

	var answers bytes.Buffer
	ask := func(role, url string, want int) []byte {
		t.Helper()
		status, body := e.do(role, "GET", url, "")
		if status != want {
			t.Fatalf("%s %s: %d, want %d: %s", role, url, status, want, body)
		}
		answers.Write(body)
		return body
	}
	ask("apotheker", medicationQuery("999911120"), 200)
	ask("huisarts", medicationQuery("999911120")+"&whenhandedover=ge2020-01-01", 200)
	ask("huisarts", "/Patient/$summary?identifier=http://fhir.nl/fhir/NamingSystem/bsn|999911120", 200)
	ask("apotheker", "/Patient/$summary?identifier=http://fhir.nl/fhir/NamingSystem/bsn|999911120", 403) // wrong role
	ask("huisarts", "/Patient/$summary?identifier=http://fhir.nl/fhir/NamingSystem/bsn|999900018", 403)  // no consent
	ask("fysiotherapeut", medicationQuery("999911120"), 403)                                             // wrong role
	ask("apotheker", medicationQuery("999900006"), 403)                                                  // not registered
	next := e.base + medicationQuery("999900031") + "&_count=5"
	for pages := 0; next != ""; pages++ {
		if pages > 10 {
			t.Fatal("no end of pages")
		}
		next = mustBundle(t, ask("apotheker", next, 200)).link("next")
	}

	// The audit export, written under the data directory.
	sup := devClient(t, e.dir, "toezichthouder")
	status, _, hdr := sendWithHeaders(t, sup, "GET", e.base+"/AuditEvent/$export", "Prefer", "respond-async")
	if status != 202 {
		t.Fatalf("export kick-off: %d", status)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		status, body, _ := sendWithHeaders(t, sup, "GET", hdr.Get("Content-Location"))
		if status == 200 {
			break
		}
		if status != 202 || time.Now().After(deadline) {
			t.Fatalf("export status: %d %s", status, body)
		}
	}

	served := scanBytes(answers.Bytes(), terms)
	t.Logf("%d terms, %d in the answers: %q", len(terms), len(served), terms[:8])
	if len(served) < len(terms)/3 {
		t.Fatalf("the answers carried only %d of %d terms: the queries did not get the data", len(served), len(terms))
	}

	check := func(when string) {
		t.Helper()
		// Control: the scan reads the database, its WAL and the export as
		// they are: the patient's BSN (index, consent, audit) is found.
		if bsnHits := scanDir(t, e.dir, []string{"999900031"}); len(bsnHits["999900031"]) == 0 {
			t.Fatalf("%s: control: the BSN is nowhere in the data directory", when)
		}
		exports := false
		_ = filepath.WalkDir(filepath.Join(e.dir, "exports"), func(p string, d fs.DirEntry, err error) error {
			exports = exports || (err == nil && !d.IsDir())
			return nil
		})
		if !exports {
			t.Errorf("%s: no export file was written", when)
		}
		for term, files := range scanDir(t, e.dir, terms) {
			t.Errorf("%s: %q (served by a source) is on disk at the switching point: %v", when, term, files)
		}
		logs := []byte(e.logs.String())
		if len(logs) == 0 {
			t.Errorf("%s: nothing was logged: the log scan proves nothing", when)
		}
		for term := range scanBytes(logs, terms) {
			t.Errorf("%s: %q (served by a source) is in the logs", when, term)
		}
		if bytes.Contains(logs, []byte("999911120")) || bytes.Contains(logs, []byte("999900031")) {
			t.Errorf("%s: a BSN is in the logs", when)
		}
	}
	check("running")
	e.stop() // checkpoints the WAL into the database
	check("after shutdown")
}

// sendWithHeaders GETs url with the header pairs given and returns the
// status, body and headers of the answer.
func sendWithHeaders(tb testing.TB, c *http.Client, method, url string, headers ...string) (int, []byte, http.Header) {
	tb.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		tb.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return resp.StatusCode, body, resp.Header
}
