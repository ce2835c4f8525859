package fhir

import (
	"encoding/json"
	"maps"
	"math"
	"slices"
	"sync"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// jkind is the JSON type of a decoded value; the zero value is null.
type jkind uint8

const (
	jNull jkind = iota
	jFalse
	jTrue
	jNumber
	jString
	jObject
	jArray
)

// jval is one decoded JSON value, unboxed and without pointers, so that
// the slabs holding the tree need neither write barriers nor scanning by
// the garbage collector. A string's value or a number's text is the
// decoder's s[a:b], or its strs[a] when esc (a string with escapes, or one
// from fromAny); an object's members are its pairs[a:b], an array's
// elements its vals[a:b]. Offsets are 32 bits: decodeFast declines bodies
// of 4 GiB and more, and fromAny's values are fewer than half the body's
// bytes (the server takes 1 MiB).
type jval struct {
	a, b uint32
	kind jkind
	esc  bool
}

// jsonPair is one member of a decoded object: its key (a string) and value.
type jsonPair struct{ key, v jval }

// jsonDecoder decodes JSON objects into the tree the base walk reads, held
// in two slabs (pairs, vals) that are reused through the decoders pool: a
// document's tree costs no allocation once the slabs have grown to its
// size. The tree is valid until release.
type jsonDecoder struct {
	s      string
	i      int
	body   []byte      // what s was copied from
	top    []topMember // the root object's members as given
	pairs  []jsonPair  // the members of the objects read, each object's together
	vals   []jval      // the elements of the arrays read, each array's together
	strs   []string    // the strings with escapes read, unescaped
	pstack []jsonPair  // the members of the objects being read
	vstack []jval      // the elements of the arrays being read
}

var decoders = sync.Pool{New: func() any { return &jsonDecoder{} }}

// getDecoder returns a decoder from the pool; release returns it.
func getDecoder() *jsonDecoder { return decoders.Get().(*jsonDecoder) }

// release forgets the tree and returns d to the pool; slabs grown beyond
// maxPooledValues are dropped.
func (d *jsonDecoder) release() {
	d.reset()
	if cap(d.pairs) > maxPooledValues {
		d.pairs = nil
	}
	if cap(d.vals) > maxPooledValues {
		d.vals = nil
	}
	decoders.Put(d)
}

// maxPooledValues bounds the slabs a pooled decoder keeps.
const maxPooledValues = 1 << 14

// reset empties d. Of what it held only strs has pointers: it is cleared,
// so that the pool keeps no string alive.
func (d *jsonDecoder) reset() {
	clear(d.strs)
	d.s, d.i, d.body = "", 0, nil
	d.pairs, d.vals, d.strs, d.pstack, d.vstack, d.top = d.pairs[:0], d.vals[:0], d.strs[:0], d.pstack[:0], d.vstack[:0], d.top[:0]
}

// members returns the members of object v.
func (d *jsonDecoder) members(v jval) []jsonPair { return d.pairs[v.a:v.b] }

// elems returns the elements of array v.
func (d *jsonDecoder) elems(v jval) []jval { return d.vals[v.a:v.b] }

// text returns the value of a string or the text of a number.
func (d *jsonDecoder) text(v jval) string {
	if v.esc {
		return d.strs[v.a]
	}
	return d.s[v.a:v.b]
}

// str returns a string's value, "" for any other value.
func (d *jsonDecoder) str(v jval) string {
	if v.kind != jString {
		return ""
	}
	return d.text(v)
}

// num returns a number's text, "" for any other value.
func (d *jsonDecoder) num(v jval) json.Number {
	if v.kind != jNumber {
		return ""
	}
	return json.Number(d.text(v))
}

// key returns the key of member p.
func (d *jsonDecoder) key(p jsonPair) string { return d.text(p.key) }

// get returns the value of key k of object v.
func (d *jsonDecoder) get(v jval, k string) (jval, bool) {
	for _, p := range d.members(v) {
		if d.key(p) == k {
			return p.v, true
		}
	}
	return jval{}, false
}

// decodeFast decodes a JSON object into d: an object's members in the
// order given, each key once (a key given more than once has its last
// value, at the place it was first given, as in the map encoding/json would
// make). It holds what decodeObject's maps would hold (toAny makes them),
// without building maps: keys, numbers and strings without escapes are
// substrings of one copy of body. It reports false for anything it does not
// decode exactly as encoding/json would (invalid JSON, invalid UTF-8, a
// value other than an object, nesting beyond encoding/json's limit): the
// caller then resets d and uses decodeObject, for its verdict and its
// message. It also records the root object's members as given, with
// their values as body's bytes (topMembers).
func (d *jsonDecoder) decodeFast(body []byte) (jval, bool) {
	s := string(body)
	if !utf8.ValidString(s) || uint64(len(s)) > math.MaxUint32 {
		return jval{}, false
	}
	d.s, d.i, d.body = s, 0, body
	d.space()
	if d.i >= len(s) || s[d.i] != '{' {
		return jval{}, false
	}
	v, ok := d.value(0)
	if !ok {
		return jval{}, false
	}
	d.space()
	if d.i != len(s) {
		return jval{}, false
	}
	return v, true
}

// topMembers returns what Members returns for the body decodeFast decoded
// as root (it checked all of it), from the members it recorded: the body
// is not split again.
func (d *jsonDecoder) topMembers(root jval) []Member {
	ms := make([]Member, len(d.top))
	for i, m := range d.top {
		ms[i] = Member{Key: d.text(m.key), Value: d.body[m.start:m.end]}
	}
	if len(ms) == len(d.members(root)) {
		return ms // no key given twice: nothing to merge
	}
	return unique(ms)
}

// topMember is a member of the root object as decodeFast read it: its
// key, and where its value is in the body. It holds no pointer, so that
// recording it needs no write barrier.
type topMember struct {
	key        jval
	start, end uint32
}

// jsonMaxDepth is encoding/json's limit on nesting.
const jsonMaxDepth = 10000

func (d *jsonDecoder) space() {
	for d.i < len(d.s) {
		switch d.s[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

func (d *jsonDecoder) value(depth int) (jval, bool) {
	if d.i >= len(d.s) {
		return jval{}, false
	}
	switch c := d.s[d.i]; {
	case c == '{':
		return d.object(depth + 1)
	case c == '[':
		return d.array(depth + 1)
	case c == '"':
		return d.string()
	case c == 't':
		return jval{kind: jTrue}, d.literal("true")
	case c == 'f':
		return jval{kind: jFalse}, d.literal("false")
	case c == 'n':
		return jval{}, d.literal("null")
	case c == '-' || c >= '0' && c <= '9':
		return d.number()
	}
	return jval{}, false
}

func (d *jsonDecoder) literal(lit string) bool {
	if len(d.s)-d.i < len(lit) || d.s[d.i:d.i+len(lit)] != lit {
		return false
	}
	d.i += len(lit)
	return true
}

func (d *jsonDecoder) object(depth int) (jval, bool) {
	if depth > jsonMaxDepth {
		return jval{}, false
	}
	d.i++ // {
	d.space()
	if d.i < len(d.s) && d.s[d.i] == '}' {
		d.i++
		at := uint32(len(d.pairs))
		return jval{kind: jObject, a: at, b: at}, true
	}
	base := len(d.pstack)
	for {
		d.space()
		if d.i >= len(d.s) || d.s[d.i] != '"' {
			return jval{}, false
		}
		k, ok := d.string()
		if !ok {
			return jval{}, false
		}
		d.space()
		if d.i >= len(d.s) || d.s[d.i] != ':' {
			return jval{}, false
		}
		d.i++
		d.space()
		start := d.i
		v, ok := d.value(depth)
		if !ok {
			return jval{}, false
		}
		d.pstack = append(d.pstack, jsonPair{k, v})
		if depth == 1 { // the root: split as Members splits it
			d.top = append(d.top, topMember{k, uint32(start), uint32(d.i)})
		}
		if more, ok := d.next('}'); !ok {
			return jval{}, false
		} else if !more {
			break
		}
	}
	at := uint32(len(d.pairs))
	d.pairs = d.appendUnique(d.pairs, d.pstack[base:])
	d.pstack = d.pstack[:base]
	return jval{kind: jObject, a: at, b: uint32(len(d.pairs))}, true
}

// appendUnique appends ps to out, each key once with its last value:
// unique's rule for Members, written for the decoder's pairs (one generic
// function for both made base validation 4 % slower).
func (d *jsonDecoder) appendUnique(out, ps []jsonPair) []jsonPair {
	at := len(out)
	if len(ps) <= 32 {
		var seen uint64 // the keyBits of the keys so far: most keys need no search
	next:
		for _, p := range ps {
			k := d.key(p)
			if bit := keyBit(k); seen&bit == 0 {
				seen |= bit
			} else {
				for i := at; i < len(out); i++ {
					if d.key(out[i]) == k {
						out[i].v = p.v
						continue next
					}
				}
			}
			out = append(out, p)
		}
		return out
	}
	index := make(map[string]int, len(ps))
	for _, p := range ps {
		k := d.key(p)
		if i, ok := index[k]; ok {
			out[i].v = p.v
			continue
		}
		index[k] = len(out)
		out = append(out, p)
	}
	return out
}

// keyBit is one of 64 bits for k, from its length and its first and last
// bytes: two keys with different bits differ.
func keyBit(k string) uint64 {
	if k == "" {
		return 1
	}
	return 1 << ((uint(len(k)) + uint(k[0])*5 + uint(k[len(k)-1])*3) & 63)
}

// toAny turns a decoded value into what encoding/json decodes (maps for
// objects, numbers as json.Number); it shares nothing with d's slabs.
func (d *jsonDecoder) toAny(v jval) any {
	switch v.kind {
	case jObject:
		ms := d.members(v)
		m := make(map[string]any, len(ms))
		for _, p := range ms {
			m[d.key(p)] = d.toAny(p.v)
		}
		return m
	case jArray:
		es := d.elems(v)
		a := make([]any, len(es))
		for i, e := range es {
			a[i] = d.toAny(e)
		}
		return a
	case jString:
		return d.text(v)
	case jNumber:
		return json.Number(d.text(v))
	case jTrue:
		return true
	case jFalse:
		return false
	}
	return nil
}

// fromAny adds what encoding/json decodes to d, as decodeFast would have
// decoded it but with an object's members in key order.
func (d *jsonDecoder) fromAny(v any) jval {
	switch x := v.(type) {
	case map[string]any:
		ps := make([]jsonPair, 0, len(x))
		for _, k := range slices.Sorted(maps.Keys(x)) {
			ps = append(ps, jsonPair{d.held(jString, k), d.fromAny(x[k])})
		}
		at := uint32(len(d.pairs))
		d.pairs = append(d.pairs, ps...)
		return jval{kind: jObject, a: at, b: uint32(len(d.pairs))}
	case []any:
		es := make([]jval, len(x))
		for i, e := range x {
			es[i] = d.fromAny(e)
		}
		at := uint32(len(d.vals))
		d.vals = append(d.vals, es...)
		return jval{kind: jArray, a: at, b: uint32(len(d.vals))}
	case string:
		return d.held(jString, x)
	case json.Number:
		return d.held(jNumber, string(x))
	case bool:
		if x {
			return jval{kind: jTrue}
		}
		return jval{kind: jFalse}
	}
	return jval{}
}

// held adds s to strs and returns it as a value of kind k.
func (d *jsonDecoder) held(k jkind, s string) jval {
	d.strs = append(d.strs, s)
	return jval{kind: k, a: uint32(len(d.strs) - 1), esc: true}
}

func (d *jsonDecoder) array(depth int) (jval, bool) {
	if depth > jsonMaxDepth {
		return jval{}, false
	}
	d.i++ // [
	d.space()
	if d.i < len(d.s) && d.s[d.i] == ']' {
		d.i++
		at := uint32(len(d.vals))
		return jval{kind: jArray, a: at, b: at}, true
	}
	base := len(d.vstack)
	for {
		d.space()
		v, ok := d.value(depth)
		if !ok {
			return jval{}, false
		}
		d.vstack = append(d.vstack, v)
		if more, ok := d.next(']'); !ok {
			return jval{}, false
		} else if !more {
			break
		}
	}
	at := uint32(len(d.vals))
	d.vals = append(d.vals, d.vstack[base:]...)
	d.vstack = d.vstack[:base]
	return jval{kind: jArray, a: at, b: uint32(len(d.vals))}, true
}

// next reads what follows a member or element: a comma (more) or the
// closing bracket.
func (d *jsonDecoder) next(closing byte) (more, ok bool) {
	d.space()
	switch {
	case d.i >= len(d.s):
		return false, false
	case d.s[d.i] == ',':
		d.i++
		return true, true
	case d.s[d.i] == closing:
		d.i++
		return false, true
	}
	return false, false
}

// number reads a JSON number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (d *jsonDecoder) number() (jval, bool) {
	s, start := d.s, d.i
	i := start
	if s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && s[i] >= '1' && s[i] <= '9':
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	default:
		return jval{}, false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if i >= len(s) || s[i] < '0' || s[i] > '9' {
			return jval{}, false
		}
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if i >= len(s) || s[i] < '0' || s[i] > '9' {
			return jval{}, false
		}
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	}
	d.i = i
	return jval{kind: jNumber, a: uint32(start), b: uint32(i)}, true
}

// string reads a JSON string; without escapes it is a substring of the
// input.
func (d *jsonDecoder) string() (jval, bool) {
	s := d.s
	d.i++ // "
	start := d.i
	i := start
	for i < len(s) && !strSpecial[s[i]] {
		i++
	}
	for ; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"':
			d.i = i + 1
			return jval{kind: jString, a: uint32(start), b: uint32(i)}, true
		case c == '\\':
			u, ok := d.unescape(start, i)
			if !ok {
				return jval{}, false
			}
			return d.held(jString, u), true
		case c < 0x20:
			return jval{}, false
		}
	}
	return jval{}, false
}

