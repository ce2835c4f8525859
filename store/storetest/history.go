package storetest

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/schakelpunt/schakelpunt/store"
)

// historySeed writes, in this order, the versions the history cases name
// as "type/id/version".
var historySeed = []write{
	{"create", "Consent", "a", consentActive},
	{"create", "Consent", "b", consentActive},
	{"update", "Consent", "a", consentInactive},
	{"create", "Patient", "p", patientMinimal},
	{"delete", "Consent", "a", ""},
	{"update", "Consent", "b", consentInactive},
	{"update", "Consent", "a", consentActive},
}

var historyCases = []struct {
	name  string
	q     store.HistoryQuery
	since string // the query's Since is this version's lastUpdated
	want  []string
}{
	{name: "one resource", q: store.HistoryQuery{Type: "Consent", ID: "a"},
		want: []string{"Consent/a/4", "Consent/a/3", "Consent/a/2", "Consent/a/1"}},
	{name: "one type", q: store.HistoryQuery{Type: "Consent"},
		want: []string{"Consent/a/4", "Consent/b/2", "Consent/a/3", "Consent/a/2", "Consent/b/1", "Consent/a/1"}},
	{name: "another type", q: store.HistoryQuery{Type: "Patient"},
		want: []string{"Patient/p/1"}},
	{name: "everything", q: store.HistoryQuery{},
		want: []string{"Consent/a/4", "Consent/b/2", "Consent/a/3", "Patient/p/1", "Consent/a/2", "Consent/b/1", "Consent/a/1"}},
	{name: "limit", q: store.HistoryQuery{Type: "Consent", Limit: 2},
		want: []string{"Consent/a/4", "Consent/b/2"}},
	{name: "limit and offset", q: store.HistoryQuery{Type: "Consent", Limit: 2, Offset: 2},
		want: []string{"Consent/a/3", "Consent/a/2"}},
	{name: "offset past the end", q: store.HistoryQuery{Offset: 7}},
	{name: "limit and offset of one resource", q: store.HistoryQuery{Type: "Consent", ID: "a", Limit: 1, Offset: 1},
		want: []string{"Consent/a/3"}},
	{name: "since", q: store.HistoryQuery{}, since: "Patient/p/1",
		want: []string{"Consent/a/4", "Consent/b/2", "Consent/a/3", "Patient/p/1"}},
	{name: "since, one type", q: store.HistoryQuery{Type: "Consent"}, since: "Patient/p/1",
		want: []string{"Consent/a/4", "Consent/b/2", "Consent/a/3"}},
	{name: "since, one resource", q: store.HistoryQuery{Type: "Consent", ID: "a"}, since: "Consent/a/3",
		want: []string{"Consent/a/4", "Consent/a/3"}},
	{name: "since with limit", q: store.HistoryQuery{Limit: 1, Offset: 1}, since: "Consent/a/2",
		want: []string{"Consent/b/2"}},
	{name: "unknown resource", q: store.HistoryQuery{Type: "Consent", ID: "zz"}},
	{name: "unknown type", q: store.HistoryQuery{Type: "AuditEvent"}},
}

func testHistory(t *testing.T, h Harness) {
	w := newWorld(t, open(t, h))
	w.apply(historySeed)
	for _, tc := range historyCases {
		t.Run(tc.name, func(t *testing.T) {
			q := tc.q
			if tc.since != "" {
				v, ok := w.versions[tc.since]
				if !ok {
					t.Fatalf("since: no version %s", tc.since)
				}
				q.Since = v.Updated
			}
			got, err := w.s.History(context.Background(), q)
			if err != nil {
				t.Fatalf("History: %v", err)
			}
			var names []string
			for _, r := range got {
				name := vkey(r.Type, r.ID, r.Version)
				names = append(names, name)
				if v, ok := w.versions[name]; !ok || !sameResource(r, v) {
					t.Errorf("History returned %s, stored was %s", show(r), show(v))
				}
			}
			if !slices.Equal(names, tc.want) {
				t.Errorf("History:\n got %s\nwant %s", strings.Join(names, " "), strings.Join(tc.want, " "))
			}
		})
	}
	t.Run("since the future", func(t *testing.T) {
		got, err := w.s.History(context.Background(), store.HistoryQuery{Since: time.Now().Add(time.Hour)})
		if err != nil || len(got) != 0 {
			t.Fatalf("History since an hour from now = %d versions, %v; want none", len(got), err)
		}
	})
}
