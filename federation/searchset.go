package federation

import (
	"encoding/json"
	"errors"

	"github.com/schakelpunt/schakelpunt/fhir"
	"github.com/schakelpunt/schakelpunt/fhir/jsonscan"
)

// parseSearchset returns the match entries of a searchset and its next
// link. It reads the answer in one pass over its bytes and decodes none of
// it: each match entry's resource is kept as the source wrote it, to be
// checked on its own (validation reads all of it); every other value is
// read or checked here. Splitting it level by level (fhir.Members, then
// Elements, then Members again) scanned each resource three times to find
// where it ends; decoding the whole Bundle was a tenth of a federated
// query's CPU. A key given twice in the same object makes the answer
// garbage (FHIR's JSON has none), whatever a decoder would keep of it.
func parseSearchset(body []byte) (page, error) {
	var (
		p       page
		rt, typ string
	)
	c := &cursor{b: body}
	err := c.object(func(key []byte) error {
		switch string(key) {
		case "resourceType":
			return c.str(&rt)
		case "type":
			return c.str(&typ)
		case "link":
			return c.links(&p.next)
		case "entry":
			return c.entries(&p.entries)
		}
		return c.skip()
	})
	if err == nil && !c.atEnd() {
		err = errSyntax
	}
	if err != nil || rt != "Bundle" || typ != "searchset" {
		return page{}, errGarbage
	}
	return p, nil
}

var (
	errSyntax    = errors.New("federation: malformed JSON")
	errDuplicate = errors.New("federation: a key given twice")
)

// cursor reads JSON at b[i:]. Each method reads one value (after any white
// space) and leaves i after it.
type cursor struct {
	b []byte
	i int
}

func (c *cursor) space() { c.i = jsonscan.SkipSpace(c.b, c.i) }

// atEnd reports whether only white space is left.
func (c *cursor) atEnd() bool {
	c.space()
	return c.i == len(c.b)
}

// object reads an object, calling member with each key (unescaped) and i
// at its value, which member must read.
func (c *cursor) object(member func(key []byte) error) error {
	c.space()
	if c.i >= len(c.b) || c.b[c.i] != '{' {
		return errSyntax
	}
	c.i++
	var seenAt [8][]byte
	seen := seenAt[:0]
	for first := true; ; first = false {
		c.space()
		if first && c.i < len(c.b) && c.b[c.i] == '}' {
			c.i++
			return nil
		}
		if c.i >= len(c.b) || c.b[c.i] != '"' {
			return errSyntax
		}
		key, err := c.key()
		if err != nil {
			return err
		}
		for _, k := range seen {
			if string(k) == string(key) {
				return errDuplicate
			}
		}
		seen = append(seen, key)
		c.space()
		if c.i >= len(c.b) || c.b[c.i] != ':' {
			return errSyntax
		}
		c.i++
		c.space()
		if err := member(key); err != nil {
			return err
		}
		if done, err := c.next('}'); err != nil || done {
			return err
		}
	}
}

// key reads a member's name, unescaped as encoding/json would.
func (c *cursor) key() ([]byte, error) {
	end, plain := jsonscan.Key(c.b, c.i)
	if end > len(c.b) || end-c.i < 2 || c.b[end-1] != '"' {
		return nil, errSyntax
	}
	raw := c.b[c.i:end]
	c.i = end
	if plain {
		return raw[1 : len(raw)-1], nil
	}
	k, ok := fhir.StringValue(raw)
	if !ok {
		return nil, errSyntax
	}
	return []byte(k), nil
}

// array reads an array, calling element with i at each element, which
// element must read.
func (c *cursor) array(element func() error) error {
	c.space()
	if c.i >= len(c.b) || c.b[c.i] != '[' {
		return errSyntax
	}
	c.i++
	for first := true; ; first = false {
		c.space()
		if first && c.i < len(c.b) && c.b[c.i] == ']' {
			c.i++
			return nil
		}
		if err := element(); err != nil {
			return err
		}
		if done, err := c.next(']'); err != nil || done {
			return err
		}
	}
}

