package conformance

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.json")

// TestCapabilityStatementGolden keeps the rendered CapabilityStatement in
// testdata, so a change to the API shows up as a diff a reviewer reads.
// After an intended change: go test ./conformance -run Golden -update
func TestCapabilityStatementGolden(t *testing.T) {
	b, _ := render(t)
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		t.Fatal(err)
	}
	out.WriteByte('\n')
	path := filepath.Join("testdata", "capabilitystatement.golden.json")
	if *update {
		if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(out.Bytes(), want) {
		t.Errorf("the CapabilityStatement differs from %s; if intended, run go test ./conformance -run Golden -update and review the diff", path)
	}
}
