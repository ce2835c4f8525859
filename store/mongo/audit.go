package mongo

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/schakelpunt/schakelpunt/store"
)

// The audit log (store.AuditLog) is described in the package
// documentation; this file holds it.

var _ store.AuditLog = (*Store)(nil)

// Collections of the audit log.
const (
	AuditCollection      = "audit"
	AuditMarksCollection = "auditmarks"
)

// Index names of the audit collection.
const (
	indexAuditLast    = "last"
	indexAuditPending = "pending"
)

const auditType = "AuditEvent"

// auditBatch is the document of one AppendAudit call in the audit
// collection. Inserting it is the commit point of the batch.
type auditBatch struct {
	// First is the Seq of the first event: the unique key that lets one
	// appender win each place in the chain.
	First int64 `bson:"_id"`
	// Last is the Seq of the last event; the batch with the largest Last
	// holds the head.
	Last int64 `bson:"last"`
	// Hash is the link of the last event.
	Hash string `bson:"hash"`
	// Updated is the lastUpdated of the last event (Unix microseconds):
	// the next batch's events come after it.
	Updated int64 `bson:"upd"`
	// Pending is set until the events are in resources, searchable.
	Pending bool        `bson:"pending,omitempty"`
	Links   []auditLink `bson:"links"`
}

// auditLink is one event of a batch: its link in the chain and, while the
// batch is pending, the resources document to materialise.
type auditLink struct {
	Seq      int64  `bson:"seq"`
	Prev     string `bson:"prev"`
	Hash     string `bson:"hash"`
	ID       string `bson:"id"`
	Recorded int64  `bson:"rec"` // Unix microseconds: what retention goes by
	// Updated is the lastUpdated of the event's resource (Unix
	// microseconds): it tells that resource from a later event that
	// reuses the id after retention removed this one.
	Updated int64   `bson:"upd"`
	Event   *record `bson:"ev,omitempty"`
}

// auditMark is a retention checkpoint in the auditmarks collection: the
// link of the last removed event. The one with the largest Seq counts;
// marks are only inserted, so the checkpoint never moves back, whatever
// the server's update semantics.
type auditMark struct {
	Seq  int64  `bson:"_id"`
	Hash string `bson:"hash"`
}

// afterCommit bounds what an appender does after its batch is committed
// (making the events searchable), whether or not its caller waits.
const afterCommit = 30 * time.Second

// defaultPurgeChunk is the most events one round of retention removes
// (Store.purgeChunk, when set, in tests).
const defaultPurgeChunk = 2000

func (s *Store) chunk() int {
	if s.purgeChunk > 0 {
		return s.purgeChunk
	}
	return defaultPurgeChunk
}

// keysPerQuery is the most keys one $in filter or bulk write carries.
const keysPerQuery = 2000

