package fhir

import (
	"bytes"
	"errors"
)

// Member is one member of a JSON object: its key, unescaped, and its
// value as written.
type Member struct {
	Key   string
	Value []byte
}

var (
	errNotObject = errors.New("fhir: not a JSON object")
	errNotArray  = errors.New("fhir: not a JSON array")
)

// Members splits a JSON object into its members, in order; of members
// with the same key the last value is kept at the place of the first, as
// decoders do. obj must be valid JSON (from a decoder, or checked with
// json.Valid): Members finds the members by their byte spans and does
// not check them again, which makes it several times cheaper than
// decoding when only a few members are wanted.
func Members(obj []byte) ([]Member, error) {
	obj = bytes.TrimSpace(obj)
	if len(obj) == 0 || obj[0] != '{' {
		return nil, errNotObject
	}
	ms, err := splitObject(obj)
	if err != nil {
		return nil, err
	}
	return unique(ms), nil
}

// Elements splits a JSON array into its elements, as Members splits an
// object (arr must be valid JSON).
func Elements(arr []byte) ([][]byte, error) {
	arr = bytes.TrimSpace(arr)
	if len(arr) == 0 || arr[0] != '[' {
		return nil, errNotArray
	}
	var out [][]byte
	for i := skipSpace(arr, 1); i < len(arr) && arr[i] != ']'; {
		if arr[i] == ',' {
			i = skipSpace(arr, i+1)
			continue
		}
		end := skipValue(arr, i)
		out = append(out, arr[i:end])
		i = skipSpace(arr, end)
	}
	return out, nil
}

// StringValue returns the string a JSON value holds, and false when the
// value is not a string.
func StringValue(v []byte) (string, bool) {
	v = bytes.TrimSpace(v)
	if len(v) < 2 || v[0] != '"' {
		return "", false
	}
	s, err := unquote(v)
	return s, err == nil
}
