package fhir

import (
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	d4pb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/datatypes_go_proto"
)

// Naming names careteam's code systems and extensions: by their URNs
// (urn:careteam:technique), or, for a deployment with a public FHIR base,
// by canonical URLs under it ({base}/CodeSystem/technique), where the
// endpoint serves their definitions. The mapping works on whole resources
// at the edge, so the mapping inside speaks URNs only; input may use
// either name.
type Naming struct{ out, in map[string]string }

// NewNaming returns the naming under base ("https://host/fhir/R4"); with
// no base, the URNs.
func NewNaming(base string) Naming {
	if base == "" {
		return Naming{}
	}
	n := Naming{out: map[string]string{}, in: map[string]string{}}
	add := func(urn, typ string) {
		u := base + "/" + typ + "/" + conformanceID(urn)
		n.out[urn], n.in[u] = u, urn
	}
	for _, cs := range codeSystems() {
		add(cs.url, "CodeSystem")
	}
	for _, e := range extensions {
		add(e.url, "StructureDefinition")
	}
	return n
}

// URL is the name a URN goes by.
func (n Naming) URL(urn string) string {
	if u, ok := n.out[urn]; ok {
		return u
	}
	return urn
}

// Outward renames careteam's URNs in FHIR JSON careteam wrote to their
// canonical URLs.
func (n Naming) Outward(data []byte) ([]byte, error) {
	if len(n.out) == 0 {
		return data, nil
	}
	return rename(data, n.out)
}

// Inward renames canonical URLs in a caller's FHIR JSON back to the URNs
// the mapping reads. Input that does not parse is returned as it came, for
// the import to report where it is wrong.
func (n Naming) Inward(data []byte) []byte {
	if len(n.in) == 0 {
		return data
	}
	out, err := rename(data, n.in)
	if err != nil {
		return data
	}
	return out
}

// rename rewrites every Coding.system and Extension.url that names maps.
func rename(data []byte, names map[string]string) ([]byte, error) {
	cr, violations := unmarshal(data)
	if len(violations) > 0 {
		return nil, fmt.Errorf("fhir: renaming what does not parse")
	}
	c := cr.ProtoReflect()
	field := c.WhichOneof(c.Descriptor().Oneofs().ByName("oneof_resource"))
	if field == nil {
		return nil, fmt.Errorf("fhir: renaming an empty resource")
	}
	m := c.Get(field).Message()
	eachMessage(m, func(msg proto.Message) {
		var u *d4pb.Uri
		switch v := msg.(type) {
		case *d4pb.Coding:
			u = v.GetSystem()
		case *d4pb.Extension:
			u = v.GetUrl()
		}
		if to, ok := names[u.GetValue()]; ok && u != nil {
			u.Value = to
		}
	})
	return newMarshaller().MarshalResource(m.Interface())
}

// eachMessage calls fn with m and every message within it, contained
// resources and Bundle entries included.
func eachMessage(m protoreflect.Message, fn func(proto.Message)) {
	fn(m.Interface())
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.Message() == nil || fd.IsMap():
		case fd.IsList():
			for i := 0; i < v.List().Len(); i++ {
				eachMessage(v.List().Get(i).Message(), fn)
			}
		default:
			eachMessage(v.Message(), fn)
		}
		return true
	})
}
