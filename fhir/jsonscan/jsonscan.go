// Package jsonscan moves over JSON text by byte offsets, without decoding
// it and without allocating: the primitives that span splitting
// (fhir.Members, fhir.SetMetaSource) and the byte-level checks of profiles
// share. The scanners do not check what they pass over; on text that is
// not JSON they stop without reading past its end.
package jsonscan

import "bytes"

// IsSpace reports whether c is JSON white space (not bytes.TrimSpace's,
// which is more).
func IsSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// SkipSpace returns the index of the first byte at or after i that is
// not white space.
func SkipSpace(b []byte, i int) int {
	for i < len(b) && IsSpace(b[i]) {
		i++
	}
	return i
}

// TrimSpace trims JSON white space from both ends of b.
func TrimSpace(b []byte) []byte {
	i, j := SkipSpace(b, 0), len(b)
	for j > i && IsSpace(b[j-1]) {
		j--
	}
	return b[i:j]
}

// String returns the index after the string starting at b[i] (its
// opening quote): after the next quote not escaped by an odd number of
// backslashes (found with bytes.IndexByte, much faster than a loop over
// the bytes), or len(b) when there is none.
func String(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		k := bytes.IndexByte(b[j:], '"')
		if k < 0 {
			break
		}
		j += k
		escaped := false
		for p := j - 1; p > i && b[p] == '\\'; p-- {
			escaped = !escaped
		}
		if !escaped {
			return j + 1
		}
	}
	return len(b)
}

// Value returns the index after the value starting at b[i]: a string, an
// object or an array by its closing byte (len(b) when it has none), a
// number or literal up to the next delimiter or space; i itself when
// there is none there.
func Value(b []byte, i int) int {
	if i >= len(b) {
		return i
	}
	switch b[i] {
	case '"':
		return String(b, i)
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				i = String(b, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
		}
		return len(b)
	}
	for i < len(b) && b[i] != ',' && b[i] != '}' && b[i] != ']' && !IsSpace(b[i]) {
		i++
	}
	return i
}

// special marks the bytes that end the plain run of a string's content:
// the closing quote, an escape, the bytes of non-ASCII UTF-8, and control
// characters, which JSON does not allow there unescaped.
var special = func() (t [256]bool) {
	t['"'], t['\\'] = true, true
	for c := range 0x20 {
		t[c] = true
	}
	for c := 0x80; c < 0x100; c++ {
		t[c] = true
	}
	return t
}()

// Key is String for short strings such as member names, where a byte
// loop beats bytes.IndexByte's setup, and also says whether the content
// is plain printable ASCII without escapes: its own value.
func Key(b []byte, i int) (end int, plain bool) {
	plain = true
	i++
	for i < len(b) {
		for i < len(b) && !special[b[i]] {
			i++
		}
		if i >= len(b) {
			break
		}
		switch b[i] {
		case '"':
			return i + 1, plain
		case '\\':
			plain = false
			i += 2
		default:
			plain = false
			i++
		}
	}
	return len(b), plain
}
