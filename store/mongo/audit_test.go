package mongo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/schakelpunt/schakelpunt/audit"
	"github.com/schakelpunt/schakelpunt/store"
	"github.com/schakelpunt/schakelpunt/store/storetest"
)

// TestAuditContract runs the shared audit log suite, each test on a fresh
// database; Reopen connects anew to the database of the closed store.
// Retention removes 150 events a round here, so that the purge test spans
// several rounds with 600 events: FerretDB scans a collection for every
// query, and the default 2500 take it twenty seconds.
func TestAuditContract(t *testing.T) {
	const chunk = 150
	storetest.RunAuditWith(t, storetest.Harness{
		Open: func(t *testing.T) store.Store {
			s := mustOpen(t, Options{})
			s.purgeChunk = chunk
			return s
		},
		Reopen: func(t *testing.T, closed store.Store) store.Store {
			s := mustOpenDB(t, closed.(*Store).db.Name(), Options{})
			s.purgeChunk = chunk
			return s
		},
	}, storetest.AuditOptions{PurgeEvents: 600})
}

// auditBase is when the events of these tests are recorded: event i at
// auditBase + i seconds.
var auditBase = time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)

// chained returns n records of events as package audit renders and chains
// them (real hashes, so that audit.Verify can check them), with ids
// prefix-1 … prefix-n, following the empty chain. They are captured from
// a Recorder on a log that keeps them instead of storing them, so that the
// test can append them in batches of its choosing.
func chained(tb testing.TB, prefix string, n int) []store.AuditRecord {
	tb.Helper()
	var c captured
	var next int
	rec := audit.NewRecorder(&c, audit.Options{NewID: func() string { next++; return fmt.Sprintf("%s-%d", prefix, next) }})
	defer rec.Close()
	bsns := []string{"999911120", "999900006", "999900018"}
	for i := 1; i <= n; i++ {
		_, err := rec.Record(context.Background(), audit.Event{
			Recorded:    auditBase.Add(time.Duration(i) * time.Second),
			Interaction: "search-type", Status: 200,
			Agent:      &audit.Agent{UZINumber: "11111111", CardType: "Z", Role: "01.015", URA: "90000111", Address: "192.0.2.7"},
			PatientBSN: bsns[i%len(bsns)], Category: "10160-0",
			Query: fmt.Sprintf("GET /fhir/R4/MedicationDispense?patient.identifier=http://fhir.nl/fhir/NamingSystem/bsn|%s&n=%d", bsns[i%len(bsns)], i),
		})
		if err != nil {
			tb.Fatal(err)
		}
	}
	return c.recs
}

// captured is an AuditLog that keeps what is appended to it, in memory.
type captured struct {
	mu   sync.Mutex
	recs []store.AuditRecord
}

func (c *captured) AppendAudit(_ context.Context, recs []store.AuditRecord) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.recs = append(c.recs, recs...)
	return nil
}

func (c *captured) AuditHead(context.Context) (store.ChainHead, error) { return store.ChainHead{}, nil }
func (c *captured) ScanAudit(context.Context, int64, int) ([]store.AuditEntry, error) {
	return nil, nil
}
func (c *captured) AuditCheckpoint(context.Context) (store.ChainHead, error) {
	return store.ChainHead{}, nil
}
func (c *captured) PurgeAudit(context.Context, time.Time) (int, error) { return 0, nil }

// appendBatches appends recs in batches of the given sizes.
func appendBatches(t *testing.T, s *Store, recs []store.AuditRecord, sizes ...int) {
	t.Helper()
	for _, n := range sizes {
		if err := s.AppendAudit(context.Background(), recs[:n]); err != nil {
			t.Fatalf("AppendAudit %d..%d: %v", recs[0].Seq, recs[n-1].Seq, err)
		}
		recs = recs[n:]
	}
	if len(recs) > 0 {
		t.Fatalf("appendBatches: %d records left", len(recs))
	}
}

