package profiles

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/schakelpunt/schakelpunt/fhir"
)

// The benchmarks validate MedicationDispenses: "typical" the size a
// pharmacy system returns (testdata/md-valid.json, 1.6 kB: coded medication,
// subject, performer, quantities, a dosage instruction) and "minimal" with
// only what our profile asks for (testdata/md-minimal.json, 0.5 kB). Run
// them on one core:
//
//	go test -run '^$' -bench . -cpu 1 ./profiles/
//
// resources/s is per core.
var benchFixtures = []struct{ name, file string }{
	{"typical", "md-valid.json"},
	{"minimal", "md-minimal.json"},
}

func benchValidate(b *testing.B, profileURL string) {
	v := MustNewValidator(b)
	ctx := context.Background()
	for _, f := range benchFixtures {
		b.Run(f.name, func(b *testing.B) {
			var doc map[string]any
			if err := json.Unmarshal(mustRead(b, f.file), &doc); err != nil {
				b.Fatal(err)
			}
			delete(doc, "meta") // the profile, if any, comes from profileURL
			body, err := json.Marshal(doc)
			if err != nil {
				b.Fatal(err)
			}
			if issues := v.Validate(ctx, body, profileURL); len(issues) > 0 {
				b.Fatalf("fixture does not validate: %+v", issues)
			}
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if issues := v.Validate(ctx, body, profileURL); len(issues) > 0 {
					b.Fatal(issues)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "resources/s")
		})
	}
}

// BenchmarkValidateBase is base R4 validation (codec) and the Go checks.
func BenchmarkValidateBase(b *testing.B) { benchValidate(b, "") }

// BenchmarkValidateProfile adds our MedicationDispense profile.
func BenchmarkValidateProfile(b *testing.B) { benchValidate(b, ProfileMedicationDispense) }

// BenchmarkProfileOnly is the profile's own cost over an already decoded
// resource: the compiled schema and the Go checks.
func BenchmarkProfileOnly(b *testing.B) {
	v := MustNewValidator(b)
	p := v.lookup(ProfileMedicationDispense)
	for _, f := range benchFixtures {
		b.Run(f.name, func(b *testing.B) {
			body := mustRead(b, f.file)
			doc := decodeAny(b, string(body)).(map[string]any)
			b.ReportAllocs()
			for b.Loop() {
				if issues := v.schemaIssues(p.schema, doc, "MedicationDispense", "", nil); len(issues) > 0 {
					b.Fatal(issues)
				}
				if issues := invariants(body, "MedicationDispense"); len(issues) > 0 {
					b.Fatal(issues)
				}
			}
		})
	}
}

// BenchmarkValidateSource is what a federated query pays per resource a
// source returns: ValidateSourceResource, base R4 validation (the codec's
// fast walk, ValidateSome) and our MedicationDispense profile over the
// members it can see, the Go checks over the JSON.
func BenchmarkValidateSource(b *testing.B) {
	v := MustNewValidator(b)
	ctx := context.Background()
	for _, f := range benchFixtures {
		b.Run(f.name, func(b *testing.B) {
			body := mustRead(b, f.file)
			if issues := v.ValidateSourceResource(ctx, body); len(issues) > 0 {
				b.Fatalf("fixture does not validate: %+v", issues)
			}
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if issues := v.ValidateSourceResource(ctx, body); len(issues) > 0 {
					b.Fatal(issues)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "resources/s")
		})
	}
}

// BenchmarkInvariants is the Go checks alone: over the JSON's bytes
// (invariants), and the walk over a decoded document they replaced
// (referenceInvariants, reference_test.go).
func BenchmarkInvariants(b *testing.B) {
	for _, f := range benchFixtures {
		body := mustRead(b, f.file)
		doc := decodeAny(b, string(body)).(map[string]any)
		b.Run(f.name+"/bytes", func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if issues := invariants(body, "MedicationDispense"); len(issues) > 0 {
					b.Fatal(issues)
				}
			}
		})
		b.Run(f.name+"/decoded", func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if issues := referenceInvariants(doc, "MedicationDispense"); len(issues) > 0 {
					b.Fatal(issues)
				}
			}
		})
	}
}

// BenchmarkSourceProfileStep is the part of ValidateSourceResource after
// base validation, for a dispense that passed it: "members" is today's,
// the profile's schema over the top-level members it can see (the Doc of
// ValidateSome) and the Go checks over the JSON; "document" the one it
// replaced, the schema over the whole decoded document and the Go checks
// over that (referenceInvariants).
func BenchmarkSourceProfileStep(b *testing.B) {
	v := MustNewValidator(b)
	c, err := fhir.NewCodec()
	if err != nil {
		b.Fatal(err)
	}
	p := v.lookup(ProfileMedicationDispense)
	for _, f := range benchFixtures {
		body := mustRead(b, f.file)
		some, err := c.ValidateSome(body, "", v.keep, nil)
		if err != nil {
			b.Fatal(err)
		}
		whole, err := c.Validate(body, "")
		if err != nil {
			b.Fatal(err)
		}
		b.Run(f.name+"/members", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if issues := v.schemaIssues(p.schema, some.Doc, "MedicationDispense", "", nil); len(issues) > 0 {
					b.Fatal(issues)
				}
				if issues := invariants(body, "MedicationDispense"); len(issues) > 0 {
					b.Fatal(issues)
				}
			}
		})
		b.Run(f.name+"/document", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if issues := v.schemaIssues(p.schema, whole.Doc, "MedicationDispense", "", nil); len(issues) > 0 {
					b.Fatal(issues)
				}
				if issues := referenceInvariants(whole.Doc, "MedicationDispense"); len(issues) > 0 {
					b.Fatal(issues)
				}
			}
		})
	}
}
