package federation_test

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/schakelpunt/schakelpunt/access"
	"github.com/schakelpunt/schakelpunt/federation"
	"github.com/schakelpunt/schakelpunt/fhir"
	"github.com/schakelpunt/schakelpunt/store"
	"github.com/schakelpunt/schakelpunt/store/sqlite"
)

// The benchmark of issue 6: index lookup plus consent decision for one
// federated query, at 1,000,000 index entries and 1,000,000 consents on
// the embedded store.
//
// benchPatients patients are each registered at two of the three demo
// sources (two index entries) and have one consent recorded at each (two
// consents). Every tenth patient withdrew the consent at the second
// source (status inactive), so that a query asks one source, not two.
const (
	benchPatients = 500_000
	// benchDataVersion names the generator below: change it whenever
	// benchEntry or benchConsent change, and the cached database is built
	// again.
	benchDataVersion = 1
)

var benchSources = []federation.Source{
	{URA: uraGP, Name: "Huisartsenpraktijk De Linde", Categories: []string{federation.CategoryMedication, federation.CategoryGPSummary}},
	{URA: uraBrug, Name: "Apotheek De Brug", Categories: []string{federation.CategoryMedication}},
	{URA: uraKruis, Name: "Apotheek Het Kruis", Categories: []string{federation.CategoryMedication}},
}

const benchBase = "https://127.0.0.1:9100/fhir/R4/" // + URA: never dialled, the benchmark stops before the fan-out

// benchBSNs returns n distinct BSNs that pass the eleven-check, in order.
func benchBSNs(n int) []string {
	out := make([]string, 0, n)
	for prefix := 10_000_000; len(out) < n; prefix++ {
		p := strconv.Itoa(prefix)
		sum := 0
		for i := range 8 {
			sum += (9 - i) * int(p[i]-'0')
		}
		if d := sum % 11; d < 10 { // 9·d1 + … + 2·d8 − d9 ≡ 0 (mod 11)
			out = append(out, p+strconv.Itoa(d))
		}
	}
	return out
}

// benchOrgs are the two sources of patient i.
func benchOrgs(i int) (first, second federation.Source) {
	return benchSources[i%3], benchSources[(i+1)%3]
}

func benchEntry(i int, bsn string, src federation.Source) store.Write {
	id := fmt.Sprintf("idx-%s-%d", src.URA, i)
	return benchWrite("Patient", id, indexEntry(bsn, src.URA, benchBase+src.URA+"/Patient/p"+strconv.Itoa(i)))
}

// benchConsent is the consent patient i gave at src: at the first source
// a permit of medication from that source (CST), at the second a permit
// of every category with a nested deny of one other recipient; that one
// is withdrawn (inactive) for every tenth patient.
func benchConsent(i int, bsn string, src federation.Source, second bool) store.Write {
	id := fmt.Sprintf("cons-%s-%d", src.URA, i)
	status, provision := "active", fmt.Sprintf(`{"type":"permit","period":{"start":"2026-01-01T00:00:00+01:00"},
    "actor":[{"role":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ParticipationType","code":"CST"}]},
      "reference":{"identifier":{"system":"http://fhir.nl/fhir/NamingSystem/ura","value":%q}}}],
    "code":[{"coding":[{"system":"http://loinc.org","code":"10160-0"}]}]}`, src.URA)
	if second {
		provision = `{"type":"permit","period":{"start":"2026-01-01T00:00:00+01:00","end":"2036-01-01"},
    "provision":[{"type":"deny","actor":[{"role":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ParticipationType","code":"IRCP"}]},
      "reference":{"identifier":{"system":"http://fhir.nl/fhir/NamingSystem/ura","value":"90000777"}}}]}]}`
		if i%10 == 0 {
			status = "inactive"
		}
	}
	return benchWrite("Consent", id, fmt.Sprintf(`{"resourceType":"Consent","status":%q,
  "scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"patient-privacy"}]},
  "category":[{"coding":[{"system":"http://loinc.org","code":"59284-0"}]}],
  "patient":{"identifier":{"system":"http://fhir.nl/fhir/NamingSystem/bsn","value":%q}},
  "dateTime":"2026-03-01T10:00:00+01:00",
  "organization":[{"identifier":{"system":"http://fhir.nl/fhir/NamingSystem/ura","value":%q}}],
  "provision":%s}`, status, bsn, src.URA, provision))
}