// commitOnly stores a batch as an appender that dies right after the
// commit point would: the batch document only.
func commitOnly(t *testing.T, db string, recs []store.AuditRecord) {
	t.Helper()
	b, err := newBatch(recs, time.Now(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rawCollection(t, db, AuditCollection).InsertOne(context.Background(), b); err != nil {
		t.Fatal(err)
	}
}

// verify runs audit.Verify and checks its verdict: intact with checked
// events (seq 0), or broken at seq with reason in its text.
func verify(t *testing.T, s *Store, checked, seq int64, reason string) audit.Report {
	t.Helper()
	rep, err := audit.Verify(context.Background(), s)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	switch {
	case seq == 0 && !rep.OK():
		t.Fatalf("Verify: broken at %d (%s): %s", rep.Broken.Seq, rep.Broken.ID, rep.Broken.Reason)
	case seq == 0 && rep.Checked != checked:
		t.Fatalf("Verify checked %d events, want %d", rep.Checked, checked)
	case seq != 0 && rep.OK():
		t.Fatalf("tampering not detected: %+v", rep)
	case seq != 0 && (rep.Broken.Seq != seq || !strings.Contains(rep.Broken.Reason, reason)):
		t.Fatalf("Verify: broken at %d (%q), want %d (%q)", rep.Broken.Seq, rep.Broken.Reason, seq, reason)
	}
	return rep
}

func wantRead(t *testing.T, s *Store, id string, want error) {
	t.Helper()
	_, err := s.Read(context.Background(), "AuditEvent", id)
	if want == nil && err != nil || want != nil && !errors.Is(err, want) {
		t.Fatalf("Read AuditEvent/%s: %v, want %v", id, err, want)
	}
}

func wantCount(t *testing.T, s *Store, want int) {
	t.Helper()
	n, err := s.Count(context.Background(), store.Query{Type: "AuditEvent"})
	if err != nil || n != want {
		t.Fatalf("Count of AuditEvents = %d, %v; want %d", n, err, want)
	}
}

// batchDoc reads a batch document as stored.
func batchDoc(t *testing.T, db string, first int64) auditBatch {
	t.Helper()
	var b auditBatch
	if err := rawCollection(t, db, AuditCollection).FindOne(context.Background(), bson.D{{Key: "_id", Value: first}}).Decode(&b); err != nil {
		t.Fatalf("batch %d: %v", first, err)
	}
	return b
}

// replaceBatch stores an edited batch document.
func replaceBatch(t *testing.T, db string, b auditBatch) {
	t.Helper()
	res, err := rawCollection(t, db, AuditCollection).ReplaceOne(context.Background(), bson.D{{Key: "_id", Value: b.First}}, b)
	if err != nil || res.MatchedCount != 1 {
		t.Fatalf("replace batch %d: %v", b.First, err)
	}
}

// editEvent rewrites the stored JSON of an event in resources.
func editEvent(t *testing.T, db, id string, edit func([]byte) []byte) {
	t.Helper()
	ctx := context.Background()
	coll := rawCollection(t, db, ResourcesCollection)
	key := resourceKey("AuditEvent", id)
	var rec record
	if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: key}}).Decode(&rec); err != nil {
		t.Fatal(err)
	}
	changed := edit(rec.Body)
	if bytes.Equal(changed, rec.Body) {
		t.Fatalf("the edit of %s changed nothing", id)
	}
	if _, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: key}}, bson.D{{Key: "$set", Value: bson.D{{Key: "body", Value: body(changed)}}}}); err != nil {
		t.Fatal(err)
	}
}

func mustDelete(t *testing.T, coll *mongo.Collection, id any) {
	t.Helper()
	res, err := coll.DeleteOne(context.Background(), bson.D{{Key: "_id", Value: id}})
	if err != nil || res.DeletedCount != 1 {
		t.Fatalf("delete %v from %s: %d, %v", id, coll.Name(), res.DeletedCount, err)
	}
}

