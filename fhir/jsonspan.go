package fhir

import (
	"encoding/json"
	"errors"

	"github.com/schakelpunt/schakelpunt/fhir/jsonscan"
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
// decoders do. It finds the members by their byte spans, which makes it
// several times cheaper than decoding when only a few members are wanted,
// and checks the object's own syntax (keys, colons, commas, each value
// whole, numbers and literals) but not the inside of its values: a caller
// checks a value it reads (Members or Elements again, StringValue, a
// decoder) or the whole first (json.Valid). The values of a key given
// again, which are dropped, are checked here.
func Members(obj []byte) ([]Member, error) {
	obj = jsonscan.TrimSpace(obj)
	if len(obj) == 0 || obj[0] != '{' {
		return nil, errNotObject
	}
	ms, err := splitObject(obj)
	if err != nil {
		return nil, err
	}
	out := unique(ms)
	if len(out) < len(ms) {
		// The values a later one replaced are not read again: check them
		// now (a rare case).
		for _, m := range ms {
			if !json.Valid(m.Value) {
				return nil, errMalformed
			}
		}
	}
	return out, nil
}

// Elements splits a JSON array into its elements, checking as Members
// does.
func Elements(arr []byte) ([][]byte, error) {
	arr = jsonscan.TrimSpace(arr)
	if len(arr) == 0 || arr[0] != '[' {
		return nil, errNotArray
	}
	var out [][]byte
	i := jsonscan.SkipSpace(arr, 1)
	if i < len(arr) && arr[i] == ']' {
		return out, trailing(arr, i+1)
	}
	for {
		end, ok := valueEnd(arr, i)
		if !ok {
			return nil, errMalformed
		}
		out = append(out, arr[i:end])
		var done bool
		var err error
		if i, done, err = afterValue(arr, end, ']'); err != nil {
			return nil, err
		} else if done {
			return out, nil
		}
	}
}

// StringValue returns the string a JSON value holds, and false when the
// value is not a string.
func StringValue(v []byte) (string, bool) {
	v = jsonscan.TrimSpace(v)
	if len(v) < 2 || v[0] != '"' {
		return "", false
	}
	s, err := unquote(v)
	return s, err == nil
}
