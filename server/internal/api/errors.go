package api

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"

	pb "github.com/careteam/careteam/proto/careteam/v1"
	"github.com/careteam/careteam/server/internal/careteam"
)

// errorDomain is the domain of every google.rpc.ErrorInfo careteamd sends.
const errorDomain = "careteam"

// callError is a refusal of the call pipeline itself: a credential, a
// limit, the server's state. Like the domain's errors it is a plain error
// until toStatus makes it a status.
type callError struct {
	code   codes.Code
	reason pb.ErrorReason
	msg    string
	meta   map[string]string
}

func (e *callError) Error() string { return e.msg }

// refusal returns a callError.
func refusal(code codes.Code, reason pb.ErrorReason, format string, args ...any) *callError {
	return &callError{code: code, reason: reason, msg: fmt.Sprintf(format, args...)}
}

// with adds ErrorInfo metadata.
func (e *callError) with(key, value string) *callError {
	if e.meta == nil {
		e.meta = map[string]string{}
	}
	e.meta[key] = value
	return e
}

// The pipeline's refusals.
var (
	errStarting          = refusal(codes.Unavailable, pb.ErrorReason_ERROR_REASON_SERVER_STARTING, "careteamd is starting: the database schema is being brought up to date; retry")
	errStopping          = refusal(codes.Unavailable, pb.ErrorReason_ERROR_REASON_SERVER_STOPPING, "the server is shutting down; retry")
	errAuditUnavailable  = refusal(codes.Unavailable, pb.ErrorReason_ERROR_REASON_AUDIT_UNAVAILABLE, "the audit trail is unavailable; retry")
	errKeysUnavailable   = refusal(codes.Unavailable, pb.ErrorReason_ERROR_REASON_KEYS_UNAVAILABLE, "token verification keys are unavailable; retry")
	errTokenMissing      = refusal(codes.Unauthenticated, pb.ErrorReason_ERROR_REASON_TOKEN_MISSING, "a bearer token is required")
	errTokenMalformed    = refusal(codes.Unauthenticated, pb.ErrorReason_ERROR_REASON_TOKEN_MALFORMED, "the authorization header must be \"Bearer <token>\"")
	errTokenInvalid      = refusal(codes.Unauthenticated, pb.ErrorReason_ERROR_REASON_TOKEN_INVALID, "invalid token")
	errCredentialExpired = refusal(codes.Unauthenticated, pb.ErrorReason_ERROR_REASON_CREDENTIAL_EXPIRED, "the credential expired; reconnect with a fresh one")
	errRateLimited       = refusal(codes.ResourceExhausted, pb.ErrorReason_ERROR_REASON_RATE_LIMITED, "rate limit exceeded for this caller; retry later")
	errAuthFailures      = refusal(codes.ResourceExhausted, pb.ErrorReason_ERROR_REASON_AUTH_FAILURES_LIMITED, "too many failed authentications from this address; retry later")
	errWatcherTooSlow    = refusal(codes.ResourceExhausted, pb.ErrorReason_ERROR_REASON_WATCHER_TOO_SLOW, "the watcher fell too far behind")
	errInternal          = refusal(codes.Internal, pb.ErrorReason_ERROR_REASON_INTERNAL, "internal error")
)

// errStreamLimit is the refusal of a stream past the caller's limit.
func errStreamLimit(limit int) error {
	return refusal(codes.ResourceExhausted, pb.ErrorReason_ERROR_REASON_STREAM_LIMIT_REACHED,
		"this caller holds the most streams it may (%d) open on this server; close one", limit).with("limit", strconv.Itoa(limit))
}

// resumable is the end of an event stream, which the caller resumes after
// cursor once err's cause is gone.
type resumable struct {
	err    error
	cursor int64
}

func (r *resumable) Error() string { return fmt.Sprintf("%v; resume after cursor %d", r.err, r.cursor) }
func (r *resumable) Unwrap() error { return r.err }

func resumeAfter(cursor int64, err error) error { return &resumable{err: err, cursor: cursor} }

