package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"runtime/debug"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"buf.build/go/protovalidate"
	"github.com/google/uuid"
	"go.opentelemetry.io/otel/trace"
	rpccode "google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/careteam/careteam/server/internal/audit"
	"github.com/careteam/careteam/server/internal/auth"
	"github.com/careteam/careteam/server/internal/careteam"
)

// RequestIDHeader carries a caller's request id (echoed back, and generated
// when absent) so that a call can be found in the logs.
const RequestIDHeader = "x-request-id"

type ctxKey int

const callKey ctxKey = 0

// call is what the pipeline learns about a call as it runs; observe creates
// it, authentication fills in the principal, and observe's log line and the
// handlers read it.
type call struct {
	requestID string
	principal *careteam.Principal
	// scopes are an integration's token's scopes (SMART Backend
	// Services); scoped is false for a caller they do not restrict.
	scopes []string
	scoped bool
	// expiry is when the caller's credential runs out: a stream it opened
	// ends then.
	expiry time.Time
}

func callFrom(ctx context.Context) *call {
	c, _ := ctx.Value(callKey).(*call)
	if c == nil {
		return &call{}
	}
	return c
}

// RequestID returns the request id of the call in ctx.
func RequestID(ctx context.Context) string { return callFrom(ctx).requestID }

// principalFrom returns the authenticated caller. Every careteam method
// runs behind authentication, so a missing principal is a wiring bug and
// refused as unauthenticated rather than served anonymously.
func principalFrom(ctx context.Context) (careteam.Principal, error) {
	p := callFrom(ctx).principal
	if p == nil {
		return careteam.Principal{}, careteam.ErrUnauthenticated
	}
	return *p, nil
}

// AuditWriter writes an audit record on its own, for calls whose
// transaction did not write it.
type AuditWriter interface {
	AppendAudit(ctx context.Context, r audit.Record) error
}

// TokenVerifier proves who a bearer token belongs to.
type TokenVerifier interface {
	Verify(ctx context.Context, raw string) (auth.Identity, error)
}

// interceptors holds what the call pipeline needs: observe (request id,
// status mapping, one log line) -> recover -> authenticate -> validate ->
// handler.
type interceptors struct {
	log       *slog.Logger
	ready     func() bool
	audit     AuditWriter
	limiter   *limiter
	verifier  TokenVerifier
	service   *careteam.Service
	validator protovalidate.Validator
	failures  *authFailures
}

var requestIDPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// public lists the services callable without a token: they carry no
// patient data.
func public(fullMethod string) bool {
	return strings.HasPrefix(fullMethod, "/grpc.health.v1.") || strings.HasPrefix(fullMethod, "/grpc.reflection.")
}

func (in *interceptors) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	const streaming = false
	// Every call ends: one without a deadline gets the default.
	if _, ok := ctx.Deadline(); !ok && in.limiter.limits.DefaultTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, in.limiter.limits.DefaultTimeout)
		defer cancel()
	}
	// Taken at once, so that a call refused before validation leaves
	// nothing behind.
	undecoded := takeUndecodable(req)
	ctx, done := in.observe(ctx, info.FullMethod)
	resp, err := in.guard(ctx, info.FullMethod, streaming, func(ctx context.Context) (any, error) {
		if undecoded != nil {
			return nil, undecoded
		}
		if err := in.validate(req); err != nil {
			return nil, err
		}
		if err := checkScope(ctx, info.FullMethod, req); err != nil {
			return nil, err
		}
		return handler(ctx, req)
	})
	return resp, done(err)
}

func (in *interceptors) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx, done := in.observe(ss.Context(), info.FullMethod)
	_, err := in.guard(ctx, info.FullMethod, info.IsServerStream, func(ctx context.Context) (any, error) {
		if err := checkScope(ctx, info.FullMethod, nil); err != nil {
			return nil, err
		}
		return nil, handler(srv, &serverStream{ServerStream: ss, ctx: ctx, in: in})
	})
	return done(err)
}

