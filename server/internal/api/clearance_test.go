package api_test

import (
	"testing"

	pb "github.com/careteam/careteam/proto/careteam/v1"
)

func TestSessionStartsAfterClearance(t *testing.T) {
	t.Parallel()
	tm := newTeam(t)
	r, c := tm.ready()
	ss, err := tm.start("lmt", r, swedishLumbar)
	if err != nil {
		t.Fatal(err)
	}
	if ss.GetVisitNumber() != 1 || ss.GetClearance() != c.GetName() || ss.GetState() != pb.SessionState_SESSION_STATE_STARTED {
		t.Fatalf("session %v", ss)
	}
	got, err := tm.as("dr").Referrals.GetReferral(tm.ctx, &pb.GetReferralRequest{Name: r.GetName()})
	if err != nil {
		t.Fatal(err)
	}
	if got.GetReferral().GetState() != pb.ReferralState_REFERRAL_STATE_IN_PROGRESS || got.GetReferral().GetUsedVisits() != 1 {
		t.Fatalf("referral after the first session: %v", got.GetReferral())
	}
}
