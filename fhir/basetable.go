package fhir

import (
	"fmt"
	"regexp"
	"strings"
	"sync"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	apb "github.com/google/fhir/go/proto/google/fhir/proto/annotations_go_proto"
	d4pb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/datatypes_go_proto"
	r4pb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/bundle_and_contained_resource_go_proto"
	d3pb "github.com/google/fhir/go/proto/google/fhir/proto/stu3/datatypes_go_proto"
)

// The base validator's table: every R4 message google/fhir's unmarshaller
// knows (resources, datatypes, backbone elements, primitives, code enums),
// read once from its generated descriptors and the FHIR annotations on them
// (google/fhir/proto/annotations.proto), so that base validation walks the
// very definitions google/fhir's jsonformat parses against.

// msgKind says how a JSON value for a message type is read.
type msgKind uint8

const (
	kComplex   msgKind = iota // a JSON object of fields
	kPrimitive                // a JSON primitive, or an object with id and extension
	kReference                // Reference: an object, whose reference is normalised and type-checked
	kContained                // ContainedResource: an object with a resourceType
	kAny                      // google.protobuf.Any: a contained resource under "contained"
)

// primKind is the primitive datatype, for kPrimitive.
type primKind uint8

const (
	pBase64 primKind = iota + 1
	pBoolean
	pCode
	pDate
	pDateTime
	pDecimal
	pID
	pInstant
	pInteger
	pOid
	pPositiveInt
	pString
	pTime
	pUnsignedInt
	pURI      // uri, url, canonical
	pText     // markdown, xhtml: any string
	pUUID     // uuid
	pRefID    // ReferenceId: never a JSON primitive
	pEnum     // a code bound to a value set: one of the enum's codes
	pCodeText // a code bound to a value set, held as a string
)

// btype is one message type.
type btype struct {
	name     string
	kind     msgKind
	prim     primKind
	fields   map[string]uint32 // index in keys, by JSON name as google/fhir's FieldMap has them
	keys     []fieldKey        // what the JSON names of fields map to
	table    keyTable          // fields, for lookup
	required []*bfield         // REQUIRED_BY_FHIR
	// pEnum: the enum value names (upper case, '_' for '-') other than the
	// zero value, and the original codes of values whose name differs.
	enumNames, enumCodes map[string]bool
	// kContained, kAny: the resource types by name.
	resources map[string]*btype
	// kReference: the oneof fields of the reference (uri, fragment, xxxId).
	refURI *bfield
	// kPrimitive: the value is required (a scalar field, present when not
	// empty), or there is no extension element.
	valueRequired, noExtension bool
}

// bfield is one field of a message type.
type bfield struct {
	name     string // JSON name
	repeated bool
	scalar   bool   // not a message (a primitive's own value): "invalid field"
	typ      *btype // nil when scalar
	choice   bool   // a choice type: the key names the alternative
	refTypes []string
	reqBit   int // bit in the required mask, or -1
	// refOneof: a field of a Reference's oneof (uri, fragment, xxxId), of
	// a typed id of resource type refOneofType ("" for uri and fragment).
	refOneof     bool
	refOneofType string
}

// fieldKey is what a JSON key maps to: a field, and for a choice key the
// alternative within the choice type; ext for the _name of a primitive.
type fieldKey struct {
	f   *bfield
	alt *bfield
	ext bool
}

type baseTable struct {
	resources map[string]*btype
	// stu3Only: reference types google/fhir knows from STU3 only; a
	// relative reference to one fails normalisation.
	stu3Only map[string]bool
	// r4Ref: the resource types an R4 Reference has a typed id for.
	r4Ref                       map[string]bool
	refKinds                    keyTable // r4Ref and stu3Only, for refKind
	codeRE, idRE, oidRE, uuidRE *regexp.Regexp
}

// The kinds of reference type refKind tells.
const (
	refR4       = 1 // in r4Ref
	refSTU3Only = 2 // in stu3Only
)

// refKind returns whether typ is in r4Ref (refR4), in stu3Only
// (refSTU3Only) or neither (0).
func (t *baseTable) refKind(typ string) uint32 {
	k, _ := t.refKinds.get(typ)
	return k
}

var loadBaseTable = sync.OnceValues(buildBaseTable)

