package api_test

import (
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/careteam/careteam/proto/careteam/v1"
)

func states(history []*pb.StateChange) []pb.ReferralState {
	var out []pb.ReferralState
	for _, h := range history {
		out = append(out, h.GetToState())
	}
	return out
}

func TestReferralClosedLoop(t *testing.T) {
	t.Parallel()
	tm := newTeam(t)
	r := tm.create(tm.newReferral())
	if r.GetState() != pb.ReferralState_REFERRAL_STATE_DRAFT || r.GetReferringOrganization() != tm.clinic || r.GetTargetOrganization() != tm.spa {
		t.Fatalf("created %v", r)
	}
	dr := &clientSet{tm.as("dr"), r.GetName()}
	lmt := &clientSet{tm.as("lmt"), r.GetName()}
	for _, step := range []struct {
		call func() (*pb.Referral, error)
		want pb.ReferralState
	}{
		{dr.submit, pb.ReferralState_REFERRAL_STATE_SUBMITTED},
		{lmt.ask, pb.ReferralState_REFERRAL_STATE_AWAITING_INFO},
		{dr.answer, pb.ReferralState_REFERRAL_STATE_SUBMITTED},
		{lmt.accept, pb.ReferralState_REFERRAL_STATE_ACCEPTED},
		{lmt.complete, pb.ReferralState_REFERRAL_STATE_COMPLETED},
	} {
		tm.clock.Advance(time.Hour)
		got, err := step.call()
		if err != nil {
			t.Fatalf("to %v: %v", step.want, err)
		}
		if got.GetState() != step.want {
			t.Fatalf("state %v, want %v", got.GetState(), step.want)
		}
		r = got
	}
	want := []pb.ReferralState{
		pb.ReferralState_REFERRAL_STATE_DRAFT, pb.ReferralState_REFERRAL_STATE_SUBMITTED,
		pb.ReferralState_REFERRAL_STATE_AWAITING_INFO, pb.ReferralState_REFERRAL_STATE_SUBMITTED,
		pb.ReferralState_REFERRAL_STATE_ACCEPTED, pb.ReferralState_REFERRAL_STATE_COMPLETED,
	}
	if got := states(r.GetHistory()); !slices.Equal(got, want) {
		t.Fatalf("history %v, want %v", got, want)
	}
	// Every transition records who and when.
	for i, h := range r.GetHistory() {
		if h.GetActor() == "" || !h.GetTime().AsTime().Equal(start.Add(time.Duration(i)*time.Hour)) {
			t.Errorf("transition %d: actor %q at %v", i, h.GetActor(), h.GetTime().AsTime())
		}
	}
	q := r.GetInformationRequests()
	if len(q) != 1 || q[0].GetQuestion() == "" || q[0].GetAnswer() == "" || q[0].GetAnsweredBy() != tm.dr.GetName() {
		t.Fatalf("questions %v", q)
	}
	if r.GetDischargeSummary() == "" {
		t.Fatal("no discharge summary")
	}
	// Reading it back gives the same.
	got, err := tm.as("dr").Referrals.GetReferral(tm.ctx, &pb.GetReferralRequest{Name: r.GetName()})
	if err != nil || !slices.Equal(states(got.GetReferral().GetHistory()), want) {
		t.Fatalf("read back: %v, %v", got, err)
	}
}