// AppendAudit commits records as one document of the audit collection,
// then makes the events searchable (see the package documentation).
//
// A nil error means the events are committed and searchable. An error
// after the commit point (the message says so) means the events are in
// the chain but perhaps not yet searchable; the next append, scan or Open
// finishes them. The caller must treat it as a failure all the same.
func (s *Store) AppendAudit(ctx context.Context, records []store.AuditRecord) error {
	if len(records) == 0 {
		return nil
	}
	if err := checkBatch(records); err != nil {
		return err
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()

	st, err := s.chainState(ctx)
	if err != nil {
		return err
	}
	if st.newest != nil && st.newest.Pending {
		// Its appender stopped after the commit, or is still at work:
		// finish it before checking ids against resources.
		if err := s.repair(ctx, st.newest.First, st.checkpoint.Seq); err != nil {
			return err
		}
	}
	if err := follows(records[0], st.head.Seq, st.head.Hash); err != nil {
		return err
	}
	keys := make([]string, len(records))
	for i, r := range records {
		keys[i] = resourceKey(auditType, r.Write.ID)
	}
	taken, err := s.findKeys(ctx, keys, bson.D{{Key: "_id", Value: 1}})
	if err != nil {
		return err
	}
	for i, k := range keys {
		if _, ok := taken[k]; ok {
			return fmt.Errorf("mongo: audit record %d: %s: %w", records[i].Seq, k, store.ErrExists)
		}
	}
	var after int64
	if st.newest != nil {
		after = st.newest.Updated
	}
	b, err := newBatch(records, s.now(), after)
	if err != nil {
		return err
	}
	return s.commit(ctx, b)
}

// checkBatch refuses a batch that is not a run of AuditEvents with
// distinct ids, each linked to the one before.
func checkBatch(records []store.AuditRecord) error {
	ids := make(map[string]bool, len(records))
	for i, r := range records {
		if r.Write.Type != auditType || r.Write.ID == "" {
			return errors.New("mongo: audit records are AuditEvents with an id")
		}
		if ids[r.Write.ID] {
			return fmt.Errorf("mongo: audit record %d: %s twice in one batch: %w", r.Seq, r.Write.ID, store.ErrExists)
		}
		ids[r.Write.ID] = true
		if i > 0 {
			if err := follows(r, records[i-1].Seq, records[i-1].Hash); err != nil {
				return err
			}
		}
	}
	return nil
}

// follows reports ErrChainConflict unless r is the link after (seq, hash).
func follows(r store.AuditRecord, seq int64, hash string) error {
	if r.Seq != seq+1 || r.Prev != hash {
		return fmt.Errorf("mongo: audit record %d does not follow %d: %w", r.Seq, seq, store.ErrChainConflict)
	}
	return nil
}

// newBatch stamps the records as version 1 of their AuditEvents, with
// lastUpdated after the previous batch's (after) and in chain order.
func newBatch(records []store.AuditRecord, now time.Time, after int64) (*auditBatch, error) {
	at := now.UTC().Truncate(time.Microsecond).UnixMicro()
	if at <= after {
		at = after + 1
	}
	last := records[len(records)-1]
	b := &auditBatch{First: records[0].Seq, Last: last.Seq, Hash: last.Hash, Pending: true,
		Links: make([]auditLink, len(records))}
	for i, r := range records {
		res, terms, err := store.Stamp(r.Write, 1, time.UnixMicro(at+int64(i)))
		if err != nil {
			return nil, fmt.Errorf("mongo: stamp audit record %d: %w", r.Seq, err)
		}
		rec := newRecord(res, terms)
		rec.Key = resourceKey(auditType, r.Write.ID)
		b.Links[i] = auditLink{Seq: r.Seq, Prev: r.Prev, Hash: r.Hash, ID: r.Write.ID,
			Recorded: r.Recorded.UnixMicro(), Updated: rec.Updated, Event: &rec}
		b.Updated = rec.Updated
	}
	return b, nil
}

// commit inserts the batch (the commit point) and makes its events
// searchable.
func (s *Store) commit(ctx context.Context, b *auditBatch) error {
	if _, err := s.audit.InsertOne(ctx, b); err != nil {
		if mongo.IsDuplicateKeyError(err) {
			return fmt.Errorf("mongo: audit batch %d..%d: another appender has %d: %w", b.First, b.Last, b.First, store.ErrChainConflict)
		}
		return fmt.Errorf("mongo: append audit %d..%d: %w", b.First, b.Last, err)
	}
	return s.finishCommit(ctx, b)
}

// finishCommit is what an appender does once its batch is committed:
// refuse it if it is stale, else make its events searchable. It runs to
// its end (within afterCommit) even if ctx ends.
func (s *Store) finishCommit(ctx context.Context, b *auditBatch) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), afterCommit)
	defer cancel()
	unfinished := func(err error) error {
		return fmt.Errorf("mongo: audit batch %d..%d is stored but not yet searchable: %w", b.First, b.Last, err)
	}
	// The unique key catches every appender that raced for the same head,
	// except one whose check came before retention removed the batch it
	// collides with: its batch lands behind the checkpoint. (A batch that
	// is not stale lies past the checkpoint while it is pending, since
	// retention stops at pending batches.)
	cp, err := s.checkpoint(ctx)
	if err != nil {
		return unfinished(err)
	}
	if b.First <= cp.Seq {
		removed, err := s.deletePending(ctx, b.First)
		switch {
		case err != nil:
			return unfinished(err)
		case removed:
			return fmt.Errorf("mongo: audit batch %d..%d lands behind the retention checkpoint %d: %w", b.First, b.Last, cp.Seq, store.ErrChainConflict)
		}
		// Another caller made it searchable, and retention has removed it
		// since.
		return nil
	}
	if err := s.materialise(ctx, b, true); err != nil {
		return unfinished(err)
	}
	return nil
}

