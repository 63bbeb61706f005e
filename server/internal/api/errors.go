package api

import (
	"context"
	"errors"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"

	"github.com/careteam/careteam/server/internal/careteam"
)

// toStatus is the one place that maps errors to gRPC status codes. Domain
// errors carry resource ids only, so their text is safe to return; anything
// unexpected becomes INTERNAL with a generic message, and the caller of
// toStatus logs the cause.
func toStatus(err error) (st *status.Status, internal bool) {
	if s, ok := status.FromError(err); ok {
		return s, false
	}
	var invalid *careteam.InvalidError
	var precondition *careteam.PreconditionError
	switch {
	case errors.As(err, &invalid):
		// However many fields are bad, the answer stays small.
		capped := &careteam.InvalidError{Violations: capViolations(invalid.Violations)}
		br := &errdetails.BadRequest{}
		for _, v := range capped.Violations {
			br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{Field: v.Field, Description: v.Description})
		}
		return withDetails(codes.InvalidArgument, capped.Error(), br), false
	case errors.As(err, &precondition):
		pf := &errdetails.PreconditionFailure{}
		for _, v := range precondition.Violations {
			pf.Violations = append(pf.Violations, &errdetails.PreconditionFailure_Violation{Type: v.Type, Subject: v.Subject, Description: v.Description})
		}
		return withDetails(codes.FailedPrecondition, precondition.Error(), pf), false
	case errors.Is(err, careteam.ErrUnauthenticated):
		return status.New(codes.Unauthenticated, err.Error()), false
	case errors.Is(err, careteam.ErrPermissionDenied):
		return status.New(codes.PermissionDenied, err.Error()), false
	case errors.Is(err, careteam.ErrNotFound):
		return status.New(codes.NotFound, err.Error()), false
	case errors.Is(err, careteam.ErrAlreadyExists):
		return status.New(codes.AlreadyExists, err.Error()), false
	case errors.Is(err, careteam.ErrStaleEtag), errors.Is(err, careteam.ErrConflict):
		return status.New(codes.Aborted, err.Error()), false
	case errors.Is(err, careteam.ErrUnavailable):
		return status.New(codes.Unavailable, "the database is unavailable; retry"), false
	case errors.Is(err, context.DeadlineExceeded):
		return status.New(codes.DeadlineExceeded, "deadline exceeded"), false
	case errors.Is(err, context.Canceled):
		return status.New(codes.Canceled, "canceled"), false
	}
	return status.New(codes.Internal, "internal error"), true
}

// withDetails attaches detail to a status; the details are small protos of
// our own making, so attaching them cannot fail.
func withDetails(c codes.Code, msg string, detail protoadapt.MessageV1) *status.Status {
	st, err := status.New(c, msg).WithDetails(detail)
	if err != nil {
		return status.New(c, msg)
	}
	return st
}
