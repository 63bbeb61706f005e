package api

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	pb "github.com/careteam/careteam/proto/careteam/v1"
	"github.com/careteam/careteam/server/internal/audit"
	"github.com/careteam/careteam/server/internal/careteam"
	"github.com/careteam/careteam/server/internal/events"
)

type eventServer struct {
	pb.UnimplementedEventServiceServer
	svc       *careteam.Service
	hub       *events.Hub
	audit     AuditWriter
	heartbeat time.Duration
	recheck   time.Duration
	obs       Observer
	encoded   encodedViews
}

// encodedEvent is a live event's message in its wire form, which
// lenientCodec sends as it is: every stream of a view class is handed the
// same view of an event by the hub, and it is encoded once for them all.
type encodedEvent struct {
	once   sync.Once
	bytes  []byte
	err    error
	cursor int64
}

// encodedViews remembers the encodings of the newest views, so that
// streams woken together by one commit share them.
type encodedViews struct {
	mu     sync.Mutex
	byView map[*careteam.Event]*encodedEvent
	ring   [encodedViewsKept]*careteam.Event
	next   int
}

// encodedViewsKept bounds the views remembered: a few hub batches' worth
// of events in each view class.
const encodedViewsKept = 4096

// encode returns the wire form of view, encoding it on first use.
func (c *encodedViews) encode(view *careteam.Event) (*encodedEvent, error) {
	c.mu.Lock()
	if c.byView == nil {
		c.byView = make(map[*careteam.Event]*encodedEvent, encodedViewsKept)
	}
	enc := c.byView[view]
	if enc == nil {
		enc = &encodedEvent{cursor: view.Cursor}
		if old := c.ring[c.next]; old != nil {
			delete(c.byView, old)
		}
		c.ring[c.next], c.next = view, (c.next+1)%encodedViewsKept
		c.byView[view] = enc
	}
	c.mu.Unlock()
	enc.once.Do(func() {
		enc.bytes, enc.err = proto.Marshal(&pb.WatchEventsResponse{Message: &pb.WatchEventsResponse_Event{Event: eventToProto(view)}})
	})
	return enc, enc.err
}

// jittered returns a random duration in [d/2, d).
func jittered(d time.Duration) time.Duration {
	return d/2 + rand.N(d/2+1)
}

// streamAuditEvery is how often a stream puts what it delivered live on
// the audit trail; replayed batches are recorded before they are sent.
const streamAuditEvery = time.Second

func eventToProto(e *careteam.Event) *pb.Event {
	out := &pb.Event{
		Id:       e.ID.String(),
		Cursor:   e.Cursor,
		Type:     enumFromDomain[pb.EventType](e.Type),
		Resource: e.Resource,
		Patient:  careteam.Patients.NameOrEmpty(e.PatientID),
		Referral: careteam.Referrals.NameOrEmpty(e.ReferralID),
		Actor:    careteam.Practitioners.NameOrEmpty(e.Actor),
		Time:     timestamp(e.Time),
	}
	for _, o := range e.Organizations {
		out.Organizations = append(out.Organizations, careteam.Organizations.Name(o))
	}
	switch {
	case e.Referral != nil:
		out.ResourceState = &pb.Event_ReferralState{ReferralState: referralToProto(e.Referral)}
	case e.Diagnosis != nil:
		out.ResourceState = &pb.Event_DiagnosisState{DiagnosisState: diagnosisToProto(e.Diagnosis)}
	case e.Clearance != nil:
		out.ResourceState = &pb.Event_ClearanceState{ClearanceState: clearanceToProto(e.Clearance)}
	case e.Session != nil:
		out.ResourceState = &pb.Event_SessionState{SessionState: sessionToProto(e.Session)}
	case e.Consent != nil:
		out.ResourceState = &pb.Event_ConsentState{ConsentState: consentToProto(e.Consent)}
	}
	return out
}

func eventFilter(types []pb.EventType, patient, referral string) (careteam.EventFilter, error) {
	var v violations
	f := careteam.EventFilter{
		Types:      enumsToDomain[careteam.EventType](types),
		PatientID:  v.optionalName(careteam.Patients, "patient", patient),
		ReferralID: v.optionalName(careteam.Referrals, "referral", referral),
	}
	return f, v.err()
}

func (s *eventServer) ListEvents(ctx context.Context, req *pb.ListEventsRequest) (*pb.ListEventsResponse, error) {
	p, err := principalFrom(ctx)
	if err != nil {
		return nil, err
	}
	f, err := eventFilter(req.GetTypes(), req.GetPatient(), req.GetReferral())
	if err != nil {
		return nil, err
	}
	after := req.GetAfterCursor()
	if req.GetPageToken() != "" {
		if after, err = decodeSequence(req, req.GetPageToken()); err != nil {
			return nil, err
		}
	}
	page, err := s.svc.ListEvents(ctx, p, f, after, int(req.GetPageSize()))
	if err != nil {
		return nil, err
	}
	resp := &pb.ListEventsResponse{NextPageToken: encodeSequence(req, page.Next), ThroughCursor: page.Through}
	for _, e := range page.Events {
		resp.Events = append(resp.Events, eventToProto(e))
	}
	return resp, nil
}

