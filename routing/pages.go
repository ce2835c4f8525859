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
	kind    string        // "search" or "history"
	search  *fhir.Search
	after   *store.Cursor
	offset  int // history paging
	history store.HistoryQuery
	prev    string // token of the previous page
	expires time.Time
}

// pageStore keeps pages in memory, bounded in count and time. A page is
// only served to the requester it was made for.
type pageStore struct {
	mu    sync.Mutex
	pages map[string]*page
	ttl   time.Duration
	max   int
	now   func() time.Time
}

func newPageStore(ttl time.Duration, max int, now func() time.Time) *pageStore {
	return &pageStore{pages: map[string]*page{}, ttl: ttl, max: max, now: now}
}

func (ps *pageStore) put(p *page) string {
	b := make([]byte, 18)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	tok := base64.RawURLEncoding.EncodeToString(b)
	ps.mu.Lock()
	defer ps.mu.Unlock()
	now := ps.now()
	p.expires = now.Add(ps.ttl)
	if len(ps.pages) >= ps.max {
		for k, v := range ps.pages {
			if now.After(v.expires) {
				delete(ps.pages, k)
			}
		}
		for k := range ps.pages { // still full: drop arbitrary old pages
			if len(ps.pages) < ps.max {
				break
			}
			delete(ps.pages, k)
		}
	}
	ps.pages[tok] = p
	return tok
}

func (ps *pageStore) get(tok, owner string) (*page, bool) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	p, ok := ps.pages[tok]
	if !ok || p.owner != owner {
		return nil, false
	}
	if ps.now().After(p.expires) {
		delete(ps.pages, tok)
		return nil, false
	}
	return p, true
}
