package profiles

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/schakelpunt/schakelpunt/fhir"
	"github.com/schakelpunt/schakelpunt/fhir/jsonscan"
)

// invariants runs the checks a JSON Schema cannot express over a whole
// resource, contained and Bundle-entry resources included:
//
//   - sp-bsn-1: an identifier with the BSN system passes the eleven-check;
//   - sp-ura-1: an identifier with the URA system is eight digits;
//   - per-1 (R4): a Period's start is not after its end;
//   - ppc-1 (R4): a Consent has a policy or a policyRule. The Consent shape of
//     DESIGN.md section 9 has neither, so this one is a warning.
//
// Diagnostics never quote the value at fault.
//
// It reads the resource's JSON, raw, which must be one valid JSON object
// (with the codec's parsers a body they accepted; decodeResource's span
// otherwise), and sees what a decoder would: the last value of a repeated
// key, strings unescaped, invalid UTF-8 as U+FFFD. Nothing is decoded but
// the few strings the checks compare, and nothing is allocated unless
// there are issues.
func invariants(raw []byte, root string) []fhir.Issue {
	w := checkers.Get().(*checker)
	w.root = root
	if i := jsonscan.SkipSpace(raw, 0); i < len(raw) && raw[i] == '{' {
		w.object(raw, i)
	}
	issues := w.issues
	w.issues, w.segs, w.members = nil, w.segs[:0], w.members[:0]
	checkers.Put(w)
	return issues
}

var checkers = sync.Pool{New: func() any { return new(checker) }}

// checker walks a resource's JSON for invariants.
type checker struct {
	root    string
	segs    []seg    // the path to the value being walked
	members []member // the members with issues of the objects being walked, innermost last
	issues  []fhir.Issue
}

// seg is a step of the path in the JSON: a member name (idx < 0), or an
// array index.
type seg = pathSeg[[]byte]

// pathSeg is a step of the path to the value being walked: a member name
// (idx < 0), or an array index; K is how the walker holds names.
type pathSeg[K string | []byte] struct {
	key K
	idx int
}

// invariantIssue is an invariant's issue at root, then the path segs,
// then extra.
func invariantIssue[K string | []byte](root string, segs []pathSeg[K], severity, diagnostics string, extra ...string) fhir.Issue {
	p := make([]string, 0, len(segs)+len(extra))
	for _, s := range segs {
		if s.idx >= 0 {
			p = append(p, strconv.Itoa(s.idx))
		} else {
			p = append(p, string(s.key))
		}
	}
	return fhir.Issue{Severity: severity, Code: "invariant", Diagnostics: diagnostics,
		Expression: []string{segmentsPath(root, append(p, extra...))}}
}

// watched are the members of an object that its checks look at, as a
// walker holds values (JSON text or decoded tree); a member absent is V's
// zero value.
type watched[V any] struct {
	value, system, resourceType, policy, policyRule V
}

// watch keeps v in m when key names a watched member; the last of a
// repeated key wins, as a decoder keeps it.
func watch[K string | []byte, V any](m *watched[V], key K, v V) {
	switch string(key) {
	case "value":
		m.value = v
	case "system":
		m.system = v
	case "resourceType":
		m.resourceType = v
	case "policy":
		m.policy = v
	case "policyRule":
		m.policyRule = v
	}
}

// member is a member of an object being walked whose value has issues,
// w.issues[from:to]; the object's next member starts at raw[next].
type member struct {
	key            []byte
	from, to, next int
}

func (w *checker) add(severity, diagnostics string, segs ...string) {
	w.issues = append(w.issues, invariantIssue(w.root, w.segs, severity, diagnostics, segs...))
}

// value walks the JSON value at raw[i] (not a space) and returns where it
// ends. The checks look at objects only: strings, numbers and literals are
// skipped.
func (w *checker) value(raw []byte, i int) int {
	if i >= len(raw) {
		return len(raw)
	}
	switch raw[i] {
	case '{':
		return w.object(raw, i)
	case '[':
		return w.array(raw, i)
	}
	return jsonscan.Value(raw, i)
}

// child walks the value at raw[i] of a member or element (at step s of
// the path) and returns where it ends.
func (w *checker) child(raw []byte, i int, s seg) int {
	w.segs = append(w.segs, s)
	i = w.value(raw, i)
	w.segs = w.segs[:len(w.segs)-1]
	return i
}

