package detect

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/schakelpunt/schakelpunt/audit"
	"github.com/schakelpunt/schakelpunt/store"
)

// FlagStore keeps the Flags (a store.Store does).
type FlagStore interface {
	Create(ctx context.Context, w store.Write) (store.Resource, error)
}

// RunnerOptions configure a Runner.
type RunnerOptions struct {
	Store FlagStore
	// Queue is how many events may wait for the detector (default
	// 65536); beyond it events are dropped, counted and logged.
	Queue  int
	Logger *slog.Logger
	// OnHit is called once per hit with its rule code (a Prometheus
	// counter by rule); OnDropped with the number of events dropped.
	OnHit     func(rule string)
	OnDropped func(n int)
	NewID     func() string
	// Warm, when set, runs in the detector's goroutine before the first
	// event is examined (events queue meanwhile): learning from the log,
	// see Warm. Its context ends with Close.
	Warm func(ctx context.Context, d *Detector)
	// CloseTimeout is how long Close goes on examining what is queued
	// (default DefaultCloseTimeout); see Shutdown.
	CloseTimeout time.Duration
}

// DefaultCloseTimeout is RunnerOptions.CloseTimeout when unset.
const DefaultCloseTimeout = 5 * time.Second

// Runner feeds a Detector from the Recorder in its own goroutine and
// stores each hit as a Flag. Offer never blocks the writer.
type Runner struct {
	d     *Detector
	opts  RunnerOptions
	queue chan Observation
	stop  context.CancelFunc // ends Warm
	ctx   context.Context
	// work carries the store lookups and Flag writes of the examination;
	// abandon ends it when Shutdown's context ends first.
	work    context.Context
	abandon context.CancelFunc
	mu      sync.RWMutex // guards closed against Offer
	closed  bool
	wg      sync.WaitGroup
}

// Start runs d until Close.
func Start(d *Detector, opts RunnerOptions) *Runner {
	if opts.Queue <= 0 {
		opts.Queue = 65536
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.OnHit == nil {
		opts.OnHit = func(string) {}
	}
	if opts.OnDropped == nil {
		opts.OnDropped = func(int) {}
	}
	if opts.NewID == nil {
		opts.NewID = newFlagID
	}
	if opts.CloseTimeout <= 0 {
		opts.CloseTimeout = DefaultCloseTimeout
	}
	r := &Runner{d: d, opts: opts, queue: make(chan Observation, opts.Queue)}
	r.ctx, r.stop = context.WithCancel(context.Background())
	r.work, r.abandon = context.WithCancel(context.Background())
	r.wg.Add(1)
	go r.run()
	return r
}

// newFlagID is time-ordered like the AuditEvent ids: 16 hex digits of
// the time in nanoseconds, then 16 random ones.
func newFlagID() string {
	b := make([]byte, 16)
	binary.BigEndian.PutUint64(b, uint64(time.Now().UnixNano()))
	_, _ = rand.Read(b[8:])
	return hex.EncodeToString(b)
}

// Offer queues the events the Recorder has stored (its OnRecorded hook).
// It never blocks: what does not fit is dropped, counted and logged
// (without a BSN).
func (r *Runner) Offer(events []audit.Event) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.closed {
		return
	}
	for i := range events {
		select {
		case r.queue <- FromEvent(&events[i]):
		default:
			dropped := len(events) - i
			r.opts.OnDropped(dropped)
			r.opts.Logger.Warn("abuse detection is behind: events not examined", slog.Int("dropped", dropped), slog.String("first", events[i].ID))
			return
		}
	}
}

// Close is Shutdown with RunnerOptions.CloseTimeout. A nil Runner is
// closed.
func (r *Runner) Close() {
	if r == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.opts.CloseTimeout)
	defer cancel()
	_ = r.Shutdown(ctx)
}

// Shutdown stops taking events and examines what is queued until ctx
// ends. Then the store lookup under way is abandoned, no more are made,
// and the events still queued are dropped: counted (OnDropped) and
// logged without a BSN; Shutdown then returns ctx's error. A second
// Shutdown returns at once. A nil Runner is closed.
func (r *Runner) Shutdown(ctx context.Context) error {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	close(r.queue)
	r.mu.Unlock()
	r.stop()
	done := make(chan struct{})
	go func() {
		r.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		r.abandon()
		return nil
	case <-ctx.Done():
	}
	r.abandon()
	<-done
	return fmt.Errorf("detect: queued events dropped at close: %w", context.Cause(ctx))
}

func (r *Runner) run() {
	defer r.wg.Done()
	if r.opts.Warm != nil {
		r.opts.Warm(r.ctx, r.d)
	}
	var (
		dropped int
		first   string
	)
	for o := range r.queue {
		if r.work.Err() != nil {
			if dropped == 0 {
				first = o.ID
			}
			dropped++
			continue
		}
		for _, h := range r.d.Observe(r.work, o) {
			r.raise(r.work, h)
		}
	}
	if dropped > 0 {
		r.opts.OnDropped(dropped)
		r.opts.Logger.Warn("abuse detection closed: queued events not examined", slog.Int("dropped", dropped), slog.String("first", first))
	}
}

// raise counts a hit and stores its Flag.
func (r *Runner) raise(ctx context.Context, h Hit) {
	r.opts.OnHit(h.Rule)
	id := r.opts.NewID()
	w, err := FlagWrite(h, id)
	if err == nil {
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err = r.opts.Store.Create(wctx, w)
		cancel()
	}
	if err != nil {
		r.opts.Logger.Error("abuse detection: flag not stored", slog.String("rule", h.Rule), slog.String("flag", id), slog.Any("err", err))
		return
	}
	r.opts.Logger.Info("abuse detection: flag raised", slog.String("rule", h.Rule), slog.String("flag", id), slog.Int("evidence", len(h.Evidence)))
}
