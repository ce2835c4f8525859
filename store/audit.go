package store

import (
	"context"
	"errors"
	"time"
)

// ErrChainConflict means another writer appended to the audit chain
// first: the caller reloads the head and chains again.
var ErrChainConflict = errors.New("store: audit chain moved")

// AuditRecord is one AuditEvent with its link in the hash chain. Seq
// numbers the chain without gaps; Hash is hex SHA-256 over Prev and the
// event's canonical JSON (package audit defines both).
type AuditRecord struct {
	Seq      int64
	Prev     string
	Hash     string
	Recorded time.Time
	// Write is the AuditEvent: JSON as package audit marshals it, without
	// meta (the store stamps it), carrying the chain link too.
	Write Write
}

// AuditEntry is an AuditRecord as stored.
type AuditEntry struct {
	Seq      int64
	Prev     string
	Hash     string
	Resource Resource
}

// ChainHead is the newest link of the chain, or the checkpoint that
// retention left (the link of the last removed event), or zero.
type ChainHead struct {
	Seq  int64
	Hash string
}

// AuditLog is the append-only audit store every adapter implements beside
// Store. Audit events are ordinary AuditEvent resources for Read and
// Search (not for History: each has one version, and the server offers no
// history of them); they are written only through AppendAudit.
type AuditLog interface {
	// AppendAudit stores records durably in one commit (one fsync, one
	// Mongo write): all or none. records[0].Seq must be the head's Seq+1
	// and the rest consecutive, else ErrChainConflict and nothing is
	// stored.
	AppendAudit(ctx context.Context, records []AuditRecord) error
	// AuditHead returns the newest link: the zero ChainHead when nothing
	// was ever appended.
	AuditHead(ctx context.Context) (head ChainHead, err error)
	// ScanAudit returns up to limit entries with Seq > after, in Seq
	// order.
	ScanAudit(ctx context.Context, after int64, limit int) ([]AuditEntry, error)
	// AuditCheckpoint is the link retention left behind: the Seq and Hash
	// of the last removed event (zero when nothing was removed).
	AuditCheckpoint(ctx context.Context) (ChainHead, error)
	// PurgeAudit removes events recorded before cutoff, oldest first, and
	// moves the checkpoint to the last one removed, in one commit. It
	// returns how many it removed.
	PurgeAudit(ctx context.Context, cutoff time.Time) (int, error)
}
