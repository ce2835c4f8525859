package sqlite

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"time"

	"github.com/schakelpunt/schakelpunt/fhir"
	"github.com/schakelpunt/schakelpunt/store"
)

// The physical layout of the audit log (schema version 2). AuditEvents are
// immutable and appended in chain order, so they get tables of their own
// instead of the generic versions, current, terms, dates and sortkeys
// rows (about 35 B-tree inserts per event):
//
//	audit_chain   (seq PK, id UNIQUE, updated, recorded, sortdate, prev, hash, terms, body)  index (sortdate, id)
//	audit_index   (key, seq PK, seqs)     postings: per key, events that have it
//	audit_batches (first PK, last, keys)  which postings a flush wrote, for retention
//	audit_marks   (name PK, seq, hash)    head, retention checkpoint, "indexed" (postings.go), "datespan" (datebounds.go)
//
// An event costs a row of audit_chain and its two indexes. Its index terms
// are kept in the row (for the exact test of a candidate) and, as
// postings, gathered in memory and written for a thousand events at a
// time, one row per distinct key (see postings.go). A key is a 64-bit hash
// of a term's parameter and value (see termKey): coarse on purpose, since
// every candidate is tested exactly with store.Matches against the terms
// kept beside the event.
//
// updated (lastUpdated) is assigned in chain order, so seq order is
// lastUpdated order and needs no index of its own. sortdate is the sort
// key of the date parameter (store.SortValue).

// auditRow is an AuditRecord made ready for the writer by the caller of
// AppendAudit, outside the writer goroutine: all that is left to the
// writer is lastUpdated.
type auditRow struct {
	rec      store.AuditRecord
	recorded int64
	sortdate int64
	terms    []byte  // encodeAuditTerms
	keys     []int64 // distinct posting keys
	dates    int     // date terms of the parameter date
	width    int64   // the widest of them (hi - lo)
	head     []byte  // the body up to where meta goes (fast stamp), or nil
	tail     []byte  // the rest of the body after meta
}

// prepareAudit checks and prepares records for the writer.
func prepareAudit(records []store.AuditRecord) ([]auditRow, error) {
	rows := make([]auditRow, len(records))
	for i, r := range records {
		if r.Write.Type != "AuditEvent" || r.Write.ID == "" {
			return nil, errors.New("sqlite: audit records are AuditEvents with an id")
		}
		if i > 0 {
			if err := follows(r, records[i-1].Seq, records[i-1].Hash); err != nil {
				return nil, err
			}
		}
		row := &rows[i]
		row.rec = r
		row.recorded = micros(r.Recorded)
		row.sortdate = sortDate(r.Write.Terms.Dates)
		row.dates, row.width = dateShape(r.Write.Terms.Dates)
		row.terms = encodeAuditTerms(r.Write.Terms)
		row.keys = termKeys(r.Write.Terms.Strings)
		row.head, row.tail = splitForMeta(r.Write.ID, r.Write.Body)
	}
	return rows, nil
}

// sortDate is store.SortValue for the parameter date of AuditEvent: the
// earliest start of its date terms, or fhir.MinTime.
func sortDate(dates []fhir.DateTerm) int64 {
	v, found := fhir.MaxTime, false
	for _, d := range dates {
		if d.Param == auditDateParam && d.Lo < v {
			v, found = d.Lo, true
		}
	}
	if !found {
		return fhir.MinTime
	}
	return v
}

const auditDateParam = "date"

// splitForMeta splits a body where store.Stamp puts meta, when the body
// has the shape package audit renders: compact JSON that starts with
// resourceType AuditEvent and this id and has no meta. Then
// head + meta + tail is byte for byte what store.Stamp writes (fhir.WithMeta
// copies the other members unchanged), without parsing the body in the
// writer. Any other body gives (nil, nil) and is stamped by store.Stamp.
//
// The check reads the top level only: the body of an audit record is JSON
// that package audit marshalled (see store.AuditRecord), and checking the
// grammar of every value again (json.Valid) cost more than the rest of
// the write. A malformed value would be stored as it came; Verify reports
// an event whose JSON does not parse.
func splitForMeta(id string, body []byte) (head, tail []byte) {
	quoted, err := json.Marshal(id)
	if err != nil {
		return nil, nil
	}
	prefix := `{"resourceType":"AuditEvent","id":` + string(quoted) + `,"`
	if len(body) <= len(prefix) || string(body[:len(prefix)]) != prefix || !plainTopLevel(body[len(prefix)-1:]) {
		return nil, nil
	}
	at := len(prefix) - 2 // the comma after the id
	return body[:at], body[at:]
}

