package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// printMessage prints a response: protojson with -o json, else an indented
// "field: value" rendering of the fields that are set.
func printMessage(e *env, m proto.Message) error {
	if e.format == "json" {
		b, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(m)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(e.out, string(b))
		return err
	}
	writeText(e.out, m.ProtoReflect(), 0)
	return nil
}

func writeText(w io.Writer, m protoreflect.Message, depth int) {
	pad := strings.Repeat("  ", depth)
	fields := m.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if !m.Has(fd) {
			continue
		}
		v := m.Get(fd)
		switch {
		case fd.IsList() && fd.Message() != nil:
			list := v.List()
			for j := 0; j < list.Len(); j++ {
				if depth == 0 && j > 0 {
					fmt.Fprintln(w)
				}
				fmt.Fprintf(w, "%s%s[%d]:\n", pad, fd.Name(), j)
				writeText(w, list.Get(j).Message(), depth+1)
			}
		case fd.IsList():
			list := v.List()
			items := make([]string, list.Len())
			for j := range items {
				items[j] = scalarText(fd, list.Get(j))
			}
			fmt.Fprintf(w, "%s%s: %s\n", pad, fd.Name(), strings.Join(items, ", "))
		case fd.Message() != nil && fd.Message().FullName() == "google.protobuf.Timestamp":
			sec := v.Message().Get(fd.Message().Fields().ByName("seconds")).Int()
			nanos := v.Message().Get(fd.Message().Fields().ByName("nanos")).Int()
			fmt.Fprintf(w, "%s%s: %s\n", pad, fd.Name(), time.Unix(sec, nanos).UTC().Format(time.RFC3339))
		case fd.Message() != nil:
			fmt.Fprintf(w, "%s%s:\n", pad, fd.Name())
			writeText(w, v.Message(), depth+1)
		default:
			fmt.Fprintf(w, "%s%s: %s\n", pad, fd.Name(), scalarText(fd, v))
		}
	}
}

func scalarText(fd protoreflect.FieldDescriptor, v protoreflect.Value) string {
	if fd.Enum() != nil {
		ev := fd.Enum().Values().ByNumber(v.Enum())
		if ev == nil {
			return fmt.Sprint(v.Enum())
		}
		prefix := strings.TrimSuffix(string(fd.Enum().Values().ByNumber(0).Name()), "UNSPECIFIED")
		return strings.TrimPrefix(string(ev.Name()), prefix)
	}
	if fd.Kind() == protoreflect.BytesKind {
		return string(v.Bytes())
	}
	return v.String()
}
