package detect

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

// contacts remembers when each organisation last had contact (see
// Observation.Contact) with each patient, for at most max pairs: a cache
// in front of Relations, which asks the index and the log itself.
type contacts struct {
	last  map[string]time.Time // ura|bsn → the contact remembered
	order []contact            // in the order remembered, for forgetting
	head  int
	max   int
}

type contact struct {
	key string
	at  time.Time
}

func newContacts(max int) *contacts {
	return &contacts{last: map[string]time.Time{}, max: max}
}

func pairKey(ura, bsn string) string { return ura + "|" + bsn }

// remember notes a contact at at. A pair is refreshed only once its
// remembered contact is older than refresh, so that order holds at most
// a few entries per pair.
func (c *contacts) remember(key string, at time.Time, refresh time.Duration) {
	if prev, ok := c.last[key]; ok && !prev.Before(at.Add(-refresh)) {
		return
	}
	c.last[key] = at
	c.order = append(c.order, contact{key, at})
	for len(c.last) > c.max || len(c.order)-c.head > 2*c.max {
		c.pop()
	}
}

// expire forgets contacts remembered before before.
func (c *contacts) expire(before time.Time) {
	for c.head < len(c.order) && c.order[c.head].at.Before(before) {
		c.pop()
	}
}

func (c *contacts) pop() {
	e := c.order[c.head]
	c.order[c.head] = contact{}
	c.head++
	if at, ok := c.last[e.key]; ok && at.Equal(e.at) {
		delete(c.last, e.key)
	}
	if c.head > 1024 && c.head*2 > len(c.order) {
		c.order = append(c.order[:0], c.order[c.head:]...)
		c.head = 0
	}
}

// noRelationship checks a permitted query against the organisation's
// earlier contacts with the patient (earlier permitted queries, see
// Observation.Contact), then remembers the query as a contact. Each
// question to Relations gets its own time limit.
func (d *Detector) noRelationship(ctx context.Context, o *Observation) (Hit, bool) {
	lookback := d.rules.NoRelationship.Lookback
	if lookback == 0 || d.rel == nil || !o.Contact() {
		return Hit{}, false
	}
	key := pairKey(o.URA, o.BSN)
	// Refreshing at most every half look-back keeps a remembered contact
	// for at least half the look-back after the last one; a pair then
	// forgotten is asked of Relations again.
	refresh := lookback / 2
	defer d.contacts.remember(key, o.At, refresh)
	if at, ok := d.contacts.last[key]; ok && !at.Before(o.At.Add(-lookback)) {
		return Hit{}, false
	}
	lctx, cancel := context.WithTimeout(ctx, d.lookupTimeout)
	registered, err := d.rel.Registered(lctx, o.URA, o.BSN)
	cancel()
	if err != nil {
		d.logger.WarnContext(ctx, "abuse detection: index lookup failed; no-relationship not checked", slog.String("event", o.ID), slog.Any("err", err))
		return Hit{}, false
	}
	if registered {
		return Hit{}, false
	}
	lctx, cancel = context.WithTimeout(ctx, d.lookupTimeout)
	earlier, err := d.rel.EarlierContact(lctx, o.URA, o.BSN, o.At.Add(-lookback), o.At)
	cancel()
	if err != nil {
		d.logger.WarnContext(ctx, "abuse detection: log lookup failed; no-relationship not checked", slog.String("event", o.ID), slog.Any("err", err))
		return Hit{}, false
	}
	if earlier {
		return Hit{}, false
	}
	return Hit{
		Rule: RuleNoRelationship, At: o.At, Since: o.At, Subject: practitioner(o.UZI), URAs: []string{o.URA}, Evidence: []string{o.ID},
		Text: fmt.Sprintf("professional %s (organisation %s) received a patient's data while the organisation neither registered the patient in the index nor queried their data in the previous %s",
			o.UZI, o.URA, lookback),
	}, true
}
