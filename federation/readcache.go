package federation

import (
	"context"
	"sync"

	"github.com/schakelpunt/schakelpunt/store"
)

// Generations is an Index that says when resources of a type may have
// changed: Generation(typ) changes whenever a write of a resource of typ
// commits, before that write is acknowledged. The embedded store is one,
// for the writes of its own process: one serving process per database
// file (sqlite.Options.Serving; the audit tools that open it beside it
// write no resources). A
// store shared by several instances (MongoDB) cannot be, as another
// instance's writes would go unseen.
type Generations interface {
	Generation(typ string) uint64
}

// readCache keeps what a query read and made of one patient's index
// entries and consents, with the generation of their type at the time:
// an entry serves only while its type's generation is unchanged, so a
// consent withdrawn (or an index entry added) counts from the next query
// on, as without the cache. Every federated query reads both; the
// store's two searches and the parsing were about a fifteenth of its
// CPU.
type readCache struct {
	gens Generations
	mu   sync.Mutex
	m    map[cacheKey]cachedRead
}

type cacheKey struct{ typ, term string }

type cachedRead struct {
	gen uint64
	v   any // shared: readers do not change it
}

// readCacheSize bounds the patients whose reads are kept (a kilobyte or
// two each); past it, an arbitrary one is forgotten.
const readCacheSize = 8192

// maxCachedResources bounds what one entry may hold: a read of more
// resources (a patient with many consents, up to maxPerPatient) is used
// once and not kept, so that the cache stays within some megabytes.
const maxCachedResources = 16

func newReadCache(idx Index) *readCache {
	g, ok := idx.(Generations)
	if !ok {
		return nil
	}
	return &readCache{gens: g, m: map[cacheKey]cachedRead{}}
}

// loader reads q from the store and returns what it makes of it, with
// the number of resources it read.
type loader func(context.Context, store.Query) (v any, resources int, err error)

// read returns what load makes of q, from the cache when q's type has
// not changed since. Only queries of one clause of one term are kept,
// only what load returned without an error, and only reads of at most
// maxCachedResources.
func (c *readCache) read(ctx context.Context, q store.Query, load loader) (any, error) {
	if c == nil || len(q.Clauses) != 1 || len(q.Clauses[0].Strings) != 1 || len(q.Clauses[0].Dates) != 0 || q.After != nil {
		v, _, err := load(ctx, q)
		return v, err
	}
	key := cacheKey{q.Type, q.Clauses[0].Param + "\x00" + q.Clauses[0].Strings[0]}
	gen := c.gens.Generation(q.Type) // before the read: a write after it makes the entry stale
	c.mu.Lock()
	hit, ok := c.m[key]
	c.mu.Unlock()
	if ok && hit.gen == gen {
		return hit.v, nil
	}
	v, n, err := load(ctx, q)
	if err != nil || n > maxCachedResources {
		return v, err
	}
	c.mu.Lock()
	if _, ok := c.m[key]; !ok && len(c.m) >= readCacheSize {
		for k := range c.m {
			delete(c.m, k)
			break
		}
	}
	c.m[key] = cachedRead{gen: gen, v: v}
	c.mu.Unlock()
	return v, nil
}