// TestAuditTamper appends ten chained events in three batches (1-3, 4-7,
// 8-10), tampers with the database directly and checks that audit.Verify
// reports the first broken link.
func TestAuditTamper(t *testing.T) {
	const n, victim = 10, 5 // ev-5: in the middle of the batch 4-7
	outcome := func(b []byte) []byte { return bytes.Replace(b, []byte(`"outcome":"0"`), []byte(`"outcome":"4"`), 1) }
	zeros := strings.Repeat("0", 64)
	for _, tc := range []struct {
		name   string
		tamper func(t *testing.T, db string, recs []store.AuditRecord)
		seq    int64  // 0: the chain holds
		reason string // in Broken.Reason
	}{
		{name: "intact", tamper: func(*testing.T, string, []store.AuditRecord) {}},
		{name: "event edited", seq: victim, reason: "changed",
			tamper: func(t *testing.T, db string, _ []store.AuditRecord) { editEvent(t, db, "ev-5", outcome) }},
		{name: "event swapped for another", seq: victim, reason: "changed",
			tamper: func(t *testing.T, db string, recs []store.AuditRecord) {
				var other record
				if err := rawCollection(t, db, ResourcesCollection).FindOne(context.Background(), bson.D{{Key: "_id", Value: "AuditEvent/ev-6"}}).Decode(&other); err != nil {
					t.Fatal(err)
				}
				editEvent(t, db, "ev-5", func([]byte) []byte {
					return bytes.Replace(other.Body, []byte(`"id":"ev-6"`), []byte(`"id":"ev-5"`), 1)
				})
			}},
		{name: "shown link edited", seq: victim, reason: "shown",
			tamper: func(t *testing.T, db string, recs []store.AuditRecord) {
				editEvent(t, db, "ev-5", func(b []byte) []byte { return bytes.Replace(b, []byte(recs[victim-1].Hash), []byte(zeros), 1) })
			}},
		{name: "stored hash edited", seq: victim, reason: "changed",
			tamper: func(t *testing.T, db string, _ []store.AuditRecord) {
				b := batchDoc(t, db, 4)
				b.Links[victim-4].Hash = zeros
				replaceBatch(t, db, b)
			}},
		{name: "edited and rehashed", seq: victim + 1, reason: "previous",
			// The tamperer recomputes the victim's hash (and the link it
			// shows): the next event's previous link gives it away.
			tamper: func(t *testing.T, db string, recs []store.AuditRecord) {
				var edited []byte
				editEvent(t, db, "ev-5", func(b []byte) []byte { edited = outcome(b); return edited })
				canon, err := audit.Canonical(edited)
				if err != nil {
					t.Fatal(err)
				}
				hash := audit.Link(recs[victim-2].Hash, canon)
				editEvent(t, db, "ev-5", func(b []byte) []byte { return bytes.Replace(b, []byte(recs[victim-1].Hash), []byte(hash), 1) })
				b := batchDoc(t, db, 4)
				b.Links[victim-4].Hash = hash
				replaceBatch(t, db, b)
			}},
		{name: "event deleted", seq: victim, reason: "missing",
			tamper: func(t *testing.T, db string, _ []store.AuditRecord) {
				mustDelete(t, rawCollection(t, db, ResourcesCollection), "AuditEvent/ev-5")
			}},
		{name: "link deleted", seq: victim, reason: "missing",
			tamper: func(t *testing.T, db string, _ []store.AuditRecord) {
				b := batchDoc(t, db, 4)
				b.Links = slices.Delete(b.Links, victim-4, victim-3)
				replaceBatch(t, db, b)
			}},
		{name: "event and link deleted", seq: victim, reason: "missing",
			tamper: func(t *testing.T, db string, _ []store.AuditRecord) {
				mustDelete(t, rawCollection(t, db, ResourcesCollection), "AuditEvent/ev-5")
				b := batchDoc(t, db, 4)
				b.Links = slices.Delete(b.Links, victim-4, victim-3)
				replaceBatch(t, db, b)
			}},
		{name: "batch deleted", seq: 4, reason: "missing",
			tamper: func(t *testing.T, db string, _ []store.AuditRecord) {
				mustDelete(t, rawCollection(t, db, AuditCollection), int64(4))
			}},
		{name: "newest event deleted", seq: n, reason: "removed",
			tamper: func(t *testing.T, db string, _ []store.AuditRecord) {
				mustDelete(t, rawCollection(t, db, ResourcesCollection), fmt.Sprintf("AuditEvent/ev-%d", n))
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := freshDatabase(t)
			s := mustOpenDB(t, db, Options{})
			recs := chained(t, "ev", n)
			appendBatches(t, s, recs, 3, 4, 3)
			tc.tamper(t, db, recs)
			rep := verify(t, s, n, tc.seq, tc.reason)
			if rep.Head.Seq != n {
				t.Errorf("report head %d, want %d", rep.Head.Seq, n)
			}
			if tc.seq != 0 && rep.Checked != tc.seq-1 {
				t.Errorf("checked %d before the break, want %d", rep.Checked, tc.seq-1)
			}
		})
	}

	// An event edited before it was made searchable (in the batch
	// document of an appender that died after the commit) shows edited
	// once it is: it was never intact.
	t.Run("edited while pending", func(t *testing.T) {
		db := freshDatabase(t)
		s := mustOpenDB(t, db, Options{})
		recs := chained(t, "ev", n)
		appendBatches(t, s, recs[:7], 3, 4)
		b, err := newBatch(recs[7:], time.Now(), 0)
		if err != nil {
			t.Fatal(err)
		}
		b.Links[1].Event.Body = body(outcome(b.Links[1].Event.Body))
		if _, err := rawCollection(t, db, AuditCollection).InsertOne(context.Background(), b); err != nil {
			t.Fatal(err)
		}
		verify(t, s, n, 9, "changed")
	})

	// Retention keeps the chain verifiable, and tampering after it is
	// still found.
	t.Run("after retention", func(t *testing.T) {
		db := freshDatabase(t)
		s := mustOpenDB(t, db, Options{})
		recs := chained(t, "ev", n)
		appendBatches(t, s, recs, 3, 4, 3)
		if got, err := s.PurgeAudit(context.Background(), recs[3].Recorded); err != nil || got != 3 {
			t.Fatalf("PurgeAudit: %d, %v; want 3", got, err)
		}
		if rep := verify(t, s, n-3, 0, ""); rep.Checkpoint.Seq != 3 {
			t.Fatalf("checkpoint %d, want 3", rep.Checkpoint.Seq)
		}
		editEvent(t, db, "ev-5", outcome)
		verify(t, s, 0, victim, "changed")
	})
}