func buildBaseTable() (*baseTable, error) {
	b := &tableBuilder{types: map[protoreflect.FullName]*btype{}}
	cr := b.message((&r4pb.ContainedResource{}).ProtoReflect().Descriptor())
	if b.err != nil {
		return nil, b.err
	}
	t := &baseTable{resources: cr.resources, stu3Only: map[string]bool{}}
	t.r4Ref = referenceTypes((&d4pb.Reference{}).ProtoReflect().Descriptor())
	for typ := range referenceTypes((&d3pb.Reference{}).ProtoReflect().Descriptor()) {
		if !t.r4Ref[typ] {
			t.stu3Only[typ] = true
		}
	}
	kinds := map[string]uint32{}
	for typ := range t.r4Ref {
		kinds[typ] = refR4
	}
	for typ := range t.stu3Only {
		kinds[typ] = refSTU3Only
	}
	t.refKinds = newKeyTable(kinds)
	for _, r := range []struct {
		re **regexp.Regexp
		m  proto.Message
	}{{&t.codeRE, &d4pb.Code{}}, {&t.idRE, &d4pb.Id{}}, {&t.oidRE, &d4pb.Oid{}}, {&t.uuidRE, &d4pb.Uuid{}}} {
		d := r.m.ProtoReflect().Descriptor()
		expr, _ := proto.GetExtension(d.Options(), apb.E_ValueRegex).(string)
		if expr == "" {
			return nil, fmt.Errorf("fhir: no value_regex on %s", d.FullName())
		}
		re, err := regexp.Compile("^" + expr + "$")
		if err != nil {
			return nil, fmt.Errorf("fhir: value_regex of %s: %w", d.FullName(), err)
		}
		*r.re = re
	}
	return t, nil
}

// referenceTypes returns the resource types a Reference message has a
// typed id field for.
func referenceTypes(d protoreflect.MessageDescriptor) map[string]bool {
	out := map[string]bool{}
	fields := d.Oneofs().ByName("reference").Fields()
	for i := 0; i < fields.Len(); i++ {
		if t, _ := proto.GetExtension(fields.Get(i).Options(), apb.E_ReferencedFhirType).(string); t != "" {
			out[t] = true
		}
	}
	return out
}

type tableBuilder struct {
	types map[protoreflect.FullName]*btype
	err   error
}

func isPrimitive(d protoreflect.MessageDescriptor) bool {
	k, _ := proto.GetExtension(d.Options(), apb.E_StructureDefinitionKind).(apb.StructureDefinitionKindValue)
	return k == apb.StructureDefinitionKindValue_KIND_PRIMITIVE_TYPE
}

func isChoice(d protoreflect.MessageDescriptor) bool {
	return d != nil && proto.HasExtension(d.Options(), apb.E_IsChoiceType)
}

// message returns the type for d, building it (and every type it reaches)
// the first time.
func (b *tableBuilder) message(d protoreflect.MessageDescriptor) *btype {
	if t, ok := b.types[d.FullName()]; ok {
		return t
	}
	t := &btype{name: string(d.Name())}
	b.types[d.FullName()] = t
	switch {
	case d.FullName() == "google.protobuf.Any":
		t.kind = kAny
	case d.Name() == "ContainedResource":
		t.kind = kContained
	case isPrimitive(d):
		t.kind = kPrimitive
		t.prim = b.primitive(d)
		if t.prim == pEnum {
			enumSets(t, d)
		}
	case proto.HasExtension(d.Options(), apb.E_FhirReferenceType):
		t.kind = kReference
	}
	t.fields = map[string]uint32{}
	fields := d.Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		f := b.field(fd)
		if isChoice(fd.Message()) {
			choice := b.message(fd.Message())
			for name, i := range choice.fields {
				alt := choice.keys[i]
				key := fd.JSONName() + strings.ToUpper(name[:1]) + name[1:]
				if alt.ext {
					key = "_" + fd.JSONName() + strings.ToUpper(name[1:2]) + name[2:]
				}
				t.addKey(key, fieldKey{f: f, alt: alt.f, ext: alt.ext})
			}
			f.choice = true
		} else {
			t.addKey(fd.JSONName(), fieldKey{f: f})
			if f.typ != nil && f.typ.kind == kPrimitive {
				t.addKey("_"+fd.JSONName(), fieldKey{f: f, ext: true})
			}
		}
		if req, _ := proto.GetExtension(fd.Options(), apb.E_ValidationRequirement).(apb.Requirement); req == apb.Requirement_REQUIRED_BY_FHIR {
			if len(t.required) == 64 {
				b.err = fmt.Errorf("fhir: %s has more than 64 required fields", d.FullName())
			}
			f.reqBit = len(t.required)
			t.required = append(t.required, f)
		}
	}
	if t.kind == kPrimitive {
		for _, f := range t.required {
			t.valueRequired = t.valueRequired || f.scalar && f.name == "value"
		}
		_, hasExt := t.fields["extension"]
		t.noExtension = !hasExt
	}
	if t.kind == kContained || t.kind == kAny {
		t.resources = map[string]*btype{}
		oneof := (&r4pb.ContainedResource{}).ProtoReflect().Descriptor().Oneofs().ByName("oneof_resource").Fields()
		for i := 0; i < oneof.Len(); i++ {
			if m := oneof.Get(i).Message(); m != nil {
				t.resources[string(m.Name())] = b.message(m)
			}
		}
	}
	if t.kind == kReference {
		oneof := d.Oneofs().ByName("reference").Fields()
		for i := 0; i < oneof.Len(); i++ {
			fd := oneof.Get(i)
			f := t.keys[t.fields[fd.JSONName()]].f
			typ, _ := proto.GetExtension(fd.Options(), apb.E_ReferencedFhirType).(string)
			f.refOneof, f.refOneofType = true, typ
			if fd.Name() == "uri" {
				t.refURI = f
			}
		}
		if t.refURI == nil {
			b.err = fmt.Errorf("fhir: reference type %s has no uri field", d.FullName())
		}
	}
	t.table = newKeyTable(t.fields)
	return t
}