// plainTopLevel reports whether the members of a JSON object after its
// first two (rest starts at the third member's key and runs to the
// closing brace) are what fhir.WithMeta copies unchanged: no white space
// outside strings, top-level keys without escapes, and none of them
// resourceType, id or meta.
func plainTopLevel(rest []byte) bool {
	depth := 1
	for i := 0; i < len(rest); i++ {
		switch c := rest[i]; c {
		case '"':
			start, escaped := i, false
			for i++; i < len(rest) && rest[i] != '"'; i++ {
				if rest[i] == '\\' {
					escaped = true
					i++
				}
			}
			if depth == 1 && i+1 < len(rest) && rest[i+1] == ':' {
				switch key := string(rest[start+1 : i]); {
				case escaped || !plainJSONKey(key), key == "resourceType", key == "id", key == "meta":
					return false
				}
			}
		case '{', '[':
			depth++
		case '}', ']':
			depth--
		case ' ', '\t', '\n', '\r':
			return false
		}
	}
	return depth == 0
}

func plainJSONKey(k string) bool {
	for i := 0; i < len(k); i++ {
		if c := k[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// stampAudit renders the stored body of a row at lastUpdated updated.
func stampAudit(row *auditRow, updated time.Time) ([]byte, error) {
	if row.head == nil {
		res, _, err := store.Stamp(row.rec.Write, 1, updated)
		if err != nil {
			return nil, err
		}
		return res.Body, nil
	}
	meta := `,"meta":{"versionId":"1","lastUpdated":"` + fhir.FormatInstant(updated) + `"}`
	b := make([]byte, 0, len(row.head)+len(meta)+len(row.tail))
	b = append(b, row.head...)
	b = append(b, meta...)
	return append(b, row.tail...), nil
}

// encodeAuditTerms encodes the terms kept beside an event: the number of
// string terms (uvarint), each as its length (uvarint) and bytes, then per
// date term its parameter (the same way), lo and hi (varints). _id and
// _lastUpdated are left out: they follow from the row's id and updated
// (see auditTerms).
func encodeAuditTerms(t fhir.Terms) []byte {
	n := binary.MaxVarintLen64
	for _, s := range t.Strings {
		n += binary.MaxVarintLen64 + len(s)
	}
	for _, d := range t.Dates {
		n += 3*binary.MaxVarintLen64 + len(d.Param)
	}
	b := make([]byte, 0, n)
	cnt := 0
	for _, s := range t.Strings {
		if _, ok := idTerm(s); !ok {
			cnt++
		}
	}
	b = binary.AppendUvarint(b, uint64(cnt))
	for _, s := range t.Strings {
		if _, ok := idTerm(s); ok {
			continue
		}
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	for _, d := range t.Dates {
		if d.Param == lastUpdated {
			continue
		}
		b = binary.AppendUvarint(b, uint64(len(d.Param)))
		b = append(b, d.Param...)
		b = binary.AppendVarint(b, d.Lo)
		b = binary.AppendVarint(b, d.Hi)
	}
	return b
}

var errCorruptTerms = errors.New("corrupt audit terms")

// auditTerms decodes the terms kept beside an event and adds those of its
// id and lastUpdated, as store.Stamp gives them.
func auditTerms(b []byte, id string, updated int64) (fhir.Terms, error) {
	cnt, k := binary.Uvarint(b)
	if k <= 0 || cnt > uint64(len(b)) {
		return fhir.Terms{}, errCorruptTerms
	}
	b = b[k:]
	t := fhir.Terms{Strings: make([]string, 0, cnt+2)}
	str := func() (string, bool) {
		n, k := binary.Uvarint(b)
		if k <= 0 || uint64(len(b)-k) < n {
			return "", false
		}
		s := string(b[k : k+int(n)])
		b = b[k+int(n):]
		return s, true
	}
	for range cnt {
		s, ok := str()
		if !ok {
			return fhir.Terms{}, errCorruptTerms
		}
		t.Strings = append(t.Strings, s)
	}
	for len(b) > 0 {
		p, ok := str()
		if !ok {
			return fhir.Terms{}, errCorruptTerms
		}
		lo, k1 := binary.Varint(b)
		if k1 <= 0 {
			return fhir.Terms{}, errCorruptTerms
		}
		hi, k2 := binary.Varint(b[k1:])
		if k2 <= 0 {
			return fhir.Terms{}, errCorruptTerms
		}
		b = b[k1+k2:]
		t.Dates = append(t.Dates, fhir.DateTerm{Param: p, DateRange: fhir.DateRange{Lo: lo, Hi: hi}})
	}
	t.Strings = append(t.Strings, fhir.TermCode("_id", id), fhir.TermNoSystem("_id", id))
	ms := fromMicros(updated).Truncate(time.Millisecond)
	t.Dates = append(t.Dates, fhir.DateTerm{Param: lastUpdated, DateRange: fhir.DateRange{Lo: ms.UnixMicro(), Hi: ms.Add(time.Millisecond).UnixMicro()}})
	return t, nil
}

// termKey is the posting key of a string term: a hash of its parameter
// and its value without system or type, so that the forms of one value
// (code, system|code, |code; Type/id, id; identifier with and without
// system) share a key. A term of a system alone has no key (it names
// too many events to be worth one). Any deterministic function would do
// for correctness: a query's term and a stored term that are equal have
// equal keys, and every candidate is tested exactly.
func termKey(term string) (int64, bool) {
	i := strings.IndexByte(term, '#')
	if i < 0 {
		return 0, false
	}
	p, rest := term[:i], term[i+1:]
	j := strings.IndexByte(rest, '#')
	if j < 0 {
		return 0, false
	}
	form, v := rest[:j], rest[j+1:]
	switch form {
	case "c", "n", "id", "ic":
	case "sc", "isc":
		v = v[strings.LastIndexByte(v, '|')+1:]
	case "r":
		v = v[strings.LastIndexByte(v, '/')+1:]
	default: // "s": a system alone
		return 0, false
	}
	h := fnv.New64a()
	h.Write([]byte(p))
	h.Write([]byte{0})
	h.Write([]byte(v))
	return int64(h.Sum64()), true
}

// termKeys returns the distinct keys of an event's string terms.
func termKeys(strs []string) []int64 {
	keys := make([]int64, 0, len(strs))
	for _, s := range strs {
		if _, ok := idTerm(s); ok {
			continue // the id is looked up by its own index
		}
		k, ok := termKey(s)
		if !ok {
			continue
		}
		dup := false
		for _, have := range keys {
			if have == k {
				dup = true
				break
			}
		}
		if !dup {
			keys = append(keys, k)
		}
	}
	return keys
}

// encodeSeqs encodes the ascending seqs of a posting as uvarint deltas
// from the posting's first seq (which keys the row and is not repeated).
func encodeSeqs(seqs []int64) []byte {
	b := make([]byte, 0, 2*len(seqs))
	prev := seqs[0]
	for _, s := range seqs[1:] {
		b = binary.AppendUvarint(b, uint64(s-prev))
		prev = s
	}
	return b
}

// decodeSeqs appends the seqs of a posting to dst.
func decodeSeqs(dst []int64, first int64, b []byte) ([]int64, error) {
	dst = append(dst, first)
	prev := first
	for len(b) > 0 {
		d, k := binary.Uvarint(b)
		if k <= 0 || d == 0 {
			return dst, fmt.Errorf("corrupt posting of %d", first)
		}
		prev += int64(d)
		dst = append(dst, prev)
		b = b[k:]
	}
	return dst, nil
}

// encodeBatchKeys lists the postings an append wrote: per key, the key and
// the seq of its row.
func encodeBatchKeys(keys []int64, firsts []int64) []byte {
	b := make([]byte, 0, 20*len(keys))
	for i, k := range keys {
		b = binary.AppendVarint(b, k)
		b = binary.AppendUvarint(b, uint64(firsts[i]))
	}
	return b
}

func decodeBatchKeys(b []byte) (keys, firsts []int64, err error) {
	for len(b) > 0 {
		k, n := binary.Varint(b)
		if n <= 0 {
			return nil, nil, errors.New("corrupt batch keys")
		}
		f, m := binary.Uvarint(b[n:])
		if m <= 0 {
			return nil, nil, errors.New("corrupt batch keys")
		}
		keys, firsts = append(keys, k), append(firsts, int64(f))
		b = b[n+m:]
	}
	return keys, firsts, nil
}

// seqList renders seqs as a JSON array for json_each.
func seqList(seqs []int64) string {
	b := make([]byte, 0, 12*len(seqs)+2)
	b = append(b, '[')
	for i, s := range seqs {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, s, 10)
	}
	return string(append(b, ']'))
}