// WatchEvents replays what the caller may see after their cursor, then
// streams live events, with heartbeats while idle. To miss nothing between
// the replay and the live feed, it replays, subscribes, replays again up to
// the present, and then drops live events it already sent.
func (s *eventServer) WatchEvents(req *pb.WatchEventsRequest, stream pb.EventService_WatchEventsServer) (err error) {
	ctx := stream.Context()
	defer func() {
		// A stream its caller left ends for that reason, whatever a
		// send to the departed caller failed with.
		if err != nil && ctx.Err() != nil {
			err = ctx.Err()
		}
	}()
	p, err := principalFrom(ctx)
	if err != nil {
		return err
	}
	f, err := eventFilter(req.GetTypes(), req.GetPatient(), req.GetReferral())
	if err != nil {
		return err
	}
	sub, err := careteam.NewSubscriber(p, f)
	if err != nil {
		return err
	}
	entry := audit.FromContext(ctx)
	// recordDelivered writes what the stream touched since it last did, so
	// that what it delivered is on the trail while it runs, not only once
	// it ends.
	recordDelivered := func(last int64) error {
		r, ok := entry.Drain(s.svc.Now())
		if !ok {
			return nil
		}
		// Written even if the caller has gone: what was sent is recorded.
		if err := appendDetached(ctx, s.audit, r); err != nil {
			entry.Undrain(r) // for the stream's last record
			return resumeAfter(last, errAuditUnavailable)
		}
		return nil
	}
	last := req.GetAfterCursor()
	replay := func() error {
		for {
			batch, err := s.svc.ReplayEvents(ctx, sub, last, 500)
			if err != nil {
				return err
			}
			if len(batch) > 0 {
				// Each batch goes to a watcher who may still watch.
				if err := s.svc.Recheck(ctx, sub); err != nil {
					return err
				}
			}
			for _, e := range batch {
				audit.Touch(ctx, e.Resource, e.PatientID)
			}
			if err := recordDelivered(last); err != nil {
				return err
			}
			for _, e := range batch {
				if err := stream.Send(&pb.WatchEventsResponse{Message: &pb.WatchEventsResponse_Event{Event: eventToProto(e)}}); err != nil {
					return err
				}
				last = e.Cursor
			}
			if len(batch) < 500 {
				return nil
			}
		}
	}
	if err := replay(); err != nil {
		return err
	}
	w, err := s.hub.Subscribe(ctx, sub)
	if err != nil {
		return errStopping
	}
	defer w.Close()
	// A change to the caller's entry committed before the subscription
	// reaches the live feed no more: check now that it would.
	if err := s.svc.Recheck(ctx, sub); err != nil {
		return err
	}
	if err := replay(); err != nil {
		return err
	}

	// Live messages go out through a sender of their own, so that a client
	// that stops reading (its flow-control window full, Send blocked)
	// cannot keep this loop from seeing the overflow and ending the stream.
	// Each message is an *encodedEvent or a heartbeat.
	out := make(chan any)
	sendErr := make(chan error, 1)
	var sent atomic.Int64 // the last cursor the client was sent
	sent.Store(last)
	go func() {
		for m := range out {
			if err := stream.SendMsg(m); err != nil {
				sendErr <- err
				for range out {
				}
				return
			}
			if e, ok := m.(*encodedEvent); ok {
				sent.Store(e.cursor)
			}
		}
	}()
	defer close(out)
	beat := time.NewTicker(s.heartbeat)
	defer beat.Stop()
	// Rechecks come at random within each interval, so that streams opened
	// together (a replica's clients reconnecting after a restart) do not
	// all query the database, and stall their deliveries, at once.
	recheck := time.NewTimer(jittered(s.recheck))
	defer recheck.Stop()
	recordLive := time.NewTicker(streamAuditEvery)
	defer recordLive.Stop()
	// The stream lasts no longer than the credential that opened it, by
	// the clock that verified it.
	var expired <-chan time.Time
	if exp := callFrom(ctx).expiry; !exp.IsZero() {
		t := time.NewTimer(exp.Sub(s.svc.Now()))
		defer t.Stop()
		expired = t.C
	}
	for {
		var m any
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-sendErr:
			return err
		case <-expired:
			return resumeAfter(sent.Load(), errCredentialExpired)
		case <-recheck.C:
			if err := s.svc.Recheck(ctx, sub); err != nil {
				return resumeAfter(sent.Load(), err)
			}
			recheck.Reset(jittered(s.recheck))
			continue
		case <-recordLive.C:
			if err := recordDelivered(sent.Load()); err != nil {
				return err
			}
			continue
		case <-s.hub.Done():
			return resumeAfter(sent.Load(), errStopping)
		case <-w.Overflow():
			return resumeAfter(sent.Load(), errWatcherTooSlow)
		case e := <-w.Events():
			if sub.Concerns(e) {
				// The caller's entry changed: nothing written after it goes
				// out before they are checked again.
				if err := s.svc.Recheck(ctx, sub); err != nil {
					return resumeAfter(sent.Load(), err)
				}
				continue
			}
			if e.Cursor <= last {
				continue
			}
			s.obs.EventDelivered(time.Since(e.Time))
			audit.Touch(ctx, e.Resource, e.PatientID)
			last = e.Cursor
			if m, err = s.encoded.encode(e); err != nil {
				return err
			}
		case <-beat.C:
			// With nothing waiting, everything the hub examined is sent or
			// was not for this subscriber: safe to resume after it.
			cursor := last
			if examined := w.Examined(); len(w.Events()) == 0 && examined > cursor {
				cursor = examined
			}
			m = &pb.WatchEventsResponse{Message: &pb.WatchEventsResponse_Heartbeat{
				Heartbeat: &pb.Heartbeat{Time: timestamp(s.svc.Now()), Cursor: cursor},
			}}
		}
		select {
		case out <- m:
		case <-ctx.Done():
			return ctx.Err()
		case err := <-sendErr:
			return err
		case <-w.Overflow():
			return resumeAfter(sent.Load(), errWatcherTooSlow)
		}
	}
}
