package storetest

import (
	"fmt"
	"testing"

	"github.com/schakelpunt/schakelpunt/fhir"
)

// dateValues are the ends of the generated periods and the dateTimes: every
// precision, zones, and "" for an open end (fhir.MinTime or fhir.MaxTime).
// Several name the same instant, and some ends meet search ranges exactly.
var dateValues = []string{
	"",
	"2021",
	"2022-01",
	"2022-06-15",
	"2022-06-15T10:00:00Z",
	"2022-06-15T12:00:00+02:00",
	"2022-06-15T10:00:00.5Z",
	"2023-01-01T00:00:00+01:00",
}

// searchDateValues are the values searched for, with every prefix.
var searchDateValues = []string{
	"2022",
	"2022-06",
	"2022-06-15",
	"2022-06-15T10:00",
	"2022-06-15T10:00:00Z",
	"2021-12-31T23:30:00-01:00",
	"2023",
}

var datePrefixes = []string{"eq", "ne", "lt", "gt", "le", "ge", "sa", "eb"}

// dateWorld writes Consents whose period takes every pair of dateValues
// (open at either end, at both: no term at all) and whose dateTime cycles
// through them, a few with several periods, then updates and deletes some,
// and adds AuditEvents with dates of their own.
func dateWorld(t *testing.T, h Harness) *world {
	w := newWorld(t, open(t, h))
	status := []string{"active", "inactive", "draft"}
	n := 0
	for i, start := range dateValues {
		for j, end := range dateValues {
			c := consent{
				status:   status[n%len(status)],
				bsn:      bsnPatient,
				category: "59284-0",
				dateTime: dateValues[(i+2*j)%len(dateValues)],
				periods:  [][2]string{{start, end}},
			}
			if start == "" && end == "" {
				c.periods = nil
			}
			w.create("Consent", fmt.Sprintf("c%d%d", i, j), consentJSON(c))
			n++
		}
	}
	for i := range 3 { // several periods: the sort key is the earliest start
		w.create("Consent", fmt.Sprintf("m%d", i), consentJSON(consent{
			status: "active", bsn: bsnOther, category: "59284-0",
			periods: [][2]string{{dateValues[3+i], ""}, {"", dateValues[1+i]}, {dateValues[2+i], dateValues[5]}},
		}))
	}
	w.update("Consent", "c12", consentJSON(consent{status: "active", bsn: bsnPatient, category: "59284-0",
		dateTime: "2030", periods: [][2]string{{"2030", "2031"}}}))
	w.update("Consent", "c33", consentJSON(consent{status: "active", bsn: bsnPatient, category: "59284-0"}))
	w.delete("Consent", "c34")
	w.delete("Consent", "c70")
	w.create("AuditEvent", "a1", auditJSON("2022-06-15T10:00:00.250Z", "11111111", "p1", "0"))
	w.create("AuditEvent", "a2", auditJSON("2022", "11111111", "p1", "0"))
	return w
}

func testSearchDates(t *testing.T, h Harness) {
	w := dateWorld(t, h)
	run := func(typ, query string) {
		t.Run(typ+"?"+query, func(t *testing.T) {
			w := *w
			w.t = t
			w.check(parseQuery(t, typ, query), 7, 1000)
		})
	}
	for _, param := range []string{"period", "date"} {
		for _, v := range searchDateValues {
			for _, p := range datePrefixes {
				run("Consent", param+"="+p+v)
			}
		}
	}
	for _, v := range searchDateValues {
		for _, p := range datePrefixes {
			run("AuditEvent", "date="+p+v)
			run("AuditEvent", "date="+p+v+"&_sort=-date")
		}
	}
	// _lastUpdated, with the instants of stored versions (milliseconds on
	// the wire, as clients see them).
	// Also with microseconds, finer than the indexed millisecond.
	for _, k := range []string{"Consent/c00/1", "Consent/c45/1", "Consent/c12/2"} {
		at := w.versions[k].Updated
		for _, v := range []string{fhir.FormatInstant(at), at.Format("2006-01-02T15:04:05.000000Z07:00")} {
			for _, p := range datePrefixes {
				run("Consent", "_lastUpdated="+p+v)
			}
		}
	}
	// Several values of one parameter are alternatives; parameters combine.
	for _, q := range []string{
		"period=lt2021,gt2023",
		"period=eb2022-06-15,sa2022-06-15T10:00:00Z,eq2022-01",
		"period=ge2022&date=lt2023",
		"period=ne2022&date=ne2022",
		"status=active&period=sa2022-06-15",
		"status=draft,inactive&date=le2022-06-15T10:00:00Z&period=ge2022-06",
		"_id=c00,c11,c34,m1&period=ne1999",
	} {
		run("Consent", q)
	}
}

// sortKeys are the sorts checked; each with several page sizes.
var sortKeys = []string{"", "_sort=_lastUpdated", "_sort=-_lastUpdated", "_sort=date", "_sort=-date", "_sort=period", "_sort=-period"}

func testSortAndPaging(t *testing.T, h Harness) {
	w := dateWorld(t, h)
	for _, filter := range []string{"", "status=active", "period=ge2022-06-15", "date=ne2022-06-15T10:00:00Z"} {
		for _, s := range sortKeys {
			query := filter
			if s != "" {
				if query != "" {
					query += "&"
				}
				query += s
			}
			t.Run("Consent?"+query, func(t *testing.T) {
				w := *w
				w.t = t
				limits := []int{1, 2, 3, 10, 64, 1000}
				if testing.Short() {
					limits = []int{3, 1000}
				}
				w.check(parseQuery(t, "Consent", query), limits...)
			})
		}
	}
	// A cursor taken from one page keeps working after the data changes:
	// what was already returned is not returned again.
	t.Run("writes between pages", func(t *testing.T) {
		w := *w
		w.t = t
		q := parseQuery(t, "Consent", "status=active&_sort=period")
		q.Limit = 5
		first, err := w.s.Search(t.Context(), q)
		if err != nil || first.Next == nil {
			t.Fatalf("first page: %v, next %v", err, first.Next)
		}
		seen := map[string]bool{}
		for _, r := range first.Resources {
			seen[r.ID] = true
		}
		w.create("Consent", "late", consentJSON(consent{status: "active", bsn: bsnPatient, category: "59284-0",
			periods: [][2]string{{"2099", ""}}}))
		q.After, q.Limit = first.Next, 1000
		rest, err := w.s.Search(t.Context(), q)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range rest.Resources {
			if seen[r.ID] {
				t.Errorf("%s returned on both pages", r.ID)
			}
			got = append(got, r.ID)
		}
		if len(got) == 0 || got[len(got)-1] != "late" {
			t.Errorf("second page %v does not end with the resource written in between", got)
		}
	})
}
