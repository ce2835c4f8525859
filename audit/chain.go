package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/schakelpunt/schakelpunt/store"
)

// Canonical is the form of an AuditEvent the hash chain covers: the JSON
// without meta (the store's bookkeeping) and without the chain link
// itself, with object keys sorted and no insignificant white space.
func Canonical(body []byte) ([]byte, error) {
	doc, err := decodeDoc(body)
	if err != nil {
		return nil, err
	}
	delete(doc, "meta")
	if exts, ok := doc["extension"].([]any); ok {
		kept := exts[:0]
		for _, x := range exts {
			if m, ok := x.(map[string]any); ok && m["url"] == ChainExtension {
				continue
			}
			kept = append(kept, x)
		}
		if len(kept) == 0 {
			delete(doc, "extension")
		} else {
			doc["extension"] = kept
		}
	}
	return canonicalDoc(doc)
}

// decodeDoc decodes a resource's JSON, keeping numbers as written.
func decodeDoc(body []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("audit: canonical: %w", err)
	}
	return doc, nil
}

// canonicalDoc encodes a decoded document with object keys sorted, no
// insignificant white space and no HTML escaping.
func canonicalDoc(doc map[string]any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(doc); err != nil { // maps encode with sorted keys
		return nil, fmt.Errorf("audit: canonical: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// Link is the chain link of an event: hex SHA-256 over the previous link
// and the event's canonical JSON.
func Link(prev string, canonical []byte) string {
	h := sha256.New()
	h.Write([]byte(prev))
	h.Write([]byte{'\n'})
	h.Write(canonical)
	return hex.EncodeToString(h.Sum(nil))
}

// Broken describes the first broken link found by Verify.
type Broken struct {
	Seq    int64
	ID     string
	Reason string
}

// Report is the result of verifying the chain.
type Report struct {
	Checked    int64
	Checkpoint store.ChainHead
	Head       store.ChainHead
	Broken     *Broken
}

// OK reports whether the chain verified.
func (r Report) OK() bool { return r.Broken == nil }

// Verify walks the whole chain from the retention checkpoint to the head
// and reports the first link that does not hold: an edited event (its
// content no longer gives its hash), a removed one (a gap in the
// sequence, or a previous link that does not match), or a removed tail
// (the recorded head is missing).
func Verify(ctx context.Context, log store.AuditLog) (Report, error) {
	cp, err := log.AuditCheckpoint(ctx)
	if err != nil {
		return Report{}, fmt.Errorf("audit: verify: %w", err)
	}
	head, err := log.AuditHead(ctx)
	if err != nil {
		return Report{}, fmt.Errorf("audit: verify: %w", err)
	}
	rep := Report{Checkpoint: cp, Head: head}
	seq, prev := cp.Seq, cp.Hash
	const batch = 1000
	for {
		entries, err := log.ScanAudit(ctx, seq, batch)
		if err != nil {
			return rep, fmt.Errorf("audit: verify: %w", err)
		}
		for _, e := range entries {
			if b := check(e, seq, prev); b != nil {
				rep.Broken = b
				return rep, nil
			}
			seq, prev = e.Seq, e.Hash
			rep.Checked++
		}
		if len(entries) < batch {
			break
		}
	}
	if seq != head.Seq || prev != head.Hash {
		rep.Broken = &Broken{Seq: seq + 1, Reason: fmt.Sprintf("the chain ends at %d but its head is %d: events were removed", seq, head.Seq)}
	}
	return rep, nil
}

func check(e store.AuditEntry, seq int64, prev string) *Broken {
	if e.Seq != seq+1 {
		return &Broken{Seq: seq + 1, Reason: fmt.Sprintf("event %d is missing (next is %d)", seq+1, e.Seq)}
	}
	if e.Prev != prev {
		return &Broken{Seq: e.Seq, ID: e.Resource.ID, Reason: "its previous link does not match the event before it"}
	}
	canon, err := Canonical(e.Resource.Body)
	if err != nil {
		return &Broken{Seq: e.Seq, ID: e.Resource.ID, Reason: "its stored JSON does not parse"}
	}
	if Link(prev, canon) != e.Hash {
		return &Broken{Seq: e.Seq, ID: e.Resource.ID, Reason: "its content does not match its hash: the event was changed"}
	}
	shown, ok := shownLink(e.Resource.Body)
	if !ok || shown != e.Hash {
		return &Broken{Seq: e.Seq, ID: e.Resource.ID, Reason: "the link shown on the resource differs from the stored one"}
	}
	return nil
}

// shownLink reads the hash from the chain extension of a stored event.
func shownLink(body []byte) (string, bool) {
	var doc struct {
		Extension []extension `json:"extension"`
	}
	if json.Unmarshal(body, &doc) != nil {
		return "", false
	}
	for _, x := range doc.Extension {
		if x.URL != ChainExtension {
			continue
		}
		for _, sub := range x.Extension {
			if sub.URL == "hash" {
				return sub.ValueString, true
			}
		}
	}
	return "", false
}
