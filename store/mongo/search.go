package mongo

import (
	"context"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/schakelpunt/schakelpunt/fhir"
	"github.com/schakelpunt/schakelpunt/store"
)

// Search returns one page of current, not deleted resources matching q.
//
// String clauses are index lookups ({terms: {$in: …}}). A date clause is
// first a coarse range filter on the hull of the parameter's ranges; the
// exact rule (store.Matches) is applied in Go while the cursor is read,
// stopping once a page and one more are found.
func (s *Store) Search(ctx context.Context, q store.Query) (store.Page, error) {
	if err := s.enter(); err != nil {
		return store.Page{}, err
	}
	defer s.leave()
	limit := q.Limit
	if limit <= 0 {
		limit = fhir.DefaultCount
	}
	filter, exact, ok := s.filter(q, true)
	if !ok {
		return store.Page{Resources: []store.Resource{}}, nil
	}
	field, err := sortOn(q.Sort)
	if err != nil {
		return store.Page{}, err
	}
	dir := 1
	if q.Sort != nil && q.Sort.Desc {
		dir = -1
	}
	opts := options.Find().SetSort(bson.D{{Key: field, Value: dir}, {Key: "id", Value: dir}})
	if exact {
		opts.SetLimit(int64(limit) + 1)
	} else {
		opts.SetBatchSize(int32(min(limit+1, 1000)))
	}
	cur, err := s.resources.Find(ctx, filter, opts)
	if err != nil {
		return store.Page{}, fmt.Errorf("mongo: search %s: %w", q.Type, err)
	}
	defer cur.Close(context.WithoutCancel(ctx))

	page := store.Page{Resources: []store.Resource{}}
	var last record
	for cur.Next(ctx) {
		var rec record
		if err := cur.Decode(&rec); err != nil {
			return store.Page{}, fmt.Errorf("mongo: search %s: %w", q.Type, err)
		}
		if !exact {
			terms, err := rec.terms()
			if err != nil {
				return store.Page{}, err
			}
			if !store.Matches(q.Clauses, terms) {
				continue
			}
		}
		if len(page.Resources) == limit {
			page.Next = &store.Cursor{Key: last.sortKey(q.Sort), ID: last.ID}
			break
		}
		page.Resources = append(page.Resources, rec.resource())
		last = rec
	}
	if err := cur.Err(); err != nil {
		return store.Page{}, fmt.Errorf("mongo: search %s: %w", q.Type, err)
	}
	return page, nil
}

// Count counts what Search would return over all pages.
func (s *Store) Count(ctx context.Context, q store.Query) (int, error) {
	if err := s.enter(); err != nil {
		return 0, err
	}
	defer s.leave()
	filter, exact, ok := s.filter(q, false)
	if !ok {
		return 0, nil
	}
	if exact {
		n, err := s.resources.CountDocuments(ctx, filter)
		if err != nil {
			return 0, fmt.Errorf("mongo: count %s: %w", q.Type, err)
		}
		return int(n), nil
	}
	cur, err := s.resources.Find(ctx, filter, options.Find().
		SetProjection(bson.D{{Key: "terms", Value: 1}, {Key: "dt", Value: 1}}).
		SetBatchSize(1000))
	if err != nil {
		return 0, fmt.Errorf("mongo: count %s: %w", q.Type, err)
	}
	defer cur.Close(context.WithoutCancel(ctx))
	n := 0
	for cur.Next(ctx) {
		var rec record
		if err := cur.Decode(&rec); err != nil {
			return 0, fmt.Errorf("mongo: count %s: %w", q.Type, err)
		}
		terms, err := rec.terms()
		if err != nil {
			return 0, err
		}
		if store.Matches(q.Clauses, terms) {
			n++
		}
	}
	if err := cur.Err(); err != nil {
		return 0, fmt.Errorf("mongo: count %s: %w", q.Type, err)
	}
	return n, nil
}

// sortOn is the field a search sorts on.
func sortOn(sort *fhir.SortKey) (string, error) {
	if sort == nil || sort.Param == "_lastUpdated" {
		return "updated", nil
	}
	if !validField(sort.Param) {
		return "", fmt.Errorf("mongo: cannot sort on %q", sort.Param)
	}
	return sortField(sort.Param), nil
}

