package fhir

import (
	"encoding/base64"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// Base R4 validation without building protos: a walk of the decoded JSON
// over the table of basetable.go, with the rules of google/fhir's jsonformat
// unmarshaller (v0.7.4) and its fhirvalidate pass, which Parse runs. It
// gives their verdicts (base_diff_test.go compares them on every fixture,
// thousands of mutations and a fuzz corpus) at a fraction of the cost, and
// the decoded document serves the profile step too.
//
// Like google/fhir, it reports in two phases: errors reading the JSON into
// the R4 structure (unknown elements, wrong JSON types, malformed
// primitives, codes outside a required binding: KindInvalid), and only when
// there are none, errors of the validation pass (missing required elements,
// references to the wrong resource type, code/id/uri/string formats and
// integer ranges: KindUnprocessable).
//
// Where google/fhir departs from the R4 specification, the walk follows
// google/fhir, so that a resource gets the same verdict from Parse (writes)
// and Validate (federated answers), except for these deliberate differences
// (baseRules.google restores google/fhir's behaviour, for the differential
// test):
//
//  1. A null in an array of primitives is accepted when the paired array
//     (given and _given) has a value at that index, as R4 JSON prescribes
//     for primitives that carry only extensions; google/fhir rejects every
//     null.
//  2. A primitive with extensions but no value (a null in such an array, or
//     only "_code") is not checked against the value pattern of its type;
//     google/fhir checks the empty string, so a code, id, oid or uuid with
//     only extensions failed.
//  3. base64Binary is checked after JSON unescaping (google/fhir checks the
//     raw bytes between the quotes, so "\/" failed).
//  4. An empty code is not a code of a required binding (google/fhir reads
//     "" as its enum's zero value, so "status": "" passed).
//  5. Contained resources get the validation pass too (required elements,
//     reference types, formats), as HAPI gives them; google/fhir keeps them
//     as a protobuf Any, which its validation pass does not enter.

// maxNestingDepth bounds the nesting of elements, as Codec's unmarshaller:
// deeper is an error.
const maxNestingDepth = 64

// maxStringSize is R4's limit on a string (google/fhir's, 1 MiB).
const maxStringSize = 1024 * 1024

// baseRules selects google/fhir's behaviour where we deliberately differ.
type baseRules struct{ google bool }

// Validate checks that body is one valid FHIR R4 resource, of type wantType
// unless wantType is empty, with the verdicts of Parse (see base.go for the
// few deliberate differences) but about twenty times faster: it walks the
// decoded JSON over a table of the R4 definitions google/fhir parses
// against. Errors are as Parse's: KindInvalid for JSON that does not read
// as an R4 resource, KindUnprocessable for failed base validation, each
// issue with the FHIRPath of the element at fault.
func (c *Codec) Validate(body []byte, wantType string) (*Resource, error) {
	return validateBase(body, wantType, baseRules{}, nil, nil)
}

// ValidateSome is Validate for a caller that looks at only some of the
// resource's top-level elements: the Resource's Doc holds "resourceType"
// and the members for which keep(resourceType, key) is true, and nothing
// is built for the others. The verdict is Validate's. Like Validate, it
// gives the Resource its Members, split while decoding: a caller that
// reads or rewrites a few members (federation's meta.source) need not
// split the body again. When visit is not nil and the resource passed, it
// is called with the whole decoded resource and its Members, before the
// Doc is built, for a caller that reads all of it (the profiles'
// invariants) or decides from it what keep keeps.
func (c *Codec) ValidateSome(body []byte, wantType string, keep func(resourceType, key string) bool, visit func(Node, []Member)) (*Resource, error) {
	return validateBase(body, wantType, baseRules{}, keep, visit)
}

func validateBase(body []byte, wantType string, rules baseRules, keep func(resourceType, key string) bool, visit func(Node, []Member)) (*Resource, error) {
	d := getDecoder()
	defer d.release()
	doc, fast := d.decodeFast(body)
	badUTF8 := false // decodeFast takes UTF-8 only
	if !fast {
		badUTF8 = !utf8.Valid(body)
		m, err := decodeObject(body)
		if err != nil {
			return nil, err
		}
		d.reset()
		doc = d.fromAny(m)
	}
	rtv, _ := d.get(doc, "resourceType")
	rt := d.str(rtv)
	if err := checkResourceType(rt, wantType); err != nil {
		return nil, err
	}
	t, err := loadBaseTable()
	if err != nil {
		return nil, &Error{Kind: KindFault, Issues: []Issue{{Severity: "error", Code: "exception", Diagnostics: "internal error"}}, Err: err}
	}
	typ := t.resources[rt]
	if typ == nil {
		return nil, Errorf(KindInvalid, "value", "unknown resource type").At("resourceType")
	}
	w := walkers.Get().(*walker)
	w.t, w.d, w.rules, w.root = t, d, rules, rt
	// encoding/json made each bad byte U+FFFD: the strings with one are
	// reported where they are (a key with one is no element). Like
	// google/fhir, the walk does not see a duplicate key's earlier value.
	w.badUTF8 = badUTF8
	w.object(typ, doc, nil, 0, true)
	var out error
	switch {
	case len(w.invalid) > 0:
		out = &Error{Kind: KindInvalid, Issues: slices.Clone(w.invalid)}
	case len(w.unprocessable) > 0:
		out = &Error{Kind: KindUnprocessable, Issues: slices.Clone(w.unprocessable)}
	}
	w.reset()
	walkers.Put(w)
	if out != nil {
		return nil, out
	}
	var members []Member
	if fast {
		members = d.topMembers(doc)
	} else {
		members, _ = Members(body) // valid JSON: no error
	}
	if visit != nil {
		visit(Node{d, doc}, members)
	}
	idv, _ := d.get(doc, "id")
	id := d.str(idv)
	return &Resource{Type: rt, ID: id, Raw: body, Doc: keptDoc(d, doc, rt, keep), Members: members}, nil
}

// keptDoc returns, in a map sized for them, resourceType and the members
// of doc that keep keeps (all when keep is nil).
func keptDoc(d *jsonDecoder, doc jval, rt string, keep func(resourceType, key string) bool) map[string]any {
	members := d.members(doc)
	var buf [32]jsonPair
	kept := buf[:0]
	for _, p := range members {
		if k := d.key(p); keep == nil || k == "resourceType" || keep(rt, k) {
			kept = append(kept, p)
		}
	}
	m := make(map[string]any, len(kept))
	for _, p := range kept {
		m[d.key(p)] = d.toAny(p.v)
	}
	return m
}

var walkers = sync.Pool{New: func() any { return &walker{} }}

type walker struct {
	t       *baseTable
	d       *jsonDecoder // holds the tree walked
	rules   baseRules
	root    string
	badUTF8 bool // the body is not UTF-8
	path    []pathSeg
	members []member // the members of the objects being walked
	// quiet counts the reasons the validation pass does not see where the
	// walk is: in a contained resource (a protobuf Any in google/fhir, which
	// its validation pass does not enter), or in the reference string of a
	// reference it normalised to a typed id (and dropped).
	quiet int
	// refNorm tells object that the Reference it walks was normalised.
	refNorm                bool
	invalid, unprocessable []Issue
}

func (w *walker) reset() {
	w.t, w.d, w.root, w.path, w.members, w.quiet, w.refNorm, w.badUTF8 = nil, nil, "", w.path[:0], w.members[:0], 0, false, false
	w.invalid, w.unprocessable = w.invalid[:0], w.unprocessable[:0]
}

// pathSeg is one step of the path: a key (idx < 0), or an index.
// The _ of a primitive's extension key is dropped, unless raw (a key that
// is no element). The key is a string of the decoder's, so that the path
// holds no pointers (and pushing needs no write barriers).
type pathSeg struct {
	key jval
	idx int
	raw bool
}

// member is one member of an object being walked, without pointers (so
// that w.members needs no write barriers): the index of its jsonPair in the
// decoder's pairs and of its fieldKey in the type's keys; done once read.
type member struct {
	pair, key uint32
	done      bool
}

// item is one member of an object as the field reading it sees it.
type item struct {
	fk  fieldKey
	key jval // a string
	val jval
}

// item resolves m, a member of an object of type t.
func (w *walker) item(t *btype, m member) item {
	p := w.d.pairs[m.pair]
	return item{fk: t.keys[m.key], key: p.key, val: p.v}
}

func (w *walker) push(key jval)   { w.path = append(w.path, pathSeg{key: key, idx: -1}) }
func (w *walker) pushIndex(i int) { w.path = append(w.path, pathSeg{idx: i}) }
func (w *walker) pop()            { w.path = w.path[:len(w.path)-1] }

// pushName pushes a key that is not the document's (an error's).
func (w *walker) pushName(name string) { w.push(w.d.held(jString, name)) }

func (w *walker) checking() bool { return w.quiet == 0 }
func (w *walker) google() bool   { return w.rules.google }
func (w *walker) expression() string {
	var b strings.Builder
	b.WriteString(w.root)
	for _, s := range w.path {
		if s.idx >= 0 {
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(s.idx))
			b.WriteByte(']')
			continue
		}
		b.WriteByte('.')
		if k := w.d.text(s.key); s.raw {
			b.WriteString(k)
		} else {
			b.WriteString(strings.TrimPrefix(k, "_"))
		}
	}
	return b.String()
}

