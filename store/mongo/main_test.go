package mongo

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// uriEnv names a real MongoDB to test against instead of FerretDB.
const uriEnv = "SCHAKELPUNT_TEST_MONGODB_URI"

// testURI is the server of this test package: FerretDB (SQLite backend),
// or the MongoDB named by uriEnv.
var testURI string

// TestMain starts one FerretDB for the package, in the test process. Under
// -race it starts it as a child process built without the race detector
// (testdata/ferretdb, the same embedded package and configuration): an
// instrumented FerretDB is about ten times slower and the suite would take
// most of an hour.
func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	if uri := os.Getenv(uriEnv); uri != "" {
		testURI = uri
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "schakelpunt-ferretdb-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	start := startEmbedded
	if raceEnabled {
		start = startChild
	}
	uri, stop, err := start(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ferretdb:", err)
		return 1
	}
	defer stop()
	testURI = uri
	return m.Run()
}

func sqliteURL(dir string) string {
	// Durability of the test server's files does not matter.
	return "file:" + dir + "/?_pragma=synchronous(off)"
}

// startEmbedded runs FerretDB in this process.
func startEmbedded(dir string) (uri string, stop func(), err error) {
	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: "127.0.0.1:0"},
		Handler:   "sqlite",
		SQLiteURL: sqliteURL(dir),
		Logger:    slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})),
	})
	if err != nil {
		return "", nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = f.Run(ctx)
	}()
	return f.MongoDBURI(), func() { cancel(); <-done }, nil
}

// startChild builds testdata/ferretdb without -race and runs it; it stops
// when its stdin closes, also if this process dies.
func startChild(dir string) (uri string, stop func(), err error) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(dir, "ferretdb")
	build := exec.Command(goTool, "build", "-o", bin, "./testdata/ferretdb")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		return "", nil, fmt.Errorf("build testdata/ferretdb: %w", err)
	}
	cmd := exec.Command(bin, "-dir", dir)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return "", nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return "", nil, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop = func() {
		_ = stdin.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		stop()
		return "", nil, fmt.Errorf("read the URI of testdata/ferretdb: %w", err)
	}
	return strings.TrimSpace(line), stop, nil
}

// freshDatabase returns the name of a new database, dropped after the test.
func freshDatabase(tb testing.TB) string {
	tb.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, tb.Name())
	if len(name) > 40 {
		name = name[len(name)-40:]
	}
	name = "sp_" + name + "_" + hex.EncodeToString(b[:])
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
