package api

import (
	"context"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/google/uuid"

	pb "github.com/careteam/careteam/proto/careteam/v1"
	"github.com/careteam/careteam/server/internal/careteam"
)

type referralServer struct {
	pb.UnimplementedReferralServiceServer
	svc *careteam.Service
}

func referralFromProto(in *pb.Referral) (careteam.Referral, error) {
	var v violations
	r := careteam.Referral{
		PatientID:            v.optionalName(careteam.Patients, "referral.patient", in.GetPatient()),
		ReferringPhysicianID: v.optionalName(careteam.Practitioners, "referral.referring_physician", in.GetReferringPhysician()),
		TargetTherapistID:    v.optionalName(careteam.Practitioners, "referral.target_therapist", in.GetTargetTherapist()),
		TargetOrgID:          v.optionalName(careteam.Organizations, "referral.target_organization", in.GetTargetOrganization()),
		ReasonCodes:          in.GetReasonCodes(),
		ClinicalNotes:        in.GetClinicalNotes(),
		Priority:             enumToDomain[careteam.Priority](in.GetPriority()),
		RequestedTechniques:  enumsToDomain[careteam.Technique](in.GetRequestedTechniques()),
		AuthorizedVisits:     int(in.GetAuthorizedVisits()),
		ValidUntil:           v.time("referral.valid_until", in.GetValidUntil()),
		RequiredSpecialties:  enumsToDomain[careteam.Specialty](in.GetRequiredSpecialties()),
		ReasonTexts:          in.GetReasonTexts(),
		PatientInstruction:   in.GetPatientInstruction(),
		ServiceCodes:         codingsToDomain(in.GetServiceCodes()),
		ServiceText:          in.GetServiceText(),
		ValidFrom:            v.time("referral.valid_from", in.GetValidFrom()),
	}
	for i, name := range in.GetReasonDiagnoses() {
		r.ReasonDiagnoses = append(r.ReasonDiagnoses, v.name(careteam.Diagnoses, indexed("referral.reason_diagnoses", i), name))
	}
	return r, v.err()
}

func codingsToDomain(in []*pb.Coding) []careteam.Coding {
	var out []careteam.Coding
	for _, c := range in {
		out = append(out, careteam.Coding{System: c.GetSystem(), Code: c.GetCode(), Display: c.GetDisplay()})
	}
	return out
}

func codingsToProto(in []careteam.Coding) []*pb.Coding {
	var out []*pb.Coding
	for _, c := range in {
		out = append(out, &pb.Coding{System: c.System, Code: c.Code, Display: c.Display})
	}
	return out
}

func stateChangesToProto(history []careteam.StateChange) []*pb.StateChange {
	out := make([]*pb.StateChange, len(history))
	for i, h := range history {
		out[i] = &pb.StateChange{
			FromState: enumFromDomain[pb.ReferralState](h.From),
			ToState:   enumFromDomain[pb.ReferralState](h.To),
			Actor:     careteam.Practitioners.NameOrEmpty(h.Actor),
			Time:      timestamp(h.Time),
			Reason:    h.Reason,
		}
	}
	return out
}

