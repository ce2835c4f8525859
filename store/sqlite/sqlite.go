// Package sqlite is the embedded store on SQLite in pure Go
// (modernc.org/sqlite): one database file in WAL mode with
// synchronous=FULL, so that a write is acknowledged only once it is on
// disk.
//
// All writes go through one writer goroutine that commits them in groups:
// it drains the queue of pending writes, applies up to Options.BatchSize
// of them in one transaction (each in its own savepoint, so that one
// failing write does not abort the others), commits once (one fsync) and
// then answers each waiter. Reads use a separate pool of connections and
// never wait for the writer.
//
// Schema (version 2):
//
//	versions (updated PK, type, id, version, deleted, body, terms)  every version; UNIQUE(type, id, version), index (type, updated)
//	current  (type, id PK, version, updated, deleted, lu_lo, lu_hi) the newest version of each resource; index (type, updated, id)
//	terms    (type, term, id PK)                                    string terms of current, not deleted versions
//	dates    (type, param, lo, hi, id PK)                           date terms of the same; indexes (type, id, param, lo), (type, param, hi)
//	sortkeys (type, param, key, id PK), sortparams (type, param PK)  sort keys by date parameter (see sortkeys.go)
//	audit_chain, audit_index, audit_batches, audit_marks             the audit log, AuditEvents only (see auditrows.go)
//
// Version 1 kept AuditEvents in the generic tables; Open moves them into
// the audit tables (see migrate.go).
//
// Times are Unix microseconds. lastUpdated is unique and increasing across
// the store, so it keys versions and orders history. Open date ranges keep
// fhir.MinTime and fhir.MaxTime as stored integers; every comparison is
// exact. Two kinds of terms every version has are kept out of the term
// tables: _lastUpdated (lu_lo, lu_hi in current) and _id (the id itself).
// versions.terms lists the string terms a version put in the terms table,
// so that the next version can take them out.
//
// A search (of any type but AuditEvent, see auditsearch.go) is one SQL
// query, keyset-paged on (sort key, id). Each clause
// is a test on current (EXISTS on terms or dates, exact after
// fhir.DateCond.Match), except that the rarest clause, found by counting
// its index rows up to a limit (in the same statement when only one clause
// can drive), drives the query. Without a rare clause
// the query walks an index in sort order and stops at the page's end.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"github.com/schakelpunt/schakelpunt/store"
)

// Options tune the store; the zero value is a sensible default.
type Options struct {
	// Logger receives operational messages; nil discards them.
	Logger *slog.Logger
	// ReadConns is the size of the read pool (default 4).
	ReadConns int
	// BatchSize is the most writes committed in one transaction
	// (default 256).
	BatchSize int
	// QueueSize is how many writes may wait for the writer before callers
	// block (default 4 × BatchSize).
	QueueSize int
	// BusyTimeout is how long a connection waits for a lock
	// (default 5s).
	BusyTimeout time.Duration
	// Now is the clock (default time.Now). The store keeps lastUpdated
	// strictly increasing whatever the clock does.
	Now func() time.Time
	// Serving takes the database's serving lock: one serving Store per
	// file, in this process or another (ErrServing otherwise). A serving
	// Store's readers cache by its generations (see Generation), which
	// see only its own writes. Tools that open the store beside a server
	// (audit verify, audit report) do not take it.
	Serving bool
}

// ErrServing is returned by Open with Options.Serving when another
// serving Store has the database file open.
var ErrServing = errors.New("another serving store has this database open")

const schemaVersion = 2

// Defaults of Options.
const (
	DefaultReadConns   = 4
	DefaultBatchSize   = 256
	DefaultBusyTimeout = 5 * time.Second
)

var _ store.Store = (*Store)(nil)

