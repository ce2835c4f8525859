package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/schakelpunt/schakelpunt/store"
)

var _ store.AuditLog = (*Store)(nil)

// AppendAudit stores chained audit records in one commit: each is a row
// of audit_chain (the event, its link and its terms) and its postings
// (see auditrows.go); the head moves in the same transaction. The records
// are prepared (terms encoded, body split for its meta) here, in the
// caller's goroutine, so that the single writer only inserts rows.
func (s *Store) AppendAudit(ctx context.Context, records []store.AuditRecord) error {
	if len(records) == 0 {
		return nil
	}
	rows, err := prepareAudit(records)
	if err != nil {
		return err
	}
	return s.do(ctx, &op{ctx: ctx, kind: opAudit, audit: rows}).err
}

// follows reports ErrChainConflict unless r is the link after (seq, hash).
func follows(r store.AuditRecord, seq int64, hash string) error {
	if r.Seq != seq+1 || r.Prev != hash {
		return fmt.Errorf("sqlite: audit record %d does not follow %d: %w", r.Seq, seq, store.ErrChainConflict)
	}
	return nil
}

// applyAudit runs in the writer goroutine, inside the op's savepoint: all
// records or none. The whole chain is checked before anything is written,
// so that a conflict is refused untouched.
func (s *Store) applyAudit(ctx context.Context, rows []auditRow) error {
	if !s.headKnown {
		h, err := s.wmark(ctx, "head")
		if err != nil {
			return err
		}
		s.head, s.headKnown = h, true
	}
	head := s.head
	seq, prev := head.Seq, head.Hash
	for i := range rows {
		if err := follows(rows[i].rec, seq, prev); err != nil {
			return err
		}
		seq, prev = rows[i].rec.Seq, rows[i].rec.Hash
	}
	if err := s.moveHead(ctx, head, store.ChainHead{Seq: seq, Hash: prev}); err != nil {
		return err
	}
	if err := s.widenDateSpan(ctx, rows); err != nil {
		return err
	}
	for i := 0; i < len(rows); i += rowsPerInsert {
		if err := s.insertAuditRows(ctx, rows[i:min(i+rowsPerInsert, len(rows))]); err != nil {
			return err
		}
	}
	if s.tailLost {
		if err := s.loadTail(ctx); err != nil {
			return err
		}
	}
	s.tail.add(rows)
	if s.tail.events() >= flushEvents {
		if err := s.flushPostings(ctx); err != nil {
			return err
		}
	}
	s.head = store.ChainHead{Seq: seq, Hash: prev}
	return nil
}

