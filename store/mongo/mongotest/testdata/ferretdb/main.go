// Command ferretdb runs the FerretDB the mongo adapter's tests use (the
// embedded package, SQLite backend) as a process of its own. The tests
// start it when they are built with -race, so that FerretDB itself runs
// without the race detector's tenfold slowdown. It prints its MongoDB URI
// on a line of stdout and stops when stdin closes.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "ferretdb:", err)
		os.Exit(1)
	}
}

func run() error {
	dir := flag.String("dir", "", "directory of the SQLite databases")
	flag.Parse()
	if *dir == "" {
		return fmt.Errorf("-dir is required")
	}
	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: "127.0.0.1:0"},
		Handler:   "sqlite",
		SQLiteURL: "file:" + *dir + "/?_pragma=synchronous(off)", // as in startEmbedded
		Logger:    slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})),
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	fmt.Println(f.MongoDBURI())
	return <-done
}
