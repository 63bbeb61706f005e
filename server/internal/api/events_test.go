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
