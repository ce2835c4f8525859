package sqlite

import (
	"context"
	"fmt"
	"slices"
	"sync"
)

// Postings of recent events are kept in memory and written to audit_index
// once flushEvents events have gathered (and at Close), one row per key
// for all of them. Written with every append, the postings of a batch of
// 30 events took as many pages as the events themselves: each distinct
// key's row lands on a page of its own. The events' terms are on disk
// with every append, so nothing is lost in a crash: the mark "indexed"
// (in audit_marks, moved by each flush) tells which events have their
// postings on disk, and Open gathers those of the rest again from their
// terms.
//
// Searches read both. A posting may name an event that is not (or no
// longer) there, or is another event than it was written for (after a
// rolled back append, the seq is taken again): every candidate is tested
// on its terms, so postings only need to name at least the events that
// have the key.

// flushEvents is how many events' postings gather in memory before they
// are written (tests lower it).
var flushEvents = 1024

// postTail holds the postings not yet flushed (cur) and those of the last
// flush (prev: a search that read audit_index just before the flush
// committed still finds them here).
type postTail struct {
	mu     sync.RWMutex
	cur    map[int64][]int64
	prev   map[int64][]int64
	n      int   // events in cur
	maxSeq int64 // newest event in cur
}

func (t *postTail) events() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.n
}

// add gathers the postings of appended events.
func (t *postTail) add(rows []auditRow) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cur == nil {
		t.cur = map[int64][]int64{}
	}
	for i := range rows {
		seq := rows[i].rec.Seq
		for _, k := range rows[i].keys {
			t.cur[k] = append(t.cur[k], seq)
		}
		t.maxSeq = max(t.maxSeq, seq)
	}
	t.n += len(rows)
}

// seqs appends to dst the seqs posted in memory for key.
func (t *postTail) seqs(dst []int64, key int64) []int64 {
	t.mu.RLock()
	defer t.mu.RUnlock()
	dst = append(dst, t.prev[key]...)
	return append(dst, t.cur[key]...)
}

// flushPostings writes the postings in memory to audit_index, lists them
// in audit_batches and moves the mark "indexed". Writer goroutine only,
// inside a transaction; the memory moves to prev at once (if the
// transaction rolls back, tailLost makes the next append gather it again).
func (s *Store) flushPostings(ctx context.Context) error {
	s.tail.mu.RLock()
	keys := make([]int64, 0, len(s.tail.cur))
	for k := range s.tail.cur {
		keys = append(keys, k)
	}
	slices.Sort(keys) // neighbouring keys share pages
	seqs := make([][]int64, len(keys))
	minSeq := s.tail.maxSeq
	for i, k := range keys {
		seqs[i] = slices.Compact(slices.Sorted(slices.Values(s.tail.cur[k])))
		minSeq = min(minSeq, seqs[i][0])
	}
	maxSeq := s.tail.maxSeq
	s.tail.mu.RUnlock()
	if len(keys) > 0 {
		firsts := make([]int64, len(keys))
		for i := 0; i < len(keys); i += rowsPerInsert {
			n := min(rowsPerInsert, len(keys)-i)
			args := s.wargs[:0]
			for j := i; j < i+n; j++ {
				firsts[j] = seqs[j][0]
				args = append(args, keys[j], seqs[j][0], encodeSeqs(seqs[j]))
			}
			st, err := s.wst.multi(ctx, s.wconn, &s.wst.insPosting, n, postingInsert, postingRow)
			if err == nil {
				_, err = st.ExecContext(ctx, args...)
			}
			clear(args)
			s.wargs = args[:0]
			if err != nil {
				return fmt.Errorf("sqlite: audit postings: %w", err)
			}
		}
		if _, err := s.wst.insBatch.ExecContext(ctx, minSeq, maxSeq, encodeBatchKeys(keys, firsts)); err != nil {
			return fmt.Errorf("sqlite: audit batch: %w", err)
		}
	}
	if err := s.wsetMark(ctx, "indexed", maxSeq, ""); err != nil {
		return err
	}
	s.tail.mu.Lock()
	s.tail.prev, s.tail.cur, s.tail.n = s.tail.cur, nil, 0
	s.tail.mu.Unlock()
	return nil
}

// loadTail gathers again, from their terms, the postings of the events
// after the mark "indexed": at Open, and after a rollback that may have
// undone a flush. What was in memory stays readable (in prev) until the
// next flush. Writer goroutine only.
func (s *Store) loadTail(ctx context.Context) error {
	indexed, err := s.wmark(ctx, "indexed")
	if err != nil {
		return err
	}
	rows, err := s.wconn.QueryContext(ctx, `SELECT seq, terms FROM audit_chain WHERE seq > ? ORDER BY seq`, indexed.Seq)
	if err != nil {
		return fmt.Errorf("sqlite: audit postings: %w", err)
	}
	var tail []auditRow
	for rows.Next() {
		var (
			r    auditRow
			blob []byte
		)
		if err := rows.Scan(&r.rec.Seq, &blob); err != nil {
			rows.Close()
			return fmt.Errorf("sqlite: audit postings: %w", err)
		}
		terms, err := auditTerms(blob, "", 0)
		if err != nil {
			rows.Close()
			return fmt.Errorf("sqlite: audit postings of %d: %w", r.rec.Seq, err)
		}
		r.keys = termKeys(terms.Strings)
		tail = append(tail, r)
	}
	if err := rows.Close(); err != nil {
		return fmt.Errorf("sqlite: audit postings: %w", err)
	}
	s.tail.mu.Lock()
	merged := s.tail.prev
	if merged == nil {
		merged = map[int64][]int64{}
	}
	for k, seqs := range s.tail.cur {
		merged[k] = append(merged[k], seqs...)
	}
	s.tail.prev, s.tail.cur, s.tail.n, s.tail.maxSeq = merged, nil, 0, indexed.Seq
	s.tail.mu.Unlock()
	s.tail.add(tail)
	s.tailLost = false
	return nil
}

// flushTail writes what is in memory at Close, so that the next Open
// need not gather it. The writer goroutine has stopped.
func (s *Store) flushTail() error {
	if s.tail.events() == 0 {
		return nil
	}
	ctx := context.Background()
	if _, err := s.wst.begin.ExecContext(ctx); err != nil {
		return fmt.Errorf("sqlite: flush postings: %w", err)
	}
	if err := s.flushPostings(ctx); err != nil {
		_, _ = s.wst.rollback.ExecContext(ctx)
		return err
	}
	if _, err := s.wst.commit.ExecContext(ctx); err != nil {
		_, _ = s.wst.rollback.ExecContext(ctx)
		return fmt.Errorf("sqlite: flush postings: %w", err)
	}
	return nil
}
