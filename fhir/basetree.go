package fhir

// Node is one value of a resource's decoded JSON, as ValidateSome hands
// the resource to its visit function once it passed: what encoding/json
// makes of the JSON (a key given twice has its last value, strings are
// unescaped), read in place in the base validator's tree, so that a caller
// that reads all of it (the profiles' invariants) neither decodes nor
// scans the JSON again. The tree is reused after visit returns: a Node
// must not be kept.
type Node struct {
	d *jsonDecoder
	v jval
}

// IsObject reports whether n is an object.
func (n Node) IsObject() bool { return n.v.kind == jObject }

// IsArray reports whether n is an array.
func (n Node) IsArray() bool { return n.v.kind == jArray }

// IsNull reports whether n is null.
func (n Node) IsNull() bool { return n.v.kind == jNull }

// Str returns the value of a string, and false for any other value.
func (n Node) Str() (string, bool) {
	if n.v.kind != jString {
		return "", false
	}
	return n.d.text(n.v), true
}

// Len returns the number of members of an object or of elements of an
// array; 0 for any other value.
func (n Node) Len() int {
	switch n.v.kind {
	case jObject, jArray:
		return int(n.v.b - n.v.a)
	}
	return 0
}

// Member returns the key and value of member i of an object.
func (n Node) Member(i int) (string, Node) {
	p := n.d.members(n.v)[i]
	return n.d.key(p), Node{n.d, p.v}
}

// Elem returns element i of an array.
func (n Node) Elem(i int) Node { return Node{n.d, n.d.elems(n.v)[i]} }

// Get returns the value of member k of an object, and false when it has
// none (or n is no object).
func (n Node) Get(k string) (Node, bool) {
	if n.v.kind != jObject {
		return Node{}, false
	}
	v, ok := n.d.get(n.v, k)
	return Node{n.d, v}, ok
}
