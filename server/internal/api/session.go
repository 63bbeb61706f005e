package api

import (
	"context"
	"errors"

	"github.com/google/uuid"

	pb "github.com/careteam/careteam/proto/careteam/v1"
	"github.com/careteam/careteam/server/internal/careteam"
)

type sessionServer struct {
	pb.UnimplementedSessionServiceServer
	svc *careteam.Service
	obs Observer
}

func violationTypes(vs []careteam.Violation) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = v.Type
	}
	return out
}

func intPtr(v *int32) *int {
	if v == nil {
		return nil
	}
	i := int(*v)
	return &i
}

func noteToProto(n *careteam.Note) *pb.SessionNote {
	out := &pb.SessionNote{
		Status:                  enumFromDomain[pb.NoteStatus](n.Status),
		Subjective:              n.Subjective,
		Objective:               n.Objective,
		Assessment:              n.Assessment,
		Plan:                    n.Plan,
		PainBefore:              optionalInt(n.PainBefore),
		PainAfter:               optionalInt(n.PainAfter),
		OswestryDisabilityIndex: optionalInt(n.Oswestry),
		NeckDisabilityIndex:     optionalInt(n.NeckDisability),
		RangeOfMotion:           n.RangeOfMotion,
		Treatments:              treatmentsToProto(n.Treatments),
		DurationMinutes:         int32(n.DurationMinutes),
		DeviationReason:         n.DeviationReason,
	}
	if a := n.AdverseEvent; a != nil {
		out.AdverseEvent = &pb.AdverseEvent{Description: a.Description, Severity: enumFromDomain[pb.Severity](a.Severity)}
	}
	if sig := n.Signature; sig != nil {
		out.Signature = signatureToProto(sig)
	}
	for i := range n.Amendments {
		out.Amendments = append(out.Amendments, amendmentToProto(&n.Amendments[i]))
	}
	return out
}

func signatureToProto(sig *careteam.Signature) *pb.Signature {
	return &pb.Signature{Signer: careteam.Practitioners.Name(sig.Signer), SignTime: timestamp(sig.Time), ContentSha256: sig.ContentSHA256}
}

func amendmentToProto(a *careteam.Amendment) *pb.Amendment {
	return &pb.Amendment{Author: careteam.Practitioners.Name(a.Author), Time: timestamp(a.Time), Reason: a.Reason, Text: a.Text}
}

func sessionToProto(s *careteam.Session) *pb.Session {
	return &pb.Session{
		Name:               careteam.Sessions.Name(s.ID),
		Referral:           careteam.Referrals.Name(s.ReferralID),
		Patient:            careteam.Patients.Name(s.PatientID),
		Therapist:          careteam.Practitioners.Name(s.TherapistID),
		State:              enumFromDomain[pb.SessionState](s.State),
		Planned:            treatmentsToProto(s.Planned),
		ScheduledStartTime: timestamp(s.ScheduledStartTime),
		StartTime:          timestamp(s.StartTime),
		VisitNumber:        int32(s.VisitNumber),
		Clearance:          careteam.Clearances.Name(s.ClearanceID),
		Note:               noteToProto(&s.Note),
		CancelReason:       enumFromDomain[pb.CancelReason](s.CancelReason),
		CancelText:         s.CancelText,
		CreateTime:         timestamp(s.CreateTime),
		UpdateTime:         timestamp(s.UpdateTime),
		Etag:               careteam.Etag(s.Version),
	}
}

func (s *sessionServer) StartSession(ctx context.Context, req *pb.StartSessionRequest) (*pb.StartSessionResponse, error) {
	p, err := principalFrom(ctx)
	if err != nil {
		return nil, err
	}
	var v violations
	referral := v.name(careteam.Referrals, "referral", req.GetReferral())
	at := v.time("scheduled_start_time", req.GetScheduledStartTime())
	if err := v.err(); err != nil {
		return nil, err
	}
	ss, err := s.svc.StartSession(ctx, p, referral, treatmentsFromProto(req.GetPlanned()), at, idempotency(req.GetRequestId(), req))
	var refused *careteam.PreconditionError
	if errors.As(err, &refused) {
		s.obs.GateRefused(violationTypes(refused.Violations))
	}
	if err != nil {
		return nil, err
	}
	return &pb.StartSessionResponse{Session: sessionToProto(ss)}, nil
}

func (s *sessionServer) GetSession(ctx context.Context, req *pb.GetSessionRequest) (*pb.GetSessionResponse, error) {
	ss, err := onNamed(ctx, careteam.Sessions, req.GetName(), s.svc.GetSession)
	if err != nil {
		return nil, err
	}
	return &pb.GetSessionResponse{Session: sessionToProto(ss)}, nil
}