// TestIllegalTransitions tries every lifecycle action, as the party allowed
// to take it, in every state a referral can reach without sessions, and
// expects FAILED_PRECONDITION naming the state wherever PRODUCT.md draws no
// arrow.
func TestIllegalTransitions(t *testing.T) {
	t.Parallel()
	tm := newTeam(t)
	type action struct {
		name string
		as   string
		call func(*clientSet) (*pb.Referral, error)
		from []pb.ReferralState
	}
	S := pb.ReferralState_REFERRAL_STATE_SUBMITTED
	actions := []action{
		{"submit", "dr", (*clientSet).submit, []pb.ReferralState{pb.ReferralState_REFERRAL_STATE_DRAFT}},
		{"accept", "lmt", (*clientSet).accept, []pb.ReferralState{S}},
		{"decline", "lmt", (*clientSet).decline, []pb.ReferralState{S}},
		{"ask", "lmt", (*clientSet).ask, []pb.ReferralState{S}},
		{"answer", "dr", (*clientSet).answer, []pb.ReferralState{pb.ReferralState_REFERRAL_STATE_AWAITING_INFO}},
		{"cancel", "dr", (*clientSet).cancel, []pb.ReferralState{pb.ReferralState_REFERRAL_STATE_DRAFT, S,
			pb.ReferralState_REFERRAL_STATE_AWAITING_INFO, pb.ReferralState_REFERRAL_STATE_ACCEPTED, pb.ReferralState_REFERRAL_STATE_DECLINED}},
		{"complete", "lmt", (*clientSet).complete, []pb.ReferralState{pb.ReferralState_REFERRAL_STATE_ACCEPTED}},
	}
	reachable := []pb.ReferralState{
		pb.ReferralState_REFERRAL_STATE_DRAFT, S, pb.ReferralState_REFERRAL_STATE_AWAITING_INFO,
		pb.ReferralState_REFERRAL_STATE_ACCEPTED, pb.ReferralState_REFERRAL_STATE_DECLINED,
		pb.ReferralState_REFERRAL_STATE_COMPLETED, pb.ReferralState_REFERRAL_STATE_CANCELLED,
	}
	for _, state := range reachable {
		for _, a := range actions {
			t.Run(state.String()+"/"+a.name, func(t *testing.T) {
				r := tm.referralIn(state)
				got, err := a.call(&clientSet{tm.as(a.as), r.GetName()})
				if slices.Contains(a.from, state) {
					if err != nil {
						t.Fatalf("legal transition refused: %v", err)
					}
					return
				}
				if types := preconditionTypes(t, err); !slices.Equal(types, []string{"REFERRAL_STATE"}) {
					t.Fatalf("violations %v", types)
				}
				if st, _ := status.FromError(err); !containsState(st.Message(), state) {
					t.Fatalf("message %q does not name the current state", st.Message())
				}
				if got != nil {
					t.Fatal("a refused transition returned a referral")
				}
				after, err := tm.as("dr").Referrals.GetReferral(tm.ctx, &pb.GetReferralRequest{Name: r.GetName()})
				if err != nil || after.GetReferral().GetEtag() != r.GetEtag() {
					t.Fatalf("a refused transition changed the referral: %v %v", after, err)
				}
			})
		}
	}
}

func containsState(msg string, s pb.ReferralState) bool {
	return strings.Contains(msg, "is "+strings.TrimPrefix(s.String(), "REFERRAL_STATE_"))
}

