package api

import (
	"context"
	"errors"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"

	"github.com/careteam/careteam/server/internal/careteam"
)

// The shapes many handlers share: the authenticated caller, the request's
// resource name or new resource converted to the domain, one use case.

// onNamed runs a use case on the resource of collection c that a request
// names in its name field.
func onNamed[T any](ctx context.Context, c careteam.Collection, name string,
	call func(context.Context, careteam.Principal, uuid.UUID) (T, error),
) (T, error) {
	var zero T
	p, err := principalFrom(ctx)
	if err != nil {
		return zero, err
	}
	id, err := parseName(c, "name", name)
	if err != nil {
		return zero, err
	}
	return call(ctx, p, id)
}

// idempotentRequest is a request that carries an AIP-155 request_id.
type idempotentRequest interface {
	proto.Message
	GetRequestId() string
}

// create runs a create use case on the resource msg converted to the
// domain, keyed by the request's request_id so that a retry gets the first
// result.
func create[M any, In any, T any](ctx context.Context, req idempotentRequest, msg M, convert func(M) (In, error),
	call func(context.Context, careteam.Principal, In, careteam.Idempotency) (T, error),
) (T, error) {
	var zero T
	p, err := principalFrom(ctx)
	if err != nil {
		return zero, err
	}
	in, err := convert(msg)
	if ctx, err = withUnconverted(ctx, err); err != nil {
		return zero, err
	}
	return call(ctx, p, in, idempotency(req.GetRequestId(), req))
}

// withUnconverted hands the fields of a request that did not convert to the
// use case, whose own validation reports them with the rest in one answer;
// it writes nothing while any is pending. Other errors are returned.
func withUnconverted(ctx context.Context, err error) (context.Context, error) {
	var invalid *careteam.InvalidError
	if errors.As(err, &invalid) {
		return careteam.WithInvalid(ctx, invalid.Violations), nil
	}
	return ctx, err
}
