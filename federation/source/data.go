package source

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"reflect"
	"regexp"
	"slices"
	"strings"

	"github.com/schakelpunt/schakelpunt/fhir"
)

// Data is what one source serves: its resources by type and id, by the
// patient they are about, and its summary documents by patient. It is
// immutable once loaded and safe for concurrent use.
type Data struct {
	resources map[string]*resource   // by "Type/id"
	byType    map[string][]*resource // in answer order (sortResources)
	documents map[string][]*resource // patient id → document Bundles, newest first
	patients  []Patient
}

// Patient is a patient a source holds: its local id and its BSN.
type Patient struct {
	ID  string
	BSN string // "" when the Patient carries no BSN
}

// resource is one loaded resource and what searches ask of it.
type resource struct {
	typ, id string
	raw     json.RawMessage
	file    string
	patient string          // local id of the Patient it is about, "" if none
	status  string          // its status element, if any
	handed  *fhir.DateRange // MedicationDispense.whenHandedOver
	doc     *document       // set for a document Bundle
}

// document is a document Bundle kept member by member, so it can be served
// with each entry's fullUrl at the serving base.
type document struct {
	bundle  object // the Bundle's members, without entry
	entries []docEntry
	newest  int64 // Bundle.timestamp (or Composition.date), for newest first
}

type docEntry struct {
	obj  object
	rest string // "Type/id" when the fullUrl is the resource's RESTful URL (or absent): rebased when served
}

// maxFileSize bounds one data file.
const maxFileSize = 32 << 20

var idRE = regexp.MustCompile(`^[A-Za-z0-9\-.]{1,64}$`)

// Load reads the FHIR R4 JSON files (*.json) directly in dir: each holds
// one resource, or a Bundle. The entries of a Bundle are loaded as
// resources; a document Bundle is also kept whole, for Patient/$summary
// and read, and its first entry must be a Composition about a Patient it
// holds or references as Patient/<id>. Every file must pass base R4
// validation and every resource needs an id; a type and id found twice
// must have the same content (a GP's Organization in each document).
// Resources are indexed by the patient they are about: Patient/<id> in
// subject or patient (or the fullUrl of a Patient entry in the same
// Bundle).
func Load(dir string) (*Data, error) {
	d, err := LoadFS(os.DirFS(dir), ".")
	if err != nil {
		return nil, fmt.Errorf("source: load %s: %w", dir, err)
	}
	return d, nil
}

// LoadFS is Load on a directory of fsys (LoadDemo reads the embedded
// fixtures with it).
func LoadFS(fsys fs.FS, dir string) (*Data, error) {
	codec, err := fhir.NewCodec()
	if err != nil {
		return nil, err
	}
	des, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, err
	}
	l := &loader{codec: codec, d: &Data{resources: map[string]*resource{}, byType: map[string][]*resource{}, documents: map[string][]*resource{}}}
	n := 0
	for _, de := range des {
		name := de.Name()
		if de.IsDir() || strings.HasPrefix(name, ".") || !strings.HasSuffix(name, ".json") {
			continue
		}
		n++
		if err := l.file(fsys, path.Join(dir, name)); err != nil {
			return nil, err
		}
	}
	if n == 0 {
		return nil, errors.New("no FHIR JSON files (*.json)")
	}
	l.finish()
	return l.d, nil
}

type loader struct {
	codec *fhir.Codec
	d     *Data
}

func (l *loader) file(fsys fs.FS, name string) error {
	f, err := fsys.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	body, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if len(body) > maxFileSize {
		return fmt.Errorf("%s: larger than %d bytes", name, maxFileSize)
	}
	res, err := l.codec.Parse(body, "")
	if err != nil {
		return fmt.Errorf("%s: %s", name, describe(err))
	}
	if res.Type == "Bundle" {
		return l.bundle(res.ID, body, res.Doc, name, true)
	}
	return l.add(res.Type, res.ID, body, res.Doc, name, nil)
}

// describe renders a codec error with every issue and where it is.
func describe(err error) string {
	fe := fhir.AsError(err)
	var parts []string
	for _, is := range fe.Issues {
		s := is.Code + ": " + is.Diagnostics
		if len(is.Expression) > 0 {
			s = strings.Join(is.Expression, ", ") + ": " + s
		}
		parts = append(parts, s)
	}
	if len(parts) == 0 {
		return err.Error()
	}
	return strings.Join(parts, "; ")
}

