package mongo

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/schakelpunt/schakelpunt/store/mongo/mongotest"
)

// testURI is the server of this test package: FerretDB (SQLite backend),
// or the MongoDB named by mongotest.URIEnv.
var testURI string

// TestMain starts one FerretDB for the package (see package mongotest:
// under -race as a child process without the race detector).
func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	srv, err := mongotest.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer srv.Stop()
	testURI = srv.URI
	return m.Run()
}

// freshDatabase returns the name of a new database, dropped after the test.
func freshDatabase(tb testing.TB) string {
	tb.Helper()
	name := mongotest.DatabaseName(tb.Name())
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := mongo.Connect(options.Client().ApplyURI(testURI))
		if err != nil {
			tb.Logf("drop %s: %v", name, err)
			return
		}
		defer c.Disconnect(ctx)
		if err := c.Database(name).Drop(ctx); err != nil {
			tb.Logf("drop %s: %v", name, err)
		}
	})
	return name
}

// mustOpen opens a Store on a fresh database; it is closed after the test.
func mustOpen(tb testing.TB, opts Options) *Store {
	tb.Helper()
	return mustOpenDB(tb, freshDatabase(tb), opts)
}

func mustOpenDB(tb testing.TB, db string, opts Options) *Store {
	tb.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(tbWriter{tb}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	s, err := Open(context.Background(), testURI, db, opts)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return s
}

// rawCollection is a direct handle on a collection of the test database,
// for looking at and tampering with what the store wrote.
func rawCollection(tb testing.TB, db, coll string) *mongo.Collection {
	tb.Helper()
	c, err := mongo.Connect(options.Client().ApplyURI(testURI))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = c.Disconnect(context.Background()) })
	return c.Database(db).Collection(coll)
}

type tbWriter struct{ tb testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	w.tb.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
