package careteam

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Sentinel errors. Each maps to one gRPC status code in the API layer; their
// messages, and the context wrapped around them, carry resource ids only,
// never patient data.
var (
	// ErrUnauthenticated: no valid identity.
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrPermissionDenied: the caller may not do this, or may not know that
	// the resource exists.
	ErrPermissionDenied = errors.New("permission denied")
	// ErrNotFound: the resource does not exist (and the caller may know so).
	ErrNotFound = errors.New("not found")
	// ErrAlreadyExists: a unique key is taken.
	ErrAlreadyExists = errors.New("already exists")
	// ErrStaleEtag: the caller's etag is not the resource's current one.
	ErrStaleEtag = errors.New("etag does not match the current version; read the resource again")
	// ErrConflict: a concurrent change won; retrying may succeed.
	ErrConflict = errors.New("concurrent change; retry")
	// ErrUnavailable: the database cannot be reached; retrying may succeed.
	ErrUnavailable = errors.New("database unavailable")
)

// FieldViolation is one bad field of a request; Field is its path in the
// request, such as "patient.family_name".
type FieldViolation struct {
	Field       string
	Description string
}

// InvalidError reports every bad field of a request.
type InvalidError struct {
	Violations []FieldViolation
}

func (e *InvalidError) Error() string {
	parts := make([]string, len(e.Violations))
	for i, v := range e.Violations {
		parts[i] = v.Field + ": " + v.Description
	}
	return "invalid request: " + strings.Join(parts, "; ")
}

// fields collects field violations; its err is nil when there are none.
type fields struct {
	violations []FieldViolation
	// pending counts the violations it started with (see fieldsFor): a
	// field they name is not reported again.
	pending int
}

type invalidKey struct{}

// WithInvalid returns ctx carrying the bad fields found in a request before
// its use case ran, such as a date that does not parse, so that the use
// case's validation reports them with its own in one answer. While any is
// pending nothing is written (see mutate).
func WithInvalid(ctx context.Context, vs []FieldViolation) context.Context {
	return context.WithValue(ctx, invalidKey{}, vs)
}

// fieldsFor starts a collector with the bad fields ctx carries.
func fieldsFor(ctx context.Context) fields {
	vs, _ := ctx.Value(invalidKey{}).([]FieldViolation)
	return fields{violations: slices.Clone(vs), pending: len(vs)}
}

func (f *fields) add(field, format string, args ...any) {
	if slices.ContainsFunc(f.violations[:f.pending], func(v FieldViolation) bool { return v.Field == field }) {
		return
	}
	f.violations = append(f.violations, FieldViolation{Field: field, Description: fmt.Sprintf(format, args...)})
}

func (f *fields) err() error {
	if len(f.violations) == 0 {
		return nil
	}
	return &InvalidError{Violations: f.violations}
}

// Violation is one unmet condition of a rule, such as the session gate's
// CLEARANCE_EXPIRED. Subject is the resource it concerns.
type Violation struct {
	Type        string
	Subject     string
	Description string
}

// PreconditionError reports why a rule or the state of a resource refuses a
// request, with every unmet condition.
type PreconditionError struct {
	Violations []Violation
}

func (e *PreconditionError) Error() string {
	parts := make([]string, len(e.Violations))
	for i, v := range e.Violations {
		parts[i] = v.Type + " (" + v.Subject + "): " + v.Description
	}
	return "failed precondition: " + strings.Join(parts, "; ")
}

// precondition returns a PreconditionError with one violation.
func precondition(typ, subject, format string, args ...any) error {
	return &PreconditionError{Violations: []Violation{{Type: typ, Subject: subject, Description: fmt.Sprintf(format, args...)}}}
}