func referralToProto(r *careteam.Referral) *pb.Referral {
	out := &pb.Referral{
		Name:                  careteam.Referrals.Name(r.ID),
		Patient:               careteam.Patients.Name(r.PatientID),
		ReferringPhysician:    careteam.Practitioners.Name(r.ReferringPhysicianID),
		ReferringOrganization: careteam.Organizations.Name(r.ReferringOrgID),
		TargetTherapist:       careteam.Practitioners.NameOrEmpty(r.TargetTherapistID),
		TargetOrganization:    careteam.Organizations.Name(r.TargetOrgID),
		ReasonCodes:           r.ReasonCodes,
		ClinicalNotes:         r.ClinicalNotes,
		Priority:              enumFromDomain[pb.ReferralPriority](r.Priority),
		RequestedTechniques:   enumsFromDomain[pb.Technique](r.RequestedTechniques),
		AuthorizedVisits:      int32(r.AuthorizedVisits),
		UsedVisits:            int32(r.UsedVisits),
		ValidUntil:            timestamp(r.ValidUntil),
		RequiredSpecialties:   enumsFromDomain[pb.Specialty](r.RequiredSpecialties),
		State:                 enumFromDomain[pb.ReferralState](r.EffectiveState),
		History:               stateChangesToProto(r.History),
		DeclineReason:         enumFromDomain[pb.DeclineReason](r.DeclineReason),
		DeclineText:           r.DeclineText,
		CancelReason:          r.CancelReason,
		DischargeSummary:      r.DischargeSummary,
		Overdue:               r.Overdue,
		AttentionRequired:     r.AttentionRequired,
		CreateTime:            timestamp(r.CreateTime),
		UpdateTime:            timestamp(r.UpdateTime),
		SubmitTime:            timestamp(r.SubmitTime),
		Etag:                  careteam.Etag(r.Version),
		ReasonTexts:           r.ReasonTexts,
		PatientInstruction:    r.PatientInstruction,
		ServiceCodes:          codingsToProto(r.ServiceCodes),
		ServiceText:           r.ServiceText,
		ValidFrom:             timestamp(r.ValidFrom),
	}
	for _, id := range r.ReasonDiagnoses {
		out.ReasonDiagnoses = append(out.ReasonDiagnoses, careteam.Diagnoses.Name(id))
	}
	for _, q := range r.InformationRequests {
		out.InformationRequests = append(out.InformationRequests, &pb.InformationRequest{
			Question: q.Question, AskedBy: careteam.Practitioners.Name(q.AskedBy), AskTime: timestamp(q.AskTime),
			Answer: q.Answer, AnsweredBy: careteam.Practitioners.NameOrEmpty(q.AnsweredBy), AnswerTime: timestamp(q.AnswerTime),
		})
	}
	if r.EffectiveState == careteam.ReferralSubmitted && !r.AckDue.IsZero() {
		out.AcknowledgementDueTime = timestamp(r.AckDue)
		out.AcknowledgementRemaining = durationpb.New(r.AckRemaining)
	}
	return out
}

func (s *referralServer) CreateReferral(ctx context.Context, req *pb.CreateReferralRequest) (*pb.CreateReferralResponse, error) {
	r, err := create(ctx, req, req.GetReferral(), referralFromProto, s.svc.CreateReferral)
	if err != nil {
		return nil, err
	}
	return &pb.CreateReferralResponse{Referral: referralToProto(r)}, nil
}

func (s *referralServer) GetReferral(ctx context.Context, req *pb.GetReferralRequest) (*pb.GetReferralResponse, error) {
	r, err := onNamed(ctx, careteam.Referrals, req.GetName(), s.svc.GetReferral)
	if err != nil {
		return nil, err
	}
	return &pb.GetReferralResponse{Referral: referralToProto(r)}, nil
}

func (s *referralServer) ListReferrals(ctx context.Context, req *pb.ListReferralsRequest) (*pb.ListReferralsResponse, error) {
	rows, next, err := listed(ctx, req, func(p careteam.Principal, page careteam.Page) ([]*careteam.Referral, uuid.UUID, error) {
		var v violations
		f := careteam.ReferralFilter{
			PatientID:            v.optionalName(careteam.Patients, "patient", req.GetPatient()),
			States:               enumsToDomain[careteam.ReferralState](req.GetStates()),
			TargetTherapistID:    v.optionalName(careteam.Practitioners, "target_therapist", req.GetTargetTherapist()),
			TargetOrgID:          v.optionalName(careteam.Organizations, "target_organization", req.GetTargetOrganization()),
			ReferringPhysicianID: v.optionalName(careteam.Practitioners, "referring_physician", req.GetReferringPhysician()),
			Priority:             enumToDomain[careteam.Priority](req.GetPriority()),
			Overdue:              req.GetOverdue(),
			RequiredSpecialty:    enumToDomain[careteam.Specialty](req.GetRequiredSpecialty()),
		}
		if err := v.err(); err != nil {
			return nil, uuid.Nil, err
		}
		return s.svc.ListReferrals(ctx, p, f, page)
	}, referralToProto)
	if err != nil {
		return nil, err
	}
	return &pb.ListReferralsResponse{Referrals: rows, NextPageToken: next}, nil
}

// transition runs one lifecycle RPC: parse the name, call the use case,
// return the referral.
func (s *referralServer) transition(ctx context.Context, name string, call func(careteam.Principal, uuid.UUID) (*careteam.Referral, error)) (*pb.Referral, error) {
	r, err := onNamed(ctx, careteam.Referrals, name, func(_ context.Context, p careteam.Principal, id uuid.UUID) (*careteam.Referral, error) {
		return call(p, id)
	})
	if err != nil {
		return nil, err
	}
	return referralToProto(r), nil
}

