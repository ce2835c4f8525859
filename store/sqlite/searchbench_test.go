package sqlite_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/schakelpunt/schakelpunt/fhir"
	"github.com/schakelpunt/schakelpunt/store"
)

// indexPatients is how many patients BenchmarkSearchIndexConsent loads:
// two index entries and two consents each.
const indexPatients = 5000

// indexEntryWrite is the index entry of patient i at the k-th of its two
// sources, as the federation stores it (terms from fhir.ExtractTerms).
func indexEntryWrite(i, k int) store.Write {
	ura := fmt.Sprintf("9000%04d", (i+k)%3)
	return extracted("Patient", fmt.Sprintf("idx-%s-%d", ura, i), fmt.Sprintf(`{"resourceType":"Patient",
  "identifier":[{"system":%q,"value":"%09d"}],
  "managingOrganization":{"identifier":{"system":%q,"value":%q}},
  "link":[{"other":{"reference":"https://127.0.0.1:9100/fhir/R4/%s/Patient/p%d"},"type":"seealso"}]}`,
		fhir.SystemBSN, i, fhir.SystemURA, ura, ura, i))
}

// indexConsentWrite is the consent patient i gave at the k-th of its two
// sources.
func indexConsentWrite(i, k int) store.Write {
	ura := fmt.Sprintf("9000%04d", (i+k)%3)
	return extracted("Consent", fmt.Sprintf("cons-%s-%d", ura, i), fmt.Sprintf(`{"resourceType":"Consent","status":"active",
  "scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"patient-privacy"}]},
  "category":[{"coding":[{"system":"http://loinc.org","code":"59284-0"}]}],
  "patient":{"identifier":{"system":%q,"value":"%09d"}},
  "dateTime":"2026-03-01T10:00:00+01:00",
  "organization":[{"identifier":{"system":%q,"value":%q}}],
  "provision":{"type":"permit","period":{"start":"2026-01-01T00:00:00+01:00"},
    "actor":[{"role":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ParticipationType","code":"CST"}]},
      "reference":{"identifier":{"system":%q,"value":%q}}}],
    "code":[{"coding":[{"system":"http://loinc.org","code":"10160-0"}]}]}}`,
		fhir.SystemBSN, i, fhir.SystemURA, ura, fhir.SystemURA, ura))
}

func extracted(typ, id, body string) store.Write {
	var doc map[string]any
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		panic(err)
	}
	return store.Write{Type: typ, ID: id, Body: []byte(body), Terms: fhir.ExtractTerms(typ, doc)}
}

// loadIndex creates the index entries and consents of patients 0..n-1
// from many goroutines.
func loadIndex(tb testing.TB, s store.Store, n int) {
	tb.Helper()
	loadParallel(tb, s, n, func(i int) []store.Write {
		return []store.Write{indexEntryWrite(i, 0), indexEntryWrite(i, 1), indexConsentWrite(i, 0), indexConsentWrite(i, 1)}
	})
}

// cpuTime is the CPU time (user and system) the process used so far: on
// a shared machine a steadier measure than the time that passed.
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// indexQuery is the search a federated query makes of the index entries
// (patient) or the consents of patient i (federation/lookup.go).
func indexQuery(typ string, i int) store.Query {
	bsn := fmt.Sprintf("%09d", i)
	c := fhir.Clause{Param: "identifier", Strings: []string{fhir.TermSystemCode("identifier", fhir.SystemBSN, bsn)}}
	if typ == "Consent" {
		c = fhir.Clause{Param: "patient", Strings: []string{fhir.TermRefIdentifier("patient", fhir.SystemBSN, bsn)}}
	}
	return store.Query{Type: typ, Limit: 100, Clauses: []fhir.Clause{c}}
}

// BenchmarkSearchIndexConsent runs the two searches of every federated
// query, each in its own sub-benchmark, among 10,000 index entries and
// 10,000 consents (and, for reference, a search of a term too common to
// drive it), with a context that can be canceled (as a request's).
// It reports the process's CPU time per search too.
//
//	go test ./store/sqlite -run '^$' -bench SearchIndexConsent -benchtime 20000x
func BenchmarkSearchIndexConsent(b *testing.B) {
	s := MustOpen(b, filepath.Join(b.TempDir(), "bench.db"))
	defer s.Close()
	loadIndex(b, s, indexPatients)
	for _, typ := range []string{"Patient", "Consent", "common"} {
		b.Run(typ, func(b *testing.B) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			b.ReportAllocs()
			cpu0 := cpuTime(b)
			for i := 0; b.Loop(); i++ {
				q, want := indexQuery(typ, i*7919%indexPatients), 2
				if typ == "common" {
					// Too common to drive: the page of the newest active
					// consents, after the count that says so.
					q, want = store.Query{Type: "Consent", Limit: 100, Clauses: []fhir.Clause{
						{Param: "status", Strings: []string{fhir.TermCode("status", "active")}},
					}}, 100
				}
				p, err := s.Search(ctx, q)
				if err != nil || len(p.Resources) != want {
					b.Fatalf("%d results, %v", len(p.Resources), err)
				}
			}
			b.ReportMetric(float64((cpuTime(b)-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
}