// benchWrite is the write the FHIR edge would make of body: its terms
// from fhir.ExtractTerms, as for every create.
func benchWrite(typ, id, body string) store.Write {
	var doc map[string]any
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		panic(err)
	}
	return store.Write{Type: typ, ID: id, Body: []byte(body), Terms: fhir.ExtractTerms(typ, doc)}
}

// benchDB returns the path of the benchmark's database, built once
// through the store's ordinary Create (the rows the write path makes)
// and kept under the user's cache directory. Its name carries a hash of
// a sample of what the generator writes (bodies and terms), of
// benchDataVersion and of the embedded store's schema, so that a change
// of any of them builds it again; older ones are removed.
func benchDB(b *testing.B, bsns []string) string {
	b.Helper()
	path := benchDBPath(b, bsns)
	dir := filepath.Dir(path)
	if _, err := os.Stat(path); err == nil {
		return path
	}
	old, _ := filepath.Glob(filepath.Join(dir, "bench-index-consent-*")) // older versions, and a build that was cut short
	for _, o := range old {
		_ = os.Remove(o)
	}
	tmp := path + ".building"
	b.Logf("building %s: %d index entries and %d consents through Store.Create (once; minutes)", path, 2*len(bsns), 2*len(bsns))
	start := time.Now()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, tmp, sqlite.Options{})
	if err != nil {
		b.Fatal(err)
	}
	var (
		wg     sync.WaitGroup
		next   atomic.Int64
		failed atomic.Value
	)
	next.Store(-1)
	for range 128 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1))
				if i >= len(bsns) || failed.Load() != nil {
					return
				}
				first, second := benchOrgs(i)
				for _, w := range []store.Write{
					benchEntry(i, bsns[i], first), benchEntry(i, bsns[i], second),
					benchConsent(i, bsns[i], first, false), benchConsent(i, bsns[i], second, true),
				} {
					if _, err := st.Create(ctx, w); err != nil {
						failed.Store(err)
						return
					}
				}
				if i%100_000 == 0 && i > 0 {
					b.Logf("%d patients after %s", i, time.Since(start).Round(time.Second))
				}
			}
		}()
	}
	wg.Wait()
	if err := st.Close(); err != nil {
		b.Fatal(err)
	}
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	for _, suffix := range []string{"-wal", "-shm"} {
		if _, err := os.Stat(tmp + suffix); err == nil {
			b.Fatalf("%s%s left after Close", tmp, suffix)
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		b.Fatal(err)
	}
	b.Logf("built in %s", time.Since(start).Round(time.Second))
	return path
}

// sqliteSchema is the embedded store's schema as its source declares it
// (schemaVersion and the schema statements in store/sqlite/sqlite.go), so
// that a database built by an older schema is not reused.
func sqliteSchema(tb testing.TB) string {
	src, err := os.ReadFile(filepath.Join("..", "store", "sqlite", "sqlite.go"))
	if err != nil {
		tb.Fatal(err)
	}
	text := string(src)
	version, _, ok1 := strings.Cut(text[strings.Index(text, "const schemaVersion"):], "\n")
	_, schema, ok2 := strings.Cut(text, "\nvar schema = []string{")
	schema, _, ok3 := strings.Cut(schema, "\n}\n")
	if !strings.Contains(text, "const schemaVersion") || !ok1 || !ok2 || !ok3 {
		return text // not found where it was: any change of the file builds again
	}
	return version + schema
}

// benchDBPath is where benchDB keeps the database for bsns.
func benchDBPath(tb testing.TB, bsns []string) string {
	cache, err := os.UserCacheDir()
	if err != nil {
		tb.Skip("no cache directory:", err)
	}
	dir := filepath.Join(cache, "schakelpunt")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		tb.Fatal(err)
	}
	h := sha256.New()
	fmt.Fprintf(h, "v%d n%d\n%s\n", benchDataVersion, len(bsns), sqliteSchema(tb))
	for _, w := range []store.Write{benchEntry(7, bsns[7], benchSources[1]), benchConsent(7, bsns[7], benchSources[1], false), benchConsent(10, bsns[10], benchSources[2], true)} {
		ts, _ := json.Marshal(w.Terms)
		fmt.Fprintf(h, "%s %s %s %s\n", w.Type, w.ID, w.Body, ts)
	}
	return filepath.Join(dir, "bench-index-consent-"+hex.EncodeToString(h.Sum(nil)[:6])+".db")
}

