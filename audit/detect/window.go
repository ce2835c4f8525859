package detect

import (
	"cmp"
	"slices"
	"time"
)

// entry is one event in a window: when, the value it counts (a patient,
// an organisation) and its AuditEvent id.
type entry struct {
	at  time.Time
	val string
	id  string
}

// distinctWindow keeps, per value, the newest event with it within a
// window: the number of distinct values is len(latest). It holds at most
// cap values (the oldest go first): a threshold of Max needs no more
// than Max+1 to fire.
type distinctWindow struct {
	latest map[string]entry
	oldest time.Time // no value in latest is older than this
	quiet  time.Time // no new hit before this time
	last   time.Time // the newest event
}

func newDistinct() *distinctWindow { return &distinctWindow{latest: map[string]entry{}} }

func (w *distinctWindow) lastSeen() time.Time { return w.last }

// expire forgets values last seen before before.
func (w *distinctWindow) expire(before time.Time) {
	if !w.oldest.Before(before) {
		return
	}
	var oldest time.Time
	for v, e := range w.latest {
		if e.at.Before(before) {
			delete(w.latest, v)
		} else if oldest.IsZero() || e.at.Before(oldest) {
			oldest = e.at
		}
	}
	w.oldest = oldest
}

func (w *distinctWindow) add(e entry, capacity int) {
	if prev, ok := w.latest[e.val]; ok && prev.at.After(e.at) {
		return // an older event than the one kept
	}
	w.latest[e.val] = e
	if e.at.After(w.last) {
		w.last = e.at
	}
	if w.oldest.IsZero() || e.at.Before(w.oldest) {
		w.oldest = e.at
	}
	for len(w.latest) > capacity {
		var (
			oldV string
			oldE entry
		)
		for v, x := range w.latest {
			if oldV == "" || x.at.Before(oldE.at) {
				oldV, oldE = v, x
			}
		}
		delete(w.latest, oldV)
		w.oldest = time.Time{} // recomputed by the next expire that needs it
	}
}

// evidence is the ids of the kept events, oldest first, at most n (the
// newest n).
func (w *distinctWindow) evidence(n int) ([]string, time.Time) {
	es := make([]entry, 0, len(w.latest))
	for _, e := range w.latest {
		es = append(es, e)
	}
	return idsOf(es, n)
}

func idsOf(es []entry, n int) ([]string, time.Time) {
	slices.SortFunc(es, func(a, b entry) int {
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		return cmp.Compare(a.id, b.id)
	})
	if n > 0 && len(es) > n {
		es = es[len(es)-n:]
	}
	ids := make([]string, len(es))
	for i, e := range es {
		ids[i] = e.id
	}
	var since time.Time
	if len(es) > 0 {
		since = es[0].at
	}
	return ids, since
}

// countWindow keeps the events of a window in time order, at most cap.
type countWindow struct {
	items []entry
	quiet time.Time
	last  time.Time
}

func (w *countWindow) lastSeen() time.Time { return w.last }

func (w *countWindow) expire(before time.Time) {
	i := 0
	for i < len(w.items) && w.items[i].at.Before(before) {
		i++
	}
	if i > 0 {
		w.items = append(w.items[:0], w.items[i:]...)
	}
}

func (w *countWindow) add(e entry, capacity int) {
	if len(w.items) >= capacity {
		w.items = append(w.items[:0], w.items[len(w.items)-capacity+1:]...)
	}
	// Events arrive nearly in order: insert from the back.
	i := len(w.items)
	for i > 0 && w.items[i-1].at.After(e.at) {
		i--
	}
	w.items = slices.Insert(w.items, i, e)
	if e.at.After(w.last) {
		w.last = e.at
	}
}

// keyed is a map of per-key state with at most max keys: when full, the
// tenth of the keys seen longest ago is forgotten.
type keyed[T interface{ lastSeen() time.Time }] struct {
	m   map[string]T
	max int
}

func newKeyed[T interface{ lastSeen() time.Time }](max int) *keyed[T] {
	return &keyed[T]{m: map[string]T{}, max: max}
}

func (k *keyed[T]) get(key string, make func() T) T {
	if v, ok := k.m[key]; ok {
		return v
	}
	if len(k.m) >= k.max {
		k.shrink()
	}
	v := make()
	k.m[key] = v
	return v
}

// sweep forgets the keys whose newest event is before before.
func (k *keyed[T]) sweep(before time.Time) {
	for key, v := range k.m {
		if v.lastSeen().Before(before) {
			delete(k.m, key)
		}
	}
}

// shrink forgets the tenth of the keys seen longest ago (at least one).
func (k *keyed[T]) shrink() {
	times := make([]time.Time, 0, len(k.m))
	for _, v := range k.m {
		times = append(times, v.lastSeen())
	}
	slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
	n := max(1, len(times)/10)
	cut := times[n-1]
	removed := 0
	for key, v := range k.m {
		if removed < n && !v.lastSeen().After(cut) {
			delete(k.m, key)
			removed++
		}
	}
}

// tripped adds e to the window (the last window of time) and reports
// whether it now holds more than max distinct values outside its quiet
// time, which it then starts: one alert a window, not one an event.
func (w *distinctWindow) tripped(e entry, max int, window time.Duration) bool {
	w.expire(e.at.Add(-window))
	w.add(e, max+1)
	if len(w.latest) <= max || e.at.Before(w.quiet) {
		return false
	}
	w.quiet = e.at.Add(window)
	return true
}
