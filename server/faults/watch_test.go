package faults

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/careteam/careteam/client"
	pb "github.com/careteam/careteam/proto/careteam/v1"
)

// watch is a client.Watch from the first event on, kept for comparison
// with what ListEvents lists.
type watch struct {
	mu   sync.Mutex
	got  []*pb.Event
	stop func() error // ends the watch and returns how it ended
}

// watchEvents watches every event c's subject may see until the test ends
// or check is called.
func watchEvents(t *testing.T, ctx context.Context, c *client.Client) *watch {
	t.Helper()
	w := &watch{}
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- c.Watch(wctx, &pb.WatchEventsRequest{}, func(e *pb.Event) error {
			w.mu.Lock()
			w.got = append(w.got, e)
			w.mu.Unlock()
			return nil
		})
	}()
	w.stop = sync.OnceValue(func() error {
		cancel()
		return <-done
	})
	t.Cleanup(func() { _ = w.stop() })
	return w
}

func (w *watch) received() []*pb.Event {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.got
}

// check waits until the watcher has received every event direct lists,
// then compares: each exactly once, in cursor order, the same event. The
// watch must have resumed by itself until now.
func (w *watch) check(t *testing.T, ctx context.Context, direct *client.Client) {
	t.Helper()
	var want []*pb.Event
	req := &pb.ListEventsRequest{PageSize: 1000}
	for {
		resp, err := direct.Events.ListEvents(ctx, req)
		if err != nil {
			t.Fatalf("ListEvents: %v", err)
		}
		want = append(want, resp.GetEvents()...)
		if resp.GetNextPageToken() == "" {
			break
		}
		req.PageToken = resp.GetNextPageToken()
	}
	if len(want) == 0 {
		t.Fatal("no events listed")
	}
	last := want[len(want)-1].GetCursor()
	if !waitUntil(20*time.Second, func() bool {
		got := w.received()
		return len(got) > 0 && got[len(got)-1].GetCursor() >= last
	}) {
		t.Fatalf("the watcher received %d events in 20s, not up to cursor %d (%d listed)", len(w.received()), last, len(want))
	}
	if err := w.stop(); err != context.Canceled {
		t.Errorf("Watch ended with %v, want it to resume until cancelled", err)
	}
	got := w.received()
	for i := 1; i < len(got); i++ {
		if got[i].GetCursor() <= got[i-1].GetCursor() {
			t.Errorf("watched event %d has cursor %d after %d: a duplicate or out of order", i, got[i].GetCursor(), got[i-1].GetCursor())
		}
	}
	wantByCursor := map[int64]*pb.Event{}
	for _, e := range want {
		wantByCursor[e.GetCursor()] = e
	}
	seen := map[int64]bool{}
	for _, e := range got {
		w, ok := wantByCursor[e.GetCursor()]
		switch {
		case !ok:
			t.Errorf("watched event at cursor %d (%s) is not listed", e.GetCursor(), e.GetId())
		case w.GetId() != e.GetId() || w.GetType() != e.GetType() || w.GetResource() != e.GetResource():
			t.Errorf("cursor %d: watched %s %v %s, listed %s %v %s", e.GetCursor(),
				e.GetId(), e.GetType(), e.GetResource(), w.GetId(), w.GetType(), w.GetResource())
		}
		seen[e.GetCursor()] = true
	}
	missing := 0
	for _, e := range want {
		if !seen[e.GetCursor()] {
			missing++
			if missing <= 10 {
				t.Errorf("listed event at cursor %d (%v %s) was never watched", e.GetCursor(), e.GetType(), e.GetResource())
			}
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d events never reached the watcher", missing, len(want))
	}
	t.Logf("the watcher received %d events, %d listed", len(got), len(want))
}
