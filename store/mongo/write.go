package mongo

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/schakelpunt/schakelpunt/fhir"
	"github.com/schakelpunt/schakelpunt/store"
)

type writeKind int

const (
	kindCreate writeKind = iota
	kindUpdate
	kindDelete
)

// Create stores version 1 of a new resource.
func (s *Store) Create(ctx context.Context, w store.Write) (store.Resource, error) {
	return s.write(ctx, kindCreate, w.Type, w.ID, &w, 0)
}

// Update stores the next version, creating the resource if needed.
func (s *Store) Update(ctx context.Context, w store.Write, ifMatch int64) (store.Resource, error) {
	return s.write(ctx, kindUpdate, w.Type, w.ID, &w, ifMatch)
}

// Delete stores a deletion marker as the next version.
func (s *Store) Delete(ctx context.Context, typ, id string, ifMatch int64) (store.Resource, error) {
	return s.write(ctx, kindDelete, typ, id, nil, ifMatch)
}

// write is the optimistic write: read the current version n, insert
// version n+1 into history (the commit point: the unique index lets one
// writer win each number), then bring resources up to it.
func (s *Store) write(ctx context.Context, kind writeKind, typ, id string, w *store.Write, ifMatch int64) (store.Resource, error) {
	if err := s.enter(); err != nil {
		return store.Resource{}, err
	}
	defer s.leave()
	if typ == "" || id == "" {
		return store.Resource{}, fmt.Errorf("mongo: write without type or id")
	}
	for attempt := 0; attempt < maxAttempts; attempt++ {
		// A create needs no read: the history insert of version 1 fails if
		// the id was ever taken.
		var cur *record
		if kind != kindCreate {
			var err error
			if cur, err = s.current(ctx, typ, id); err != nil {
				return store.Resource{}, err
			}
		}
		if kind == kindDelete && cur == nil {
			// Not there, unless a writer stopped before showing it.
			if err := s.converge(ctx, typ, id, 0); err != nil {
				return store.Resource{}, err
			}
			var err error
			if cur, err = s.current(ctx, typ, id); err != nil {
				return store.Resource{}, err
			}
		}
		switch {
		case kind == kindCreate && cur != nil:
			return store.Resource{}, fmt.Errorf("mongo: create %s/%s: %w", typ, id, store.ErrExists)
		case kind == kindDelete && cur == nil:
			return store.Resource{}, fmt.Errorf("mongo: delete %s/%s: %w", typ, id, store.ErrNotFound)
		case ifMatch > 0 && (cur == nil || cur.Version != ifMatch):
			return store.Resource{}, fmt.Errorf("mongo: %s/%s is not at version %d: %w", typ, id, ifMatch, store.ErrVersionConflict)
		case kind == kindDelete && cur.Deleted:
			return cur.resource(), nil
		}

		next, now := int64(1), s.now()
		if cur != nil {
			next = cur.Version + 1
			// lastUpdated never goes back between versions, whatever the
			// clocks of the nodes say.
			if now.UnixMicro() <= cur.Updated {
				now = time.UnixMicro(cur.Updated + 1)
			}
		}
		rec, res, err := s.build(kind, typ, id, w, next, now)
		if err != nil {
			return store.Resource{}, err
		}

		_, err = s.history.InsertOne(ctx, rec)
		if mongo.IsDuplicateKeyError(err) {
			// Another writer has version next: make sure resources shows
			// it (that writer may have died before), then decide.
			if err := s.converge(ctx, typ, id, 0); err != nil {
				return store.Resource{}, err
			}
			if kind == kindCreate {
				return store.Resource{}, fmt.Errorf("mongo: create %s/%s: %w", typ, id, store.ErrExists)
			}
			if ifMatch > 0 {
				return store.Resource{}, fmt.Errorf("mongo: %s/%s is past version %d: %w", typ, id, ifMatch, store.ErrVersionConflict)
			}
			s.log.Debug("mongo: lost the race for a version; retrying", "type", typ, "version", next, "attempt", attempt)
			if err := backoff(ctx, attempt); err != nil {
				return store.Resource{}, err
			}
			continue
		}
		if err != nil {
			return store.Resource{}, fmt.Errorf("mongo: insert %s/%s version %d: %w", typ, id, next, err)
		}
		replaced, err := s.apply(ctx, rec, cur)
		if err != nil {
			return store.Resource{}, err
		}
		if replaced {
			// We may have overwritten a newer version (FerretDB): look for
			// newer ones. Whoever overwrites ours with an older one does
			// the same.
			if err := s.converge(ctx, typ, id, next); err != nil {
				return store.Resource{}, err
			}
		}
		return res, nil
	}
	return store.Resource{}, fmt.Errorf("mongo: %s/%s: gave up after %d attempts: %w", typ, id, maxAttempts, store.ErrVersionConflict)
}

func (s *Store) build(kind writeKind, typ, id string, w *store.Write, version int64, now time.Time) (record, store.Resource, error) {
	if kind == kindDelete {
		res := store.Resource{Type: typ, ID: id, Version: version, Updated: now.UTC().Truncate(time.Microsecond), Deleted: true}
		return newRecord(res, fhir.Terms{}), res, nil
	}
	res, terms, err := store.Stamp(*w, version, now)
	if err != nil {
		return record{}, store.Resource{}, fmt.Errorf("mongo: stamp %s/%s: %w", typ, id, err)
	}
	return newRecord(res, terms), res, nil
}