// object walks the object at raw[i] and returns where it ends.
func (w *checker) object(raw []byte, i int) int {
	base, issuesBase := len(w.members), len(w.issues)
	// The last value of each member the object checks look at (nil if
	// absent): a decoder keeps the last value of a repeated key.
	var m watched[[]byte]
	i = jsonscan.SkipSpace(raw, i+1)
	for i < len(raw) && raw[i] != '}' {
		if raw[i] == ',' {
			i = jsonscan.SkipSpace(raw, i+1)
			continue
		}
		if raw[i] != '"' {
			return len(raw) // not JSON: stop
		}
		end, plain := jsonscan.Key(raw, i)
		var key []byte
		if plain && end-i >= 2 {
			key = raw[i+1 : end-1]
		} else {
			key = stringValue(raw[i:end])
		}
		i = jsonscan.SkipSpace(raw, end)
		if i < len(raw) && raw[i] == ':' {
			i = jsonscan.SkipSpace(raw, i+1)
		}
		from := len(w.issues)
		start := i
		i = w.child(raw, i, seg{key: key, idx: -1})
		if i <= start { // not JSON: stop
			return len(raw)
		}
		val := raw[start:i]
		w.periods(key, val)
		if len(w.issues) > from {
			w.members = append(w.members, member{key: key, from: from, to: len(w.issues), next: i})
		}
		watch(&m, key, val)
		i = jsonscan.SkipSpace(raw, i)
	}
	if len(w.members) > base {
		w.dropRepeated(raw, base, issuesBase)
	}
	w.members = w.members[:base]

	if m.value != nil && m.value[0] == '"' {
		if broken := identifierRule(string(stringValue(m.system)), string(stringValue(m.value))); broken != "" {
			w.add("error", broken, "value")
		}
	}
	if string(stringValue(m.resourceType)) == "Consent" && isNull(m.policy) && isNull(m.policyRule) {
		w.add("warning", ruleConsentPolicy)
	}
	if i < len(raw) {
		i++ // the '}'
	}
	return i
}

// dropRepeated drops the issues found in the value of a member whose key
// occurs again later in the object (a decoder keeps only the last value).
// w.members[base:] are the object's members with issues; issues are rare,
// repeated keys rarer: only after those members are keys compared.
func (w *checker) dropRepeated(raw []byte, base, issuesBase int) {
	ms := w.members[base:]
	var drop []int // indexes into ms, ascending
	for j, m := range ms {
		if repeated(raw, m.next, m.key) {
			drop = append(drop, j)
		}
	}
	if len(drop) == 0 {
		return
	}
	kept := w.issues[:issuesBase]
	at := issuesBase
	for _, j := range drop {
		kept = append(kept, w.issues[at:ms[j].from]...)
		at = ms[j].to
	}
	w.issues = append(kept, w.issues[at:]...)
}

// repeated reports whether a member named key follows raw[i] in its
// object.
func repeated(raw []byte, i int, key []byte) bool {
	i = jsonscan.SkipSpace(raw, i)
	for i < len(raw) && raw[i] != '}' {
		if raw[i] == ',' {
			i = jsonscan.SkipSpace(raw, i+1)
			continue
		}
		if raw[i] != '"' {
			return false
		}
		end := jsonscan.String(raw, i)
		if bytes.Equal(stringValue(raw[i:end]), key) {
			return true
		}
		i = jsonscan.SkipSpace(raw, end)
		if i < len(raw) && raw[i] == ':' {
			i = jsonscan.SkipSpace(raw, i+1)
		}
		start := i
		if i = jsonscan.Value(raw, i); i <= start {
			return false
		}
		i = jsonscan.SkipSpace(raw, i)
	}
	return false
}

// array walks the array at raw[i] and returns where it ends.
func (w *checker) array(raw []byte, i int) int {
	i = jsonscan.SkipSpace(raw, i+1)
	for n := 0; i < len(raw) && raw[i] != ']'; {
		if raw[i] == ',' {
			i = jsonscan.SkipSpace(raw, i+1)
			continue
		}
		start := i
		i = w.child(raw, i, seg{idx: n})
		if i <= start { // not JSON: stop
			return len(raw)
		}
		n++
		i = jsonscan.SkipSpace(raw, i)
	}
	if i < len(raw) {
		i++ // the ']'
	}
	return i
}

