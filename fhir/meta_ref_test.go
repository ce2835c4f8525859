package fhir

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// withMetaReference is the first WithMeta (json.Decoder based), kept as
// the reference the fast one is fuzzed against. It rewrites the top level of a resource's JSON: resourceType first,
// then id and meta (versionId and lastUpdated set, other meta elements
// kept), then the other members in their original order, byte for byte.
func withMetaReference(raw []byte, m Meta) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return nil, Errorf(KindInvalid, "structure", "resource is not a JSON object")
	}
	type member struct {
		key string
		val json.RawMessage
	}
	var members []member
	var rt json.RawMessage
	metaDoc := map[string]json.RawMessage{}
	var metaKeys []string
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return nil, Errorf(KindInvalid, "structure", "malformed JSON object").Wrap(err)
		}
		key, _ := kt.(string)
		var val json.RawMessage
		if err := dec.Decode(&val); err != nil {
			return nil, Errorf(KindInvalid, "structure", "malformed JSON value").Wrap(err)
		}
		switch key {
		case "resourceType":
			rt = val
		case "id":
		case "meta":
			dm := json.NewDecoder(bytes.NewReader(val))
			if t, err := dm.Token(); err == nil && t == json.Delim('{') {
				for dm.More() {
					mk, err := dm.Token()
					if err != nil {
						break
					}
					var mv json.RawMessage
					if err := dm.Decode(&mv); err != nil {
						break
					}
					k, _ := mk.(string)
					if k == "versionId" || k == "lastUpdated" {
						continue
					}
					if _, seen := metaDoc[k]; !seen {
						metaKeys = append(metaKeys, k)
					}
					metaDoc[k] = mv
				}
			}
		default:
			members = append(members, member{key, val})
		}
	}
	if rt == nil {
		return nil, Errorf(KindInvalid, "structure", "resource has no resourceType").At("resourceType")
	}
	var b bytes.Buffer
	b.Grow(len(raw) + 96)
	b.WriteString(`{"resourceType":`)
	b.Write(rt)
	b.WriteString(`,"id":`)
	b.Write(jsonString(m.ID))
	b.WriteString(`,"meta":{"versionId":"`)
	b.WriteString(strconv.FormatInt(m.VersionID, 10))
	b.WriteString(`","lastUpdated":"`)
	b.WriteString(FormatInstant(m.LastUpdated))
	b.WriteByte('"')
	for _, k := range metaKeys {
		b.WriteByte(',')
		b.Write(jsonString(k))
		b.WriteByte(':')
		b.Write(metaDoc[k])
	}
	b.WriteByte('}')
	for _, mb := range members {
		b.WriteByte(',')
		b.Write(jsonString(mb.key))
		b.WriteByte(':')
		b.Write(mb.val)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// FuzzWithMeta checks the fast WithMeta against the reference: the same
// bytes for every input both accept, and no accepted input the
// reference refuses.
func FuzzWithMeta(f *testing.F) {
	for _, s := range []string{
		`{"resourceType":"Patient","active":true}`,
		`{ "active" : true ,"identifier":[ {"system":"s" , "value":"1"} ],"resourceType":"Patient"}`,
		`{"meta":{"profile":["p"],"versionId":"1","tag":[{"code":"t"}]},"resourceType":"Consent","id":"c1"}`,
		`{"resourceType":"Organization","name":"Huisartsen \u00e9\"n\" ‘t Hof","alias":["a\nb"]}`,
		"{\n  \"resourceType\": \"Patient\",\n  \"link\": [\n    {\"type\": \"seealso\"}\n  ]\n}\n",
		`{"resourceType":"P","meta":{"a":1},"meta":{"b":[1,{"c":"}"}],"a":2}}`,
		`{"resourceType":"P","x":-1.5e3,"y":null,"z":false,"w":"\\\"}"}`,
		`{"resourceType":"P","k\u0041":{}}`,
	} {
		f.Add([]byte(s))
	}
	m := Meta{ID: "x-1", VersionID: 3, LastUpdated: time.Unix(1795330800, 0)}
	f.Fuzz(func(t *testing.T, raw []byte) {
		got, err := WithMeta(raw, m)
		want, rerr := withMetaReference(raw, m)
		if err != nil {
			if KindOf(err) != KindInvalid {
				t.Fatalf("error of kind %d: %v", KindOf(err), err)
			}
			return
		}
		if rerr != nil {
			t.Fatalf("accepted what the reference refuses (%v): %q -> %s", rerr, raw, got)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("input %q\n got %s\nwant %s", raw, got, want)
		}
		if !json.Valid(got) {
			t.Fatalf("output is not JSON: %s", got)
		}
	})
}

// BenchmarkWithMeta compares WithMeta with the reference on an
// AuditEvent (the write the store stamps most often).
//
//	go test ./fhir -run '^$' -bench WithMeta -benchtime 20000x
func BenchmarkWithMeta(b *testing.B) {
	raw := MustRead(b, filepath.Join("resources", "auditevent.json"))
	m := Meta{ID: "x-1", VersionID: 3, LastUpdated: time.Unix(1795330800, 0)}
	for _, bb := range []struct {
		name string
		f    func([]byte, Meta) ([]byte, error)
	}{{"reference", withMetaReference}, {"fast", WithMeta}} {
		b.Run(bb.name, func(b *testing.B) {
			b.SetBytes(int64(len(raw)))
			for b.Loop() {
				if _, err := bb.f(raw, m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