func (s *sessionServer) ListSessions(ctx context.Context, req *pb.ListSessionsRequest) (*pb.ListSessionsResponse, error) {
	rows, next, err := listed(ctx, req, func(p careteam.Principal, page careteam.Page) ([]*careteam.Session, uuid.UUID, error) {
		var v violations
		f := careteam.SessionFilter{
			ReferralID:  v.optionalName(careteam.Referrals, "referral", req.GetReferral()),
			PatientID:   v.optionalName(careteam.Patients, "patient", req.GetPatient()),
			TherapistID: v.optionalName(careteam.Practitioners, "therapist", req.GetTherapist()),
			From:        v.time("start_time_from", req.GetStartTimeFrom()),
			To:          v.time("start_time_to", req.GetStartTimeTo()),
			State:       enumToDomain[careteam.SessionState](req.GetState()),
		}
		if err := v.err(); err != nil {
			return nil, uuid.Nil, err
		}
		return s.svc.ListSessions(ctx, p, f, page)
	}, sessionToProto)
	if err != nil {
		return nil, err
	}
	return &pb.ListSessionsResponse{Sessions: rows, NextPageToken: next}, nil
}

func (s *sessionServer) CancelSession(ctx context.Context, req *pb.CancelSessionRequest) (*pb.CancelSessionResponse, error) {
	ss, err := onNamed(ctx, careteam.Sessions, req.GetName(), func(ctx context.Context, p careteam.Principal, id uuid.UUID) (*careteam.Session, error) {
		return s.svc.CancelSession(ctx, p, id, enumToDomain[string](req.GetReason()), req.GetText(), req.GetEtag(), idempotency(req.GetRequestId(), req))
	})
	if err != nil {
		return nil, err
	}
	return &pb.CancelSessionResponse{Session: sessionToProto(ss)}, nil
}

func (s *sessionServer) UpdateSessionNote(ctx context.Context, req *pb.UpdateSessionNoteRequest) (*pb.UpdateSessionNoteResponse, error) {
	p, err := principalFrom(ctx)
	if err != nil {
		return nil, err
	}
	id, err := parseName(careteam.Sessions, "name", req.GetName())
	if err != nil {
		return nil, err
	}
	paths, err := maskPaths("update_mask", req.GetUpdateMask().GetPaths(), "subjective", "objective", "assessment", "plan",
		"pain_before", "pain_after", "oswestry_disability_index", "neck_disability_index", "range_of_motion",
		"treatments", "duration_minutes", "adverse_event")
	if err != nil {
		return nil, err
	}
	n := req.GetNote()
	in := careteam.Note{
		Subjective: n.GetSubjective(), Objective: n.GetObjective(), Assessment: n.GetAssessment(), Plan: n.GetPlan(),
		PainBefore: intPtr(n.PainBefore), PainAfter: intPtr(n.PainAfter),
		Oswestry: intPtr(n.OswestryDisabilityIndex), NeckDisability: intPtr(n.NeckDisabilityIndex),
		RangeOfMotion: n.GetRangeOfMotion(), Treatments: treatmentsFromProto(n.GetTreatments()),
		DurationMinutes: int(n.GetDurationMinutes()),
	}
	if a := n.GetAdverseEvent(); a != nil {
		in.AdverseEvent = &careteam.AdverseEvent{Description: a.GetDescription(), Severity: enumToDomain[careteam.Severity](a.GetSeverity())}
	}
	ss, err := s.svc.UpdateSessionNote(ctx, p, id, in, careteam.NoteUpdate{
		Subjective: paths["subjective"], Objective: paths["objective"], Assessment: paths["assessment"], Plan: paths["plan"],
		PainBefore: paths["pain_before"], PainAfter: paths["pain_after"],
		Oswestry: paths["oswestry_disability_index"], NeckDisability: paths["neck_disability_index"],
		RangeOfMotion: paths["range_of_motion"], Treatments: paths["treatments"],
		DurationMinutes: paths["duration_minutes"], AdverseEvent: paths["adverse_event"],
	}, req.GetEtag(), idempotency(req.GetRequestId(), req))
	if err != nil {
		return nil, err
	}
	return &pb.UpdateSessionNoteResponse{Session: sessionToProto(ss)}, nil
}

func (s *sessionServer) SignSessionNote(ctx context.Context, req *pb.SignSessionNoteRequest) (*pb.SignSessionNoteResponse, error) {
	ss, err := onNamed(ctx, careteam.Sessions, req.GetName(), func(ctx context.Context, p careteam.Principal, id uuid.UUID) (*careteam.Session, error) {
		return s.svc.SignSessionNote(ctx, p, id, req.GetDeviationReason(), req.GetEtag(), idempotency(req.GetRequestId(), req))
	})
	if err != nil {
		return nil, err
	}
	return &pb.SignSessionNoteResponse{Session: sessionToProto(ss), Signature: signatureToProto(ss.Note.Signature)}, nil
}

func (s *sessionServer) AmendSessionNote(ctx context.Context, req *pb.AmendSessionNoteRequest) (*pb.AmendSessionNoteResponse, error) {
	p, err := principalFrom(ctx)
	if err != nil {
		return nil, err
	}
	id, err := parseName(careteam.Sessions, "name", req.GetName())
	if err != nil {
		return nil, err
	}
	ss, a, err := s.svc.AmendSessionNote(ctx, p, id, req.GetReason(), req.GetText(), idempotency(req.GetRequestId(), req))
	if err != nil {
		return nil, err
	}
	return &pb.AmendSessionNoteResponse{Session: sessionToProto(ss), Amendment: amendmentToProto(a)}, nil
}
