package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/careteam/careteam/client"
	pb "github.com/careteam/careteam/proto/careteam/v1"
)

// watchLag is the pseudo-RPC under which watchers record each live
// event's delivery lag: from its commit (the event's time) to its arrival
// here.
const watchLag = "WatchEvents delivery lag"

// streamsPerCaller is how many streams careteamd lets one caller hold
// open (its default); the watchers never ask one subscriber for more.
const streamsPerCaller = 16

// watchers are the integrations' open WatchEvents streams.
type watchers struct {
	conns   *conns
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	n       int
	ended   atomic.Int64 // streams that ended with an error
	lastErr atomic.Value
	// phase receives the lag samples; swapped as phases change.
	phase atomic.Pointer[phaseStats]
}

// openWatchers opens n streams over their own connections, as the load's
// physicians, therapists and coordinators in turn (each sees only their
// own events), and the watch-only coordinators the plan added for n. Each starts from the newest event its subscriber may see,
// as an integration resuming from its stored cursor would, rather than
// replaying the run's history n times.
func (l *load) openWatchers(ctx context.Context, n int) (*watchers, error) {
	ws := &watchers{n: n, conns: &conns{}}
	if n == 0 {
		return ws, nil
	}
	for range l.cfg.watchConns {
		c, err := l.dial()
		if err != nil {
			ws.conns.close()
			return nil, err
		}
		ws.conns.list = append(ws.conns.list, c)
	}
	var subscribers []*actor
	for _, ph := range l.w.physicians {
		subscribers = append(subscribers, &ph.actor)
	}
	for _, th := range l.w.therapists {
		subscribers = append(subscribers, &th.actor)
	}
	subscribers = append(subscribers, l.w.coordinators...)
	subscribers = append(subscribers, l.w.watchOnly...)
	cursors := make([]int64, len(subscribers))
	err := l.parallel(ctx, "watchers' cursors", len(subscribers), func(i int) error {
		var err error
		cursors[i], err = latestCursor(ctx, l.calls.pick(), subscribers[i])
		return err
	})
	if err != nil {
		ws.conns.close()
		return nil, err
	}
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	ws.cancel = cancel
	for i := range n {
		k := i % len(subscribers)
		a, c := subscribers[k], ws.conns.list[i%len(ws.conns.list)]
		ws.wg.Go(func() {
			err := c.Watch(as(wctx, a), &pb.WatchEventsRequest{AfterCursor: cursors[k]}, func(e *pb.Event) error {
				if ph := ws.phase.Load(); ph != nil {
					ph.detail(watchLag, time.Since(e.GetTime().AsTime()), nil)
				}
				return nil
			})
			if err != nil && !errors.Is(err, context.Canceled) {
				ws.ended.Add(1)
				ws.lastErr.Store(err.Error())
			}
		})
		l.prog.update("setup: %-34s %s %d/%d", "opening WatchEvents streams", bar(int64(i+1), int64(n)), i+1, n)
	}
	l.prog.done("setup: %-34s %s %d over %d connections", "opening WatchEvents streams", bar(int64(n), int64(n)), n, len(ws.conns.list))
	return ws, nil
}

// waitOpen waits until careteamd counts the streams as subscribers (its
// careteam_event_subscribers gauge), so memory is read with all of them
// open; without --metrics it waits a moment.
func (l *load) waitOpen(ctx context.Context, ws *watchers, baseline float64) {
	if ws.n == 0 {
		return
	}
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if len(l.cfg.metrics) == 0 {
			time.Sleep(3 * time.Second)
			return
		}
		var subs float64
		for _, s := range l.scrapeAll(ctx) {
			subs += s.sum("careteam_event_subscribers")
		}
		l.prog.update("waiting for careteamd to count %d subscribers: %.0f", ws.n, subs-baseline)
		if subs-baseline >= float64(ws.n) {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	l.prog.note("warning: careteamd did not count all %d WatchEvents streams within a minute", ws.n)
}

func (ws *watchers) close() {
	if ws.cancel != nil {
		ws.cancel()
	}
	ws.wg.Wait()
	ws.conns.close()
}

func (ws *watchers) failures() string {
	if n := ws.ended.Load(); n > 0 {
		return fmt.Sprintf("%d streams ended with an error (last: %v)", n, ws.lastErr.Load())
	}
	return ""
}

// latestCursor pages through the events a can see to the newest one.
func latestCursor(ctx context.Context, c *client.Client, a *actor) (int64, error) {
	var last int64
	req := &pb.ListEventsRequest{PageSize: 1000}
	for {
		resp, err := c.Events.ListEvents(as(ctx, a), req)
		if err != nil {
			return 0, fmt.Errorf("ListEvents as %s: %w", a.subject, err)
		}
		if n := len(resp.GetEvents()); n > 0 {
			last = resp.GetEvents()[n-1].GetCursor()
		}
		if resp.GetNextPageToken() == "" {
			return last, nil
		}
		req.PageToken = resp.GetNextPageToken()
	}
}