// TestAuditAfterCommit: an appender that dies after its batch document is
// inserted (the commit point) and before the events are in resources
// leaves them unsearchable only until the next append, scan or Open,
// which finish the batch. No event of it is lost or doubled.
func TestAuditAfterCommit(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		finish func(t *testing.T, s *Store, recs []store.AuditRecord) *Store
		events int // in the chain afterwards
	}{
		{"next append", func(t *testing.T, s *Store, recs []store.AuditRecord) *Store {
			appendBatches(t, s, recs[4:], 2)
			return s
		}, 6},
		{"scan", func(t *testing.T, s *Store, _ []store.AuditRecord) *Store {
			if got, err := s.ScanAudit(ctx, 0, 0); err != nil || len(got) != 4 {
				t.Fatalf("ScanAudit: %d entries, %v; want 4", len(got), err)
			}
			return s
		}, 4},
		{"open", func(t *testing.T, s *Store, _ []store.AuditRecord) *Store {
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			return mustOpenDB(t, s.db.Name(), Options{})
		}, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := freshDatabase(t)
			s := mustOpenDB(t, db, Options{})
			recs := chained(t, "ev", 6)
			appendBatches(t, s, recs[:2], 2)
			commitOnly(t, db, recs[2:4])
			// Committed: the chain has it, search does not yet (nobody was
			// told it is stored).
			if h, err := s.AuditHead(ctx); err != nil || h.Seq != 4 {
				t.Fatalf("AuditHead = %d, %v; want 4", h.Seq, err)
			}
			wantRead(t, s, "ev-3", store.ErrNotFound)

			s = tc.finish(t, s, recs)
			for _, r := range recs[:tc.events] {
				wantRead(t, s, r.Write.ID, nil)
			}
			wantCount(t, s, tc.events)
			verify(t, s, int64(tc.events), 0, "")
			b := batchDoc(t, db, 3)
			if b.Pending || b.Links[0].Event != nil || b.Links[1].Event != nil {
				t.Fatalf("batch 3 still pending (%v) or holding its events", b.Pending)
			}
		})
	}

	// An appender told about a failure after the commit (here: its
	// context ends as the batch is inserted) still finishes the batch.
	t.Run("caller gone", func(t *testing.T) {
		s := mustOpen(t, Options{})
		recs := chained(t, "ev", 2)
		b, err := newBatch(recs, time.Now(), 0)
		if err != nil {
			t.Fatal(err)
		}
		cctx, cancel := context.WithCancel(ctx)
		if _, err := s.audit.InsertOne(cctx, b); err != nil {
			t.Fatal(err)
		}
		cancel()
		// commit's insert would now fail on the duplicate key; run what
		// follows it as commit does, with the dead context.
		if err := s.finishCommit(cctx, b); err != nil {
			t.Fatalf("after the commit: %v", err)
		}
		wantRead(t, s, "ev-1", nil)
		wantRead(t, s, "ev-2", nil)
	})
}

