package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"

	"github.com/schakelpunt/schakelpunt/fhir"
	"github.com/schakelpunt/schakelpunt/store"
)

// auditType is the type kept in the audit tables (see auditrows.go).
const auditType = "AuditEvent"

// Searching the audit log. A search either has a driver, the clause whose
// postings, ids or dates (see dateBounds) name the fewest events, at most
// driveLimit: those events are loaded, tested with store.Matches and
// sorted. Or it walks the events in sort order (seq for _lastUpdated, the
// index on (sortdate, id), bounded by the date clauses, for date), tests
// each and stops at the page's end. Every candidate is tested exactly on
// the terms kept beside it, so postings may be coarse (hashed keys, stale
// entries after retention).

// auditHit is an event that matched, before its body is read.
type auditHit struct {
	seq     int64
	id      string
	updated int64
	key     int64 // sort key
}

// searchAudit is Search for AuditEvent.
func (s *Store) searchAudit(ctx context.Context, q store.Query) (store.Page, error) {
	hits, err := s.auditHits(ctx, q, q.Limit)
	if err != nil {
		return store.Page{}, err
	}
	var page store.Page
	if q.Limit > 0 && len(hits) > q.Limit {
		hits = hits[:q.Limit]
		last := hits[len(hits)-1]
		page.Next = &store.Cursor{Key: last.key, ID: last.id}
	}
	if len(hits) == 0 {
		return page, nil
	}
	seqs := make([]int64, len(hits))
	for i, h := range hits {
		seqs[i] = h.seq
	}
	bodies, err := s.auditBodies(ctx, seqs)
	if err != nil {
		return store.Page{}, err
	}
	for _, h := range hits {
		body, ok := bodies[h.seq]
		if !ok {
			continue // removed by retention since
		}
		page.Resources = append(page.Resources, store.Resource{Type: auditType, ID: h.id, Version: 1, Updated: fromMicros(h.updated), Body: body})
	}
	return page, nil
}

// countAudit is Count for AuditEvent.
func (s *Store) countAudit(ctx context.Context, q store.Query) (int, error) {
	if len(q.Clauses) == 0 {
		var n int
		if err := s.rdb.QueryRowContext(ctx, `SELECT COUNT(*) FROM audit_chain`).Scan(&n); err != nil {
			return 0, s.readErr("count", err)
		}
		return n, nil
	}
	q.After, q.Sort = nil, nil
	hits, err := s.auditHits(ctx, q, 0)
	return len(hits), err
}

// auditHits returns the matches of q after its cursor in sort order, at
// most limit+1 of them (all when limit is 0).
func (s *Store) auditHits(ctx context.Context, q store.Query, limit int) ([]auditHit, error) {
	seqs, driven, err := s.auditDriver(ctx, q)
	if err != nil {
		return nil, err
	}
	want := 0
	if limit > 0 {
		want = limit + 1
	}
	desc := q.Sort != nil && q.Sort.Desc
	var hits []auditHit
	keep := func(h auditHit, termBlob []byte) (bool, error) {
		if len(q.Clauses) > 0 || sortByTerms(q.Sort) {
			terms, err := auditTerms(termBlob, h.id, h.updated)
			if err != nil {
				return false, fmt.Errorf("sqlite: AuditEvent/%s: %w", h.id, err)
			}
			if !store.Matches(q.Clauses, terms) {
				return false, nil
			}
			if sortByTerms(q.Sort) {
				h.key = store.SortValue(q.Sort, store.Resource{}, terms)
			}
		}
		if q.After != nil && !afterCursor(h, q.After, desc) {
			return false, nil
		}
		hits = append(hits, h)
		return true, nil
	}
	if driven || sortByTerms(q.Sort) {
		// Load the candidates (all events without a driver), then sort.
		var query string
		var args []any
		if driven {
			query, args = `SELECT seq, id, updated, sortdate, terms FROM audit_chain WHERE seq IN (SELECT value FROM json_each(?))`, []any{seqList(seqs)}
		} else {
			query = `SELECT seq, id, updated, sortdate, terms FROM audit_chain`
		}
		if err := s.walkAudit(ctx, query, args, q.Sort, func(h auditHit, terms []byte) (bool, error) {
			_, err := keep(h, terms)
			return true, err
		}); err != nil {
			return nil, err
		}
		slices.SortFunc(hits, func(a, b auditHit) int {
			c := cmp.Or(cmp.Compare(a.key, b.key), cmp.Compare(a.id, b.id))
			if desc {
				return -c
			}
			return c
		})
		if want > 0 && len(hits) > want {
			hits = hits[:want]
		}
		return hits, nil
	}
	query, args, err := s.auditWalkSQL(ctx, q, desc)
	if err != nil {
		return nil, err
	}
	err = s.walkAudit(ctx, query, args, q.Sort, func(h auditHit, terms []byte) (bool, error) {
		if _, err := keep(h, terms); err != nil {
			return false, err
		}
		return want == 0 || len(hits) < want, nil
	})
	return hits, err
}

