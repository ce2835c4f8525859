package mongo

import (
	"context"
	"errors"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/schakelpunt/schakelpunt/store"
)

// Read returns the current version, as the resources collection holds it.
func (s *Store) Read(ctx context.Context, typ, id string) (store.Resource, error) {
	if err := s.enter(); err != nil {
		return store.Resource{}, err
	}
	defer s.leave()
	var rec record
	err := s.resources.FindOne(ctx, bson.D{{Key: "_id", Value: resourceKey(typ, id)}},
		options.FindOne().SetProjection(recordProjection())).Decode(&rec)
	return found(rec, err, "read "+resourceKey(typ, id))
}

// VRead returns one version from history.
func (s *Store) VRead(ctx context.Context, typ, id string, version int64) (store.Resource, error) {
	if err := s.enter(); err != nil {
		return store.Resource{}, err
	}
	defer s.leave()
	var rec record
	err := s.history.FindOne(ctx, bson.D{{Key: "_id", Value: historyKey(typ, id, version)}},
		options.FindOne().SetProjection(recordProjection())).Decode(&rec)
	if errors.Is(err, mongo.ErrNoDocuments) && typ == auditType && version == 1 {
		// Audit events have one version, kept in resources only (audit.go).
		err = s.resources.FindOne(ctx, bson.D{{Key: "_id", Value: resourceKey(typ, id)}},
			options.FindOne().SetProjection(recordProjection())).Decode(&rec)
		if err == nil && rec.Version != version {
			err = mongo.ErrNoDocuments
		}
	}
	return found(rec, err, "vread "+historyKey(typ, id, version))
}

// recordProjection leaves out the index material a read does not need.
func recordProjection() bson.D {
	return bson.D{{Key: "terms", Value: 0}, {Key: "dlo", Value: 0}, {Key: "dhi", Value: 0}, {Key: "dt", Value: 0}, {Key: "sort", Value: 0}}
}

func found(rec record, err error, what string) (store.Resource, error) {
	switch {
	case errors.Is(err, mongo.ErrNoDocuments):
		return store.Resource{}, fmt.Errorf("mongo: %s: %w", what, store.ErrNotFound)
	case err != nil:
		return store.Resource{}, fmt.Errorf("mongo: %s: %w", what, err)
	case rec.Deleted:
		return rec.resource(), fmt.Errorf("mongo: %s: %w", what, store.ErrGone)
	}
	return rec.resource(), nil
}

// History lists versions newest first.
func (s *Store) History(ctx context.Context, q store.HistoryQuery) ([]store.Resource, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.leave()
	filter := bson.D{}
	if q.Type != "" {
		filter = append(filter, bson.E{Key: "type", Value: q.Type})
	}
	sort := bson.D{{Key: "updated", Value: -1}, {Key: "_id", Value: -1}}
	if q.ID != "" {
		filter = append(filter, bson.E{Key: "id", Value: q.ID})
		sort = bson.D{{Key: "version", Value: -1}}
	}
	if !q.Since.IsZero() {
		filter = append(filter, bson.E{Key: "updated", Value: bson.D{{Key: "$gte", Value: q.Since.UnixMicro()}}})
	}
	opts := options.Find().SetSort(sort).SetProjection(recordProjection())
	if q.Offset > 0 {
		opts.SetSkip(int64(q.Offset))
	}
	if q.Limit > 0 {
		opts.SetLimit(int64(q.Limit))
	}
	cur, err := s.history.Find(ctx, filter, opts)
	if err != nil {
		return nil, fmt.Errorf("mongo: history: %w", err)
	}
	defer cur.Close(context.WithoutCancel(ctx))
	out := []store.Resource{}
	for cur.Next(ctx) {
		var rec record
		if err := cur.Decode(&rec); err != nil {
			return nil, fmt.Errorf("mongo: history: %w", err)
		}
		out = append(out, rec.resource())
	}
	if err := cur.Err(); err != nil {
		return nil, fmt.Errorf("mongo: history: %w", err)
	}
	return out, nil
}
