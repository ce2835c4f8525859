package routing

import (
	"crypto/rand"
	"encoding/base64"
	"sync"
	"time"

	"github.com/schakelpunt/schakelpunt/access"
	"github.com/schakelpunt/schakelpunt/fhir"
	"github.com/schakelpunt/schakelpunt/store"
)

// page is the server-side state behind a paging link. Links carry only
// its opaque token: search values (a BSN) never appear in a URL we hand
// out.
type page struct {
	owner   string        // the requester the page belongs to
	action  access.Action // what the requester was permitted to do
	kind    string        // "search", "history" or "federated"
	search  *fhir.Search
	after   *store.Cursor
	offset  int // history and federated paging
	history store.HistoryQuery
	held    *heldResult // federated paging
	prev    string      // token of the previous page
	expires time.Time
}

// pageStore keeps pages in memory, bounded in count and time. A page is
// only served to the requester it was made for. Pages of a federated
// result hold that result (medical data) in memory: they live heldTTL
// from the query, however often they are read, and all held results
// together are bounded to maxHeld bytes, the oldest evicted first.
type pageStore struct {
	mu      sync.Mutex
	pages   map[string]*page
	ttl     time.Duration
	max     int
	heldTTL time.Duration
	maxHeld int64 // bytes of held results
	held    int64 // bytes of held results now referenced by a page
	now     func() time.Time
}

func newPageStore(ttl time.Duration, max int, heldTTL time.Duration, maxHeld int64, now func() time.Time) *pageStore {
	return &pageStore{pages: map[string]*page{}, ttl: ttl, max: max, heldTTL: heldTTL, maxHeld: maxHeld, now: now}
}

func (ps *pageStore) put(p *page) string {
	b := make([]byte, 18)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	tok := base64.RawURLEncoding.EncodeToString(b)
	ps.mu.Lock()
	defer ps.mu.Unlock()
	now := ps.now()
	p.expires = now.Add(ps.ttl)
	if h := p.held; h != nil {
		if h.expires.IsZero() {
			h.expires = now.Add(ps.heldTTL)
		}
		p.expires = h.expires
		if h.refs == 0 {
			ps.held += h.size
		}
		h.refs++
	}
	if len(ps.pages) >= ps.max || ps.held > ps.maxHeld {
		for k, v := range ps.pages {
			if now.After(v.expires) {
				ps.remove(k)
			}
		}
		for k := range ps.pages { // still full: drop arbitrary old pages
			if len(ps.pages) < ps.max {
				break
			}
			ps.remove(k)
		}
		for ps.held > ps.maxHeld {
			if !ps.evictOldestHeld(p.held) {
				break // only this result is held: it is served
			}
		}
	}
	ps.pages[tok] = p
	return tok
}

// evictOldestHeld removes every page of the held result that expires
// first, other than keep; false when there is none.
func (ps *pageStore) evictOldestHeld(keep *heldResult) bool {
	var oldest *heldResult
	for _, v := range ps.pages {
		if h := v.held; h != nil && h != keep && (oldest == nil || h.expires.Before(oldest.expires)) {
			oldest = h
		}
	}
	if oldest == nil {
		return false
	}
	for k, v := range ps.pages {
		if v.held == oldest {
			ps.remove(k)
		}
	}
	return true
}

// remove deletes a page and releases its share of a held result.
func (ps *pageStore) remove(tok string) {
	p, ok := ps.pages[tok]
	if !ok {
		return
	}
	delete(ps.pages, tok)
	if h := p.held; h != nil {
		if h.refs--; h.refs == 0 {
			ps.held -= h.size
		}
	}
}

// drop removes every page of a held result (its data is no longer to be
// served).
func (ps *pageStore) drop(h *heldResult) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for k, v := range ps.pages {
		if v.held == h {
			ps.remove(k)
		}
	}
}

func (ps *pageStore) get(tok, owner string) (*page, bool) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	p, ok := ps.pages[tok]
	if !ok || p.owner != owner {
		return nil, false
	}
	if ps.now().After(p.expires) {
		ps.remove(tok)
		return nil, false
	}
	return p, true
}
