package federation_test

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/schakelpunt/schakelpunt/access"
	"github.com/schakelpunt/schakelpunt/federation"
	"github.com/schakelpunt/schakelpunt/store/sqlite"
)

// TestConsentsBeyondOneRead: the engine reads at most a bounded number of
// a patient's consents per query. A patient with more must be denied, not
// decided on the first ones read: the consent left unread may be the one
// that withdraws.
func TestConsentsBeyondOneRead(t *testing.T) {
	t.Parallel()
	f, err := shared()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "index.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	eng, err := federation.New(federation.Config{
		Registry: []federation.Source{{URA: uraBrug, Name: "Apotheek De Brug", BaseURL: "https://127.0.0.1:9/fhir/R4", Categories: []string{federation.CategoryMedication}}},
		Index:    st, Policy: access.DefaultPolicy(), Validator: f.validator,
		ClientCert: f.client, SourceCAs: []*x509.Certificate{f.ca.Cert},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(eng.Close)
	mustWrite(t, st, "Patient", "idx", indexEntry(testBSN, uraBrug, "https://127.0.0.1:9/fhir/R4/Patient/p1"))

	pharmacist := professional("17.075")
	asked := func() ([]federation.Target, federation.Result, error) {
		return eng.Permitted(ctx, pharmacist, testBSN, federation.CategoryMedication)
	}
	// 1,000 permits, read in one query: permitted.
	permit := consent(uraBrug)
	for i := range 1000 {
		mustWrite(t, st, "Consent", fmt.Sprintf("c%04d", i), permit)
	}
	if ts, res, err := asked(); err != nil || len(ts) != 1 {
		t.Fatalf("1,000 permits: %v %v %v", ts, err, res.Reasons)
	}
	// One more, written last: it withdraws (a later inactive consent of
	// the same organisation).
	withdrawal := strings.Replace(strings.Replace(permit, `"status":"active"`, `"status":"inactive"`, 1),
		time.Now().Add(-time.Hour).Format(time.RFC3339), time.Now().Add(-time.Minute).Format(time.RFC3339), 1)
	if withdrawal == permit || strings.Contains(withdrawal, `"active"`) {
		t.Fatal("the withdrawal is not one")
	}
	mustWrite(t, st, "Consent", "c9999", withdrawal)
	ts, res, err := asked()
	if !errors.Is(err, access.ErrDenied) || len(ts) != 0 {
		t.Fatalf("1,001 consents, the last a withdrawal: asked %v, err %v", ts, err)
	}
	if !slices.ContainsFunc(res.Reasons, func(r string) bool { return strings.Contains(r, "more consents") }) {
		t.Errorf("reasons %q do not say why", res.Reasons)
	}
}
