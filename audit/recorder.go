package audit

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/schakelpunt/schakelpunt/fhir"
	"github.com/schakelpunt/schakelpunt/store"
)

// ErrClosed is returned by Record after Close.
var ErrClosed = errors.New("audit: recorder closed")

// Options tune a Recorder.
type Options struct {
	Logger   *slog.Logger
	Observer string // the switching point's name in AuditEvent.source
	MaxBatch int    // events per commit (default 512)
	Now      func() time.Time
	NewID    func() string
	// OnRecorded, when set, is called from the writer with each batch
	// once it is durably stored, in chain order. It must not block (abuse
	// detection queues and drops what it cannot take) and must not keep
	// the slice.
	OnRecorded func([]Event)
	// Linger is how long a batch may wait for the events of requests in
	// flight (see Expect) when more are in flight than LingerAbove
	// (default 2 ms; negative: never). LingerAbove defaults to twice
	// GOMAXPROCS: below it the requests are not queuing for the CPU, and
	// waiting would only make them slower.
	Linger      time.Duration
	LingerAbove int
}

// Recorder writes AuditEvents durably, chained, in batches: concurrent
// Record calls are grouped into one AppendAudit (one commit) and each
// returns only when its event is stored.
type Recorder struct {
	log      store.AuditLog
	logger   *slog.Logger
	observer string
	maxBatch int
	now      func() time.Time
	newID    func() string
	recorded func([]Event)
	events   []Event // the batch handed to recorded

	// expected counts the requests in flight that will record an event
	// (Expect); linger and lingerAbove as in Options.
	expected    atomic.Int64
	linger      time.Duration
	lingerAbove int
	lingering   atomic.Bool // a batch is waiting (tests)

	// cmu is held by whoever commits a batch: the run goroutine, or a
	// Record that found nothing queued and no batch being written. head
	// is the chain head as this recorder last wrote it, reloaded after a
	// conflict or a failure; it and events are touched only under cmu.
	cmu       sync.Mutex
	head      store.ChainHead
	headKnown bool

	queue chan *pending
	stop  chan struct{}
	wg    sync.WaitGroup
	mu    sync.RWMutex // guards closed
	close bool
}

// pending is what one Record or RecordAll call asks to store: its events
// go into one batch, consecutive in the chain.
type pending struct {
	evs   []Event
	rs    []rendered
	reply chan error
}

// NewRecorder starts a recorder on log.
func NewRecorder(log store.AuditLog, opts Options) *Recorder {
	r := &Recorder{
		log: log, logger: opts.Logger, observer: opts.Observer, maxBatch: opts.MaxBatch,
		now: opts.Now, newID: opts.NewID, recorded: opts.OnRecorded,
		linger: opts.Linger, lingerAbove: opts.LingerAbove,
		queue: make(chan *pending, 4096), stop: make(chan struct{}),
	}
	if r.linger == 0 {
		r.linger = DefaultLinger
	}
	if r.lingerAbove <= 0 {
		r.lingerAbove = 2 * runtime.GOMAXPROCS(0)
	}
	if r.logger == nil {
		r.logger = slog.New(slog.DiscardHandler)
	}
	if r.maxBatch <= 0 {
		r.maxBatch = 512
	}
	if r.now == nil {
		r.now = time.Now
	}
	if r.newID == nil {
		r.newID = timeOrderedID
	}
	if r.observer == "" {
		r.observer = "Schakelpunt"
	}
	r.wg.Add(1)
	go r.run()
	return r
}

// DefaultLinger is Options.Linger's default.
const DefaultLinger = 2 * time.Millisecond

// Expect tells the recorder that a request has started that will record
// an event; done, called once when it has, ends that. Under load (more
// requests in flight than LingerAbove) a batch waits up to Linger for the
// events of the requests in flight, so that several share one commit: a
// commit costs about 0.15 ms of CPU and a sync of the disk however many
// events it holds, and one commit per request took a tenth of the CPU of
// a loaded switching point.
func (r *Recorder) Expect() (done func()) {
	r.expected.Add(1)
	var once sync.Once
	return func() { once.Do(func() { r.expected.Add(-1) }) }
}

