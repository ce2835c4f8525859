package source_test

import (
	"context"
	"encoding/json"
	"io/fs"
	"path"
	"slices"
	"testing"

	"github.com/schakelpunt/schakelpunt/federation/source"
	"github.com/schakelpunt/schakelpunt/fhir"
	"github.com/schakelpunt/schakelpunt/profiles"
)

func mustValidator(tb testing.TB) (*fhir.Codec, *profiles.Validator) {
	tb.Helper()
	codec, err := fhir.NewCodec()
	if err != nil {
		tb.Fatal(err)
	}
	v, err := profiles.New(codec)
	if err != nil {
		tb.Fatal(err)
	}
	return codec, v
}

// demoResources walks every resource of the demo fixtures: top-level
// ones and Bundle entries, with the file they are in.
func demoResources(tb testing.TB, fn func(file string, raw json.RawMessage, doc map[string]any)) {
	tb.Helper()
	err := fs.WalkDir(source.DemoFS(), ".", func(p string, de fs.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return err
		}
		raw, err := fs.ReadFile(source.DemoFS(), p)
		if err != nil {
			return err
		}
		var doc map[string]any
		if err := json.Unmarshal(raw, &doc); err != nil {
			tb.Fatalf("%s: %v", p, err)
		}
		fn(p, raw, doc)
		var b struct {
			Entry []struct {
				Resource json.RawMessage `json:"resource"`
			} `json:"entry"`
		}
		if doc["resourceType"] == "Bundle" {
			if err := json.Unmarshal(raw, &b); err != nil {
				tb.Fatal(err)
			}
			for _, e := range b.Entry {
				var m map[string]any
				if err := json.Unmarshal(e.Resource, &m); err != nil {
					tb.Fatal(err)
				}
				fn(p, e.Resource, m)
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
}

// TestDemoFixturesValid: every fixture passes base validation, every
// MedicationDispense our MedicationDispense profile, every document the
// summary profile (which validates the Composition too), as written.
func TestDemoFixturesValid(t *testing.T) {
	codec, v := mustValidator(t)
	ctx := context.Background()
	counts := map[string]int{}
	demoResources(t, func(file string, raw json.RawMessage, doc map[string]any) {
		typ, _ := doc["resourceType"].(string)
		counts[typ]++
		if _, err := codec.Parse(raw, ""); err != nil {
			t.Errorf("%s: %s/%v: base validation: %v", file, typ, doc["id"], err)
		}
		profile := ""
		switch {
		case typ == "MedicationDispense":
			profile = profiles.ProfileMedicationDispense
		case typ == "Bundle" && doc["type"] == "document":
			profile = profiles.ProfileSummaryBundle
		case typ == "Composition":
			profile = profiles.ProfileSummaryComposition
		}
		if issues := v.Validate(ctx, raw, profile); profiles.HasErrors(issues) {
			t.Errorf("%s: %s/%v against %q: %+v", file, typ, doc["id"], profile, issues)
		}
		if issues := v.ValidateSourceResource(ctx, raw); profiles.HasErrors(issues) {
			t.Errorf("%s: %s/%v as a source resource: %+v", file, typ, doc["id"], issues)
		}
	})
	for typ, min := range map[string]int{"MedicationDispense": 40, "Patient": 10, "Composition": 4, "Condition": 6, "AllergyIntolerance": 3, "MedicationStatement": 10} {
		if counts[typ] < min {
			t.Errorf("%d %s in the fixtures, want at least %d", counts[typ], typ, min)
		}
	}
}

// TestDemoFixtureContent pins who is where: the demo and the federation
// tests build on it.
func TestDemoFixtureContent(t *testing.T) {
	want := map[string]map[string]string{ // source → BSN → local id
		source.DemoGP:        {"999911120": "linde-1001", "999900006": "linde-1002", "999900018": "linde-1003", "999900031": "linde-1004"},
		source.DemoPharmacy1: {"999911120": "brug-20417", "999900006": "brug-20988", "999900031": "brug-18230"},
		source.DemoPharmacy2: {"999911120": "kruis-5521", "999900018": "kruis-5790", "999900031": "kruis-6012"},
	}
	for _, ds := range source.DemoSources() {
		t.Run(ds.Dir, func(t *testing.T) {
			d := mustLoadDemo(t, ds.Dir)
			got := map[string]string{}
			for _, p := range d.Patients() {
				if !fhir.ValidBSN(p.BSN) {
					t.Errorf("Patient/%s: BSN %q fails the eleven-check", p.ID, p.BSN)
				}
				got[p.BSN] = p.ID
			}
			if !mapsEqual(got, want[ds.Dir]) {
				t.Errorf("patients %v, want %v", got, want[ds.Dir])
			}
			for _, id := range got {
				if has := d.HasSummary(id); has != slices.Contains(ds.Categories, "gp-summary") {
					t.Errorf("HasSummary(%s) = %v with categories %v", id, has, ds.Categories)
				}
			}
			if slices.Contains(ds.Categories, "medication") != slices.Contains(d.Types(), "MedicationDispense") {
				t.Errorf("types %v with categories %v", d.Types(), ds.Categories)
			}
		})
	}
}

// TestDemoDocumentsSelfContained: each document's Composition sections
// refer to Conditions, AllergyIntolerances and MedicationStatements that
// are entries of the same document, about the same patient.
func TestDemoDocumentsSelfContained(t *testing.T) {
	files, err := fs.Glob(source.DemoFS(), path.Join(source.DemoGP, "*.json"))
	if err != nil || len(files) != 4 {
		t.Fatalf("GP documents: %v %v", files, err)
	}
	for _, f := range files {
		raw, _ := fs.ReadFile(source.DemoFS(), f)
		var b struct {
			Type  string
			Entry []struct {
				Resource map[string]any
			}
		}
		if err := json.Unmarshal(raw, &b); err != nil {
			t.Fatal(err)
		}
		held := map[string]map[string]any{}
		for _, e := range b.Entry {
			held[e.Resource["resourceType"].(string)+"/"+e.Resource["id"].(string)] = e.Resource
		}
		comp := b.Entry[0].Resource
		subject := ref(comp, "subject.reference")
		if b.Type != "document" || comp["resourceType"] != "Composition" || held[subject] == nil {
			t.Fatalf("%s: not a document opening with a Composition about a Patient it holds", f)
		}
		kinds := map[string]bool{}
		sections, _ := comp["section"].([]any)
		for _, s := range sections {
			entries, _ := s.(map[string]any)["entry"].([]any)
			for _, e := range entries {
				r := e.(map[string]any)["reference"].(string)
				res := held[r]
				if res == nil {
					t.Errorf("%s: section entry %s is not in the document", f, r)
					continue
				}
				kinds[res["resourceType"].(string)] = true
				about := ref(res, "subject.reference") + ref(res, "patient.reference")
				if about != subject {
					t.Errorf("%s: %s is about %q, the document about %q", f, r, about, subject)
				}
			}
		}
		for _, k := range []string{"Condition", "MedicationStatement"} {
			if !kinds[k] {
				t.Errorf("%s: no section refers to a %s", f, k)
			}
		}
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