// TestAuditStale: an appender whose check of the head came before another
// appended there and retention removed that batch again finds the place
// free, and inserts behind the checkpoint. It is refused with
// ErrChainConflict; a stale batch whose appender died is ignored.
func TestAuditStale(t *testing.T) {
	ctx := context.Background()
	setup := func(t *testing.T) (*Store, string, []store.AuditRecord) {
		db := freshDatabase(t)
		s := mustOpenDB(t, db, Options{})
		recs := chained(t, "ev", 8)
		appendBatches(t, s, recs[:6], 3, 3)
		if n, err := s.PurgeAudit(ctx, recs[3].Recorded); err != nil || n != 3 {
			t.Fatalf("PurgeAudit: %d, %v; want 3", n, err)
		}
		return s, db, recs
	}
	// The stale appender saw the empty log: its five events would be 1-5.
	stale := func(t *testing.T) *auditBatch {
		b, err := newBatch(chained(t, "stale", 5), time.Now(), 0)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	check := func(t *testing.T, s *Store, recs []store.AuditRecord, last int) {
		t.Helper()
		for i := 1; i <= 5; i++ {
			wantRead(t, s, fmt.Sprintf("stale-%d", i), store.ErrNotFound)
		}
		if h, err := s.AuditHead(ctx); err != nil || h.Seq != int64(last) || h.Hash != recs[last-1].Hash {
			t.Fatalf("AuditHead = %d, %v; want %d", h.Seq, err, last)
		}
		verify(t, s, int64(last-3), 0, "")
		wantCount(t, s, last-3)
	}

	t.Run("refused", func(t *testing.T) {
		s, db, recs := setup(t)
		err := s.commit(ctx, stale(t))
		if !errors.Is(err, store.ErrChainConflict) {
			t.Fatalf("commit of a stale batch: %v, want ErrChainConflict", err)
		}
		if err := rawCollection(t, db, AuditCollection).FindOne(ctx, bson.D{{Key: "_id", Value: int64(1)}}).Err(); !errors.Is(err, mongo.ErrNoDocuments) {
			t.Fatalf("the stale batch is still stored: %v", err)
		}
		check(t, s, recs, 6)
		appendBatches(t, s, recs[6:], 2)
		check(t, s, recs, 8)
	})

	t.Run("left behind", func(t *testing.T) {
		s, db, recs := setup(t)
		if _, err := rawCollection(t, db, AuditCollection).InsertOne(ctx, stale(t)); err != nil {
			t.Fatal(err)
		}
		check(t, s, recs, 6)
		appendBatches(t, s, recs[6:], 2)
		check(t, s, recs, 8)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s = mustOpenDB(t, db, Options{})
		check(t, s, recs, 8)
		if n, err := s.PurgeAudit(ctx, recs[5].Recorded); err != nil || n != 2 {
			t.Fatalf("PurgeAudit: %d, %v; want 2", n, err)
		}
		verify(t, s, 3, 0, "")
	})
}

// TestAuditPurgeResumes: a purge that stopped after moving the checkpoint
// is finished by the next purge or by Open.
func TestAuditPurgeResumes(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		finish func(t *testing.T, s *Store) *Store
	}{
		{"purge", func(t *testing.T, s *Store) *Store {
			// Nothing is old by this cutoff: only the interrupted work.
			if n, err := s.PurgeAudit(ctx, auditBase); err != nil || n != 4 {
				t.Fatalf("PurgeAudit: %d, %v; want the 4 left", n, err)
			}
			return s
		}},
		{"open", func(t *testing.T, s *Store) *Store {
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			return mustOpenDB(t, s.db.Name(), Options{})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := freshDatabase(t)
			s := mustOpenDB(t, db, Options{})
			recs := chained(t, "ev", 6)
			appendBatches(t, s, recs, 3, 3)
			// The purge moved the checkpoint to 4 and stopped.
			if _, err := rawCollection(t, db, AuditMarksCollection).InsertOne(ctx, auditMark{Seq: 4, Hash: recs[3].Hash}); err != nil {
				t.Fatal(err)
			}
			verify(t, s, 2, 0, "")
			s = tc.finish(t, s)
			for _, r := range recs {
				want := error(nil)
				if r.Seq <= 4 {
					want = store.ErrNotFound
				}
				wantRead(t, s, r.Write.ID, want)
			}
			wantCount(t, s, 2)
			if err := rawCollection(t, db, AuditCollection).FindOne(ctx, bson.D{{Key: "_id", Value: int64(1)}}).Err(); !errors.Is(err, mongo.ErrNoDocuments) {
				t.Fatalf("batch 1 is still stored: %v", err)
			}
			if b := batchDoc(t, db, 4); len(b.Links) != 2 || b.Links[0].Seq != 5 {
				t.Fatalf("batch 4 holds %d links from %d, want 5 and 6", len(b.Links), b.Links[0].Seq)
			}
			verify(t, s, 2, 0, "")
		})
	}
}

