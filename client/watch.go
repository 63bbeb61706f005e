package client

import (
	"context"
	"errors"
	"io"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/careteam/careteam/proto/careteam/v1"
)

// Watch streams the events req asks for to handle, in cursor order,
// reconnecting with backoff after a dropped stream and resuming after the
// last cursor handled, so nothing is missed (delivery is at least once:
// handle may see an event again after a reconnect only if it failed); a
// stream that outlived its credential reconnects with a fresh token. It
// returns when ctx ends, when handle returns an error, or on an error a
// retry cannot fix (OUT_OF_RANGE: the cursor was pruned; resynchronize).
// req.AfterCursor is where it starts.
func (c *Client) Watch(ctx context.Context, req *pb.WatchEventsRequest, handle func(*pb.Event) error) error {
	req = proto.Clone(req).(*pb.WatchEventsRequest)
	backoff := 100 * time.Millisecond
	for {
		err := c.watchOnce(ctx, req, handle, func() { backoff = 100 * time.Millisecond })
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var handlerErr handleError
		if errors.As(err, &handlerErr) {
			return handlerErr.err
		}
		// A stream that outlived its credential reconnects with a fresh
		// one; other refusals a retry cannot fix end the watch.
		if Reason(err) != pb.ErrorReason_ERROR_REASON_CREDENTIAL_EXPIRED {
			switch status.Code(err) {
			case codes.OutOfRange, codes.PermissionDenied, codes.Unauthenticated, codes.InvalidArgument, codes.Unimplemented:
				return err
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}

type handleError struct{ err error }

func (h handleError) Error() string { return h.err.Error() }

// watchOnce runs one stream, advancing req.AfterCursor as events are
// handled; healthy is called when the stream delivers.
func (c *Client) watchOnce(ctx context.Context, req *pb.WatchEventsRequest, handle func(*pb.Event) error, healthy func()) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.Events.WatchEvents(ctx, req)
	if err != nil {
		return err
	}
	for {
		msg, err := stream.Recv()
		if err == io.EOF {
			return status.Error(codes.Unavailable, "the event stream ended")
		}
		if err != nil {
			return err
		}
		healthy()
		if e := msg.GetEvent(); e != nil {
			if err := handle(e); err != nil {
				return handleError{err}
			}
			req.AfterCursor = e.GetCursor()
		}
	}
}
