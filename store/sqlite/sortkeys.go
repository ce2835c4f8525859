package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"sync"

	"github.com/schakelpunt/schakelpunt/fhir"
)

// Sort keys. A search sorted by a date parameter orders by store.SortValue:
// the earliest start among the resource's terms of that parameter, or
// fhir.MinTime without one. The table sortkeys holds that key for every
// current, not deleted resource and every date parameter of its type
// (fhir.SearchParams), so that such a search walks an index in order and
// stops at the page's end instead of sorting the whole type.
//
// A row for every resource is what makes the walk complete, so the walk is
// used only for a (type, parameter) listed in sortparams. The writer lists
// a pair the first time it writes a resource of the type, in the same
// transaction filling in the keys of the resources already there (written
// by a release that did not know the parameter). Until then, or for any
// other parameter, searches compute the key per resource.

// dateParams returns the date parameters of a type that get sort keys.
// Writer goroutine only.
func (s *Store) dateParams(typ string) []string {
	if ps, ok := s.sortParams[typ]; ok {
		return ps
	}
	var ps []string
	for _, p := range fhir.SearchParams(typ) {
		if p.Type == fhir.TypeDate && p.Code != lastUpdated {
			ps = append(ps, p.Code)
		}
	}
	s.sortParams[typ] = ps
	return ps
}

// ensureSortKeys lists (typ, param) in sortparams, filling in the keys of
// the resources of typ already stored, unless it is listed. Writer
// goroutine only; s.listed is dropped whenever a transaction or savepoint
// rolls back, since what it caches may have been undone.
func (s *Store) ensureSortKeys(ctx context.Context, typ, param string) error {
	if s.listed == nil {
		listed := map[[2]string]bool{}
		rows, err := s.wst.selListed.QueryContext(ctx)
		if err != nil {
			return fmt.Errorf("sqlite: sort parameters: %w", err)
		}
		for rows.Next() {
			var k [2]string
			if err := rows.Scan(&k[0], &k[1]); err != nil {
				rows.Close()
				return fmt.Errorf("sqlite: sort parameters: %w", err)
			}
			listed[k] = true
		}
		if err := rows.Close(); err != nil {
			return fmt.Errorf("sqlite: sort parameters: %w", err)
		}
		s.listed = listed
	}
	k := [2]string{typ, param}
	if s.listed[k] {
		return nil
	}
	if _, err := s.wst.backfill.ExecContext(ctx, param, param, minTime, typ); err != nil {
		return fmt.Errorf("sqlite: sort keys of %s.%s: %w", typ, param, err)
	}
	if _, err := s.wst.insListed.ExecContext(ctx, typ, param); err != nil {
		return fmt.Errorf("sqlite: sort keys of %s.%s: %w", typ, param, err)
	}
	s.listed[k] = true
	s.log.Info("sort keys listed", "type", typ, "param", param)
	return nil
}

// minTime is fhir.MinTime as a bind argument.
var minTime any = fhir.MinTime

// dropSortKeys removes the sort keys of the current version of a resource;
// call it before its dates are dropped, since the keys are computed from
// them. Writer goroutine only.
func (s *Store) dropSortKeys(ctx context.Context, typ, id string) error {
	for _, p := range s.dateParams(typ) {
		var key int64
		if err := s.wst.selKey.QueryRowContext(ctx, minTime, typ, id, p).Scan(&key); err != nil {
			return fmt.Errorf("sqlite: sort key %s/%s %s: %w", typ, id, p, err)
		}
		if _, err := s.wst.delKey.ExecContext(ctx, typ, p, key, id); err != nil {
			return fmt.Errorf("sqlite: sort key %s/%s %s: %w", typ, id, p, err)
		}
	}
	return nil
}

// insertSortKeys adds the sort keys of a new version. Writer goroutine
// only.
func (s *Store) insertSortKeys(ctx context.Context, typ, id string, dates []fhir.DateTerm) error {
	for _, p := range s.dateParams(typ) {
		key := fhir.MaxTime
		found := false
		for _, d := range dates {
			if d.Param == p && d.Lo < key { // as store.SortValue
				key, found = d.Lo, true
			}
		}
		if !found {
			key = fhir.MinTime
		}
		if _, err := s.wst.insKey.ExecContext(ctx, typ, p, key, id); err != nil {
			return fmt.Errorf("sqlite: sort key %s/%s %s: %w", typ, id, p, err)
		}
	}
	return nil
}

// sortListed tells a search whether the sort keys of (typ, param) are
// complete. A pair once listed stays listed, so positive answers are
// cached.
type sortListed struct {
	st     *sql.Stmt
	mu     sync.Mutex
	listed map[[2]string]bool
}

func (l *sortListed) has(ctx context.Context, typ, param string) (bool, error) {
	k := [2]string{typ, param}
	l.mu.Lock()
	ok := l.listed[k]
	l.mu.Unlock()
	if ok {
		return true, nil
	}
	var n int
	if err := l.st.QueryRowContext(ctx, typ, param).Scan(&n); err != nil {
		return false, err
	}
	if n == 0 {
		return false, nil
	}
	l.mu.Lock()
	l.listed[k] = true
	l.mu.Unlock()
	return true, nil
}
