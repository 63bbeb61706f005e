package api_test

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/careteam/careteam/proto/careteam/v1"
)

// team is the cast most tests need: a physician practice and a massage
// practice, their people, and a patient the physician registered.
type team struct {
	*harness
	clinic, spa, otherSpa string
	dr, otherDr           *pb.Practitioner // otherDr works at the clinic too
	lmt, lmt2, otherLmt   *pb.Practitioner // lmt and lmt2 at spa (ARTHRITIS), otherLmt elsewhere
	coord, spaCoord       *pb.Practitioner
	patient               *pb.Patient
}

func newTeam(t testing.TB) *team {
	return newTeamWith(t, harnessOptions{})
}

func newTeamWith(t testing.TB, o harnessOptions) *team {
	h := newHarnessWith(t, o)
	tm := &team{harness: h}
	tm.clinic = h.org("Lakeside Family Medicine", pb.OrganizationKind_ORGANIZATION_KIND_PHYSICIAN_PRACTICE)
	tm.spa = h.org("Harbor Massage", pb.OrganizationKind_ORGANIZATION_KIND_MASSAGE_PRACTICE)
	tm.otherSpa = h.org("Bay Massage", pb.OrganizationKind_ORGANIZATION_KIND_MASSAGE_PRACTICE)
	tm.dr = h.practitioner(tm.clinic, pb.Role_ROLE_PHYSICIAN, "dr")
	tm.otherDr = h.practitioner(tm.clinic, pb.Role_ROLE_PHYSICIAN, "other-dr")
	tm.lmt = h.practitioner(tm.spa, pb.Role_ROLE_MASSAGE_THERAPIST, "lmt", pb.Specialty_SPECIALTY_ARTHRITIS)
	tm.lmt2 = h.practitioner(tm.spa, pb.Role_ROLE_MASSAGE_THERAPIST, "lmt2", pb.Specialty_SPECIALTY_ARTHRITIS, pb.Specialty_SPECIALTY_ORTHOPEDIC)
	tm.otherLmt = h.practitioner(tm.otherSpa, pb.Role_ROLE_MASSAGE_THERAPIST, "other-lmt", pb.Specialty_SPECIALTY_ARTHRITIS)
	tm.coord = h.practitioner(tm.clinic, pb.Role_ROLE_COORDINATOR, "coord")
	tm.spaCoord = h.practitioner(tm.spa, pb.Role_ROLE_COORDINATOR, "spa-coord")
	tm.patient = h.patient("dr", "MRN-100")
	return tm
}

// newReferral is a valid referral from dr to lmt for the team's patient.
func (tm *team) newReferral() *pb.Referral {
	return &pb.Referral{
		Patient:             tm.patient.GetName(),
		TargetTherapist:     tm.lmt.GetName(),
		ReasonCodes:         []string{"M47.816"},
		ClinicalNotes:       "Lumbar spondylosis; no radiculopathy.",
		Priority:            pb.ReferralPriority_REFERRAL_PRIORITY_ROUTINE,
		RequestedTechniques: []pb.Technique{pb.Technique_TECHNIQUE_SWEDISH},
		AuthorizedVisits:    6,
		RequiredSpecialties: []pb.Specialty{pb.Specialty_SPECIALTY_ARTHRITIS},
		ValidUntil:          timestamppb.New(tm.clock.Now().AddDate(0, 0, 90)),
	}
}

func (tm *team) create(r *pb.Referral) *pb.Referral {
	tm.t.Helper()
	resp, err := tm.as("dr").Referrals.CreateReferral(tm.ctx, &pb.CreateReferralRequest{Referral: r})
	if err != nil {
		tm.t.Fatalf("CreateReferral: %v", err)
	}
	return resp.GetReferral()
}

