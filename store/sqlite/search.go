package sqlite

import (
	"context"
	"errors"
	"strings"

	"github.com/schakelpunt/schakelpunt/fhir"
	"github.com/schakelpunt/schakelpunt/store"
)

// Search returns one page of the current, not deleted resources matching
// q. Limit 0 means no limit.
func (s *Store) Search(ctx context.Context, q store.Query) (store.Page, error) {
	if s.isClosed.Load() {
		return store.Page{}, store.ErrClosed
	}
	if q.Type == auditType {
		return s.searchAudit(ctx, q)
	}
	page, _, err := s.searchPlanned(ctx, q)
	return page, err
}

// searchPlanned runs a search (not of AuditEvents) and returns the clause
// that drove it, or -1 (see plan).
func (s *Store) searchPlanned(ctx context.Context, q store.Query) (store.Page, int, error) {
	if d := soleDrivable(q); d >= 0 && s.driveLimit > 0 {
		// The common case: one statement counts the clause's index rows
		// and, under the limit, runs the driven search (see probeSQL).
		query, args := probeSQL(q, d, s.driveLimit)
		page, driven, err := s.search(ctx, q, query, args, s.driveLimit)
		if err != nil || driven {
			return page, d, err
		}
		page, err = s.searchBy(ctx, q, -1)
		return page, -1, err
	}
	driver, err := s.plan(ctx, q)
	if err != nil {
		return store.Page{}, -1, err
	}
	page, err := s.searchBy(ctx, q, driver)
	return page, driver, err
}

// searchBy runs the search of q driven by clause driver, or by the sort
// order when driver < 0.
func (s *Store) searchBy(ctx context.Context, q store.Query, driver int) (store.Page, error) {
	keyed := false
	if driver < 0 && q.Sort != nil && q.Sort.Param != lastUpdated && !s.noSortKeys {
		var err error
		if keyed, err = s.rlisted.has(ctx, q.Type, q.Sort.Param); err != nil {
			return store.Page{}, s.readErr("search", err)
		}
	}
	query, args := searchSQL(q, driver, keyed)
	page, _, err := s.search(ctx, q, query, args, 0)
	return page, err
}

// search runs a search statement and reads its page. With limit > 0 the
// statement is a probe (see probeSQL): its first row carries the count of
// the driving clause's index rows, and when that reaches limit search
// reads no further and returns driven false.
func (s *Store) search(ctx context.Context, q store.Query, query string, args []any, limit int) (page store.Page, driven bool, err error) {
	st, done, err := s.stmt(ctx, query)
	if err != nil {
		return store.Page{}, false, err
	}
	defer done()
	rows, err := st.QueryContext(ctx, args...)
	if err != nil {
		return store.Page{}, false, s.readErr("search", err)
	}
	defer rows.Close()
	var (
		keys    []int64
		counted = limit <= 0
	)
	for rows.Next() {
		var (
			r       = store.Resource{Type: q.Type}
			updated int64
			key     int64
		)
		if err := rows.Scan(&r.ID, &r.Version, &updated, &r.Body, &key); err != nil {
			return store.Page{}, false, s.readErr("search", err)
		}
		if !counted {
			if r.ID != "" {
				return store.Page{}, false, s.readErr("search", errNoCount)
			}
			if key >= int64(limit) {
				return store.Page{}, false, nil
			}
			counted = true
			continue
		}
		r.Updated = fromMicros(updated)
		page.Resources = append(page.Resources, r)
		keys = append(keys, key)
	}
	if err := rows.Err(); err != nil {
		return store.Page{}, false, s.readErr("search", err)
	}
	if !counted {
		return store.Page{}, false, s.readErr("search", errNoCount)
	}
	if q.Limit > 0 && len(page.Resources) > q.Limit {
		page.Resources = page.Resources[:q.Limit]
		last := q.Limit - 1
		page.Next = &store.Cursor{Key: keys[last], ID: page.Resources[last].ID}
	}
	return page, true, nil
}

// errNoCount is a probe whose first row is not the count.
var errNoCount = errors.New("the search returned no count of the driving clause first")