// TestReferralAccess tries every action as callers who must be refused.
func TestReferralAccess(t *testing.T) {
	t.Parallel()
	tm := newTeam(t)
	h := tm.harness
	otherClinic := h.org("Hilltop", pb.OrganizationKind_ORGANIZATION_KIND_PHYSICIAN_PRACTICE)
	h.practitioner(otherClinic, pb.Role_ROLE_COORDINATOR, "outsider-coord")
	h.practitioner(tm.clinic, pb.Role_ROLE_ADMIN, "clinic-admin")
	h.practitioner(tm.clinic, pb.Role_ROLE_AUDITOR, "auditor")

	r := tm.referralIn(pb.ReferralState_REFERRAL_STATE_SUBMITTED)
	t.Run("who sees it", func(t *testing.T) {
		for who, want := range map[string]codes.Code{
			"dr": codes.OK, "coord": codes.OK, "spa-coord": codes.OK, "lmt": codes.OK,
			"lmt2": codes.PermissionDenied, "other-lmt": codes.PermissionDenied, "other-dr": codes.PermissionDenied,
			"outsider-coord": codes.PermissionDenied, "clinic-admin": codes.PermissionDenied, "auditor": codes.PermissionDenied,
		} {
			_, err := h.as(who).Referrals.GetReferral(h.ctx, &pb.GetReferralRequest{Name: r.GetName()})
			if status.Code(err) != want {
				t.Errorf("%s: %v, want %v", who, status.Code(err), want)
			}
			list, err := h.as(who).Referrals.ListReferrals(h.ctx, &pb.ListReferralsRequest{})
			visible := err == nil && len(list.GetReferrals()) == 1
			if visible != (want == codes.OK) {
				t.Errorf("%s lists %d referrals (err %v)", who, len(list.GetReferrals()), err)
			}
		}
		// A missing referral gets the same answer as a hidden one.
		_, err := h.as("other-lmt").Referrals.GetReferral(h.ctx, &pb.GetReferralRequest{Name: "referrals/" + uuid.NewString()})
		wantCode(t, err, codes.PermissionDenied)
	})
	t.Run("coordinators read no clinical notes", func(t *testing.T) {
		for _, who := range []string{"coord", "spa-coord"} {
			got, err := h.as(who).Referrals.GetReferral(h.ctx, &pb.GetReferralRequest{Name: r.GetName()})
			if err != nil || got.GetReferral().GetClinicalNotes() != "" {
				t.Errorf("%s: notes %q, err %v", who, got.GetReferral().GetClinicalNotes(), err)
			}
		}
		got, _ := h.as("lmt").Referrals.GetReferral(h.ctx, &pb.GetReferralRequest{Name: r.GetName()})
		if got.GetReferral().GetClinicalNotes() == "" {
			t.Error("the treating therapist cannot read the clinical notes")
		}
	})
	t.Run("only the receiving therapist moves it forward", func(t *testing.T) {
		for _, who := range []string{"dr", "coord", "spa-coord", "lmt2", "other-lmt"} {
			c := &clientSet{h.as(who), r.GetName()}
			for _, call := range []func(*clientSet) (*pb.Referral, error){(*clientSet).accept, (*clientSet).decline, (*clientSet).ask} {
				if _, err := call(c); status.Code(err) != codes.PermissionDenied {
					t.Errorf("%s: %v", who, err)
				}
			}
		}
	})
	t.Run("only the referring side cancels", func(t *testing.T) {
		for _, who := range []string{"lmt", "spa-coord", "other-dr", "outsider-coord"} {
			if _, err := (&clientSet{h.as(who), r.GetName()}).cancel(); status.Code(err) != codes.PermissionDenied {
				t.Errorf("%s: %v", who, err)
			}
		}
		if _, err := (&clientSet{h.as("coord"), r.GetName()}).cancel(); err != nil {
			t.Errorf("the referring organization's coordinator cannot cancel: %v", err)
		}
	})
	t.Run("submit, answer, assign and complete refuse the wrong caller", func(t *testing.T) {
		refused := func(what string, who []string, call func(*clientSet) (*pb.Referral, error), name string) {
			t.Helper()
			for _, w := range who {
				if _, err := call(&clientSet{h.as(w), name}); status.Code(err) != codes.PermissionDenied {
					t.Errorf("%s by %s: %v, want PERMISSION_DENIED", what, w, err)
				}
			}
		}
		draft := tm.create(tm.newReferral())
		refused("submit", []string{"lmt", "spa-coord", "other-dr", "outsider-coord"}, (*clientSet).submit, draft.GetName())
		asked := tm.referralIn(pb.ReferralState_REFERRAL_STATE_AWAITING_INFO)
		refused("answer", []string{"lmt", "lmt2", "spa-coord", "other-dr"}, (*clientSet).answer, asked.GetName())
		accepted := tm.referralIn(pb.ReferralState_REFERRAL_STATE_ACCEPTED)
		refused("complete", []string{"coord", "spa-coord", "lmt2", "other-lmt", "other-dr"}, (*clientSet).complete, accepted.GetName())
		assign := func(c *clientSet) (*pb.Referral, error) {
			r, err := c.c.Referrals.AssignReferral(h.ctx, &pb.AssignReferralRequest{Name: c.name, Therapist: tm.lmt2.GetName()})
			return r.GetReferral(), err
		}
		refused("assign", []string{"lmt", "lmt2", "other-dr", "outsider-coord"}, assign, r.GetName())
		declined := tm.referralIn(pb.ReferralState_REFERRAL_STATE_DECLINED)
		refused("re-route by the receiving practice", []string{"spa-coord"}, assign, declined.GetName())
	})
	t.Run("a coordinator refers for a physician of their organization only", func(t *testing.T) {
		in := tm.newReferral()
		in.ReferringPhysician = tm.dr.GetName()
		resp, err := h.as("coord").Referrals.CreateReferral(h.ctx, &pb.CreateReferralRequest{Referral: in})
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetReferral().GetReferringPhysician() != tm.dr.GetName() {
			t.Fatalf("referring physician %s", resp.GetReferral().GetReferringPhysician())
		}
		_, err = h.as("outsider-coord").Referrals.CreateReferral(h.ctx, &pb.CreateReferralRequest{Referral: in})
		wantCode(t, err, codes.PermissionDenied)
		_, err = h.as("other-dr").Referrals.CreateReferral(h.ctx, &pb.CreateReferralRequest{Referral: in})
		wantCode(t, err, codes.PermissionDenied)
		for _, who := range []string{"lmt", "clinic-admin", "auditor"} {
			_, err = h.as(who).Referrals.CreateReferral(h.ctx, &pb.CreateReferralRequest{Referral: tm.newReferral()})
			wantCode(t, err, codes.PermissionDenied)
		}
	})
	t.Run("the therapist sees the patient through the referral, and loses them when it is re-routed", func(t *testing.T) {
		r := tm.referralIn(pb.ReferralState_REFERRAL_STATE_DECLINED)
		if _, err := h.as("lmt").Patients.GetPatient(h.ctx, &pb.GetPatientRequest{Name: tm.patient.GetName()}); err != nil {
			t.Fatalf("before re-routing: %v", err)
		}
		if _, err := h.as("dr").Referrals.AssignReferral(h.ctx, &pb.AssignReferralRequest{Name: r.GetName(), Therapist: tm.otherLmt.GetName()}); err != nil {
			t.Fatal(err)
		}
		// lmt still has the submitted referral of the first subtest.
		if _, err := h.as("lmt2").Patients.GetPatient(h.ctx, &pb.GetPatientRequest{Name: tm.patient.GetName()}); status.Code(err) != codes.PermissionDenied {
			t.Fatalf("a therapist without a referral sees the patient: %v", err)
		}
		if _, err := h.as("other-lmt").Patients.GetPatient(h.ctx, &pb.GetPatientRequest{Name: tm.patient.GetName()}); err != nil {
			t.Fatalf("the new therapist cannot see the patient: %v", err)
		}
	})
}