// errCollision: an event of a batch could not be made searchable because
// another event with its id is stored (two appenders raced with the same
// id). The batch is done all the same; Verify will report the link.
var errCollision = errors.New("an event with this id is stored already")

// materialise inserts the events of a pending batch into resources
// (idempotently: one already there is left alone) and marks the batch
// done, which strips the copies from it. byWriter is false for a repair:
// the batch then may be a stale one (see commit), whose events are taken
// out again and which is left for its appender to remove.
func (s *Store) materialise(ctx context.Context, b *auditBatch, byWriter bool) error {
	var docs []any
	var events []auditLink
	for _, l := range b.Links {
		if l.Event != nil {
			docs = append(docs, l.Event)
			events = append(events, l)
		}
	}
	dups, err := insertMany(ctx, s.resources, docs)
	if err != nil {
		return fmt.Errorf("mongo: materialise audit batch %d: %w", b.First, err)
	}
	var collided []string
	if len(dups) > 0 {
		keys := make([]string, len(dups))
		for i, d := range dups {
			keys[i] = events[d].Event.Key
		}
		have, err := s.findKeys(ctx, keys, bson.D{{Key: "_id", Value: 1}, {Key: "updated", Value: 1}})
		if err != nil {
			return err
		}
		for _, d := range dups {
			if rec, ok := have[events[d].Event.Key]; ok && rec.Updated != events[d].Updated {
				collided = append(collided, events[d].ID)
			}
		}
	}
	if !byWriter {
		cp, err := s.checkpoint(ctx)
		if err != nil {
			return err
		}
		if b.First <= cp.Seq {
			return s.deleteEvents(ctx, events)
		}
	}
	links := make([]auditLink, len(b.Links))
	for i, l := range b.Links {
		l.Event = nil
		links[i] = l
	}
	done, err := s.updatePending(ctx, b.First, bson.D{
		{Key: "$set", Value: bson.D{{Key: "links", Value: links}}},
		{Key: "$unset", Value: bson.D{{Key: "pending", Value: ""}}},
	})
	if err != nil {
		return fmt.Errorf("mongo: audit batch %d done: %w", b.First, err)
	}
	if !done {
		// Another caller finished the batch first, and retention may
		// have removed events of it since: take out what our inserts
		// brought back. (Retention moves the checkpoint before it
		// deletes, so what it has yet to delete it deletes after us.)
		cp, err := s.checkpoint(ctx)
		if err != nil {
			return err
		}
		var back []auditLink
		for _, l := range events {
			if l.Seq <= cp.Seq {
				back = append(back, l)
			}
		}
		if err := s.deleteEvents(ctx, back); err != nil {
			return err
		}
	}
	if len(collided) > 0 {
		return fmt.Errorf("mongo: audit batch %d..%d: events %v: %w", b.First, b.Last, collided, errCollision)
	}
	return nil
}

// repair materialises the batch first if it is still pending and not
// stale. A collision is logged, not returned: the batch is done, and
// refusing every later call for it would stop the audit log.
func (s *Store) repair(ctx context.Context, first, cp int64) error {
	var b auditBatch
	err := s.audit.FindOne(ctx, bson.D{{Key: "_id", Value: first}}).Decode(&b)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("mongo: audit batch %d: %w", first, err)
	}
	return s.repairBatch(ctx, &b, cp)
}

