package source_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/schakelpunt/schakelpunt/federation/source"
)

const (
	tPatient = `{"resourceType":"Patient","id":"p1","identifier":[{"system":"http://fhir.nl/fhir/NamingSystem/bsn","value":"999900043"}],"name":[{"family":"Test"}]}`
	tMD      = `{"resourceType":"MedicationDispense","id":"md1","status":"completed","medicationCodeableConcept":{"text":"Metformine tablet 500 mg"},"subject":{"reference":"Patient/p1"},"whenHandedOver":"2026-05-01T10:00:00+02:00"}`
	tMD2     = `{"resourceType":"MedicationDispense","id":"md1","status":"stopped","medicationCodeableConcept":{"text":"Metformine tablet 500 mg"},"subject":{"reference":"Patient/p1"}}`
	// A document written with urn:uuid fullUrls: the Composition's
	// subject is the Patient entry's fullUrl.
	tDocUUID = `{"resourceType":"Bundle","id":"doc1","identifier":{"system":"urn:ietf:rfc:3986","value":"urn:uuid:5f1a0c2e-4b1e-4a57-9d0e-1f0c1b2a3d4e"},"type":"document","timestamp":"2026-06-01T10:00:00+02:00","entry":[` +
		`{"fullUrl":"urn:uuid:0d8a4c1e-1111-4a57-9d0e-1f0c1b2a3d4e","resource":{"resourceType":"Composition","id":"c1","status":"final","type":{"coding":[{"system":"http://loinc.org","code":"60591-5"}]},"subject":{"reference":"urn:uuid:0d8a4c1e-2222-4a57-9d0e-1f0c1b2a3d4e"},"date":"2026-06-01T10:00:00+02:00","author":[{"display":"Dr. Test"}],"title":"Samenvatting"}},` +
		`{"fullUrl":"urn:uuid:0d8a4c1e-2222-4a57-9d0e-1f0c1b2a3d4e","resource":` + tPatient + `}]}`
	tCollection = `{"resourceType":"Bundle","id":"c","type":"collection","entry":[{"fullUrl":"https://x.example/fhir/R4/Patient/p1","resource":` + tPatient + `},{"fullUrl":"https://x.example/fhir/R4/MedicationDispense/md1","resource":` + tMD + `}]}`
)

func mapFS(files map[string]string) fstest.MapFS {
	m := fstest.MapFS{}
	for name, body := range files {
		m["d/"+name] = &fstest.MapFile{Data: []byte(body)}
	}
	return m
}

func TestLoad(t *testing.T) {
	tests := []struct {
		name     string
		files    map[string]string
		wantErr  string // substring; "" for success
		patients int
		len      int
		summary  string // a patient with a summary
	}{
		{name: "one resource per file", files: map[string]string{"p.json": tPatient, "md.json": tMD, "README.txt": "not FHIR", ".hidden.json": "{"}, patients: 1, len: 2},
		{name: "collection Bundle: entries only", files: map[string]string{"c.json": tCollection}, patients: 1, len: 2},
		{name: "same resource twice, same content", files: map[string]string{"c.json": tCollection, "p.json": tPatient}, patients: 1, len: 2},
		{name: "document with urn:uuid fullUrls", files: map[string]string{"doc.json": tDocUUID}, patients: 1, len: 3, summary: "p1"},
		{name: "no files", files: map[string]string{"README.txt": "x"}, wantErr: "no FHIR JSON files"},
		{name: "not JSON", files: map[string]string{"x.json": `{"resourceType":`}, wantErr: "x.json: structure"},
		{name: "fails base validation", files: map[string]string{"x.json": `{"resourceType":"Patient","id":"p1","colour":"blue"}`}, wantErr: "Patient.colour"},
		{name: "no id", files: map[string]string{"x.json": `{"resourceType":"Patient"}`}, wantErr: "without an id"},
		{name: "entry without id", files: map[string]string{"x.json": `{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Patient"}}]}`}, wantErr: "without an id"},
		{name: "same id, other content", files: map[string]string{"a.json": tMD, "b.json": tMD2}, wantErr: "MedicationDispense/md1 is also in"},
		{name: "document without Composition first", files: map[string]string{"x.json": strings.Replace(tDocUUID, `"entry":[{"fullUrl":"urn:uuid:0d8a4c1e-1111`, `"entry":[{"fullUrl":"urn:uuid:0d8a4c1e-3333-4a57-9d0e-1f0c1b2a3d4e","resource":`+tMD+`},{"fullUrl":"urn:uuid:0d8a4c1e-1111`, 1)}, wantErr: "first entry must be its Composition"},
		{name: "document about no Patient", files: map[string]string{"x.json": strings.Replace(tDocUUID, `"subject":{"reference":"urn:uuid:0d8a4c1e-2222-4a57-9d0e-1f0c1b2a3d4e"}`, `"subject":{"display":"iemand"}`, 1)}, wantErr: "subject must be a Patient"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := source.LoadFS(mapFS(tt.files), "d")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if n := len(d.Patients()); n != tt.patients {
				t.Errorf("%d patients, want %d", n, tt.patients)
			}
			if d.Len() != tt.len {
				t.Errorf("Len = %d, want %d", d.Len(), tt.len)
			}
			if tt.summary != "" && !d.HasSummary(tt.summary) {
				t.Errorf("no summary for %s", tt.summary)
			}
			if p := d.Patients(); len(p) > 0 && p[0].BSN != "999900043" {
				t.Errorf("BSN %q", p[0].BSN)
			}
		})
	}
}

func TestLoadDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "c.json"), []byte(tCollection), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := source.Load(dir)
	if err != nil || d.Len() != 2 {
		t.Fatalf("Load: %v", err)
	}
	if _, err := source.Load(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("Load of a missing directory: %v", err)
	}
}
