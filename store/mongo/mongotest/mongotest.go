// Package mongotest starts a MongoDB wire-protocol server for tests: a
// FerretDB v1 (SQLite backend) embedded in the test process, or the real
// MongoDB named by SCHAKELPUNT_TEST_MONGODB_URI (DESIGN.md section 6).
//
// Under -race it runs FerretDB as a child process built without the race
// detector (testdata/ferretdb, the same embedded package and
// configuration): an instrumented FerretDB is about ten times slower.
//
// Only tests import this package; it is the one importer of FerretDB.
package mongotest

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
)

// URIEnv names a real MongoDB to test against instead of FerretDB.
const URIEnv = "SCHAKELPUNT_TEST_MONGODB_URI"

// Server is a running test server.
type Server struct {
	// URI is its MongoDB connection string.
	URI string
	// External is true when URI came from URIEnv: a server this package
	// neither started nor stops.
	External bool

	stop func()
	dir  string
}

// Start starts a FerretDB on 127.0.0.1 with its files under a new
// temporary directory, or returns the server URIEnv names. Stop it with
// Stop.
func Start() (*Server, error) {
	if uri := os.Getenv(URIEnv); uri != "" {
		return &Server{URI: uri, External: true, stop: func() {}}, nil
	}
	dir, err := os.MkdirTemp("", "schakelpunt-ferretdb-")
	if err != nil {
		return nil, err
	}
	start := startEmbedded
	if raceEnabled {
		start = startChild
	}
	uri, stop, err := start(dir)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("ferretdb: %w", err)
	}
	return &Server{URI: uri, stop: stop, dir: dir}, nil
}

// Stop stops the server and removes its files.
func (s *Server) Stop() {
	s.stop()
	if s.dir != "" {
		_ = os.RemoveAll(s.dir)
	}
}

// DatabaseName returns a new database name derived from a test's name:
// at most 63 characters, unique per call.
func DatabaseName(testName string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, testName)
	if len(name) > 40 {
		name = name[len(name)-40:]
	}
	return "sp_" + name + "_" + hex.EncodeToString(b[:])
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

// childSource is the directory of the child program's source, found from
// this file's own path: tests run from their package's directory, which
// need not be this one.
func childSource() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("cannot locate the source of package mongotest")
	}
	return filepath.Join(filepath.Dir(file), "testdata", "ferretdb"), nil
}

// startChild builds testdata/ferretdb without -race and runs it; it stops
// when its stdin closes, also if this process dies.
func startChild(dir string) (uri string, stop func(), err error) {
	src, err := childSource()
	if err != nil {
		return "", nil, err
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(dir, "ferretdb")
	build := exec.Command(goTool, "build", "-o", bin, ".")
	build.Dir = src
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
