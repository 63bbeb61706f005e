package main

import (
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"

	pb "github.com/careteam/careteam/proto/careteam/v1"
)

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// enumFlag parses an enum flag by its value name without the enum's prefix,
// case-insensitively ("physician" for ROLE_PHYSICIAN).
func enumValue[E ~int32](field, v string) (E, error) {
	var zero E
	if v == "" {
		return zero, nil
	}
	d := any(zero).(protoreflect.Enum).Descriptor()
	prefix := strings.TrimSuffix(string(d.Values().ByNumber(0).Name()), "UNSPECIFIED")
	name := prefix + strings.ToUpper(strings.ReplaceAll(v, "-", "_"))
	if ev := d.Values().ByName(protoreflect.Name(name)); ev != nil && ev.Number() != 0 {
		return E(ev.Number()), nil
	}
	var names []string
	for i := 1; i < d.Values().Len(); i++ {
		names = append(names, strings.ToLower(strings.TrimPrefix(string(d.Values().Get(i).Name()), prefix)))
	}
	return zero, usagef("--%s: %q is not one of %s", field, v, strings.Join(names, ", "))
}

func enumValues[E ~int32](field string, vs []string) ([]E, error) {
	out := make([]E, 0, len(vs))
	for _, v := range vs {
		e, err := enumValue[E](field, v)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// identifiers parses "system|value" flags (the FHIR token syntax).
func identifiers(vs []string) ([]*pb.Identifier, error) {
	out := make([]*pb.Identifier, 0, len(vs))
	for _, v := range vs {
		id, err := identifier(v)
		if err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	return out, nil
}

func identifier(v string) (*pb.Identifier, error) {
	system, value, ok := strings.Cut(v, "|")
	if !ok || system == "" || value == "" {
		return nil, usagef("--identifier %q: want system|value", v)
	}
	return &pb.Identifier{System: system, Value: value}, nil
}

// oneArg returns the single positional argument a command takes.
func oneArg(args []string, what string) (string, error) {
	if len(args) != 1 {
		return "", usagef("want one argument: %s", what)
	}
	return args[0], nil
}