// TestAuditPurgeStops: retention removes no event after one that is not
// yet searchable, nor across a break in the chain (which would erase the
// evidence of it).
func TestAuditPurgeStops(t *testing.T) {
	ctx := context.Background()
	t.Run("at a pending batch", func(t *testing.T) {
		db := freshDatabase(t)
		s := mustOpenDB(t, db, Options{})
		recs := chained(t, "ev", 8)
		appendBatches(t, s, recs[:6], 3, 3)
		commitOnly(t, db, recs[6:])
		if n, err := s.PurgeAudit(ctx, auditBase.AddDate(1, 0, 0)); err != nil || n != 6 {
			t.Fatalf("PurgeAudit: %d, %v; want 6", n, err)
		}
		// The next purge, once the batch is searchable, takes it.
		verify(t, s, 2, 0, "")
		wantRead(t, s, "ev-7", nil)
		if n, err := s.PurgeAudit(ctx, auditBase.AddDate(1, 0, 0)); err != nil || n != 2 {
			t.Fatalf("PurgeAudit: %d, %v; want 2", n, err)
		}
		verify(t, s, 0, 0, "")
		wantCount(t, s, 0)
	})
	t.Run("at a break", func(t *testing.T) {
		db := freshDatabase(t)
		s := mustOpenDB(t, db, Options{})
		recs := chained(t, "ev", 9)
		appendBatches(t, s, recs, 3, 3, 3)
		mustDelete(t, rawCollection(t, db, AuditCollection), int64(4))
		if n, err := s.PurgeAudit(ctx, auditBase.AddDate(1, 0, 0)); err != nil || n != 3 {
			t.Fatalf("PurgeAudit: %d, %v; want 3", n, err)
		}
		verify(t, s, 0, 4, "missing")
	})
}

