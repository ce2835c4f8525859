package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// Checkpoints. In WAL mode every commit appends the pages it changed to
// the write-ahead log (fsynced: that is the durability of the commit), and
// a checkpoint later copies them into the database file. Left to the
// writer, SQLite checkpoints inside the commit that passes 1000 log pages:
// that commit then also writes megabytes to the database file and fsyncs
// it, and every waiter of its batch waits for that. So a goroutine of its
// own checkpoints (PASSIVE: beside the writer, never blocking it) on its
// own connection after commits, at most every checkpointEvery. The
// writer's automatic checkpoint stays as it was; it finds the log mostly
// copied already and, by completing it, lets the log start over from its
// beginning. Durability is unchanged: commits are on disk once the log is
// fsynced, whoever copies them later.

// checkpointEvery is the shortest time between two background checkpoints.
const checkpointEvery = 20 * time.Millisecond

func (s *Store) openCheckpointer(opts Options) error {
	db, err := sql.Open("sqlite", dsn(s.path, opts.BusyTimeout, "synchronous(FULL)"))
	if err != nil {
		return fmt.Errorf("sqlite: open checkpointer: %w", err)
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	s.ckdb = db
	return nil
}

// checkpoints runs until Close closes ckSignal.
func (s *Store) checkpoints() {
	defer close(s.ckDone)
	var last time.Time
	for range s.ckSignal {
		if wait := checkpointEvery - time.Since(last); wait > 0 {
			time.Sleep(wait)
		}
		last = time.Now()
		var busy, logged, copied int
		if err := s.ckdb.QueryRowContext(context.Background(), "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &logged, &copied); err != nil {
			s.log.Warn("checkpoint failed", "err", err)
		}
	}
}
