package routing

import (
	"bytes"
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/schakelpunt/schakelpunt/audit"
	"github.com/schakelpunt/schakelpunt/store"
)

// hangupAudit holds each AuditEvent until the test says the client has
// hung up, then records it unless its context was cancelled (as the
// Recorder does when its queue is full).
type hangupAudit struct {
	AuditRecorder
	gone chan struct{}
}

func (h *hangupAudit) RecordAll(ctx context.Context, evs []audit.Event) error {
	<-h.gone
	if err := ctx.Err(); err != nil {
		return err
	}
	return h.AuditRecorder.RecordAll(ctx, evs)
}

// TestAuditSurvivesHangup: a client that hangs up after its write was
// committed must not take the write's AuditEvent with it.
func TestAuditSurvivesHangup(t *testing.T) {
	gone := make(chan struct{})
	h := mustServeWith(t, func(c *Config) { c.Audit = &hangupAudit{AuditRecorder: c.Audit, gone: gone} })
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, "POST", h.srv.URL+BasePath+"/Patient", bytes.NewReader(fixture(t, "patient.json")))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/fhir+json")
	done := make(chan error, 1)
	go func() {
		resp, err := h.client.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	// Wait for the write to be committed, then hang up.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		n, err := h.st.Count(context.Background(), store.Query{Type: "Patient"})
		if err != nil {
			t.Fatal(err)
		}
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the write was not committed")
		}
	}
	cancel()
	if err := <-done; err == nil {
		t.Fatal("the request was not cancelled")
	}
	time.Sleep(50 * time.Millisecond) // let the server see the hangup
	close(gone)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		n, err := h.st.Count(context.Background(), store.Query{Type: "AuditEvent"})
		if err != nil {
			t.Fatal(err)
		}
		if n == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d AuditEvents for the committed write, want 1", n)
		}
	}
}
