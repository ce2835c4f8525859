package fhir

import "math/bits"

// keyTable finds a type's fieldKey by JSON name faster than a Go map: an
// open-addressing table, at most half full, hashed on the name's length
// and three of its bytes (which tell a type's names apart well enough for
// short probes), so that a lookup hashes no whole string.
type keyTable struct {
	slots []keySlot
	shift uint8 // 32 minus log2(len(slots))
}

// keySlot is one entry of a keyTable; an empty name is a free slot.
type keySlot struct {
	name string
	idx  uint32 // index in the type's keys
}

// newKeyTable builds the table of names (name → index in keys).
func newKeyTable(names map[string]uint32) keyTable {
	n := 8
	for n < 2*len(names) {
		n *= 2
	}
	t := keyTable{slots: make([]keySlot, n), shift: uint8(32 - bits.TrailingZeros(uint(n)))}
	for name, idx := range names {
		i := t.slot(name)
		for t.slots[i].name != "" {
			i = (i + 1) & uint32(n-1)
		}
		t.slots[i] = keySlot{name, idx}
	}
	return t
}

// slot returns the first slot to probe for name, which is not "".
func (t *keyTable) slot(name string) uint32 {
	n := len(name)
	x := uint32(n) | uint32(name[0])<<8 | uint32(name[n/2])<<16 | uint32(name[n-1])<<24
	return (x * 0x9E3779B1) >> t.shift
}

// get returns the index in keys of name.
func (t *keyTable) get(name string) (uint32, bool) {
	if name == "" {
		return 0, false
	}
	mask := uint32(len(t.slots) - 1)
	for i := t.slot(name); ; i = (i + 1) & mask {
		s := &t.slots[i]
		if s.name == name {
			return s.idx, true
		}
		if s.name == "" {
			return 0, false
		}
	}
}
