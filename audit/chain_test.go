package audit_test

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/schakelpunt/schakelpunt/audit"
	"github.com/schakelpunt/schakelpunt/store"
	"github.com/schakelpunt/schakelpunt/store/sqlite"
)

// tamperDB opens the store's database file beside it, as someone with
// access to the disk would.
func tamperDB(t *testing.T, s *sqlite.Store) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", s.Path()+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func mustExec(t *testing.T, db *sql.DB, q string, args ...any) {
	t.Helper()
	res, err := db.Exec(q, args...)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		t.Fatalf("%s %v: no row changed", q, args)
	}
}

// editBody rewrites the stored JSON of an event in place.
func editBody(t *testing.T, db *sql.DB, id string, edit func([]byte) []byte) {
	t.Helper()
	var body []byte
	if err := db.QueryRow(`SELECT body FROM audit_chain WHERE id = ?`, id).Scan(&body); err != nil {
		t.Fatal(err)
	}
	changed := edit(body)
	if bytes.Equal(changed, body) {
		t.Fatalf("the edit of %s changed nothing", id)
	}
	mustExec(t, db, `UPDATE audit_chain SET body = ? WHERE id = ?`, changed, id)
}

// TestVerify records ten events, tampers with the database file directly
// and checks that Verify reports the first broken link.
func TestVerify(t *testing.T) {
	const n, victim = 10, 4 // the tampered event: ev-4 at seq 4
	for _, tc := range []struct {
		name     string
		tamper   func(t *testing.T, db *sql.DB, entries []store.AuditEntry)
		seq      int64  // 0: the chain holds
		reason   string // in Broken.Reason
		victimID bool   // Broken.ID names the victim
	}{
		{name: "intact", tamper: func(*testing.T, *sql.DB, []store.AuditEntry) {}},
		{name: "outcome edited", seq: victim, reason: "changed", victimID: true,
			tamper: func(t *testing.T, db *sql.DB, _ []store.AuditEntry) {
				editBody(t, db, "ev-4", func(b []byte) []byte { return bytes.Replace(b, []byte(`"outcome":"0"`), []byte(`"outcome":"4"`), 1) })
			}},
		{name: "patient edited", seq: victim, reason: "changed", victimID: true,
			tamper: func(t *testing.T, db *sql.DB, _ []store.AuditEntry) {
				editBody(t, db, "ev-4", func(b []byte) []byte { return bytes.ReplaceAll(b, []byte(`"999900043"`), []byte(`"999900055"`)) })
			}},
		{name: "element added", seq: victim, reason: "changed", victimID: true,
			tamper: func(t *testing.T, db *sql.DB, _ []store.AuditEntry) {
				editBody(t, db, "ev-4", func(b []byte) []byte {
					return bytes.Replace(b, []byte(`"action":`), []byte(`"outcomeDesc":"nothing happened","action":`), 1)
				})
			}},
		{name: "body no longer JSON", seq: victim, reason: "parse", victimID: true,
			tamper: func(t *testing.T, db *sql.DB, _ []store.AuditEntry) {
				editBody(t, db, "ev-4", func(b []byte) []byte { return b[:len(b)/2] })
			}},
		{name: "shown link edited", seq: victim, reason: "shown", victimID: true,
			tamper: func(t *testing.T, db *sql.DB, e []store.AuditEntry) {
				editBody(t, db, "ev-4", func(b []byte) []byte {
					return bytes.Replace(b, []byte(e[victim-1].Hash), []byte(strings.Repeat("0", 64)), 1)
				})
			}},
		{name: "stored hash edited", seq: victim, reason: "changed", victimID: true,
			tamper: func(t *testing.T, db *sql.DB, _ []store.AuditEntry) {
				mustExec(t, db, `UPDATE audit_chain SET hash = ? WHERE seq = ?`, strings.Repeat("0", 64), victim)
			}},
		{name: "edited and rehashed", seq: victim + 1, reason: "previous",
			// The tamperer recomputes the victim's hash (and the link it
			// shows): the next event's previous link gives it away.
			tamper: func(t *testing.T, db *sql.DB, e []store.AuditEntry) {
				var edited []byte
				editBody(t, db, "ev-4", func(b []byte) []byte {
					edited = bytes.Replace(b, []byte(`"outcome":"0"`), []byte(`"outcome":"4"`), 1)
					return edited
				})
				canon, err := audit.Canonical(edited)
				if err != nil {
					t.Fatal(err)
				}
				hash := audit.Link(e[victim-2].Hash, canon)
				editBody(t, db, "ev-4", func(b []byte) []byte { return bytes.Replace(b, []byte(e[victim-1].Hash), []byte(hash), 1) })
				mustExec(t, db, `UPDATE audit_chain SET hash = ? WHERE seq = ?`, hash, victim)
			}},
		{name: "chain row deleted", seq: victim, reason: "missing",
			tamper: func(t *testing.T, db *sql.DB, _ []store.AuditEntry) {
				mustExec(t, db, `DELETE FROM audit_chain WHERE seq = ?`, victim)
			}},
		{name: "event deleted by id", seq: victim, reason: "missing",
			tamper: func(t *testing.T, db *sql.DB, _ []store.AuditEntry) {
				mustExec(t, db, `DELETE FROM audit_chain WHERE id = 'ev-4'`)
			}},
		{name: "event moved to the end", seq: victim, reason: "missing",
			tamper: func(t *testing.T, db *sql.DB, _ []store.AuditEntry) {
				mustExec(t, db, `UPDATE audit_chain SET seq = 100 WHERE id = 'ev-4'`)
			}},
		{name: "tail deleted, head left", seq: n, reason: "removed",
			tamper: func(t *testing.T, db *sql.DB, _ []store.AuditEntry) {
				mustExec(t, db, `DELETE FROM audit_chain WHERE id = ?`, fmt.Sprintf("ev-%d", n))
			}},
		{name: "event swapped with another", seq: victim, reason: "changed", victimID: true,
			tamper: func(t *testing.T, db *sql.DB, e []store.AuditEntry) {
				editBody(t, db, "ev-4", func([]byte) []byte {
					return bytes.Replace(e[victim].Resource.Body, []byte(`"id":"ev-5"`), []byte(`"id":"ev-4"`), 1)
				})
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := MustOpenStore(t)
			rec := MustRecorder(t, s, audit.Options{NewID: seqIDs("ev")})
			for i := range n {
				recordOne(t, s, rec, event(i+1))
			}
			entries := scanAll(t, s)
			tc.tamper(t, tamperDB(t, s), entries)
			rep, err := audit.Verify(context.Background(), s)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if rep.Head.Seq != n {
				t.Errorf("report head %d, want %d", rep.Head.Seq, n)
			}
			if tc.seq == 0 {
				if !rep.OK() || rep.Checked != n {
					t.Fatalf("intact chain: %+v", rep)
				}
				return
			}
			if rep.OK() {
				t.Fatalf("tampering not detected: %+v", rep)
			}
			b := rep.Broken
			if b.Seq != tc.seq || !strings.Contains(b.Reason, tc.reason) {
				t.Fatalf("broken at %d (%q), want %d (%q)", b.Seq, b.Reason, tc.seq, tc.reason)
			}
			if tc.victimID && b.ID != "ev-4" {
				t.Errorf("broken event %q, want ev-4", b.ID)
			}
			if rep.Checked != tc.seq-1 {
				t.Errorf("checked %d before the break, want %d", rep.Checked, tc.seq-1)
			}
		})
	}
}