// Store is the embedded store. It is safe for concurrent use.
type Store struct {
	log  *slog.Logger
	path string
	now  func() time.Time

	// Writer side: one connection, used by whoever holds wmu: the writer
	// goroutine for a batch, or a caller that found it idle (do).
	wmu     sync.Mutex
	wdb     *sql.DB
	wconn   *sql.Conn
	wst     writeStmts
	gens    sync.Map // type → *atomic.Uint64, see Generation
	queue   chan *op
	batch   int
	stopped chan struct{}
	// Postings not yet flushed (see postings.go); tailLost (writer
	// goroutine only) says that a rollback may have undone a flush.
	tail postTail
	// dateSpan bounds the date terms of the stored AuditEvents (see
	// datebounds.go).
	dateSpan dateSpan
	tailLost bool
	// head is the audit chain's head mark as of the last commit while
	// headKnown (writer only; see moveHead).
	head      store.ChainHead
	headKnown bool
	last      int64 // last assigned lastUpdated (µs); writer goroutine only
	wargs     []any // argument buffer; writer goroutine only

	// Sort keys (see sortkeys.go); writer goroutine only.
	sortParams map[string][]string // type → its date parameters
	listed     map[[2]string]bool  // (type, param) with complete keys; nil: reload

	// mu guards closed against submissions racing with Close: submitters
	// hold it shared while they enqueue, Close holds it exclusively.
	mu        sync.RWMutex
	closed    bool
	isClosed  atomic.Bool
	closeOnce sync.Once
	closeErr  error

	// Reader side.
	rdb     *sql.DB
	rst     readStmts
	rlisted sortListed

	// Search tuning; tests change it to run every plan.
	driveLimit int  // see plan
	noSortKeys bool // never walk sortkeys

	stmtMu sync.Mutex
	stmts  map[string]*sql.Stmt // prepared search statements by SQL text

	unlock func() error // releases the serving lock (Options.Serving)
}

