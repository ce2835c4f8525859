package fhir

import "testing"

// TestKeyTable checks that every type's keyTable finds what its fields map
// holds, and nothing else.
func TestKeyTable(t *testing.T) {
	tb, err := loadBaseTable()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[*btype]bool{}
	var check func(*btype)
	check = func(b *btype) {
		if b == nil || seen[b] {
			return
		}
		seen[b] = true
		for name, want := range b.fields {
			if got, ok := b.table.get(name); !ok || got != want {
				t.Errorf("%s: table.get(%q) = %d, %v; want %d", b.name, name, got, ok, want)
			}
			for _, other := range []string{name + "x", name[:len(name)-1], "x" + name} {
				want, wantOK := b.fields[other]
				if got, ok := b.table.get(other); ok != wantOK || got != want {
					t.Errorf("%s: table.get(%q) = %d, %v; want %d, %v", b.name, other, got, ok, want, wantOK)
				}
			}
		}
		if _, ok := b.table.get(""); ok {
			t.Errorf("%s: table.get(\"\") found a key", b.name)
		}
		for _, fk := range b.keys {
			check(fk.f.typ)
			if fk.alt != nil {
				check(fk.alt.typ)
			}
		}
		for _, r := range b.resources {
			check(r)
		}
	}
	for _, r := range tb.resources {
		check(r)
	}
	if len(seen) < 1000 {
		t.Errorf("checked %d types, want the table's every type", len(seen))
	}
}