// bundle loads the entries of a Bundle; a document Bundle, and any Bundle
// inside another, is also kept as a resource of its own.
func (l *loader) bundle(id string, raw []byte, doc map[string]any, file string, top bool) error {
	obj, err := parseObject(raw)
	if err != nil {
		return fmt.Errorf("%s: Bundle/%s: %w", file, id, err)
	}
	var rawEntries []json.RawMessage
	if e := obj.get("entry"); e != nil {
		if err := json.Unmarshal(e, &rawEntries); err != nil {
			return fmt.Errorf("%s: Bundle/%s: entry: %w", file, id, err)
		}
	}
	type loaded struct {
		obj       object
		typ, id   string
		fullURL   string
		raw       json.RawMessage
		doc       map[string]any
		isRESTful bool
	}
	entries := make([]loaded, 0, len(rawEntries))
	byURL := map[string]string{} // fullUrl → Type/id
	for i, re := range rawEntries {
		eo, err := parseObject(re)
		if err != nil {
			return fmt.Errorf("%s: Bundle/%s: entry[%d]: %w", file, id, i, err)
		}
		rr := eo.get("resource")
		if rr == nil {
			return fmt.Errorf("%s: Bundle/%s: entry[%d] has no resource", file, id, i)
		}
		m, err := decodeDoc(rr)
		if err != nil {
			return fmt.Errorf("%s: Bundle/%s: entry[%d]: %w", file, id, i, err)
		}
		e := loaded{obj: eo, raw: rr, doc: m}
		e.typ, _ = m["resourceType"].(string)
		e.id, _ = m["id"].(string)
		if e.id == "" {
			return fmt.Errorf("%s: Bundle/%s: entry[%d]: a %s without an id cannot be served", file, id, i, e.typ)
		}
		if u := eo.get("fullUrl"); u != nil {
			_ = json.Unmarshal(u, &e.fullURL)
		}
		key := e.typ + "/" + e.id
		e.isRESTful = e.fullURL == "" || strings.HasSuffix(e.fullURL, "/"+key)
		if e.fullURL != "" {
			byURL[e.fullURL] = key
		}
		entries = append(entries, e)
	}
	resolve := func(ref string) (string, bool) {
		k, ok := byURL[ref]
		return k, ok
	}
	for _, e := range entries {
		var err error
		if e.typ == "Bundle" {
			err = l.bundle(e.id, e.raw, e.doc, file, false)
		} else {
			err = l.add(e.typ, e.id, e.raw, e.doc, file, resolve)
		}
		if err != nil {
			return err
		}
	}

	typ, _ := doc["type"].(string)
	if typ != "document" {
		if top {
			return nil // a collection, transaction, ...: only its entries are served
		}
		return l.add("Bundle", id, raw, doc, file, nil)
	}
	if id == "" {
		return fmt.Errorf("%s: a document Bundle without an id cannot be served", file)
	}
	if len(entries) == 0 || entries[0].typ != "Composition" {
		return fmt.Errorf("%s: Bundle/%s: a document's first entry must be its Composition", file, id)
	}
	comp := entries[0]
	patient := patientOf(comp.typ, comp.id, comp.doc, resolve)
	if patient == "" {
		return fmt.Errorf("%s: Bundle/%s: the Composition's subject must be a Patient (Patient/<id> or a Patient entry's fullUrl)", file, id)
	}
	dc := &document{bundle: obj.without("entry"), newest: fhir.MinTime}
	for _, e := range entries {
		de := docEntry{obj: e.obj}
		if e.isRESTful {
			de.rest = e.typ + "/" + e.id
		}
		dc.entries = append(dc.entries, de)
	}
	for _, v := range []any{doc["timestamp"], comp.doc["date"]} {
		if s, ok := v.(string); ok {
			if r, ok := fhir.ParseDateRange(s); ok {
				dc.newest = r.Lo
				break
			}
		}
	}
	r := &resource{typ: "Bundle", id: id, raw: raw, file: file, patient: patient, doc: dc}
	added, err := l.put(r, doc)
	if err != nil || !added {
		return err
	}
	l.d.documents[patient] = append(l.d.documents[patient], r)
	return nil
}

// add loads one resource that is not a Bundle to unpack.
func (l *loader) add(typ, id string, raw []byte, doc map[string]any, file string, resolve func(string) (string, bool)) error {
	if id == "" {
		return fmt.Errorf("%s: a %s without an id cannot be served", file, typ)
	}
	// Served compact: the fixtures are written to be read by people.
	var compact bytes.Buffer
	if err := json.Compact(&compact, raw); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	r := &resource{typ: typ, id: id, raw: compact.Bytes(), file: file, patient: patientOf(typ, id, doc, resolve)}
	r.status, _ = doc["status"].(string)
	if typ == "MedicationDispense" {
		if s, ok := doc["whenHandedOver"].(string); ok {
			if dr, ok := fhir.ParseDateRange(s); ok {
				r.handed = &dr
			}
		}
	}
	if typ == "Patient" {
		if _, dup := l.d.resources["Patient/"+id]; !dup {
			l.d.patients = append(l.d.patients, Patient{ID: id, BSN: bsnOf(doc)})
		}
	}
	_, err := l.put(r, doc)
	return err
}