// periods checks the Period (or Periods) val under the member key.
func (w *checker) periods(key, val []byte) {
	if string(key) != "period" && !bytes.HasSuffix(key, []byte("Period")) {
		return
	}
	switch val[0] {
	case '{':
		w.period(val, string(key))
	case '[':
		i := jsonscan.SkipSpace(val, 1)
		for n := 0; i < len(val) && val[i] != ']'; {
			if val[i] == ',' {
				i = jsonscan.SkipSpace(val, i+1)
				continue
			}
			start := i
			i = jsonscan.Value(val, i)
			if i <= start {
				return
			}
			if val[start] == '{' {
				w.period(val[start:i], string(key), strconv.Itoa(n))
			}
			n++
			i = jsonscan.SkipSpace(val, i)
		}
	}
}

// period reports a Period (the object p) whose start is certainly after its
// end: every instant its start may stand for lies at or after the end of
// the range its end stands for (per-1 compares at the lower precision).
func (w *checker) period(p []byte, segs ...string) {
	var start, end []byte
	i := jsonscan.SkipSpace(p, 1)
	for i < len(p) && p[i] != '}' {
		if p[i] == ',' {
			i = jsonscan.SkipSpace(p, i+1)
			continue
		}
		if p[i] != '"' {
			return
		}
		kend := jsonscan.String(p, i)
		key := stringValue(p[i:kend])
		i = jsonscan.SkipSpace(p, kend)
		if i < len(p) && p[i] == ':' {
			i = jsonscan.SkipSpace(p, i+1)
		}
		vstart := i
		if i = jsonscan.Value(p, i); i <= vstart {
			return
		}
		switch string(key) {
		case "start":
			start = p[vstart:i]
		case "end":
			end = p[vstart:i]
		}
		i = jsonscan.SkipSpace(p, i)
	}
	if start == nil || end == nil || start[0] != '"' || end[0] != '"' {
		return
	}
	if startsAfterEnd(string(stringValue(start)), string(stringValue(end))) {
		w.add("error", rulePeriod, append(segs, "start")...)
	}
}

// The invariants' diagnostics, and the rules both walkers (checker on
// the JSON, treeChecker on the decoded tree) apply.
const (
	rulePeriod        = "per-1: the period's start is after its end"
	ruleConsentPolicy = "ppc-1: a Consent should name a policy or a policyRule (R4 invariant ppc-1)"
)

// identifierRule is the diagnostics of the invariant an identifier's
// value breaks under its system ("" when it breaks none).
func identifierRule(system, value string) string {
	switch {
	case system == fhir.SystemBSN && !fhir.ValidBSN(value):
		return "sp-bsn-1: the identifier's value is not a valid BSN (nine digits passing the eleven-check)"
	case system == fhir.SystemURA && !fhir.ValidURA(value):
		return "sp-ura-1: the identifier's value is not a valid URA (eight digits)"
	}
	return ""
}

// startsAfterEnd reports whether a Period's start is certainly after
// its end: at or after the end of the range its end stands for (per-1
// compares at the lower precision). Dates that do not parse break
// nothing here; base validation reports them.
func startsAfterEnd(start, end string) bool {
	s, ok1 := fhir.ParseDateRange(start)
	e, ok2 := fhir.ParseDateRange(end)
	return ok1 && ok2 && s.Lo >= e.Hi
}

// isNull reports whether a member's value is absent or null (a decoder
// makes both nil).
func isNull(v []byte) bool {
	return v == nil || string(v) == "null"
}

// stringValue returns what a JSON string (with its quotes) decodes to, as
// encoding/json decodes it; nil for a value that is not a string. Only a
// string with escapes or invalid UTF-8 is decoded (and allocated): others
// are their own bytes.
func stringValue(v []byte) []byte {
	if len(v) < 2 || v[0] != '"' {
		return nil
	}
	in := v[1 : len(v)-1]
	if bytes.IndexByte(in, '\\') < 0 && utf8.Valid(in) {
		return in
	}
	var s string
	if json.Unmarshal(v, &s) != nil {
		return nil
	}
	return []byte(s)
}

var treeCheckers = sync.Pool{New: func() any {
	w := new(treeChecker)
	w.visit, w.keep = w.visitResource, w.keepMember
	return w
}}

// getTreeChecker returns a treeChecker from the pool; release returns it.
func getTreeChecker() *treeChecker { return treeCheckers.Get().(*treeChecker) }

func (w *treeChecker) release() {
	clear(w.profiles) // the pool keeps no body alive
	w.root, w.issues, w.segs, w.visited, w.profiles = "", nil, w.segs[:0], false, w.profiles[:0]
	w.v, w.memo, w.key, w.keyed, w.hit, w.cached = nil, nil, w.key[:0], false, false, nil
	treeCheckers.Put(w)
}

