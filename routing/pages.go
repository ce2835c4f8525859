package routing

import (
	"container/list"
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
	next    string // federated: token of the next page, minted once (under pageStore.mu)
}

// Bounds of the page store besides its count and time:
//
//   - One requester (certificate fingerprint, or patient) has at most
//     1/ownerShare of the pages. A requester over its share loses its own
//     oldest page; when the store as a whole is full, the requester with
//     the most pages loses its oldest. So however often a client reads
//     pages (each read of a store search page mints tokens), it evicts
//     only its own pages, never another requester's, unless that other
//     holds at least as many.
//   - One held result may take at most 1/heldShare of the bytes for held
//     results. A larger one is not held at all (see servePage: its first
//     page says so), so that holding it never evicts everyone else's, and
//     making room for a result never evicts that result itself.
const (
	ownerShare = 10
	heldShare  = 4
)

// pageStore keeps pages in memory, bounded in count and time. A page is
// only served to the requester it was made for. Pages of a federated
// result hold that result (medical data) in memory: they live heldTTL
// from the query, however often they are read, and all held results
// together are bounded to maxHeld bytes, the oldest evicted first.
type pageStore struct {
	mu       sync.Mutex
	pages    map[string]*page
	order    map[string]*list.List    // per owner: its tokens, oldest first
	slots    map[string]*list.Element // token -> its element in its owner's order
	ttl      time.Duration
	max      int
	perOwner int // pages one owner may have
	heldTTL  time.Duration
	maxHeld  int64 // bytes of held results
	held     int64 // bytes of held results now referenced by a page
	now      func() time.Time
}

func newPageStore(ttl time.Duration, maxPages int, heldTTL time.Duration, maxHeld int64, now func() time.Time) *pageStore {
	return &pageStore{pages: map[string]*page{}, order: map[string]*list.List{}, slots: map[string]*list.Element{},
		ttl: ttl, max: max(1, maxPages), perOwner: max(1, maxPages/ownerShare), heldTTL: heldTTL, maxHeld: maxHeld, now: now}
}

// holdable reports whether a result of size bytes may be held for paging.
func (ps *pageStore) holdable(size int64) bool {
	return size <= ps.maxHeld/heldShare
}

// put stores p under a new token. A page of a result too large to hold
// is not stored: put returns "" (servePage never asks it to).
func (ps *pageStore) put(p *page) string {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.putLocked(p)
}

// nextOf is the token of the page after p (stored under tok), made by mk
// the first time and the same token on every later read of p while that
// page lives: reading a page again adds nothing to the store. "" when p is
// no longer stored (its result was dropped meanwhile).
func (ps *pageStore) nextOf(tok string, p *page, mk func() *page) string {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.pages[tok] != p {
		return ""
	}
	if n, ok := ps.pages[p.next]; ok && p.next != "" {
		if !ps.now().After(n.expires) {
			return p.next
		}
		ps.remove(p.next)
	}
	p.next = ps.putLocked(mk())
	return p.next
}

func (ps *pageStore) putLocked(p *page) string {
	if h := p.held; h != nil && !ps.holdable(h.size) {
		return ""
	}
	b := make([]byte, 18)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	tok := base64.RawURLEncoding.EncodeToString(b)
	now := ps.now()
	p.expires = now.Add(ps.ttl)
	// The reference is taken first: no eviction below releases p's result.
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
	for q := ps.order[p.owner]; q != nil && q.Len() >= ps.perOwner; {
		ps.remove(q.Front().Value.(string)) // the owner's own oldest
	}
	if len(ps.pages) >= ps.max {
		for k, v := range ps.pages {
			if now.After(v.expires) {
				ps.remove(k)
			}
		}
		for len(ps.pages) >= ps.max { // still full: the largest owner's oldest
			ps.remove(ps.largest().Front().Value.(string))
		}
	}
	for ps.held > ps.maxHeld {
		if !ps.evictOldestHeld(p.held) {
			break // not reached: p's result is holdable, the others are gone
		}
	}
	ps.pages[tok] = p
	q := ps.order[p.owner]
	if q == nil {
		q = list.New()
		ps.order[p.owner] = q
	}
	ps.slots[tok] = q.PushBack(tok)
	return tok
}

// largest is the order of the owner with the most pages (the store is
// not empty).
func (ps *pageStore) largest() *list.List {
	var big *list.List
	for _, q := range ps.order {
		if big == nil || q.Len() > big.Len() {
			big = q
		}
	}
	return big
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
	if q := ps.order[p.owner]; q != nil {
		q.Remove(ps.slots[tok])
		if q.Len() == 0 {
			delete(ps.order, p.owner)
		}
	}
	delete(ps.slots, tok)
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
