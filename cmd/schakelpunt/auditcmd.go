package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/schakelpunt/schakelpunt/audit"
	"github.com/schakelpunt/schakelpunt/store"
)

// auditCommand: schakelpunt audit verify [serve's store flags].
func auditCommand(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	if len(args) == 0 || args[0] != "verify" {
		fmt.Fprintln(stderr, "usage: schakelpunt audit verify [--config FILE] [--data-dir DIR] [--store embedded|mongodb] [--mongodb-uri URI]")
		return &exitError{code: 2, err: errors.New("audit: unknown or missing subcommand")}
	}
	cfg, err := loadConfig(args[1:], getenv)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	log := newLogger(stderr, cfg.LogLevel)
	st, err := openStore(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer st.Close()
	al, ok := st.(store.AuditLog)
	if !ok {
		return fmt.Errorf("store %s keeps no audit log", cfg.Store)
	}
	rep, err := audit.Verify(ctx, al)
	if err != nil {
		return err
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