// moveHead moves the head mark from old, the head this writer knows, to
// next, and fails with ErrChainConflict when the mark is no longer old.
// The writer keeps the head between commits instead of reading it for
// every append; another process appending to the same file meanwhile
// (a command-line tool, which takes no serving lock) must then make this
// append a conflict, never a fork.
func (s *Store) moveHead(ctx context.Context, old, next store.ChainHead) error {
	var (
		res sql.Result
		err error
	)
	if old == (store.ChainHead{}) {
		res, err = s.wst.insHead.ExecContext(ctx, next.Seq, next.Hash)
	} else {
		res, err = s.wst.casHead.ExecContext(ctx, next.Seq, next.Hash, old.Seq, old.Hash)
	}
	if err != nil {
		return fmt.Errorf("sqlite: audit head: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		s.headKnown = false
		return fmt.Errorf("sqlite: audit head moved since %d: %w", old.Seq, store.ErrChainConflict)
	}
	return nil
}

// insertAuditRows inserts up to rowsPerInsert events in one statement.
func (s *Store) insertAuditRows(ctx context.Context, rows []auditRow) error {
	args := s.wargs[:0]
	for i := range rows {
		r := &rows[i]
		updated := s.nextUpdated()
		body, err := stampAudit(r, updated)
		if err != nil {
			return fmt.Errorf("sqlite: stamp AuditEvent/%s: %w", r.rec.Write.ID, err)
		}
		args = append(args, r.rec.Seq, r.rec.Write.ID, micros(updated), r.recorded, r.sortdate, r.rec.Prev, r.rec.Hash, r.terms, body)
	}
	st, err := s.wst.multi(ctx, s.wconn, &s.wst.insAudit, len(rows),
		"INSERT INTO audit_chain (seq, id, updated, recorded, sortdate, prev, hash, terms, body) VALUES ", "(?, ?, ?, ?, ?, ?, ?, ?, ?)")
	if err == nil {
		_, err = st.ExecContext(ctx, args...)
	}
	clear(args)
	s.wargs = args[:0]
	if err != nil {
		if strings.Contains(err.Error(), "UNIQUE constraint failed: audit_chain.id") {
			return fmt.Errorf("sqlite: audit record %d: an AuditEvent id is taken: %w", rows[0].rec.Seq, store.ErrExists)
		}
		return fmt.Errorf("sqlite: audit record %d: %w", rows[0].rec.Seq, err)
	}
	return nil
}

const (
	postingInsert = "INSERT INTO audit_index (key, seq, seqs) VALUES "
	postingRow    = "(?, ?, ?)"
)

// postingsOf gathers the postings of an append: its distinct keys, in
// order of appearance, and for each the seqs of the events that have it.
func postingsOf(rows []auditRow) (keys []int64, seqs [][]int64) {
	at := map[int64]int{}
	for i := range rows {
		for _, k := range rows[i].keys {
			j, ok := at[k]
			if !ok {
				j = len(keys)
				at[k] = j
				keys = append(keys, k)
				seqs = append(seqs, nil)
			}
			seqs[j] = append(seqs[j], rows[i].rec.Seq)
		}
	}
	return keys, seqs
}

type queryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

const (
	selMarkSQL = `SELECT seq, hash FROM audit_marks WHERE name = ?`
	insHeadSQL = `INSERT OR IGNORE INTO audit_marks (name, seq, hash) VALUES ('head', ?, ?)`
	casHeadSQL = `UPDATE audit_marks SET seq = ?, hash = ? WHERE name = 'head' AND seq = ? AND hash = ?`
	upsMarkSQL = `INSERT INTO audit_marks (name, seq, hash) VALUES (?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET seq = excluded.seq, hash = excluded.hash`
)

func mark(ctx context.Context, q queryer, name string) (store.ChainHead, error) {
	return scanMark(q.QueryRowContext(ctx, selMarkSQL, name), name)
}

// wmark is mark on the writer's connection, with its prepared statement.
func (s *Store) wmark(ctx context.Context, name string) (store.ChainHead, error) {
	return scanMark(s.wst.selMark.QueryRowContext(ctx, name), name)
}

// wsetMark is setMark on the writer's connection, with its prepared
// statement.
func (s *Store) wsetMark(ctx context.Context, name string, seq int64, hash string) error {
	if _, err := s.wst.upsMark.ExecContext(ctx, name, seq, hash); err != nil {
		return fmt.Errorf("sqlite: audit %s: %w", name, err)
	}
	return nil
}

func scanMark(row *sql.Row, name string) (store.ChainHead, error) {
	var h store.ChainHead
	err := row.Scan(&h.Seq, &h.Hash)
	if errors.Is(err, sql.ErrNoRows) {
		return store.ChainHead{}, nil
	}
	if err != nil {
		return h, fmt.Errorf("sqlite: audit %s: %w", name, err)
	}
	return h, nil
}

func setMark(ctx context.Context, e execer, name string, seq int64, hash string) error {
	if _, err := e.ExecContext(ctx, upsMarkSQL, name, seq, hash); err != nil {
		return fmt.Errorf("sqlite: audit %s: %w", name, err)
	}
	return nil
}

// AuditHead is the newest link; with an empty log, the checkpoint.
func (s *Store) AuditHead(ctx context.Context) (store.ChainHead, error) {
	if s.isClosed.Load() {
		return store.ChainHead{}, store.ErrClosed
	}
	h, err := mark(ctx, s.rdb, "head")
	if err != nil || h.Seq > 0 {
		return h, err
	}
	return mark(ctx, s.rdb, "checkpoint")
}

// AuditCheckpoint is the link of the last event retention removed.
func (s *Store) AuditCheckpoint(ctx context.Context) (store.ChainHead, error) {
	if s.isClosed.Load() {
		return store.ChainHead{}, store.ErrClosed
	}
	return mark(ctx, s.rdb, "checkpoint")
}

// ScanAudit returns chained events after a sequence number, in order; a
// limit of 0 or less means all. An event whose resource is gone from the
// store is left out: Verify sees the gap.
func (s *Store) ScanAudit(ctx context.Context, after int64, limit int) ([]store.AuditEntry, error) {
	if s.isClosed.Load() {
		return nil, store.ErrClosed
	}
	if limit <= 0 {
		limit = -1
	}
	rows, err := s.rst.scanAudit.QueryContext(ctx, after, limit)
	if err != nil {
		return nil, s.readErr("scan audit", err)
	}
	defer rows.Close()
	var out []store.AuditEntry
	for rows.Next() {
		var e store.AuditEntry
		var updated int64
		if err := rows.Scan(&e.Seq, &e.Prev, &e.Hash, &e.Resource.ID, &updated, &e.Resource.Body); err != nil {
			return nil, s.readErr("scan audit", err)
		}
		e.Resource.Type, e.Resource.Version, e.Resource.Updated = "AuditEvent", 1, fromMicros(updated)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, s.readErr("scan audit", err)
	}
	return out, nil
}

// purgeChunk is the most events one retention transaction removes. The
// writer does nothing else meanwhile, so it bounds how long retention
// holds up other writes: about 0.1-0.3 s for 500 events (tests lower it).
var purgeChunk = 500

// PurgeAudit removes events recorded before cutoff, oldest first, a chunk
// per commit, moving the checkpoint with each. Other writes go between the
// chunks.
func (s *Store) PurgeAudit(ctx context.Context, cutoff time.Time) (int, error) {
	total := 0
	for {
		r := s.do(ctx, &op{ctx: ctx, kind: opPurge, cutoff: micros(cutoff)})
		total += r.n
		if r.err != nil || r.n < purgeChunk {
			return total, r.err
		}
	}
}

// applyPurge removes up to purgeChunk events from the start of the chain
// that were recorded before cutoff; the checkpoint becomes the link of the
// last one removed. Only a prefix of the chain goes, so that what is left
// runs without a gap from the checkpoint to the head. The postings of
// every append that is now wholly removed go with it; those of an append
// removed in part stay until the rest of it goes (searches skip the
// events they name that are gone).
func (s *Store) applyPurge(ctx context.Context, cutoff int64) (int, error) {
	rows, err := s.wconn.QueryContext(ctx, `SELECT seq, hash, recorded FROM audit_chain ORDER BY seq LIMIT ?`, purgeChunk)
	if err != nil {
		return 0, fmt.Errorf("sqlite: purge audit: %w", err)
	}
	var (
		n    int
		last store.ChainHead
	)
	for rows.Next() {
		var h store.ChainHead
		var recorded int64
		if err := rows.Scan(&h.Seq, &h.Hash, &recorded); err != nil {
			rows.Close()
			return 0, fmt.Errorf("sqlite: purge audit: %w", err)
		}
		if recorded >= cutoff {
			break // the chain's order: a prefix goes, up to the first kept
		}
		last = h
		n++
	}
	if err := rows.Close(); err != nil {
		return 0, fmt.Errorf("sqlite: purge audit: %w", err)
	}
	if n == 0 {
		return 0, nil
	}
	if _, err := s.wconn.ExecContext(ctx, `DELETE FROM audit_chain WHERE seq <= ?`, last.Seq); err != nil {
		return 0, fmt.Errorf("sqlite: purge audit: %w", err)
	}
	if err := s.purgePostings(ctx, last.Seq); err != nil {
		return 0, err
	}
	return n, s.wsetMark(ctx, "checkpoint", last.Seq, last.Hash)
}

// purgePostings removes the postings of the appends whose events all have
// seq <= upto.
func (s *Store) purgePostings(ctx context.Context, upto int64) error {
	rows, err := s.wconn.QueryContext(ctx, `SELECT first, keys FROM audit_batches WHERE first <= ? AND last <= ? ORDER BY first`, upto, upto)
	if err != nil {
		return fmt.Errorf("sqlite: purge audit postings: %w", err)
	}
	type batch struct {
		first int64
		keys  []byte
	}
	var batches []batch
	for rows.Next() {
		var b batch
		if err := rows.Scan(&b.first, &b.keys); err != nil {
			rows.Close()
			return fmt.Errorf("sqlite: purge audit postings: %w", err)
		}
		batches = append(batches, b)
	}
	if err := rows.Close(); err != nil {
		return fmt.Errorf("sqlite: purge audit postings: %w", err)
	}
	for _, b := range batches {
		keys, firsts, err := decodeBatchKeys(b.keys)
		if err != nil {
			return fmt.Errorf("sqlite: purge audit postings of %d: %w", b.first, err)
		}
		for i, k := range keys {
			if _, err := s.wst.delPosting.ExecContext(ctx, k, firsts[i]); err != nil {
				return fmt.Errorf("sqlite: purge audit postings: %w", err)
			}
		}
		if _, err := s.wconn.ExecContext(ctx, `DELETE FROM audit_batches WHERE first = ?`, b.first); err != nil {
			return fmt.Errorf("sqlite: purge audit postings: %w", err)
		}
	}
	return nil
}