// readError records an error of the first phase: the JSON does not read
// as R4.
func (w *walker) readError(code, diagnostics string) {
	w.invalid = append(w.invalid, Issue{Severity: "error", Code: code, Diagnostics: diagnostics, Expression: []string{w.expression()}})
}

// validationError records an error of the validation pass.
func (w *walker) validationError(code, diagnostics string) {
	if w.checking() {
		w.unprocessable = append(w.unprocessable, Issue{Severity: "error", Code: code, Diagnostics: diagnostics, Expression: []string{w.expression()}})
	}
}

// lookup finds the field a JSON key names, as google/fhir does: its first
// letter (after a leading _) may be upper case. It returns the index of its
// fieldKey in t.keys.
func (t *btype) lookup(k string) (uint32, bool) {
	if i, ok := t.table.get(k); ok {
		return i, true
	}
	i := 0
	if strings.HasPrefix(k, "_") {
		i = 1
	}
	if i < len(k) && k[i] >= 'A' && k[i] <= 'Z' {
		var buf [64]byte
		if len(k) <= len(buf) {
			b := append(buf[:0], k...)
			b[i] += 'a' - 'A'
			fk, ok := t.table.get(string(b))
			return fk, ok
		}
		fk, ok := t.table.get(k[:i] + strings.ToLower(k[i:i+1]) + k[i+1:])
		return fk, ok
	}
	return 0, false
}

