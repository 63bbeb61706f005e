// Package events delivers committed events to the watchers of this
// replica. One hub reads the outbox once for every watcher, woken by
// PostgreSQL notifications from any replica and by a periodic catch-up,
// and hands each watcher the events it may receive through a bounded
// buffer: a watcher that falls behind is cut off, never slowing the others
// or the writers.
package events

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/careteam/careteam/server/internal/careteam"
)

// Source is where the hub reads events.
type Source interface {
	LatestEventCursor(ctx context.Context) (int64, error)
	EventsAfter(ctx context.Context, after int64, limit int) ([]*careteam.Event, error)
}

// Config tunes a hub.
type Config struct {
	// Buffer is how many events a watcher may have waiting before it is
	// cut off.
	Buffer int
	// CatchUp is how often the hub reads the outbox without a
	// notification.
	CatchUp time.Duration
}

// Hub fans events out to watchers.
type Hub struct {
	src  Source
	cfg  Config
	log  *slog.Logger
	wake chan struct{}

	mu       sync.Mutex
	watchers map[*Watcher]struct{}
	cursor   int64 // the last event read
	done     chan struct{}
	// started is closed once the hub knows where the outbox ends; a
	// watcher subscribes only then, so that nothing committed after its
	// replay can fall before the hub's starting point.
	started chan struct{}
}

// NewHub returns a hub reading src.
func NewHub(src Source, cfg Config, log *slog.Logger) *Hub {
	if cfg.Buffer <= 0 {
		cfg.Buffer = 1024
	}
	if cfg.CatchUp <= 0 {
		cfg.CatchUp = time.Second
	}
	return &Hub{src: src, cfg: cfg, log: log, wake: make(chan struct{}, 1), watchers: map[*Watcher]struct{}{},
		done: make(chan struct{}), started: make(chan struct{})}
}

// Wake asks the hub to read the outbox now; calls coalesce.
func (h *Hub) Wake() {
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// Done is closed when the hub stops; watchers then end.
func (h *Hub) Done() <-chan struct{} { return h.done }

// Run reads and fans out events until ctx ends.
func (h *Hub) Run(ctx context.Context) {
	defer close(h.done)
	for {
		latest, err := h.src.LatestEventCursor(ctx)
		if err == nil {
			h.mu.Lock()
			h.cursor = latest
			h.mu.Unlock()
			close(h.started)
			break
		}
		h.log.WarnContext(ctx, "events: reading the latest cursor", "error", err.Error())
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
	tick := time.NewTicker(h.cfg.CatchUp)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-h.wake:
		case <-tick.C:
		}
		h.poll(ctx)
	}
}

// poll reads every event after the hub's cursor and hands it out.
func (h *Hub) poll(ctx context.Context) {
	for {
		h.mu.Lock()
		after := h.cursor
		h.mu.Unlock()
		batch, err := h.src.EventsAfter(ctx, after, 500)
		if err != nil {
			if ctx.Err() == nil {
				h.log.WarnContext(ctx, "events: reading the outbox", "error", err.Error())
			}
			return
		}
		if len(batch) == 0 {
			return
		}
		h.mu.Lock()
		for _, e := range batch {
			views := map[careteam.ViewClass]*careteam.Event{}
			for w := range h.watchers {
				w.offer(e, views)
			}
		}
		h.cursor = batch[len(batch)-1].Cursor
		for w := range h.watchers {
			w.examined.Store(h.cursor)
		}
		h.mu.Unlock()
	}
}

// Watchers returns how many watchers are connected.
func (h *Hub) Watchers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.watchers)
}

// Subscribe registers a watcher for sub once the hub has started; Close
// it when done.
func (h *Hub) Subscribe(ctx context.Context, sub *careteam.Subscriber) (*Watcher, error) {
	select {
	case <-h.started:
	case <-h.done:
		return nil, errors.New("events: the hub has stopped")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	w := &Watcher{hub: h, sub: sub, events: make(chan *careteam.Event, h.cfg.Buffer), overflow: make(chan struct{})}
	h.mu.Lock()
	h.watchers[w] = struct{}{}
	w.examined.Store(h.cursor)
	h.mu.Unlock()
	return w, nil
}

// Watcher receives the events its subscriber may see.
type Watcher struct {
	hub      *Hub
	sub      *careteam.Subscriber
	events   chan *careteam.Event
	overflow chan struct{}
	full     bool
	// examined is the newest cursor the hub has looked at for this
	// watcher, whether or not the event was for it.
	examined atomic.Int64
}

// Examined is the newest cursor the hub has looked at for this watcher:
// once the watcher has sent every event waiting in Events, nothing up to
// it remains for the subscriber.
func (w *Watcher) Examined() int64 { return w.examined.Load() }

// Events delivers events in cursor order, among them the changes to the
// subscriber's own directory entry (see careteam.Subscriber.Concerns).
func (w *Watcher) Events() <-chan *careteam.Event { return w.events }

// Overflow is closed when the watcher fell too far behind and was cut off.
func (w *Watcher) Overflow() <-chan struct{} { return w.overflow }

// offer hands e to the watcher if it may receive it; called with the hub
// locked. views holds e as each class of reader sees it, made once and
// shared by every watcher of the class, so that the streams can encode
// each view once.
func (w *Watcher) offer(e *careteam.Event, views map[careteam.ViewClass]*careteam.Event) {
	if w.full {
		return
	}
	var v *careteam.Event
	switch {
	case w.sub.Concerns(e):
		v = e // a signal to the stream, never sent on
	case w.sub.Receives(e):
		class := w.sub.ViewClass()
		if v = views[class]; v == nil {
			v = w.sub.View(e)
			views[class] = v
		}
	default:
		return
	}
	select {
	case w.events <- v:
	default:
		w.full = true
		close(w.overflow)
		delete(w.hub.watchers, w)
	}
}

// Close unregisters the watcher.
func (w *Watcher) Close() {
	w.hub.mu.Lock()
	defer w.hub.mu.Unlock()
	delete(w.hub.watchers, w)
}