// next reads what follows a member or element: a comma, or closing.
func (c *cursor) next(closing byte) (done bool, err error) {
	c.space()
	switch {
	case c.i >= len(c.b):
		return false, errSyntax
	case c.b[c.i] == ',':
		c.i++
		return false, nil
	case c.b[c.i] == closing:
		c.i++
		return true, nil
	}
	return false, errSyntax
}

// span reads a value by its extent only: a string, object or array up to
// its closing byte (its inside is not checked), a number or literal by
// its grammar.
func (c *cursor) span() ([]byte, error) {
	start := c.i
	end := jsonscan.Value(c.b, start)
	if end == start || end > len(c.b) {
		return nil, errSyntax
	}
	v := c.b[start:end]
	closing := byte(0)
	switch v[0] {
	case '"':
		closing = '"'
	case '{':
		closing = '}'
	case '[':
		closing = ']'
	}
	switch {
	case closing != 0:
		if len(v) < 2 || v[len(v)-1] != closing {
			return nil, errSyntax
		}
	default:
		if !json.Valid(v) {
			return nil, errSyntax
		}
	}
	c.i = end
	return v, nil
}

// skip reads a value that is not used, checking all of it (span has
// checked a number or literal whole; the inside of the others is left).
func (c *cursor) skip() error {
	v, err := c.span()
	if err == nil && (v[0] == '"' || v[0] == '{' || v[0] == '[') && !json.Valid(v) {
		err = errSyntax
	}
	return err
}

// null reads a null, if there is one.
func (c *cursor) null() bool {
	if len(c.b)-c.i >= 4 && string(c.b[c.i:c.i+4]) == "null" {
		c.i += 4
		return true
	}
	return false
}

// str reads a string into dst.
func (c *cursor) str(dst *string) error {
	v, err := c.span()
	if err != nil {
		return err
	}
	s, ok := fhir.StringValue(v)
	if !ok {
		return errSyntax
	}
	*dst = s
	return nil
}

// optionalStr reads a string or null (""), into dst.
func (c *cursor) optionalStr(dst *string) error {
	if c.null() {
		*dst = ""
		return nil
	}
	return c.str(dst)
}

// links reads a Bundle's link array (or null): next is the url of its
// last link whose relation is next.
func (c *cursor) links(next *string) error {
	if c.null() {
		return nil
	}
	return c.array(func() error {
		var relation, url string
		err := c.object(func(key []byte) error {
			switch string(key) {
			case "relation":
				return c.optionalStr(&relation)
			case "url":
				return c.optionalStr(&url)
			}
			return c.skip()
		})
		if err == nil && relation == "next" {
			*next = url
		}
		return err
	})
}

// entries reads a Bundle's entry array (or null) into its match entries:
// those whose search.mode is match or absent.
func (c *cursor) entries(out *[]entry) error {
	if c.null() {
		return nil
	}
	return c.array(func() error {
		var en entry
		var mode string
		err := c.object(func(key []byte) error {
			switch string(key) {
			case "fullUrl": // not a string: the entry is left out later
				start := c.i
				if err := c.str(&en.FullURL); err != nil {
					c.i = start
					return c.skip()
				}
				return nil
			case "resource":
				v, err := c.span()
				en.Resource = v
				return err
			case "search":
				return c.object(func(key []byte) error {
					if string(key) == "mode" {
						return c.optionalStr(&mode)
					}
					return c.skip()
				})
			}
			return c.skip()
		})
		switch {
		case err != nil:
			return err
		case mode == "" || mode == "match":
			*out = append(*out, en)
		case en.Resource != nil && !json.Valid(en.Resource):
			return errSyntax // not shown, so not validated: checked here
		}
		return nil
	})
}