// object walks the JSON objects that make up one message of type t
// (usually one; more when case variants of a key name the same repeated
// field and their elements merge). dots is the depth google/fhir counts.
func (w *walker) object(t *btype, obj jval, more []jval, dots int, resource bool) {
	if dots > maxNestingDepth {
		w.readError("value", "element exceeds the maximum nesting depth of "+strconv.Itoa(maxNestingDepth))
		return
	}
	norm := w.refNorm
	w.refNorm = false
	base := len(w.members)
	w.collect(t, obj, resource)
	for _, m := range more {
		w.collect(t, m, resource)
	}
	var present uint64
	var buf [4]item
	for i := base; i < len(w.members); i++ {
		if w.members[i].done {
			continue
		}
		f := t.keys[w.members[i].key].f
		group := append(buf[:0], w.item(t, w.members[i]))
		for j := i + 1; j < len(w.members); j++ {
			if t.keys[w.members[j].key].f == f {
				group = append(group, w.item(t, w.members[j]))
				w.members[j].done = true
			}
		}
		quiet := norm && f == t.refURI
		if quiet {
			w.quiet++
		}
		if w.field(group, dots+1) && f.reqBit >= 0 {
			present |= 1 << f.reqBit
		}
		if quiet {
			w.quiet--
		}
	}
	w.members = w.members[:base]
	for _, f := range t.required {
		if present&(1<<f.reqBit) == 0 && !f.scalar {
			w.pushName(f.name)
			w.validationError("required", "missing required element "+strconv.Quote(f.name))
			w.pop()
		}
	}
}

func (w *walker) collect(t *btype, obj jval, resource bool) {
	for i := obj.a; i < obj.b; i++ {
		kv := w.d.pairs[i].key
		k := w.d.text(kv)
		if resource && k == "resourceType" {
			continue
		}
		fk, ok := t.lookup(k)
		if !ok {
			w.path = append(w.path, pathSeg{key: kv, idx: -1, raw: true})
			w.readError("structure", "unknown element "+strconv.Quote(k))
			w.pop()
			continue
		}
		w.members = append(w.members, member{pair: i, key: fk})
	}
}