// toStatus is the one place that turns errors into gRPC statuses: the
// domain's, the store's (as domain sentinels) and the pipeline's own, each
// with a google.rpc.ErrorInfo naming its reason (see ErrorReason in
// proto/careteam/v1/errors.proto). Domain errors carry resource ids only,
// so their text is safe to return; anything unexpected becomes INTERNAL
// with a generic message, and the caller of toStatus logs the cause.
func toStatus(err error) (st *status.Status, internal bool) {
	if s, ok := status.FromError(err); ok {
		// gRPC's own, such as a transport failure while sending.
		return s, false
	}
	meta := map[string]string{}
	var r *resumable
	if errors.As(err, &r) {
		meta["resume_after_cursor"] = strconv.FormatInt(r.cursor, 10)
	}
	build := func(c codes.Code, reason pb.ErrorReason, msg string, details ...protoadapt.MessageV1) *status.Status {
		info := &errdetails.ErrorInfo{Reason: reasonName(reason), Domain: errorDomain}
		if len(meta) > 0 {
			info.Metadata = meta
		}
		st, werr := status.New(c, msg).WithDetails(append([]protoadapt.MessageV1{info}, details...)...)
		if werr != nil {
			// The details are small protos of our own making.
			return status.New(c, msg)
		}
		return st
	}
	var (
		call         *callError
		invalid      *careteam.InvalidError
		precondition *careteam.PreconditionError
		cursor       *careteam.CursorError
	)
	switch {
	case errors.As(err, &call):
		for k, v := range call.meta {
			meta[k] = v
		}
		return build(call.code, call.reason, err.Error()), call.code == codes.Internal
	case errors.As(err, &invalid):
		// However many fields are bad, the answer stays small.
		capped := &careteam.InvalidError{Violations: capViolations(invalid.Violations)}
		br := &errdetails.BadRequest{}
		for _, v := range capped.Violations {
			br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{Field: v.Field, Description: v.Description})
		}
		return build(codes.InvalidArgument, pb.ErrorReason_ERROR_REASON_REQUEST_INVALID, capped.Error(), br), false
	case errors.As(err, &precondition):
		pf := &errdetails.PreconditionFailure{}
		for _, v := range precondition.Violations {
			pf.Violations = append(pf.Violations, &errdetails.PreconditionFailure_Violation{Type: v.Type, Subject: v.Subject, Description: v.Description})
		}
		return build(codes.FailedPrecondition, pb.ErrorReason_ERROR_REASON_PRECONDITION_FAILED, precondition.Error(), pf), false
	case errors.As(err, &cursor):
		meta["oldest_cursor"] = strconv.FormatInt(cursor.Oldest, 10)
		return build(codes.OutOfRange, pb.ErrorReason_ERROR_REASON_CURSOR_PRUNED, cursor.Error()), false
	case errors.Is(err, careteam.ErrUnauthenticated):
		return build(codes.Unauthenticated, pb.ErrorReason_ERROR_REASON_TOKEN_MISSING, err.Error()), false
	case errors.Is(err, careteam.ErrPermissionDenied):
		reason := pb.ErrorReason_ERROR_REASON_PERMISSION_DENIED
		if r != nil {
			reason = pb.ErrorReason_ERROR_REASON_ACCESS_ENDED
		}
		return build(codes.PermissionDenied, reason, err.Error()), false
	case errors.Is(err, careteam.ErrNotFound):
		return build(codes.NotFound, pb.ErrorReason_ERROR_REASON_NOT_FOUND, err.Error()), false
	case errors.Is(err, careteam.ErrAlreadyExists):
		return build(codes.AlreadyExists, pb.ErrorReason_ERROR_REASON_ALREADY_EXISTS, err.Error()), false
	case errors.Is(err, careteam.ErrStaleEtag):
		return build(codes.Aborted, pb.ErrorReason_ERROR_REASON_ETAG_STALE, err.Error()), false
	case errors.Is(err, careteam.ErrConflict):
		return build(codes.Aborted, pb.ErrorReason_ERROR_REASON_CONCURRENT_CHANGE, err.Error()), false
	case errors.Is(err, careteam.ErrUnavailable):
		return build(codes.Unavailable, pb.ErrorReason_ERROR_REASON_DATABASE_UNAVAILABLE, "the database is unavailable; retry"), false
	case errors.Is(err, context.DeadlineExceeded):
		return build(codes.DeadlineExceeded, pb.ErrorReason_ERROR_REASON_DEADLINE_EXCEEDED, "deadline exceeded"), false
	case errors.Is(err, context.Canceled):
		return build(codes.Canceled, pb.ErrorReason_ERROR_REASON_CANCELLED, "canceled"), false
	}
	return build(codes.Internal, pb.ErrorReason_ERROR_REASON_INTERNAL, "internal error"), true
}

// reasonName is a reason as ErrorInfo carries it: its name without the
// enum's prefix.
func reasonName(r pb.ErrorReason) string {
	return strings.TrimPrefix(r.String(), "ERROR_REASON_")
}