// referralIn returns a referral from dr to lmt moved to state.
func (tm *team) referralIn(state pb.ReferralState) *pb.Referral {
	tm.t.Helper()
	r := tm.create(tm.newReferral())
	step := func(as string, call func(c *clientSet) (*pb.Referral, error)) {
		tm.t.Helper()
		var err error
		if r, err = call(&clientSet{tm.as(as), r.GetName()}); err != nil {
			tm.t.Fatalf("moving to %v: %v", state, err)
		}
	}
	if state == pb.ReferralState_REFERRAL_STATE_DRAFT {
		return r
	}
	if state == pb.ReferralState_REFERRAL_STATE_CANCELLED {
		step("dr", (*clientSet).cancel)
		return r
	}
	step("dr", (*clientSet).submit)
	switch state {
	case pb.ReferralState_REFERRAL_STATE_AWAITING_INFO:
		step("lmt", (*clientSet).ask)
	case pb.ReferralState_REFERRAL_STATE_DECLINED:
		step("lmt", (*clientSet).decline)
	case pb.ReferralState_REFERRAL_STATE_ACCEPTED:
		step("lmt", (*clientSet).accept)
	case pb.ReferralState_REFERRAL_STATE_COMPLETED:
		step("lmt", (*clientSet).accept)
		step("lmt", (*clientSet).complete)
	}
	if r.GetState() != state {
		tm.t.Fatalf("referral is %v, want %v", r.GetState(), state)
	}
	return r
}

// treatment is a planned or recorded treatment.
func treatment(region pb.BodyRegion, technique pb.Technique, pressure pb.Pressure) *pb.Treatment {
	return &pb.Treatment{Region: region, Technique: technique, Pressure: pressure}
}

// swedishLumbar is the plan most tests start sessions with.
var swedishLumbar = []*pb.Treatment{treatment(pb.BodyRegion_BODY_REGION_LUMBAR, pb.Technique_TECHNIQUE_SWEDISH, pb.Pressure_PRESSURE_MEDIUM)}

// consent records the patient's consent at the therapist's practice.
func (tm *team) consent() {
	tm.t.Helper()
	if _, err := tm.as("lmt").Clinical.RecordConsent(tm.ctx, &pb.RecordConsentRequest{Consent: &pb.Consent{
		Patient: tm.patient.GetName(), FormVersion: "2026-01", SignedDate: tm.clock.Now().Format("2006-01-02"),
		Signer: pb.ConsentSigner_CONSENT_SIGNER_PATIENT,
	}}); err != nil {
		tm.t.Fatalf("RecordConsent: %v", err)
	}
}

// clear issues a clearance of the team's patient by dr; referral may be
// empty for a patient-wide clearance.
func (tm *team) clear(c *pb.Clearance) *pb.Clearance {
	tm.t.Helper()
	if c.Patient == "" {
		c.Patient = tm.patient.GetName()
	}
	if c.Decision == pb.ClearanceDecision_CLEARANCE_DECISION_UNSPECIFIED {
		c.Decision = pb.ClearanceDecision_CLEARANCE_DECISION_CLEARED
	}
	resp, err := tm.as("dr").Clinical.IssueClearance(tm.ctx, &pb.IssueClearanceRequest{Clearance: c})
	if err != nil {
		tm.t.Fatalf("IssueClearance: %v", err)
	}
	return resp.GetClearance()
}

// ready returns an accepted referral with consent and a patient-wide
// clearance on file: a session can start.
func (tm *team) ready() (*pb.Referral, *pb.Clearance) {
	tm.t.Helper()
	r := tm.referralIn(pb.ReferralState_REFERRAL_STATE_ACCEPTED)
	tm.consent()
	return r, tm.clear(&pb.Clearance{})
}

func (tm *team) start(as string, r *pb.Referral, plan []*pb.Treatment) (*pb.Session, error) {
	resp, err := tm.as(as).Sessions.StartSession(tm.ctx, &pb.StartSessionRequest{Referral: r.GetName(), Planned: plan})
	return resp.GetSession(), err
}

func i32(v int32) *int32 { return &v }

// begin starts a session of lmt under r a day after the previous one, so
// that start times differ and order the sessions.
func (tm *team) begin(r *pb.Referral) *pb.Session {
	tm.t.Helper()
	tm.clock.Advance(24 * time.Hour)
	ss, err := tm.start("lmt", r, swedishLumbar)
	if err != nil {
		tm.t.Fatalf("StartSession: %v", err)
	}
	return ss
}

