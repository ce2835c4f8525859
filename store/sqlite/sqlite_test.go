package sqlite_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/schakelpunt/schakelpunt/fhir"
	"github.com/schakelpunt/schakelpunt/store"
	"github.com/schakelpunt/schakelpunt/store/sqlite"
	"github.com/schakelpunt/schakelpunt/store/storetest"
)

// MustOpen opens a store at path, failing tb on error.
func MustOpen(tb testing.TB, path string) *sqlite.Store {
	tb.Helper()
	s, err := sqlite.Open(context.Background(), path, sqlite.Options{})
	if err != nil {
		tb.Fatalf("open %s: %v", path, err)
	}
	return s
}

func TestContract(t *testing.T) {
	// The suite's data is small, so by default a clause drives nearly
	// every search; run it also with the other plans.
	for _, tc := range []struct {
		name       string
		driveLimit int
		sortKeys   bool
	}{
		{"default", -1, true},
		{"no driver", 0, true},
		{"no driver, no sort keys", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if testing.Short() && tc.driveLimit >= 0 {
				t.Skip("the other plans only without -short")
			}
			open := func(t *testing.T, path string) store.Store {
				s := MustOpen(t, path)
				if tc.driveLimit >= 0 {
					sqlite.SetPlans(s, tc.driveLimit, tc.sortKeys)
				}
				return s
			}
			storetest.Run(t, storetest.Harness{
				Open: func(t *testing.T) store.Store {
					return open(t, filepath.Join(t.TempDir(), "schakelpunt.db"))
				},
				Reopen: func(t *testing.T, closed store.Store) store.Store {
					return open(t, closed.(*sqlite.Store).Path())
				},
			})
		})
	}
}

