package conformance

import (
	"encoding/json"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/schakelpunt/schakelpunt/fhir"
)

var sharedCodec = sync.OnceValues(fhir.NewCodec)

func MustCodec(tb testing.TB) *fhir.Codec {
	tb.Helper()
	c, err := sharedCodec()
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// capability is the part of a CapabilityStatement the tests read.
type capability struct {
	ResourceType   string            `json:"resourceType"`
	Status         string            `json:"status"`
	Date           string            `json:"date"`
	Kind           string            `json:"kind"`
	FHIRVersion    string            `json:"fhirVersion"`
	Format         []string          `json:"format"`
	Software       map[string]string `json:"software"`
	Implementation map[string]string `json:"implementation"`
	Rest           []struct {
		Mode     string `json:"mode"`
		Resource []struct {
			Type             string   `json:"type"`
			Profile          string   `json:"profile"`
			SupportedProfile []string `json:"supportedProfile"`
			Documentation    string   `json:"documentation"`
			Interaction      []struct {
				Code string `json:"code"`
			} `json:"interaction"`
			Versioning        string `json:"versioning"`
			ReadHistory       bool   `json:"readHistory"`
			UpdateCreate      bool   `json:"updateCreate"`
			ConditionalCreate bool   `json:"conditionalCreate"`
			ConditionalUpdate bool   `json:"conditionalUpdate"`
			ConditionalDelete string `json:"conditionalDelete"`
			SearchParam       []struct {
				Name          string `json:"name"`
				Definition    string `json:"definition"`
				Type          string `json:"type"`
				Documentation string `json:"documentation"`
			} `json:"searchParam"`
			Operation []struct {
				Name       string `json:"name"`
				Definition string `json:"definition"`
			} `json:"operation"`
		} `json:"resource"`
	} `json:"rest"`
}

const base = "https://sp.example/fhir/R4"

var supported = map[string][]string{
	"Patient": {"https://schakelpunt.nl/fhir/StructureDefinition/index-patient|1.0.0"},
	"Consent": {"https://schakelpunt.nl/fhir/StructureDefinition/consent|1.0.0", "https://schakelpunt.nl/fhir/StructureDefinition/consent-patient|1.0.0"},
}

func render(t *testing.T) ([]byte, capability) {
	t.Helper()
	published := time.Date(2026, 11, 22, 10, 0, 0, 0, time.FixedZone("", 3600))
	b, err := CapabilityStatement(base, Software{Name: "Schakelpunt", Version: "0.1.0"}, published, supported)
	if err != nil {
		t.Fatal(err)
	}
	var cs capability
	if err := json.Unmarshal(b, &cs); err != nil {
		t.Fatal(err)
	}
	return b, cs
}

func TestCapabilityStatementIsValidR4(t *testing.T) {
	b, _ := render(t)
	res, err := MustCodec(t).Parse(b, "CapabilityStatement")
	if err != nil {
		t.Fatalf("not a valid R4 CapabilityStatement: %v (%+v)\n%s", err, fhir.AsError(err).Issues, b)
	}
	if res.Type != "CapabilityStatement" {
		t.Errorf("type %q", res.Type)
	}
	t.Run("without profiles", func(t *testing.T) {
		b, err := CapabilityStatement(base, Software{Name: "Schakelpunt", Version: "dev"}, time.Unix(0, 0), nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := MustCodec(t).Parse(b, "CapabilityStatement"); err != nil {
			t.Errorf("%v\n%s", err, b)
		}
	})
}

func TestCapabilityStatementHeader(t *testing.T) {
	_, cs := render(t)
	if cs.ResourceType != "CapabilityStatement" || cs.Status != "active" || cs.Kind != "instance" || cs.FHIRVersion != "4.0.1" {
		t.Errorf("header %+v", cs)
	}
	if cs.Date != "2026-11-22T09:00:00Z" {
		t.Errorf("date %q, want the publication time in UTC", cs.Date)
	}
	if !slices.Contains(cs.Format, "application/fhir+json") || slices.ContainsFunc(cs.Format, func(f string) bool { return f == "xml" || f == "application/fhir+xml" }) {
		t.Errorf("format %q: JSON only", cs.Format)
	}
	if cs.Software["name"] != "Schakelpunt" || cs.Software["version"] != "0.1.0" {
		t.Errorf("software %v", cs.Software)
	}
	if cs.Implementation["url"] != base || cs.Implementation["description"] == "" {
		t.Errorf("implementation %v", cs.Implementation)
	}
	if len(cs.Rest) != 1 || cs.Rest[0].Mode != "server" {
		t.Fatalf("rest %+v", cs.Rest)
	}
}

func TestCapabilityStatementFollowsTable(t *testing.T) {
	_, cs := render(t)
	table := Table()
	got := cs.Rest[0].Resource
	if len(got) != len(table) {
		t.Fatalf("%d resources, table has %d", len(got), len(table))
	}
	for i, row := range table {
		r := got[i]
		t.Run(row.Type, func(t *testing.T) {
			if r.Type != row.Type {
				t.Fatalf("resource %d is %s, table says %s", i, r.Type, row.Type)
			}
			if r.Profile != "http://hl7.org/fhir/StructureDefinition/"+row.Type {
				t.Errorf("profile %q", r.Profile)
			}
			if r.Documentation != row.Documentation || r.Documentation == "" {
				t.Errorf("documentation %q", r.Documentation)
			}
			var codes []string
			for _, in := range r.Interaction {
				codes = append(codes, in.Code)
			}
			var want []string
			for _, in := range row.Interactions {
				want = append(want, string(in))
			}
			if !slices.Equal(codes, want) {
				t.Errorf("interactions %q, want %q", codes, want)
			}
			if r.ReadHistory != row.Has(VRead) || r.UpdateCreate != (row.Has(Update) && !row.UpdateOnly) || r.Versioning != "versioned-update" {
				t.Errorf("readHistory %v updateCreate %v versioning %q", r.ReadHistory, r.UpdateCreate, r.Versioning)
			}
			if r.ConditionalCreate != row.ConditionalCreate || r.ConditionalUpdate != row.ConditionalUpdate {
				t.Errorf("conditional create/update %v/%v", r.ConditionalCreate, r.ConditionalUpdate)
			}
			if wantCD := map[bool]string{true: "single", false: "not-supported"}[row.ConditionalDelete]; r.ConditionalDelete != wantCD {
				t.Errorf("conditionalDelete %q, want %q", r.ConditionalDelete, wantCD)
			}
			if !slices.Equal(r.SupportedProfile, supported[row.Type]) {
				t.Errorf("supportedProfile %q, want %q", r.SupportedProfile, supported[row.Type])
			}
			// Search parameters: exactly fhir's definitions, when searchable.
			if !row.Has(SearchType) {
				if len(r.SearchParam) != 0 {
					t.Errorf("search parameters on a type without search")
				}
			} else {
				defs := row.SearchParams()
				if len(r.SearchParam) != len(defs) {
					t.Fatalf("%d search parameters, fhir defines %d", len(r.SearchParam), len(defs))
				}
				for j, d := range defs {
					sp := r.SearchParam[j]
					if sp.Name != d.Code || sp.Definition != d.URL || sp.Type != string(d.Type) || sp.Documentation != d.Description {
						t.Errorf("searchParam %+v, want %s %s %s", sp, d.Code, d.URL, d.Type)
					}
					if sp.Definition == "" {
						t.Errorf("searchParam %s has no definition", sp.Name)
					}
				}
			}
			// Operations.
			if len(r.Operation) != len(row.Operations) {
				t.Fatalf("%d operations, table has %d", len(r.Operation), len(row.Operations))
			}
			for j, op := range row.Operations {
				if r.Operation[j].Name != op.Name || r.Operation[j].Definition != op.Definition || op.Definition == "" {
					t.Errorf("operation %+v, want %s %s", r.Operation[j], op.Name, op.Definition)
				}
			}
		})
	}
}

// TestTableDesign holds the table to DESIGN.md section 2.
func TestTableDesign(t *testing.T) {
	tests := []struct {
		typ               string
		has, hasNot       []Interaction
		conditionalUpdate bool
		searchParams      []string
	}{
		{"Patient", []Interaction{Read, VRead, SearchType, Update, Delete, HistoryInstance}, nil, true,
			[]string{"identifier", "organization", "_lastUpdated"}},
		{"Consent", []Interaction{Create, Read, VRead, Update, Delete, SearchType, HistoryInstance}, nil, true,
			[]string{"patient", "status", "category", "actor", "period", "date", "_lastUpdated"}},
		{"AuditEvent", []Interaction{Read, SearchType}, []Interaction{Create, Update, Delete, VRead, HistoryInstance, HistoryType}, false,
			[]string{"patient", "agent", "agent-role", "entity", "date", "type", "subtype", "action", "outcome", "source", "_lastUpdated"}},
		{"Organization", []Interaction{Read, SearchType}, []Interaction{Create, Update, Delete}, false, []string{"identifier"}},
		{"Endpoint", []Interaction{Read, SearchType}, []Interaction{Create, Update, Delete}, false, []string{"organization"}},
	}
	for _, tt := range tests {
		t.Run(tt.typ, func(t *testing.T) {
			r, ok := Lookup(tt.typ)
			if !ok {
				t.Fatalf("%s is not in the table", tt.typ)
			}
			for _, i := range tt.has {
				if !r.Has(i) {
					t.Errorf("%s lacks %s", tt.typ, i)
				}
			}
			for _, i := range tt.hasNot {
				if r.Has(i) {
					t.Errorf("%s must not allow %s", tt.typ, i)
				}
			}
			if r.ConditionalUpdate != tt.conditionalUpdate {
				t.Errorf("conditionalUpdate %v", r.ConditionalUpdate)
			}
			var codes []string
			for _, p := range r.SearchParams() {
				codes = append(codes, p.Code)
			}
			for _, c := range tt.searchParams {
				if !slices.Contains(codes, c) {
					t.Errorf("search parameter %s missing", c)
				}
			}
			if !slices.ContainsFunc(r.Operations, func(o Operation) bool { return o.Name == "validate" }) {
				t.Errorf("no $validate")
			}
		})
	}
}

func TestTableRows(t *testing.T) {
	rows := Table()
	seen := map[string]bool{}
	for _, r := range rows {
		if seen[r.Type] {
			t.Errorf("%s twice", r.Type)
		}
		seen[r.Type] = true
		federated := r.Type == "MedicationDispense" // searched at the sources: nothing to read here
		if len(r.Interactions) == 0 || (!r.Has(Read) && !federated) || (federated && !r.Has(SearchType)) {
			t.Errorf("%s: interactions %v", r.Type, r.Interactions)
		}
		for _, op := range r.Operations {
			if op.Name == "" || op.Name[0] == '$' || (!op.Type && !op.Instance) {
				t.Errorf("%s: operation %+v", r.Type, op)
			}
		}
	}
}

func TestTableIsACopy(t *testing.T) {
	rows := Table()
	for i := range rows {
		rows[i].Type = "Mangled"
		if len(rows[i].Interactions) > 0 {
			rows[i].Interactions[0] = "mangled"
		}
		if len(rows[i].Operations) > 0 {
			rows[i].Operations[0].Name = "mangled"
		}
	}
	for _, r := range Table() {
		if r.Type == "Mangled" || slices.Contains(r.Interactions, "mangled") || slices.ContainsFunc(r.Operations, func(o Operation) bool { return o.Name == "mangled" }) {
			t.Fatalf("changing Table()'s result changed the table: %+v", r)
		}
	}
}

func TestLookup(t *testing.T) {
	for _, r := range Table() {
		got, ok := Lookup(r.Type)
		if !ok || got.Type != r.Type || !slices.Equal(got.Interactions, r.Interactions) {
			t.Errorf("Lookup(%q) = %+v, %v", r.Type, got, ok)
		}
	}
	for _, typ := range []string{"", "patient", "Observation", "MedicationRequest", "Bundle"} {
		if r, ok := Lookup(typ); ok || r.Type != "" {
			t.Errorf("Lookup(%q) = %+v, %v; want nothing", typ, r, ok)
		}
	}
}

func TestHas(t *testing.T) {
	r := Resource{Type: "X", Interactions: []Interaction{Read, SearchType}}
	tests := []struct {
		i    Interaction
		want bool
	}{
		{Read, true}, {SearchType, true}, {VRead, false}, {Create, false}, {"", false}, {"READ", false},
	}
	for _, tt := range tests {
		if got := r.Has(tt.i); got != tt.want {
			t.Errorf("Has(%q) = %v", tt.i, got)
		}
	}
	if (Resource{}).Has(Read) {
		t.Error("an empty row has read")
	}
}
