package profiles

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/schakelpunt/schakelpunt/fhir"
)

// MustNewValidator returns a Validator over a real codec.
// The codec is the base validator run uses for sources and invariants: a
// change to either side of ValidateSome must not leave it a mere Parser.
var _ BaseValidator = (*fhir.Codec)(nil)

func MustNewValidator(tb testing.TB) *Validator {
	tb.Helper()
	c, err := fhir.NewCodec()
	if err != nil {
		tb.Fatal(err)
	}
	v, err := New(c)
	if err != nil {
		tb.Fatal(err)
	}
	return v
}

func mustRead(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// summarise renders issues of one severity as "code expression", sorted.
func summarise(issues []fhir.Issue, severity string) []string {
	var out []string
	for _, is := range issues {
		if is.Severity == severity {
			out = append(out, is.Code+" "+strings.Join(is.Expression, ","))
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func TestValidateFixtures(t *testing.T) {
	v := MustNewValidator(t)
	tests := []struct {
		file     string
		profile  string // explicit profile ("" for meta.profile only)
		source   bool   // ValidateSourceResource instead of Validate
		errors   []string
		warnings []string
	}{
		// Index Patient.
		{file: "patient-valid.json", profile: ProfileIndexPatient},
		{file: "patient-invalid-demographics.json", errors: []string{
			"invariant Patient.identifier[0].value",
			"invariant Patient.managingOrganization.identifier.value",
			"structure Patient.address",
			"structure Patient.birthDate",
			"structure Patient.deceased",
			"structure Patient.gender",
			"structure Patient.identifier",
			"structure Patient.name",
			"structure Patient.telecom",
			"structure Patient.text",
			"value Patient.identifier[1].system",
			"value Patient.identifier[1].value",
			"value Patient.link[0].other.reference",
			"value Patient.link[0].type",
			"value Patient.managingOrganization.identifier.value",
		}},
		{file: "patient-invalid-missing.json", profile: ProfileIndexPatient, errors: []string{
			"required Patient.identifier[0].system",
			"required Patient.link",
			"required Patient.managingOrganization",
			"structure Patient.extension",
			"structure Patient.multipleBirth",
		}},
		{file: "patient-invalid-unknown-profile.json", errors: []string{
			"not-supported Patient.meta.profile[0]",
		}},
		{file: "patient-invalid-unknown-profile.json", profile: ProfileIndexPatient, errors: []string{
			"not-supported Patient.meta.profile[0]",
		}},
		{file: "patient-invalid-base.json", profile: ProfileIndexPatient, errors: []string{
			"structure Patient.favouriteColour", // the codec: unknown element
			"structure Patient.gender",          // the profile: 0..0
			"value Patient.gender",              // the codec: not a code of the binding
		}},
		{file: "patient-valid.json", profile: ProfileConsent, errors: []string{"processing "}},
		{file: "patient-valid.json", profile: "http://example.org/StructureDefinition/unknown", errors: []string{"not-supported "}},
		{file: "patient-valid.json", profile: ProfileIndexPatient + "|9.9.9", errors: []string{"not-supported "}},

		// Consent.
		{file: "consent-valid.json", profile: ProfileConsent, warnings: []string{"invariant Consent"}},
		{file: "consent-valid-deny.json"},
		{file: "consent-invalid.json", profile: ProfileConsent, errors: []string{
			"code-invalid Consent.provision.code[0]",
			"code-invalid Consent.provision.provision[0].actor[0].role",
			"invariant Consent.patient.identifier.value",
			"invariant Consent.provision.period.start",
			"required Consent.dateTime",
			"required Consent.organization[0].identifier",
			"required Consent.provision.type",
			"structure Consent.category",
			"value Consent.provision.provision[0].actor[0].reference.identifier.system",
			"value Consent.provision.provision[0].actor[0].reference.identifier.value",
			"value Consent.scope",
		}, warnings: []string{"invariant Consent"}},

		// AuditEvent.
		{file: "auditevent-valid.json", profile: ProfileAuditEvent},
		{file: "auditevent-invalid.json", profile: ProfileAuditEvent, errors: []string{
			"code-invalid AuditEvent.subtype[0]",
			"required AuditEvent.action",
			"required AuditEvent.agent[0].who.identifier",
			"required AuditEvent.agent[1].who",
			"required AuditEvent.outcome",
			"value AuditEvent.type",
		}},

		// MedicationDispense, as a source returns it.
		{file: "md-valid.json", source: true},
		{file: "md-valid.json"},
		{file: "md-invalid.json", source: true, errors: []string{
			"invariant MedicationDispense.dosageInstruction[0].timing.repeat.boundsPeriod.start",
			"invariant MedicationDispense.performer[0].actor.identifier.value",
			"required MedicationDispense.subject",
		}},
		{file: "md-invalid-type.json", source: true, errors: []string{
			"structure MedicationDispense.medication",       // the profile: medication[x] required
			"structure MedicationDispense.medicationString", // the codec: not a choice of medication[x]
		}},
		{file: "md-invalid.json", errors: []string{ // base only: the Go checks still apply
			"invariant MedicationDispense.dosageInstruction[0].timing.repeat.boundsPeriod.start",
			"invariant MedicationDispense.performer[0].actor.identifier.value",
		}},

		// Summary document Bundle; entries validated against their own profiles.
		{file: "summary-valid.json"},
		{file: "summary-valid.json", source: true},
		{file: "summary-invalid.json", profile: ProfileSummaryBundle, errors: []string{
			"invariant Bundle.entry[0].resource.identifier[0].value",
			"required Bundle.entry[1].resource.subject",
			"required Bundle.entry[2].resource.subject",
			"required Bundle.identifier",
			"required Bundle.timestamp",
			"structure Bundle.entry",
			"structure Bundle.entry[1].search",
			"structure Bundle.total",
			"value Bundle.entry[1].resource.type",
		}, warnings: []string{"not-supported Bundle.entry[2].resource.meta.profile[1]"}},
		{file: "summary-invalid.json", source: true, errors: []string{
			"invariant Bundle.entry[0].resource.identifier[0].value",
			"required Bundle.entry[1].resource.subject",
			"required Bundle.entry[2].resource.subject",
			"required Bundle.identifier",
			"required Bundle.timestamp",
			"structure Bundle.entry",
			"structure Bundle.entry[1].search",
			"structure Bundle.total",
			"value Bundle.entry[1].resource.type",
		}},
	}
	for _, tt := range tests {
		name := strings.TrimSuffix(tt.file, ".json")
		if tt.profile != "" {
			name += "/" + tt.profile[strings.LastIndexByte(tt.profile, '/')+1:]
		}
		if tt.source {
			name += "/source"
		}
		t.Run(name, func(t *testing.T) {
			body := mustRead(t, tt.file)
			var issues []fhir.Issue
			if tt.source {
				issues = v.ValidateSourceResource(context.Background(), body)
			} else {
				issues = v.Validate(context.Background(), body, tt.profile)
			}
			if got := summarise(issues, "error"); !slices.Equal(got, tt.errors) {
				t.Errorf("errors:\n got  %q\n want %q", got, tt.errors)
			}
			if got := summarise(issues, "warning"); !slices.Equal(got, tt.warnings) {
				t.Errorf("warnings:\n got  %q\n want %q", got, tt.warnings)
			}
			for _, is := range issues {
				if is.Diagnostics == "" {
					t.Errorf("issue without diagnostics: %+v", is)
				}
				if strings.Contains(is.Diagnostics, "999911121") || strings.Contains(is.Diagnostics, "Jansen") {
					t.Errorf("diagnostics quote the resource's content: %q", is.Diagnostics)
				}
			}
		})
	}
}

func TestValidateDiagnostics(t *testing.T) {
	v := MustNewValidator(t)
	issues := v.Validate(context.Background(), mustRead(t, "patient-invalid-demographics.json"), "")
	want := map[string]string{
		"Patient.name":                "Patient.name is not allowed (max 0): no name in the index",
		"Patient.link[0].type":        `Patient.link.type must be "seealso": seealso: the linked resource is the same patient, kept at the source`,
		"Patient.identifier":          "Patient.identifier must have 1..1 repetitions: exactly one identifier: the patient's BSN",
		"Patient.identifier[0].value": "sp-bsn-1: the identifier's value is not a valid BSN (nine digits passing the eleven-check)",
	}
	for _, is := range issues {
		if w, ok := want[is.Expression[0]]; ok {
			if is.Diagnostics != w {
				t.Errorf("%s: diagnostics %q, want %q", is.Expression[0], is.Diagnostics, w)
			}
			delete(want, is.Expression[0])
		}
	}
	for expr := range want {
		t.Errorf("no issue at %s", expr)
	}
}

func TestCheck(t *testing.T) {
	v := MustNewValidator(t)
	tests := []struct {
		name    string
		body    string
		profile string
		kind    fhir.Kind // -1: no error
	}{
		{"valid index entry", string(mustRead(t, "patient-valid.json")), ProfileIndexPatient, -1},
		{"fails the profile", string(mustRead(t, "patient-invalid-demographics.json")), ProfileIndexPatient, fhir.KindUnprocessable},
		{"unknown meta.profile", string(mustRead(t, "patient-invalid-unknown-profile.json")), ProfileIndexPatient, fhir.KindUnprocessable},
		{"unknown element", string(mustRead(t, "patient-invalid-base.json")), ProfileIndexPatient, fhir.KindInvalid},
		{"not JSON", `{"resourceType": "Patient",`, ProfileIndexPatient, fhir.KindInvalid},
		{"no resourceType", `{"id": "x"}`, "", fhir.KindInvalid},
		{"valid consent with warning", string(mustRead(t, "consent-valid.json")), ProfileConsent, -1},
		// google/fhir's parser does not look into contained resources; the
		// base walk does, for writes as for sources (fhir/base.go, 5).
		{"contained without a required element", `{"resourceType":"Consent","status":"active","scope":{"text":"x"},"category":[{"text":"x"}],` +
			`"contained":[{"resourceType":"Observation","id":"o","code":{"text":"x"}}]}`, "", fhir.KindUnprocessable},
		{"empty code of a required binding", `{"resourceType":"Consent","status":"","scope":{"text":"x"},"category":[{"text":"x"}]}`, "", fhir.KindInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := v.Check(context.Background(), []byte(tt.body), tt.profile)
			if tt.kind == -1 {
				if err != nil {
					t.Fatalf("Check: %v", err)
				}
				if res == nil || res.Type == "" || string(res.Raw) != tt.body {
					t.Fatalf("Check returned %+v", res)
				}
				return
			}
			var fe *fhir.Error
			if !errors.As(err, &fe) {
				t.Fatalf("Check error %v, want a *fhir.Error", err)
			}
			if fe.Kind != tt.kind || len(fe.Issues) == 0 {
				t.Errorf("kind %d with %d issues, want kind %d", fe.Kind, len(fe.Issues), tt.kind)
			}
		})
	}
	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := v.Check(ctx, mustRead(t, "patient-valid.json"), ""); !errors.Is(err, context.Canceled) {
			t.Errorf("Check with a cancelled context: %v", err)
		}
	})
}

func TestProfileFor(t *testing.T) {
	v := MustNewValidator(t)
	for _, tt := range []struct{ typ, want string }{
		{"Patient", ProfileIndexPatient},
		{"Consent", ProfileConsent},
		{"AuditEvent", ""},
		{"Organization", ""},
	} {
		t.Run(tt.typ, func(t *testing.T) {
			if got := v.ProfileFor(tt.typ); got != tt.want {
				t.Errorf("ProfileFor(%s) = %q, want %q", tt.typ, got, tt.want)
			}
		})
	}
}

// TestStructureDefinitions checks our definitions: the published ones are
// the ones the constants name, each is a valid R4 StructureDefinition, and
// each names a readable short description on every element.
func TestStructureDefinitions(t *testing.T) {
	v := MustNewValidator(t)
	c, err := fhir.NewCodec()
	if err != nil {
		t.Fatal(err)
	}
	defs := v.StructureDefinitions()
	wantTypes := map[string]string{
		ProfileIndexPatient:       "Patient",
		ProfileConsent:            "Consent",
		ProfileAuditEvent:         "AuditEvent",
		ProfileMedicationDispense: "MedicationDispense",
		ProfileSummaryBundle:      "Bundle",
		ProfileSummaryComposition: "Composition",
	}
	if len(defs) != len(wantTypes) {
		t.Errorf("%d definitions, want %d", len(defs), len(wantTypes))
	}
	for _, d := range defs {
		t.Run(d.Name, func(t *testing.T) {
			if wantTypes[d.URL] != d.Type {
				t.Errorf("%s constrains %q, want %q", d.URL, d.Type, wantTypes[d.URL])
			}
			res, err := c.Parse(d.JSON, "StructureDefinition")
			if err != nil {
				t.Fatalf("base validation: %v", err)
			}
			if res.Doc["url"] != d.URL || res.Doc["version"] != d.Version || res.Doc["name"] != d.Name || res.Doc["status"] != "active" {
				t.Errorf("url, version, name, status: %v %v %v %v", res.Doc["url"], res.Doc["version"], res.Doc["name"], res.Doc["status"])
			}
			if res.ID == "" || !strings.HasSuffix(d.URL, "/"+res.ID) {
				t.Errorf("id %q does not end the url %s", res.ID, d.URL)
			}
			var sd struct {
				Differential struct {
					Element []struct {
						ID    string `json:"id"`
						Short string `json:"short"`
					} `json:"element"`
				} `json:"differential"`
			}
			if err := json.Unmarshal(d.JSON, &sd); err != nil {
				t.Fatal(err)
			}
			for _, el := range sd.Differential.Element {
				if el.Short == "" {
					t.Errorf("element %s has no short description", el.ID)
				}
			}
		})
	}
	t.Run("copies", func(t *testing.T) {
		a := v.StructureDefinitions()
		a[0].JSON[0] = 'x'
		if b := v.StructureDefinitions(); b[0].JSON[0] != '{' {
			t.Error("StructureDefinitions shares its bytes with the caller")
		}
	})
}

func TestHasErrors(t *testing.T) {
	for _, tt := range []struct {
		name   string
		issues []fhir.Issue
		want   bool
	}{
		{"none", nil, false},
		{"warning", []fhir.Issue{{Severity: "warning"}}, false},
		{"error", []fhir.Issue{{Severity: "warning"}, {Severity: "error"}}, true},
		{"fatal", []fhir.Issue{{Severity: "fatal"}}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := HasErrors(tt.issues); got != tt.want {
				t.Errorf("HasErrors = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestValidateConcurrently shares one Validator between goroutines, as the
// server does (run it with -race).
func TestValidateConcurrently(t *testing.T) {
	v := MustNewValidator(t)
	files := []string{"patient-invalid-demographics.json", "consent-invalid.json", "summary-invalid.json", "md-valid.json"}
	bodies := make([][]byte, len(files))
	want := make([][]fhir.Issue, len(files))
	for i, f := range files {
		bodies[i] = mustRead(t, f)
		want[i] = v.Validate(context.Background(), bodies[i], "")
	}
	done := make(chan error)
	for g := 0; g < 4; g++ {
		go func() {
			for r := 0; r < 5; r++ {
				for i, f := range files {
					got := v.Validate(context.Background(), bodies[i], "")
					if !slices.EqualFunc(got, want[i], func(a, b fhir.Issue) bool {
						return a.Severity == b.Severity && a.Code == b.Code && a.Diagnostics == b.Diagnostics && slices.Equal(a.Expression, b.Expression)
					}) {
						done <- errors.New(f + ": issues differ between runs")
						return
					}
				}
			}
			done <- nil
		}()
	}
	for g := 0; g < 4; g++ {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

func TestNewWithoutParser(t *testing.T) {
	if _, err := New(nil); err == nil {
		t.Error("New(nil) succeeded")
	}
}

type failingParser struct{ err error }

func (p failingParser) Parse([]byte, string) (*fhir.Resource, error) { return nil, p.err }

func TestCheckParserFault(t *testing.T) {
	boom := errors.New("boom")
	v, err := New(failingParser{boom})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Check(context.Background(), mustRead(t, "patient-valid.json"), ""); !errors.Is(err, boom) {
		t.Errorf("Check: %v, want the parser's error", err)
	}
	issues := v.Validate(context.Background(), mustRead(t, "patient-valid.json"), "")
	if !HasErrors(issues) {
		t.Errorf("Validate with a failing parser: %+v", issues)
	}
}

// TestSourceContained: a source's dispense whose contained resource lacks
// a required element is invalid, with the issue where it is (google/fhir
// would have let it through).
func TestSourceContained(t *testing.T) {
	v := MustNewValidator(t)
	var md map[string]any
	if err := json.Unmarshal(mustRead(t, "md-valid.json"), &md); err != nil {
		t.Fatal(err)
	}
	md["contained"] = []any{map[string]any{"resourceType": "MedicationRequest", "id": "rx", "status": "active",
		"subject": map[string]any{"reference": "Patient/p"}, "medicationCodeableConcept": map[string]any{"text": "x"}}}
	body, err := json.Marshal(md)
	if err != nil {
		t.Fatal(err)
	}
	issues := v.ValidateSourceResource(context.Background(), body)
	if !HasErrors(issues) {
		t.Fatalf("no error for a contained MedicationRequest without intent: %v", issues)
	}
	found := false
	for _, is := range issues {
		found = found || (is.Code == "required" && len(is.Expression) > 0 && is.Expression[0] == "MedicationDispense.contained[0].intent")
	}
	if !found {
		t.Errorf("issues %v, want required at MedicationDispense.contained[0].intent", issues)
	}
}