// Open opens (creating if needed) the database at path.
func Open(ctx context.Context, path string, opts Options) (*Store, error) {
	if path == "" || strings.ContainsRune(path, '?') {
		return nil, fmt.Errorf("sqlite: invalid database path %q", path)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.ReadConns <= 0 {
		opts.ReadConns = DefaultReadConns
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = DefaultBatchSize
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = 4 * opts.BatchSize
	}
	if opts.BusyTimeout <= 0 {
		opts.BusyTimeout = DefaultBusyTimeout
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	unlock := func() error { return nil }
	if opts.Serving {
		var err error
		if unlock, err = serveLock(path); err != nil {
			return nil, err
		}
	}
	s := &Store{
		unlock:  unlock,
		log:     opts.Logger.With("store", "sqlite"),
		path:    path,
		now:     opts.Now,
		batch:   opts.BatchSize,
		queue:   make(chan *op, opts.QueueSize),
		stopped: make(chan struct{}),
		stmts:   map[string]*sql.Stmt{},

		sortParams: map[string][]string{},
		driveLimit: driveLimit,
	}
	if err := s.openWriter(ctx, opts); err != nil {
		s.closeDBs()
		_ = unlock()
		return nil, err
	}
	if err := s.openReaders(ctx, opts); err != nil {
		s.closeDBs()
		_ = unlock()
		return nil, err
	}
	go s.run()
	s.log.Info("store opened", "path", path)
	return s, nil
}

func dsn(path string, busy time.Duration, pragmas ...string) string {
	var b strings.Builder
	b.WriteString(path)
	fmt.Fprintf(&b, "?_pragma=busy_timeout(%d)", busy.Milliseconds())
	for _, p := range pragmas {
		b.WriteString("&_pragma=")
		b.WriteString(p)
	}
	return b.String()
}

func (s *Store) openWriter(ctx context.Context, opts Options) error {
	db, err := sql.Open("sqlite", dsn(s.path, opts.BusyTimeout,
		"journal_mode(WAL)", "synchronous(FULL)", "temp_store(MEMORY)", "cache_size(-16384)"))
	if err != nil {
		return fmt.Errorf("sqlite: open %s: %w", s.path, err)
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	s.wdb = db
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("sqlite: open %s: %w", s.path, err)
	}
	s.wconn = conn
	var mode string
	if err := conn.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("sqlite: journal mode: %w", err)
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("sqlite: journal mode is %q, want wal", mode)
	}
	if err := migrate(ctx, conn); err != nil {
		return err
	}
	if err := conn.QueryRowContext(ctx, "SELECT MAX(COALESCE((SELECT MAX(updated) FROM versions), 0), COALESCE((SELECT MAX(updated) FROM audit_chain), 0))").Scan(&s.last); err != nil {
		return fmt.Errorf("sqlite: last update: %w", err)
	}
	if err := s.wst.prepare(ctx, conn); err != nil {
		return err
	}
	if err := s.loadDateSpan(ctx); err != nil {
		return err
	}
	return s.loadTail(ctx)
}

func (s *Store) openReaders(ctx context.Context, opts Options) error {
	db, err := sql.Open("sqlite", dsn(s.path, opts.BusyTimeout,
		"query_only(1)", "temp_store(MEMORY)", "cache_size(-16384)"))
	if err != nil {
		return fmt.Errorf("sqlite: open readers: %w", err)
	}
	db.SetMaxOpenConns(opts.ReadConns)
	db.SetMaxIdleConns(opts.ReadConns)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	s.rdb = db
	if err := db.PingContext(ctx); err != nil {
		return fmt.Errorf("sqlite: open readers: %w", err)
	}
	if err := s.rst.prepare(ctx, db); err != nil {
		return err
	}
	s.rlisted = sortListed{st: s.rst.listed, listed: map[[2]string]bool{}}
	return nil
}

var schema = []string{
	// Every version. updated is unique and increasing (the writer makes it
	// so), which makes it the row's key and the order of history.
	`CREATE TABLE versions (
		updated INTEGER PRIMARY KEY,
		type    TEXT    NOT NULL,
		id      TEXT    NOT NULL,
		version INTEGER NOT NULL,
		deleted INTEGER NOT NULL,
		body    BLOB,
		terms   BLOB,
		UNIQUE (type, id, version)
	)`,
	`CREATE INDEX versions_type ON versions (type, updated)`,
	// The newest version of each resource, with its _lastUpdated term.
	`CREATE TABLE current (
		type    TEXT    NOT NULL,
		id      TEXT    NOT NULL,
		version INTEGER NOT NULL,
		updated INTEGER NOT NULL,
		deleted INTEGER NOT NULL,
		lu_lo   INTEGER NOT NULL,
		lu_hi   INTEGER NOT NULL,
		PRIMARY KEY (type, id)
	) WITHOUT ROWID`,
	`CREATE INDEX current_updated ON current (type, updated, id)`,
	// String and date terms of current, not deleted versions.
	`CREATE TABLE terms (
		type TEXT NOT NULL,
		term TEXT NOT NULL,
		id   TEXT NOT NULL,
		PRIMARY KEY (type, term, id)
	) WITHOUT ROWID`,
	`CREATE TABLE dates (
		type  TEXT    NOT NULL,
		param TEXT    NOT NULL,
		lo    INTEGER NOT NULL,
		hi    INTEGER NOT NULL,
		id    TEXT    NOT NULL,
		PRIMARY KEY (type, param, lo, hi, id)
	) WITHOUT ROWID`,
	`CREATE INDEX dates_id ON dates (type, id, param, lo)`,
	`CREATE INDEX dates_hi ON dates (type, param, hi)`,
	// The sort key of every current, not deleted resource for every date
	// parameter of its type listed in sortparams (see sortkeys.go).
	`CREATE TABLE sortkeys (
		type  TEXT    NOT NULL,
		param TEXT    NOT NULL,
		key   INTEGER NOT NULL,
		id    TEXT    NOT NULL,
		PRIMARY KEY (type, param, key, id)
	) WITHOUT ROWID`,
	// The audit log (see auditrows.go), then its head and retention
	// checkpoint (audit_marks).
	auditSchema[0], auditSchema[1], auditSchema[2], auditSchema[3],
	`CREATE TABLE audit_marks (
		name TEXT PRIMARY KEY,
		seq  INTEGER NOT NULL,
		hash TEXT    NOT NULL
	) WITHOUT ROWID`,
	`CREATE TABLE sortparams (
		type  TEXT NOT NULL,
		param TEXT NOT NULL,
		PRIMARY KEY (type, param)
	) WITHOUT ROWID`,
}

// auditSchema is the audit log of schema version 2 (see auditrows.go).
var auditSchema = []string{
	`CREATE TABLE audit_chain (
		seq      INTEGER PRIMARY KEY,
		id       TEXT    NOT NULL UNIQUE,
		updated  INTEGER NOT NULL,
		recorded INTEGER NOT NULL,
		sortdate INTEGER NOT NULL,
		prev     TEXT    NOT NULL,
		hash     TEXT    NOT NULL,
		terms    BLOB    NOT NULL,
		body     BLOB    NOT NULL
	)`,
	`CREATE INDEX audit_chain_date ON audit_chain (sortdate, id)`,
	`CREATE TABLE audit_index (
		key  INTEGER NOT NULL,
		seq  INTEGER NOT NULL,
		seqs BLOB    NOT NULL,
		PRIMARY KEY (key, seq)
	) WITHOUT ROWID`,
	`CREATE TABLE audit_batches (
		first INTEGER PRIMARY KEY,
		last  INTEGER NOT NULL,
		keys  BLOB    NOT NULL
	)`,
}

// migrate creates the schema in a new database, moves the audit log of a
// version 1 database into the layout of version 2 (see migrateAudit), and
// refuses a database written by a newer release.
func migrate(ctx context.Context, conn *sql.Conn) error {
	var v int
	if err := conn.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return fmt.Errorf("sqlite: schema version: %w", err)
	}
	switch {
	case v == schemaVersion:
		return nil
	case v > schemaVersion:
		return fmt.Errorf("sqlite: database schema version %d is newer than this release (%d)", v, schemaVersion)
	case v == 1:
		return migrateAudit(ctx, conn)
	}
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return fmt.Errorf("sqlite: create schema: %w", err)
	}
	for _, stmt := range append(schema, fmt.Sprintf("PRAGMA user_version = %d", schemaVersion)) {
		if _, err := conn.ExecContext(ctx, stmt); err != nil {
			_, _ = conn.ExecContext(context.Background(), "ROLLBACK")
			return fmt.Errorf("sqlite: create schema: %w", err)
		}
	}
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		_, _ = conn.ExecContext(context.Background(), "ROLLBACK")
		return fmt.Errorf("sqlite: create schema: %w", err)
	}
	return nil
}

