package sqlite

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/schakelpunt/schakelpunt/fhir"
	"github.com/schakelpunt/schakelpunt/store"
)

type opKind uint8

const (
	opCreate opKind = iota + 1
	opUpdate
	opDelete
	opAudit // append chained audit records (audit.go)
	opPurge // retention: remove old audit records (audit.go)
)

// op is one write waiting for the writer goroutine.
type op struct {
	ctx     context.Context
	kind    opKind
	w       store.Write // for a delete only Type and ID
	ifMatch int64
	audit   []auditRow  // opAudit
	cutoff  int64       // opPurge: recorded before (µs)
	done    chan result // buffered: the writer never blocks on a waiter
}

type result struct {
	res store.Resource
	n   int // opPurge: records removed
	err error
}

// Create stores version 1 of a new resource.
func (s *Store) Create(ctx context.Context, w store.Write) (store.Resource, error) {
	return s.submit(ctx, opCreate, w, 0)
}

// Update stores the next version of a resource, creating it if needed.
func (s *Store) Update(ctx context.Context, w store.Write, ifMatch int64) (store.Resource, error) {
	return s.submit(ctx, opUpdate, w, ifMatch)
}

// Delete stores a deletion marker as the next version.
func (s *Store) Delete(ctx context.Context, typ, id string, ifMatch int64) (store.Resource, error) {
	return s.submit(ctx, opDelete, store.Write{Type: typ, ID: id}, ifMatch)
}

// submit queues a write and waits for its outcome. When ctx ends first the
// caller gets ctx's error; the write may still have been committed.
func (s *Store) submit(ctx context.Context, kind opKind, w store.Write, ifMatch int64) (store.Resource, error) {
	if w.Type == "" || w.ID == "" {
		return store.Resource{}, errors.New("sqlite: a write needs a type and an id")
	}
	if w.Type == auditType {
		return store.Resource{}, errors.New("sqlite: AuditEvents are written only through AppendAudit")
	}
	if err := ctx.Err(); err != nil {
		return store.Resource{}, err
	}
	r := s.do(ctx, &op{ctx: ctx, kind: kind, w: w, ifMatch: ifMatch})
	return r.res, r.err
}

// do queues an op and waits for its result.
func (s *Store) do(ctx context.Context, o *op) result {
	o.done = make(chan result, 1)
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return result{err: store.ErrClosed}
	}
	if len(s.queue) == 0 && s.wmu.TryLock() {
		// The writer is idle: commit here, sparing the hand-offs to the
		// writer goroutine and back. Close waits for this (s.mu).
		s.commit([]*op{o})
		s.wmu.Unlock()
		s.mu.RUnlock()
		return <-o.done // answered by the commit
	}
	select {
	case s.queue <- o:
	case <-ctx.Done():
		s.mu.RUnlock()
		return result{err: ctx.Err()}
	}
	s.mu.RUnlock()
	select {
	case r := <-o.done:
		return r
	case <-ctx.Done():
		return result{err: ctx.Err()}
	}
}

// run is the writer goroutine: it commits queued writes in groups until
// the queue is closed and drained.
func (s *Store) run() {
	defer close(s.stopped)
	batch := make([]*op, 0, s.batch)
	for first := range s.queue {
		batch = append(batch[:0], first)
	fill:
		for len(batch) < s.batch {
			select {
			case o, ok := <-s.queue:
				if !ok {
					break fill
				}
				batch = append(batch, o)
			default:
				break fill
			}
		}
		s.wmu.Lock()
		s.commit(batch)
		s.wmu.Unlock()
		clear(batch)
	}
}

