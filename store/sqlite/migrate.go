package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"

	"github.com/schakelpunt/schakelpunt/fhir"
)

// migrateAudit moves the audit log of a schema version 1 database into the
// layout of version 2, in one transaction: each chained event (an
// AuditEvent in versions and current, its link in audit_chain) becomes a
// row of the new audit_chain with the same seq, links, lastUpdated and
// body, its terms extracted again from the body; postings are written per
// migrateChunk events. The generic rows of AuditEvents are removed. An
// event whose resource was already gone stays gone (Verify reports the
// gap), and an edited body is copied as it is (Verify reports it).
func migrateAudit(ctx context.Context, conn *sql.Conn) (err error) {
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return fmt.Errorf("sqlite: migrate to schema 2: %w", err)
	}
	defer func() {
		if err != nil {
			_, _ = conn.ExecContext(context.Background(), "ROLLBACK")
			err = fmt.Errorf("sqlite: migrate to schema 2: %w", err)
		}
	}()
	for _, stmt := range append([]string{
		`ALTER TABLE audit_chain RENAME TO audit_chain_v1`,
		`DROP INDEX audit_chain_recorded`,
	}, auditSchema...) {
		if _, err := conn.ExecContext(ctx, stmt); err != nil {
			return err
		}
	}
	var (
		after int64
		span  dateSpanMark
	)
	for {
		rows, err := migrateRows(ctx, conn, after)
		if err != nil {
			return err
		}
		if len(rows) == 0 {
			break
		}
		if err := insertMigrated(ctx, conn, rows); err != nil {
			return err
		}
		for _, m := range rows {
			span.widen(m.dates, m.width)
		}
		after = rows[len(rows)-1].rec.Seq
	}
	if err := setMark(ctx, conn, dateSpanName, span.width, span.hash()); err != nil {
		return err
	}
	// Every migrated event has its postings on disk.
	if _, err := conn.ExecContext(ctx, `INSERT INTO audit_marks (name, seq, hash) VALUES ('indexed', ?, '')`, after); err != nil {
		return err
	}
	for _, stmt := range []string{
		`DELETE FROM terms WHERE type = 'AuditEvent'`,
		`DELETE FROM dates WHERE type = 'AuditEvent'`,
		`DELETE FROM sortkeys WHERE type = 'AuditEvent'`,
		`DELETE FROM sortparams WHERE type = 'AuditEvent'`,
		`DELETE FROM current WHERE type = 'AuditEvent'`,
		`DELETE FROM versions WHERE type = 'AuditEvent'`,
		`DROP TABLE audit_chain_v1`,
		fmt.Sprintf("PRAGMA user_version = %d", schemaVersion),
	} {
		if _, err := conn.ExecContext(ctx, stmt); err != nil {
			return err
		}
	}
	_, err = conn.ExecContext(ctx, "COMMIT")
	return err
}

// migrateChunk is how many events the migration reads, and indexes as one
// append, at a time.
const migrateChunk = 1000

// migratedRow is an event of a version 1 database ready for the new
// layout.
type migratedRow struct {
	auditRow
	updated int64
	body    []byte
}

func migrateRows(ctx context.Context, conn *sql.Conn, after int64) ([]migratedRow, error) {
	rs, err := conn.QueryContext(ctx, `
		SELECT a.seq, a.id, a.prev, a.hash, a.recorded, v.updated, v.body
		FROM audit_chain_v1 a
		JOIN current c ON c.type = 'AuditEvent' AND c.id = a.id AND c.deleted = 0
		JOIN versions v ON v.updated = c.updated
		WHERE a.seq > ? ORDER BY a.seq LIMIT ?`, after, migrateChunk)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	var out []migratedRow
	for rs.Next() {
		var m migratedRow
		r := &m.rec
		if err := rs.Scan(&r.Seq, &r.Write.ID, &r.Prev, &r.Hash, &m.recorded, &m.updated, &m.body); err != nil {
			return nil, err
		}
		var doc map[string]any
		dec := json.NewDecoder(bytes.NewReader(m.body))
		dec.UseNumber()
		if err := dec.Decode(&doc); err != nil {
			// An edited event that no longer parses: kept, without terms,
			// for Verify to report.
			doc = nil
		}
		terms := fhir.ExtractTerms("AuditEvent", doc)
		r.Write.Type = "AuditEvent"
		m.sortdate = sortDate(terms.Dates)
		m.dates, m.width = dateShape(terms.Dates)
		m.terms = encodeAuditTerms(terms)
		m.keys = termKeys(terms.Strings)
		out = append(out, m)
	}
	return out, rs.Err()
}

func insertMigrated(ctx context.Context, conn *sql.Conn, rows []migratedRow) error {
	plain := make([]auditRow, len(rows))
	for i, m := range rows {
		if _, err := conn.ExecContext(ctx, `INSERT INTO audit_chain (seq, id, updated, recorded, sortdate, prev, hash, terms, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			m.rec.Seq, m.rec.Write.ID, m.updated, m.recorded, m.sortdate, m.rec.Prev, m.rec.Hash, m.terms, m.body); err != nil {
			return fmt.Errorf("event %d: %w", m.rec.Seq, err)
		}
		plain[i] = m.auditRow
	}
	keys, seqs := postingsOf(plain)
	firsts := make([]int64, len(keys))
	for i, k := range keys {
		firsts[i] = seqs[i][0]
		if _, err := conn.ExecContext(ctx, postingInsert+postingRow, k, seqs[i][0], encodeSeqs(seqs[i])); err != nil {
			return err
		}
	}
	_, err := conn.ExecContext(ctx, `INSERT INTO audit_batches (first, last, keys) VALUES (?, ?, ?)`,
		rows[0].rec.Seq, rows[len(rows)-1].rec.Seq, encodeBatchKeys(keys, firsts))
	return err
}