func (tm *team) getSession(as, name string) *pb.Session {
	tm.t.Helper()
	resp, err := tm.as(as).Sessions.GetSession(tm.ctx, &pb.GetSessionRequest{Name: name})
	if err != nil {
		tm.t.Fatalf("GetSession as %s: %v", as, err)
	}
	return resp.GetSession()
}

// edit updates the note of ss as read (its etag), changing paths only.
func (tm *team) edit(as string, ss *pb.Session, n *pb.SessionNote, paths ...string) (*pb.Session, error) {
	resp, err := tm.as(as).Sessions.UpdateSessionNote(tm.ctx, &pb.UpdateSessionNoteRequest{
		Name: ss.GetName(), Note: n, UpdateMask: fieldMask(paths...), Etag: ss.GetEtag(),
	})
	return resp.GetSession(), err
}

func (tm *team) mustEdit(ss *pb.Session, n *pb.SessionNote, paths ...string) *pb.Session {
	tm.t.Helper()
	got, err := tm.edit("lmt", ss, n, paths...)
	if err != nil {
		tm.t.Fatalf("UpdateSessionNote(%v): %v", paths, err)
	}
	return got
}

func (tm *team) sign(as string, ss *pb.Session, deviation string) (*pb.SignSessionNoteResponse, error) {
	return tm.as(as).Sessions.SignSessionNote(tm.ctx, &pb.SignSessionNoteRequest{Name: ss.GetName(), Etag: ss.GetEtag(), DeviationReason: deviation})
}

func (tm *team) mustSign(ss *pb.Session) *pb.Session {
	tm.t.Helper()
	resp, err := tm.sign("lmt", ss, "")
	if err != nil {
		tm.t.Fatalf("SignSessionNote: %v", err)
	}
	return resp.GetSession()
}

func (tm *team) amend(as string, ss *pb.Session, reason, text string) (*pb.AmendSessionNoteResponse, error) {
	return tm.as(as).Sessions.AmendSessionNote(tm.ctx, &pb.AmendSessionNoteRequest{Name: ss.GetName(), Reason: reason, Text: text})
}

func (tm *team) cancelSession(as string, ss *pb.Session, reason pb.CancelReason) (*pb.Session, error) {
	resp, err := tm.as(as).Sessions.CancelSession(tm.ctx, &pb.CancelSessionRequest{Name: ss.GetName(), Reason: reason, Text: "Called the front desk."})
	return resp.GetSession(), err
}

func (tm *team) referral(name string) *pb.Referral {
	tm.t.Helper()
	resp, err := tm.as("dr").Referrals.GetReferral(tm.ctx, &pb.GetReferralRequest{Name: name})
	if err != nil {
		tm.t.Fatalf("GetReferral: %v", err)
	}
	return resp.GetReferral()
}

func (tm *team) progress(as, referral string) *pb.ReferralProgress {
	tm.t.Helper()
	resp, err := tm.as(as).Referrals.GetReferralProgress(tm.ctx, &pb.GetReferralProgressRequest{Name: referral})
	if err != nil {
		tm.t.Fatalf("GetReferralProgress as %s: %v", as, err)
	}
	return resp.GetProgress()
}

// acceptedReferral creates a referral from dr, changed by edit, and has
// therapist accept it.
func (tm *team) acceptedReferral(therapist string, edit func(*pb.Referral)) *pb.Referral {
	tm.t.Helper()
	r := tm.newReferral()
	edit(r)
	r = tm.create(r)
	for _, step := range []func() (*pb.Referral, error){
		(&clientSet{tm.as("dr"), r.GetName()}).submit,
		(&clientSet{tm.as(therapist), r.GetName()}).accept,
	} {
		var err error
		if r, err = step(); err != nil {
			tm.t.Fatalf("accepting a referral: %v", err)
		}
	}
	return r
}

func (tm *team) consentOf(patient string) {
	tm.t.Helper()
	if _, err := tm.as("lmt").Clinical.RecordConsent(tm.ctx, &pb.RecordConsentRequest{Consent: &pb.Consent{
		Patient: patient, FormVersion: "2026-01", SignedDate: tm.clock.Now().Format("2006-01-02"),
		Signer: pb.ConsentSigner_CONSENT_SIGNER_PATIENT,
	}}); err != nil {
		tm.t.Fatalf("RecordConsent: %v", err)
	}
}
