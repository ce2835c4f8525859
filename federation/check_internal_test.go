package federation

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/schakelpunt/schakelpunt/fhir"
	"github.com/schakelpunt/schakelpunt/profiles"
)

// checkValidator is the profiles validator, built once (slow to build).
var checkValidator = sync.OnceValues(func() (*profiles.Validator, error) {
	c, err := fhir.NewCodec()
	if err != nil {
		return nil, err
	}
	return profiles.New(c)
})

// unsplit is a Validator that does not hand over the members it split:
// check then splits the resource itself, with fhir.Members, as it did
// before the validator's members were used.
type unsplit struct{ v Validator }

func (u unsplit) ValidateSourceMembers(ctx context.Context, body []byte, memo *profiles.SourceMemo) ([]fhir.Member, []fhir.Issue) {
	_, issues := u.v.ValidateSourceMembers(ctx, body, memo)
	return nil, issues
}

const checkBase = "https://bron.example/fhir"

// checkSeeds are dispenses check keeps, drops as invalid or as about
// another patient, with their fullUrl.
func checkSeeds(tb testing.TB) [][2]string {
	typical := string(typicalDispense(tb))
	indented := readFixture(tb, "md-valid.json")
	minimal := readFixture(tb, "md-minimal.json")
	url := checkBase + "/MedicationDispense/md-1"
	seeds := [][2]string{
		{typical, url},
		{indented, url},
		{" \n" + typical + "\t", url},
		{strings.Replace(typical, `"id":"md-1",`, `"id":"md-1","id":"md-1",`, 1), url},
		{strings.Replace(typical, `"id":"md-1",`, `"\u0069d":"md-1",`, 1), url},
		{strings.Replace(typical, `"id":"md-1",`, `"id":"x","id":"md-1",`, 1), url},
		{strings.Replace(typical, `"id":"md-1"`, `"id":"md-2"`, 1), url},                 // another fullUrl
		{strings.Replace(typical, `"Patient/p1"`, `"Patient/p2"`, 1), url},               // another patient
		{strings.Replace(typical, `"Patient/p1"`, `"`+checkBase+`/Patient/p1"`, 1), url}, // absolute
		{strings.Replace(typical, `"status":"completed"`, `"status":"done"`, 1), url},    // invalid
		{strings.Replace(typical, `"meta":{`, `"meta":{"source":"https://elders.example",`, 1), url},
		{strings.Replace(typical, `"meta":{`, `"meta":{"versionId":"3","versionId":"4",`, 1), url},
		{strings.Replace(typical, `"whenHandedOver":"2026-11-20T10:00:00+01:00",`, ``, 1), url},
		{minimal, checkBase + "/MedicationDispense/"},
		{strings.Replace(minimal, `"status"`, `"id": "m", "status"`, 1), checkBase + "/MedicationDispense/m"},
		{`{"resourceType":"Patient","id":"md-1"}`, checkBase + "/Patient/md-1"},
		{`{"resourceType":"MedicationDispense","id":"md-1"}`, url},
		{`[1]`, url},
		{`{"resourceType":"MedicationDispense","id":7}`, url},
	}
	return seeds
}

func readFixture(tb testing.TB, name string) string {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("..", "profiles", "testdata", name))
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

// checkBoth checks one resource with the validator's members and memo
// (shared with the resources checked before), and as check did before
// either, splitting it itself without a memo; it fails when the two differ
// in verdict, shown resource or date.
func checkBoth(t *testing.T, v Validator, body []byte, fullURL string, memo *profiles.SourceMemo) verdict {
	t.Helper()
	run := func(v Validator, memo *profiles.SourceMemo) (verdict, entry) {
		e := &Engine{cfg: Config{Validator: v, Logger: slog.New(slog.DiscardHandler)}}
		a := &answer{target: target{source: Source{BaseURL: checkBase}, patientID: "p1"}}
		en := entry{FullURL: fullURL, Resource: bytes.Clone(body)}
		return e.check(context.Background(), a, &en, "MedicationDispense", memo), en
	}
	got, gotEn := run(v, memo)
	want, wantEn := run(unsplit{v}, nil)
	if got != want || !bytes.Equal(gotEn.shown, wantEn.shown) || !gotEn.at.Equal(wantEn.at) {
		t.Fatalf("check with the validator's members and memo: %v %s %v\nsplitting it itself: %v %s %v\nbody: %s",
			got, gotEn.shown, gotEn.at, want, wantEn.shown, wantEn.at, body)
	}
	return got
}

// TestCheckWithValidatorMembers: check judges a resource and shows it the
// same whether it reads the members the validator split or splits the
// resource itself.
func TestCheckWithValidatorMembers(t *testing.T) {
	v, err := checkValidator()
	if err != nil {
		t.Fatal(err)
	}
	counts := map[verdict]int{}
	var memo profiles.SourceMemo // one answer's
	for range 2 {                // the second time from the memo
		for _, s := range checkSeeds(t) {
			counts[checkBoth(t, v, []byte(s[0]), s[1], &memo)]++
		}
	}
	if counts[keep] < 16 || counts[invalidResource] < 10 || counts[otherPatient] < 2 {
		t.Errorf("verdicts %v: the seeds no longer cover each", counts)
	}
}

