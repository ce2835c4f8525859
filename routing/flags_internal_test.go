package routing

import (
	"encoding/json"
	"testing"

	"github.com/schakelpunt/schakelpunt/fhir"
)

// TestReviewOnly: a Flag's update may change its status and period.end,
// and nothing else but meta.
func TestReviewOnly(t *testing.T) {
	const stored = `{"resourceType":"Flag","id":"f","meta":{"versionId":"1"},"status":"active",
		"extension":[{"url":"e","valueReference":{"reference":"AuditEvent/a"}}],
		"code":{"text":"rule"},"subject":{"type":"Practitioner"},"period":{"start":"2026-11-24T09:00:00Z"}}`
	decode := func(s string) map[string]any {
		var m map[string]any
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	for _, tc := range []struct {
		name   string
		change func(f map[string]any)
		ok     bool
	}{
		{"unchanged", func(map[string]any) {}, true},
		{"closed", func(f map[string]any) {
			f["status"] = "inactive"
			f["period"].(map[string]any)["end"] = "2026-11-24T10:00:00Z"
		}, true},
		{"no meta", func(f map[string]any) { delete(f, "meta") }, true},
		{"start moved", func(f map[string]any) { f["period"].(map[string]any)["start"] = "2026-11-23T09:00:00Z" }, false},
		{"no period", func(f map[string]any) { delete(f, "period") }, false},
		{"evidence dropped", func(f map[string]any) { delete(f, "extension") }, false},
		{"a note added", func(f map[string]any) { f["text"] = map[string]any{"status": "generated"} }, false},
		{"code changed", func(f map[string]any) { f["code"] = map[string]any{"text": "other"} }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			next := decode(stored)
			tc.change(next)
			err := reviewOnly(decode(stored), next)
			if tc.ok != (err == nil) || (err != nil && fhir.KindOf(err) != fhir.KindUnprocessable) {
				t.Errorf("reviewOnly: %v, want ok %v (or unprocessable)", err, tc.ok)
			}
		})
	}
}