// addKey makes JSON name k map to fk.
func (t *btype) addKey(k string, fk fieldKey) {
	t.fields[k] = uint32(len(t.keys))
	t.keys = append(t.keys, fk)
}

func (b *tableBuilder) field(fd protoreflect.FieldDescriptor) *bfield {
	f := &bfield{name: fd.JSONName(), repeated: fd.Cardinality() == protoreflect.Repeated, reqBit: -1}
	if fd.Message() == nil {
		f.scalar = true
		return f
	}
	f.typ = b.message(fd.Message())
	if refs, _ := proto.GetExtension(fd.Options(), apb.E_ValidReferenceType).([]string); len(refs) > 0 {
		f.refTypes = refs
		for _, r := range refs {
			if r == "Resource" {
				f.refTypes = nil
			}
		}
	}
	return f
}

// primitive classifies a primitive message type as google/fhir's
// parsePrimitiveType does: by name, then codes bound to a value set.
func (b *tableBuilder) primitive(d protoreflect.MessageDescriptor) primKind {
	switch d.Name() {
	case "Base64Binary":
		return pBase64
	case "Boolean":
		return pBoolean
	case "Code":
		return pCode
	case "Date":
		return pDate
	case "DateTime":
		return pDateTime
	case "Decimal":
		return pDecimal
	case "Id":
		return pID
	case "Instant":
		return pInstant
	case "Integer":
		return pInteger
	case "Oid":
		return pOid
	case "PositiveInt":
		return pPositiveInt
	case "String":
		return pString
	case "Time":
		return pTime
	case "UnsignedInt":
		return pUnsignedInt
	case "Url", "Uri", "Canonical":
		return pURI
	case "Markdown", "Xhtml":
		return pText
	case "Uuid":
		return pUUID
	case "ReferenceId":
		return pRefID
	}
	value := d.Fields().ByName("value")
	if !proto.HasExtension(d.Options(), apb.E_FhirValuesetUrl) || value == nil {
		b.err = fmt.Errorf("fhir: unsupported primitive type %s", d.FullName())
		return 0
	}
	switch value.Kind() {
	case protoreflect.StringKind:
		return pCodeText
	case protoreflect.EnumKind:
	default:
		b.err = fmt.Errorf("fhir: code type %s has a %s value", d.FullName(), value.Kind())
		return 0
	}
	return pEnum
}

// enumSets fills a pEnum type's accepted names and original codes.
func enumSets(t *btype, d protoreflect.MessageDescriptor) {
	values := d.Fields().ByName("value").Enum().Values()
	t.enumNames, t.enumCodes = map[string]bool{}, map[string]bool{}
	for i := 0; i < values.Len(); i++ {
		v := values.Get(i)
		if v.Number() != 0 {
			t.enumNames[string(v.Name())] = true
		}
		if c, _ := proto.GetExtension(v.Options(), apb.E_FhirOriginalCode).(string); c != "" {
			t.enumCodes[c] = true
		}
	}
}