// sortByTerms reports whether the sort key is neither lastUpdated nor the
// date kept in sortdate: it is then computed from each event's terms.
func sortByTerms(sort *fhir.SortKey) bool {
	return sort != nil && sort.Param != lastUpdated && sort.Param != auditDateParam
}

func afterCursor(h auditHit, c *store.Cursor, desc bool) bool {
	d := cmp.Or(cmp.Compare(h.key, c.Key), cmp.Compare(h.id, c.ID))
	if desc {
		return d < 0
	}
	return d > 0
}

// auditWalkSQL renders the walk of the events in sort order from the
// cursor.
func (s *Store) auditWalkSQL(ctx context.Context, q store.Query, desc bool) (string, []any, error) {
	dir := ""
	if desc {
		dir = " DESC"
	}
	if q.Sort != nil && q.Sort.Param == auditDateParam {
		// The date clauses bound the walk (see dateBounds).
		lo, hi := fhir.MinTime, fhir.MaxTime
		for _, c := range q.Clauses {
			if l, h, ok := s.dateBounds(c); ok {
				lo, hi = max(lo, l), min(hi, h)
			}
		}
		query := `SELECT seq, id, updated, sortdate, terms FROM audit_chain INDEXED BY audit_chain_date WHERE sortdate >= ? AND sortdate <= ?`
		args := []any{lo, hi}
		if q.After != nil {
			if desc {
				query += ` AND (sortdate, id) < (?, ?)`
			} else {
				query += ` AND (sortdate, id) > (?, ?)`
			}
			args = append(args, q.After.Key, q.After.ID)
		}
		return query + ` ORDER BY sortdate` + dir + `, id` + dir, args, nil
	}
	// lastUpdated: seq order. Its keys are unique, so the cursor's key
	// alone places it.
	if q.After == nil {
		return `SELECT seq, id, updated, sortdate, terms FROM audit_chain ORDER BY seq` + dir, nil, nil
	}
	if desc {
		bound, err := s.auditSeqSince(ctx, q.After.Key)
		return `SELECT seq, id, updated, sortdate, terms FROM audit_chain WHERE seq < ? ORDER BY seq DESC`, []any{bound}, err
	}
	bound, err := s.auditSeqSince(ctx, q.After.Key+1)
	return `SELECT seq, id, updated, sortdate, terms FROM audit_chain WHERE seq >= ? ORDER BY seq`, []any{bound}, err
}

// walkAudit runs a query of (seq, id, updated, sortdate, terms) and hands
// each row to f until f says stop.
func (s *Store) walkAudit(ctx context.Context, query string, args []any, sort *fhir.SortKey, f func(auditHit, []byte) (bool, error)) error {
	st, done, err := s.stmt(ctx, query)
	if err != nil {
		return err
	}
	defer done()
	rows, err := st.QueryContext(ctx, args...)
	if err != nil {
		return s.readErr("search", err)
	}
	defer rows.Close()
	var terms []byte
	for rows.Next() {
		var (
			h        auditHit
			sortdate int64
		)
		if err := rows.Scan(&h.seq, &h.id, &h.updated, &sortdate, &terms); err != nil {
			return s.readErr("search", err)
		}
		h.key = h.updated
		if sort != nil && sort.Param == auditDateParam {
			h.key = sortdate
		}
		more, err := f(h, terms)
		if err != nil {
			return err
		}
		if !more {
			break
		}
	}
	if err := rows.Err(); err != nil {
		return s.readErr("search", err)
	}
	return nil
}

// auditDriver picks the clause that names the fewest events, if it names
// fewer than driveLimit, and returns them.
func (s *Store) auditDriver(ctx context.Context, q store.Query) ([]int64, bool, error) {
	var (
		best   []int64
		found  bool
		bestN  = s.driveLimit
		strsOf = func(c fhir.Clause) ([]string, []int64, bool) {
			if len(c.Strings) == 0 || len(c.Dates) > 0 {
				return nil, nil, false
			}
			var ids []string
			var keys []int64
			for _, t := range c.Strings {
				if id, ok := idTerm(t); ok {
					ids = append(ids, id)
					continue
				}
				k, ok := termKey(t)
				if !ok {
					return nil, nil, false
				}
				if !slices.Contains(keys, k) {
					keys = append(keys, k)
				}
			}
			return ids, keys, true
		}
	)
	for _, c := range q.Clauses {
		if lo, hi, ok := s.dateBounds(c); ok {
			seqs, err := s.auditDated(ctx, lo, hi, bestN)
			if err != nil {
				return nil, false, err
			}
			if len(seqs) < bestN {
				best, bestN, found = seqs, len(seqs), true
			}
			continue
		}
		ids, keys, ok := strsOf(c)
		if !ok {
			continue
		}
		seqs, err := s.auditPostings(ctx, ids, keys, bestN)
		if err != nil {
			return nil, false, err
		}
		if len(seqs) < bestN {
			best, bestN, found = seqs, len(seqs), true
		}
	}
	return best, found, nil
}

