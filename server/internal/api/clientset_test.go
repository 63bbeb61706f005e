package api_test

import (
	"context"

	"github.com/careteam/careteam/client"
	pb "github.com/careteam/careteam/proto/careteam/v1"
)

// clientSet calls the referral lifecycle RPCs on one referral as one
// caller, so tables of actions read as data.
type clientSet struct {
	c    *client.Client
	name string
}

var ctx = context.Background()

func (c *clientSet) submit() (*pb.Referral, error) {
	r, err := c.c.Referrals.SubmitReferral(ctx, &pb.SubmitReferralRequest{Name: c.name})
	return r.GetReferral(), err
}

func (c *clientSet) accept() (*pb.Referral, error) {
	r, err := c.c.Referrals.AcceptReferral(ctx, &pb.AcceptReferralRequest{Name: c.name})
	return r.GetReferral(), err
}

func (c *clientSet) decline() (*pb.Referral, error) {
	r, err := c.c.Referrals.DeclineReferral(ctx, &pb.DeclineReferralRequest{Name: c.name,
		Reason: pb.DeclineReason_DECLINE_REASON_NO_CAPACITY, Text: "Fully booked until next month."})
	return r.GetReferral(), err
}

func (c *clientSet) ask() (*pb.Referral, error) {
	r, err := c.c.Referrals.RequestInformation(ctx, &pb.RequestInformationRequest{Name: c.name, Question: "Any recent imaging?"})
	return r.GetReferral(), err
}

func (c *clientSet) answer() (*pb.Referral, error) {
	r, err := c.c.Referrals.ProvideInformation(ctx, &pb.ProvideInformationRequest{Name: c.name, Answer: "X-ray 2026-02: degenerative changes only."})
	return r.GetReferral(), err
}

func (c *clientSet) cancel() (*pb.Referral, error) {
	r, err := c.c.Referrals.CancelReferral(ctx, &pb.CancelReferralRequest{Name: c.name, Reason: "Patient moved away."})
	return r.GetReferral(), err
}

func (c *clientSet) complete() (*pb.Referral, error) {
	r, err := c.c.Referrals.CompleteReferral(ctx, &pb.CompleteReferralRequest{Name: c.name, DischargeNote: "Goals met."})
	return r.GetReferral(), err
}