// Count counts the matches of q over all pages (Limit and After ignored).
func (s *Store) Count(ctx context.Context, q store.Query) (int, error) {
	if s.isClosed.Load() {
		return 0, store.ErrClosed
	}
	if q.Type == auditType {
		return s.countAudit(ctx, q)
	}
	driver, err := s.plan(ctx, q)
	if err != nil {
		return 0, err
	}
	var b sqlBuilder
	b.WriteString("SELECT COUNT(*)")
	b.from(q, driver)
	st, done, err := s.stmt(ctx, b.String())
	if err != nil {
		return 0, err
	}
	defer done()
	var n int
	if err := st.QueryRowContext(ctx, b.args...).Scan(&n); err != nil {
		return 0, s.readErr("count", err)
	}
	return n, nil
}

// driveLimit is the most matching index rows for which a clause drives
// a search (see plan).
const driveLimit = 2000

// plan picks the clause that drives a search, or -1. SQLite cannot know
// how many resources a clause matches: an identifier names one, a status
// half of them. Left to itself it walks the resources in sort order and
// tests each, which is right for a common term and slow for a rare one.
// So plan counts, up to driveLimit, the index rows each clause of string
// terms or of dates matches, and the rarest clause under the limit drives:
// its index rows are looked up first and the other clauses tested on the
// resources they name. For a query with one such clause Search does not
// call plan: the count is the first row of the search's own statement
// (see probeSQL).
func (s *Store) plan(ctx context.Context, q store.Query) (int, error) {
	best, bestN := -1, s.driveLimit
	if bestN <= 0 {
		return -1, nil // nothing drives
	}
	for i, c := range q.Clauses {
		if !drivable(c) {
			continue
		}
		var b sqlBuilder
		b.WriteString("SELECT COUNT(*) FROM (")
		b.source(q.Type, c, "1")
		b.WriteString(" LIMIT ")
		b.arg(bestN)
		b.WriteString(")")
		st, done, err := s.stmt(ctx, b.String())
		if err != nil {
			return 0, err
		}
		var n int
		err = st.QueryRowContext(ctx, b.args...).Scan(&n)
		done()
		if err != nil {
			return 0, s.readErr("search plan", err)
		}
		if n < bestN {
			best, bestN = i, n
		}
	}
	return best, nil
}

// soleDrivable returns the index of q's one drivable clause, or -1 when
// it has none or more than one.
func soleDrivable(q store.Query) int {
	sole := -1
	for i, c := range q.Clauses {
		if drivable(c) {
			if sole >= 0 {
				return -1
			}
			sole = i
		}
	}
	return sole
}

// drivable reports whether a clause can drive a search: string terms only
// (no _id), or dates only (not _lastUpdated, kept in current).
func drivable(c fhir.Clause) bool {
	switch {
	case len(c.Strings) > 0 && len(c.Dates) == 0:
		for _, t := range c.Strings {
			if _, ok := idTerm(t); ok {
				return false
			}
		}
		return true
	case len(c.Dates) > 0 && len(c.Strings) == 0:
		return c.Param != lastUpdated
	}
	return false
}

// source renders the index rows a drivable clause matches:
// SELECT <what> FROM terms|dates WHERE ...
func (b *sqlBuilder) source(typ string, c fhir.Clause, what string) {
	b.WriteString("SELECT ")
	b.WriteString(what)
	if len(c.Strings) > 0 {
		b.WriteString(" FROM terms WHERE type = ")
		b.arg(typ)
		b.WriteString(" AND term")
		b.in(c.Strings)
		return
	}
	b.WriteString(" FROM dates WHERE type = ")
	b.arg(typ)
	b.WriteString(" AND param = ")
	b.arg(c.Param)
	b.WriteString(" AND ")
	b.dates(c.Dates, "lo", "hi")
}

// sqlBuilder is SQL text with its arguments.
type sqlBuilder struct {
	strings.Builder
	args []any
}

// newSQLBuilder returns a builder with room for a typical search.
func newSQLBuilder() *sqlBuilder {
	b := &sqlBuilder{args: make([]any, 0, 8)}
	b.Grow(512)
	return b
}

func (b *sqlBuilder) arg(v any) {
	b.WriteByte('?')
	b.args = append(b.args, v)
}