// A process that dies without Close loses no acknowledged write: the
// database file and its WAL, copied as they are on disk, hold them all.
func TestCrashKeepsAcknowledgedWrites(t *testing.T) {
	dir := t.TempDir()
	s := MustOpen(t, filepath.Join(dir, "live.db"))
	defer s.Close()
	ctx := context.Background()
	const n = 50
	for i := range n {
		body := `{"resourceType":"Consent","status":"active"}`
		if _, err := s.Update(ctx, storetest.NewWrite(t, "Consent", fmt.Sprintf("c%d", i), body), 0); err != nil {
			t.Fatal(err)
		}
	}
	// Copy the files while the store is open and idle: what a crash leaves.
	crashed := filepath.Join(t.TempDir(), "crashed.db")
	for _, suffix := range []string{"", "-wal"} {
		copyFile(t, filepath.Join(dir, "live.db"+suffix), crashed+suffix)
	}
	c := MustOpen(t, crashed)
	defer c.Close()
	hist, err := c.History(ctx, store.HistoryQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != n {
		t.Fatalf("after a crash %d versions remain, want %d", len(hist), n)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "future.db")
	s := MustOpen(t, path)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := sqlite.ExecFile(path, "PRAGMA user_version = 99"); err != nil {
		t.Fatal(err)
	}
	if _, err := sqlite.Open(context.Background(), path, sqlite.Options{}); err == nil {
		t.Fatal("opened a database of a newer schema")
	}
}

func TestWriteNeedsTypeAndID(t *testing.T) {
	s := MustOpen(t, filepath.Join(t.TempDir(), "db"))
	defer s.Close()
	_, err := s.Create(context.Background(), store.Write{Type: "Consent", Body: []byte(`{}`)})
	if err == nil || errors.Is(err, store.ErrExists) {
		t.Fatalf("create without an id: %v", err)
	}
}

// Sort keys missing for resources written before their parameter was
// listed (by an older release) are filled in by the next write of the
// type, and only then used.
func TestSortKeysBackfill(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	s := MustOpen(t, path)
	ctx := context.Background()
	for i := range 20 {
		body := fmt.Sprintf(`{"resourceType":"Flag","period":{"start":"2026-11-%02dT10:00:00Z"}}`, 28-i)
		if _, err := s.Create(ctx, storetest.NewWrite(t, "Flag", fmt.Sprintf("a%02d", i), body)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Delete(ctx, "Flag", "a05", 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := sqlite.ExecFile(path, "DELETE FROM sortkeys", "DELETE FROM sortparams"); err != nil {
		t.Fatal(err)
	}
	sorted := func(s *sqlite.Store) []string {
		t.Helper()
		var ids []string
		q := store.Query{Type: "Flag", Sort: &fhir.SortKey{Param: "date"}, Limit: 7}
		for {
			p, err := s.Search(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range p.Resources {
				ids = append(ids, r.ID)
			}
			if p.Next == nil {
				return ids
			}
			q.After = p.Next
		}
	}
	s = MustOpen(t, path)
	defer s.Close()
	before := sorted(s) // computed keys
	if len(before) != 19 || before[0] != "a19" || before[18] != "a00" {
		t.Fatalf("before the backfill: %v", before)
	}
	if _, err := s.Update(ctx, storetest.NewWrite(t, "Flag", "a00", `{"resourceType":"Flag","period":{"start":"2026-10-01T10:00:00Z"}}`), 0); err != nil {
		t.Fatal(err)
	}
	after := sorted(s) // sort keys
	want := append([]string{"a00"}, before[:18]...)
	if !slices.Equal(after, want) {
		t.Fatalf("after the backfill:\n got %v\nwant %v", after, want)
	}
}

// TestGeneration: a type's generation has moved by the time a write of
// it is acknowledged, and only that type's.
func TestGeneration(t *testing.T) {
	ctx := context.Background()
	s := MustOpen(t, filepath.Join(t.TempDir(), "gen.db"))
	defer s.Close()
	consent := func(id string) store.Write {
		return store.Write{Type: "Consent", ID: id, Body: []byte(`{"resourceType":"Consent"}`)}
	}
	steps := []struct {
		name         string
		write        func() error
		consentMoves bool
		patientMoves bool
	}{
		{"create a consent", func() error { _, err := s.Create(ctx, consent("c1")); return err }, true, false},
		{"update it", func() error { _, err := s.Update(ctx, consent("c1"), 0); return err }, true, false},
		{"create a patient", func() error {
			_, err := s.Create(ctx, store.Write{Type: "Patient", ID: "p1", Body: []byte(`{"resourceType":"Patient"}`)})
			return err
		}, false, true},
		{"delete the consent", func() error { _, err := s.Delete(ctx, "Consent", "c1", 0); return err }, true, false},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			c0, p0 := s.Generation("Consent"), s.Generation("Patient")
			if err := st.write(); err != nil {
				t.Fatal(err)
			}
			if moved := s.Generation("Consent") != c0; moved != st.consentMoves {
				t.Errorf("Consent generation moved: %v, want %v", moved, st.consentMoves)
			}
			if moved := s.Generation("Patient") != p0; moved != st.patientMoves {
				t.Errorf("Patient generation moved: %v, want %v", moved, st.patientMoves)
			}
		})
	}
}

// TestOneServingStorePerFile: a second serving Store on an open database
// file is refused (its writes would be unseen by the first's caches); a
// store that is not serving (the audit tools) opens beside it; once the
// first is closed, serving opens again.
func TestOneServingStorePerFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "one.db")
	serving := sqlite.Options{Serving: true}
	first, err := sqlite.Open(ctx, path, serving)
	if err != nil {
		t.Fatal(err)
	}
	if s, err := sqlite.Open(ctx, path, serving); !errors.Is(err, sqlite.ErrServing) {
		if s != nil {
			s.Close()
		}
		t.Fatalf("a second serving Open: %v, want ErrServing", err)
	}
	tool, err := sqlite.Open(ctx, path, sqlite.Options{})
	if err != nil {
		t.Fatalf("a tool beside the server: %v", err)
	}
	if err := tool.Close(); err != nil {
		t.Fatal(err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := sqlite.Open(ctx, path, serving)
	if err != nil {
		t.Fatalf("serving again after Close: %v", err)
	}
	if err := again.Close(); err != nil {
		t.Fatal(err)
	}
}
