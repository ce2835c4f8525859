package profiles

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/schakelpunt/schakelpunt/fhir"
)

// The official R4 examples come from the npm package hl7.fhir.r4.examples,
// fetched by this test with `npm pack` into the user's cache directory
// (nothing from it is committed). SCHAKELPUNT_FHIR_EXAMPLES may name an
// unpacked copy of the package instead; SCHAKELPUNT_SKIP_NPM=1 skips the
// tests that need it.
const (
	examplesPackage = "hl7.fhir.r4.examples"
	examplesVersion = "4.0.1"
)

// exampleTypes are the resource types whose official examples must pass
// base validation.
var exampleTypes = []string{"Patient", "Consent", "AuditEvent", "MedicationDispense", "Medication", "Organization", "Bundle"}

// knownBad lists the official examples that truly violate R4, with the
// reason. None is listed: google/fhir's base validation (structure,
// cardinality, primitive formats, required bindings, reference types) and
// our Go checks (BSN, URA, per-1) accept every example of these types in
// 4.0.1. FHIRPath invariants other than per-1 are not evaluated.
var knownBad = map[string]string{}

// bigExample is the size above which an example (the spec's definition
// Bundles, up to 35 MB, some minutes under -race) is skipped under -short
// and -race.
const bigExample = 1 << 20

// MustR4Examples returns the directory of the unpacked examples package
// ("package/" inside the tarball), fetching it on first use.
func MustR4Examples(tb testing.TB) string {
	tb.Helper()
	if os.Getenv("SCHAKELPUNT_SKIP_NPM") == "1" {
		tb.Skip("SCHAKELPUNT_SKIP_NPM=1: skipping the tests over the official R4 examples (npm package " + examplesPackage + ")")
	}
	if dir := os.Getenv("SCHAKELPUNT_FHIR_EXAMPLES"); dir != "" {
		if _, err := os.Stat(filepath.Join(dir, "package.json")); err != nil {
			tb.Fatalf("SCHAKELPUNT_FHIR_EXAMPLES=%s: not an unpacked %s package: %v", dir, examplesPackage, err)
		}
		return dir
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		tb.Fatalf("no user cache directory for the npm package %s: %v (set SCHAKELPUNT_FHIR_EXAMPLES or SCHAKELPUNT_SKIP_NPM=1)", examplesPackage, err)
	}
	root := filepath.Join(cache, "schakelpunt", "npm")
	dir := filepath.Join(root, examplesPackage+"-"+examplesVersion)
	if _, err := os.Stat(filepath.Join(dir, "package.json")); err == nil {
		return dir
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		tb.Fatalf("npm is needed to fetch the official R4 examples (%s@%s) and is not on PATH: install Node.js and npm, or set SCHAKELPUNT_SKIP_NPM=1 to skip these tests", examplesPackage, examplesVersion)
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		tb.Fatal(err)
	}
	tmp, err := os.MkdirTemp(root, "fetch-")
	if err != nil {
		tb.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "pack", "--silent", "--pack-destination", tmp, examplesPackage+"@"+examplesVersion)
	out, err := cmd.CombinedOutput()
	if err != nil {
		tb.Fatalf("npm pack %s@%s: %v\n%s", examplesPackage, examplesVersion, err, out)
	}
	tgz := filepath.Join(tmp, examplesPackage+"-"+examplesVersion+".tgz")
	unpacked := filepath.Join(tmp, "unpacked")
	if err := untar(tgz, unpacked); err != nil {
		tb.Fatalf("unpack %s: %v", tgz, err)
	}
	if err := os.Rename(filepath.Join(unpacked, "package"), dir); err != nil {
		if _, statErr := os.Stat(filepath.Join(dir, "package.json")); statErr != nil {
			tb.Fatalf("install %s: %v", dir, err)
		}
	}
	return dir
}

// untar unpacks the regular files of a .tgz under dir.
func untar(tgz, dir string) error {
	f, err := os.Open(tgz)
	if err != nil {
		return err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return fmt.Errorf("gunzip: %w", err)
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read tar: %w", err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		name := filepath.Clean(h.Name)
		if strings.HasPrefix(name, "..") || filepath.IsAbs(name) {
			return fmt.Errorf("unsafe path %q in archive", h.Name)
		}
		dst := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		out, err := os.Create(dst)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, tr); err != nil {
			out.Close()
			return fmt.Errorf("write %s: %w", dst, err)
		}
		if err := out.Close(); err != nil {
			return err
		}
	}
}