// commit applies a batch in one transaction and answers its waiters.
func (s *Store) commit(batch []*op) {
	ctx := context.Background()
	start := time.Now()
	results := make([]result, len(batch))
	fail := func(err error) {
		for i := range results {
			if results[i].err == nil {
				results[i] = result{err: err}
			}
		}
	}
	if _, err := s.wst.begin.ExecContext(ctx); err != nil {
		fail(fmt.Errorf("sqlite: begin: %w", err))
	} else {
		for i, o := range batch {
			if err := o.ctx.Err(); err != nil {
				results[i].err = err // the waiter is gone; do not write
				continue
			}
			results[i] = s.applyOne(ctx, o)
		}
		if _, err := s.wst.commit.ExecContext(ctx); err != nil {
			s.log.Error("commit failed", "writes", len(batch), "err", err)
			s.listed = nil
			s.tailLost = true
			s.headKnown = false
			if _, rerr := s.wst.rollback.ExecContext(ctx); rerr != nil {
				s.log.Error("rollback failed", "err", rerr)
			}
			fail(fmt.Errorf("sqlite: commit: %w", err))
		} else {
			s.advance(batch)
		}
	}
	s.log.Debug("write batch", "writes", len(batch), "took", time.Since(start))
	for i, o := range batch {
		o.done <- results[i]
	}
}

// applyOne applies one write inside its own savepoint.
func (s *Store) applyOne(ctx context.Context, o *op) result {
	if _, err := s.wst.savepoint.ExecContext(ctx); err != nil {
		return result{err: fmt.Errorf("sqlite: savepoint: %w", err)}
	}
	var (
		res store.Resource
		n   int
		err error
	)
	switch o.kind {
	case opAudit:
		err = s.applyAudit(ctx, o.audit)
	case opPurge:
		n, err = s.applyPurge(ctx, o.cutoff)
	default:
		res, err = s.apply(ctx, o)
	}
	if err != nil {
		if !refused(err) {
			s.listed = nil // it may list what the rollback undoes
		}
		if o.kind == opAudit {
			s.tailLost = true   // it may have flushed postings the rollback undoes
			s.headKnown = false // it may have moved the head the rollback restores
		}
		if _, rerr := s.wst.rollbackTo.ExecContext(ctx); rerr != nil {
			err = errors.Join(err, fmt.Errorf("sqlite: rollback to savepoint: %w", rerr))
		}
	}
	if _, rerr := s.wst.release.ExecContext(ctx); rerr != nil && err == nil {
		err = fmt.Errorf("sqlite: release savepoint: %w", rerr)
	}
	if err != nil {
		return result{err: err}
	}
	return result{res: res, n: n}
}

// refused reports whether a write was refused by the contract's rules,
// before it changed anything.
func refused(err error) bool {
	return errors.Is(err, store.ErrExists) || errors.Is(err, store.ErrVersionConflict) || errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrChainConflict)
}

// nextUpdated returns a lastUpdated after every one assigned before, so
// that commit order and lastUpdated order agree.
func (s *Store) nextUpdated() time.Time {
	us := micros(s.now())
	if us <= s.last {
		us = s.last + 1
	}
	s.last = us
	return fromMicros(us)
}

