package api

import (
	"fmt"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/careteam/careteam/server/internal/careteam"
)

// violations collects the field errors of converting one request, so the
// caller hears about every bad field at once.
type violations struct{ list []careteam.FieldViolation }

func (v *violations) add(err error) {
	if inv, ok := err.(*careteam.InvalidError); ok {
		v.list = append(v.list, inv.Violations...)
	}
}

// name parses a required resource name of c.
func (v *violations) name(c careteam.Collection, field, name string) uuid.UUID {
	id, err := parseName(c, field, name)
	v.add(err)
	return id
}

// optionalName parses a resource name of c that may be empty.
func (v *violations) optionalName(c careteam.Collection, field, name string) uuid.UUID {
	id, err := parseOptionalName(c, field, name)
	v.add(err)
	return id
}

// time converts an optional timestamp.
func (v *violations) time(field string, ts *timestamppb.Timestamp) time.Time {
	t, err := timeOf(field, ts)
	v.add(err)
	return t
}

// date parses an optional "YYYY-MM-DD".
func (v *violations) date(field, s string) time.Time {
	t, err := parseDate(field, s)
	v.add(err)
	return t
}

func (v *violations) err() error {
	if len(v.list) == 0 {
		return nil
	}
	return &careteam.InvalidError{Violations: v.list}
}

func indexed(field string, i int) string { return fmt.Sprintf("%s[%d]", field, i) }
