package fhir

import (
	"fmt"
	"strings"

	"github.com/google/fhir/go/jsonformat"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/careteam/careteam/server/internal/careteam"

	d4pb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/datatypes_go_proto"
	bcrpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/bundle_and_contained_resource_go_proto"
)

// Validate checks FHIR R4 JSON against the R4 structure as the import
// does (cardinality, required elements, codes of required bindings,
// reference target types, primitive formats) and, for a Bundle, that every
// reference resolves to one of its entries. Its error is a
// *careteam.InvalidError naming each problem's FHIRPath location.
func Validate(data []byte) error {
	cr, violations := unmarshal(data)
	if len(violations) > 0 {
		return &careteam.InvalidError{Violations: violations}
	}
	b := cr.GetBundle()
	if b == nil {
		return nil
	}
	entries := map[string]bool{}
	for _, e := range b.GetEntry() {
		entries[e.GetFullUrl().GetValue()] = true
		if res, typ := resourceOf(e.GetResource()); res != nil {
			entries[typ+"/"+resourceID(res)] = true
		}
	}
	for i, e := range b.GetEntry() {
		res, typ := resourceOf(e.GetResource())
		if res == nil {
			violations = append(violations, careteam.FieldViolation{Field: fmt.Sprintf("Bundle.entry[%d].resource", i), Description: "required"})
			continue
		}
		walkReferences(res, fmt.Sprintf("Bundle.entry[%d].resource.ofType(%s)", i, typ), func(at string, r *d4pb.Reference) {
			lit := proto.Clone(r).(*d4pb.Reference)
			if err := jsonformat.DenormalizeReference(lit); err != nil || !entries[lit.GetUri().GetValue()] {
				violations = append(violations, careteam.FieldViolation{Field: at, Description: "does not resolve inside the Bundle"})
			}
		})
	}
	if len(violations) > 0 {
		return &careteam.InvalidError{Violations: violations}
	}
	return nil
}

// walkReferences calls fn with every Reference in m and its path;
// contained resources are not entered.
func walkReferences(m protoreflect.Message, at string, fn func(at string, r *d4pb.Reference)) {
	walkElements(m, at, func(at string, m protoreflect.Message) bool {
		r, ok := m.Interface().(*d4pb.Reference)
		if ok {
			fn(at, r)
		}
		return !ok
	})
}

// walkElements calls fn with m and every element under it, each with its
// FHIRPath, entering an element's children while fn returns true; a
// resource held inside another (contained, or a Bundle entry's) is not
// entered.
func walkElements(m protoreflect.Message, at string, fn func(at string, m protoreflect.Message) bool) {
	if !fn(at, m) {
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Message() == nil || fd.Name() == "contained" || fd.Message().FullName() == containedResource {
			return true
		}
		name := at + "." + fd.JSONName()
		if fd.ContainingOneof() != nil && fd.ContainingOneof().Name() == "choice" {
			// A choice's element is named by its parent and its type.
			name = at + strings.ToUpper(fd.JSONName()[:1]) + fd.JSONName()[1:]
		}
		if fd.IsList() {
			for i := 0; i < v.List().Len(); i++ {
				walkElements(v.List().Get(i).Message(), fmt.Sprintf("%s[%d]", name, i), fn)
			}
			return true
		}
		walkElements(v.Message(), name, fn)
		return true
	})
}

var containedResource = (&bcrpb.ContainedResource{}).ProtoReflect().Descriptor().FullName()