// timeOrderedID is the default event id: 16 hex digits of the time in
// nanoseconds, then 16 random ones. Ids in creation order keep the
// store's indexes on (term, id) and (type, id) appending at the end of
// each term's range instead of touching a random page per term per event
// (with random ids a batch of events dirtied hundreds of pages, and the
// write-ahead log grew by ~100 KB per event). The random half keeps ids
// unique across instances.
func timeOrderedID() string {
	b := make([]byte, 16)
	binary.BigEndian.PutUint64(b, uint64(time.Now().UnixNano()))
	_, _ = rand.Read(b[8:])
	return hex.EncodeToString(b)
}

// Record stores ev and returns its id once it is durably stored. An error
// means the event is not stored: the caller must not release data (fail
// closed); the error is a *fhir.Error of kind unavailable.
func (r *Recorder) Record(ctx context.Context, ev Event) (string, error) {
	evs := []Event{ev}
	if err := r.RecordAll(ctx, evs); err != nil {
		return "", err
	}
	return evs[0].ID, nil
}

// RecordAll stores the events of one interaction in one commit, all or
// none, and sets the ID of each that had none. IHE BALP records a query
// whose results are about several patients as one event per patient, so
// that each finds it in their own log and sees only their own part. An
// error is Record's.
func (r *Recorder) RecordAll(ctx context.Context, evs []Event) error {
	if len(evs) == 0 {
		return nil
	}
	now := r.now()
	p := &pending{evs: evs, rs: make([]rendered, len(evs)), reply: make(chan error, 1)}
	for i := range evs {
		ev := &evs[i]
		if ev.ID == "" {
			ev.ID = r.newID()
		}
		if ev.Recorded.IsZero() {
			ev.Recorded = now
		}
		if ev.Observer == "" {
			ev.Observer = r.observer
		}
		ev.validUTF8()
		var err error
		if p.rs[i], err = render(ev); err != nil {
			return unavailable(err)
		}
	}
	r.mu.RLock()
	if r.close {
		r.mu.RUnlock()
		return unavailable(ErrClosed)
	}
	if len(r.queue) == 0 && r.expected.Load() <= int64(r.lingerAbove) && r.cmu.TryLock() {
		// Nothing to group with, and no batch being written: commit
		// here, sparing the hand-offs to the run goroutine and back.
		// Close waits for this (r.mu).
		r.commit([]*pending{p})
		r.cmu.Unlock()
	} else {
		select {
		case r.queue <- p:
		case <-ctx.Done():
			r.mu.RUnlock()
			return unavailable(ctx.Err())
		}
	}
	r.mu.RUnlock()
	// Once queued, the events are written even if ctx ends: wait for the
	// verdict so that nothing is acknowledged twice or lost silently.
	if err := <-p.reply; err != nil {
		return unavailable(err)
	}
	return nil
}

func unavailable(err error) error {
	return fhir.Errorf(fhir.KindUnavailable, "transient", "the access log cannot be written, so no data is released; try again later").Wrap(err)
}

// Close writes what is queued and stops the recorder.
func (r *Recorder) Close() error {
	r.mu.Lock()
	if r.close {
		r.mu.Unlock()
		return nil
	}
	r.close = true
	close(r.stop)
	r.mu.Unlock()
	r.wg.Wait()
	return nil
}

