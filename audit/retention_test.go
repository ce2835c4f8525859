package audit_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/schakelpunt/schakelpunt/audit"
	"github.com/schakelpunt/schakelpunt/store"
)

// Retention removes the events past the retention period, records its
// own AuditEvent, and the chain still verifies from the checkpoint.
func TestRetentionOnce(t *testing.T) {
	s := MustOpenStore(t)
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	rec := MustRecorder(t, s, audit.Options{NewID: seqIDs("ev"), Now: func() time.Time { return now }})
	ctx := context.Background()
	const old, recent = 30, 10
	var batch []audit.Event
	for i := range old + recent {
		ev := event(i)
		ev.Recorded = now.Add(-48 * time.Hour).Add(time.Duration(i) * time.Second)
		if i >= old {
			ev.Recorded = now.Add(-time.Hour).Add(time.Duration(i) * time.Second)
		}
		batch = append(batch, ev)
	}
	for _, ev := range batch {
		if _, err := rec.Record(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	r := audit.Retention{Log: s, Recorder: rec, Keep: 24 * time.Hour, Now: func() time.Time { return now }}
	n, err := r.Once(ctx)
	if err != nil {
		t.Fatalf("Once: %v", err)
	}
	if n != old {
		t.Fatalf("Once removed %d, want %d", n, old)
	}
	cp, err := s.AuditCheckpoint(ctx)
	if err != nil || cp.Seq != old {
		t.Fatalf("checkpoint %d, %v; want %d", cp.Seq, err, old)
	}
	for _, id := range []string{"ev-1", "ev-30"} {
		if _, err := s.Read(ctx, "AuditEvent", id); err == nil {
			t.Errorf("%s is still readable", id)
		}
	}
	rep := mustVerify(t, s, recent+1)
	if rep.Checkpoint != cp || rep.Head.Seq != old+recent+1 {
		t.Fatalf("report %+v", rep)
	}

	// Its own event: a delete by the retention component, saying how
	// many it removed.
	entries := scanAll(t, s)
	last := entries[len(entries)-1]
	mustValidate(t, last.Resource.Body)
	doc := decode(t, last.Resource.Body)
	if doc["action"] != "D" || path(list(doc, "subtype")[0], "code") != "delete" ||
		!strings.Contains(path(doc, "outcomeDesc"), "removed 30 events") ||
		path(list(doc, "agent")[0], "who.display") != "Schakelpunt audit retention" {
		t.Fatalf("retention event: %s", last.Resource.Body)
	}

	// Nothing more to remove: no new event either.
	if n, err := r.Once(ctx); err != nil || n != 0 {
		t.Fatalf("second Once: %d, %v", n, err)
	}
	if h, _ := s.AuditHead(ctx); h.Seq != old+recent+1 {
		t.Fatalf("head %d after a purge that removed nothing", h.Seq)
	}

	// Later, everything is old, the retention event too (recorded "now").
	later := audit.Retention{Log: s, Recorder: rec, Keep: time.Hour, Now: func() time.Time { return now.Add(48 * time.Hour) }}
	if n, err := later.Once(ctx); err != nil || n != recent+1 {
		t.Fatalf("Once later: %d, %v; want %d", n, err, recent+1)
	}
	mustVerify(t, s, 1) // the second retention event only
}

// Tampering after a purge is still detected from the checkpoint on.
func TestRetentionThenTamper(t *testing.T) {
	s := MustOpenStore(t)
	now := time.Now()
	rec := MustRecorder(t, s, audit.Options{NewID: seqIDs("ev")})
	ctx := context.Background()
	for i := range 6 {
		ev := event(i)
		ev.Recorded = now.Add(-time.Duration(48-i) * time.Hour)
		if _, err := rec.Record(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := (audit.Retention{Log: s, Recorder: rec, Keep: 44*time.Hour + 30*time.Minute}).Once(ctx); err != nil || n != 4 {
		t.Fatalf("Once: %d, %v; want 4", n, err)
	}
	mustVerify(t, s, 3)
	mustExec(t, tamperDB(t, s), `DELETE FROM audit_chain WHERE seq = 5`)
	rep, err := audit.Verify(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK() || rep.Broken.Seq != 5 {
		t.Fatalf("deleting the first event after the checkpoint: %+v", rep)
	}
}

// Run purges at once and then every period, until its context ends.
func TestRetentionRun(t *testing.T) {
	s := MustOpenStore(t)
	rec := MustRecorder(t, s, audit.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	ev := event(1)
	ev.Recorded = time.Now().Add(-48 * time.Hour)
	if _, err := rec.Record(ctx, ev); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		audit.Retention{Log: s, Recorder: rec, Keep: 24 * time.Hour, Every: 10 * time.Millisecond}.Run(ctx)
		close(done)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		cp, err := s.AuditCheckpoint(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if cp.Seq == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Run did not purge")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	mustVerify(t, s, 1)
	if h, _ := s.AuditHead(context.Background()); h != (store.ChainHead{Seq: 2, Hash: h.Hash}) {
		t.Fatalf("head %d, want 2 (the event and retention's own)", h.Seq)
	}
}