func TestAssignmentNeedsQualifiedTherapist(t *testing.T) {
	t.Parallel()
	tm := newTeam(t)
	h := tm.harness
	untrained := h.practitioner(tm.spa, pb.Role_ROLE_MASSAGE_THERAPIST, "untrained", pb.Specialty_SPECIALTY_SPORTS)
	lapsed := h.lapse(h.practitioner(tm.spa, pb.Role_ROLE_MASSAGE_THERAPIST, "lapsed", pb.Specialty_SPECIALTY_ARTHRITIS))
	in := tm.newReferral()
	in.TargetTherapist = ""
	in.TargetOrganization = tm.spa
	r := tm.create(in)
	if r.GetTargetTherapist() != "" {
		t.Fatalf("target therapist %q", r.GetTargetTherapist())
	}
	if _, err := (&clientSet{h.as("dr"), r.GetName()}).submit(); err != nil {
		t.Fatal(err)
	}
	assign := func(as, therapist string) error {
		_, err := h.as(as).Referrals.AssignReferral(h.ctx, &pb.AssignReferralRequest{Name: r.GetName(), Therapist: therapist})
		return err
	}
	if got := preconditionTypes(t, assign("spa-coord", untrained.GetName())); !slices.Equal(got, []string{"NOT_QUALIFIED"}) {
		t.Fatalf("untrained: %v", got)
	}
	if got := preconditionTypes(t, assign("spa-coord", lapsed.GetName())); !slices.Equal(got, []string{"LICENCE_EXPIRED"}) {
		t.Fatalf("lapsed: %v", got)
	}
	// A receiving coordinator routes within their practice only.
	wantCode(t, assign("spa-coord", tm.otherLmt.GetName()), codes.PermissionDenied)
	if err := assign("spa-coord", tm.lmt2.GetName()); err != nil {
		t.Fatal(err)
	}
	// Now lmt, who could have claimed it while unassigned, cannot.
	_, err := (&clientSet{h.as("lmt"), r.GetName()}).accept()
	wantCode(t, err, codes.PermissionDenied)
	if _, err := (&clientSet{h.as("lmt2"), r.GetName()}).accept(); err != nil {
		t.Fatal(err)
	}

	t.Run("creating a referral for an unqualified therapist is refused too", func(t *testing.T) {
		in := tm.newReferral()
		in.TargetTherapist = untrained.GetName()
		_, err := h.as("dr").Referrals.CreateReferral(h.ctx, &pb.CreateReferralRequest{Referral: in})
		if got := preconditionTypes(t, err); !slices.Equal(got, []string{"NOT_QUALIFIED"}) {
			t.Fatalf("%v", got)
		}
	})
	t.Run("a therapist whose licence lapsed cannot accept", func(t *testing.T) {
		in := tm.newReferral()
		in.TargetTherapist = tm.lmt.GetName()
		r := tm.create(in)
		if _, err := (&clientSet{h.as("dr"), r.GetName()}).submit(); err != nil {
			t.Fatal(err)
		}
		// The licence runs out in ten days; the referral is valid for ninety.
		lmt := proto.Clone(tm.lmt).(*pb.Practitioner)
		lmt.Licence.ExpireDate = h.clock.Now().AddDate(0, 0, 10).Format("2006-01-02")
		if _, err := h.as(rootAdmin).Directory.UpdatePractitioner(h.ctx, &pb.UpdatePractitionerRequest{
			Practitioner: lmt, UpdateMask: fieldMask("licence"),
		}); err != nil {
			t.Fatal(err)
		}
		h.clock.Advance(20 * 24 * time.Hour)
		_, err := (&clientSet{h.as("lmt"), r.GetName()}).accept()
		if got := preconditionTypes(t, err); !slices.Equal(got, []string{"LICENCE_EXPIRED"}) {
			t.Fatalf("accepting with a lapsed licence: %v", got)
		}
	})
}