// filter builds the query filter of q. exact reports whether the filter
// is the whole query (else store.Matches must confirm each document); ok
// is false when no resource can match. withCursor adds q.After.
func (s *Store) filter(q store.Query, withCursor bool) (filter bson.D, exact, ok bool) {
	and := bson.A{bson.D{{Key: "deleted", Value: false}}}
	if q.Type != "" {
		and = append(and, bson.D{{Key: "type", Value: q.Type}})
	}
	exact = true
	for _, c := range q.Clauses {
		var alts bson.A
		coarse := false
		if len(c.Strings) > 0 {
			alts = append(alts, bson.D{{Key: "terms", Value: bson.D{{Key: "$in", Value: c.Strings}}}})
		}
		if len(c.Dates) > 0 {
			exact = false
			for _, d := range c.Dates {
				f, open := dateFilter(c.Param, d)
				if open {
					coarse = true // the clause cannot be narrowed in the database
					break
				}
				if f != nil {
					alts = append(alts, f)
				}
			}
		}
		switch {
		case coarse:
			// Left to store.Matches.
		case len(alts) == 0:
			return nil, false, false
		case len(alts) == 1:
			and = append(and, alts[0])
		default:
			and = append(and, bson.D{{Key: "$or", Value: alts}})
		}
	}
	if withCursor && q.After != nil {
		field, err := sortOn(q.Sort)
		if err == nil {
			gt := "$gt"
			if q.Sort != nil && q.Sort.Desc {
				gt = "$lt"
			}
			and = append(and, bson.D{{Key: "$or", Value: bson.A{
				bson.D{{Key: field, Value: bson.D{{Key: gt, Value: q.After.Key}}}},
				bson.D{{Key: field, Value: q.After.Key}, {Key: "id", Value: bson.D{{Key: gt, Value: q.After.ID}}}},
			}}})
		}
	}
	return bson.D{{Key: "$and", Value: and}}, exact, true
}

// dateFilter is the coarse filter of one date condition on the hull
// [lo, hi] of the parameter's ranges: every resource the condition
// matches passes it (proof per prefix below, t a date term, s the search
// range, lo ≤ t.Lo, t.Hi ≤ hi, and also lo ≤ t.Hi, t.Lo ≤ hi). nil means
// nothing can match; open means the condition cannot be expressed.
func dateFilter(param string, c fhir.DateCond) (f bson.D, open bool) {
	if !validField(param) {
		return nil, true
	}
	lo, hi := hullField(param, "lo"), hullField(param, "hi")
	cmp := func(field, op string, v int64) bson.D {
		return bson.D{{Key: field, Value: bson.D{{Key: op, Value: v}}}}
	}
	// eq: s.Lo ≤ t.Lo and t.Hi ≤ s.Hi, so lo ≤ t.Hi ≤ s.Hi and hi ≥ t.Lo ≥ s.Lo.
	eq := bson.D{{Key: lo, Value: bson.D{{Key: "$lte", Value: c.Hi}}}, {Key: hi, Value: bson.D{{Key: "$gte", Value: c.Lo}}}}
	switch c.Prefix {
	case fhir.PrefixEq, "":
		return eq, false
	case fhir.PrefixNe: // t.Lo < s.Lo or t.Hi > s.Hi
		return bson.D{{Key: "$or", Value: bson.A{cmp(lo, "$lt", c.Lo), cmp(hi, "$gt", c.Hi)}}}, false
	case fhir.PrefixGt: // t.Hi > s.Hi
		return cmp(hi, "$gt", c.Hi), false
	case fhir.PrefixLt: // t.Lo < s.Lo
		return cmp(lo, "$lt", c.Lo), false
	case fhir.PrefixGe:
		return bson.D{{Key: "$or", Value: bson.A{cmp(hi, "$gt", c.Hi), eq}}}, false
	case fhir.PrefixLe:
		return bson.D{{Key: "$or", Value: bson.A{cmp(lo, "$lt", c.Lo), eq}}}, false
	case fhir.PrefixSa: // t.Lo ≥ s.Hi, so hi ≥ s.Hi
		return cmp(hi, "$gte", c.Hi), false
	case fhir.PrefixEb: // t.Hi ≤ s.Lo, so lo ≤ s.Lo
		return cmp(lo, "$lte", c.Lo), false
	}
	return nil, false
}
