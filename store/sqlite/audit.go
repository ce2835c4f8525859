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

// AppendAudit stores chained audit records in one commit: each is an
// AuditEvent resource (searchable like any other) and a row of
// audit_chain; the head moves in the same transaction.
func (s *Store) AppendAudit(ctx context.Context, records []store.AuditRecord) error {
	if len(records) == 0 {
		return nil
	}
	for i, r := range records {
		if r.Write.Type != "AuditEvent" || r.Write.ID == "" {
			return errors.New("sqlite: audit records are AuditEvents with an id")
		}
		if i > 0 {
			if err := follows(r, records[i-1].Seq, records[i-1].Hash); err != nil {
				return err
			}
		}
	}
	return s.do(ctx, &op{ctx: ctx, kind: opAudit, audit: records}).err
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
func (s *Store) applyAudit(ctx context.Context, recs []store.AuditRecord) (err error) {
	head, err := mark(ctx, s.wconn, "head")
	if err != nil {
		return err
	}
	seq, prev := head.Seq, head.Hash
	for _, r := range recs {
		if err := follows(r, seq, prev); err != nil {
			return err
		}
		seq, prev = r.Seq, r.Hash
	}
	defer func() {
		if err != nil {
			// The savepoint rolls back what the records before this one
			// wrote, sort parameters listed on the way included; a refusal
			// (a taken id, say) is no longer "before any change".
			s.listed = nil
		}
	}()
	for i := 0; i < len(recs); {
		for _, r := range recs[i:min(i+rowsPerInsert, len(recs))] {
			if _, err := s.apply(ctx, &op{ctx: ctx, kind: opCreate, w: r.Write}); err != nil {
				return fmt.Errorf("sqlite: audit record %d: %w", r.Seq, err)
			}
		}
		n, err := s.insertChain(ctx, recs[i:])
		if err != nil {
			return err
		}
		i += n
	}
	return setMark(ctx, s.wconn, "head", seq, prev)
}

// chainInsert adds rowsPerInsert chain rows. (Not prepared: the writer's
// prepared statements live in write.go; one statement per 16 events keeps
// the cost of preparing it small.)
var chainInsert = chainInsertSQL(rowsPerInsert)

func chainInsertSQL(n int) string {
	return "INSERT INTO audit_chain (seq, id, prev, hash, recorded) VALUES " + strings.Repeat("(?, ?, ?, ?, ?), ", n-1) + "(?, ?, ?, ?, ?)"
}

// insertChain adds the chain rows of up to rowsPerInsert records in one
// statement and returns how many it added.
func (s *Store) insertChain(ctx context.Context, recs []store.AuditRecord) (int, error) {
	n := min(len(recs), rowsPerInsert)
	args := s.wargs[:0]
	for _, r := range recs[:n] {
		args = append(args, r.Seq, r.Write.ID, r.Prev, r.Hash, micros(r.Recorded))
	}
	q := chainInsert
	if n < rowsPerInsert {
		q = chainInsertSQL(n)
	}
	_, err := s.wconn.ExecContext(ctx, q, args...)
	s.wargs = args[:0]
	if err != nil {
		return 0, fmt.Errorf("sqlite: audit chain %d: %w", recs[0].Seq, err)
	}
	return n, nil
}

type queryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

func mark(ctx context.Context, q queryer, name string) (store.ChainHead, error) {
	var h store.ChainHead
	err := q.QueryRowContext(ctx, `SELECT seq, hash FROM audit_marks WHERE name = ?`, name).Scan(&h.Seq, &h.Hash)
	if errors.Is(err, sql.ErrNoRows) {
		return store.ChainHead{}, nil
	}
	if err != nil {
		return h, fmt.Errorf("sqlite: audit %s: %w", name, err)
	}
	return h, nil
}

func setMark(ctx context.Context, e execer, name string, seq int64, hash string) error {
	if _, err := e.ExecContext(ctx, `INSERT INTO audit_marks (name, seq, hash) VALUES (?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET seq = excluded.seq, hash = excluded.hash`, name, seq, hash); err != nil {
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
	rows, err := s.rdb.QueryContext(ctx, `
		SELECT a.seq, a.prev, a.hash, a.id, v.version, v.updated, v.body
		FROM audit_chain a
		JOIN current c ON c.type = 'AuditEvent' AND c.id = a.id
		JOIN versions v ON v.updated = c.updated
		WHERE a.seq > ? ORDER BY a.seq LIMIT ?`, after, limit)
	if err != nil {
		return nil, s.readErr("scan audit", err)
	}
	defer rows.Close()
	var out []store.AuditEntry
	for rows.Next() {
		var e store.AuditEntry
		var updated int64
		var body []byte
		if err := rows.Scan(&e.Seq, &e.Prev, &e.Hash, &e.Resource.ID, &e.Resource.Version, &updated, &body); err != nil {
			return nil, s.readErr("scan audit", err)
		}
		e.Resource.Type, e.Resource.Updated, e.Resource.Body = "AuditEvent", fromMicros(updated), body
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
// runs without a gap from the checkpoint to the head.
func (s *Store) applyPurge(ctx context.Context, cutoff int64) (int, error) {
	rows, err := s.wconn.QueryContext(ctx, `
		SELECT a.seq, a.id, a.hash, a.recorded, c.updated, c.deleted
		FROM audit_chain a LEFT JOIN current c ON c.type = 'AuditEvent' AND c.id = a.id
		ORDER BY a.seq LIMIT ?`, purgeChunk)
	if err != nil {
		return 0, fmt.Errorf("sqlite: purge audit: %w", err)
	}
	type victim struct {
		seq     int64
		id      string
		hash    string
		updated sql.NullInt64 // of the current version; NULL when it is gone
		deleted sql.NullBool
	}
	var victims []victim
	for rows.Next() {
		var v victim
		var recorded int64
		if err := rows.Scan(&v.seq, &v.id, &v.hash, &recorded, &v.updated, &v.deleted); err != nil {
			rows.Close()
			return 0, fmt.Errorf("sqlite: purge audit: %w", err)
		}
		if recorded >= cutoff {
			break // the chain's order: a prefix goes, up to the first kept
		}
		victims = append(victims, v)
	}
	if err := rows.Close(); err != nil {
		return 0, fmt.Errorf("sqlite: purge audit: %w", err)
	}
	if len(victims) == 0 {
		return 0, nil
	}
	for _, v := range victims {
		if !v.updated.Valid || v.deleted.Bool {
			continue // no terms or sort keys to drop
		}
		if err := s.dropSortKeys(ctx, "AuditEvent", v.id); err != nil {
			return 0, err
		}
		if err := s.dropTerms(ctx, "AuditEvent", v.id, v.updated.Int64); err != nil {
			return 0, err
		}
	}
	last := victims[len(victims)-1]
	for _, q := range []string{
		`DELETE FROM versions WHERE type = 'AuditEvent' AND id IN (SELECT id FROM audit_chain WHERE seq <= ?)`,
		`DELETE FROM current WHERE type = 'AuditEvent' AND id IN (SELECT id FROM audit_chain WHERE seq <= ?)`,
		`DELETE FROM audit_chain WHERE seq <= ?`,
	} {
		if _, err := s.wconn.ExecContext(ctx, q, last.seq); err != nil {
			return 0, fmt.Errorf("sqlite: purge audit: %w", err)
		}
	}
	return len(victims), setMark(ctx, s.wconn, "checkpoint", last.seq, last.hash)
}
