package routing

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/schakelpunt/schakelpunt/fhir"
)

// load runs n requests from conc goroutines and reports throughput and
// latency percentiles. It is the load generator of the HTTPS benchmarks:
// bounded in count, on loopback only.
func load(b *testing.B, conc, n int, do func(i int) error) {
	b.Helper()
	lat := make([]time.Duration, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Int64
	start := time.Now()
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				t0 := time.Now()
				if err := do(i); err != nil {
					failed.Add(1)
					b.Error(err)
					return
				}
				lat[i] = time.Since(t0)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) float64 { return float64(lat[int(float64(n-1)*p)].Microseconds()) / 1000 }
	b.ReportMetric(float64(n)/elapsed.Seconds(), "req/s")
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(0, "ns/op")
}

func send(c *http.Client, method, url string, body []byte, want int) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: %d", method, url, resp.StatusCode)
	}
	return nil
}

// BenchmarkHTTPS measures create and read over mutual TLS on the embedded
// store (with policy, validation, audit: everything a request pays),
// against a reference measured in the same run: a bare handler behind the
// same TLS that reads the body and answers 201.
//
//	go test ./routing -run '^$' -bench HTTPS -benchtime 1x
func BenchmarkHTTPS(b *testing.B) {
	const n = 4000
	body := fixture(b, "patient.json")
	for _, conc := range []int{1, 16} {
		b.Run(fmt.Sprintf("reference/c%d", conc), func(b *testing.B) {
			h := mustServe(b)
			ref := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				w.Header().Set("Content-Type", contentTypeFHIR)
				w.WriteHeader(http.StatusCreated)
				_, _ = w.Write(body)
			}))
			ref.TLS = h.srv.TLS
			ref.StartTLS()
			defer ref.Close()
			for i := 0; i < b.N; i++ {
				load(b, conc, n, func(int) error { return send(h.client, "POST", ref.URL+"/", body, 201) })
			}
		})
		b.Run(fmt.Sprintf("create/c%d", conc), func(b *testing.B) {
			h := mustServe(b)
			for i := 0; i < b.N; i++ {
				load(b, conc, n, func(int) error { return send(h.client, "POST", h.srv.URL+BasePath+"/Patient", body, 201) })
			}
		})
		b.Run(fmt.Sprintf("read/c%d", conc), func(b *testing.B) {
			h := mustServe(b)
			r := do(b, h, "POST", "/Patient", body)
			url := h.srv.URL + BasePath + "/Patient/" + r.body["id"].(string)
			for i := 0; i < b.N; i++ {
				load(b, conc, n, func(int) error { return send(h.client, "GET", url, nil, 200) })
			}
		})
	}
}

// BenchmarkSearchIdentifierHTTPS: identifier search over mutual TLS at
// 100,000 index entries on the embedded store (loaded through the store,
// as registrations would have left them), one client at a time.
//
//	go test ./routing -run '^$' -bench SearchIdentifier -benchtime 1x
func BenchmarkSearchIdentifierHTTPS(b *testing.B) {
	const entries, searches = 100_000, 2000
	h := mustServe(b)
	body := fixture(b, "patient.json")
	bsn := func(i int) string { return fmt.Sprintf("1%08d", i) } // distinct values; the store does not check the eleven-check
	var wg sync.WaitGroup
	next := atomic.Int64{}
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= entries {
					return
				}
				doc := bytes.Replace(body, []byte("999911120"), []byte(bsn(i)), 1)
				res, err := codecForBench(b).Parse(doc, "Patient")
				if err != nil {
					b.Error(err)
					return
				}
				if _, err := h.st.Create(context.Background(), writeOf(res, fmt.Sprintf("p%d", i))); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		load(b, 1, searches, func(j int) error {
			return send(h.client, "GET", h.srv.URL+BasePath+"/Patient?identifier=http://fhir.nl/fhir/NamingSystem/bsn|"+bsn((j*7919)%entries), nil, 200)
		})
	}
}

var benchCodec struct {
	once sync.Once
	c    *fhir.Codec
}

func codecForBench(b *testing.B) *fhir.Codec {
	benchCodec.once.Do(func() {
		c, err := fhir.NewCodec()
		if err != nil {
			b.Fatal(err)
		}
		benchCodec.c = c
	})
	return benchCodec.c
}
