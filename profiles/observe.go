package profiles

import (
	"fmt"
	"maps"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
)

// A profile's JSON Schema looks at some of a resource's top-level members
// only: those its root names in properties, required and
// patternProperties. A resource from a source is therefore validated
// against the base with fhir.(*Codec).ValidateSome, which builds nothing
// for the other members (see run). observe works out, from the generated
// schema, which members that is; a schema whose root could see any other
// member (additionalProperties, minProperties, const on the whole
// resource, a keyword observe does not know...) needs them all.

// observed is what one or more profiles can see of a resource's top-level
// members.
type observed struct {
	all      bool            // every member
	names    map[string]bool // members by name
	patterns []*regexp.Regexp
	// known holds names (true), and caches the verdicts of patterns by
	// member name, up to maxMatched names more (the names of valid
	// resources are R4's, a bounded set; a hostile source's are not).
	// The map is never changed once published: a new name is added to a
	// copy (under mu), so that the one lookup, made for every member of
	// every resource a source returns, is a plain map read.
	known atomic.Pointer[map[string]bool]
	mu    sync.Mutex
}

// maxMatched bounds the pattern verdicts observed.known caches.
const maxMatched = 1024

// keeps reports whether the profiles can see the member key.
func (o *observed) keeps(key string) bool {
	if o.all {
		return true
	}
	if known := o.known.Load(); known != nil {
		if m, ok := (*known)[key]; ok {
			return m
		}
	}
	if len(o.patterns) == 0 {
		return false
	}
	m := false
	for _, re := range o.patterns {
		if re.MatchString(key) {
			m = true
			break
		}
	}
	o.remember(key, m)
	return m
}

// remember adds the verdict m for key to known, while it holds fewer than
// maxMatched verdicts.
func (o *observed) remember(key string, m bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var old map[string]bool
	if p := o.known.Load(); p != nil {
		old = *p
	}
	if len(old) >= len(o.names)+maxMatched {
		return
	}
	next := make(map[string]bool, len(old)+1)
	maps.Copy(next, old)
	next[key] = m
	o.known.Store(&next)
}

// add merges what another schema observes.
func (o *observed) add(names map[string]bool, patterns []string, all bool) error {
	if all {
		o.all = true
	}
	if o.names == nil {
		o.names = map[string]bool{}
	}
	for n := range names {
		o.names[n] = true
	}
	known := maps.Clone(o.names) // verdicts cached before are dropped
	o.known.Store(&known)
	for _, p := range patterns {
		re, err := regexp.Compile(p)
		if err != nil {
			return fmt.Errorf("patternProperties %q: %w", p, err)
		}
		o.patterns = append(o.patterns, re)
	}
	return nil
}

// ignoredKeywords cannot make an object's validity depend on its members:
// identifiers, annotations, and the keywords of other instance types
// (strings, numbers, arrays), which an object passes. The root of a
// resource's schema is always applied to an object.
var ignoredKeywords = map[string]bool{
	"$schema": true, "$comment": true, "$defs": true, "$anchor": true,
	"title": true, "description": true, "default": true, "examples": true,
	"deprecated": true, "readOnly": true, "writeOnly": true,
	"type":    true, // the root is an object, whatever its members
	"pattern": true, "minLength": true, "maxLength": true,
	"minimum": true, "maximum": true, "exclusiveMinimum": true, "exclusiveMaximum": true, "multipleOf": true,
	"items": true, "prefixItems": true, "contains": true, "minContains": true, "maxContains": true,
	"minItems": true, "maxItems": true, "uniqueItems": true, "unevaluatedItems": true, "additionalItems": true,
}

// observe returns the top-level members the schema root (generated, not
// yet compiled) can see: names and patterns of names, or all when it could
// see any member. schemas are all our generated schemas by URL, for a $ref
// to another profile.
func observe(root map[string]any, schemas map[string]map[string]any) (names map[string]bool, patterns []string, all bool) {
	o := &observer{schemas: schemas, names: map[string]bool{}, seen: map[string]bool{}}
	if !o.visit(root, root, true) {
		return nil, nil, true
	}
	return o.names, o.patterns, false
}

type observer struct {
	schemas  map[string]map[string]any
	names    map[string]bool
	patterns []string
	seen     map[string]bool // $refs followed
}

// visit adds what schema s, applied to the resource, can see; doc is the
// schema document s belongs to (for $refs into its $defs), atRoot whether
// s is that document's root. It reports false when s could see any member.
func (o *observer) visit(s any, doc map[string]any, atRoot bool) bool {
	switch x := s.(type) {
	case bool:
		return true // true or false whatever the members
	case map[string]any:
		for k, val := range x {
			if ignoredKeywords[k] {
				continue
			}
			switch k {
			case "$id":
				if !atRoot { // a new base for $refs within
					return false
				}
			case "properties":
				m, ok := val.(map[string]any)
				if !ok {
					return false
				}
				for name := range m {
					o.names[name] = true
				}
			case "patternProperties":
				m, ok := val.(map[string]any)
				if !ok {
					return false
				}
				for p := range m {
					o.patterns = append(o.patterns, p)
				}
			case "required":
				if !o.strings(val) {
					return false
				}
			case "dependentRequired":
				m, ok := val.(map[string]any)
				if !ok {
					return false
				}
				for name, req := range m {
					o.names[name] = true
					if !o.strings(req) {
						return false
					}
				}
			case "allOf", "anyOf", "oneOf":
				list, ok := val.([]any)
				if !ok {
					return false
				}
				for _, sub := range list {
					if !o.visit(sub, doc, false) {
						return false
					}
				}
			case "not", "if", "then", "else":
				if !o.visit(val, doc, false) {
					return false
				}
			case "$ref":
				ref, ok := val.(string)
				if !ok {
					return false
				}
				if !o.ref(ref, doc) {
					return false
				}
			default:
				// additionalProperties, unevaluatedProperties,
				// propertyNames, minProperties, maxProperties,
				// dependentSchemas, const, enum, format (a format
				// may look at objects), $dynamicRef and anything
				// else.
				return false
			}
		}
		return true
	}
	return false
}

// strings adds a list of member names.
func (o *observer) strings(v any) bool {
	list, ok := v.([]any)
	if !ok {
		return false
	}
	for _, n := range list {
		name, ok := n.(string)
		if !ok {
			return false
		}
		o.names[name] = true
	}
	return true
}

// ref follows a $ref: to the document's root ("#"), into its $defs
// ("#/$defs/name"), or to another of our profiles (its URL, optionally
// with either fragment). Anything else could be anything.
func (o *observer) ref(ref string, doc map[string]any) bool {
	base, frag, _ := strings.Cut(ref, "#")
	if base != "" {
		if doc = o.schemas[base]; doc == nil {
			return false
		}
	}
	id, _ := doc["$id"].(string)
	key := id + "#" + frag
	if o.seen[key] {
		return true
	}
	o.seen[key] = true
	if frag == "" || frag == "/" {
		return o.visit(doc, doc, true)
	}
	name, ok := strings.CutPrefix(frag, "/$defs/")
	if !ok || strings.Contains(name, "/") {
		return false
	}
	defs, _ := doc["$defs"].(map[string]any)
	sub, ok := defs[untoken(name)]
	if !ok {
		return false
	}
	return o.visit(sub, doc, false)
}