// Path is the database file.
func (s *Store) Path() string { return s.path }

// Ping reports whether the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if s.isClosed.Load() {
		return store.ErrClosed
	}
	var one int
	if err := s.rst.ping.QueryRowContext(ctx).Scan(&one); err != nil {
		return s.readErr("ping", err)
	}
	return nil
}

// Close waits for queued writes to commit, checkpoints the WAL into the
// database file and closes it. Later calls return the first result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.isClosed.Store(true)
		close(s.queue)
		s.mu.Unlock()
		var errs []error
		<-s.stopped
		if err := s.flushTail(); err != nil {
			errs = append(errs, err)
		}

		ctx := context.Background()
		if _, err := s.wconn.ExecContext(ctx, "PRAGMA optimize"); err != nil {
			errs = append(errs, fmt.Errorf("sqlite: optimize: %w", err))
		}
		s.stmtMu.Lock()
		for _, st := range s.stmts {
			st.Close()
		}
		s.stmts = nil
		s.stmtMu.Unlock()
		s.rst.close()
		if err := s.rdb.Close(); err != nil {
			errs = append(errs, fmt.Errorf("sqlite: close readers: %w", err))
		}
		if _, err := s.wconn.ExecContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
			errs = append(errs, fmt.Errorf("sqlite: checkpoint: %w", err))
		}
		s.wst.close()
		if err := s.wconn.Close(); err != nil {
			errs = append(errs, fmt.Errorf("sqlite: close writer: %w", err))
		}
		if err := s.wdb.Close(); err != nil {
			errs = append(errs, fmt.Errorf("sqlite: close writer: %w", err))
		}
		if err := s.unlock(); err != nil {
			errs = append(errs, fmt.Errorf("sqlite: serving lock: %w", err))
		}
		s.closeErr = errors.Join(errs...)
		s.log.Info("store closed", "path", s.path)
	})
	return s.closeErr
}

// closeDBs closes what a failed Open opened.
func (s *Store) closeDBs() error {
	var errs []error
	if s.rdb != nil {
		if err := s.rdb.Close(); err != nil {
			errs = append(errs, fmt.Errorf("sqlite: close readers: %w", err))
		}
	}
	if s.wconn != nil {
		if err := s.wconn.Close(); err != nil {
			errs = append(errs, fmt.Errorf("sqlite: close writer: %w", err))
		}
	}
	if s.wdb != nil {
		if err := s.wdb.Close(); err != nil {
			errs = append(errs, fmt.Errorf("sqlite: close writer: %w", err))
		}
	}
	return errors.Join(errs...)
}

// readErr wraps an error of the read side, reporting ErrClosed when the
// store was closed underneath the call.
func (s *Store) readErr(what string, err error) error {
	if s.isClosed.Load() {
		return fmt.Errorf("sqlite: %s: %w", what, store.ErrClosed)
	}
	return fmt.Errorf("sqlite: %s: %w", what, err)
}

func micros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }
