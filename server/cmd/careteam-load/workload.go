package main

import (
	"context"
	"math/rand/v2"
	"slices"
	"time"

	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/careteam/careteam/client"
	pb "github.com/careteam/careteam/proto/careteam/v1"
)

// The calls the load makes, each as the practitioner who would make it.
// They return what the next step of the flow needs; the ops below record
// them.

// plan is what every session plans and every note records: lumbar Swedish
// massage at medium pressure, which the load's clearances allow.
var plan = []*pb.Treatment{{
	Region: pb.BodyRegion_BODY_REGION_LUMBAR, Technique: pb.Technique_TECHNIQUE_SWEDISH, Pressure: pb.Pressure_PRESSURE_MEDIUM,
}}

// maxVisits is the most a referral may authorize: each referral then
// serves the most session starts.
const maxVisits = 52

func createReferral(ctx context.Context, c *client.Client, p *patient) (*referral, error) {
	resp, err := c.Referrals.CreateReferral(as(ctx, &p.physician.actor), &pb.CreateReferralRequest{Referral: &pb.Referral{
		Patient: p.name, TargetTherapist: p.therapist.name, ReasonCodes: []string{"M54.50"},
		ClinicalNotes: "Chronic low back pain, no red flags.", AuthorizedVisits: maxVisits,
		RequestedTechniques: []pb.Technique{pb.Technique_TECHNIQUE_SWEDISH},
	}})
	if err != nil {
		return nil, err
	}
	return &referral{name: resp.GetReferral().GetName(), etag: resp.GetReferral().GetEtag(), patient: p, left: maxVisits}, nil
}

func submitReferral(ctx context.Context, c *client.Client, r *referral) error {
	resp, err := c.Referrals.SubmitReferral(as(ctx, &r.patient.physician.actor), &pb.SubmitReferralRequest{Name: r.name, Etag: r.etag})
	if err == nil {
		r.etag = resp.GetReferral().GetEtag()
	}
	return err
}

func acceptReferral(ctx context.Context, c *client.Client, r *referral) error {
	resp, err := c.Referrals.AcceptReferral(as(ctx, &r.patient.therapist.actor), &pb.AcceptReferralRequest{Name: r.name, Etag: r.etag})
	if err == nil {
		r.etag = resp.GetReferral().GetEtag()
	}
	return err
}

// recordConsent records the patient's consent at their therapist's
// practice, which may only see the patient once a referral reached it.
func recordConsent(ctx context.Context, c *client.Client, p *patient) error {
	_, err := c.Clinical.RecordConsent(as(ctx, &p.therapist.actor), &pb.RecordConsentRequest{Consent: &pb.Consent{
		Patient: p.name, FormVersion: "massage-consent-2026", SignedDate: time.Now().UTC().AddDate(0, 0, -1).Format(time.DateOnly),
		Signer: pb.ConsentSigner_CONSENT_SIGNER_PATIENT,
	}})
	return err
}

// issueClearance clears the patient for massage, for all their referrals;
// it supersedes the clearance in force.
func issueClearance(ctx context.Context, c *client.Client, p *patient) error {
	_, err := c.Clinical.IssueClearance(as(ctx, &p.physician.actor), &pb.IssueClearanceRequest{Clearance: &pb.Clearance{
		Patient: p.name, Decision: pb.ClearanceDecision_CLEARANCE_DECISION_CLEARED, Notes: "No red flags; cleared for massage.",
	}})
	return err
}

func startSession(ctx context.Context, c *client.Client, r *referral) (*session, error) {
	th := r.patient.therapist
	resp, err := c.Sessions.StartSession(as(ctx, &th.actor), &pb.StartSessionRequest{Referral: r.name, Planned: plan})
	if err != nil {
		return nil, err
	}
	return &session{name: resp.GetSession().GetName(), etag: resp.GetSession().GetEtag(), therapist: th}, nil
}

func updateNote(ctx context.Context, c *client.Client, s *session) error {
	before, after := int32(6), int32(3)
	resp, err := c.Sessions.UpdateSessionNote(as(ctx, &s.therapist.actor), &pb.UpdateSessionNoteRequest{
		Name: s.name, Etag: s.etag,
		Note: &pb.SessionNote{
			Subjective: "Low back stiff in the morning.", Objective: "Paraspinal tension L3-L5.", Assessment: "Improving.",
			Plan: "Continue weekly; heat at home.", PainBefore: &before, PainAfter: &after, Treatments: plan, DurationMinutes: 60,
		},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"subjective", "objective", "assessment", "plan", "pain_before",
			"pain_after", "treatments", "duration_minutes"}},
	})
	if err == nil {
		s.etag = resp.GetSession().GetEtag()
	}
	return err
}

func signNote(ctx context.Context, c *client.Client, s *session) error {
	_, err := c.Sessions.SignSessionNote(as(ctx, &s.therapist.actor), &pb.SignSessionNoteRequest{Name: s.name, Etag: s.etag})
	return err
}

// op is one entry of the mix: it picks what to act on, makes its call as
// the practitioner who would, and records it. It returns false when it
// found nothing to act on (its queue was empty).
type op func(l *load, ctx context.Context, ph *phaseStats, rng *rand.Rand, intended time.Time) bool

// ops are the mix's entries, by the RPC each drives.
var ops = map[string]op{
	"CreateReferral": func(l *load, ctx context.Context, ph *phaseStats, rng *rand.Rand, at time.Time) bool {
		p := l.w.patients[rng.IntN(len(l.w.patients))]
		r, err := createReferral(ctx, l.calls.pick(), p)
		ph.record("CreateReferral", time.Since(at), err)
		if err == nil {
			l.w.drafts.push(r)
		}
		return true
	},
	"SubmitReferral": func(l *load, ctx context.Context, ph *phaseStats, _ *rand.Rand, at time.Time) bool {
		r, ok := l.w.drafts.pop()
		if !ok {
			ph.skip("SubmitReferral")
			return false
		}
		err := submitReferral(ctx, l.calls.pick(), r)
		ph.record("SubmitReferral", time.Since(at), err)
		if err == nil {
			l.w.submitted.push(r)
		}
		return true
	},
	"AcceptReferral": func(l *load, ctx context.Context, ph *phaseStats, _ *rand.Rand, at time.Time) bool {
		r, ok := l.w.submitted.pop()
		if !ok {
			ph.skip("AcceptReferral")
			return false
		}
		err := acceptReferral(ctx, l.calls.pick(), r)
		ph.record("AcceptReferral", time.Since(at), err)
		if err != nil {
			return true
		}
		// The practice records the consent when it takes the patient on;
		// the call follows at once, so it is timed from its own start.
		if !r.patient.consented.Load() {
			start := time.Now()
			err := recordConsent(ctx, l.calls.pick(), r.patient)
			ph.record("RecordConsent", time.Since(start), err)
			if err != nil {
				return true
			}
			r.patient.consented.Store(true)
		}
		l.w.known.add(r)
		l.w.startable.add(r)
		return true
	},
	"IssueClearance": func(l *load, ctx context.Context, ph *phaseStats, rng *rand.Rand, at time.Time) bool {
		p := l.w.patients[rng.IntN(len(l.w.patients))]
		err := issueClearance(ctx, l.calls.pick(), p)
		ph.record("IssueClearance", time.Since(at), err)
		return true
	},
	"StartSession": func(l *load, ctx context.Context, ph *phaseStats, rng *rand.Rand, at time.Time) bool {
		r := l.w.startable.take(rng)
		if r == nil {
			ph.skip("StartSession")
			return false
		}
		s, err := startSession(ctx, l.calls.pick(), r)
		ph.record("StartSession", time.Since(at), err)
		l.w.startable.give(r, err == nil)
		if err == nil {
			l.w.started.push(s)
		}
		return true
	},
	"UpdateSessionNote": func(l *load, ctx context.Context, ph *phaseStats, _ *rand.Rand, at time.Time) bool {
		s, ok := l.w.started.pop()
		if !ok {
			ph.skip("UpdateSessionNote")
			return false
		}
		err := updateNote(ctx, l.calls.pick(), s)
		ph.record("UpdateSessionNote", time.Since(at), err)
		if err == nil {
			l.w.noted.push(s)
		}
		return true
	},
	"SignSessionNote": func(l *load, ctx context.Context, ph *phaseStats, _ *rand.Rand, at time.Time) bool {
		s, ok := l.w.noted.pop()
		if !ok {
			ph.skip("SignSessionNote")
			return false
		}
		err := signNote(ctx, l.calls.pick(), s)
		ph.record("SignSessionNote", time.Since(at), err)
		return true
	},
	"GetReferral": func(l *load, ctx context.Context, ph *phaseStats, rng *rand.Rand, at time.Time) bool {
		r, ok := l.w.known.random(rng)
		if !ok {
			ph.skip("GetReferral")
			return false
		}
		// Both sides read it: the referring physician and the therapist.
		a := &r.patient.physician.actor
		if rng.IntN(2) == 0 {
			a = &r.patient.therapist.actor
		}
		_, err := l.calls.pick().Referrals.GetReferral(as(ctx, a), &pb.GetReferralRequest{Name: r.name})
		ph.record("GetReferral", time.Since(at), err)
		return true
	},
	"CheckClearance": func(l *load, ctx context.Context, ph *phaseStats, rng *rand.Rand, at time.Time) bool {
		r := l.w.startable.peek(rng)
		if r == nil {
			ph.skip("CheckClearance")
			return false
		}
		_, err := l.calls.pick().Clinical.CheckClearance(as(ctx, &r.patient.therapist.actor),
			&pb.CheckClearanceRequest{Referral: r.name, Planned: plan})
		ph.record("CheckClearance", time.Since(at), err)
		return true
	},
	"GetReferralProgress": func(l *load, ctx context.Context, ph *phaseStats, rng *rand.Rand, at time.Time) bool {
		r, ok := l.w.known.random(rng)
		if !ok {
			ph.skip("GetReferralProgress")
			return false
		}
		_, err := l.calls.pick().Referrals.GetReferralProgress(as(ctx, &r.patient.physician.actor),
			&pb.GetReferralProgressRequest{Name: r.name})
		ph.record("GetReferralProgress", time.Since(at), err)
		return true
	},
	"ListReferrals": func(l *load, ctx context.Context, ph *phaseStats, rng *rand.Rand, at time.Time) bool {
		// The worklists: a massage practice's coordinator's new referrals,
		// a therapist's own, a physician's sent ones. Each is also
		// recorded apart: they scale differently with the table.
		var a *actor
		var shape string
		req := &pb.ListReferralsRequest{}
		switch rng.IntN(3) {
		case 0:
			a, shape = l.w.spaCoords[rng.IntN(len(l.w.spaCoords))], "coordinator, submitted"
			req.States = []pb.ReferralState{pb.ReferralState_REFERRAL_STATE_SUBMITTED}
		case 1:
			th := l.w.therapists[rng.IntN(len(l.w.therapists))]
			a, req.TargetTherapist, shape = &th.actor, th.name, "therapist, own"
		default:
			doc := l.w.physicians[rng.IntN(len(l.w.physicians))]
			a, req.ReferringPhysician, shape = &doc.actor, doc.name, "physician, sent"
		}
		_, err := l.calls.pick().Referrals.ListReferrals(as(ctx, a), req)
		d := time.Since(at)
		ph.record("ListReferrals", d, err)
		ph.detail("ListReferrals ("+shape+")", d, err)
		return true
	},
	"ListSessions": func(l *load, ctx context.Context, ph *phaseStats, rng *rand.Rand, at time.Time) bool {
		// A therapist's own sessions, or a practice coordinator's view of
		// all of the practice's.
		var a *actor
		shape := "therapist, own"
		req := &pb.ListSessionsRequest{}
		if rng.IntN(2) == 0 {
			th := l.w.therapists[rng.IntN(len(l.w.therapists))]
			a, req.Therapist = &th.actor, th.name
		} else {
			a, shape = l.w.spaCoords[rng.IntN(len(l.w.spaCoords))], "coordinator, practice"
		}
		_, err := l.calls.pick().Sessions.ListSessions(as(ctx, a), req)
		d := time.Since(at)
		ph.record("ListSessions", d, err)
		ph.detail("ListSessions ("+shape+")", d, err)
		return true
	},
	"GetCaller": func(l *load, ctx context.Context, ph *phaseStats, rng *rand.Rand, at time.Time) bool {
		th := l.w.therapists[rng.IntN(len(l.w.therapists))]
		_, err := l.calls.pick().Directory.GetCaller(as(ctx, &th.actor), &pb.GetCallerRequest{})
		ph.record("GetCaller", time.Since(at), err)
		return true
	},
}

func mixNames() []string {
	names := make([]string, 0, len(ops))
	for n := range ops {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