// field reads the values the keys of one field carry (a value and its
// _extension, or case variants) and reports whether the field is present
// as google/fhir's validation pass sees it.
func (w *walker) field(group []item, dots int) bool {
	first := group[0]
	f := first.fk.f
	w.push(first.key)
	defer w.pop()
	ft := f
	if f.choice {
		ft = first.fk.alt
		for _, it := range group[1:] {
			if it.fk.alt != ft {
				w.choices(group, dots)
				return true
			}
		}
	}
	if dots > maxNestingDepth {
		w.readError("value", "element exceeds the maximum nesting depth of "+strconv.Itoa(maxNestingDepth))
		return false
	}
	if f.scalar {
		w.readError("value", "invalid element")
		return true
	}
	if ft.repeated {
		return w.repeated(ft, group, dots)
	}
	w.single(ft, group, dots)
	return true
}

// choices reports a choice element given as more than one type, and reads
// each: google/fhir reads whichever it meets first.
func (w *walker) choices(group []item, dots int) {
	w.pop()
	w.readError("value", "more than one type given for the choice element "+strconv.Quote(group[0].fk.f.name))
	done := make([]bool, len(group))
	for i, it := range group {
		if done[i] {
			continue
		}
		var same []item
		for j := i; j < len(group); j++ {
			if group[j].fk.alt == it.fk.alt {
				same = append(same, group[j])
				done[j] = true
			}
		}
		w.push(it.key)
		if dots <= maxNestingDepth {
			w.single(it.fk.alt, same, dots)
		}
		w.pop()
	}
	w.push(group[0].key)
}

// single reads a field that holds one value.
func (w *walker) single(ft *bfield, group []item, dots int) {
	t := ft.typ
	if len(group) > 1 && t.kind != kPrimitive {
		w.readError("value", "element given more than once")
		return
	}
	if t.kind == kPrimitive {
		var value jval
		valued := false
		for i, it := range group {
			if i > 0 {
				w.path[len(w.path)-1].key = it.key
			}
			if v, ok := w.primitive(t, it.val, dots); ok {
				value, valued = v, true
			}
		}
		w.checkValue(t, value, valued)
		return
	}
	w.element(ft, t, group[0].key, group[0].val, dots)
}

// repeated reads a field that holds an array (and its _extension array, or
// case variants, merged element by element).
func (w *walker) repeated(ft *bfield, group []item, dots int) bool {
	var arrays [4][]jval
	lists := arrays[:0]
	for _, it := range group {
		if it.val.kind != jArray {
			w.path[len(w.path)-1].key = it.key
			w.readError("value", "expected an array")
			return true
		}
		lists = append(lists, w.d.elems(it.val))
	}
	n := len(lists[0])
	present := false
	for _, a := range lists {
		if len(a) != n {
			w.readError("value", "the arrays given for this element (its values and its _extensions, or case variants of its name) differ in length")
			return true
		}
		present = present || len(a) > 0
	}
	t := ft.typ
	for i := 0; i < n; i++ {
		w.pushIndex(i)
		if t.kind == kPrimitive {
			w.primitiveElement(t, group, lists, i, dots)
		} else if len(lists) == 1 {
			w.element(ft, t, group[0].key, lists[0][i], dots)
		} else {
			w.mergedElement(ft, t, group, lists, i, dots)
		}
		w.pop()
	}
	return present
}

// primitiveElement reads index i of the arrays of a primitive element.
func (w *walker) primitiveElement(t *btype, group []item, lists [][]jval, i, dots int) {
	var value jval
	valued := false
	keyAt := len(w.path) - 2
	for k, a := range lists {
		w.path[keyAt].key = group[k].key
		v := a[i]
		if v.kind == jNull && !w.google() && w.pairedValue(lists, k, i) {
			continue
		}
		if got, ok := w.primitive(t, v, dots); ok {
			value, valued = got, true
		}
	}
	w.path[keyAt].key = group[0].key
	w.checkValue(t, value, valued)
}

// pairedValue reports whether another of the arrays has a non-null value
// at index i.
func (w *walker) pairedValue(lists [][]jval, k, i int) bool {
	for j, a := range lists {
		if j != k && a[i].kind != jNull {
			return true
		}
	}
	return false
}

// mergedElement reads index i of several arrays of a complex element
// (case variants of its key): their objects merge into one.
func (w *walker) mergedElement(ft *bfield, t *btype, group []item, lists [][]jval, i, dots int) {
	objs := make([]jval, 0, len(lists))
	for _, a := range lists {
		if a[i].kind != jObject {
			w.readError("value", "expected a JSON object")
			return
		}
		objs = append(objs, a[i])
	}
	if t.kind != kComplex && t.kind != kReference {
		w.element(ft, t, group[0].key, objs[0], dots)
		return
	}
	w.object(t, objs[0], objs[1:], dots, false)
}

