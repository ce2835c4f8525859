package fhir

import (
	"encoding/json"
	"maps"
	"slices"
	"sync"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// decodeFast decodes a JSON object into the tree the base walk reads: a
// *jsonObject for each object, []any for arrays, string, bool, nil and
// json.Number for numbers. It holds what decodeObject's maps would hold
// (toAny makes them), without building maps: keys, numbers and strings
// without escapes are substrings of one copy of body, and members and
// slices are made at their final size. It reports false for anything it does not
// decode exactly as encoding/json would (invalid JSON, invalid UTF-8, a
// value other than an object, nesting beyond encoding/json's limit): the
// caller then uses decodeObject, for its verdict and its message.
func decodeFast(body []byte) (*jsonObject, bool) {
	s := string(body)
	if !utf8.ValidString(s) {
		return nil, false
	}
	d := decoders.Get().(*jsonDecoder)
	defer decoders.Put(d)
	d.s, d.i = s, 0
	defer func() { d.s = "" }()
	d.space()
	if d.i >= len(s) || s[d.i] != '{' {
		return nil, false
	}
	v, ok := d.value(0)
	if !ok {
		return nil, false
	}
	d.space()
	if d.i != len(s) {
		return nil, false
	}
	return v.(*jsonObject), true
}

var decoders = sync.Pool{New: func() any { return &jsonDecoder{} }}

// jsonMaxDepth is encoding/json's limit on nesting.
const jsonMaxDepth = 10000

type jsonDecoder struct {
	s     string
	i     int
	pairs []jsonPair // the members of the objects being read
	items []any      // the elements of the arrays being read
}

type jsonPair struct {
	k string
	v any
}

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

func (d *jsonDecoder) value(depth int) (any, bool) {
	if d.i >= len(d.s) {
		return nil, false
	}
	switch c := d.s[d.i]; {
	case c == '{':
		return d.object(depth + 1)
	case c == '[':
		return d.array(depth + 1)
	case c == '"':
		s, ok := d.str()
		return s, ok
	case c == 't':
		return true, d.literal("true")
	case c == 'f':
		return false, d.literal("false")
	case c == 'n':
		return nil, d.literal("null")
	case c == '-' || c >= '0' && c <= '9':
		return d.number()
	}
	return nil, false
}

func (d *jsonDecoder) literal(lit string) bool {
	if len(d.s)-d.i < len(lit) || d.s[d.i:d.i+len(lit)] != lit {
		return false
	}
	d.i += len(lit)
	return true
}

func (d *jsonDecoder) object(depth int) (any, bool) {
	if depth > jsonMaxDepth {
		return nil, false
	}
	d.i++ // {
	base := len(d.pairs)
	d.space()
	if d.i < len(d.s) && d.s[d.i] == '}' {
		d.i++
		return &jsonObject{}, true
	}
	for {
		d.space()
		if d.i >= len(d.s) || d.s[d.i] != '"' {
			return nil, false
		}
		k, ok := d.str()
		if !ok {
			return nil, false
		}
		d.space()
		if d.i >= len(d.s) || d.s[d.i] != ':' {
			return nil, false
		}
		d.i++
		d.space()
		v, ok := d.value(depth)
		if !ok {
			return nil, false
		}
		d.pairs = append(d.pairs, jsonPair{k, v})
		if more, ok := d.next('}'); !ok {
			return nil, false
		} else if !more {
			break
		}
	}
	o := &jsonObject{members: uniqueMembers(d.pairs[base:])}
	clear(d.pairs[base:])
	d.pairs = d.pairs[:base]
	return o, true
}

// jsonObject is a decoded JSON object: its members in the order given,
// each key once. A key given more than once has its last value, at the
// place it was first given, as in the map encoding/json would make.
type jsonObject struct{ members []jsonPair }

// get returns the value of key k.
func (o *jsonObject) get(k string) (any, bool) {
	for _, p := range o.members {
		if p.k == k {
			return p.v, true
		}
	}
	return nil, false
}

// uniqueMembers copies ps, each key once with its last value: unique's
// rule for Members, written for the decoder's pairs (one generic function
// for both made base validation 4 % slower).
func uniqueMembers(ps []jsonPair) []jsonPair {
	out := make([]jsonPair, 0, len(ps))
	if len(ps) <= 32 {
	next:
		for _, p := range ps {
			for i := range out {
				if out[i].k == p.k {
					out[i].v = p.v
					continue next
				}
			}
			out = append(out, p)
		}
		return out
	}
	at := make(map[string]int, len(ps))
	for _, p := range ps {
		if i, ok := at[p.k]; ok {
			out[i].v = p.v
			continue
		}
		at[p.k] = len(out)
		out = append(out, p)
	}
	return out
}

// toAny turns a decoded value into what encoding/json decodes (maps for
// objects, numbers as json.Number).
func toAny(v any) any {
	switch x := v.(type) {
	case *jsonObject:
		m := make(map[string]any, len(x.members))
		for _, p := range x.members {
			m[p.k] = toAny(p.v)
		}
		return m
	case []any:
		a := make([]any, len(x))
		for i, e := range x {
			a[i] = toAny(e)
		}
		return a
	}
	return v
}

// fromAny turns what encoding/json decodes into the tree decodeFast makes,
// members in key order.
func fromAny(v any) any {
	switch x := v.(type) {
	case map[string]any:
		o := &jsonObject{members: make([]jsonPair, 0, len(x))}
		for _, k := range slices.Sorted(maps.Keys(x)) {
			o.members = append(o.members, jsonPair{k, fromAny(x[k])})
		}
		return o
	case []any:
		a := make([]any, len(x))
		for i, e := range x {
			a[i] = fromAny(e)
		}
		return a
	}
	return v
}

func (d *jsonDecoder) array(depth int) (any, bool) {
	if depth > jsonMaxDepth {
		return nil, false
	}
	d.i++ // [
	base := len(d.items)
	d.space()
	if d.i < len(d.s) && d.s[d.i] == ']' {
		d.i++
		return []any{}, true
	}
	for {
		d.space()
		v, ok := d.value(depth)
		if !ok {
			return nil, false
		}
		d.items = append(d.items, v)
		if more, ok := d.next(']'); !ok {
			return nil, false
		} else if !more {
			break
		}
	}
	a := make([]any, len(d.items)-base)
	copy(a, d.items[base:])
	clear(d.items[base:])
	d.items = d.items[:base]
	return a, true
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
func (d *jsonDecoder) number() (any, bool) {
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
		return nil, false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if i >= len(s) || s[i] < '0' || s[i] > '9' {
			return nil, false
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
			return nil, false
		}
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	}
	d.i = i
	return json.Number(s[start:i]), true
}

// str reads a JSON string; without escapes it is a substring of the input.
func (d *jsonDecoder) str() (string, bool) {
	s := d.s
	d.i++ // "
	start := d.i
	for i := start; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"':
			d.i = i + 1
			return s[start:i], true
		case c == '\\':
			return d.unescape(start, i)
		case c < 0x20:
			return "", false
		}
	}
	return "", false
}

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