func (s *referralServer) SubmitReferral(ctx context.Context, req *pb.SubmitReferralRequest) (*pb.SubmitReferralResponse, error) {
	r, err := s.transition(ctx, req.GetName(), func(p careteam.Principal, id uuid.UUID) (*careteam.Referral, error) {
		return s.svc.SubmitReferral(ctx, p, id, req.GetEtag(), idempotency(req.GetRequestId(), req))
	})
	if err != nil {
		return nil, err
	}
	return &pb.SubmitReferralResponse{Referral: r}, nil
}

func (s *referralServer) AssignReferral(ctx context.Context, req *pb.AssignReferralRequest) (*pb.AssignReferralResponse, error) {
	therapist, err := parseName(careteam.Practitioners, "therapist", req.GetTherapist())
	if err != nil {
		return nil, err
	}
	r, err := s.transition(ctx, req.GetName(), func(p careteam.Principal, id uuid.UUID) (*careteam.Referral, error) {
		return s.svc.AssignReferral(ctx, p, id, therapist, req.GetReason(), req.GetEtag(), idempotency(req.GetRequestId(), req))
	})
	if err != nil {
		return nil, err
	}
	return &pb.AssignReferralResponse{Referral: r}, nil
}

func (s *referralServer) AcceptReferral(ctx context.Context, req *pb.AcceptReferralRequest) (*pb.AcceptReferralResponse, error) {
	r, err := s.transition(ctx, req.GetName(), func(p careteam.Principal, id uuid.UUID) (*careteam.Referral, error) {
		return s.svc.AcceptReferral(ctx, p, id, req.GetEtag(), idempotency(req.GetRequestId(), req))
	})
	if err != nil {
		return nil, err
	}
	return &pb.AcceptReferralResponse{Referral: r}, nil
}

func (s *referralServer) DeclineReferral(ctx context.Context, req *pb.DeclineReferralRequest) (*pb.DeclineReferralResponse, error) {
	r, err := s.transition(ctx, req.GetName(), func(p careteam.Principal, id uuid.UUID) (*careteam.Referral, error) {
		return s.svc.DeclineReferral(ctx, p, id, enumToDomain[careteam.DeclineReason](req.GetReason()), req.GetText(), req.GetEtag(), idempotency(req.GetRequestId(), req))
	})
	if err != nil {
		return nil, err
	}
	return &pb.DeclineReferralResponse{Referral: r}, nil
}

func (s *referralServer) RequestInformation(ctx context.Context, req *pb.RequestInformationRequest) (*pb.RequestInformationResponse, error) {
	r, err := s.transition(ctx, req.GetName(), func(p careteam.Principal, id uuid.UUID) (*careteam.Referral, error) {
		return s.svc.RequestInformation(ctx, p, id, req.GetQuestion(), req.GetEtag(), idempotency(req.GetRequestId(), req))
	})
	if err != nil {
		return nil, err
	}
	return &pb.RequestInformationResponse{Referral: r}, nil
}

func (s *referralServer) ProvideInformation(ctx context.Context, req *pb.ProvideInformationRequest) (*pb.ProvideInformationResponse, error) {
	r, err := s.transition(ctx, req.GetName(), func(p careteam.Principal, id uuid.UUID) (*careteam.Referral, error) {
		return s.svc.ProvideInformation(ctx, p, id, req.GetAnswer(), req.GetEtag(), idempotency(req.GetRequestId(), req))
	})
	if err != nil {
		return nil, err
	}
	return &pb.ProvideInformationResponse{Referral: r}, nil
}

func (s *referralServer) CancelReferral(ctx context.Context, req *pb.CancelReferralRequest) (*pb.CancelReferralResponse, error) {
	r, err := s.transition(ctx, req.GetName(), func(p careteam.Principal, id uuid.UUID) (*careteam.Referral, error) {
		return s.svc.CancelReferral(ctx, p, id, req.GetReason(), req.GetEtag(), idempotency(req.GetRequestId(), req))
	})
	if err != nil {
		return nil, err
	}
	return &pb.CancelReferralResponse{Referral: r}, nil
}

func (s *referralServer) CompleteReferral(ctx context.Context, req *pb.CompleteReferralRequest) (*pb.CompleteReferralResponse, error) {
	var progress *careteam.Progress
	r, err := s.transition(ctx, req.GetName(), func(p careteam.Principal, id uuid.UUID) (*careteam.Referral, error) {
		r, pr, err := s.svc.CompleteReferral(ctx, p, id, req.GetDischargeNote(), req.GetEtag(), idempotency(req.GetRequestId(), req))
		progress = pr
		return r, err
	})
	if err != nil {
		return nil, err
	}
	return &pb.CompleteReferralResponse{Referral: r, Progress: progressToProto(progress)}, nil
}

