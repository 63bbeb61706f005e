package api

import (
	"context"

	pb "github.com/careteam/careteam/proto/careteam/v1"
	"github.com/careteam/careteam/server/internal/careteam"
	"github.com/careteam/careteam/server/internal/fhir"
)

type fhirServer struct {
	pb.UnimplementedFhirServiceServer
	svc *careteam.Service
}

func (s *fhirServer) ImportServiceRequest(ctx context.Context, req *pb.ImportServiceRequestRequest) (*pb.ImportServiceRequestResponse, error) {
	p, err := principalFrom(ctx)
	if err != nil {
		return nil, err
	}
	in, err := fhir.ParseServiceRequest(req.GetResourceJson())
	if err != nil {
		return nil, err
	}
	res, err := s.svc.ImportServiceRequest(ctx, p, *in, idempotency(req.GetRequestId(), req))
	if err != nil {
		return nil, err
	}
	resp := &pb.ImportServiceRequestResponse{
		Referral: referralToProto(res.Referral),
		Patient:  patientToProto(res.Patient),
		Changed:  res.Changed,
	}
	for _, d := range res.Diagnoses {
		resp.Diagnoses = append(resp.Diagnoses, diagnosisToProto(d))
	}
	return resp, nil
}

func (s *fhirServer) ExportReferralBundle(ctx context.Context, req *pb.ExportReferralBundleRequest) (*pb.ExportReferralBundleResponse, error) {
	p, err := principalFrom(ctx)
	if err != nil {
		return nil, err
	}
	id, err := parseName(careteam.Referrals, "referral", req.GetReferral())
	if err != nil {
		return nil, err
	}
	rec, err := s.svc.GetReferralRecord(ctx, p, id)
	if err != nil {
		return nil, err
	}
	bundle, err := fhir.Bundle(rec)
	if err != nil {
		return nil, err
	}
	return &pb.ExportReferralBundleResponse{BundleJson: bundle}, nil
}
