package audit

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/schakelpunt/schakelpunt/store"
)

// Retention removes events older than Keep, every Every, and records each
// removal as an AuditEvent of its own. The chain stays verifiable: the
// store keeps the link of the last removed event as a checkpoint.
type Retention struct {
	Log      store.AuditLog
	Recorder *Recorder
	Keep     time.Duration
	Every    time.Duration
	Logger   *slog.Logger
	Now      func() time.Time
}

// Run purges until ctx ends.
func (r Retention) Run(ctx context.Context) {
	if r.Keep <= 0 || r.Every <= 0 {
		return
	}
	t := time.NewTicker(r.Every)
	defer t.Stop()
	for {
		if _, err := r.Once(ctx); err != nil && r.Logger != nil {
			r.Logger.Error("audit retention failed", slog.Any("err", err))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Once removes what is past retention now and returns how many events it
// removed.
func (r Retention) Once(ctx context.Context) (int, error) {
	now := time.Now
	if r.Now != nil {
		now = r.Now
	}
	cutoff := now().Add(-r.Keep)
	n, err := r.Log.PurgeAudit(ctx, cutoff)
	if err != nil {
		return 0, fmt.Errorf("audit: retention: %w", err)
	}
	if n == 0 {
		return 0, nil
	}
	_, err = r.Recorder.Record(ctx, Event{
		Interaction: "retention",
		Action:      "D",
		Agent:       &Agent{System: "Schakelpunt audit retention"},
		Status:      200,
		Description: fmt.Sprintf("retention removed %d events recorded before %s", n, cutoff.UTC().Format(time.RFC3339)),
	})
	return n, err
}