func (s *referralServer) GetReferralProgress(ctx context.Context, req *pb.GetReferralProgressRequest) (*pb.GetReferralProgressResponse, error) {
	pr, err := onNamed(ctx, careteam.Referrals, req.GetName(), func(ctx context.Context, p careteam.Principal, id uuid.UUID) (*careteam.Progress, error) {
		_, pr, err := s.svc.GetReferralProgress(ctx, p, id)
		return pr, err
	})
	if err != nil {
		return nil, err
	}
	return &pb.GetReferralProgressResponse{Progress: progressToProto(pr)}, nil
}

func treatmentsToProto(ts []careteam.Treatment) []*pb.Treatment {
	out := make([]*pb.Treatment, len(ts))
	for i, t := range ts {
		out[i] = &pb.Treatment{
			Region:    enumFromDomain[pb.BodyRegion](t.Region),
			Technique: enumFromDomain[pb.Technique](t.Technique),
			Pressure:  enumFromDomain[pb.Pressure](t.Pressure),
		}
	}
	return out
}

func treatmentsFromProto(ts []*pb.Treatment) []careteam.Treatment {
	out := make([]careteam.Treatment, len(ts))
	for i, t := range ts {
		out[i] = careteam.Treatment{
			Region:    enumToDomain[careteam.BodyRegion](t.GetRegion()),
			Technique: enumToDomain[careteam.Technique](t.GetTechnique()),
			Pressure:  enumToDomain[careteam.Pressure](t.GetPressure()),
		}
	}
	return out
}

func trendToProto(t *careteam.MeasureTrend) *pb.MeasureTrend {
	if t == nil {
		return nil
	}
	return &pb.MeasureTrend{First: int32(t.First), Latest: int32(t.Latest), Change: int32(t.Change),
		MeanChangePerSession: t.MeanChangePerSession, Sessions: int32(t.Sessions)}
}

func optionalInt(v *int) *int32 {
	if v == nil {
		return nil
	}
	i := int32(*v)
	return &i
}

func progressToProto(pr *careteam.Progress) *pb.ReferralProgress {
	r := pr.Referral
	out := &pb.ReferralProgress{
		Referral:                careteam.Referrals.Name(r.ID),
		State:                   enumFromDomain[pb.ReferralState](r.EffectiveState),
		AuthorizedVisits:        int32(r.AuthorizedVisits),
		UsedVisits:              int32(r.UsedVisits),
		RemainingVisits:         int32(r.RemainingVisits()),
		History:                 stateChangesToProto(r.History),
		Pain:                    trendToProto(pr.Pain),
		OswestryDisabilityIndex: trendToProto(pr.Oswestry),
		NeckDisabilityIndex:     trendToProto(pr.NeckDisability),
		LatestAssessment:        pr.LatestAssessment,
		LatestPlan:              pr.LatestPlan,
		MeanSessionPainRelief:   pr.MeanSessionPainRelief,
	}
	for _, ss := range pr.Sessions {
		out.Sessions = append(out.Sessions, &pb.SessionSummary{
			Session:                 careteam.Sessions.Name(ss.SessionID),
			StartTime:               timestamp(ss.StartTime),
			DurationMinutes:         int32(ss.DurationMinutes),
			Treatments:              treatmentsToProto(ss.Treatments),
			PainBefore:              optionalInt(ss.PainBefore),
			PainAfter:               optionalInt(ss.PainAfter),
			OswestryDisabilityIndex: optionalInt(ss.Oswestry),
			NeckDisabilityIndex:     optionalInt(ss.NeckDisability),
			AdverseEvent:            ss.AdverseEvent,
			Deviation:               ss.Deviation,
			Signed:                  ss.Signed,
		})
	}
	for _, a := range pr.AdverseEvents {
		out.AdverseEvents = append(out.AdverseEvents, &pb.AdverseEventSummary{
			Session: careteam.Sessions.Name(a.SessionID), Severity: enumFromDomain[pb.Severity](a.Severity),
			Description: a.Description, SessionTime: timestamp(a.SessionTime),
		})
	}
	for _, d := range pr.Deviations {
		out.Deviations = append(out.Deviations, &pb.DeviationSummary{
			Session: careteam.Sessions.Name(d.SessionID), Reason: d.Reason, SignTime: timestamp(d.SignTime),
		})
	}
	return out
}
