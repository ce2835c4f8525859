package storetest

import (
	"context"
	"fmt"
	"testing"

	"github.com/schakelpunt/schakelpunt/store"
)

// step is one call of a CRUD scenario and its expected outcome.
type step struct {
	do      string // create, update, delete, read, vread
	typ     string // default Consent
	id      string
	body    string // create, update; default consentActive
	ifMatch int64  // update, delete
	version int64  // vread
	want    int64  // the version returned (also with ErrGone: the marker's)
	gone    bool   // the result is a deletion marker
	err     error  // the sentinel expected, nil for success
}

var crudScenarios = []struct {
	name  string
	steps []step
}{
	{"create, read and vread", []step{
		{do: "read", id: "c1", err: store.ErrNotFound},
		{do: "create", id: "c1", want: 1},
		{do: "read", id: "c1", want: 1},
		{do: "vread", id: "c1", version: 1, want: 1},
		{do: "vread", id: "c1", version: 2, err: store.ErrNotFound},
		{do: "vread", id: "c2", version: 1, err: store.ErrNotFound},
		{do: "read", id: "c2", err: store.ErrNotFound},
	}},
	{"create stamps id and meta over the client's", []step{
		{do: "create", id: "c1", body: consentWithMeta, want: 1},
		{do: "read", id: "c1", want: 1},
		{do: "update", id: "c1", body: consentWithMeta, want: 2},
		{do: "vread", id: "c1", version: 1, want: 1},
	}},
	{"create of a taken id", []step{
		{do: "create", id: "c1", want: 1},
		{do: "create", id: "c1", body: consentInactive, err: store.ErrExists},
		{do: "read", id: "c1", want: 1},
	}},
	{"ids are per type", []step{
		{do: "create", id: "x", want: 1},
		{do: "create", typ: "Patient", id: "x", body: patientMinimal, want: 1},
		{do: "update", typ: "Patient", id: "x", body: patientMinimal, want: 2},
		{do: "read", id: "x", want: 1},
		{do: "read", typ: "Patient", id: "x", want: 2},
	}},
	{"update increments the version", []step{
		{do: "create", id: "c1", want: 1},
		{do: "update", id: "c1", body: consentInactive, want: 2},
		{do: "update", id: "c1", want: 3},
		{do: "read", id: "c1", want: 3},
		{do: "vread", id: "c1", version: 1, want: 1},
		{do: "vread", id: "c1", version: 2, want: 2},
		{do: "vread", id: "c1", version: 3, want: 3},
	}},
	{"update creates", []step{
		{do: "update", id: "c1", want: 1},
		{do: "read", id: "c1", want: 1},
		{do: "create", id: "c1", err: store.ErrExists},
	}},
	{"if-match", []step{
		{do: "update", id: "c0", ifMatch: 1, err: store.ErrVersionConflict},
		{do: "read", id: "c0", err: store.ErrNotFound},
		{do: "create", id: "c1", want: 1},
		{do: "update", id: "c1", ifMatch: 2, err: store.ErrVersionConflict},
		{do: "update", id: "c1", ifMatch: 1, body: consentInactive, want: 2},
		{do: "update", id: "c1", ifMatch: 1, err: store.ErrVersionConflict},
		{do: "read", id: "c1", want: 2},
		{do: "delete", id: "c1", ifMatch: 1, err: store.ErrVersionConflict},
		{do: "read", id: "c1", want: 2},
		{do: "delete", id: "c1", ifMatch: 2, want: 3, gone: true},
		{do: "update", id: "c1", ifMatch: 3, want: 4},
	}},
	{"delete", []step{
		{do: "create", id: "c1", want: 1},
		{do: "update", id: "c1", body: consentInactive, want: 2},
		{do: "delete", id: "c1", want: 3, gone: true},
		{do: "read", id: "c1", want: 3, err: store.ErrGone},
		{do: "vread", id: "c1", version: 1, want: 1},
		{do: "vread", id: "c1", version: 2, want: 2},
		{do: "vread", id: "c1", version: 3, want: 3, err: store.ErrGone},
		{do: "vread", id: "c1", version: 4, err: store.ErrNotFound},
	}},
	{"delete twice returns the marker", []step{
		{do: "create", id: "c1", want: 1},
		{do: "delete", id: "c1", want: 2, gone: true},
		{do: "delete", id: "c1", want: 2, gone: true},
		{do: "delete", id: "c1", ifMatch: 2, want: 2, gone: true},
		{do: "read", id: "c1", want: 2, err: store.ErrGone},
	}},
	{"delete of a resource that never existed", []step{
		{do: "delete", id: "c1", err: store.ErrNotFound},
		{do: "read", id: "c1", err: store.ErrNotFound},
		{do: "create", id: "c1", want: 1},
	}},
	{"update after delete recreates", []step{
		{do: "create", id: "c1", want: 1},
		{do: "delete", id: "c1", want: 2, gone: true},
		{do: "create", id: "c1", err: store.ErrExists},
		{do: "update", id: "c1", body: consentInactive, want: 3},
		{do: "read", id: "c1", want: 3},
		{do: "vread", id: "c1", version: 2, want: 2, err: store.ErrGone},
		{do: "vread", id: "c1", version: 1, want: 1},
		{do: "delete", id: "c1", want: 4, gone: true},
	}},
}

func testCRUD(t *testing.T, h Harness) {
	for _, sc := range crudScenarios {
		t.Run(sc.name, func(t *testing.T) {
			w := newWorld(t, open(t, h))
			for i, st := range sc.steps {
				w.step(fmt.Sprintf("step %d (%s %s)", i+1, st.do, st.id), st)
			}
		})
	}
}

// step runs one step and checks its outcome against the step and the
// model.
func (w *world) step(what string, st step) {
	t := w.t
	t.Helper()
	ctx := context.Background()
	if st.typ == "" {
		st.typ = "Consent"
	}
	if st.body == "" {
		st.body = consentActive
	}
	var (
		r   store.Resource
		err error
		wr  = store.Write{Type: st.typ, ID: st.id}
	)
	switch st.do {
	case "create":
		wr = NewWrite(t, st.typ, st.id, st.body)
		r, err = w.s.Create(ctx, wr)
	case "update":
		wr = NewWrite(t, st.typ, st.id, st.body)
		r, err = w.s.Update(ctx, wr, st.ifMatch)
	case "delete":
		r, err = w.s.Delete(ctx, st.typ, st.id, st.ifMatch)
	case "read":
		r, err = w.s.Read(ctx, st.typ, st.id)
	case "vread":
		r, err = w.s.VRead(ctx, st.typ, st.id, st.version)
	default:
		t.Fatalf("%s: unknown step", what)
	}
	wantErr(t, what, err, st.err)
	if st.err != nil && st.err != store.ErrGone {
		return
	}
	gone := st.gone || st.err == store.ErrGone
	checkResource(t, r, st.typ, st.id)
	if r.Version != st.want || r.Deleted != gone {
		t.Fatalf("%s: got %s, want version %d (deleted %v)", what, show(r), st.want, gone)
	}
	switch st.do {
	case "create", "update", "delete":
		w.record(wr, r)
	default: // a read returns exactly what was written
		v, ok := w.versions[vkey(st.typ, st.id, r.Version)]
		if !ok || !sameResource(r, v) {
			t.Fatalf("%s: got %s, stored was %s", what, show(r), show(v))
		}
	}
}