// apply performs one write; it returns a sentinel error (wrapped) when the
// write is refused, before it has changed anything.
func (s *Store) apply(ctx context.Context, o *op) (store.Resource, error) {
	typ, id := o.w.Type, o.w.ID
	var (
		cur        int64
		curUpdated int64
		curDeleted bool
		exists     = true
	)
	err := s.wst.selCurrent.QueryRowContext(ctx, typ, id).Scan(&cur, &curUpdated, &curDeleted)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		exists = false
	case err != nil:
		return store.Resource{}, fmt.Errorf("sqlite: read current %s/%s: %w", typ, id, err)
	}
	switch o.kind {
	case opCreate:
		if exists {
			return store.Resource{}, fmt.Errorf("sqlite: create %s/%s: %w", typ, id, store.ErrExists)
		}
	case opUpdate:
		if o.ifMatch > 0 && (!exists || cur != o.ifMatch) {
			return store.Resource{}, fmt.Errorf("sqlite: update %s/%s: version is %d, not %d: %w", typ, id, cur, o.ifMatch, store.ErrVersionConflict)
		}
	case opDelete:
		if !exists {
			return store.Resource{}, fmt.Errorf("sqlite: delete %s/%s: %w", typ, id, store.ErrNotFound)
		}
		if o.ifMatch > 0 && cur != o.ifMatch {
			return store.Resource{}, fmt.Errorf("sqlite: delete %s/%s: version is %d, not %d: %w", typ, id, cur, o.ifMatch, store.ErrVersionConflict)
		}
		if curDeleted {
			return store.Resource{Type: typ, ID: id, Version: cur, Updated: fromMicros(curUpdated), Deleted: true}, nil
		}
	}

	version := cur + 1
	updated := s.nextUpdated()
	var (
		res   store.Resource
		terms fhir.Terms
		lu    fhir.DateRange
	)
	if o.kind == opDelete {
		res = store.Resource{Type: typ, ID: id, Version: version, Updated: updated, Deleted: true}
	} else {
		res, terms, err = store.Stamp(o.w, version, updated)
		if err != nil {
			return store.Resource{}, fmt.Errorf("sqlite: stamp %s/%s: %w", typ, id, err)
		}
		lu, err = splitTerms(&terms)
		if err != nil {
			return store.Resource{}, fmt.Errorf("sqlite: %s/%s: %w", typ, id, err)
		}
	}

	if !res.Deleted {
		for _, p := range s.dateParams(typ) {
			if err := s.ensureSortKeys(ctx, typ, p); err != nil {
				return store.Resource{}, err
			}
		}
	}
	if exists && !curDeleted {
		if err := s.dropSortKeys(ctx, typ, id); err != nil {
			return store.Resource{}, err
		}
		if err := s.dropTerms(ctx, typ, id, curUpdated); err != nil {
			return store.Resource{}, err
		}
	}
	var termList []byte
	if !res.Deleted {
		termList = encodeTerms(terms.Strings)
	}
	if _, err := s.wst.insVersion.ExecContext(ctx, micros(updated), typ, id, version, res.Deleted, nullBytes(res.Body), nullBytes(termList)); err != nil {
		return store.Resource{}, fmt.Errorf("sqlite: insert version %s/%s/%d: %w", typ, id, version, err)
	}
	if _, err := s.wst.upsCurrent.ExecContext(ctx, typ, id, version, micros(updated), res.Deleted, lu.Lo, lu.Hi); err != nil {
		return store.Resource{}, fmt.Errorf("sqlite: set current %s/%s: %w", typ, id, err)
	}
	if !res.Deleted {
		if err := s.insertTerms(ctx, typ, id, terms); err != nil {
			return store.Resource{}, err
		}
		if err := s.insertSortKeys(ctx, typ, id, terms.Dates); err != nil {
			return store.Resource{}, err
		}
	}
	return res, nil
}

// encodeTerms encodes the list kept in versions.terms: each string as its
// length (uvarint) and its bytes.
func encodeTerms(strs []string) []byte {
	n := 0
	for _, t := range strs {
		n += binary.MaxVarintLen64 + len(t)
	}
	b := make([]byte, 0, n)
	for _, t := range strs {
		b = binary.AppendUvarint(b, uint64(len(t)))
		b = append(b, t...)
	}
	return b
}

func decodeTerms(b []byte) ([]string, error) {
	var strs []string
	for len(b) > 0 {
		n, k := binary.Uvarint(b)
		if k <= 0 || uint64(len(b)-k) < n {
			return nil, errors.New("corrupt term list")
		}
		strs = append(strs, string(b[k:k+int(n)]))
		b = b[k+int(n):]
	}
	return strs, nil
}

// rowsPerInsert is the most rows one INSERT of terms or dates carries.
const rowsPerInsert = 16

// insertTerms puts a version's terms in the term tables, many rows per
// statement.
func (s *Store) insertTerms(ctx context.Context, typ, id string, terms fhir.Terms) error {
	for strs := terms.Strings; len(strs) > 0; {
		n := min(len(strs), rowsPerInsert)
		args := s.wargs[:0]
		for _, t := range strs[:n] {
			args = append(args, typ, t, id)
		}
		st, err := s.wst.multi(ctx, s.wconn, &s.wst.insTerms, n, "INSERT OR IGNORE INTO terms (type, term, id) VALUES ", "(?, ?, ?)")
		if err == nil {
			_, err = st.ExecContext(ctx, args...)
		}
		if err != nil {
			return fmt.Errorf("sqlite: insert terms %s/%s: %w", typ, id, err)
		}
		s.wargs = args[:0]
		strs = strs[n:]
	}
	for dates := terms.Dates; len(dates) > 0; {
		n := min(len(dates), rowsPerInsert)
		args := s.wargs[:0]
		for _, d := range dates[:n] {
			args = append(args, typ, d.Param, d.Lo, d.Hi, id)
		}
		st, err := s.wst.multi(ctx, s.wconn, &s.wst.insDates, n, "INSERT OR IGNORE INTO dates (type, param, lo, hi, id) VALUES ", "(?, ?, ?, ?, ?)")
		if err == nil {
			_, err = st.ExecContext(ctx, args...)
		}
		if err != nil {
			return fmt.Errorf("sqlite: insert dates %s/%s: %w", typ, id, err)
		}
		s.wargs = args[:0]
		dates = dates[n:]
	}
	return nil
}

