package profiles

import (
	"context"
	"testing"
)

// TestSourceMemo: with a SourceMemo, ValidateSourceMembers gives the
// issues ValidateSourceResource gives, whether the memo knows the members
// the profiles see (each variant is validated twice, and the variants of
// one resource share a memo, like the resources of one answer) or not.
func TestSourceMemo(t *testing.T) {
	v := MustNewValidator(t)
	ctx := context.Background()
	inputs := profilesTestdata(t)
	demo := demoResources(t)
	if testing.Short() || raceDetector {
		demo = everyNth(demo, 5)
	}
	hits := 0
	for _, in := range append(inputs, demo...) {
		var memo SourceMemo
		for _, vr := range variants(t, in) {
			want := v.ValidateSourceResource(ctx, vr.body)
			for range 2 {
				known := len(memo.issues)
				_, got := v.ValidateSourceMembers(ctx, vr.body, &memo)
				if !sameIssues(got, want) {
					t.Fatalf("%s, %s: with a memo\n got  %s\n want %s", in.name, vr.name, render(got), render(want))
				}
				if len(memo.issues) == known { // mostly found there
					hits++
				}
			}
		}
	}
	if hits < 100 {
		t.Errorf("only %d validations found the memo holding their members: the test says little", hits)
	}
}
