// Package mongo is the MongoDB adapter of the store contract: what a
// national deployment runs on (a replica set for durability, a sharded
// cluster for scale), through go.mongodb.org/mongo-driver/v2.
//
// Two collections hold the data:
//
//   - history: every version of every resource, _id "type/id/version",
//     with a unique index on (type, id, version). Inserting version n+1
//     there is the commit point of a write: a duplicate key means another
//     writer won that number (Create: ErrExists; ifMatch > 0:
//     ErrVersionConflict; otherwise reload and retry).
//   - resources: the current version per resource, _id "type/id", with the
//     index material beside the body: terms (a flat array of term strings,
//     matched with $in: an index point lookup), dlo.<param> and
//     dhi.<param> (per date parameter the hull of its ranges, a coarse
//     range filter), dt (the exact date terms, packed, applied in Go with
//     store.Matches while the cursor is read) and sort.<param> (per date
//     parameter its sort key, store.SortValue). After the history insert
//     the write replaces this document under the condition version < n+1,
//     so a slow writer never overwrites a newer version.
//
// Bodies are kept as the bytes the store stamped (BSON binary), never
// converted into BSON documents. Writes use write concern majority with
// journal; reads use read concern majority where the server accepts it.
//
// No transactions are needed, so the adapter also runs on FerretDB, which
// has none; its tests run against FerretDB v1 with the SQLite backend.
// FerretDB applies a conditional update as a query followed by a write, not
// atomically, and looks documents up only by _id (it scans for any other
// filter). On FerretDB a write therefore checks and replaces by _id, then
// rolls the resources document forward to the newest history version
// until it holds it.
//
// # The audit log
//
// The audit log (store.AuditLog, audit.go) needs no transactions either.
// Two more collections hold it:
//
//   - audit: one document per AppendAudit call, _id the Seq of its first
//     event, with last (the Seq of its last event, indexed), hash (the
//     link of the last event) and links (per event seq, prev, hash, id and
//     recorded). Inserting it is the commit point of the batch: one write,
//     all or none. The appender first checks that the batch follows the
//     head (the batch with the largest last, or the checkpoint) and that
//     no event id is taken; appenders that checked against the same head
//     collide on the _id, and all but one get store.ErrChainConflict.
//   - auditmarks: retention checkpoints, _id the Seq of the last removed
//     event; the largest counts. They are only inserted, so the checkpoint
//     never moves back, even where conditional updates are not atomic.
//
// Audit events are ordinary AuditEvent documents in resources (version 1;
// not in history: they never change, and VRead finds them in resources),
// materialised from the batch: the batch document is inserted pending,
// carrying each event's resources document; after the commit the appender
// inserts those (a duplicate key is one already there) and marks the batch
// done, which strips the copies. So the one body of an event is the one
// Read and Search show and ScanAudit returns: an edit or a deletion there
// is what audit.Verify finds. AppendAudit returns nil only once the events
// are searchable, so an acknowledged event is never missing from search.
// An appender that dies after the commit leaves its batch pending, and the
// next AppendAudit (to which it is the head), a ScanAudit that meets it or
// Open finishes it: a committed event reaches search too.
//
// Retention (PurgeAudit) takes events from the start of the chain, a chunk
// per round: it inserts the new checkpoint first, then deletes the events
// from resources (each only while it has the removed event's lastUpdated,
// in case a later event reuses the id) and their links from the audit
// documents. The next purge, or Open, finishes an interrupted one. It
// stops at a pending batch and at a break in the links, so that it never
// erases the evidence of tampering.
//
// One race gets past the unique key: an appender whose head check came
// before another batch took that place and retention removed it again
// finds the _id free, behind the checkpoint. It checks the checkpoint
// after its insert, deletes its batch and gets ErrChainConflict. A pending
// batch of the chain always lies past the checkpoint (retention stops at
// pending batches), so every reader ignores a pending batch behind it.
//
// Limits: the store alone cannot tell a chain whose newest batches were
// deleted together with their events from a shorter one; keep the head
// elsewhere too to catch that. Two appenders racing with the same event id
// (the recorder's ids are random) both pass the id check: the later event
// is not searchable as itself, its appender gets an error, and Verify
// reports its link. A batch must fit in one document (16 MB).
package mongo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readconcern"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"

	"github.com/schakelpunt/schakelpunt/fhir"
	"github.com/schakelpunt/schakelpunt/store"
)

// Collection names.
const (
	ResourcesCollection = "resources"
	HistoryCollection   = "history"
)

// defaultTypes are the resource types whose date search parameters get
// sort and range indexes when Options.IndexTypes is nil: the types
// Schakelpunt stores (DESIGN.md section 4).
func defaultTypes() []string {
	return []string{"Patient", "Consent", "AuditEvent", "Organization", "Endpoint"}
}

// Options configure a Store. The zero value is usable.
type Options struct {
	// Logger receives retries and server capability notes; nil discards.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// IndexTypes are the resource types whose date parameters (from
	// fhir.SearchParams) get sort and range indexes; nil means the types
	// Schakelpunt stores: Patient, Consent, AuditEvent, Organization and
	// Endpoint. Other types are searched and sorted without those indexes.
	IndexTypes []string
	// ConnectTimeout bounds Open (server selection, index creation);
	// zero means 30 seconds.
	ConnectTimeout time.Duration
}