// element reads one value of a complex, reference or resource type.
func (w *walker) element(ft *bfield, t *btype, key jval, obj jval, dots int) {
	if obj.kind != jObject {
		w.readError("value", "expected a JSON object")
		return
	}
	switch t.kind {
	case kContained:
		w.resource(t, obj, dots)
	case kAny:
		if w.d.text(key) != "contained" {
			w.object(t, obj, nil, dots, false)
			return
		}
		if w.google() {
			w.quiet++
			defer func() { w.quiet-- }()
		}
		w.resource(t, obj, dots)
	case kReference:
		w.reference(ft, t, obj, dots)
	default:
		w.object(t, obj, nil, dots, false)
	}
}

// resource reads a contained resource or a Bundle entry's resource.
func (w *walker) resource(t *btype, obj jval, dots int) {
	rtv, ok := w.d.get(obj, "resourceType")
	if !ok {
		w.readError("value", `missing required element "resourceType"`)
		return
	}
	rt, ok := w.d.str(rtv), rtv.kind == jString
	typ := t.resources[rt]
	if typ == nil {
		w.pushName("resourceType")
		if ok {
			w.readError("value", "unknown resource type")
		} else {
			w.readError("value", "invalid resource type")
		}
		w.pop()
		return
	}
	w.object(typ, obj, nil, dots+1, true)
}

// reference walks a Reference and normalises it as google/fhir does:
// "#id" becomes a fragment, "Type/id" and "Type/id/_history/v" a typed id
// (dropping the reference string and its extensions, which its validation
// pass then never sees, and checking the version as an id); the type must
// be one the element allows.
func (w *walker) reference(ft *bfield, t *btype, obj jval, dots int) {
	var set *bfield
	var setKey, setVal jval
	single := true
	for _, p := range w.d.members(obj) {
		k := w.d.key(p)
		i, ok := t.lookup(k)
		if !ok {
			continue
		}
		fk := t.keys[i]
		if !fk.f.refOneof {
			continue
		}
		if set != nil && set != fk.f {
			single = false // google/fhir keeps whichever it read last
		}
		if set = fk.f; !fk.ext {
			setKey, setVal = p.key, p.v
		}
	}
	refType, fragment, history, relative := "", "", "", false
	if set != nil && single {
		refType = set.refOneofType
		if set == t.refURI {
			s := w.d.str(setVal)
			if strings.HasPrefix(s, "#") {
				fragment, w.refNorm = s[1:], true
			} else if typ, hist, ok := relativeType(s); ok && w.t.refKind(typ) != 0 {
				refType, history, relative, w.refNorm = typ, hist, true, true
			}
		}
	}
	w.object(t, obj, nil, dots, false)
	if relative && w.t.refKind(refType) == refSTU3Only {
		w.push(setKey)
		w.readError("value", "invalid reference: "+strconv.Quote(refType)+" is not an R4 resource type")
		w.pop()
		return
	}
	if fragment != "" || history != "" { // history is "/" and the version
		w.push(setKey)
		if !validChars(fragment) {
			w.validationError("invalid", "string contains invalid characters")
		}
		if history != "" && !validID(history[1:]) {
			w.validationError("invalid", "invalid id format")
		}
		w.pop()
	}
	if refType == "" || ft.refTypes == nil || slices.Contains(ft.refTypes, refType) {
		return
	}
	w.validationError("value", "invalid reference to a "+refType+" resource, want "+strings.Join(ft.refTypes, ", "))
}

// relativeType returns the type of a relative reference Type/id or
// Type/id/_history/version, and "/version" for the latter.
func relativeType(s string) (typ, history string, ok bool) {
	typ, rest, ok := strings.Cut(s, "/")
	if !ok {
		return "", "", false
	}
	_, rest, more := strings.Cut(rest, "/")
	if !more {
		return typ, "", true
	}
	h, version, ok := strings.Cut(rest, "/")
	if !ok || h != "_history" || strings.Contains(version, "/") {
		return "", "", false
	}
	return typ, "/" + version, true
}

