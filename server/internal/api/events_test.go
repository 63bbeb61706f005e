package api_test

import (
	"context"
	"testing"
	"time"

	pb "github.com/careteam/careteam/proto/careteam/v1"
)

func TestEventsSmoke(t *testing.T) {
	t.Parallel()
	tm := newTeam(t)
	r := tm.create(tm.newReferral())
	list, err := tm.as("dr").Events.ListEvents(tm.ctx, &pb.ListEventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.GetEvents()) != 1 || list.GetEvents()[0].GetType() != pb.EventType_EVENT_TYPE_REFERRAL_CREATED ||
		list.GetEvents()[0].GetReferralState().GetName() != r.GetName() {
		t.Fatalf("events %v", list.GetEvents())
	}
	ctx, cancel := context.WithTimeout(tm.ctx, 20*time.Second)
	defer cancel()
	got := make(chan *pb.Event, 10)
	go tm.as("lmt").Watch(ctx, &pb.WatchEventsRequest{}, func(e *pb.Event) error { got <- e; return nil })
	if e := <-got; e.GetType() != pb.EventType_EVENT_TYPE_REFERRAL_CREATED {
		t.Fatalf("replayed %v", e)
	}
	if _, err := (&clientSet{tm.as("dr"), r.GetName()}).submit(); err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-got:
		if e.GetType() != pb.EventType_EVENT_TYPE_REFERRAL_SUBMITTED || e.GetCursor() <= list.GetEvents()[0].GetCursor() {
			t.Fatalf("live %v", e)
		}
	case <-ctx.Done():
		t.Fatal("no live event")
	}
}

// TestExpiryIsAnnounced: a referral whose validity passes without a write
// is announced once, by a REFERRAL_EXPIRED event that carries it as
// EXPIRED, to those who may see it; a completed referral never expires.
func TestExpiryIsAnnounced(t *testing.T) {
	t.Parallel()
	tm := newTeam(t)
	h := tm.harness
	r := tm.referralIn(pb.ReferralState_REFERRAL_STATE_SUBMITTED)
	done := tm.referralIn(pb.ReferralState_REFERRAL_STATE_COMPLETED)
	announce := func() int {
		t.Helper()
		n, err := h.app.Service().AnnounceExpiries(h.ctx, 100)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := announce(); n != 0 {
		t.Fatalf("%d announced before any referral expired", n)
	}
	h.clock.Advance(91 * 24 * time.Hour) // the referrals are valid for 90 days
	if n := announce(); n != 1 {
		t.Fatalf("%d announced, want the one open referral", n)
	}
	if n := announce(); n != 0 {
		t.Fatalf("announced again: %d", n)
	}
	expired := func(as string) []*pb.Event {
		t.Helper()
		resp, err := tm.as(as).Events.ListEvents(h.ctx, &pb.ListEventsRequest{Types: []pb.EventType{pb.EventType_EVENT_TYPE_REFERRAL_EXPIRED}})
		if err != nil {
			t.Fatalf("%s: %v", as, err)
		}
		return resp.GetEvents()
	}
	got := expired("dr")
	if len(got) != 1 || got[0].GetReferral() != r.GetName() || got[0].GetReferralState().GetState() != pb.ReferralState_REFERRAL_STATE_EXPIRED {
		t.Fatalf("the referrer's expiry events: %v (want one for %s, not %s)", got, r.GetName(), done.GetName())
	}
	if got := expired("lmt"); len(got) != 1 {
		t.Fatalf("the target therapist's expiry events: %v", got)
	}
	if got := expired("other-lmt"); len(got) != 0 {
		t.Fatalf("another practice's therapist sees %v", got)
	}
}
