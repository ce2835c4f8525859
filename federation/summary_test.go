package federation_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/schakelpunt/schakelpunt/access"
	"github.com/schakelpunt/schakelpunt/federation"
	"github.com/schakelpunt/schakelpunt/fhir"
	"github.com/schakelpunt/schakelpunt/profiles"
)

// invalidDoc is a document Bundle whose Composition breaks R4 (no
// status, an unknown element).
var invalidDoc = []byte(`{"resourceType":"Bundle","type":"document","entry":[{"fullUrl":"urn:uuid:1","resource":{"resourceType":"Composition","subject":{"reference":"Patient/linde-1001"},"colour":"red"}}]}`)

// stalling is a validator that never finishes before the query's
// deadline.
type stalling struct{}

func (stalling) ValidateSourceMembers(ctx context.Context, _ []byte, _ *profiles.SourceMemo) ([]fhir.Member, []fhir.Issue) {
	<-ctx.Done()
	return nil, []fhir.Issue{{Severity: "error", Code: "timeout", Diagnostics: "validation was cancelled"}}
}

func TestGPSummary(t *testing.T) {
	t.Parallel()
	summary := []string{consentFor("60591-5", "")}
	otherDoc := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			r.URL.Path = strings.Replace(r.URL.Path, "linde-1001", "linde-1002", 1)
			h.ServeHTTP(w, r)
		})
	}
	tests := []struct {
		name      string
		principal access.Principal
		opts      envOptions
		wantErr   error
		wantType  string // document or searchset
		count     int
		outcome   string // in the audit record
		returned  int    // the count in the audit record, when more than are shown
		issue     string // the code of the outcome entry of a searchset
	}{
		{name: "permit", principal: gp, opts: envOptions{consents: summary}, wantType: "document", count: 1, outcome: "ok"},
		{name: "pharmacist denied", principal: professional("17.000"), opts: envOptions{consents: summary}, wantErr: access.ErrDenied},
		{name: "medication consent only", principal: gp, opts: envOptions{consents: []string{consent("")}}, wantErr: access.ErrDenied},
		{name: "source fails", principal: gp, opts: envOptions{consents: summary, wrap: map[string]func(http.Handler) http.Handler{uraGP: respond(500, nil)}},
			wantType: "searchset", outcome: "error status", issue: "transient"},
		{name: "another patient", principal: gp, opts: envOptions{consents: summary, wrap: map[string]func(http.Handler) http.Handler{uraGP: otherDoc}},
			wantType: "searchset", outcome: "ok", returned: 1, issue: "security"},
		{name: "invalid document", principal: gp, opts: envOptions{consents: summary, wrap: map[string]func(http.Handler) http.Handler{uraGP: respond(200, invalidDoc)}},
			wantType: "searchset", outcome: "ok", returned: 1, issue: "invalid"},
		{name: "not checked before the deadline", principal: gp, opts: envOptions{consents: summary, config: func(c *federation.Config) {
			c.Validator, c.Deadline = stalling{}, 300*time.Millisecond
		}}, wantType: "searchset", outcome: "ok", returned: 1, issue: "timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := mustEnv(t, tt.opts)
			var early []federation.Result
			res, err := e.engine.GPSummary(context.Background(), tt.principal, testBSN, func(r federation.Result) { early = append(early, r) })
			if tt.wantErr == nil && (len(early) != 1 || !reflect.DeepEqual(early[0].Sources, res.Sources)) {
				t.Errorf("handed over early %+v, want once the result's sources %+v", early, res.Sources)
			}
			if tt.wantErr != nil {
				if len(early) > 0 {
					t.Errorf("a denied query handed over a record to log: %+v", early)
				}
				if !errors.Is(err, tt.wantErr) || res.Bundle != nil {
					t.Fatalf("err = %v, %d bytes; want %v and no data", err, len(res.Bundle), tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var b bundle
			if err := json.Unmarshal(res.Bundle, &b); err != nil {
				t.Fatal(err)
			}
			if b.Type != tt.wantType || res.Count != tt.count {
				t.Fatalf("type %q count %d, want %q %d", b.Type, res.Count, tt.wantType, tt.count)
			}
			if tt.wantType == "searchset" && (len(b.Entry) != 1 || b.Entry[0].Search.Mode != "outcome" ||
				!strings.Contains(string(res.Bundle), e.bases[uraGP]) || !strings.Contains(string(res.Bundle), `"code":"`+tt.issue+`"`)) {
				t.Errorf("want one %s outcome entry naming the source, got %s", tt.issue, res.Bundle)
			}
			count := max(tt.count, tt.returned)
			if len(res.Sources) != 1 || !strings.HasPrefix(res.Sources[0].Outcome, tt.outcome) || res.Sources[0].Count != count {
				t.Errorf("audit sources %+v, want outcome %q count %d", res.Sources, tt.outcome, count)
			}
		})
	}
}