// current reads the version fields of the resources document; nil if
// there is none.
func (s *Store) current(ctx context.Context, typ, id string) (*record, error) {
	var rec record
	err := s.resources.FindOne(ctx, bson.D{{Key: "_id", Value: resourceKey(typ, id)}},
		options.FindOne().SetProjection(bson.D{{Key: "type", Value: 1}, {Key: "id", Value: 1}, {Key: "version", Value: 1}, {Key: "updated", Value: 1}, {Key: "deleted", Value: 1}})).Decode(&rec)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("mongo: read %s/%s: %w", typ, id, err)
	}
	return &rec, nil
}

// apply replaces the resources document with rec unless it already holds
// version rec.Version or later. cur is what the writer read before (nil:
// no document). replaced reports an unconditional replace (FerretDB) that
// may have overwritten a newer version: the caller must converge.
func (s *Store) apply(ctx context.Context, rec record, cur *record) (replaced bool, err error) {
	rec.Key = resourceKey(rec.Type, rec.ID)
	if s.rollForward {
		return s.applyChecked(ctx, rec, cur)
	}
	return false, s.applyAtomic(ctx, rec)
}

// applyAtomic replaces the resources document under the condition
// version < rec.Version, atomically on MongoDB.
func (s *Store) applyAtomic(ctx context.Context, rec record) error {
	filter := bson.D{{Key: "_id", Value: rec.Key}, {Key: "version", Value: bson.D{{Key: "$lt", Value: rec.Version}}}}
	for attempt := 0; attempt < maxAttempts; attempt++ {
		_, err := s.resources.ReplaceOne(ctx, filter, rec, options.Replace().SetUpsert(true))
		if err == nil {
			return nil
		}
		if !mongo.IsDuplicateKeyError(err) {
			return fmt.Errorf("mongo: apply %s version %d: %w", rec.Key, rec.Version, err)
		}
		// The upsert found no older version but the document exists: it is
		// newer (done) or it appeared meanwhile (try again).
		cur, err := s.current(ctx, rec.Type, rec.ID)
		if err != nil {
			return err
		}
		if cur != nil && cur.Version >= rec.Version {
			return nil
		}
	}
	return fmt.Errorf("mongo: apply %s version %d: gave up after %d attempts", rec.Key, rec.Version, maxAttempts)
}

// applyChecked is apply for servers whose conditional update is a query
// followed by a write anyway (FerretDB): it does the same by _id only, the
// one filter FerretDB does not scan for, starting from what the writer
// read before. A slow writer may so overwrite a newer version; converge
// repairs that.
func (s *Store) applyChecked(ctx context.Context, rec record, cur *record) (replaced bool, err error) {
	for attempt := 0; attempt < maxAttempts; attempt++ {
		if attempt > 0 {
			if cur, err = s.current(ctx, rec.Type, rec.ID); err != nil {
				return false, err
			}
		}
		switch {
		case cur != nil && cur.Version >= rec.Version:
			return false, nil
		case cur == nil:
			// An insert overwrites nothing.
			_, err = s.resources.InsertOne(ctx, rec)
			if mongo.IsDuplicateKeyError(err) {
				continue
			}
			if err != nil {
				return false, fmt.Errorf("mongo: apply %s version %d: %w", rec.Key, rec.Version, err)
			}
			return false, nil
		default:
			res, err := s.resources.ReplaceOne(ctx, bson.D{{Key: "_id", Value: rec.Key}}, rec)
			if err != nil {
				return false, fmt.Errorf("mongo: apply %s version %d: %w", rec.Key, rec.Version, err)
			}
			if res.MatchedCount == 0 {
				continue
			}
			return true, nil
		}
	}
	return false, fmt.Errorf("mongo: apply %s version %d: gave up after %d attempts", rec.Key, rec.Version, maxAttempts)
}

// converge rolls resources forward to the newest history version of a
// resource until it holds it: it repairs a write whose writer stopped
// between the history insert and the update, and on servers whose
// conditional update is not atomic (FerretDB) it undoes a slow writer's
// overwrite of a newer version. History versions after the current one
// are found by _id, "type/id/version", one number after the other. With
// from > 0 the first round looks for versions after from instead of
// after the current one.
func (s *Store) converge(ctx context.Context, typ, id string, from int64) error {
	for attempt := 0; attempt < maxAttempts; attempt++ {
		var cur *record
		known, have := false, from
		if attempt > 0 || from == 0 {
			var err error
			if cur, err = s.current(ctx, typ, id); err != nil {
				return err
			}
			known, have = true, 0
			if cur != nil {
				have = cur.Version
			}
		}
		var latest *record
		for v := have + 1; ; v++ {
			var rec record
			err := s.history.FindOne(ctx, bson.D{{Key: "_id", Value: historyKey(typ, id, v)}}).Decode(&rec)
			if errors.Is(err, mongo.ErrNoDocuments) {
				break
			}
			if err != nil {
				return fmt.Errorf("mongo: read %s: %w", historyKey(typ, id, v), err)
			}
			latest = &rec
		}
		if latest == nil {
			return nil
		}
		if !known {
			var err error
			if cur, err = s.current(ctx, typ, id); err != nil {
				return err
			}
		}
		if _, err := s.apply(ctx, *latest, cur); err != nil {
			return err
		}
	}
	return fmt.Errorf("mongo: %s/%s: no stable current version after %d attempts", typ, id, maxAttempts)
}

// backoff waits a random while, longer after each lost race (up to about
// 30ms), so that writers contending for one resource spread out.
func backoff(ctx context.Context, attempt int) error {
	d := time.Duration(rand.Int64N(int64(time.Millisecond) << min(attempt, 5)))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