func TestReroutingAfterDecline(t *testing.T) {
	t.Parallel()
	tm := newTeam(t)
	h := tm.harness
	r := tm.referralIn(pb.ReferralState_REFERRAL_STATE_DECLINED)
	if r.GetDeclineReason() != pb.DeclineReason_DECLINE_REASON_NO_CAPACITY || r.GetDeclineText() == "" {
		t.Fatalf("decline not recorded: %v", r)
	}
	// The receiving side cannot re-route; the referring side can.
	_, err := h.as("spa-coord").Referrals.AssignReferral(h.ctx, &pb.AssignReferralRequest{Name: r.GetName(), Therapist: tm.lmt2.GetName()})
	wantCode(t, err, codes.PermissionDenied)
	h.clock.Advance(time.Hour)
	resp, err := h.as("coord").Referrals.AssignReferral(h.ctx, &pb.AssignReferralRequest{
		Name: r.GetName(), Therapist: tm.otherLmt.GetName(), Reason: "Re-routed after decline", Etag: r.GetEtag(),
	})
	if err != nil {
		t.Fatal(err)
	}
	got := resp.GetReferral()
	if got.GetState() != pb.ReferralState_REFERRAL_STATE_SUBMITTED || got.GetTargetTherapist() != tm.otherLmt.GetName() || got.GetTargetOrganization() != tm.otherSpa {
		t.Fatalf("after re-routing: %v", got)
	}
	// The router's words are free text: the physician reads them, a
	// coordinator (even the one who wrote them) the state change only.
	last := got.GetHistory()[len(got.GetHistory())-1]
	if last.GetFromState() != pb.ReferralState_REFERRAL_STATE_DECLINED || last.GetReason() != "" || last.GetActor() != tm.coord.GetName() {
		t.Fatalf("transition as the coordinator reads it: %v", last)
	}
	asDr, err := h.as("dr").Referrals.GetReferral(h.ctx, &pb.GetReferralRequest{Name: r.GetName()})
	if err != nil {
		t.Fatal(err)
	}
	if h := asDr.GetReferral().GetHistory(); h[len(h)-1].GetReason() != "Re-routed after decline" {
		t.Fatalf("transition as the physician reads it: %v", h[len(h)-1])
	}
	if _, err := (&clientSet{h.as("other-lmt"), r.GetName()}).accept(); err != nil {
		t.Fatal(err)
	}
	// The stale etag of before the re-routing is refused.
	_, err = h.as("dr").Referrals.CancelReferral(h.ctx, &pb.CancelReferralRequest{Name: r.GetName(), Reason: "x", Etag: r.GetEtag()})
	wantCode(t, err, codes.Aborted)
}

