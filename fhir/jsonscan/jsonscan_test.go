package jsonscan

import "testing"

// TestValue: where each kind of value ends, escapes and nesting included,
// and that text that is not JSON stops at its end.
func TestValue(t *testing.T) {
	for _, tc := range []struct {
		in   string
		i    int
		want int
	}{
		{`"abc",`, 0, 5},
		{`"a\"b\\",`, 0, 8},
		{`"a\\\"",`, 0, 7},
		{`{"a":[1,"]}"],"b":{}} x`, 0, 21},
		{`[[],[{}]]`, 0, 9},
		{`123.5e+2,`, 0, 8},
		{`true}`, 0, 4},
		{`null `, 0, 4},
		{`"unterminated`, 0, 13},
		{`{"a":[1,2`, 0, 9},
		{``, 0, 0},
		{`  x`, 3, 3},
	} {
		t.Run(tc.in, func(t *testing.T) {
			if got := Value([]byte(tc.in), tc.i); got != tc.want {
				t.Errorf("Value(%q, %d) = %d, want %d", tc.in, tc.i, got, tc.want)
			}
		})
	}
}

func TestSpace(t *testing.T) {
	if got := string(TrimSpace([]byte(" \t\n\r{}\r\n "))); got != "{}" {
		t.Errorf("TrimSpace = %q", got)
	}
	if got := string(TrimSpace([]byte("\v{}\f"))); got != "\v{}\f" {
		t.Errorf("TrimSpace trimmed what JSON does not call space: %q", got)
	}
	if got := SkipSpace([]byte("  a"), 0); got != 2 {
		t.Errorf("SkipSpace = %d", got)
	}
}

// TestKey: Key ends where String ends, and says which contents are their
// own value.
func TestKey(t *testing.T) {
	for _, tc := range []struct {
		in    string
		plain bool
	}{
		{`"status":`, true}, {`"a\"b":`, false}, {`"\u00e9":`, false}, {`"é":`, false}, {`"unterminated`, true}, {`"":`, true},
		{"\"tab\there\":", false}, {"\"nl\n\":", false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			b := []byte(tc.in)
			end, plain := Key(b, 0)
			if want := String(b, 0); end != want || plain != tc.plain {
				t.Errorf("Key = %d, %v; want %d (as String), %v", end, plain, want, tc.plain)
			}
		})
	}
}
