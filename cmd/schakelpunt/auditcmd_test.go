package main

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	_ "modernc.org/sqlite"

	"github.com/schakelpunt/schakelpunt/audit"
	"github.com/schakelpunt/schakelpunt/store/sqlite"
)

// mustAuditStore writes n chained AuditEvents into a fresh embedded store
// under dataDir, as serve would have, and returns their ids in order.
func mustAuditStore(tb testing.TB, dataDir string, n int) []string {
	tb.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(dataDir, "schakelpunt.db"), sqlite.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		tb.Fatal(err)
	}
	rec := audit.NewRecorder(st, audit.Options{})
	var ids []string
	for i := 0; i < n; i++ {
		id, err := rec.Record(ctx, audit.Event{Interaction: "read", Status: 200,
			Agent: &audit.Agent{UZINumber: "11111111", CardType: "Z", Role: "01.015", URA: "90000001", Address: "127.0.0.1"},
			Query: fmt.Sprintf("GET /fhir/R4/Organization/o%d", i)})
		if err != nil {
			tb.Fatal(err)
		}
		ids = append(ids, id)
	}
	if err := rec.Close(); err != nil {
		tb.Fatal(err)
	}
	if err := st.Close(); err != nil {
		tb.Fatal(err)
	}
	return ids
}

// runCmd runs the binary's main in process.
func runCmd(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	err := realMain(context.Background(), args, &out, &errOut, func(string) string { return "" })
	if err != nil {
		code = exitCode(err)
		fmt.Fprintln(&errOut, "schakelpunt:", err)
	}
	return code, out.String(), errOut.String()
}

// execDB runs statements on a (closed) database file, as someone with
// access to the disk would.
func execDB(tb testing.TB, path string, stmt string, args ...any) {
	tb.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	res, err := db.Exec(stmt, args...)
	if err != nil {
		tb.Fatal(err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		tb.Fatalf("%s changed %d rows", stmt, n)
	}
}

func TestAuditVerifyCommand(t *testing.T) {
	cases := []struct {
		name   string
		tamper func(t *testing.T, db string, ids []string)
		args   func(dir string) []string
		code   int
		stdout []string // all of these in stdout
	}{
		{
			name:   "intact",
			args:   func(dir string) []string { return []string{"audit", "verify", "--data-dir", dir} },
			code:   0,
			stdout: []string{"audit chain intact: 5 events checked", "head 5 "},
		},
		{
			name: "intact, data directory from the config file",
			args: func(dir string) []string {
				cfg := filepath.Join(dir, "schakelpunt.yaml")
				if err := os.WriteFile(cfg, []byte("data_dir: "+dir+"\nlog_level: error\n"), 0o600); err != nil {
					t.Fatal(err)
				}
				return []string{"audit", "verify", "--config", cfg}
			},
			code:   0,
			stdout: []string{"audit chain intact: 5 events checked"},
		},
		{
			name: "an edited event",
			tamper: func(t *testing.T, db string, ids []string) {
				execDB(t, db, `UPDATE audit_chain SET body = replace(body, '"outcome":"0"', '"outcome":"4"') WHERE id = ?`, ids[2])
			},
			args:   func(dir string) []string { return []string{"audit", "verify", "--data-dir", dir} },
			code:   1,
			stdout: []string{"audit chain BROKEN at event 3 (AuditEvent/", "was changed"},
		},
		{
			name: "a deleted event",
			tamper: func(t *testing.T, db string, ids []string) {
				execDB(t, db, `DELETE FROM audit_chain WHERE id = ?`, ids[1])
			},
			args:   func(dir string) []string { return []string{"audit", "verify", "--data-dir", dir} },
			code:   1,
			stdout: []string{"audit chain BROKEN at event 2", "missing"},
		},
		{
			name: "a removed tail",
			tamper: func(t *testing.T, db string, ids []string) {
				execDB(t, db, `DELETE FROM audit_chain WHERE id = ?`, ids[4])
			},
			args:   func(dir string) []string { return []string{"audit", "verify", "--data-dir", dir} },
			code:   1,
			stdout: []string{"audit chain BROKEN at event 5", "removed"},
		},
		{
			name: "a forged head",
			tamper: func(t *testing.T, db string, ids []string) {
				execDB(t, db, `UPDATE audit_marks SET hash = 'forged' WHERE name = 'head'`)
			},
			args:   func(dir string) []string { return []string{"audit", "verify", "--data-dir", dir} },
			code:   1,
			stdout: []string{"audit chain BROKEN"},
		},
		{"no subcommand", nil, func(string) []string { return []string{"audit"} }, 2, nil},
		{"unknown subcommand", nil, func(string) []string { return []string{"audit", "repair"} }, 2, nil},
		{"unknown flag", nil, func(dir string) []string { return []string{"audit", "verify", "--data-dir", dir, "--frobnicate"} }, 2, nil},
		{"stray argument", nil, func(dir string) []string { return []string{"audit", "verify", "--data-dir", dir, "now"} }, 2, nil},
		{"bad store", nil, func(dir string) []string {
			return []string{"audit", "verify", "--data-dir", dir, "--store", "postgres"}
		}, 2, nil},
		{"missing config file", nil, func(dir string) []string {
			return []string{"audit", "verify", "--config", filepath.Join(dir, "nope.yaml")}
		}, 2, nil},
		{"no store in the data directory", nil, func(dir string) []string {
			return []string{"audit", "verify", "--data-dir", filepath.Join(dir, "elsewhere")}
		}, 2, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			ids := mustAuditStore(t, dir, 5)
			if c.tamper != nil {
				c.tamper(t, filepath.Join(dir, "schakelpunt.db"), ids)
			}
			code, stdout, stderr := runCmd(c.args(dir)...)
			if code != c.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, c.code, stdout, stderr)
			}
			for _, want := range c.stdout {
				if !strings.Contains(stdout, want) {
					t.Errorf("stdout %q lacks %q", stdout, want)
				}
			}
			if c.code == 2 && stdout != "" {
				t.Errorf("a usage error printed a verdict: %s", stdout)
			}
		})
	}

	t.Run("no store is created where there was none", func(t *testing.T) {
		dir := t.TempDir()
		if code, _, _ := runCmd("audit", "verify", "--data-dir", dir); code != 2 {
			t.Errorf("exit %d, want 2", code)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Errorf("verify left files behind: %v", entries)
		}
	})
}