func (s *Store) repairBatch(ctx context.Context, b *auditBatch, cp int64) error {
	if !b.Pending || b.First <= cp {
		return nil
	}
	s.log.Warn("mongo: finishing an audit batch that is not yet searchable", "first", b.First, "last", b.Last)
	err := s.materialise(ctx, b, false)
	if errors.Is(err, errCollision) {
		s.log.Error("mongo: audit events not searchable", "error", err)
		return nil
	}
	return err
}

// repairAudit runs at Open: it finishes an interrupted purge and the
// batches whose appenders stopped after the commit.
func (s *Store) repairAudit(ctx context.Context) error {
	if _, err := s.finishPurge(ctx); err != nil {
		return err
	}
	cp, err := s.checkpoint(ctx)
	if err != nil {
		return err
	}
	cur, err := s.audit.Find(ctx, bson.D{{Key: "pending", Value: true}}, options.Find().SetSort(bson.D{{Key: "last", Value: 1}}))
	if err != nil {
		return fmt.Errorf("mongo: pending audit batches: %w", err)
	}
	var pending []auditBatch
	if err := cur.All(ctx, &pending); err != nil {
		return fmt.Errorf("mongo: pending audit batches: %w", err)
	}
	for i := range pending {
		if err := s.repairBatch(ctx, &pending[i], cp.Seq); err != nil {
			return err
		}
	}
	return nil
}

// chainState is the chain as an appender sees it.
type chainState struct {
	head       store.ChainHead
	checkpoint store.ChainHead
	// newest is the batch holding the head (without its links); nil when
	// the head is the checkpoint.
	newest *auditBatch
}

func (s *Store) chainState(ctx context.Context) (chainState, error) {
	cp, err := s.checkpoint(ctx)
	if err != nil {
		return chainState{}, err
	}
	st := chainState{head: cp, checkpoint: cp}
	cur, err := s.audit.Find(ctx, bson.D{{Key: "last", Value: bson.D{{Key: "$gt", Value: cp.Seq}}}}, options.Find().
		SetSort(bson.D{{Key: "last", Value: -1}}).
		SetProjection(bson.D{{Key: "links", Value: 0}}).
		SetBatchSize(2))
	if err != nil {
		return chainState{}, fmt.Errorf("mongo: audit head: %w", err)
	}
	defer cur.Close(context.WithoutCancel(ctx))
	for cur.Next(ctx) {
		var b auditBatch
		if err := cur.Decode(&b); err != nil {
			return chainState{}, fmt.Errorf("mongo: audit head: %w", err)
		}
		if b.Pending && b.First <= cp.Seq {
			continue // stale: its appender removes it
		}
		st.head, st.newest = store.ChainHead{Seq: b.Last, Hash: b.Hash}, &b
		break
	}
	if err := cur.Err(); err != nil {
		return chainState{}, fmt.Errorf("mongo: audit head: %w", err)
	}
	return st, nil
}

// checkpoint is the link of the last event retention removed.
func (s *Store) checkpoint(ctx context.Context) (store.ChainHead, error) {
	var m auditMark
	err := s.marks.FindOne(ctx, bson.D{}, options.FindOne().SetSort(bson.D{{Key: "_id", Value: -1}})).Decode(&m)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return store.ChainHead{}, nil
	}
	if err != nil {
		return store.ChainHead{}, fmt.Errorf("mongo: audit checkpoint: %w", err)
	}
	return store.ChainHead{Seq: m.Seq, Hash: m.Hash}, nil
}

// AuditHead is the newest link; with nothing after the checkpoint, the
// checkpoint.
func (s *Store) AuditHead(ctx context.Context) (store.ChainHead, error) {
	if err := s.enter(); err != nil {
		return store.ChainHead{}, err
	}
	defer s.leave()
	st, err := s.chainState(ctx)
	return st.head, err
}

// AuditCheckpoint is the link of the last event retention removed.
func (s *Store) AuditCheckpoint(ctx context.Context) (store.ChainHead, error) {
	if err := s.enter(); err != nil {
		return store.ChainHead{}, err
	}
	defer s.leave()
	return s.checkpoint(ctx)
}