// FuzzCheck: as TestCheckWithValidatorMembers, on arbitrary resources.
func FuzzCheck(f *testing.F) {
	for _, s := range checkSeeds(f) {
		f.Add(s[0], s[1])
	}
	v, err := checkValidator()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body, fullURL string) {
		var memo profiles.SourceMemo
		checkBoth(t, v, []byte(body), fullURL, &memo)
		checkBoth(t, v, []byte(body), fullURL, &memo) // from the memo
		checkBoth(t, v, []byte(body), fullURL, nil)
	})
}

// BenchmarkCheck is all check does to a typical dispense a source
// returned: validate it, read its identity and date, set meta.source. The
// dispenses come in answers of 20, each checked with its own memo;
// BenchmarkCheckNoMemo is without one.
//
//	go test ./federation -run '^$' -bench 'Check' -benchmem
func BenchmarkCheck(b *testing.B) { benchCheck(b, 20) }

// BenchmarkCheckNoMemo is BenchmarkCheck without a memo: what every
// resource costs whose members the profile sees differ from the others'.
func BenchmarkCheckNoMemo(b *testing.B) { benchCheck(b, 0) }

func benchCheck(b *testing.B, perAnswer int) {
	v, err := checkValidator()
	if err != nil {
		b.Fatal(err)
	}
	body := typicalDispense(b)
	e := &Engine{cfg: Config{Validator: v, Logger: slog.New(slog.DiscardHandler)}}
	a := &answer{target: target{source: Source{BaseURL: checkBase}, patientID: "p1"}}
	ctx := context.Background()
	var memo *profiles.SourceMemo
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if perAnswer > 0 && i%perAnswer == 0 {
			memo = new(profiles.SourceMemo)
		}
		en := entry{FullURL: checkBase + "/MedicationDispense/md-1", Resource: body}
		if e.check(ctx, a, &en, "MedicationDispense", memo) != keep {
			b.Fatal("not kept")
		}
	}
}

// TestIsJoin: isJoin is s == strings.Join(parts, "").
func TestIsJoin(t *testing.T) {
	for _, tc := range []struct {
		s     string
		parts []string
	}{
		{"", nil}, {"", []string{""}}, {"a", nil}, {"ab", []string{"a", "b"}}, {"ab", []string{"ab", ""}},
		{"abc", []string{"a", "b"}}, {"ab", []string{"a", "bc"}}, {"aab", []string{"a", "b"}},
		{"https://x/MedicationDispense/1", []string{"https://x", "/", "MedicationDispense", "/", "1"}},
		{"https://x/MedicationDispense/", []string{"https://x", "/", "MedicationDispense", "/", ""}},
	} {
		if got, want := isJoin(tc.s, tc.parts...), tc.s == strings.Join(tc.parts, ""); got != want {
			t.Errorf("isJoin(%q, %q) = %v", tc.s, tc.parts, got)
		}
	}
}

// plain is a Validator as check had before: it neither hands over the
// members it split nor keeps a memo.
type plain struct{ v Validator }

func (p plain) ValidateSourceMembers(ctx context.Context, body []byte, _ *profiles.SourceMemo) ([]fhir.Member, []fhir.Issue) {
	_, issues := p.v.ValidateSourceMembers(ctx, body, nil)
	return nil, issues
}

// TestValidateAnswerWithMemos: an answer long enough to be checked by
// several goroutines, each with its own memo, keeps and drops what it did
// without members or memos.
func TestValidateAnswerWithMemos(t *testing.T) {
	v, err := checkValidator()
	if err != nil {
		t.Fatal(err)
	}
	var entries []entry
	for range 4 {
		for _, s := range checkSeeds(t) {
			entries = append(entries, entry{FullURL: s[1], Resource: []byte(s[0])})
		}
	}
	run := func(v Validator) *answer {
		e := &Engine{cfg: Config{Validator: v, Logger: slog.New(slog.DiscardHandler)}}
		a := &answer{target: target{source: Source{BaseURL: checkBase}, patientID: "p1"}, entries: slices.Clone(entries)}
		e.validate(context.Background(), a, "MedicationDispense")
		return a
	}
	got, want := run(v), run(plain{v})
	dropped := len(entries) - len(got.entries)
	if !reflect.DeepEqual(got.issues, want.issues) || len(got.entries) != len(want.entries) {
		t.Fatalf("%v, kept %d; without: %v, kept %d", got.issues, len(got.entries), want.issues, len(want.entries))
	}
	for i := range got.entries {
		if g, w := got.entries[i], want.entries[i]; g.FullURL != w.FullURL || !bytes.Equal(g.shown, w.shown) || !g.at.Equal(w.at) {
			t.Errorf("entry %d: %s %s, without: %s %s", i, g.FullURL, g.shown, w.FullURL, w.shown)
		}
	}
	if len(got.entries) < 20 || dropped < 20 {
		t.Errorf("kept %d, dropped %d: the seeds no longer cover both", len(got.entries), dropped)
	}
}