// primitive reads one JSON value of a primitive type and returns its value
// (false when it has none: an object of id and extensions, or an error).
func (w *walker) primitive(t *btype, v jval, dots int) (jval, bool) {
	switch v.kind {
	case jObject:
		w.object(t, v, nil, dots, false)
		if t.noExtension {
			// google/fhir fails to mark it as having no value.
			w.readError("value", "expected "+primName(t.prim))
		}
		return jval{}, false
	case jArray:
		w.readError("value", "expected a primitive value, not an array")
		return jval{}, false
	case jNull:
		w.readError("value", "expected "+primName(t.prim)+", not null")
		return jval{}, false
	}
	if msg := w.readPrimitive(t, v); msg != "" {
		w.readError("value", msg)
		return jval{}, false
	}
	return v, true
}

func primName(p primKind) string {
	switch p {
	case pBase64:
		return "base64Binary"
	case pBoolean:
		return "a boolean"
	case pCode, pEnum, pCodeText:
		return "a code"
	case pDate:
		return "a date"
	case pDateTime:
		return "a dateTime"
	case pDecimal:
		return "a decimal"
	case pID:
		return "an id"
	case pInstant:
		return "an instant"
	case pInteger:
		return "an integer"
	case pOid:
		return "an oid"
	case pPositiveInt:
		return "a positiveInt"
	case pTime:
		return "a time"
	case pUnsignedInt:
		return "an unsignedInt"
	case pURI:
		return "a uri"
	case pUUID:
		return "a uuid"
	case pRefID:
		return "a reference"
	}
	return "a string"
}

// readPrimitive checks a JSON string, number or boolean as google/fhir's
// parsePrimitiveType does, and returns what is wrong ("" for nothing).
func (w *walker) readPrimitive(t *btype, v jval) string {
	s, isString := w.d.str(v), v.kind == jString
	if isString && w.badUTF8 && strings.ContainsRune(s, utf8.RuneError) {
		return "expected UTF-8 encoding"
	}
	switch t.prim {
	case pBoolean:
		if v.kind == jTrue || v.kind == jFalse {
			return ""
		}
		return "expected a boolean"
	case pDecimal:
		if v.kind == jNumber {
			return ""
		}
		return "expected a decimal"
	case pInteger:
		if n, ok := string(w.d.num(v)), v.kind == jNumber; ok && !strings.ContainsAny(n, ".eE") {
			if _, err := strconv.ParseInt(string(n), 10, 32); err == nil {
				return ""
			}
		}
		return "expected an integer"
	case pPositiveInt, pUnsignedInt:
		n, ok := string(w.d.num(v)), v.kind == jNumber
		if !ok || !unsignedDigits(n, t.prim == pPositiveInt) {
			return "expected " + primName(t.prim)
		}
		if _, err := strconv.ParseUint(string(n), 10, 32); err != nil {
			return primName(t.prim) + " out of range"
		}
		return ""
	case pRefID:
		return "a typed reference id is not a JSON primitive"
	}
	if !isString {
		return "expected " + primName(t.prim)
	}
	switch t.prim {
	case pBase64:
		if !validBase64(s) {
			return "expected base64Binary"
		}
	case pEnum:
		if s == "" && w.google() {
			return "" // google/fhir takes "" for the zero value, which has no code
		}
		if !t.enumCode(s) {
			return "code is not in the required value set"
		}
	case pDate:
		if !validDate(s) {
			return "expected a date"
		}
	case pDateTime:
		if !validDateTime(s) {
			return "expected a dateTime"
		}
	case pInstant:
		if !validInstant(s) {
			return "expected an instant"
		}
	case pTime:
		if !validTime(s) {
			return "expected a time"
		}
	}
	return ""
}