// dropTerms takes the terms of the version stored at updated out of the
// term tables.
func (s *Store) dropTerms(ctx context.Context, typ, id string, updated int64) error {
	var raw []byte
	if err := s.wst.selTerms.QueryRowContext(ctx, updated).Scan(&raw); err != nil {
		return fmt.Errorf("sqlite: terms of %s/%s: %w", typ, id, err)
	}
	strs, err := decodeTerms(raw)
	if err != nil {
		return fmt.Errorf("sqlite: terms of %s/%s: %w", typ, id, err)
	}
	for _, term := range strs {
		if _, err := s.wst.delTerm.ExecContext(ctx, typ, term, id); err != nil {
			return fmt.Errorf("sqlite: drop terms %s/%s: %w", typ, id, err)
		}
	}
	if _, err := s.wst.delDates.ExecContext(ctx, typ, id); err != nil {
		return fmt.Errorf("sqlite: drop dates %s/%s: %w", typ, id, err)
	}
	return nil
}

// splitTerms takes out of terms those kept outside the term tables: the
// _lastUpdated range (returned; store.Stamp gives each version exactly
// one) and the _id terms (searched on the id itself).
func splitTerms(terms *fhir.Terms) (fhir.DateRange, error) {
	var (
		lu    fhir.DateRange
		found int
	)
	dates := terms.Dates[:0]
	for _, d := range terms.Dates {
		if d.Param == lastUpdated {
			lu = d.DateRange
			found++
			continue
		}
		dates = append(dates, d)
	}
	if found != 1 {
		return lu, fmt.Errorf("%d _lastUpdated terms, want 1", found)
	}
	terms.Dates = dates
	strs := terms.Strings[:0]
	for _, t := range terms.Strings {
		if _, ok := idTerm(t); !ok {
			strs = append(strs, t)
		}
	}
	terms.Strings = strs
	return lu, nil
}

const lastUpdated = "_lastUpdated"

// The forms of _id terms (store.Stamp adds both, and only these).
var (
	idCodePrefix     = fhir.TermCode("_id", "")
	idNoSystemPrefix = fhir.TermNoSystem("_id", "")
)

// idTerm reports whether t is an _id term, and the id it names.
func idTerm(t string) (string, bool) {
	if id, ok := strings.CutPrefix(t, idCodePrefix); ok {
		return id, true
	}
	if id, ok := strings.CutPrefix(t, idNoSystemPrefix); ok {
		return id, true
	}
	return "", false
}

func nullBytes(b []byte) any {
	if b == nil {
		return nil
	}
	return b
}

// writeStmts are prepared on the writer's connection.
type writeStmts struct {
	begin, commit, rollback        *sql.Stmt
	savepoint, rollbackTo, release *sql.Stmt
	selCurrent, selTerms           *sql.Stmt
	selListed, insListed, backfill *sql.Stmt
	selKey, delKey, insKey         *sql.Stmt
	insVersion, upsCurrent         *sql.Stmt
	delTerm, delDates              *sql.Stmt
	insBatch, delPosting           *sql.Stmt
	selMark, upsMark               *sql.Stmt
	insHead, casHead               *sql.Stmt
	insTerms, insDates             [rowsPerInsert + 1]*sql.Stmt // by number of rows
	insAudit, insPosting           [rowsPerInsert + 1]*sql.Stmt // by number of rows
	all                            []*sql.Stmt
}