// ScanAudit returns chained events after a sequence number, in order; a
// limit of 0 or less means all. The links come from the audit collection,
// the events as resources holds them (what Read and Search show), so an
// event edited there comes back edited, and one removed from there is
// left out: Verify sees either. A pending batch met on the way is
// finished first.
func (s *Store) ScanAudit(ctx context.Context, after int64, limit int) ([]store.AuditEntry, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.leave()
	cp, err := s.checkpoint(ctx)
	if err != nil {
		return nil, err
	}
	next := max(after, cp.Seq)
	opts := options.Find().SetSort(bson.D{{Key: "last", Value: 1}})
	if limit > 0 {
		opts.SetBatchSize(int32(min(limit, 100))) // a batch holds one event or more
	}
	cur, err := s.audit.Find(ctx, bson.D{{Key: "last", Value: bson.D{{Key: "$gt", Value: next}}}}, opts)
	if err != nil {
		return nil, fmt.Errorf("mongo: scan audit: %w", err)
	}
	defer cur.Close(context.WithoutCancel(ctx))
	var links []auditLink
	for (limit <= 0 || len(links) < limit) && cur.Next(ctx) {
		var b auditBatch
		if err := cur.Decode(&b); err != nil {
			return nil, fmt.Errorf("mongo: scan audit: %w", err)
		}
		if b.Pending {
			if b.First <= cp.Seq {
				continue // stale
			}
			if err := s.repairBatch(ctx, &b, cp.Seq); err != nil {
				return nil, err
			}
		}
		for _, l := range b.Links {
			if l.Seq <= next {
				continue
			}
			if limit > 0 && len(links) == limit {
				break
			}
			l.Event = nil
			links = append(links, l)
			next = l.Seq
		}
	}
	if err := cur.Err(); err != nil {
		return nil, fmt.Errorf("mongo: scan audit: %w", err)
	}
	keys := make([]string, len(links))
	for i, l := range links {
		keys[i] = resourceKey(auditType, l.ID)
	}
	recs, err := s.findKeys(ctx, keys, recordProjection())
	if err != nil {
		return nil, err
	}
	out := make([]store.AuditEntry, 0, len(links))
	for i, l := range links {
		rec, ok := recs[keys[i]]
		if !ok || rec.Deleted {
			continue // gone from resources: Verify sees the gap
		}
		out = append(out, store.AuditEntry{Seq: l.Seq, Prev: l.Prev, Hash: l.Hash, Resource: rec.resource()})
	}
	return out, nil
}

// PurgeAudit removes the events recorded before cutoff from the start of
// the chain, a chunk per round: it inserts the new checkpoint first (the
// link of the last event it removes), then deletes the events from
// resources and the audit collection. An interrupted purge is finished by
// the next one (or by Open). It stops at a batch that is not yet
// searchable and at a break in the chain's links, so that retention never
// erases the evidence of one.
func (s *Store) PurgeAudit(ctx context.Context, cutoff time.Time) (int, error) {
	if err := s.enter(); err != nil {
		return 0, err
	}
	defer s.leave()
	total, err := s.finishPurge(ctx)
	if err != nil {
		return total, err
	}
	for {
		cp, err := s.checkpoint(ctx)
		if err != nil {
			return total, err
		}
		last, n, err := s.purgeVictims(ctx, cp, cutoff.UnixMicro())
		if err != nil || n == 0 {
			return total, err
		}
		if _, err := s.marks.InsertOne(ctx, auditMark{Seq: last.Seq, Hash: last.Hash}); err != nil && !mongo.IsDuplicateKeyError(err) {
			return total, fmt.Errorf("mongo: audit checkpoint %d: %w", last.Seq, err)
		}
		removed, err := s.finishPurge(ctx)
		total += removed
		if err != nil || n < s.chunk() {
			return total, err
		}
	}
}