// An empty log verifies; so does one whose every event retention removed.
func TestVerifyEmpty(t *testing.T) {
	s := MustOpenStore(t)
	rep := mustVerify(t, s, 0)
	if rep.Head != (store.ChainHead{}) || rep.Checkpoint != (store.ChainHead{}) {
		t.Fatalf("empty log: %+v", rep)
	}
}

// The chain survives a restart: a new recorder on the reopened store
// chains on from the stored head.
func TestChainAcrossRestart(t *testing.T) {
	s := MustOpenStore(t)
	rec := audit.NewRecorder(s, audit.Options{})
	for i := range 5 {
		recordOne(t, s, rec, event(i))
	}
	if err := rec.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = mustOpenAt(t, s.Path())
	rec = MustRecorder(t, s, audit.Options{})
	for i := range 5 {
		recordOne(t, s, rec, event(i))
	}
	mustVerify(t, s, 10)
}

// The chain of a database written by the previous schema verifies after
// the store migrated it (store/sqlite/testdata/schema1.db: 30 events, the
// oldest 5 removed by retention).
func TestVerifyMigrated(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "store", "sqlite", "testdata", "schema1.db"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "schema1.db")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	s := mustOpenAt(t, path)
	rep, err := audit.Verify(context.Background(), s)
	if err != nil || !rep.OK() || rep.Checked != 25 || rep.Checkpoint.Seq != 5 || rep.Head.Seq != 30 {
		t.Fatalf("Verify: %+v, %v", rep, err)
	}
}
