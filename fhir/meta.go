package fhir

import (
	"bytes"
	"encoding/json"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/schakelpunt/schakelpunt/fhir/jsonscan"
)

// WithMeta rewrites the top level of a resource's JSON: resourceType first,
// then id and meta (versionId and lastUpdated set, other meta elements
// kept), then the other members in their original order, byte for byte.
//
// It runs on every write, in the store's single writer, so it does not
// decode values: it checks the document once (json.Valid) and then only
// splits the top level (and meta) into members by their byte spans.
func WithMeta(raw []byte, m Meta) ([]byte, error) {
	raw = jsonscan.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' || !json.Valid(raw) {
		return nil, Errorf(KindInvalid, "structure", "resource is not a JSON object")
	}
	members, err := splitObject(raw)
	if err != nil {
		return nil, err
	}
	var rt []byte
	var metaMembers []Member // of every "meta" object, in order
	for _, mb := range members {
		switch mb.Key {
		case "resourceType":
			rt = mb.Value
		case "meta":
			if mb.Value[0] == '{' {
				mm, err := splitObject(mb.Value)
				if err != nil {
					return nil, err
				}
				metaMembers = append(metaMembers, mm...)
			}
		}
	}
	if rt == nil {
		return nil, Errorf(KindInvalid, "structure", "resource has no resourceType").At("resourceType")
	}
	var b bytes.Buffer
	b.Grow(len(raw) + 96)
	b.WriteString(`{"resourceType":`)
	b.Write(rt)
	b.WriteString(`,"id":`)
	b.Write(jsonString(m.ID))
	b.WriteString(`,"meta":{"versionId":"`)
	b.WriteString(strconv.FormatInt(m.VersionID, 10))
	b.WriteString(`","lastUpdated":"`)
	b.WriteString(FormatInstant(m.LastUpdated))
	b.WriteByte('"')
	for _, mm := range unique(metaMembers) {
		if mm.Key == "versionId" || mm.Key == "lastUpdated" {
			continue
		}
		writeMember(&b, mm)
	}
	b.WriteByte('}')
	for _, mb := range members {
		switch mb.Key {
		case "resourceType", "id", "meta":
			continue
		}
		writeMember(&b, mb)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// writeMember writes a comma and mb.
func writeMember(b *bytes.Buffer, mb Member) {
	b.WriteByte(',')
	writeKeyValue(b, mb)
}

// writeKeyValue writes mb's key, a colon and its value.
func writeKeyValue(b *bytes.Buffer, mb Member) {
	if plainKey(mb.Key) {
		b.WriteByte('"')
		b.WriteString(mb.Key)
		b.WriteByte('"')
	} else {
		b.Write(jsonString(mb.Key))
	}
	b.WriteByte(':')
	b.Write(mb.Value)
}

// plainKey reports whether key needs no escaping in JSON (FHIR element
// names never do).
func plainKey(key string) bool {
	for i := 0; i < len(key); i++ {
		if c := key[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// unique keeps, of members with the same key, the last value at the
// place of the first (what decoding into a map and keeping the first
// key order gives). Objects without duplicate keys, nearly all, come back
// as they are; small ones are checked without a map.
func unique(ms []Member) []Member {
	if len(ms) <= 16 {
		dup := false
		for i := 1; i < len(ms) && !dup; i++ {
			for j := range i {
				if ms[i].Key == ms[j].Key {
					dup = true
					break
				}
			}
		}
		if !dup {
			return ms
		}
	}
	at := make(map[string]int, len(ms))
	out := ms[:0:0]
	for _, m := range ms {
		if i, ok := at[m.Key]; ok {
			out[i].Value = m.Value
			continue
		}
		at[m.Key] = len(out)
		out = append(out, m)
	}
	return out
}

// splitObject splits a JSON object (obj starts with '{', trimmed) into its
// members. It checks the object's own syntax: quoted keys, colons and
// commas, each value whole by its extent and a number or literal by its
// grammar, and nothing after the closing brace. The inside of an object,
// array or string value is not checked: a caller that reads one checks it
// then (Members, Elements, StringValue, a decoder), or checks the whole
// with json.Valid first.
func splitObject(obj []byte) ([]Member, error) {
	// Gathered on the stack, returned at their count: most objects are
	// small (a reference, a coding, meta).
	var at [16]Member
	ms := at[:0]
	i := jsonscan.SkipSpace(obj, 1)
	if i < len(obj) && obj[i] == '}' {
		return []Member{}, trailing(obj, i+1)
	}
	for {
		if i >= len(obj) || obj[i] != '"' {
			return nil, errMalformed
		}
		end, ok := valueEnd(obj, i)
		if !ok {
			return nil, errMalformed
		}
		key, err := unquote(obj[i:end])
		if err != nil {
			return nil, Errorf(KindInvalid, "structure", "malformed JSON object").Wrap(err)
		}
		i = jsonscan.SkipSpace(obj, end)
		if i >= len(obj) || obj[i] != ':' {
			return nil, errMalformed
		}
		i = jsonscan.SkipSpace(obj, i+1)
		vend, ok := valueEnd(obj, i)
		if !ok {
			return nil, errMalformed
		}
		ms = append(ms, Member{Key: key, Value: obj[i:vend]})
		var done bool
		if i, done, err = afterValue(obj, vend, '}'); err != nil {
			return nil, err
		} else if done {
			return slices.Clone(ms), nil
		}
	}
}

// afterValue reads what follows a member or element of b that ends at
// end: a comma (next is where the following one starts) or b's closing
// byte, with nothing after it (done).
func afterValue(b []byte, end int, closing byte) (next int, done bool, err error) {
	i := jsonscan.SkipSpace(b, end)
	switch {
	case i >= len(b):
		return 0, false, errMalformed
	case b[i] == ',':
		return jsonscan.SkipSpace(b, i+1), false, nil
	case b[i] == closing:
		return 0, true, trailing(b, i+1)
	}
	return 0, false, errMalformed
}

var errMalformed = Errorf(KindInvalid, "structure", "malformed JSON")

// trailing checks that nothing but space follows index i of b.
func trailing(b []byte, i int) error {
	if jsonscan.SkipSpace(b, i) != len(b) {
		return errMalformed
	}
	return nil
}

// valueEnd returns the index after the value starting at b[i], and false
// when there is none: a string, object or array without its end, or a
// number or literal that is not one. b is the object or array that holds
// the value, so the value ends before b does.
func valueEnd(b []byte, i int) (int, bool) {
	if i >= len(b) {
		return i, false
	}
	end := jsonscan.Value(b, i)
	if end >= len(b) {
		return end, false
	}
	switch c := b[i]; c {
	case '"':
		return end, end-i >= 2 && b[end-1] == '"'
	case '{', '[':
		closing := byte('}')
		if c == '[' {
			closing = ']'
		}
		return end, end-i >= 2 && b[end-1] == closing
	}
	v := b[i:end]
	switch string(v) {
	case "true", "false", "null":
		return end, true
	}
	return end, validNumber(v)
}

// validNumber matches JSON's number grammar:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func validNumber(v []byte) bool {
	i := 0
	if i < len(v) && v[i] == '-' {
		i++
	}
	digits := func() bool {
		start := i
		for i < len(v) && v[i] >= '0' && v[i] <= '9' {
			i++
		}
		return i > start
	}
	switch {
	case i < len(v) && v[i] == '0':
		i++
	case !digits():
		return false
	}
	if i < len(v) && v[i] == '.' {
		i++
		if !digits() {
			return false
		}
	}
	if i < len(v) && (v[i] == 'e' || v[i] == 'E') {
		i++
		if i < len(v) && (v[i] == '+' || v[i] == '-') {
			i++
		}
		if !digits() {
			return false
		}
	}
	return i == len(v)
}

// unquote reads a JSON string (s is one by its extent) as encoding/json
// does, refusing what it refuses.
func unquote(s []byte) (string, error) {
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		in := s[1 : len(s)-1]
		if bytes.IndexByte(in, '\\') < 0 && bytes.IndexByte(in, '"') < 0 && utf8.Valid(in) && !hasControl(in) {
			return string(in), nil
		}
	}
	var k string
	err := json.Unmarshal(s, &k)
	return k, err
}

// hasControl reports whether s holds a control character, which a JSON
// string may not hold unescaped.
func hasControl(s []byte) bool {
	for _, c := range s {
		if c < 0x20 {
			return true
		}
	}
	return false
}

// WithMetaSource returns a resource's JSON with meta.source set to source
// (see SetMetaSource) and the value of its top-level member named dateKey
// ("" for none; nil when absent). raw must be valid JSON, as for Members.
func WithMetaSource(raw []byte, source, dateKey string) (out, date []byte, err error) {
	ms, err := Members(raw)
	if err != nil {
		return nil, nil, Errorf(KindInvalid, "structure", "resource is not a JSON object").Wrap(err)
	}
	for _, m := range ms {
		if dateKey != "" && m.Key == dateKey {
			date = m.Value
		}
	}
	out, err = SetMetaSource(raw, ms, source)
	return out, date, err
}

// SetMetaSource writes raw, the object of members ms (Members(raw)), with
// meta.source set to source, the other meta elements kept in their order.
// The other members keep their order byte for byte; meta, when absent, is
// added after resourceType and id. Like WithMeta it only splits meta by
// byte spans: it runs once for every resource of a federated answer. A
// compact object (no white space between its members, no key given
// twice, none escaped), as sources nearly always send, is copied around
// its new meta rather than written member by member: the same bytes.
func SetMetaSource(raw []byte, ms []Member, source string) ([]byte, error) {
	return setMetaSource(raw, ms, source, true)
}

// setMetaSource is SetMetaSource; splice false writes every object member
// by member (tests compare the two).
func setMetaSource(raw []byte, ms []Member, source string, splice bool) ([]byte, error) {
	metaAt := slices.IndexFunc(ms, func(m Member) bool { return m.Key == "meta" })
	var metaMembers []Member
	if metaAt >= 0 && ms[metaAt].Value[0] == '{' {
		var err error
		if metaMembers, err = splitObject(ms[metaAt].Value); err != nil {
			return nil, err
		}
		metaMembers = unique(metaMembers)
	}
	src := jsonString(source)
	if i := slices.IndexFunc(metaMembers, func(m Member) bool { return m.Key == "source" }); i >= 0 {
		metaMembers[i].Value = src
	} else {
		metaMembers = append(metaMembers, Member{Key: "source", Value: src})
	}
	metaSize := 2 // what writeObject writes when the keys are plain: no growing
	for _, m := range metaMembers {
		metaSize += len(m.Key) + 4 + len(m.Value)
	}
	var mb bytes.Buffer
	mb.Grow(metaSize)
	writeObject(&mb, metaMembers)
	meta := Member{Key: "meta", Value: mb.Bytes()}
	at := metaAt // where meta goes
	if at < 0 {
		at = 0
		for at < len(ms) && at < 2 && (ms[at].Key == "resourceType" || ms[at].Key == "id") {
			at++
		}
	}
	if splice {
		if out, ok := spliceMeta(jsonscan.TrimSpace(raw), ms, meta.Value, at, metaAt >= 0); ok {
			return out, nil
		}
	}
	out := slices.Clone(ms)
	if metaAt >= 0 {
		out[metaAt] = meta
	} else {
		out = slices.Insert(out, at, meta)
	}
	size := 2
	for _, m := range out {
		size += len(m.Key) + len(m.Value) + 4
	}
	var b bytes.Buffer
	b.Grow(size)
	writeObject(&b, out)
	return b.Bytes(), nil
}

// spliceMeta is SetMetaSource for a compact obj: the members ms written
// back to back with plain keys, exactly as writeObject writes them, which
// it knows when obj has no byte more. It puts meta (the value) in place of
// member at (replace) or before it, and copies the rest around it; ok is
// false for any other obj.
func spliceMeta(obj []byte, ms []Member, meta []byte, at int, replace bool) (out []byte, ok bool) {
	// {m0,m1,...}: member i starts after the brace and, before it, i
	// members and their commas.
	size, start := max(len(ms)+1, 2), 0 // the braces and commas; where member at starts
	for i, m := range ms {
		if !plainKey(m.Key) {
			return nil, false
		}
		if i == at {
			start = 1 + size - (len(ms) + 1) + i
		}
		size += len(m.Key) + 3 + len(m.Value)
	}
	if size != len(obj) {
		return nil, false
	}
	out = make([]byte, 0, len(obj)+len(meta)+len(`,"meta":`))
	switch {
	case replace:
		end := start + len(ms[at].Key) + 3 + len(ms[at].Value)
		out = append(append(append(out, obj[:start]...), `"meta":`...), meta...)
		return append(out, obj[end:]...), true
	case at == 0:
		out = append(append(append(out, '{'), `"meta":`...), meta...)
		if len(ms) > 0 {
			out = append(out, ',')
		}
		return append(out, obj[1:]...), true
	default:
		p := len(obj) - 1 // after member at-1: before its comma, or the closing brace
		if at < len(ms) {
			p = start - 1
		}
		out = append(append(append(out, obj[:p]...), `,"meta":`...), meta...)
		return append(out, obj[p:]...), true
	}
}

// writeObject writes members as a JSON object.
func writeObject(b *bytes.Buffer, ms []Member) {
	b.WriteByte('{')
	for i, m := range ms {
		if i == 0 {
			writeKeyValue(b, m)
			continue
		}
		writeMember(b, m)
	}
	b.WriteByte('}')
}
