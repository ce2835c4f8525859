package mongo

import (
	"encoding/binary"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"

	"github.com/schakelpunt/schakelpunt/fhir"
	"github.com/schakelpunt/schakelpunt/store"
)

// record is one version as stored, in resources (_id "type/id") and in
// history (_id "type/id/version"). History keeps the index material too,
// so that resources can be rolled forward from it.
type record struct {
	Key     string `bson:"_id"`
	Type    string `bson:"type"`
	ID      string `bson:"id"`
	Version int64  `bson:"version"`
	Updated int64  `bson:"updated"` // Unix microseconds
	Deleted bool   `bson:"deleted"`
	Body    body   `bson:"body,omitempty"`
	// Terms are the term strings, matched with $in.
	Terms []string `bson:"terms"`
	// HullLo and HullHi are per date parameter the smallest range holding
	// every end of its date terms: the coarse filter of a date clause.
	HullLo map[string]int64 `bson:"dlo,omitempty"`
	HullHi map[string]int64 `bson:"dhi,omitempty"`
	// Dates are the exact date terms, matched in Go, packed (see
	// packDates): only the adapter reads them, and a compact document is
	// what makes FerretDB, which decodes every document it scans, bearable.
	Dates []byte `bson:"dt,omitempty"`
	// Sort is per date parameter its sort key (store.SortValue).
	Sort map[string]int64 `bson:"sort,omitempty"`
}

// body holds the resource JSON bytes unchanged: written as BSON binary,
// read back from binary or, if someone stored one, a string.
type body []byte

func (b body) MarshalBSONValue() (byte, []byte, error) {
	if b == nil {
		return byte(bson.TypeNull), nil, nil
	}
	return byte(bson.TypeBinary), bsoncore.AppendBinary(nil, 0, b), nil
}

func (b *body) UnmarshalBSONValue(typ byte, data []byte) error {
	switch bson.Type(typ) {
	case bson.TypeBinary:
		_, v, _, ok := bsoncore.ReadBinary(data)
		if !ok {
			return fmt.Errorf("mongo: malformed binary body")
		}
		*b = append(body(nil), v...)
	case bson.TypeString:
		v, _, ok := bsoncore.ReadString(data)
		if !ok {
			return fmt.Errorf("mongo: malformed string body")
		}
		*b = body(v)
	case bson.TypeNull, bson.TypeUndefined:
		*b = nil
	default:
		return fmt.Errorf("mongo: body of BSON type %s, want binary or string", bson.Type(typ))
	}
	return nil
}

func resourceKey(typ, id string) string { return typ + "/" + id }

func historyKey(typ, id string, version int64) string {
	return fmt.Sprintf("%s/%s/%d", typ, id, version)
}

// newRecord builds the history record of a stamped version.
func newRecord(r store.Resource, terms fhir.Terms) record {
	rec := record{
		Key:     historyKey(r.Type, r.ID, r.Version),
		Type:    r.Type,
		ID:      r.ID,
		Version: r.Version,
		Updated: r.Updated.UnixMicro(),
		Deleted: r.Deleted,
		Terms:   []string{},
	}
	if r.Deleted {
		return rec
	}
	rec.Body = body(r.Body)
	rec.Terms = append(rec.Terms, terms.Strings...)
	rec.Dates = packDates(terms.Dates)
	rec.HullLo, rec.HullHi = map[string]int64{}, map[string]int64{}
	for _, d := range terms.Dates {
		if !validField(d.Param) {
			continue
		}
		lo, hi := min(d.Lo, d.Hi), max(d.Lo, d.Hi)
		if l, ok := rec.HullLo[d.Param]; ok {
			lo, hi = min(lo, l), max(hi, rec.HullHi[d.Param])
		}
		rec.HullLo[d.Param], rec.HullHi[d.Param] = lo, hi
	}
	rec.Sort = map[string]int64{}
	for _, p := range dateParams(r.Type) {
		rec.Sort[p] = store.SortValue(&fhir.SortKey{Param: p}, r, terms)
	}
	for p := range rec.HullLo {
		if _, ok := rec.Sort[p]; !ok && p != "_lastUpdated" {
			rec.Sort[p] = store.SortValue(&fhir.SortKey{Param: p}, r, terms)
		}
	}
	return rec
}

// terms returns the index terms kept in the record.
func (r *record) terms() (fhir.Terms, error) {
	dates, err := unpackDates(r.Dates)
	if err != nil {
		return fhir.Terms{}, fmt.Errorf("mongo: date terms of %s: %w", r.Key, err)
	}
	return fhir.Terms{Strings: r.Terms, Dates: dates}, nil
}

// packDates packs date terms as, for each, the parameter's length (one
// byte), the parameter, and Lo and Hi (8 bytes each, big-endian).
func packDates(dates []fhir.DateTerm) []byte {
	var b []byte
	for _, d := range dates {
		if len(d.Param) > 255 {
			continue // no such parameter code
		}
		b = append(b, byte(len(d.Param)))
		b = append(b, d.Param...)
		b = binary.BigEndian.AppendUint64(b, uint64(d.Lo))
		b = binary.BigEndian.AppendUint64(b, uint64(d.Hi))
	}
	return b
}

func unpackDates(b []byte) ([]fhir.DateTerm, error) {
	var out []fhir.DateTerm
	for len(b) > 0 {
		n := int(b[0])
		if len(b) < 1+n+16 {
			return nil, fmt.Errorf("truncated")
		}
		p := string(b[1 : 1+n])
		b = b[1+n:]
		lo, hi := int64(binary.BigEndian.Uint64(b)), int64(binary.BigEndian.Uint64(b[8:]))
		b = b[16:]
		out = append(out, fhir.DateTerm{Param: p, DateRange: fhir.DateRange{Lo: lo, Hi: hi}})
	}
	return out, nil
}

// resource returns the record as a store.Resource.
func (r *record) resource() store.Resource {
	res := store.Resource{
		Type:    r.Type,
		ID:      r.ID,
		Version: r.Version,
		Updated: time.UnixMicro(r.Updated).UTC(),
		Deleted: r.Deleted,
	}
	if !r.Deleted {
		res.Body = []byte(r.Body)
	}
	return res
}

// sortKey is the record's key under a sort.
func (r *record) sortKey(sort *fhir.SortKey) int64 {
	if sort == nil || sort.Param == "_lastUpdated" {
		return r.Updated
	}
	if v, ok := r.Sort[sort.Param]; ok {
		return v
	}
	return fhir.MinTime
}