// searchSQL renders a search, keyset-paged on (sort key, id):
//
//	SELECT id, version, updated, body, k FROM (
//	  SELECT c.id, c.version, c.updated, <sort key> AS k FROM current c
//	  WHERE c.type = ? AND c.deleted = 0 [AND c.id IN (<driver>)] AND <clause> AND ...
//	) x JOIN versions v ON v.updated = x.updated
//	WHERE (k, id) > (?, ?)
//	ORDER BY k, id LIMIT ?
//
// The sort key follows store.SortValue: lastUpdated, or the earliest start
// of the sort parameter's date terms (fhir.MinTime when there is none).
// Without a driver the search walks an index in sort order from the
// cursor and stops at the limit: current_updated for _lastUpdated, or,
// when keyed (the parameter's sort keys are complete), sortkeys. With a
// driver, or a parameter without complete keys, the key is computed per
// match and the matches sorted.
func searchSQL(q store.Query, driver int, keyed bool) (string, []any) {
	b := newSQLBuilder()
	b.search(q, driver, keyed)
	return b.String(), b.args
}

// probeSQL renders the search of q driven by its only drivable clause d
// after the count of d's index rows up to limit (as plan counts them), in
// one statement:
//
//	SELECT '', 0, 0, NULL, COUNT(*) FROM (<d's index rows> LIMIT ?)
//	UNION ALL SELECT * FROM (<searchSQL driven by d>)
//
// SQLite runs the arms of a UNION ALL one after the other, so the count
// comes first and the driven search runs only when the caller reads on,
// which it does when the count is under limit (see Store.search).
func probeSQL(q store.Query, d, limit int) (string, []any) {
	b := newSQLBuilder()
	b.WriteString("SELECT '', 0, 0, NULL, COUNT(*) FROM (")
	b.source(q.Type, q.Clauses[d], "1")
	b.WriteString(" LIMIT ")
	b.arg(limit)
	b.WriteString(") UNION ALL SELECT * FROM (")
	b.search(q, d, false)
	if q.Limit <= 0 {
		b.WriteString(" LIMIT -1") // keeps the search a subquery, in its order
	}
	b.WriteString(")")
	return b.String(), b.args
}

// search renders searchSQL.
func (b *sqlBuilder) search(q store.Query, driver int, keyed bool) {
	desc := q.Sort != nil && q.Sort.Desc
	byUpdated := q.Sort == nil || q.Sort.Param == lastUpdated
	b.WriteString("SELECT x.id, x.version, x.updated, v.body, x.k FROM (SELECT ")
	switch {
	case byUpdated && driver >= 0:
		b.WriteString("c.id, c.version, c.updated, c.updated + 0 AS k") // not the index: the driver goes first
		b.from(q, driver)
	case byUpdated:
		b.WriteString("c.id, c.version, c.updated, c.updated AS k")
		b.from(q, driver)
	case keyed && driver < 0:
		b.WriteString("s.id AS id, c.version, c.updated, s.key AS k FROM sortkeys s CROSS JOIN current c WHERE s.type = ")
		b.arg(q.Type)
		b.WriteString(" AND s.param = ")
		b.arg(q.Sort.Param)
		b.WriteString(" AND c.type = s.type AND c.id = s.id AND c.deleted = 0")
		for _, c := range q.Clauses {
			b.WriteString(" AND ")
			b.clause(q.Type, c)
		}
	default:
		b.WriteString("c.id, c.version, c.updated, COALESCE((SELECT MIN(d.lo) FROM dates d WHERE d.type = c.type AND d.id = c.id AND d.param = ")
		b.arg(q.Sort.Param)
		b.WriteString("), ")
		b.arg(fhir.MinTime)
		b.WriteString(") AS k")
		b.from(q, driver)
	}
	b.WriteString(") x JOIN versions v ON v.updated = x.updated")
	if q.After != nil {
		if desc {
			b.WriteString(" WHERE (x.k, x.id) < (")
		} else {
			b.WriteString(" WHERE (x.k, x.id) > (")
		}
		b.arg(q.After.Key)
		b.WriteString(", ")
		b.arg(q.After.ID)
		b.WriteString(")")
	}
	if desc {
		b.WriteString(" ORDER BY x.k DESC, x.id DESC")
	} else {
		b.WriteString(" ORDER BY x.k, x.id")
	}
	if q.Limit > 0 {
		b.WriteString(" LIMIT ")
		b.arg(q.Limit + 1) // one more tells whether there is a next page
	}
}