// TestConcurrentAcceptAndCancel races the therapist's acceptance against the
// physician's cancellation: exactly one wins, the other sees the new state.
func TestConcurrentAcceptAndCancel(t *testing.T) {
	t.Parallel()
	tm := newTeam(t)
	accepted, cancelled := 0, 0
	for range 20 {
		r := tm.referralIn(pb.ReferralState_REFERRAL_STATE_SUBMITTED)
		var wg sync.WaitGroup
		var acceptErr, cancelErr error
		lmt, dr := &clientSet{tm.as("lmt"), r.GetName()}, &clientSet{tm.as("dr"), r.GetName()}
		wg.Go(func() { _, acceptErr = lmt.accept() })
		wg.Go(func() { _, cancelErr = dr.cancel() })
		wg.Wait()
		got, err := tm.as("dr").Referrals.GetReferral(tm.ctx, &pb.GetReferralRequest{Name: r.GetName()})
		if err != nil {
			t.Fatal(err)
		}
		final := got.GetReferral()
		switch {
		case acceptErr == nil && cancelErr == nil:
			// Cancel is legal after acceptance: both may succeed, in that
			// order only.
			if final.GetState() != pb.ReferralState_REFERRAL_STATE_CANCELLED ||
				!slices.Equal(states(final.GetHistory())[2:], []pb.ReferralState{pb.ReferralState_REFERRAL_STATE_ACCEPTED, pb.ReferralState_REFERRAL_STATE_CANCELLED}) {
				t.Fatalf("both succeeded, history %v", states(final.GetHistory()))
			}
			accepted++
			cancelled++
		case acceptErr == nil:
			t.Fatalf("cancel failed after a successful accept: %v", cancelErr)
		case cancelErr == nil:
			wantCode(t, acceptErr, codes.FailedPrecondition)
			if final.GetState() != pb.ReferralState_REFERRAL_STATE_CANCELLED || len(final.GetHistory()) != 3 {
				t.Fatalf("cancel won, history %v", states(final.GetHistory()))
			}
			cancelled++
		default:
			t.Fatalf("both failed: %v / %v", acceptErr, cancelErr)
		}
	}
	t.Logf("accept first %d times, cancel first %d times", accepted, 20-accepted)
}

func TestReferralExpires(t *testing.T) {
	t.Parallel()
	tm := newTeam(t)
	in := tm.newReferral()
	in.ValidUntil = timestamppb.New(tm.clock.Now().Add(48 * time.Hour))
	r := tm.create(in)
	if _, err := (&clientSet{tm.as("dr"), r.GetName()}).submit(); err != nil {
		t.Fatal(err)
	}
	tm.clock.Advance(48 * time.Hour)
	got, err := tm.as("lmt").Referrals.GetReferral(tm.ctx, &pb.GetReferralRequest{Name: r.GetName()})
	if err != nil || got.GetReferral().GetState() != pb.ReferralState_REFERRAL_STATE_EXPIRED {
		t.Fatalf("after validity: %v %v", got.GetReferral().GetState(), err)
	}
	_, err = (&clientSet{tm.as("lmt"), r.GetName()}).accept()
	if types := preconditionTypes(t, err); !slices.Equal(types, []string{"REFERRAL_EXPIRED"}) {
		t.Fatalf("%v", types)
	}
	list, err := tm.as("dr").Referrals.ListReferrals(tm.ctx, &pb.ListReferralsRequest{States: []pb.ReferralState{pb.ReferralState_REFERRAL_STATE_EXPIRED}})
	if err != nil || len(list.GetReferrals()) != 1 {
		t.Fatalf("expired list: %v %v", list, err)
	}
	list, err = tm.as("dr").Referrals.ListReferrals(tm.ctx, &pb.ListReferralsRequest{States: []pb.ReferralState{pb.ReferralState_REFERRAL_STATE_SUBMITTED}})
	if err != nil || len(list.GetReferrals()) != 0 {
		t.Fatalf("an expired referral listed as submitted: %v %v", list, err)
	}

	t.Run("validity is bounded", func(t *testing.T) {
		for _, until := range []time.Time{tm.clock.Now().Add(-time.Hour), tm.clock.Now().AddDate(1, 0, 2)} {
			in := tm.newReferral()
			in.ValidUntil = timestamppb.New(until)
			_, err := tm.as("dr").Referrals.CreateReferral(tm.ctx, &pb.CreateReferralRequest{Referral: in})
			if got := fieldViolations(t, err); !slices.Equal(got, []string{"referral.valid_until"}) {
				t.Fatalf("%v", got)
			}
		}
		in := tm.newReferral()
		in.ValidUntil = nil
		r := tm.create(in)
		if got := r.GetValidUntil().AsTime(); !got.Equal(tm.clock.Now().AddDate(0, 0, 90)) {
			t.Fatalf("default validity %v", got)
		}
	})
}