func (r *Recorder) run() {
	defer r.wg.Done()
	batch := make([]*pending, 0, r.maxBatch)
	for {
		var first *pending
		stopping := false
		select {
		case first = <-r.queue:
		case <-r.stop:
			// Close holds the lock while it closes stop, so nothing is
			// queued after: write what is there, in batches.
			stopping = true
			select {
			case first = <-r.queue:
			default:
				return
			}
		}
		batch = append(batch[:0], first)
	fill:
		for len(batch) < r.maxBatch {
			select {
			case p := <-r.queue:
				batch = append(batch, p)
			default:
				break fill
			}
		}
		if !stopping {
			batch = r.lingerFor(batch)
		}
		r.cmu.Lock()
		r.commit(batch)
		r.cmu.Unlock()
		clear(batch)
		if stopping {
			for len(r.queue) > 0 {
				batch = batch[:0]
				for len(batch) < r.maxBatch && len(r.queue) > 0 {
					batch = append(batch, <-r.queue)
				}
				r.cmu.Lock()
				r.commit(batch)
				r.cmu.Unlock()
				clear(batch)
			}
			return
		}
	}
}

// lingerFor adds to batch the events that come within Linger, while
// more requests are in flight than LingerAbove and than the batch holds.
func (r *Recorder) lingerFor(batch []*pending) []*pending {
	want := r.expected.Load()
	if r.linger < 0 || want <= int64(r.lingerAbove) || want <= int64(len(batch)) {
		return batch
	}
	t := time.NewTimer(r.linger)
	defer t.Stop()
	r.lingering.Store(true)
	defer r.lingering.Store(false)
	for len(batch) < r.maxBatch && int64(len(batch)) < want {
		select {
		case p := <-r.queue:
			batch = append(batch, p)
		case <-t.C:
			return batch
		case <-r.stop:
			return batch
		}
	}
	return batch
}

// commitTimeout bounds one batch: its writes and its retries after
// conflicts with other instances writing the same chain.
const commitTimeout = 30 * time.Second

// commit chains and appends a batch, retrying when another writer moved
// the chain, and answers every waiter.
func (r *Recorder) commit(batch []*pending) {
	ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
	defer cancel()
	var err error
	for attempt := 0; ; attempt++ {
		if !r.headKnown {
			if r.head, err = r.log.AuditHead(ctx); err != nil {
				break
			}
			r.headKnown = true
		}
		var recs []store.AuditRecord
		if recs, err = r.chain(r.head, batch); err != nil {
			break
		}
		err = r.log.AppendAudit(ctx, recs)
		if err == nil {
			last := recs[len(recs)-1]
			r.head = store.ChainHead{Seq: last.Seq, Hash: last.Hash}
			break
		}
		r.headKnown = false // another writer moved the chain, or the write failed
		if !errors.Is(err, store.ErrChainConflict) {
			break
		}
		// Another instance appended first. Reload its head and try again,
		// after a random pause that grows with the attempts so that two
		// instances in step fall out of it.
		pause := time.Duration(mrand.Int64N(int64(time.Millisecond) << min(attempt, 6)))
		select {
		case <-ctx.Done():
			err = fmt.Errorf("audit: chain conflicts for %s: %w", commitTimeout, err)
		case <-time.After(pause):
			continue
		}
		break
	}
	if err != nil {
		r.logger.Error("audit write failed", slog.Int("events", len(batch)), slog.Any("err", err))
	}
	for _, p := range batch {
		p.reply <- err
	}
	if err == nil && r.recorded != nil {
		r.events = r.events[:0]
		for _, p := range batch {
			r.events = append(r.events, p.evs...)
		}
		r.recorded(r.events)
		clear(r.events)
	}
}

// chain links the rendered batch onto head.
func (r *Recorder) chain(head store.ChainHead, batch []*pending) ([]store.AuditRecord, error) {
	n := 0
	for _, p := range batch {
		n += len(p.evs)
	}
	recs := make([]store.AuditRecord, 0, n)
	seq, prev := head.Seq, head.Hash
	for _, p := range batch {
		for i := range p.evs {
			ev, rd := &p.evs[i], &p.rs[i]
			seq++
			hash := Link(prev, rd.canon)
			recs = append(recs, store.AuditRecord{
				Seq: seq, Prev: prev, Hash: hash, Recorded: ev.Recorded,
				Write: store.Write{Type: "AuditEvent", ID: ev.ID, Body: rd.body(seq, prev, hash), Terms: rd.terms},
			})
			prev = hash
		}
	}
	return recs, nil
}
