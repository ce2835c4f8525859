package routing

import (
	"errors"
	"net/http"
	"slices"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/schakelpunt/schakelpunt/access"
	"github.com/schakelpunt/schakelpunt/federation"
	"github.com/schakelpunt/schakelpunt/fhir"
)

// Paging over a merged federated result (MedicationDispense search).
//
// The semantics follow HAPI and Blaze: the query is resolved once. Each
// permitted source is asked for all its matching dispenses (federation
// follows a source's own paging, bounded), the answers are merged newest
// first, and the requester reads the merged result in pages of _count
// (default fhir.DefaultCount, at most fhir.MaxCount). The outcome entries
// (search.mode outcome) of sources that had a problem are on the first
// page. There is no total: a requester learns nothing about what it may
// not see.
//
// A result that fits on one page is answered and forgotten: no links, no
// state. A longer one is held in memory only (never on disk), in the page
// store next to the store searches' pages, under opaque random tokens
// bound to the client certificate that asked; it lives heldTTL from the
// query however often it is read, and all held results together are
// bounded to maxHeldBytes, the oldest evicted first. A page's next token
// is minted once and is the same on every read of that page. A result
// over a quarter of maxHeldBytes is not held: its first page is answered
// with no next link and a warning outcome entry (too-costly) asking the
// requester to narrow the search. An unknown, expired, evicted or another
// certificate's token is 404 not-found.
//
// Reading a later page asks no source, but is decided again: the role
// policy and the patient's consent as they are now must still permit
// every source in the held result, or the page is refused (403) and the
// result dropped. Each page read is audited like any request: interaction
// "page", the patient and the data category of the held result, and the
// decision.
const (
	heldTTL      = 5 * time.Minute
	maxHeldBytes = 128 << 20
)

// heldResult is a merged federated result held for paging.
type heldResult struct {
	set      *federation.Searchset
	sources  []string // URAs of the sources with matches in set
	bsn      string   // for the page reads' AuditEvents only
	category string   // LOINC data category, likewise
	count    int      // page size
	size     int64    // approximate bytes, for the page store's bound

	// Under pageStore.mu:
	refs    int // pages pointing at it
	expires time.Time
}

func newHeld(set *federation.Searchset, bsn, category string, count int) *heldResult {
	h := &heldResult{set: set, bsn: bsn, category: category, count: count, size: 512}
	for i, m := range set.Matches {
		h.size += int64(len(m.FullURL) + len(m.Resource) + 64)
		if !slices.Contains(h.sources, set.SourceURAs[i]) {
			h.sources = append(h.sources, set.SourceURAs[i])
		}
	}
	for _, o := range set.Outcomes {
		h.size += int64(len(o.FullURL) + len(o.Resource) + 64)
	}
	return h
}

// federatedPage serves a later page of a held result, when the policy and
// the consent still permit every source in it.
func (s *server) federatedPage(c *gin.Context, p *page, tok string) {
	h := p.held
	t := trailOf(c)
	t.patientBSN, t.category = h.bsn, h.category
	if s.federator == nil {
		s.fail(c, fhir.Errorf(fhir.KindUnavailable, "not-supported", "no sources are configured"))
		return
	}
	uras, res, err := s.federator.MedicationSources(c.Request.Context(), t.principal, h.bsn)
	d := access.Decision{Permit: res.Permit, Reasons: res.Reasons}
	t.decision = &d
	if err == nil {
		for _, ura := range h.sources {
			if !slices.Contains(uras, ura) {
				d.Permit = false
				d.Reasons = append(d.Reasons, "a source of the held result is no longer permitted: the page is refused")
				err = access.ErrDenied
				break
			}
		}
	}
	if err != nil {
		if errors.Is(err, access.ErrDenied) {
			s.pages.drop(h)
			s.fail(c, fhir.Errorf(fhir.KindForbidden, "forbidden", "access denied: no data may be shown for this request"))
			return
		}
		s.fail(c, err)
		return
	}
	s.servePage(c, p, tok)
}

// servePage answers one page of a held result: tok is the page's own
// token ("" for the first page, which gets one only when there are more
// and the result may be held).
func (s *server) servePage(c *gin.Context, p *page, tok string) {
	h := p.held
	n := len(h.set.Matches)
	lo := min(p.offset, n)
	hi := min(lo+h.count, n)
	more := hi < n && h.count > 0
	tooLarge := more && tok == "" && !s.pages.holdable(h.size)
	if tooLarge {
		more = false
	}
	b := fhir.NewBundle("searchset", s.now())
	b.Entry = make([]fhir.BundleEntry, 0, hi-lo+len(h.set.Outcomes)+1)
	b.Entry = append(b.Entry, h.set.Matches[lo:hi]...)
	if p.offset == 0 {
		b.Entry = append(b.Entry, h.set.Outcomes...)
	}
	if tooLarge {
		b.Entry = append(b.Entry, tooCostly)
	}
	if more || tok != "" {
		base := s.baseURL(c)
		if tok == "" {
			tok = s.pages.put(p)
		}
		b.Link = append(b.Link, fhir.BundleLink{Relation: "self", URL: base + "/_page/" + tok})
		if more {
			next := s.pages.nextOf(tok, p, func() *page {
				return &page{owner: p.owner, kind: "federated", held: h, offset: hi, prev: tok, action: p.action}
			})
			if next != "" {
				b.Link = append(b.Link, fhir.BundleLink{Relation: "next", URL: base + "/_page/" + next})
			}
		}
		if p.prev != "" {
			b.Link = append(b.Link, fhir.BundleLink{Relation: "previous", URL: base + "/_page/" + p.prev})
		}
	}
	body, err := b.Marshal()
	if err != nil {
		s.fail(c, err)
		return
	}
	s.write(c, http.StatusOK, body)
}

// tooCostly is the outcome entry on the only page of a result too large
// to hold for paging.
var tooCostly = fhir.BundleEntry{
	Resource: fhir.OperationOutcome(fhir.Issue{Severity: "warning", Code: "too-costly",
		Diagnostics: "the result is too large to page through: only its first page is shown; narrow the search (whenhandedover, status) to see the rest"}),
	Search: &fhir.EntrySearch{Mode: "outcome"},
}
