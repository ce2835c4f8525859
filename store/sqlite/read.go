package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/schakelpunt/schakelpunt/store"
)

// readStmts are prepared on the read pool.
type readStmts struct {
	ping, read, vread, listed *sql.Stmt
	scanAudit, readAudit      *sql.Stmt
	auditUpdated              *sql.Stmt
	all                       []*sql.Stmt
}

func (r *readStmts) prepare(ctx context.Context, db *sql.DB) error {
	for _, p := range []struct {
		dst **sql.Stmt
		sql string
	}{
		{&r.ping, `SELECT 1`},
		{&r.read, `SELECT c.version, c.updated, c.deleted, v.body FROM current c JOIN versions v ON v.updated = c.updated
			WHERE c.type = ? AND c.id = ?`},
		{&r.vread, `SELECT updated, deleted, body FROM versions WHERE type = ? AND id = ? AND version = ?`},
		{&r.listed, `SELECT COUNT(*) FROM sortparams WHERE type = ? AND param = ?`},
		{&r.scanAudit, `SELECT seq, prev, hash, id, updated, body FROM audit_chain WHERE seq > ? ORDER BY seq LIMIT ?`},
		{&r.readAudit, `SELECT updated, body FROM audit_chain WHERE id = ?`},
		{&r.auditUpdated, `SELECT updated FROM audit_chain WHERE seq >= ? ORDER BY seq LIMIT 1`},
	} {
		st, err := db.PrepareContext(ctx, p.sql)
		if err != nil {
			return fmt.Errorf("sqlite: prepare %q: %w", p.sql, err)
		}
		*p.dst = st
		r.all = append(r.all, st)
	}
	return nil
}

func (r *readStmts) close() {
	for _, st := range r.all {
		st.Close()
	}
}

// Read returns the current version of a resource.
func (s *Store) Read(ctx context.Context, typ, id string) (store.Resource, error) {
	if s.isClosed.Load() {
		return store.Resource{}, store.ErrClosed
	}
	r := store.Resource{Type: typ, ID: id}
	var updated int64
	if typ == auditType {
		r.Version = 1
		err := s.rst.readAudit.QueryRowContext(ctx, id).Scan(&updated, &r.Body)
		return s.found(r, updated, err, "read")
	}
	err := s.rst.read.QueryRowContext(ctx, typ, id).Scan(&r.Version, &updated, &r.Deleted, &r.Body)
	return s.found(r, updated, err, "read")
}

// VRead returns one version of a resource.
func (s *Store) VRead(ctx context.Context, typ, id string, version int64) (store.Resource, error) {
	if s.isClosed.Load() {
		return store.Resource{}, store.ErrClosed
	}
	r := store.Resource{Type: typ, ID: id, Version: version}
	var updated int64
	if typ == auditType {
		err := sql.ErrNoRows // an AuditEvent has one version
		if version == 1 {
			err = s.rst.readAudit.QueryRowContext(ctx, id).Scan(&updated, &r.Body)
		}
		return s.found(r, updated, err, "vread")
	}
	err := s.rst.vread.QueryRowContext(ctx, typ, id, version).Scan(&updated, &r.Deleted, &r.Body)
	return s.found(r, updated, err, "vread")
}

func (s *Store) found(r store.Resource, updated int64, err error, what string) (store.Resource, error) {
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return store.Resource{}, fmt.Errorf("sqlite: %s %s/%s: %w", what, r.Type, r.ID, store.ErrNotFound)
	case err != nil:
		return store.Resource{}, s.readErr(what, err)
	}
	r.Updated = fromMicros(updated)
	if r.Deleted {
		r.Body = nil
		return r, fmt.Errorf("sqlite: %s %s/%s: %w", what, r.Type, r.ID, store.ErrGone)
	}
	return r, nil
}

// History lists versions newest first. Limit 0 means no limit. AuditEvents
// have no history: they are read and searched (see store.AuditLog).
func (s *Store) History(ctx context.Context, q store.HistoryQuery) ([]store.Resource, error) {
	if s.isClosed.Load() {
		return nil, store.ErrClosed
	}
	var (
		where []string
		args  []any
		order = "updated DESC"
	)
	if q.Type != "" {
		where = append(where, "type = ?")
		args = append(args, q.Type)
		if q.ID != "" {
			where = append(where, "id = ?")
			args = append(args, q.ID)
			order = "version DESC"
		}
	}
	if !q.Since.IsZero() {
		where = append(where, "updated >= ?")
		args = append(args, micros(q.Since))
	}
	var b strings.Builder
	b.WriteString("SELECT type, id, version, updated, deleted, body FROM versions")
	if len(where) > 0 {
		b.WriteString(" WHERE ")
		b.WriteString(strings.Join(where, " AND "))
	}
	b.WriteString(" ORDER BY ")
	b.WriteString(order)
	b.WriteString(" LIMIT ? OFFSET ?")
	limit := int64(q.Limit)
	if limit <= 0 {
		limit = -1
	}
	args = append(args, limit, max(q.Offset, 0))

	st, done, err := s.stmt(ctx, b.String())
	if err != nil {
		return nil, err
	}
	defer done()
	rows, err := st.QueryContext(ctx, args...)
	if err != nil {
		return nil, s.readErr("history", err)
	}
	defer rows.Close()
	var out []store.Resource
	for rows.Next() {
		var (
			r       store.Resource
			updated int64
		)
		if err := rows.Scan(&r.Type, &r.ID, &r.Version, &updated, &r.Deleted, &r.Body); err != nil {
			return nil, s.readErr("history", err)
		}
		r.Updated = fromMicros(updated)
		if r.Deleted {
			r.Body = nil
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, s.readErr("history", err)
	}
	return out, nil
}

// maxCachedStmts bounds the cache of prepared dynamic statements; beyond
// it statements are prepared for one call.
const maxCachedStmts = 512

// stmt returns a prepared statement of the read pool for a dynamic query,
// cached by its text (the shapes are few: they vary only in the number of
// clauses and values). Call done when finished with it.
func (s *Store) stmt(ctx context.Context, query string) (st *sql.Stmt, done func(), err error) {
	s.stmtMu.Lock()
	defer s.stmtMu.Unlock()
	if s.stmts == nil {
		return nil, nil, store.ErrClosed
	}
	if st, ok := s.stmts[query]; ok {
		return st, func() {}, nil
	}
	st, err = s.rdb.PrepareContext(ctx, query)
	if err != nil {
		return nil, nil, s.readErr("prepare", err)
	}
	if len(s.stmts) >= maxCachedStmts {
		return st, func() { st.Close() }, nil
	}
	s.stmts[query] = st
	return st, func() {}, nil
}