// BenchmarkIndexConsent measures the first half of a federated
// MedicationDispense query, everything before the fan-out: the role
// policy, the index lookup by BSN, the read of the patient's consents and
// the consent decision per source, at 1,000,000 index entries and
// 1,000,000 consents. Each iteration also times a reference in the same
// conditions: one Store.Read of a consent by id. It reports p50 and p99
// of both and their ratios.
//
//	go test ./federation -run '^$' -bench BenchmarkIndexConsent -benchtime 20000x -timeout 60m
func BenchmarkIndexConsent(b *testing.B) {
	f, err := shared()
	if err != nil {
		b.Fatal(err)
	}
	bsns := benchBSNs(benchPatients)
	path := benchDB(b, bsns)
	ctx := context.Background()
	st, err := sqlite.Open(ctx, path, sqlite.Options{})
	if err != nil {
		b.Fatalf("open %s (remove it to build it again): %v", path, err)
	}
	defer st.Close()
	reg := slices.Clone(benchSources)
	for i := range reg {
		reg[i].BaseURL = benchBase + reg[i].URA
	}
	eng, err := federation.New(federation.Config{
		Registry: reg, Index: st, Policy: access.DefaultPolicy(), Validator: f.validator,
		ClientCert: f.client, SourceCAs: []*x509.Certificate{f.ca.Cert},
	})
	if err != nil {
		b.Fatal(err)
	}
	defer eng.Close()
	pharmacist := professional("17.075")

	query := func(i int) error {
		ts, res, err := eng.Permitted(ctx, pharmacist, bsns[i], federation.CategoryMedication)
		if err != nil {
			return fmt.Errorf("patient %d: %w (%v)", i, err, res.Reasons)
		}
		first, second := benchOrgs(i)
		want := []string{first.URA, second.URA}
		if i%10 == 0 {
			want = want[:1]
		}
		got := make([]string, 0, len(ts))
		for _, t := range ts {
			got = append(got, t.URA)
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			return fmt.Errorf("patient %d: asked %v, want %v (%v)", i, got, want, res.Reasons)
		}
		return nil
	}
	reference := func(i int) error {
		src, _ := benchOrgs(i)
		r, err := st.Read(ctx, "Consent", fmt.Sprintf("cons-%s-%d", src.URA, i))
		if err == nil && len(r.Body) == 0 {
			err = errors.New("empty consent")
		}
		return err
	}
	// Warm up: the caches of SQLite and of the page cache of the file.
	rng := rand.New(rand.NewPCG(6, 1))
	for range 2000 {
		i := rng.IntN(len(bsns))
		if err := query(i); err != nil {
			b.Fatal(err)
		}
		if err := reference(i); err != nil {
			b.Fatal(err)
		}
	}

	lat := make([]time.Duration, 0, b.N)
	ref := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for n := range b.N {
		i := rng.IntN(len(bsns))
		j := rng.IntN(len(bsns)) // the reference reads another patient's consent: no help from the query's pages
		measure := func(fn func(int) error, k int, into *[]time.Duration) {
			t0 := time.Now()
			err := fn(k)
			*into = append(*into, time.Since(t0))
			if err != nil {
				b.Fatal(err)
			}
		}
		if n%2 == 0 { // alternate the order, so that neither always runs second
			measure(query, i, &lat)
			measure(reference, j, &ref)
		} else {
			measure(reference, j, &ref)
			measure(query, i, &lat)
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	slices.Sort(ref)
	pct := func(d []time.Duration, p int) float64 { return float64(d[(len(d)-1)*p/100].Microseconds()) }
	b.ReportMetric(pct(lat, 50), "p50-µs")
	b.ReportMetric(pct(lat, 90), "p90-µs")
	b.ReportMetric(pct(lat, 99), "p99-µs")
	b.ReportMetric(pct(ref, 50), "ref-p50-µs")
	b.ReportMetric(pct(ref, 99), "ref-p99-µs")
	b.ReportMetric(pct(lat, 50)/max(1, pct(ref, 50)), "p50/ref")
	b.ReportMetric(pct(lat, 99)/max(1, pct(ref, 99)), "p99/ref")
}
