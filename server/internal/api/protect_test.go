package api

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"google.golang.org/grpc/codes"
)

// TestPanicBecomesInternal: a handler that panics fails its call with
// INTERNAL and leaves the server running.
func TestPanicBecomesInternal(t *testing.T) {
	t.Parallel()
	in := &interceptors{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	resp, err := in.protect(context.Background(), "/careteam.v1.X/Y", func(context.Context) (any, error) {
		var m map[string]int
		m["boom"]++ // a nil map write panics
		return "unreachable", nil
	})
	if st, _ := toStatus(err); resp != nil || st.Code() != codes.Internal {
		t.Fatalf("got %v, %v", resp, err)
	}
	// The next call runs normally.
	resp, err = in.protect(context.Background(), "/careteam.v1.X/Y", func(context.Context) (any, error) { return "ok", nil })
	if resp != "ok" || err != nil {
		t.Fatalf("after a panic: %v, %v", resp, err)
	}
}