// purgeVictims finds the events one round of retention removes: up to
// s.chunk() from the start of the chain, recorded before cutoff. It
// returns the last of them and how many there are.
func (s *Store) purgeVictims(ctx context.Context, cp store.ChainHead, cutoff int64) (last auditLink, n int, err error) {
	cur, err := s.audit.Find(ctx, bson.D{{Key: "last", Value: bson.D{{Key: "$gt", Value: cp.Seq}}}},
		options.Find().SetSort(bson.D{{Key: "last", Value: 1}}))
	if err != nil {
		return last, 0, fmt.Errorf("mongo: purge audit: %w", err)
	}
	defer cur.Close(context.WithoutCancel(ctx))
	seq, prev := cp.Seq, cp.Hash
	for cur.Next(ctx) {
		var b auditBatch
		if err := cur.Decode(&b); err != nil {
			return last, 0, fmt.Errorf("mongo: purge audit: %w", err)
		}
		if b.Pending {
			if b.First <= cp.Seq {
				continue // stale
			}
			return last, n, nil // not yet searchable: its events wait
		}
		for _, l := range b.Links {
			if l.Seq <= cp.Seq {
				continue
			}
			if l.Recorded >= cutoff || n == s.chunk() {
				return last, n, nil
			}
			if l.Seq != seq+1 || l.Prev != prev {
				s.log.Error("mongo: audit retention stops at a break in the chain: run audit verify", "seq", seq+1)
				return last, n, nil
			}
			seq, prev = l.Seq, l.Hash
			last, n = l, n+1
		}
	}
	if err := cur.Err(); err != nil {
		return last, 0, fmt.Errorf("mongo: purge audit: %w", err)
	}
	return last, n, nil
}

// finishPurge removes what the checkpoint has passed: the events up to it
// from resources, then their links from the audit collection (whole
// batches or the start of one), then the older marks. Pending batches
// behind the checkpoint are stale ones, left to their appenders. It
// returns how many events it removed.
func (s *Store) finishPurge(ctx context.Context) (int, error) {
	cp, err := s.checkpoint(ctx)
	if err != nil || cp.Seq == 0 {
		return 0, err
	}
	cur, err := s.audit.Find(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$lte", Value: cp.Seq}}}})
	if err != nil {
		return 0, fmt.Errorf("mongo: purge audit: %w", err)
	}
	var batches []auditBatch
	if err := cur.All(ctx, &batches); err != nil {
		return 0, fmt.Errorf("mongo: purge audit: %w", err)
	}
	var gone []auditLink
	type trim struct {
		first int64
		keep  []auditLink
	}
	var trims []trim
	for _, b := range batches {
		if b.Pending {
			continue
		}
		keep := []auditLink{}
		for _, l := range b.Links {
			if l.Seq <= cp.Seq {
				gone = append(gone, l)
			} else {
				keep = append(keep, l)
			}
		}
		if len(keep) < len(b.Links) || len(keep) == 0 {
			trims = append(trims, trim{b.First, keep})
		}
	}
	if err := s.deleteEvents(ctx, gone); err != nil {
		return 0, err
	}
	for _, t := range trims {
		filter := bson.D{{Key: "_id", Value: t.first}}
		if len(t.keep) == 0 {
			_, err = s.audit.DeleteOne(ctx, filter)
		} else {
			_, err = s.audit.UpdateOne(ctx, filter, bson.D{{Key: "$set", Value: bson.D{{Key: "links", Value: t.keep}}}})
		}
		if err != nil {
			return 0, fmt.Errorf("mongo: purge audit batch %d: %w", t.first, err)
		}
	}
	if _, err := s.marks.DeleteMany(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$lt", Value: cp.Seq}}}}); err != nil {
		return 0, fmt.Errorf("mongo: purge audit marks: %w", err)
	}
	return len(gone), nil
}

// deleteEvents removes the resources of events, each only while it is
// that event (same lastUpdated), not a later one that reuses its id.
func (s *Store) deleteEvents(ctx context.Context, events []auditLink) error {
	for len(events) > 0 {
		chunk := events[:min(len(events), keysPerQuery)]
		events = events[len(chunk):]
		if err := s.deleteEventChunk(ctx, chunk); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) deleteEventChunk(ctx context.Context, events []auditLink) error {
	if !s.scans {
		models := make([]mongo.WriteModel, len(events))
		for i, l := range events {
			models[i] = mongo.NewDeleteOneModel().SetFilter(bson.D{
				{Key: "_id", Value: resourceKey(auditType, l.ID)}, {Key: "updated", Value: l.Updated},
			})
		}
		if _, err := s.resources.BulkWrite(ctx, models, options.BulkWrite().SetOrdered(false)); err != nil {
			return fmt.Errorf("mongo: delete audit events: %w", err)
		}
		return nil
	}
	// FerretDB scans for every filter, so a bulk of deletes by key is as
	// many scans: one scan finds the events, one deletes them (not
	// atomically, as FerretDB's own conditional writes are not).
	want := make(map[string]int64, len(events))
	keys := make([]string, 0, len(events))
	for _, l := range events {
		k := resourceKey(auditType, l.ID)
		want[k] = l.Updated
		keys = append(keys, k)
	}
	cur, err := s.resources.Find(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: keys}}}},
		options.Find().SetProjection(bson.D{{Key: "_id", Value: 1}, {Key: "updated", Value: 1}}))
	if err != nil {
		return fmt.Errorf("mongo: delete audit events: %w", err)
	}
	var have []record
	if err := cur.All(ctx, &have); err != nil {
		return fmt.Errorf("mongo: delete audit events: %w", err)
	}
	var doomed []string
	for _, r := range have {
		if want[r.Key] == r.Updated {
			doomed = append(doomed, r.Key)
		}
	}
	if len(doomed) == 0 {
		return nil
	}
	if _, err := s.resources.DeleteMany(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: doomed}}}}); err != nil {
		return fmt.Errorf("mongo: delete audit events: %w", err)
	}
	return nil
}

