// Package store is the persistence contract of Schakelpunt: versioned
// resources by type and id, their history, and search as a conjunction of
// index terms with a sort and a cursor. Its adapters live beneath it:
// store/sqlite (the embedded default) and store/mongo. One contract test
// suite (store/storetest) runs against both.
//
// Index terms are computed from the resource once, in shared code
// (fhir.ExtractTerms); adapters only keep and match them.
package store

import (
	"context"
	"errors"
	"time"

	"github.com/schakelpunt/schakelpunt/fhir"
)

// Sentinel errors of the contract. The edge maps them to OperationOutcomes.
var (
	ErrNotFound        = errors.New("store: not found")
	ErrGone            = errors.New("store: deleted")
	ErrVersionConflict = errors.New("store: version conflict")
	ErrExists          = errors.New("store: already exists")
	ErrClosed          = errors.New("store: closed")
)

// Resource is one stored version of a resource.
type Resource struct {
	Type    string
	ID      string
	Version int64
	Updated time.Time // meta.lastUpdated, microsecond precision, UTC
	Deleted bool      // a deletion marker: no Body
	Body    []byte    // the resource JSON with id and meta set
}

// Write is a new version to store. The store assigns the version and
// lastUpdated, stamps them into Body (see Stamp), and adds the _id and
// _lastUpdated terms.
type Write struct {
	Type  string
	ID    string
	Body  []byte     // the resource JSON as the client sent it
	Terms fhir.Terms // from fhir.ExtractTerms
}

// Cursor is a keyset position in a search: the sort key and id of the last
// resource of the previous page.
type Cursor struct {
	Key int64
	ID  string
}

// Query is a search: all Clauses must match (values within a clause are
// alternatives). Sort nil means _lastUpdated ascending. Ties are broken by
// id, in the direction of the sort.
type Query struct {
	Type    string
	Clauses []fhir.Clause
	Sort    *fhir.SortKey
	Limit   int
	After   *Cursor
}

// Page is one page of search results; Next is nil on the last page.
type Page struct {
	Resources []Resource
	Next      *Cursor
}

// HistoryQuery selects versions, newest first: of one resource (ID set),
// of a type, or (Type empty) of the whole store.
type HistoryQuery struct {
	Type   string
	ID     string
	Since  time.Time // zero: all
	Limit  int
	Offset int
}

// Store is the persistence contract every adapter implements.
type Store interface {
	// Read returns the current version; ErrNotFound if it never existed,
	// ErrGone (with the deletion marker) if its current version is deleted.
	Read(ctx context.Context, typ, id string) (Resource, error)
	// VRead returns one version (ErrNotFound if absent, ErrGone with the
	// marker if that version is a deletion).
	VRead(ctx context.Context, typ, id string, version int64) (Resource, error)
	// Create stores version 1 of a new resource; ErrExists if the id is
	// taken (also by a deleted resource).
	Create(ctx context.Context, w Write) (Resource, error)
	// Update stores the next version, creating the resource when it does
	// not exist (or was deleted). With ifMatch > 0 the current version must
	// be ifMatch, else ErrVersionConflict. Concurrent updates never lose a
	// version: each gets its own number.
	Update(ctx context.Context, w Write, ifMatch int64) (Resource, error)
	// Delete stores a deletion marker as the next version; ErrNotFound if
	// the resource never existed; deleting a deleted resource returns its
	// marker and no error. ifMatch as for Update.
	Delete(ctx context.Context, typ, id string, ifMatch int64) (Resource, error)
	// History lists versions newest first.
	History(ctx context.Context, q HistoryQuery) ([]Resource, error)
	// Search returns the current, not deleted resources matching q.
	Search(ctx context.Context, q Query) (Page, error)
	// Count counts what Search would return over all pages.
	Count(ctx context.Context, q Query) (int, error)
	// Ping reports whether the store is reachable.
	Ping(ctx context.Context) error
	// Close flushes and closes the store.
	Close() error
}

// Stamp prepares a version for storage: Body with id, versionId and
// lastUpdated set, and the full terms (those of w plus _id and
// _lastUpdated). now is truncated to microseconds, the store's precision.
func Stamp(w Write, version int64, now time.Time) (Resource, fhir.Terms, error) {
	now = now.UTC().Truncate(time.Microsecond)
	body, err := fhir.WithMeta(w.Body, fhir.Meta{ID: w.ID, VersionID: version, LastUpdated: now})
	if err != nil {
		return Resource{}, fhir.Terms{}, err
	}
	terms := fhir.Terms{
		Strings: make([]string, 0, len(w.Terms.Strings)+2),
		Dates:   make([]fhir.DateTerm, 0, len(w.Terms.Dates)+1),
	}
	for _, s := range w.Terms.Strings {
		if !isCommon(s) {
			terms.Strings = append(terms.Strings, s)
		}
	}
	terms.Strings = append(terms.Strings, fhir.TermCode("_id", w.ID), fhir.TermNoSystem("_id", w.ID))
	for _, d := range w.Terms.Dates {
		if d.Param != "_lastUpdated" {
			terms.Dates = append(terms.Dates, d)
		}
	}
	// lastUpdated has millisecond precision on the wire; index what the
	// client sees so that eq on the rendered instant matches.
	terms.Dates = append(terms.Dates, fhir.DateTerm{Param: "_lastUpdated", DateRange: lastUpdatedRange(now)})
	return Resource{Type: w.Type, ID: w.ID, Version: version, Updated: now, Body: body}, terms, nil
}

func lastUpdatedRange(t time.Time) fhir.DateRange {
	ms := t.Truncate(time.Millisecond)
	return fhir.DateRange{Lo: ms.UnixMicro(), Hi: ms.Add(time.Millisecond).UnixMicro()}
}

func isCommon(term string) bool {
	return len(term) > 4 && (term[:4] == "_id#")
}

// SortValue is the sort key of a resource for a sort parameter: the
// earliest start among its date terms for that parameter, or MinTime when
// it has none. _lastUpdated sorts by Updated.
func SortValue(sort *fhir.SortKey, r Resource, terms fhir.Terms) int64 {
	if sort == nil || sort.Param == "_lastUpdated" {
		return r.Updated.UnixMicro()
	}
	v, found := fhir.MaxTime, false
	for _, d := range terms.Dates {
		if d.Param == sort.Param && d.Lo < v {
			v, found = d.Lo, true
		}
	}
	if !found {
		return fhir.MinTime
	}
	return v
}

// Matches reports whether terms satisfy every clause of q: the reference
// semantics adapters must reproduce (and may use to filter exactly after
// a coarser index lookup).
func Matches(clauses []fhir.Clause, terms fhir.Terms) bool {
	for _, c := range clauses {
		if !matchClause(c, terms) {
			return false
		}
	}
	return true
}

func matchClause(c fhir.Clause, terms fhir.Terms) bool {
	for _, want := range c.Strings {
		for _, have := range terms.Strings {
			if want == have {
				return true
			}
		}
	}
	for _, cond := range c.Dates {
		for _, d := range terms.Dates {
			if d.Param == c.Param && cond.Match(d.DateRange) {
				return true
			}
		}
	}
	return false
}
