package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/schakelpunt/schakelpunt/audit"
	"github.com/schakelpunt/schakelpunt/store"
)

// auditCommand: schakelpunt audit verify [serve's store flags]. Like cmp
// and diff it exits 0 when the chain is intact, 1 when it is broken, and 2
// when it could not be checked (bad usage, no store, a read error): a
// script that alerts on 1 is never woken by a typo, and a typo never
// passes for an intact log.
func auditCommand(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	if len(args) > 0 && args[0] == "report" {
		return reportCommand(ctx, args[1:], stdout, stderr, getenv)
	}
	if len(args) == 0 || args[0] != "verify" {
		fmt.Fprintln(stderr, "usage: schakelpunt audit verify [--config FILE] [--data-dir DIR] [--store embedded|mongodb] [--mongodb-uri URI]")
		fmt.Fprintln(stderr, "       "+strings.TrimPrefix(reportUsage, "usage: "))
		return &exitError{code: 2, err: errors.New("audit: unknown or missing subcommand")}
	}
	cfg, err := loadConfig(args[1:], getenv)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	if cfg.Store != "mongodb" {
		// Opening the embedded store creates it: verifying a data
		// directory without one would report an empty, intact log.
		path := filepath.Join(cfg.DataDir, "schakelpunt.db")
		if _, err := os.Stat(path); err != nil {
			return &exitError{code: 2, err: fmt.Errorf("no embedded store to verify at %s: %w", path, err)}
		}
	}
	log := newLogger(stderr, cfg.LogLevel)
	st, err := openStore(ctx, cfg, log, false)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	defer st.Close()
	al, ok := st.(store.AuditLog)
	if !ok {
		return &exitError{code: 2, err: fmt.Errorf("store %s keeps no audit log", cfg.Store)}
	}
	rep, err := audit.Verify(ctx, al)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	if rep.OK() {
		fmt.Fprintf(stdout, "audit chain intact: %d events checked, head %d %s\n", rep.Checked, rep.Head.Seq, rep.Head.Hash)
		return nil
	}
	b := rep.Broken
	fmt.Fprintf(stdout, "audit chain BROKEN at event %d", b.Seq)
	if b.ID != "" {
		fmt.Fprintf(stdout, " (AuditEvent/%s)", b.ID)
	}
	fmt.Fprintf(stdout, ": %s\n", b.Reason)
	return &exitError{code: 1, err: errors.New("audit chain broken")}
}
