package audit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/schakelpunt/schakelpunt/fhir"
)

// rendered is an event made ready for the chain by its caller, in
// parallel with the others: only linking it is left to the recorder.
type rendered struct {
	canon []byte     // the canonical form the chain link covers
	head  []byte     // the stored body up to the chain link
	tail  []byte     // the stored body after the chain link
	terms fhir.Terms // its index terms
}

// render builds the AuditEvent of ev, its canonical form, the stored body
// around the chain link, and its index terms, without decoding anything:
// the event's types list their fields in key order, so encoding/json
// (without HTML escaping) writes the canonical form of each part, and the
// terms are read from the event as fhir.ExtractTerms reads them from its
// JSON. Tests hold both to Canonical and fhir.ExtractTerms.
func render(ev *Event) (rendered, error) {
	ae := ev.build()
	w := encoders.Get().(*encoder)
	defer encoders.Put(w)
	buf, enc := &w.buf, w.enc
	buf.Reset()
	// inner marshals v and returns its members without the braces.
	inner := func(v any) ([]byte, error) {
		start := buf.Len()
		if err := enc.Encode(v); err != nil {
			return nil, fmt.Errorf("audit: render: %w", err)
		}
		b := buf.Bytes()[start:]
		return b[1 : len(b)-2], nil // "{...}\n"
	}
	a, err := inner(ae.eventA)
	if err != nil {
		return rendered{}, err
	}
	b, err := inner(ae.eventB)
	if err != nil {
		return rendered{}, err
	}
	c, err := inner(ae.eventC)
	if err != nil {
		return rendered{}, err
	}
	var exts []byte // the extensions' JSON without the brackets
	if len(ae.Extension) > 0 {
		start := buf.Len()
		if err := enc.Encode(ae.Extension); err != nil {
			return rendered{}, fmt.Errorf("audit: render: %w", err)
		}
		e := buf.Bytes()[start:]
		exts = e[1 : len(e)-2] // "[...]\n"
	}
	id := jsonString(ae.ID)

	canon := make([]byte, 0, len(a)+len(b)+len(c)+len(exts)+len(id)+64)
	canon = append(canon, '{')
	canon = append(canon, a...)
	if exts != nil {
		canon = append(canon, `,"extension":[`...)
		canon = append(canon, exts...)
		canon = append(canon, ']')
	}
	canon = append(canon, `,"id":`...)
	canon = append(canon, id...)
	canon = append(canon, ',')
	canon = append(canon, b...)
	canon = append(canon, `,"resourceType":"AuditEvent",`...)
	canon = append(canon, c...)
	canon = append(canon, '}')

	head := make([]byte, 0, len(id)+48)
	head = append(head, `{"resourceType":"AuditEvent","id":`...)
	head = append(head, id...)
	head = append(head, `,"extension":[`...)
	tail := make([]byte, 0, len(canon))
	if exts != nil {
		tail = append(tail, ',')
		tail = append(tail, exts...)
	}
	tail = append(tail, "],"...)
	tail = append(tail, a...)
	tail = append(tail, ',')
	tail = append(tail, b...)
	tail = append(tail, ',')
	tail = append(tail, c...)
	tail = append(tail, '}')
	return rendered{canon: canon, head: head, tail: tail, terms: ae.terms()}, nil
}

// encoder is a buffer with a JSON encoder on it that does not escape
// HTML; render takes one from encoders and copies out what it keeps.
type encoder struct {
	buf bytes.Buffer
	enc *json.Encoder
}

var encoders = sync.Pool{New: func() any {
	w := &encoder{}
	w.buf.Grow(8192)
	w.enc = json.NewEncoder(&w.buf)
	w.enc.SetEscapeHTML(false)
	return w
}}

// body is the stored body of a rendered event with its chain link (the
// first extension): the same members as its canonical form, with
// resourceType, id and the extensions first.
func (r *rendered) body(seq int64, prev, hash string) []byte {
	b := make([]byte, 0, len(r.head)+len(r.tail)+len(prev)+len(hash)+len(ChainExtension)+128)
	b = append(b, r.head...)
	b = append(b, `{"extension":[{"url":"seq","valueString":"`...)
	b = strconv.AppendInt(b, seq, 10)
	b = append(b, `"},`...)
	if prev != "" { // the first event has no previous link
		b = append(b, `{"url":"previous","valueString":`...)
		b = append(b, jsonString(prev)...)
		b = append(b, "},"...)
	}
	b = append(b, `{"url":"hash","valueString":`...)
	b = append(b, jsonString(hash)...)
	b = append(b, `}],"url":"`+ChainExtension+`"}`...)
	return append(b, r.tail...)
}