// Store is a store.Store on MongoDB. It is safe for concurrent use.
type Store struct {
	client    *mongo.Client
	db        *mongo.Database
	resources *mongo.Collection
	history   *mongo.Collection
	log       *slog.Logger
	now       func() time.Time
	audit     *mongo.Collection // AuditCollection: one document per appended batch
	marks     *mongo.Collection // AuditMarksCollection: retention checkpoints
	// rollForward: conditional updates are not atomic on this server
	// (FerretDB), so writes converge on the newest history version.
	rollForward bool
	// scans: the server answers every query with a scan of the collection
	// (FerretDB v1 with SQLite uses no index, not even for _id), so the
	// audit log favours one query with $in over a bulk of writes by key.
	scans bool
	// purgeChunk is the most audit events one round of retention
	// removes; zero means defaultPurgeChunk (tests lower it).
	purgeChunk int

	mu     sync.Mutex
	closed bool
	calls  sync.WaitGroup // calls in progress, waited for by Close
}

var _ store.Store = (*Store)(nil)

// maxAttempts bounds the retries of one write under contention.
const maxAttempts = 1000

// Open connects to uri, uses database, and creates the indexes.
func Open(ctx context.Context, uri, database string, opts Options) (*Store, error) {
	if database == "" {
		return nil, errors.New("mongo: no database name")
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	timeout := opts.ConnectTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	journal := true
	client, err := mongo.Connect(options.Client().
		ApplyURI(uri).
		SetWriteConcern(&writeconcern.WriteConcern{W: "majority", Journal: &journal}).
		SetServerSelectionTimeout(timeout))
	if err != nil {
		return nil, fmt.Errorf("mongo: connect: %w", err)
	}
	s := &Store{client: client, db: client.Database(database), log: log, now: now}
	if err := s.start(ctx, opts.IndexTypes); err != nil {
		_ = client.Disconnect(context.WithoutCancel(ctx))
		return nil, err
	}
	return s, nil
}

func (s *Store) start(ctx context.Context, types []string) error {
	if err := s.client.Ping(ctx, readpref.Primary()); err != nil {
		return fmt.Errorf("mongo: ping: %w", err)
	}
	var info bson.M
	if err := s.db.RunCommand(ctx, bson.D{{Key: "buildInfo", Value: 1}}).Decode(&info); err != nil {
		return fmt.Errorf("mongo: buildInfo: %w", err)
	}
	if _, ok := info["ferretdbVersion"]; ok {
		s.rollForward, s.scans = true, true
		s.log.Info("mongo: FerretDB detected: writes roll forward to the newest version", "version", info["version"])
	}

	// Read concern majority where the server takes it.
	rc := options.Collection().SetReadConcern(readconcern.Majority())
	s.resources = s.db.Collection(ResourcesCollection, rc)
	s.history = s.db.Collection(HistoryCollection, rc)
	s.audit = s.db.Collection(AuditCollection, rc)
	s.marks = s.db.Collection(AuditMarksCollection, rc)
	if err := s.resources.FindOne(ctx, bson.D{{Key: "_id", Value: ""}}).Err(); err != nil && !errors.Is(err, mongo.ErrNoDocuments) {
		if !isServerError(err) {
			return fmt.Errorf("mongo: probe read concern: %w", err)
		}
		s.log.Warn("mongo: read concern majority refused; using the server default", "error", err)
		s.resources = s.db.Collection(ResourcesCollection)
		s.history = s.db.Collection(HistoryCollection)
		s.audit = s.db.Collection(AuditCollection)
		s.marks = s.db.Collection(AuditMarksCollection)
	}
	if err := s.createIndexes(ctx, types); err != nil {
		return err
	}
	return s.repairAudit(ctx)
}

func isServerError(err error) bool {
	var se mongo.ServerError
	return errors.As(err, &se)
}

// Index names.
const (
	indexTerms          = "type_terms"
	indexUpdated        = "type_updated_id"
	indexHistoryVersion = "type_id_version"
	indexHistoryUpdated = "updated_id"
	indexHistoryType    = "type_updated_id"
)

func (s *Store) createIndexes(ctx context.Context, types []string) error {
	if types == nil {
		types = defaultTypes()
	}
	res := []mongo.IndexModel{
		{Keys: bson.D{{Key: "type", Value: 1}, {Key: "terms", Value: 1}}, Options: options.Index().SetName(indexTerms)},
		{Keys: bson.D{{Key: "type", Value: 1}, {Key: "updated", Value: 1}, {Key: "id", Value: 1}}, Options: options.Index().SetName(indexUpdated)},
	}
	seen := map[string]bool{}
	for _, t := range types {
		for _, p := range dateParams(t) {
			if seen[p] {
				continue
			}
			seen[p] = true
			res = append(res,
				mongo.IndexModel{
					Keys:    bson.D{{Key: "type", Value: 1}, {Key: sortField(p), Value: 1}, {Key: "id", Value: 1}},
					Options: options.Index().SetName("type_sort_" + p + "_id"),
				},
				mongo.IndexModel{
					Keys:    bson.D{{Key: "type", Value: 1}, {Key: hullField(p, "lo"), Value: 1}, {Key: hullField(p, "hi"), Value: 1}},
					Options: options.Index().SetName("type_dates_" + p),
				})
		}
	}
	if err := ensureIndexes(ctx, s.resources, res); err != nil {
		return err
	}
	hist := []mongo.IndexModel{
		{
			Keys:    bson.D{{Key: "type", Value: 1}, {Key: "id", Value: 1}, {Key: "version", Value: 1}},
			Options: options.Index().SetName(indexHistoryVersion).SetUnique(true),
		},
		{Keys: bson.D{{Key: "updated", Value: 1}, {Key: "_id", Value: 1}}, Options: options.Index().SetName(indexHistoryUpdated)},
		{Keys: bson.D{{Key: "type", Value: 1}, {Key: "updated", Value: 1}, {Key: "_id", Value: 1}}, Options: options.Index().SetName(indexHistoryType)},
	}
	if err := ensureIndexes(ctx, s.history, hist); err != nil {
		return err
	}
	audit := []mongo.IndexModel{
		{Keys: bson.D{{Key: "last", Value: 1}}, Options: options.Index().SetName(indexAuditLast)},
		{Keys: bson.D{{Key: "pending", Value: 1}}, Options: options.Index().SetName(indexAuditPending).SetSparse(true)},
	}
	return ensureIndexes(ctx, s.audit, audit)
}

// ensureIndexes creates the indexes a collection lacks. An index present
// under the same name must have the same keys. (Only missing ones are
// sent: FerretDB v1 fails on a createIndexes naming several existing ones.)
func ensureIndexes(ctx context.Context, coll *mongo.Collection, want []mongo.IndexModel) error {
	cur, err := coll.Indexes().List(ctx)
	if err != nil {
		return fmt.Errorf("mongo: list indexes of %s: %w", coll.Name(), err)
	}
	var have []struct {
		Name string `bson:"name"`
		Key  bson.D `bson:"key"`
	}
	if err := cur.All(ctx, &have); err != nil {
		return fmt.Errorf("mongo: list indexes of %s: %w", coll.Name(), err)
	}
	var missing []mongo.IndexModel
	for _, m := range want {
		var o options.IndexOptions
		for _, set := range m.Options.List() {
			_ = set(&o)
		}
		name := *o.Name
		i := slices.IndexFunc(have, func(h struct {
			Name string `bson:"name"`
			Key  bson.D `bson:"key"`
		}) bool {
			return h.Name == name
		})
		if i < 0 {
			missing = append(missing, m)
			continue
		}
		if !sameKeys(have[i].Key, m.Keys.(bson.D)) {
			return fmt.Errorf("mongo: index %s of %s has keys %v, want %v", name, coll.Name(), have[i].Key, m.Keys)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if _, err := coll.Indexes().CreateMany(ctx, missing); err != nil {
		return fmt.Errorf("mongo: create indexes on %s: %w", coll.Name(), err)
	}
	return nil
}

func sameKeys(have, want bson.D) bool {
	if len(have) != len(want) {
		return false
	}
	for i := range have {
		if have[i].Key != want[i].Key || fmt.Sprint(have[i].Value) != fmt.Sprint(want[i].Value) {
			return false
		}
	}
	return true
}

// dateParams are the date parameters of a type that get a sort key
// (_lastUpdated sorts on the updated field).
func dateParams(typ string) []string {
	var out []string
	for _, p := range fhir.SearchParams(typ) {
		if p.Type == fhir.TypeDate && p.Code != "_lastUpdated" && validField(p.Code) {
			out = append(out, p.Code)
		}
	}
	return out
}

// validField reports whether a parameter code can be a field name.
func validField(p string) bool {
	if p == "" || p[0] == '$' {
		return false
	}
	for i := 0; i < len(p); i++ {
		if p[i] == '.' || p[i] == 0 {
			return false
		}
	}
	return true
}

func sortField(p string) string      { return "sort." + p }
func hullField(p, end string) string { return "d" + end + "." + p }

// Ping reports whether the server is reachable.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	if err := s.client.Ping(ctx, readpref.Primary()); err != nil {
		return fmt.Errorf("mongo: ping: %w", err)
	}
	return nil
}

// closeWait bounds how long Close waits for calls in progress.
const closeWait = 30 * time.Second

// Close refuses new calls with store.ErrClosed, lets the calls in progress
// finish (writes that were acknowledged stay so), then disconnects.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()

	done := make(chan struct{})
	go func() {
		s.calls.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(closeWait):
		s.log.Warn("mongo: closing with calls still in progress", "waited", closeWait)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.client.Disconnect(ctx); err != nil {
		return fmt.Errorf("mongo: disconnect: %w", err)
	}
	return nil
}

// enter admits a call unless the store is closed; leave ends it.
func (s *Store) enter() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return store.ErrClosed
	}
	s.calls.Add(1)
	return nil
}

func (s *Store) leave() { s.calls.Done() }