// from renders the FROM and WHERE of a search: current c of the type, not
// deleted, matching every clause. A driving clause (see plan) is an IN
// (subquery) on c's primary key; the caller keeps SQLite from preferring
// an index that yields the sort order (see searchSQL).
func (b *sqlBuilder) from(q store.Query, driver int) {
	b.WriteString(" FROM current c WHERE c.type = ")
	b.arg(q.Type)
	b.WriteString(" AND c.deleted = 0")
	if driver >= 0 {
		b.WriteString(" AND c.id IN (")
		b.source(q.Type, q.Clauses[driver], "id")
		b.WriteString(")")
	}
	for i, c := range q.Clauses {
		if i != driver {
			b.WriteString(" AND ")
			b.clause(q.Type, c)
		}
	}
}

// clause renders one clause as a test of resource c: its string terms and
// its date conditions are alternatives, as in store.Matches. _id terms are
// matched on the id and _lastUpdated on current's lu_lo and lu_hi (see
// splitTerms); the others are point lookups in the term tables.
func (b *sqlBuilder) clause(typ string, c fhir.Clause) {
	var ids, terms []string
	for _, s := range c.Strings {
		if id, ok := idTerm(s); ok {
			ids = append(ids, id)
		} else {
			terms = append(terms, s)
		}
	}
	or := false
	next := func() {
		if or {
			b.WriteString(" OR ")
		}
		or = true
	}
	b.WriteString("(")
	if len(ids) > 0 {
		next()
		b.WriteString("c.id")
		b.in(ids)
	}
	if len(terms) > 0 {
		next()
		b.WriteString("EXISTS (SELECT 1 FROM terms t WHERE t.type = ")
		b.arg(typ)
		b.WriteString(" AND t.term")
		b.in(terms)
		b.WriteString(" AND t.id = c.id)")
	}
	if len(c.Dates) > 0 {
		next()
		if c.Param == lastUpdated {
			b.dates(c.Dates, "c.lu_lo", "c.lu_hi")
		} else {
			b.WriteString("EXISTS (SELECT 1 FROM dates t WHERE t.type = ")
			b.arg(typ)
			b.WriteString(" AND t.id = c.id AND t.param = ")
			b.arg(c.Param)
			b.WriteString(" AND ")
			b.dates(c.Dates, "t.lo", "t.hi")
			b.WriteString(")")
		}
	}
	if !or {
		b.WriteString("0") // an empty clause matches nothing
	}
	b.WriteString(")")
}

// dates renders alternative date conditions on the columns lo and hi.
func (b *sqlBuilder) dates(conds []fhir.DateCond, lo, hi string) {
	b.WriteString("(")
	for i, d := range conds {
		if i > 0 {
			b.WriteString(" OR ")
		}
		b.date(d, lo, hi)
	}
	b.WriteString(")")
}

// in renders "= ?" or "IN (?, ...)".
func (b *sqlBuilder) in(vals []string) {
	if len(vals) == 1 {
		b.WriteString(" = ")
		b.arg(vals[0])
		return
	}
	b.WriteString(" IN (")
	for i, v := range vals {
		if i > 0 {
			b.WriteString(", ")
		}
		b.arg(v)
	}
	b.WriteString(")")
}

// date renders fhir.DateCond.Match for a target range [lo, hi) (the
// columns named) as SQL. The comparisons are exact on the stored integers,
// MinTime and MaxTime included (no arithmetic, so no overflow).
func (b *sqlBuilder) date(c fhir.DateCond, lo, hi string) {
	cmp := func(col, op string, v int64) {
		b.WriteString(col)
		b.WriteString(op)
		b.arg(v)
	}
	eq := func() {
		b.WriteString("(")
		cmp(lo, " >= ", c.Lo)
		b.WriteString(" AND ")
		cmp(hi, " <= ", c.Hi)
		b.WriteString(")")
	}
	switch c.Prefix {
	case fhir.PrefixEq, "":
		eq()
	case fhir.PrefixNe:
		b.WriteString("NOT ")
		eq()
	case fhir.PrefixGt:
		cmp(hi, " > ", c.Hi)
	case fhir.PrefixLt:
		cmp(lo, " < ", c.Lo)
	case fhir.PrefixGe:
		b.WriteString("(")
		cmp(hi, " > ", c.Hi)
		b.WriteString(" OR ")
		eq()
		b.WriteString(")")
	case fhir.PrefixLe:
		b.WriteString("(")
		cmp(lo, " < ", c.Lo)
		b.WriteString(" OR ")
		eq()
		b.WriteString(")")
	case fhir.PrefixSa:
		cmp(lo, " >= ", c.Hi)
	case fhir.PrefixEb:
		cmp(hi, " <= ", c.Lo)
	default:
		b.WriteString("0")
	}
}