// TestR4ExamplesPassBaseValidation runs base validation (the codec and our
// Go checks, no profile) over the official examples of the types we serve
// or pass through.
func TestR4ExamplesPassBaseValidation(t *testing.T) {
	dir := MustR4Examples(t)
	c, err := fhir.NewCodec()
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range exampleTypes {
		t.Run(typ, func(t *testing.T) {
			files, err := filepath.Glob(filepath.Join(dir, typ+"-*.json"))
			if err != nil {
				t.Fatal(err)
			}
			if len(files) == 0 {
				t.Fatalf("no %s examples in %s", typ, dir)
			}
			for _, f := range files {
				name := filepath.Base(f)
				t.Run(strings.TrimSuffix(name, ".json"), func(t *testing.T) {
					if fi, err := os.Stat(f); err == nil && fi.Size() > bigExample && (testing.Short() || raceDetector) {
						t.Skipf("%d MB, one of the spec's definition Bundles: skipped under -short and -race (run go test -run TestR4Examples ./profiles/ for them)", fi.Size()>>20)
					}
					body, err := os.ReadFile(f)
					if err != nil {
						t.Fatal(err)
					}
					var issues []fhir.Issue
					res, err := c.Parse(body, typ)
					if err != nil {
						issues = fhir.AsError(err).Issues
					} else {
						for _, is := range invariants(res.Raw, typ) {
							if is.Severity == "error" {
								issues = append(issues, is)
							}
						}
					}
					reason, bad := knownBad[name]
					switch {
					case bad && len(issues) == 0:
						t.Errorf("listed as violating R4 (%s) but passes: remove it from knownBad", reason)
					case !bad && len(issues) > 0:
						t.Errorf("fails base validation: %+v", issues)
					}
				})
			}
		})
	}
}

// TestDefinitionsMatchR4Base checks each differential element of our
// definitions against the R4 base definitions shipped in the same package:
// its base path and cardinality are stated truly, and it only narrows them.
func TestDefinitionsMatchR4Base(t *testing.T) {
	dir := MustR4Examples(t)
	type baseElement struct {
		Path, Max        string
		Min              int
		ContentReference string
		Base             struct {
			Path, Max string
			Min       int
		}
	}
	snapshots := map[string]map[string]baseElement{} // type → path → element
	snapshot := func(typ string) map[string]baseElement {
		if s, ok := snapshots[typ]; ok {
			return s
		}
		body, err := os.ReadFile(filepath.Join(dir, "StructureDefinition-"+typ+".json"))
		if err != nil {
			t.Fatalf("base definition of %s: %v", typ, err)
		}
		var sd struct {
			Snapshot struct {
				Element []baseElement
			}
		}
		if err := json.Unmarshal(body, &sd); err != nil {
			t.Fatal(err)
		}
		s := map[string]baseElement{}
		for _, el := range sd.Snapshot.Element {
			s[el.Path] = el
		}
		snapshots[typ] = s
		return s
	}
	sds, _, err := loadDefinitions()
	if err != nil {
		t.Fatal(err)
	}
	maxOf := func(s string) int {
		if s == "*" {
			return 1 << 30
		}
		var n int
		fmt.Sscan(s, &n)
		return n
	}
	typeOf := regexp.MustCompile(`^[A-Za-z]+`)
	for _, sd := range sds {
		t.Run(sd.Name, func(t *testing.T) {
			for _, el := range sd.elements[1:] {
				var want baseElement
				if b, ok := snapshot(sd.Type)[el.Path]; ok {
					want = b
				} else {
					// An element of a data type (Patient.identifier.system):
					// its base is that data type's element.
					b, ok := snapshot(typeOf.FindString(el.Base.Path))[el.Base.Path]
					if !ok {
						t.Errorf("%s: base %s is not an R4 element", el.ID, el.Base.Path)
						continue
					}
					want = b
					want.Base.Path, want.Base.Min, want.Base.Max = b.Path, b.Min, b.Max
				}
				if el.Base.Path != want.Base.Path || el.Base.Min != want.Base.Min || el.Base.Max != want.Base.Max {
					t.Errorf("%s: base %s %d..%s, R4 says %s %d..%s", el.ID, el.Base.Path, el.Base.Min, el.Base.Max,
						want.Base.Path, want.Base.Min, want.Base.Max)
				}
				if el.Min != nil && *el.Min < want.Min {
					t.Errorf("%s: min %d is below R4's %d", el.ID, *el.Min, want.Min)
				}
				if el.Max != "" && maxOf(el.Max) > maxOf(want.Max) {
					t.Errorf("%s: max %s is above R4's %s", el.ID, el.Max, want.Max)
				}
				if el.ContentReference != "" && el.ContentReference != want.ContentReference {
					t.Errorf("%s: contentReference %s, R4 says %s", el.ID, el.ContentReference, want.ContentReference)
				}
			}
		})
	}
}