// treeChecker is invariants over a resource that passed base validation,
// read in the base validator's decoded tree (fhir.Node, which ValidateSome
// hands to its visit) rather than in its JSON: the same checks over the
// same values, what a decoder sees, without scanning the JSON again.
type treeChecker struct {
	root   string
	segs   []treeSeg // the path to the value being walked
	issues []fhir.Issue
	// visit and keep are visitResource and keepMember, bound once
	// (passing them to ValidateSome then allocates nothing); visited
	// tells visit ran.
	visit   func(fhir.Node, []fhir.Member)
	keep    func(rt, key string) bool
	visited bool
	// profiles are the strings of the resource's meta.profile, as
	// metaProfiles reads them: run need not decode meta.
	profiles []string
	// v validates; memo is the answer's (nil for none), in which visit
	// looked the resource up (keyed) by key: hit when it holds its
	// schemas' issues, cached (memo.go).
	v      *Validator
	memo   *SourceMemo
	key    []byte
	keyed  bool
	hit    bool
	cached []fhir.Issue
}

// visitResource checks the invariants of a resource ValidateSome hands
// over, into w.issues (root, for their expressions, is its type), reads
// its meta.profile, and with a memo looks it up there by its members ms.
func (w *treeChecker) visitResource(resource fhir.Node, ms []fhir.Member) {
	rtNode, _ := resource.Get("resourceType")
	w.root, _ = rtNode.Str()
	w.object(resource)
	meta, _ := resource.Get("meta")
	list, _ := meta.Get("profile")
	if list.IsArray() {
		for i := range list.Len() {
			if s, ok := list.Elem(i).Str(); ok {
				w.profiles = append(w.profiles, s)
			}
		}
	}
	if w.memo != nil && w.root != "Bundle" {
		w.lookUp(ms)
	}
	w.visited = true
}

// treeSeg is a step of the path in the decoded tree.
type treeSeg = pathSeg[string]

func (w *treeChecker) add(severity, diagnostics string, segs ...string) {
	w.issues = append(w.issues, invariantIssue(w.root, w.segs, severity, diagnostics, segs...))
}

// child walks n, the value of a member or element at step s of the path.
// The checks look at objects only: strings, numbers and literals are
// skipped.
func (w *treeChecker) child(n fhir.Node, s treeSeg) {
	if !n.IsObject() && !n.IsArray() {
		return
	}
	w.segs = append(w.segs, s)
	if n.IsObject() {
		w.object(n)
	} else {
		for i := range n.Len() {
			w.child(n.Elem(i), treeSeg{idx: i})
		}
	}
	w.segs = w.segs[:len(w.segs)-1]
}

// object checks the object n and walks its members.
func (w *treeChecker) object(n fhir.Node) {
	var m watched[fhir.Node] // an absent member is the zero Node, null
	for i := range n.Len() {
		key, val := n.Member(i)
		watch(&m, key, val)
		w.periods(key, val)
		w.child(val, treeSeg{key: key, idx: -1})
	}
	if value, ok := m.value.Str(); ok {
		system, _ := m.system.Str()
		if broken := identifierRule(system, value); broken != "" {
			w.add("error", broken, "value")
		}
	}
	if rt, _ := m.resourceType.Str(); rt == "Consent" && m.policy.IsNull() && m.policyRule.IsNull() {
		w.add("warning", ruleConsentPolicy)
	}
}

// periods checks the Period (or Periods) val under the member key.
func (w *treeChecker) periods(key string, val fhir.Node) {
	if key != "period" && !strings.HasSuffix(key, "Period") {
		return
	}
	if val.IsObject() {
		w.period(val, key)
		return
	}
	if val.IsArray() {
		for i := range val.Len() {
			if p := val.Elem(i); p.IsObject() {
				w.period(p, key, strconv.Itoa(i))
			}
		}
	}
}

// period reports a Period p whose start is certainly after its end, as
// checker.period does.
func (w *treeChecker) period(p fhir.Node, segs ...string) {
	startNode, _ := p.Get("start")
	endNode, _ := p.Get("end")
	start, ok1 := startNode.Str()
	end, ok2 := endNode.Str()
	if ok1 && ok2 && startsAfterEnd(start, end) {
		w.add("error", rulePeriod, append(segs, "start")...)
	}
}
