package federation

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/schakelpunt/schakelpunt/fhir"
	"github.com/schakelpunt/schakelpunt/store"
)

// genIndex counts the searches made through it and has a generation per
// type that the test moves.
type genIndex struct {
	gen       map[string]uint64
	searches  int
	resources int // how many resources each search reads
	fail      error
}

func (g *genIndex) Generation(typ string) uint64 { return g.gen[typ] }

func (g *genIndex) search(_ context.Context, q store.Query) (any, int, error) {
	g.searches++
	if g.fail != nil {
		return nil, 0, g.fail
	}
	return fmt.Sprint(q.Type, g.searches), g.resources, nil
}

func (g *genIndex) Search(context.Context, store.Query) (store.Page, error) { return store.Page{}, nil }

func oneTerm(typ, term string) store.Query {
	return store.Query{Type: typ, Clauses: []fhir.Clause{{Param: "patient", Strings: []string{term}}}}
}

// TestReadCache: a read is served again only while its type's generation
// is unchanged; other types, other terms, failures and queries of
// another shape are read from the store.
func TestReadCache(t *testing.T) {
	ctx := context.Background()
	idx := &genIndex{gen: map[string]uint64{}}
	c := newReadCache(idx)
	read := func(q store.Query) string {
		t.Helper()
		v, err := c.read(ctx, q, idx.search)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		return v.(string)
	}
	steps := []struct {
		name     string
		do       func()
		q        store.Query
		searches int // after the read
	}{
		{"first read", nil, oneTerm("Consent", "a"), 1},
		{"again: from the cache", nil, oneTerm("Consent", "a"), 1},
		{"another patient", nil, oneTerm("Consent", "b"), 2},
		{"another type, same term", nil, oneTerm("Patient", "a"), 3},
		{"a consent written", func() { idx.gen["Consent"]++ }, oneTerm("Consent", "a"), 4},
		{"then cached again", nil, oneTerm("Consent", "a"), 4},
		{"an index entry written leaves consents cached", func() { idx.gen["Patient"]++ }, oneTerm("Consent", "a"), 4},
		{"two clauses are not kept", nil, store.Query{Type: "Consent", Clauses: []fhir.Clause{{Strings: []string{"a"}}, {Strings: []string{"b"}}}}, 5},
		{"nor asked twice", nil, store.Query{Type: "Consent", Clauses: []fhir.Clause{{Strings: []string{"a"}}, {Strings: []string{"b"}}}}, 6},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			if s.do != nil {
				s.do()
			}
			read(s.q)
			if idx.searches != s.searches {
				t.Errorf("%d searches, want %d", idx.searches, s.searches)
			}
		})
	}
	t.Run("a failed read is not kept", func(t *testing.T) {
		idx.fail = errors.New("disk on fire")
		if _, err := c.read(ctx, oneTerm("Consent", "c"), idx.search); err == nil {
			t.Fatal("no error")
		}
		idx.fail = nil
		before := idx.searches
		read(oneTerm("Consent", "c"))
		if idx.searches != before+1 {
			t.Error("the failure was cached")
		}
	})
	t.Run("a large read is used once, not kept", func(t *testing.T) {
		idx.resources = maxCachedResources + 1
		before := idx.searches
		read(oneTerm("Consent", "many"))
		read(oneTerm("Consent", "many"))
		if idx.searches != before+2 {
			t.Errorf("%d searches for two reads of %d resources, want 2", idx.searches-before, idx.resources)
		}
		idx.resources = 0
	})
	t.Run("bounded", func(t *testing.T) {
		for i := range readCacheSize + 10 {
			read(oneTerm("Consent", fmt.Sprint("p", i)))
		}
		if n := len(c.m); n > readCacheSize {
			t.Errorf("%d entries kept, bound %d", n, readCacheSize)
		}
	})
	t.Run("no generations, no cache", func(t *testing.T) {
		if newReadCache(struct{ Index }{idx}) != nil {
			t.Error("a cache over an index without generations")
		}
	})
}