// unsignedDigits matches google/fhir's patterns for positiveInt
// ([1-9][0-9]*) and unsignedInt (0|[1-9][0-9]*) on the JSON number.
func unsignedDigits(s string, positive bool) bool {
	if s == "" || s[0] == '0' && (positive || len(s) > 1) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// enumCode reports whether s is one of a bound code type's codes, as
// google/fhir's UnmarshalCode reads it: case-insensitively, '-' for '_', or
// the original code.
func (t *btype) enumCode(s string) bool {
	var buf [64]byte
	if len(s) <= len(buf) {
		b := buf[:len(s)]
		ascii := true
		for i := 0; i < len(s); i++ {
			c := s[i]
			switch {
			case c >= 0x80:
				ascii = false
			case c >= 'a' && c <= 'z':
				c -= 'a' - 'A'
			case c == '-':
				c = '_'
			}
			b[i] = c
		}
		if ascii {
			return t.enumNames[string(b)] || t.enumCodes[s]
		}
	}
	return t.enumNames[strings.ReplaceAll(strings.ToUpper(s), "-", "_")] || t.enumCodes[s]
}

// checkValue runs google/fhir's validation pass on a primitive's value.
// valued is false for a primitive given only as extensions.
func (w *walker) checkValue(t *btype, v jval, valued bool) {
	if !w.checking() {
		return
	}
	if t.valueRequired {
		if w.d.str(v) == "" {
			w.validationError("required", "missing required value")
			return
		}
	}
	if !valued {
		if !w.google() {
			return
		}
		// google/fhir checks the empty value of a primitive without one.
		switch t.prim {
		case pString, pURI:
			v = jval{kind: jString}
		case pCode, pID, pOid, pUUID:
			w.validationError("invalid", "invalid "+primName(t.prim)+" format")
			return
		default:
			return
		}
	}
	switch t.prim {
	case pString:
		s := w.d.str(v)
		if len(s) > maxStringSize {
			w.validationError("invalid", "string exceeds the maximum size of 1 MiB")
		} else if !validChars(s) {
			w.validationError("invalid", "string contains invalid characters")
		}
	case pCode:
		if s := w.d.str(v); !validCode(s) {
			w.validationError("invalid", "invalid code format")
		}
	case pID:
		if s := w.d.str(v); !validID(s) {
			w.validationError("invalid", "invalid id format")
		}
	case pOid:
		if s := w.d.str(v); !w.t.oidRE.MatchString(s) {
			w.validationError("invalid", "invalid oid format")
		}
	case pUUID:
		if s := w.d.str(v); !w.t.uuidRE.MatchString(s) {
			w.validationError("invalid", "invalid uuid format")
		}
	case pURI:
		if s := w.d.str(v); !validURI(s) {
			w.validationError("invalid", "invalid uri")
		}
	case pPositiveInt, pUnsignedInt:
		if n := w.d.num(v); len(n) >= 10 {
			if u, err := strconv.ParseUint(string(n), 10, 32); err == nil && u > math.MaxInt32 {
				w.validationError("invalid", primName(t.prim)+" out of range (at most 2,147,483,647)")
			}
		}
	}
}

// validChars: no control characters other than tab, newline and carriage
// return.
func validChars(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 && c != '\t' && c != '\n' && c != '\r' {
			return false
		}
	}
	return true
}

// isSpace is \s of Go's regexp: [\t\n\f\r ].
func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\f' || c == '\r' }

// validCode matches R4's code pattern [^\s]+(\s[^\s]+)*.
func validCode(s string) bool {
	if s == "" || isSpace(s[0]) || isSpace(s[len(s)-1]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if isSpace(s[i]) && isSpace(s[i-1]) {
			return false
		}
	}
	return true
}

// validID matches R4's id pattern [A-Za-z0-9\-\.]{1,64}.
func validID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// validBase64 checks base64Binary as google/fhir does: optional runs of
// spaces at a regular stride, then standard base64 (which skips \r and \n).
func validBase64(s string) bool {
	var buf [256]byte
	var p []byte
	if len(s) <= len(buf) {
		p = append(buf[:0], s...)
	} else {
		p = []byte(s)
	}
	n, ok := filterBase64Spaces(p)
	if !ok {
		return false
	}
	_, err := base64.StdEncoding.Decode(p, p[:n])
	return err == nil
}

// filterBase64Spaces removes the runs of spaces from p in place, requiring
// the chunks between them to have one length and the runs one length, as
// google/fhir's reader does, and returns the remaining length.
func filterBase64Spaces(p []byte) (int, bool) {
	nn, stride, sep, chunkStart := 0, 0, 0, 0
	for i := 0; i < len(p); i++ {
		if p[i] != ' ' {
			p[nn] = p[i]
			nn++
			continue
		}
		if cur := i - chunkStart; stride == 0 {
			stride = cur
		} else if cur != stride {
			return 0, false
		}
		chunkStart = i
		for i < len(p) && p[i] == ' ' {
			i++
		}
		if cur := i - chunkStart; sep == 0 {
			sep = cur
		} else if cur != sep {
			return 0, false
		}
		chunkStart = i
		i--
	}
	return nn, true
}
