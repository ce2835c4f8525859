package profiles

import (
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// The generator turns a StructureDefinition's differential into a JSON Schema
// (draft 2020-12) for one resource of the profiled type. Base R4 structure is
// the codec's business; the schema only says what the profile adds:
//
//   - cardinality: a min above the base's becomes "required", a tighter max
//     on a repeating element "maxItems", max 0 a false schema on the
//     element's JSON name and its "_name" sibling (for a choice element, a
//     false patternProperties over the names of all its types);
//   - fixed[x] becomes "const" (exact match), pattern[x] a partial match:
//     objects must have the pattern's members, arrays must contain each of
//     the pattern's items;
//   - a choice element restricted to fewer types forbids the other types'
//     JSON names;
//   - a required binding to a value set contained in one of our
//     definitions becomes an enumeration of its codes (code, Coding or
//     CodeableConcept);
//   - the regex extension and maxLength on a primitive;
//   - a resource-typed element (Bundle.entry.resource) gets its resourceType
//     and a $ref to the profile it names;
//   - slices: entries matching a slice's discriminator (value, pattern or
//     type) must conform to the slice, and the slice's cardinality is counted
//     with contains/minContains/maxContains; ordered slicing fixes the first
//     entries;
//   - contentReference becomes a $ref into $defs (recursive elements such as
//     Consent.provision.provision).
//
// Each schema location that checks a constraint is recorded in a note, so a
// validation error maps back to the element and to a readable rule taken
// from the definition.

// note describes the constraint checked at one schema location.
type note struct {
	code    string // IssueType code
	text    string // readable rule
	child   string // for a missing element: its name, appended to the expression
	as      string // for a choice element's JSON name: the element's name, replacing it in the expression
	generic bool   // the fallback note of an element: add the validator's message

	byChild map[string]note // the notes of a "required" keyword, by member name
}

// node is an element of the differential, arranged as a tree by element id.
type node struct {
	el       *elementDefinition
	name     string // the last path segment: "identifier", "medication[x]"
	children []*node
	slices   []*node
}

func (n *node) child(name string) *node {
	for _, c := range n.children {
		if c.name == name {
			return c
		}
	}
	c := &node{name: name}
	n.children = append(n.children, c)
	return c
}

func (n *node) slice(name string) *node {
	for _, s := range n.slices {
		if s.name == name {
			return s
		}
	}
	s := &node{name: name}
	n.slices = append(n.slices, s)
	return s
}

// knownConstraints are the keys of the Go checks (checks.go). A definition
// that names a constraint of ours ("sp-...") without a Go check is an error.
var knownConstraints = map[string]bool{"sp-bsn-1": true, "sp-ura-1": true}

type generator struct {
	sd        *structureDefinition
	valueSets map[string]*valueSet
	known     map[string]bool // the URLs of all our profiles
	notes     map[string]note // keyed by schema URL + "#" + JSON pointer
	byPath    map[string]*node
	refs      map[string]bool // paths that a contentReference points at
	defs      map[string]any
	err       error
}

// generate returns the JSON Schema of sd and records its notes.
func generate(sd *structureDefinition, valueSets map[string]*valueSet, known map[string]bool, notes map[string]note) (map[string]any, error) {
	g := &generator{sd: sd, valueSets: valueSets, known: known, notes: notes,
		byPath: map[string]*node{}, refs: map[string]bool{}, defs: map[string]any{}}
	root, err := g.tree()
	if err != nil {
		return nil, err
	}
	schema := g.item(root, "", "")
	if g.err != nil {
		return nil, g.err
	}
	schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
	schema["$id"] = sd.URL
	if len(g.defs) > 0 {
		schema["$defs"] = g.defs
	}
	return schema, nil
}

func (g *generator) fail(format string, args ...any) {
	if g.err == nil {
		g.err = fmt.Errorf(format, args...)
	}
}

// tree arranges the differential by element id and checks that every
// element the generator needs is there with its base cardinality.
func (g *generator) tree() (*node, error) {
	els := g.sd.elements
	if len(els) == 0 || els[0].ID != g.sd.Type {
		return nil, fmt.Errorf("the differential must start with the root element %s", g.sd.Type)
	}
	root := &node{el: els[0], name: g.sd.Type}
	for _, el := range els[1:] {
		segs := strings.Split(el.ID, ".")
		if segs[0] != g.sd.Type {
			return nil, fmt.Errorf("element %s is not part of %s", el.ID, g.sd.Type)
		}
		cur := root
		for _, seg := range segs[1:] {
			name, slice, sliced := strings.Cut(seg, ":")
			cur = cur.child(name)
			if sliced {
				cur = cur.slice(slice)
			}
		}
		if cur.el != nil {
			return nil, fmt.Errorf("element %s appears twice", el.ID)
		}
		cur.el = el
		if el.SliceName == "" {
			g.byPath[el.Path] = cur
		}
		if el.ContentReference != "" {
			g.refs[strings.TrimPrefix(el.ContentReference, "#")] = true
		}
	}
	var check func(n *node) error
	check = func(n *node) error {
		for _, c := range append(append([]*node(nil), n.children...), n.slices...) {
			switch {
			case c.el == nil:
				return fmt.Errorf("the differential lacks an element above or beside %s: %s.%s (state it with its base cardinality)", g.sd.Type, n.el.ID, c.name)
			case c.el.Base == nil || c.el.Base.Max == "":
				return fmt.Errorf("element %s has no base cardinality (base.max)", c.el.ID)
			case c.el.ContentReference != "" && (len(c.children) > 0 || len(c.slices) > 0):
				return fmt.Errorf("element %s has a contentReference and children", c.el.ID)
			case len(c.slices) > 0 && c.el.Slicing == nil:
				return fmt.Errorf("element %s has slices but no slicing", c.el.ID)
			}
			if err := check(c); err != nil {
				return err
			}
		}
		for _, con := range n.el.Constraint {
			if strings.HasPrefix(con.Key, "sp-") && !knownConstraints[con.Key] {
				return fmt.Errorf("element %s names constraint %s, which has no Go check", n.el.ID, con.Key)
			}
		}
		return nil
	}
	if err := check(root); err != nil {
		return nil, err
	}
	for p := range g.refs {
		if g.byPath[p] == nil {
			return nil, fmt.Errorf("contentReference #%s: no such element in the differential", p)
		}
	}
	return root, nil
}

func (g *generator) note(ptr string, n note) { g.notes[g.sd.URL+"#"+ptr] = n }

// rule renders a readable rule: the element, what it must satisfy, and the
// definition's short description.
func rule(el *elementDefinition, format string, args ...any) string {
	s := el.ID + " " + fmt.Sprintf(format, args...)
	if el.Short != "" {
		s += ": " + el.Short
	}
	return s
}

// typeCode returns the element's single type, or "" when it has none or
// several.
func typeCode(el *elementDefinition) string {
	if len(el.Type) == 1 {
		return el.Type[0].Code
	}
	return ""
}

func (el *elementDefinition) typeEntry(code string) (elementType, bool) {
	for _, t := range el.Type {
		if t.Code == code {
			return t, true
		}
	}
	return elementType{}, false
}

// item returns the schema for one value (one repetition) of n; code is the
// type of that value when n is a choice element.
func (g *generator) item(n *node, ptr, code string) map[string]any {
	el := n.el
	if el.ContentReference != "" {
		return g.ref(strings.TrimPrefix(el.ContentReference, "#"))
	}
	if code == "" {
		code = typeCode(el)
	}
	g.note(ptr, note{code: "invalid", text: rule(el, "does not conform"), generic: true})
	s := map[string]any{}
	var allOf []any
	add := func(sub map[string]any, nt note) {
		g.note(ptr+"/allOf/"+strconv.Itoa(len(allOf)), nt)
		allOf = append(allOf, sub)
	}
	if el.fixed != nil {
		add(map[string]any{"const": el.fixed}, note{code: "value", text: rule(el, "must be %s", compact(el.fixed))})
	}
	if el.pattern != nil {
		add(patternSchema(el.pattern), note{code: "value", text: rule(el, "must match the pattern %s", compact(el.pattern))})
	}
	if t, ok := el.typeEntry(code); ok {
		if re := t.regex(); re != "" {
			add(map[string]any{"pattern": "^(?:" + re + ")$"}, note{code: "value", text: rule(el, "must match the regular expression %s", re)})
		}
		if isResourceType(code) {
			add(map[string]any{"properties": map[string]any{"resourceType": map[string]any{"const": code}}, "required": []any{"resourceType"}},
				note{code: "structure", text: rule(el, "must be a %s resource", code)})
		}
		for _, p := range t.Profile {
			if !g.known[p] {
				g.fail("element %s: profile %s is not one of ours", el.ID, p)
				continue
			}
			add(map[string]any{"$ref": p}, note{code: "invalid", text: rule(el, "must conform to profile %s", p)})
		}
	}
	if el.MaxLength != nil {
		add(map[string]any{"maxLength": *el.MaxLength}, note{code: "value", text: rule(el, "must be at most %d characters", *el.MaxLength)})
	}
	if b := el.Binding; b != nil && b.Strength == "required" {
		vsURL, _, _ := strings.Cut(b.ValueSet, "|")
		vs := g.valueSets[vsURL]
		if vs == nil {
			g.fail("element %s: value set %s is not contained in any of our definitions", el.ID, vsURL)
		} else if bs := bindingSchema(code, vs); bs == nil {
			g.fail("element %s: a required binding needs type code, Coding or CodeableConcept, not %q", el.ID, code)
		} else {
			add(bs, note{code: "code-invalid", text: rule(el, "must have a code from %s%s", vsURL, vs.describe())})
		}
	}
	props, patterns := map[string]any{}, map[string]any{}
	req := &required{notes: map[string]note{}}
	for _, c := range n.children {
		g.property(c, ptr, props, patterns, add, req)
	}
	if len(props) > 0 {
		s["properties"] = props
	}
	if len(patterns) > 0 {
		s["patternProperties"] = patterns
	}
	if len(req.names) > 0 {
		s["required"] = req.names
		g.note(ptr+"/required", note{code: "required", byChild: req.notes})
	}
	if len(allOf) > 0 {
		s["allOf"] = allOf
	}
	return s
}

// required collects the required members of an object: one "required"
// keyword per object (each schema applied to an object costs the validator
// a copy of its member names), with a note per member.
type required struct {
	names []any
	notes map[string]note
}

// ref returns a $ref to the $defs entry of the element at path, generating
// it on first use.
func (g *generator) ref(path string) map[string]any {
	if _, done := g.defs[path]; !done {
		g.defs[path] = true // marks it in progress: a recursive element refers to it by $ref
		g.defs[path] = g.item(g.byPath[path], "/$defs/"+token(path), "")
	}
	return map[string]any{"$ref": "#/$defs/" + token(path)}
}

// property adds the constraints on child c of an object to the object's
// properties (or patternProperties, for the types of a choice element) and,
// when c is required, to its required members (a required choice element
// becomes an anyOf in its allOf).
//
// Constraints that base validation already enforces (a min the base has) are
// left out, and so are elements that add no constraint.
func (g *generator) property(c *node, ptr string, props, patterns map[string]any, add func(map[string]any, note), req *required) {
	el := c.el
	minimum := 0
	if el.Min != nil {
		minimum = *el.Min
	}
	maximum := el.Max
	if maximum == "" {
		maximum = el.Base.Max
	}
	stem, choice := strings.CutSuffix(c.name, "[x]")
	var codes []string // the types of a choice element
	if choice {
		for _, t := range el.Type {
			codes = append(codes, t.Code)
		}
		if len(codes) == 0 {
			codes = openTypes[:]
		}
	}
	forbid := func(name, text string) {
		for _, k := range []string{name, "_" + name} {
			props[k] = false
			g.note(ptr+"/properties/"+token(k), note{code: "structure", text: text})
		}
	}
	// The JSON names of a choice element's types (and their "_" siblings)
	// are forbidden with one pattern rather than a property each.
	forbidTypes := func(re, text string) {
		patterns[re] = false
		g.note(ptr+"/patternProperties/"+token(re), note{code: "structure", text: text, as: stem})
	}
	if maximum == "0" {
		text := rule(el, "is not allowed (max 0)")
		if !choice {
			forbid(stem, text)
			return
		}
		forbidTypes("^_?"+regexp.QuoteMeta(stem)+"[A-Z]", text)
		return
	}
	type variant struct{ name, code string }
	variants := []variant{{name: stem}}
	if choice {
		variants = variants[:0]
		allowed := map[string]bool{}
		for _, code := range codes {
			allowed[code] = true
			variants = append(variants, variant{stem + upperFirst(code), code})
		}
		var others []string
		for _, t := range openTypes {
			if !allowed[t] {
				others = append(others, upperFirst(t))
			}
		}
		if len(others) > 0 {
			forbidTypes("^_?"+regexp.QuoteMeta(stem)+"(?:"+strings.Join(others, "|")+")$",
				rule(el, "must be of type %s", strings.Join(codes, " or ")))
		}
	}
	for _, v := range variants {
		pptr := ptr + "/properties/" + token(v.name)
		if el.Base.Max == "1" {
			if vs := g.value(c, pptr, v.code); len(vs) > 0 {
				props[v.name] = vs
			}
			continue
		}
		arr := map[string]any{}
		if vs := g.value(c, pptr+"/items", v.code); len(vs) > 0 {
			arr["items"] = vs
		}
		if minimum > el.Base.Min {
			arr["minItems"] = minimum
		}
		if maximum != "*" && maximum != el.Base.Max {
			n, err := strconv.Atoi(maximum)
			if err != nil {
				g.fail("element %s: max %q is not a number", el.ID, maximum)
			}
			arr["maxItems"] = n
		}
		g.note(pptr, note{code: "structure", text: rule(el, "must have %d..%s repetitions", minimum, maximum)})
		g.slices(c, pptr, arr)
		if len(arr) > 0 {
			props[v.name] = arr
		}
	}
	if minimum > el.Base.Min {
		text := rule(el, "is required (min %d)", minimum)
		if len(variants) == 1 {
			req.names = append(req.names, variants[0].name)
			req.notes[variants[0].name] = note{code: "required", text: text}
			return
		}
		var anyOf []any
		for _, v := range variants {
			anyOf = append(anyOf, map[string]any{"required": []any{v.name}})
		}
		add(map[string]any{"anyOf": anyOf}, note{code: "required", text: text, child: stem})
	}
}

// value is item, or a $ref when another element refers to this one.
func (g *generator) value(c *node, ptr, code string) map[string]any {
	if c.el.SliceName == "" && g.refs[c.el.Path] {
		return g.ref(c.el.Path)
	}
	return g.item(c, ptr, code)
}

// slices adds the slices of the repeating element c to its array schema.
func (g *generator) slices(c *node, ptr string, arr map[string]any) {
	if len(c.slices) == 0 {
		return
	}
	el := c.el
	var allOf []any
	var leading []any
	var leadingNames []string
	inOrder := el.Slicing.Ordered
	for _, sl := range c.slices {
		disc := g.discriminator(c, sl)
		if disc == nil {
			return
		}
		k := strconv.Itoa(len(allOf))
		full := g.item(sl, ptr+"/allOf/"+k+"/items/then", "")
		g.note(ptr+"/allOf/"+k, note{code: "invalid", text: rule(sl.el, "(slice %s): entries that match it must conform to it", sl.name)})
		allOf = append(allOf, map[string]any{"items": map[string]any{"if": disc, "then": full}})
		smin := 0
		if sl.el.Min != nil {
			smin = *sl.el.Min
		}
		smax := sl.el.Max
		if smax == "" {
			smax = "*"
		}
		if smin > 0 || smax != "*" {
			cs := map[string]any{"contains": disc, "minContains": smin}
			if smax != "*" {
				n, err := strconv.Atoi(smax)
				if err != nil {
					g.fail("slice %s: max %q is not a number", sl.el.ID, smax)
				}
				cs["maxContains"] = n
			}
			g.note(ptr+"/allOf/"+strconv.Itoa(len(allOf)), note{code: "structure",
				text: rule(sl.el, "must occur %d..%s times in %s", smin, smax, el.ID)})
			allOf = append(allOf, cs)
		}
		if inOrder && smin == 1 && smax == "1" {
			leading = append(leading, disc)
			leadingNames = append(leadingNames, sl.name)
		} else {
			inOrder = false
		}
	}
	if len(leading) > 0 {
		g.note(ptr+"/allOf/"+strconv.Itoa(len(allOf)), note{code: "structure",
			text: rule(el, "must start with, in order: %s (ordered slicing)", strings.Join(leadingNames, ", "))})
		allOf = append(allOf, map[string]any{"prefixItems": leading})
	}
	arr["allOf"] = allOf
}

// discriminator returns the schema an entry must match to belong to slice sl.
func (g *generator) discriminator(c, sl *node) map[string]any {
	var all []any
	for _, d := range c.el.Slicing.Discriminator {
		var segs []string
		if d.Path != "$this" {
			segs = strings.Split(d.Path, ".")
		}
		// The nodes along the path, within the slice.
		nodes := []*node{sl}
		for _, seg := range segs {
			next := (*node)(nil)
			for _, ch := range nodes[len(nodes)-1].children {
				if ch.name == seg {
					next = ch
				}
			}
			if next == nil {
				g.fail("slice %s: discriminator path %s is not in the slice", sl.el.ID, d.Path)
				return nil
			}
			nodes = append(nodes, next)
		}
		target := nodes[len(nodes)-1].el
		var inner map[string]any
		switch d.Type {
		case "value", "pattern":
			switch {
			case target.fixed != nil:
				inner = map[string]any{"const": target.fixed}
			case target.pattern != nil:
				inner = patternSchema(target.pattern)
			default:
				g.fail("slice %s: discriminator %s needs a fixed or pattern value at %s", sl.el.ID, d.Type, target.ID)
				return nil
			}
		case "type":
			code := typeCode(target)
			if !isResourceType(code) {
				g.fail("slice %s: type discriminators are supported on resources only", sl.el.ID)
				return nil
			}
			inner = map[string]any{"properties": map[string]any{"resourceType": map[string]any{"const": code}}, "required": []any{"resourceType"}}
		default:
			g.fail("slice %s: discriminator type %q is not supported", sl.el.ID, d.Type)
			return nil
		}
		for i := len(segs) - 1; i >= 0; i-- {
			if nodes[i+1].el.Base.Max != "1" {
				inner = map[string]any{"contains": inner}
			}
			inner = map[string]any{"properties": map[string]any{segs[i]: inner}, "required": []any{segs[i]}}
		}
		all = append(all, inner)
	}
	if len(all) == 1 {
		return all[0].(map[string]any)
	}
	return map[string]any{"allOf": all}
}

// patternSchema is the partial match of a pattern[x] value: objects must
// have each of the pattern's members (matching), arrays must contain a match
// for each of the pattern's items, primitives must be equal.
func patternSchema(v any) map[string]any {
	switch x := v.(type) {
	case map[string]any:
		props := map[string]any{}
		req := make([]string, 0, len(x))
		for k, val := range x {
			req = append(req, k)
			if arr, ok := val.([]any); ok {
				var all []any
				for _, it := range arr {
					all = append(all, map[string]any{"contains": patternSchema(it)})
				}
				props[k] = map[string]any{"allOf": all}
				continue
			}
			props[k] = patternSchema(val)
		}
		sort.Strings(req)
		reqAny := make([]any, len(req))
		for i, r := range req {
			reqAny[i] = r
		}
		return map[string]any{"properties": props, "required": reqAny}
	case []any:
		var all []any
		for _, it := range x {
			all = append(all, map[string]any{"contains": patternSchema(it)})
		}
		return map[string]any{"allOf": all}
	default:
		return map[string]any{"const": x}
	}
}

// bindingSchema enumerates the codes of vs for a value of type code, or
// returns nil for a type that cannot carry a code.
func bindingSchema(code string, vs *valueSet) map[string]any {
	var codings []any
	var all []any
	for _, inc := range vs.Include {
		codes := make([]any, len(inc.Codes))
		for i, c := range inc.Codes {
			codes[i] = c
			all = append(all, c)
		}
		codings = append(codings, map[string]any{
			"properties": map[string]any{"system": map[string]any{"const": inc.System}, "code": map[string]any{"enum": codes}},
			"required":   []any{"system", "code"},
		})
	}
	coding := codings[0].(map[string]any)
	if len(codings) > 1 {
		coding = map[string]any{"anyOf": codings}
	}
	switch code {
	case "code":
		return map[string]any{"enum": all}
	case "Coding":
		return coding
	case "CodeableConcept":
		return map[string]any{"properties": map[string]any{"coding": map[string]any{"contains": coding}}, "required": []any{"coding"}}
	}
	return nil
}

// describe lists the codes of a small value set for a diagnostic:
// " (http://loinc.org#10160-0, ...)"; "" when it has more than a few.
func (vs *valueSet) describe() string {
	var parts []string
	for _, inc := range vs.Include {
		for _, c := range inc.Codes {
			parts = append(parts, inc.System+"#"+c)
		}
	}
	if len(parts) > 4 {
		return ""
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

func compact(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

func upperFirst(s string) string {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return s
	}
	return string(s[0]-'a'+'A') + s[1:]
}

// token escapes a member name as a JSON Pointer reference token, then as
// a URL path segment: the form jsonschema uses in the locations it reports.
func token(s string) string {
	s = strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
	return url.PathEscape(s)
}

// untoken undoes token.
func untoken(s string) string {
	if u, err := url.PathUnescape(s); err == nil {
		s = u
	}
	if !strings.Contains(s, "~") {
		return s
	}
	return strings.ReplaceAll(strings.ReplaceAll(s, "~1", "/"), "~0", "~")
}