// observe gives the call its request id and returns the function that ends
// it: map the error to a status (the one place that does), log one line.
func (in *interceptors) observe(ctx context.Context, method string) (context.Context, func(error) error) {
	start := time.Now()
	id := ""
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get(RequestIDHeader); len(v) > 0 && requestIDPattern.MatchString(v[0]) {
			id = v[0]
		}
	}
	if id == "" {
		// With tracing on, the request id is the trace id, so a log line
		// leads to its trace.
		if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
			id = sc.TraceID().String()
		} else {
			id = uuid.NewString()
		}
	}
	c := &call{requestID: id}
	ctx = context.WithValue(ctx, callKey, c)
	// The header is informational; a failure to send it must not fail the
	// call.
	_ = grpc.SetHeader(ctx, metadata.Pairs(RequestIDHeader, id))
	return ctx, func(err error) error {
		attrs := []slog.Attr{
			slog.String("method", method),
			slog.String("request_id", id),
			slog.Duration("duration", time.Since(start)),
		}
		if p := c.principal; p != nil {
			attrs = append(attrs, slog.String("principal", principalLogName(*p)))
			if p.Via != uuid.Nil { // an integration's call: both
				attrs = append(attrs, slog.String("via", careteam.Practitioners.Name(p.Via)))
			}
		}
		if addr := peerAddr(ctx); addr != "" {
			attrs = append(attrs, slog.String("peer", addr))
		}
		var st *status.Status
		if err != nil {
			var internal bool
			st, internal = toStatus(err)
			if internal {
				// Domain and store errors carry ids only; this is the one
				// place the cause of an internal error is recorded.
				attrs = append(attrs, slog.String("cause", err.Error()))
			}
		}
		code := st.Code()
		attrs = append(attrs, slog.String("code", code.String()))
		level := slog.LevelInfo
		switch code {
		case codes.Internal, codes.Unknown, codes.DataLoss:
			level = slog.LevelError
		case codes.Unavailable, codes.DeadlineExceeded:
			level = slog.LevelWarn
		}
		in.log.LogAttrs(ctx, level, "rpc", attrs...)
		return st.Err()
	}
}

func principalLogName(p careteam.Principal) string {
	if p.Bootstrap {
		return "bootstrap-admin"
	}
	return p.Name()
}

// guard authenticates the caller and keeps the call's audit record before
// running next.
func (in *interceptors) guard(ctx context.Context, method string, streaming bool, next func(context.Context) (any, error)) (resp any, err error) {
	if public(method) {
		return in.protect(ctx, method, next)
	}
	if !in.ready() {
		return nil, errStarting
	}
	entry := audit.NewEntry(audit.Record{
		Time: in.service.Now(), Method: method, RequestID: RequestID(ctx), Peer: peerAddr(ctx), Purpose: audit.PurposeTreatment,
	})
	if streaming {
		// A stream's record is written when it ends, listing everything it
		// delivered, not by its first transaction.
		entry.Hold()
	}
	defer func() {
		entry.Release()
		err = in.finishAudit(ctx, entry, err)
	}()
	return in.protect(ctx, method, func(ctx context.Context) (any, error) {
		// A peer that keeps failing authentication is refused before its
		// credentials cost anything more to check.
		host := peerHost(peerAddr(ctx))
		if !in.limiter.peerMayTry(host, time.Now()) {
			return nil, errAuthFailures
		}
		if err := in.authenticate(ctx, entry); err != nil {
			if st, _ := toStatus(err); st.Code() == codes.Unauthenticated {
				in.limiter.peerFailed(host, time.Now())
			}
			return nil, err
		}
		p := callFrom(ctx).principal
		if !in.limiter.allow(p.Subject, time.Now()) {
			return nil, errRateLimited
		}
		if streaming {
			release, ok := in.limiter.openStream(p.Subject)
			if !ok {
				return nil, errStreamLimit(in.limiter.limits.StreamsPerPrincipal)
			}
			defer release()
		}
		// From here on the work's transaction writes the record.
		return next(audit.NewContext(ctx, entry))
	})
}