// TestOverdueWorklist runs the acknowledgement clock on weekdays only and
// pauses it while the referral awaits information.
func TestOverdueWorklist(t *testing.T) {
	t.Parallel()
	tm := newTeam(t) // Wednesday 09:00
	overdue := func() []string {
		t.Helper()
		list, err := tm.as("spa-coord").Referrals.ListReferrals(tm.ctx, &pb.ListReferralsRequest{Overdue: true})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, r := range list.GetReferrals() {
			if !r.GetOverdue() {
				t.Fatalf("listed as overdue but overdue=false: %s", r.GetName())
			}
			names = append(names, r.GetName())
		}
		return names
	}
	plain := tm.referralIn(pb.ReferralState_REFERRAL_STATE_SUBMITTED)
	asked := tm.referralIn(pb.ReferralState_REFERRAL_STATE_SUBMITTED)
	tm.referralIn(pb.ReferralState_REFERRAL_STATE_ACCEPTED) // acknowledged: never overdue

	tm.clock.Set(time.Date(2026, 3, 4, 21, 0, 0, 0, time.UTC)) // Wed 21:00: 12h used
	if _, err := (&clientSet{tm.as("lmt"), asked.GetName()}).ask(); err != nil {
		t.Fatal(err)
	}
	tm.clock.Set(time.Date(2026, 3, 6, 8, 59, 0, 0, time.UTC)) // Fri 08:59
	if got := overdue(); len(got) != 0 {
		t.Fatalf("Fri 08:59: %v", got)
	}
	tm.clock.Set(time.Date(2026, 3, 6, 9, 0, 0, 0, time.UTC)) // Fri 09:00: 48 weekday hours
	if got := overdue(); !slices.Equal(got, []string{plain.GetName()}) {
		t.Fatalf("Fri 09:00: %v", got)
	}
	// Answered on Monday 09:00 after a weekend: 36h of the window remain.
	tm.clock.Set(time.Date(2026, 3, 9, 9, 0, 0, 0, time.UTC))
	if _, err := (&clientSet{tm.as("dr"), asked.GetName()}).answer(); err != nil {
		t.Fatal(err)
	}
	tm.clock.Set(time.Date(2026, 3, 10, 20, 59, 0, 0, time.UTC)) // Tue 20:59
	if got := overdue(); !slices.Equal(got, []string{plain.GetName()}) {
		t.Fatalf("Tue 20:59: %v", got)
	}
	tm.clock.Set(time.Date(2026, 3, 10, 21, 0, 0, 0, time.UTC)) // Tue 21:00
	if got := overdue(); !slices.Equal(got, []string{asked.GetName(), plain.GetName()}) {
		t.Fatalf("Tue 21:00: %v", got)
	}
	// Acknowledging ends it.
	if _, err := (&clientSet{tm.as("lmt"), plain.GetName()}).accept(); err != nil {
		t.Fatal(err)
	}
	if got := overdue(); !slices.Equal(got, []string{asked.GetName()}) {
		t.Fatalf("after accepting: %v", got)
	}
}

