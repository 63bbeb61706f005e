package api

import (
	"context"
	"encoding/hex"

	pb "github.com/careteam/careteam/proto/careteam/v1"
	"github.com/careteam/careteam/server/internal/audit"
	"github.com/careteam/careteam/server/internal/careteam"
)

type auditServer struct {
	pb.UnimplementedAuditServiceServer
	svc *careteam.Service
}

func auditToProto(r *audit.Record) *pb.AuditEvent {
	out := &pb.AuditEvent{
		Sequence:        r.Sequence,
		Time:            timestamp(r.Time),
		Subject:         r.Subject,
		Practitioner:    careteam.Practitioners.NameOrEmpty(r.PractitionerID),
		Role:            r.Role,
		Organization:    careteam.Organizations.NameOrEmpty(r.OrganizationID),
		Method:          r.Method,
		Resources:       r.Resources,
		Outcome:         r.Outcome,
		PurposeOfUse:    enumFromDomain[pb.PurposeOfUse](r.Purpose),
		EmergencyReason: r.EmergencyReason,
		RequestId:       r.RequestID,
		Peer:            r.Peer,
		Hash:            hex.EncodeToString(r.Hash),
		SuppressedCalls: int32(r.Suppressed),
	}
	for _, p := range r.Patients {
		out.Patients = append(out.Patients, careteam.Patients.Name(p))
	}
	return out
}

func (s *auditServer) ListAuditEvents(ctx context.Context, req *pb.ListAuditEventsRequest) (*pb.ListAuditEventsResponse, error) {
	p, err := principalFrom(ctx)
	if err != nil {
		return nil, err
	}
	var v violations
	f := careteam.AuditFilter{
		PatientID:     v.optionalName(careteam.Patients, "patient", req.GetPatient()),
		Subject:       req.GetSubject(),
		From:          v.time("start_time", req.GetStartTime()),
		To:            v.time("end_time", req.GetEndTime()),
		Outcome:       req.GetOutcome(),
		EmergencyOnly: req.GetEmergencyOnly(),
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	after, err := decodeSequence(req, req.GetPageToken())
	if err != nil {
		return nil, err
	}
	rows, next, err := s.svc.ListAuditEvents(ctx, p, f, after, int(req.GetPageSize()))
	if err != nil {
		return nil, err
	}
	resp := &pb.ListAuditEventsResponse{NextPageToken: encodeSequence(req, next)}
	for _, r := range rows {
		resp.AuditEvents = append(resp.AuditEvents, auditToProto(r))
	}
	return resp, nil
}

func (s *auditServer) VerifyAuditLog(ctx context.Context, req *pb.VerifyAuditLogRequest) (*pb.VerifyAuditLogResponse, error) {
	p, err := principalFrom(ctx)
	if err != nil {
		return nil, err
	}
	v, err := s.svc.VerifyAuditLog(ctx, p, req.GetFromSequence(), req.GetToSequence())
	if err != nil {
		return nil, err
	}
	return &pb.VerifyAuditLogResponse{
		Ok: v.OK(), Checked: v.Checked, FirstBrokenSequence: v.BrokenSequence, Problem: v.Problem,
		Unsealed: v.Unsealed,
	}, nil
}