// multi returns the statement inserting n rows, preparing it on first use.
func (w *writeStmts) multi(ctx context.Context, conn *sql.Conn, cache *[rowsPerInsert + 1]*sql.Stmt, n int, head, row string) (*sql.Stmt, error) {
	if st := cache[n]; st != nil {
		return st, nil
	}
	q := head + strings.Repeat(row+", ", n-1) + row
	st, err := conn.PrepareContext(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("prepare %q: %w", q, err)
	}
	cache[n] = st
	w.all = append(w.all, st)
	return st, nil
}

func (w *writeStmts) prepare(ctx context.Context, conn *sql.Conn) error {
	for _, p := range []struct {
		dst **sql.Stmt
		sql string
	}{
		{&w.begin, `BEGIN IMMEDIATE`},
		{&w.commit, `COMMIT`},
		{&w.rollback, `ROLLBACK`},
		{&w.savepoint, `SAVEPOINT op`},
		{&w.rollbackTo, `ROLLBACK TO op`},
		{&w.release, `RELEASE op`},
		{&w.selCurrent, `SELECT version, updated, deleted FROM current WHERE type = ? AND id = ?`},
		{&w.selTerms, `SELECT terms FROM versions WHERE updated = ?`},
		{&w.insVersion, `INSERT INTO versions (updated, type, id, version, deleted, body, terms) VALUES (?, ?, ?, ?, ?, ?, ?)`},
		{&w.upsCurrent, `INSERT INTO current (type, id, version, updated, deleted, lu_lo, lu_hi) VALUES (?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (type, id) DO UPDATE SET version = excluded.version, updated = excluded.updated,
			deleted = excluded.deleted, lu_lo = excluded.lu_lo, lu_hi = excluded.lu_hi`},
		{&w.delTerm, `DELETE FROM terms WHERE type = ? AND term = ? AND id = ?`},
		{&w.selListed, `SELECT type, param FROM sortparams`},
		{&w.insListed, `INSERT INTO sortparams (type, param) VALUES (?, ?)`},
		{&w.backfill, `INSERT OR IGNORE INTO sortkeys (type, param, key, id)
			SELECT c.type, ?, COALESCE((SELECT MIN(d.lo) FROM dates d WHERE d.type = c.type AND d.id = c.id AND d.param = ?), ?), c.id
			FROM current c WHERE c.type = ? AND c.deleted = 0`},
		{&w.selKey, `SELECT COALESCE(MIN(lo), ?) FROM dates WHERE type = ? AND id = ? AND param = ?`},
		{&w.delKey, `DELETE FROM sortkeys WHERE type = ? AND param = ? AND key = ? AND id = ?`},
		{&w.insKey, `INSERT OR IGNORE INTO sortkeys (type, param, key, id) VALUES (?, ?, ?, ?)`},
		{&w.delDates, `DELETE FROM dates WHERE type = ? AND id = ?`},
		{&w.insBatch, `INSERT INTO audit_batches (first, last, keys) VALUES (?, ?, ?)`},
		{&w.delPosting, `DELETE FROM audit_index WHERE key = ? AND seq = ?`},
		{&w.selMark, selMarkSQL},
		{&w.upsMark, upsMarkSQL},
		{&w.insHead, insHeadSQL},
		{&w.casHead, casHeadSQL},
	} {
		st, err := conn.PrepareContext(ctx, p.sql)
		if err != nil {
			return fmt.Errorf("sqlite: prepare %q: %w", p.sql, err)
		}
		*p.dst = st
		w.all = append(w.all, st)
	}
	return nil
}

func (w *writeStmts) close() {
	for _, st := range w.all {
		st.Close()
	}
}

// Generation changes whenever a write of a resource of typ commits,
// before the write is acknowledged: a reader that saw the same
// generation before and after reading read nothing older than the last
// acknowledged write. AuditEvents do not count.
func (s *Store) Generation(typ string) uint64 {
	if g, ok := s.gens.Load(typ); ok {
		return g.(*atomic.Uint64).Load()
	}
	return 0
}

// advance moves the generation of the types a committed batch wrote
// (writer goroutine, before the waiters are answered).
func (s *Store) advance(batch []*op) {
	for _, o := range batch {
		switch o.kind {
		case opCreate, opUpdate, opDelete:
			g, _ := s.gens.LoadOrStore(o.w.Type, new(atomic.Uint64))
			g.(*atomic.Uint64).Add(1)
		}
	}
}