// strSpecial tells the bytes string must look at: the quote, the
// backslash and the control characters.
var strSpecial = func() (t [256]bool) {
	for c := range 0x20 {
		t[c] = true
	}
	t['"'], t['\\'] = true, true
	return t
}()

// unescape reads the rest of a string with escapes, as encoding/json
// unquotes it (an unpaired surrogate becomes U+FFFD).
func (d *jsonDecoder) unescape(start, i int) (string, bool) {
	s := d.s
	b := make([]byte, 0, len(s[start:i])+16)
	b = append(b, s[start:i]...)
	for i < len(s) {
		c := s[i]
		switch {
		case c == '"':
			d.i = i + 1
			return string(b), true
		case c < 0x20:
			return "", false
		case c != '\\':
			b = append(b, c)
			i++
			continue
		}
		if i+1 >= len(s) {
			return "", false
		}
		switch s[i+1] {
		case '"', '\\', '/':
			b = append(b, s[i+1])
		case 'b':
			b = append(b, '\b')
		case 'f':
			b = append(b, '\f')
		case 'n':
			b = append(b, '\n')
		case 'r':
			b = append(b, '\r')
		case 't':
			b = append(b, '\t')
		case 'u':
			r := hex4(s[i:])
			if r < 0 {
				return "", false
			}
			i += 6
			if utf16.IsSurrogate(r) {
				if dec := utf16.DecodeRune(r, hex4(s[i:])); dec != unicode.ReplacementChar {
					i += 6
					b = utf8.AppendRune(b, dec)
					continue
				}
				r = unicode.ReplacementChar
			}
			b = utf8.AppendRune(b, r)
			continue
		default:
			return "", false
		}
		i += 2
	}
	return "", false
}

// hex4 reads \uXXXX at the start of s, or returns -1.
func hex4(s string) rune {
	if len(s) < 6 || s[0] != '\\' || s[1] != 'u' {
		return -1
	}
	var r rune
	for _, c := range []byte(s[2:6]) {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r*16 + rune(c)
	}
	return r
}