// jsonString is s as encoding/json writes it without HTML escaping.
func jsonString(s string) []byte {
	plain := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= utf8.RuneSelf {
			plain = false
			break
		}
	}
	if plain {
		return []byte(`"` + s + `"`)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

// validUTF8 makes the event's text valid UTF-8. encoding/json writes an
// invalid byte as the escape \ufffd, which decodes to the character
// U+FFFD and is then written as that character: the canonical form of the
// stored body would differ from the one render gives, and the event
// would not verify. Replacing invalid bytes first gives both the same
// text.
func (e *Event) validUTF8() {
	fix := func(s *string) {
		if !utf8.ValidString(*s) {
			*s = strings.ToValidUTF8(*s, "\uFFFD")
		}
	}
	fixAll := func(ss *[]string) {
		for i, s := range *ss {
			if !utf8.ValidString(s) {
				*ss = append([]string(nil), (*ss)...) // the caller's slice stays as it was
				for j := i; j < len(*ss); j++ {
					fix(&(*ss)[j])
				}
				return
			}
		}
	}
	for _, s := range []*string{&e.ID, &e.Interaction, &e.Action, &e.Description, &e.PatientBSN, &e.Query, &e.Category, &e.Observer} {
		fix(s)
	}
	fixAll(&e.Resources)
	fixAll(&e.Reasons)
	if a := e.Agent; a != nil {
		c := *a
		for _, s := range []*string{&c.UZINumber, &c.CardType, &c.Role, &c.URA, &c.AGB, &c.Name, &c.BSN, &c.Address, &c.System} {
			fix(s)
		}
		if c != *a {
			e.Agent = &c
		}
	}
	copied := false
	for i, src := range e.Sources {
		c := src
		for _, s := range []*string{&c.URA, &c.Name, &c.URL, &c.Outcome} {
			fix(s)
		}
		if c != src {
			if !copied {
				e.Sources, copied = append([]Source(nil), e.Sources...), true
			}
			e.Sources[i] = c
		}
	}
}

// terms are the index terms of the event: what fhir.ExtractTerms gives
// for its JSON, read from the struct (the search parameters of
// AuditEvent in code order, values in document order, each term once).
func (ae *auditEvent) terms() fhir.Terms {
	var t fhir.Terms
	t.Strings = make([]string, 0, 40)
	add := func(s string) {
		for _, have := range t.Strings {
			if have == s {
				return
			}
		}
		t.Strings = append(t.Strings, s)
	}
	code := func(p, v string) { // a code or string element
		add(fhir.TermCode(p, v))
		add(fhir.TermNoSystem(p, v))
	}
	tokenCoding := func(p string, c coding) {
		if c.Code != "" {
			add(fhir.TermCode(p, c.Code))
			if c.System != "" {
				add(fhir.TermSystemCode(p, c.System, c.Code))
			} else {
				add(fhir.TermNoSystem(p, c.Code))
			}
		}
		if c.System != "" {
			add(fhir.TermSystem(p, c.System))
		}
	}
	ref := func(p, onlyType string, r *reference) {
		var fromRef []string // the terms of r.Reference for p, as fhir.ExtractTerms gives them
		if r.Reference != "" {
			fromRef = referenceTerms(p, r)
			if onlyType != "" && len(fromRef) == 0 {
				return // a reference to another type
			}
		} else if onlyType != "" && r.Type != onlyType {
			return
		}
		for _, s := range fromRef {
			add(s)
		}
		if r.Identifier != nil && r.Identifier.Value != "" {
			add(fhir.TermRefIdentifier(p, "", r.Identifier.Value))
			if r.Identifier.System != "" {
				add(fhir.TermRefIdentifier(p, r.Identifier.System, r.Identifier.Value))
			}
		}
	}
	code("_id", ae.ID)
	code("action", ae.Action)
	for i := range ae.Agent {
		ref("agent", "", &ae.Agent[i].Who)
	}
	for _, a := range ae.Agent {
		for _, r := range a.Role {
			for _, c := range r.Coding {
				tokenCoding("agent-role", c)
			}
		}
	}
	if r, ok := fhir.ParseDateRange(ae.Recorded); ok {
		t.Dates = append(t.Dates, fhir.DateTerm{Param: "date", DateRange: r})
	}
	for _, e := range ae.Entity {
		if e.What != nil {
			ref("entity", "", e.What)
		}
	}
	code("outcome", ae.Outcome)
	for i := range ae.Agent {
		ref("patient", "Patient", &ae.Agent[i].Who)
	}
	for _, e := range ae.Entity {
		if e.What != nil {
			ref("patient", "Patient", e.What)
		}
	}
	ref("source", "", &ae.Source.Observer)
	for _, c := range ae.Subtype {
		tokenCoding("subtype", c)
	}
	tokenCoding("type", ae.Type)
	return t
}

// referenceTerms returns the terms parameter p gives a reference's
// literal reference (and type): fhir.ExtractTerms of a document that holds
// only it, so that the reading of references (relative, absolute,
// versioned; the target type of patient) stays fhir's. Events name
// resources this way only now and then: the cost does not matter.
func referenceTerms(p string, r *reference) []string {
	what := map[string]any{"reference": r.Reference}
	if r.Type != "" {
		what["type"] = r.Type
	}
	doc := map[string]any{
		"agent":  []any{map[string]any{"who": what}},
		"entity": []any{map[string]any{"what": what}},
		"source": map[string]any{"observer": what},
	}
	var out []string
	for _, s := range fhir.ExtractTerms("AuditEvent", doc).Strings {
		if strings.HasPrefix(s, p+"#") {
			out = append(out, s)
		}
	}
	return out
}