// put registers r; a resource already there with the same content is
// fine (added false), with other content an error.
func (l *loader) put(r *resource, doc map[string]any) (added bool, err error) {
	key := r.typ + "/" + r.id
	if !idRE.MatchString(r.id) {
		return false, fmt.Errorf("%s: %s: malformed id", r.file, key)
	}
	if prev, ok := l.d.resources[key]; ok {
		pd, err := decodeDoc(prev.raw)
		if err == nil && reflect.DeepEqual(pd, doc) {
			return false, nil
		}
		return false, fmt.Errorf("%s: %s is also in %s, with other content", r.file, key, prev.file)
	}
	l.d.resources[key] = r
	l.d.byType[r.typ] = append(l.d.byType[r.typ], r)
	return true, nil
}

// finish sorts what answers list.
func (l *loader) finish() {
	for _, rs := range l.d.byType {
		sortResources(rs)
	}
	for _, docs := range l.d.documents {
		slices.SortStableFunc(docs, func(a, b *resource) int {
			if c := compareInt(b.doc.newest, a.doc.newest); c != 0 {
				return c
			}
			return strings.Compare(a.id, b.id)
		})
	}
	slices.SortFunc(l.d.patients, func(a, b Patient) int { return strings.Compare(a.ID, b.ID) })
}

// sortResources puts MedicationDispenses newest handed over first (those
// not handed over yet last), everything else by id.
func sortResources(rs []*resource) {
	slices.SortStableFunc(rs, func(a, b *resource) int {
		switch {
		case a.handed != nil && b.handed != nil:
			if c := compareInt(b.handed.Lo, a.handed.Lo); c != 0 {
				return c
			}
		case a.handed != nil:
			return -1
		case b.handed != nil:
			return 1
		}
		return strings.Compare(a.id, b.id)
	})
}

func compareInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// patientOf is the local id of the patient a resource is about: a
// Patient's own id, else the Patient its subject or patient references.
func patientOf(typ, id string, doc map[string]any, resolve func(string) (string, bool)) string {
	if typ == "Patient" {
		return id
	}
	for _, k := range []string{"subject", "patient"} {
		ref, _ := doc[k].(map[string]any)
		s, _ := ref["reference"].(string)
		if s == "" {
			continue
		}
		if resolve != nil {
			if key, ok := resolve(s); ok {
				s = key
			}
		}
		if t, rest, ok := strings.Cut(s, "/"); ok && t == "Patient" {
			rest, _, _ = strings.Cut(rest, "/_history/")
			if idRE.MatchString(rest) {
				return rest
			}
		}
	}
	return ""
}

// bsnOf is the BSN among a Patient's identifiers.
func bsnOf(doc map[string]any) string {
	ids, _ := doc["identifier"].([]any)
	for _, v := range ids {
		m, _ := v.(map[string]any)
		if m["system"] == fhir.SystemBSN {
			s, _ := m["value"].(string)
			return s
		}
	}
	return ""
}

func decodeDoc(raw []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	return m, nil
}

// Patients returns the patients this source holds, by id.
func (d *Data) Patients() []Patient { return slices.Clone(d.patients) }

// Len is the number of resources served (documents counted once, their
// entries too).
func (d *Data) Len() int { return len(d.resources) }

// Types returns the resource types held, sorted.
func (d *Data) Types() []string {
	out := make([]string, 0, len(d.byType))
	for t := range d.byType {
		out = append(out, t)
	}
	slices.Sort(out)
	return out
}

// HasSummary reports whether the source holds a summary document about
// the patient with local id patientID.
func (d *Data) HasSummary(patientID string) bool { return len(d.documents[patientID]) > 0 }

// member is one member of a JSON object, in document order.
type member struct {
	key string
	val json.RawMessage
}

// object is a JSON object kept in order, values as they came.
type object []member

func parseObject(raw []byte) (object, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, errors.New("not a JSON object")
	}
	var o object
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return nil, err
		}
		k, _ := kt.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		o = append(o, member{k, v})
	}
	return o, nil
}

func (o object) get(k string) json.RawMessage {
	for _, m := range o {
		if m.key == k {
			return m.val
		}
	}
	return nil
}

// set returns a copy of o with k set to v (in place, or appended).
func (o object) set(k string, v json.RawMessage) object {
	out := slices.Clone(o)
	for i := range out {
		if out[i].key == k {
			out[i].val = v
			return out
		}
	}
	return append(out, member{k, v})
}

func (o object) without(k string) object {
	return slices.DeleteFunc(slices.Clone(o), func(m member) bool { return m.key == k })
}

func (o object) appendTo(b *bytes.Buffer) {
	b.WriteByte('{')
	for i, m := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(jsonString(m.key))
		b.WriteByte(':')
		if err := json.Compact(b, m.val); err != nil {
			b.Write(m.val) // cannot happen: the value was decoded from valid JSON
		}
	}
	b.WriteByte('}')
}

func jsonString(s string) []byte {
	b, _ := json.Marshal(s) // a string always marshals
	return b
}