// auditPostings returns the events (seqs, distinct) with one of ids or
// one of keys, stopping once it has limit of them.
func (s *Store) auditPostings(ctx context.Context, ids []string, keys []int64, limit int) ([]int64, error) {
	seen := map[int64]bool{}
	var out []int64
	add := func(seq int64) {
		if !seen[seq] {
			seen[seq] = true
			out = append(out, seq)
		}
	}
	for _, id := range ids {
		var seq int64
		err := s.rdb.QueryRowContext(ctx, `SELECT seq FROM audit_chain WHERE id = ?`, id).Scan(&seq)
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return nil, s.readErr("search plan", err)
		default:
			add(seq)
		}
	}
	st, done, err := s.stmt(ctx, `SELECT seq, seqs FROM audit_index WHERE key = ? ORDER BY seq DESC`)
	if err != nil {
		return nil, err
	}
	defer done()
	var buf []int64
	for _, k := range keys {
		if len(out) >= limit {
			break
		}
		err := func() error {
			rows, err := st.QueryContext(ctx, k)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() && len(out) < limit {
				var first int64
				var blob []byte
				if err := rows.Scan(&first, &blob); err != nil {
					return err
				}
				if buf, err = decodeSeqs(buf[:0], first, blob); err != nil {
					return err
				}
				for _, seq := range buf {
					add(seq)
				}
			}
			return rows.Err()
		}()
		for _, seq := range s.tail.seqs(buf[:0], k) {
			add(seq)
		}
		if err != nil {
			return nil, s.readErr("search plan", err)
		}
	}
	return out, nil
}

// auditDated returns the events with sortdate in [lo, hi], at most limit.
func (s *Store) auditDated(ctx context.Context, lo, hi int64, limit int) ([]int64, error) {
	st, done, err := s.stmt(ctx, `SELECT seq FROM audit_chain INDEXED BY audit_chain_date WHERE sortdate >= ? AND sortdate <= ? LIMIT ?`)
	if err != nil {
		return nil, err
	}
	defer done()
	rows, err := st.QueryContext(ctx, lo, hi, limit)
	if err != nil {
		return nil, s.readErr("search plan", err)
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var seq int64
		if err := rows.Scan(&seq); err != nil {
			return nil, s.readErr("search plan", err)
		}
		out = append(out, seq)
	}
	if err := rows.Err(); err != nil {
		return nil, s.readErr("search plan", err)
	}
	return out, nil
}

// auditBodies reads the bodies of events by seq.
func (s *Store) auditBodies(ctx context.Context, seqs []int64) (map[int64][]byte, error) {
	st, done, err := s.stmt(ctx, `SELECT seq, body FROM audit_chain WHERE seq IN (SELECT value FROM json_each(?))`)
	if err != nil {
		return nil, err
	}
	defer done()
	rows, err := st.QueryContext(ctx, seqList(seqs))
	if err != nil {
		return nil, s.readErr("search", err)
	}
	defer rows.Close()
	out := make(map[int64][]byte, len(seqs))
	for rows.Next() {
		var seq int64
		var body []byte
		if err := rows.Scan(&seq, &body); err != nil {
			return nil, s.readErr("search", err)
		}
		out[seq] = body
	}
	if err := rows.Err(); err != nil {
		return nil, s.readErr("search", err)
	}
	return out, nil
}

// auditSeqSince returns the first seq of an event stored at or after us
// (lastUpdated, µs), or one past the last event: seq order is lastUpdated
// order, so a binary search over seq finds it without an index.
func (s *Store) auditSeqSince(ctx context.Context, us int64) (int64, error) {
	var lo, hi sql.NullInt64
	if err := s.rdb.QueryRowContext(ctx, `SELECT MIN(seq), MAX(seq) FROM audit_chain`).Scan(&lo, &hi); err != nil {
		return 0, s.readErr("audit since", err)
	}
	if !lo.Valid {
		return 0, nil
	}
	// Invariant: every event before lo is older than us; the event at or
	// after end (if any) is not.
	l, end := lo.Int64, hi.Int64+1
	for l < end {
		mid := l + (end-l)/2
		var updated int64
		err := s.rst.auditUpdated.QueryRowContext(ctx, mid).Scan(&updated)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			end = mid
			continue
		case err != nil:
			return 0, s.readErr("audit since", err)
		}
		if updated >= us {
			end = mid
		} else {
			l = mid + 1
		}
	}
	return l, nil
}