// findKeys returns the resources documents with the given keys that
// exist, by key: one query per keysPerQuery keys. (On FerretDB a lookup
// by _id scans the collection as any query does, so one query for many
// keys beats one per key there too.)
func (s *Store) findKeys(ctx context.Context, keys []string, projection bson.D) (map[string]record, error) {
	out := make(map[string]record, len(keys))
	for len(keys) > 0 {
		chunk := keys[:min(len(keys), keysPerQuery)]
		keys = keys[len(chunk):]
		cur, err := s.resources.Find(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: chunk}}}},
			options.Find().SetProjection(projection))
		if err != nil {
			return nil, fmt.Errorf("mongo: read audit events: %w", err)
		}
		var recs []record
		if err := cur.All(ctx, &recs); err != nil {
			return nil, fmt.Errorf("mongo: read audit events: %w", err)
		}
		for _, r := range recs {
			out[r.Key] = r
		}
	}
	return out, nil
}

// updatePending applies update to a batch that is still pending and
// reports whether it did.
func (s *Store) updatePending(ctx context.Context, first int64, update bson.D) (bool, error) {
	res, err := s.audit.UpdateOne(ctx, bson.D{{Key: "_id", Value: first}, {Key: "pending", Value: true}}, update)
	return err == nil && res.MatchedCount > 0, err
}

// deletePending deletes a batch that is still pending and reports whether
// it did.
func (s *Store) deletePending(ctx context.Context, first int64) (bool, error) {
	res, err := s.audit.DeleteOne(ctx, bson.D{{Key: "_id", Value: first}, {Key: "pending", Value: true}})
	return err == nil && res.DeletedCount > 0, err
}

// insertMany inserts docs unordered and returns the indexes of those that
// failed on a duplicate key; any other failure is an error.
func insertMany(ctx context.Context, coll *mongo.Collection, docs []any) ([]int, error) {
	if len(docs) == 0 {
		return nil, nil
	}
	_, err := coll.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
	if err == nil {
		return nil, nil
	}
	var bwe mongo.BulkWriteException
	if !errors.As(err, &bwe) || bwe.WriteConcernError != nil || len(bwe.WriteErrors) == 0 {
		return nil, err
	}
	dups := make([]int, 0, len(bwe.WriteErrors))
	for _, we := range bwe.WriteErrors {
		if we.Code != 11000 && we.Code != 11001 {
			return nil, err
		}
		dups = append(dups, we.Index)
	}
	return dups, nil
}