// protect recovers a panic into INTERNAL, so one bad call never takes the
// server down, and its audit record says it failed.
func (in *interceptors) protect(ctx context.Context, method string, next func(context.Context) (any, error)) (resp any, err error) {
	defer func() {
		if r := recover(); r != nil {
			in.log.ErrorContext(ctx, "panic", "method", method, "request_id", RequestID(ctx),
				"panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			resp, err = nil, errInternal
		}
	}()
	return next(ctx)
}

// finishAudit writes the call's audit record unless its transaction did:
// a denied or failed call, or an authentication failure, is recorded on its
// own. A successful call whose record cannot be written fails: no patient
// data leaves unaudited.
func (in *interceptors) finishAudit(ctx context.Context, entry *audit.Entry, err error) error {
	st, _ := toStatus(err)
	r, ok := entry.Take(rpccode.Code_name[int32(st.Code())])
	if !ok {
		return err
	}
	// Calls of no known subject (a stream whose token expired has one, and
	// keeps its own record of what it delivered).
	if r.Subject == "" && (st.Code() == codes.Unauthenticated || st.Code() == codes.ResourceExhausted) {
		write, ended := in.failures.admit(r, in.service.Now())
		in.appendAudit(ctx, ended...)
		if !write {
			return err
		}
	}
	if werr := appendDetached(ctx, in.audit, r); werr != nil {
		in.log.ErrorContext(ctx, "audit record not written", "request_id", RequestID(ctx), "error", werr.Error())
		if err == nil {
			return errAuditUnavailable
		}
	}
	return err
}

// appendAudit writes records that belong to no call in flight, such as the
// summaries of failed authentications; a failure is logged, not returned.
func (in *interceptors) appendAudit(ctx context.Context, rs ...audit.Record) {
	for _, r := range rs {
		if err := appendDetached(ctx, in.audit, r); err != nil {
			in.log.ErrorContext(ctx, "audit record not written", "request_id", r.RequestID, "error", err.Error())
		}
	}
}

// appendDetached writes r even if the caller has gone, but not forever: a
// stuck database must not hold the call, and its connection, with it.
func appendDetached(ctx context.Context, w AuditWriter, r audit.Record) error {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	return w.AppendAudit(actx, r)
}

// authenticate verifies the bearer token, or for a call without one the
// connection's client certificate, maps its subject to a principal from
// the directory, and notes who is calling and why in the audit entry.
func (in *interceptors) authenticate(ctx context.Context, entry *audit.Entry) error {
	cred, err := in.subject(ctx)
	if err != nil {
		return err
	}
	subject := cred.subject
	callFrom(ctx).expiry = cred.expiry
	entry.Identify(subject, uuid.Nil, "", uuid.Nil)
	p, err := in.service.Authenticate(ctx, subject)
	if err != nil {
		return err
	}
	if p.Purpose, p.EmergencyReason, err = purposeOfUse(ctx); err != nil {
		return err
	}
	if p, err = in.actFor(audit.NewContext(ctx, entry), p, cred); err != nil {
		return err
	}
	entry.Identify(subject, p.PractitionerID, string(p.Role), p.OrganizationID)
	entry.SetPurpose(p.Purpose, p.EmergencyReason)
	callFrom(ctx).principal = &p
	return nil
}

// subject returns the subject the call proves, and when the proof runs
// out: its bearer token's, or without one, its verified client
// certificate's.
// credential is what a call proves: a subject, until when, and for a
// token, its scopes.
type credential struct {
	subject string
	expiry  time.Time
	token   bool
	scopes  []string
}

func (in *interceptors) subject(ctx context.Context) (credential, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	values := md.Get("authorization")
	if len(values) == 0 {
		if subject, expiry, ok := certificateSubject(ctx); ok {
			return credential{subject: subject, expiry: expiry}, nil
		}
	}
	if len(values) != 1 {
		return credential{}, errTokenMissing
	}
	raw, ok := strings.CutPrefix(values[0], "Bearer ")
	if !ok {
		return credential{}, errTokenMalformed
	}
	id, err := in.verifier.Verify(ctx, strings.TrimSpace(raw))
	if errors.Is(err, auth.ErrUnauthenticated) {
		return credential{}, errTokenInvalid
	}
	if err != nil {
		in.log.WarnContext(ctx, "token keys unavailable", "request_id", RequestID(ctx), "error", err.Error())
		return credential{}, errKeysUnavailable
	}
	return credential{subject: id.Subject, expiry: id.Expiry, token: true, scopes: id.Scopes}, nil
}

// Headers that say why a call accesses data.
const (
	purposeHeader         = "x-purpose-of-use"
	emergencyReasonHeader = "x-emergency-reason"
)

// purposeOfUse reads the call's purpose of use (TREATMENT by default) and,
// for EMERGENCY, the reason, which is then required.
func purposeOfUse(ctx context.Context) (purpose, reason string, err error) {
	md, _ := metadata.FromIncomingContext(ctx)
	purpose = audit.PurposeTreatment
	if v := md.Get(purposeHeader); len(v) > 0 {
		purpose = strings.ToUpper(v[0])
	}
	switch purpose {
	case audit.PurposeTreatment, audit.PurposePayment, audit.PurposeOperations:
		return purpose, "", nil
	case audit.PurposeEmergency:
		if v := md.Get(emergencyReasonHeader); len(v) > 0 && strings.TrimSpace(v[0]) != "" && len(v[0]) <= 1000 && printable(v[0]) {
			return purpose, strings.TrimSpace(v[0]), nil
		}
		return "", "", invalid(emergencyReasonHeader, "required with purpose EMERGENCY: at most 1000 bytes of UTF-8 text, without control characters")
	}
	return "", "", invalid(purposeHeader, "must be TREATMENT, PAYMENT, OPERATIONS or EMERGENCY")
}

// printable reports whether s is UTF-8 text without control characters.
func printable(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsFunc(s, unicode.IsControl)
}

func peerAddr(ctx context.Context) string {
	if pr, ok := peer.FromContext(ctx); ok {
		return pr.Addr.String()
	}
	return ""
}

// certificateSubject returns the Common Name of the connection's client
// certificate, which names a subject the way a token's "sub" does. Only a
// chain the handshake verified against the client CAs counts; a server
// configured without them never asks for a certificate.
func certificateSubject(ctx context.Context) (string, time.Time, bool) {
	pr, ok := peer.FromContext(ctx)
	if !ok {
		return "", time.Time{}, false
	}
	info, ok := pr.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return "", time.Time{}, false
	}
	leaf := info.State.VerifiedChains[0][0]
	return leaf.Subject.CommonName, leaf.NotAfter, leaf.Subject.CommonName != ""
}

// validate refuses a request that did not decode or has a shape no request
// may have (see wire.go), then applies its protovalidate rules, and reports
// every bad field.
func (in *interceptors) validate(req any) error {
	msg, ok := req.(proto.Message)
	if !ok {
		return nil
	}
	if err := takeUndecodable(msg); err != nil {
		return err
	}
	if vs := shapeViolations(msg.ProtoReflect()); len(vs) > 0 {
		return &careteam.InvalidError{Violations: vs}
	}
	err := in.validator.Validate(msg)
	var verr *protovalidate.ValidationError
	if errors.As(err, &verr) {
		inv := &careteam.InvalidError{}
		for _, v := range verr.Violations {
			inv.Violations = append(inv.Violations, careteam.FieldViolation{
				Field:       protovalidate.FieldPathString(v.Proto.GetField()),
				Description: v.Proto.GetMessage(),
			})
		}
		return inv
	}
	return err
}

// serverStream gives a stream handler the call's context and validates
// each message it receives.
type serverStream struct {
	grpc.ServerStream
	ctx context.Context
	in  *interceptors
}

func (s *serverStream) Context() context.Context { return s.ctx }

func (s *serverStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return s.in.validate(m)
}