// TestAuditStorage: the indexes of the audit collection; a batch is one
// document, without the events' copies once they are searchable; audit
// events have one version, which VRead finds.
func TestAuditStorage(t *testing.T) {
	ctx := context.Background()
	db := freshDatabase(t)
	s := mustOpenDB(t, db, Options{})
	recs := chained(t, "ev", 5)
	appendBatches(t, s, recs, 5)

	cur, err := s.audit.Indexes().List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var idx []bson.M
	if err := cur.All(ctx, &idx); err != nil {
		t.Fatal(err)
	}
	keys := map[string][]string{}
	for _, ix := range idx {
		for _, e := range ix["key"].(bson.D) {
			keys[ix["name"].(string)] = append(keys[ix["name"].(string)], e.Key)
		}
	}
	for name, want := range map[string][]string{indexAuditLast: {"last"}, indexAuditPending: {"pending"}} {
		if !slices.Equal(keys[name], want) {
			t.Errorf("index %s has keys %v, want %v", name, keys[name], want)
		}
	}

	n, err := rawCollection(t, db, AuditCollection).CountDocuments(ctx, bson.D{})
	if err != nil || n != 1 {
		t.Fatalf("%d batch documents, %v; want 1", n, err)
	}
	var raw bson.M
	if err := rawCollection(t, db, AuditCollection).FindOne(ctx, bson.D{}).Decode(&raw); err != nil {
		t.Fatal(err)
	}
	if _, ok := raw["pending"]; ok {
		t.Errorf("batch still pending: %v", raw)
	}
	for _, l := range raw["links"].(bson.A) {
		if slices.ContainsFunc(l.(bson.D), func(e bson.E) bool { return e.Key == "ev" }) {
			t.Fatalf("batch still holds a copy of its event: %v", l)
		}
	}

	r, err := s.Read(ctx, "AuditEvent", "ev-2")
	if err != nil {
		t.Fatal(err)
	}
	v, err := s.VRead(ctx, "AuditEvent", "ev-2", 1)
	if err != nil || !bytes.Equal(v.Body, r.Body) || v.Version != 1 {
		t.Fatalf("VRead AuditEvent/ev-2/1: version %d, %v", v.Version, err)
	}
	if _, err := s.VRead(ctx, "AuditEvent", "ev-2", 2); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("VRead AuditEvent/ev-2/2: %v, want ErrNotFound", err)
	}
	// lastUpdated follows the chain.
	var last time.Time
	for _, rec := range recs {
		r, err := s.Read(ctx, "AuditEvent", rec.Write.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !r.Updated.After(last) {
			t.Fatalf("AuditEvent/%s lastUpdated %v, not after %v", rec.Write.ID, r.Updated, last)
		}
		last = r.Updated
	}
}

// BenchmarkAppendAudit appends chained events in batches of 64, as the
// recorder does under load, and reports events/s. Against FerretDB, which
// scans a collection for every query, the rate falls as the log grows: it
// proves behaviour, not speed.
func BenchmarkAppendAudit(b *testing.B) {
	const batch = 64
	s := mustOpen(b, Options{})
	ctx := context.Background()
	n := (b.N + batch - 1) / batch * batch
	recs := chained(b, "ev", n)
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < n; i += batch {
		if err := s.AppendAudit(ctx, recs[i:i+batch]); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(n)/time.Since(start).Seconds(), "events/s")
}