func TestListReferralFilters(t *testing.T) {
	t.Parallel()
	tm := newTeam(t)
	h := tm.harness
	second := h.patient("dr", "MRN-200")
	urgent := tm.newReferral()
	urgent.Priority = pb.ReferralPriority_REFERRAL_PRIORITY_URGENT
	urgent.Patient = second.GetName()
	u := tm.create(urgent)
	toSpa := tm.newReferral()
	toSpa.TargetTherapist, toSpa.TargetOrganization = "", tm.spa
	s := tm.create(toSpa)
	toLmt2 := tm.newReferral()
	toLmt2.TargetTherapist = tm.lmt2.GetName()
	l2 := tm.create(toLmt2)
	accepted := tm.referralIn(pb.ReferralState_REFERRAL_STATE_ACCEPTED)

	for _, tc := range []struct {
		name string
		req  *pb.ListReferralsRequest
		want []string // newest first
	}{
		{"all", &pb.ListReferralsRequest{}, []string{accepted.GetName(), l2.GetName(), s.GetName(), u.GetName()}},
		{"patient", &pb.ListReferralsRequest{Patient: second.GetName()}, []string{u.GetName()}},
		{"priority", &pb.ListReferralsRequest{Priority: pb.ReferralPriority_REFERRAL_PRIORITY_URGENT}, []string{u.GetName()}},
		{"target therapist", &pb.ListReferralsRequest{TargetTherapist: tm.lmt2.GetName()}, []string{l2.GetName()}},
		{"target organization", &pb.ListReferralsRequest{TargetOrganization: tm.spa}, []string{accepted.GetName(), l2.GetName(), s.GetName(), u.GetName()}},
		{"states", &pb.ListReferralsRequest{States: []pb.ReferralState{pb.ReferralState_REFERRAL_STATE_ACCEPTED}}, []string{accepted.GetName()}},
		{"referring physician", &pb.ListReferralsRequest{ReferringPhysician: tm.otherDr.GetName()}, nil},
		{"paged", &pb.ListReferralsRequest{PageSize: 1}, []string{accepted.GetName(), l2.GetName(), s.GetName(), u.GetName()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			req := tc.req
			for {
				resp, err := h.as("dr").Referrals.ListReferrals(h.ctx, req)
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range resp.GetReferrals() {
					got = append(got, r.GetName())
				}
				if resp.GetNextPageToken() == "" {
					break
				}
				req.PageToken = resp.GetNextPageToken()
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
	t.Run("a therapist sees referrals to them, and to their practice while unassigned", func(t *testing.T) {
		resp, err := h.as("lmt2").Referrals.ListReferrals(h.ctx, &pb.ListReferralsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range resp.GetReferrals() {
			got = append(got, r.GetName())
		}
		if !slices.Equal(got, []string{l2.GetName(), s.GetName()}) {
			t.Fatalf("got %v", got)
		}
	})
}

func TestReferralValidation(t *testing.T) {
	t.Parallel()
	tm := newTeam(t)
	in := &pb.Referral{
		ReasonCodes:      []string{"M54.50", "not-a-code"},
		AuthorizedVisits: 60,
		ReasonDiagnoses:  []string{"diagnoses/" + uuid.NewString()},
	}
	_, err := tm.as("dr").Referrals.CreateReferral(tm.ctx, &pb.CreateReferralRequest{Referral: in})
	got := fieldViolations(t, err)
	for _, want := range []string{"referral.reason_codes[1]", "referral.authorized_visits"} {
		if !slices.Contains(got, want) {
			t.Errorf("no violation for %s: %v", want, got)
		}
	}
	in = tm.newReferral()
	in.ReasonCodes = []string{"M5450"}
	in.ReasonDiagnoses = []string{"diagnoses/" + uuid.NewString()}
	_, err = tm.as("dr").Referrals.CreateReferral(tm.ctx, &pb.CreateReferralRequest{Referral: in})
	if got := fieldViolations(t, err); !slices.Equal(got, []string{"referral.reason_diagnoses[0]"}) {
		t.Fatalf("%v", got)
	}
	in.ReasonDiagnoses = nil
	in.ReasonCodes = []string{"M5450"}
	r := tm.create(in)
	if !slices.Equal(r.GetReasonCodes(), []string{"M54.50"}) {
		t.Fatalf("codes %v", r.GetReasonCodes())
	}
}

func TestTransitionRetriedWithRequestID(t *testing.T) {
	t.Parallel()
	tm := newTeam(t)
	r := tm.referralIn(pb.ReferralState_REFERRAL_STATE_DRAFT)
	req := &pb.SubmitReferralRequest{Name: r.GetName(), RequestId: uuid.NewString()}
	first, err := tm.as("dr").Referrals.SubmitReferral(tm.ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	again, err := tm.as("dr").Referrals.SubmitReferral(tm.ctx, req)
	if err != nil {
		t.Fatalf("a retried submit was refused: %v", err)
	}
	if again.GetReferral().GetEtag() != first.GetReferral().GetEtag() || len(again.GetReferral().GetHistory()) != 2 {
		t.Fatalf("retry changed the referral: %v", again.GetReferral())
	}
}
