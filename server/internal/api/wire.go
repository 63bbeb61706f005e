package api

import (
	"fmt"
	"strings"
	"sync"
	"unicode/utf8"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/careteam/careteam/server/internal/careteam"
)

// What a request may hold whatever its contract says: bounds checked on the
// decoded message before any rule runs, so that the cost of judging a
// request, and of the answer listing what is wrong with it, stays bounded.
const (
	// maxRepeated bounds every repeated field; the contract's own limits
	// are lower.
	maxRepeated = 1000
	// maxViolations is how many bad fields an answer lists; the rest are
	// counted.
	maxViolations = 50
	// maxHeaderBytes bounds a call's HTTP/2 header list: a token, a request
	// id and a purpose fit in a few KiB.
	maxHeaderBytes = 16 << 10
)

// lenientCodec decodes requests like gRPC's proto codec, but a request
// that does not decode (invalid UTF-8 in a string, malformed bytes) is not
// refused inside gRPC, where it would be INTERNAL and unaudited: the
// message is left empty and the failure kept for validate, which answers
// INVALID_ARGUMENT naming the field, on the audited path.
type lenientCodec struct{ encoding.CodecV2 }

// undecodable holds the failures lenientCodec kept, by message, until
// validate takes them.
var undecodable sync.Map // proto.Message -> careteam.FieldViolation

func newLenientCodec() lenientCodec { return lenientCodec{encoding.GetCodecV2("proto")} }

// Marshal sends an event encoded once for many streams as it is.
func (c lenientCodec) Marshal(v any) (mem.BufferSlice, error) {
	if e, ok := v.(*encodedEvent); ok {
		return mem.BufferSlice{mem.SliceBuffer(e.bytes)}, nil
	}
	return c.CodecV2.Marshal(v)
}

func (c lenientCodec) Unmarshal(data mem.BufferSlice, v any) error {
	err := c.CodecV2.Unmarshal(data, v)
	m, ok := v.(proto.Message)
	if err == nil || !ok {
		return err
	}
	violation := careteam.FieldViolation{Description: "the request is not a well-formed protobuf message"}
	if field, found := invalidUTF8Field(data.Materialize(), m.ProtoReflect().Descriptor(), ""); found {
		violation = careteam.FieldViolation{Field: field, Description: "not valid UTF-8"}
	}
	proto.Reset(m)
	undecodable.Store(m, violation)
	return nil
}

// takeUndecodable returns, and forgets, the failure lenientCodec kept for
// req, or nil.
func takeUndecodable(req any) error {
	v, bad := undecodable.LoadAndDelete(req)
	if !bad {
		return nil
	}
	return &careteam.InvalidError{Violations: []careteam.FieldViolation{v.(careteam.FieldViolation)}}
}

// invalidUTF8Field finds, in the wire bytes b of a message md, the path of
// the first string field that is not valid UTF-8.
func invalidUTF8Field(b []byte, md protoreflect.MessageDescriptor, prefix string) (string, bool) {
	seen := map[protowire.Number]int{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return "", false
		}
		b = b[n:]
		fd := md.Fields().ByNumber(num)
		if typ != protowire.BytesType || fd == nil {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return "", false
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return "", false
		}
		b = b[n:]
		path := prefix + string(fd.Name())
		if fd.IsList() {
			path = fmt.Sprintf("%s[%d]", path, seen[num])
			seen[num]++
		}
		switch {
		case fd.Kind() == protoreflect.StringKind && !utf8.Valid(v):
			return path, true
		case fd.Kind() == protoreflect.MessageKind && !fd.IsMap():
			if p, ok := invalidUTF8Field(v, fd.Message(), path+"."); ok {
				return p, true
			}
		}
	}
	return "", false
}

// shapeViolations finds what no request may hold, whatever its rules: a
// repeated field longer than maxRepeated, and NUL bytes in a string, which
// nothing careteam stores can hold.
func shapeViolations(m protoreflect.Message) []careteam.FieldViolation {
	var out []careteam.FieldViolation
	var walk func(m protoreflect.Message, prefix string)
	walk = func(m protoreflect.Message, prefix string) {
		m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			path := prefix + string(fd.Name())
			switch {
			case fd.IsList():
				l := v.List()
				if l.Len() > maxRepeated {
					out = append(out, careteam.FieldViolation{Field: path, Description: fmt.Sprintf("at most %d items", maxRepeated)})
					return true
				}
				for i := 0; i < l.Len() && len(out) < maxViolations; i++ {
					check(&out, fd, l.Get(i), fmt.Sprintf("%s[%d]", path, i), walk)
				}
			case fd.IsMap():
				v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
					check(&out, fd.MapValue(), mv, fmt.Sprintf("%s[%v]", path, k.Interface()), walk)
					return true
				})
			default:
				check(&out, fd, v, path, walk)
			}
			return len(out) < maxViolations
		})
	}
	walk(m, "")
	return out
}

func check(out *[]careteam.FieldViolation, fd protoreflect.FieldDescriptor, v protoreflect.Value, path string, walk func(protoreflect.Message, string)) {
	switch fd.Kind() {
	case protoreflect.StringKind:
		if strings.IndexByte(v.String(), 0) >= 0 {
			*out = append(*out, careteam.FieldViolation{Field: path, Description: "must not contain NUL bytes"})
		}
	case protoreflect.MessageKind, protoreflect.GroupKind:
		walk(v.Message(), path+".")
	}
}

// capViolations keeps the first maxViolations and says how many more.
func capViolations(vs []careteam.FieldViolation) []careteam.FieldViolation {
	if len(vs) <= maxViolations {
		return vs
	}
	rest := len(vs) - maxViolations
	return append(vs[:maxViolations:maxViolations], careteam.FieldViolation{Description: fmt.Sprintf("and %d more", rest)})
}
