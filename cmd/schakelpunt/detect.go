package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/schakelpunt/schakelpunt/audit"
	"github.com/schakelpunt/schakelpunt/audit/detect"
	"github.com/schakelpunt/schakelpunt/store"
)

// DetectionConfig is the `detection:` section of the configuration file:
// the abuse detection rules (package audit/detect). A rule whose
// threshold (max, count, days, lookback) is 0 is off.
type DetectionConfig struct {
	Enabled           bool               `yaml:"enabled"`
	Queue             int                `yaml:"queue"`        // events that may wait for the detector
	MaxKeys           int                `yaml:"max_keys"`     // professionals, pairs, organisations, patients remembered per rule
	MaxEvidence       int                `yaml:"max_evidence"` // AuditEvents one alert points at
	TimeZone          string             `yaml:"time_zone"`    // for unusual hours
	DistinctPatients  ThresholdWindow    `yaml:"distinct_patients"`
	NoRelationship    LookbackConfig     `yaml:"no_relationship"`
	DenialBurst       CountWindow        `yaml:"denial_burst"`
	UnusualHours      UnusualHoursConfig `yaml:"unusual_hours"`
	ManyOrganisations ThresholdWindow    `yaml:"many_organisations"`
}

// ThresholdWindow fires above Max distinct values within Window.
type ThresholdWindow struct {
	Max    int           `yaml:"max"`
	Window time.Duration `yaml:"window"`
}

// CountWindow fires at Count events within Window.
type CountWindow struct {
	Count  int           `yaml:"count"`
	Window time.Duration `yaml:"window"`
}

// LookbackConfig is how far back an earlier contact counts.
type LookbackConfig struct {
	Lookback time.Duration `yaml:"lookback"`
}

// UnusualHoursConfig is the learned office hours of each organisation.
type UnusualHoursConfig struct {
	Days       int     `yaml:"days"`
	MinShare   float64 `yaml:"min_share"`
	MinHistory int     `yaml:"min_history"`
}

// defaultDetection is the detection section before the file is read:
// detect's defaults, on.
func defaultDetection() DetectionConfig {
	r := detect.DefaultRules()
	return DetectionConfig{
		Enabled: true, Queue: 65536, MaxKeys: r.MaxKeys, MaxEvidence: r.MaxEvidence, TimeZone: "Europe/Amsterdam",
		DistinctPatients:  ThresholdWindow{r.DistinctPatients.Max, r.DistinctPatients.Window},
		NoRelationship:    LookbackConfig{r.NoRelationship.Lookback},
		DenialBurst:       CountWindow{r.DenialBurst.Count, r.DenialBurst.Window},
		UnusualHours:      UnusualHoursConfig{r.UnusualHour.Days, r.UnusualHour.MinShare, r.UnusualHour.MinHistory},
		ManyOrganisations: ThresholdWindow{r.ManyOrganisations.Max, r.ManyOrganisations.Window},
	}
}

// rules turns the section into the detector's rules, checked.
func (c DetectionConfig) rules() (detect.Rules, error) {
	var r detect.Rules
	loc, err := time.LoadLocation(c.TimeZone)
	if err != nil {
		return r, fmt.Errorf("config: detection.time_zone: %w", err)
	}
	if c.Queue < 1 {
		return r, fmt.Errorf("config: detection.queue must be at least 1")
	}
	r.DistinctPatients.Max, r.DistinctPatients.Window = c.DistinctPatients.Max, c.DistinctPatients.Window
	r.NoRelationship.Lookback = c.NoRelationship.Lookback
	r.DenialBurst.Count, r.DenialBurst.Window = c.DenialBurst.Count, c.DenialBurst.Window
	r.UnusualHour.Days, r.UnusualHour.MinShare, r.UnusualHour.MinHistory, r.UnusualHour.Location = c.UnusualHours.Days, c.UnusualHours.MinShare, c.UnusualHours.MinHistory, loc
	r.ManyOrganisations.Max, r.ManyOrganisations.Window = c.ManyOrganisations.Max, c.ManyOrganisations.Window
	r.MaxKeys, r.MaxEvidence = c.MaxKeys, c.MaxEvidence
	if err := r.Check(); err != nil {
		return r, fmt.Errorf("config: detection: %w", err)
	}
	return r, nil
}

// startDetection starts abuse detection on st when it is enabled: its
// alerts counter by rule and its dropped-events counter are registered on
// reg. The returned runner is nil when detection is off.
func startDetection(cfg DetectionConfig, st store.Store, reg prometheus.Registerer, log *slog.Logger) (*detect.Runner, error) {
	if !cfg.Enabled {
		return nil, nil
	}
	rules, err := cfg.rules()
	if err != nil {
		return nil, err
	}
	alerts := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "schakelpunt_abuse_alerts_total",
		Help: "Abuse alerts (Flags) raised from the access log, by rule.",
	}, []string{"rule"})
	dropped := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "schakelpunt_abuse_detection_dropped_events_total",
		Help: "AuditEvents abuse detection could not examine because it was behind.",
	})
	if err := reg.Register(alerts); err != nil {
		return nil, err
	}
	if err := reg.Register(dropped); err != nil {
		return nil, err
	}
	for _, rule := range detect.RuleCodes() {
		alerts.WithLabelValues(rule) // every rule shows, at 0
	}
	d, err := detect.New(rules, detect.Options{Relations: detect.StoreRelations{Store: st}, Logger: log})
	if err != nil {
		return nil, err
	}
	// What the rules learn (an organisation's hours, its contacts) is
	// read back from the log, so that a restart does not start empty.
	now := time.Now()
	warm := func(ctx context.Context, d *detect.Detector) {
		if since := rules.WarmSince(now); !since.IsZero() {
			n, err := detect.Warm(ctx, d, st, since, now)
			if err != nil {
				log.Warn("abuse detection: learning from the log stopped", slog.Int("events", n), slog.Any("err", err))
				return
			}
			log.Info("abuse detection: learned from the log", slog.Int("events", n), slog.Time("since", since))
		}
	}
	return detect.Start(d, detect.RunnerOptions{
		Store: st, Queue: cfg.Queue, Logger: log, Warm: warm,
		OnHit:     func(rule string) { alerts.WithLabelValues(rule).Inc() },
		OnDropped: func(n int) { dropped.Add(float64(n)) },
	}), nil
}

// onRecorded is the Recorder's hook into the runner (none without one).
func onRecorded(r *detect.Runner) func([]audit.Event) {
	if r == nil {
		return nil
	}
	return r.Offer
}
