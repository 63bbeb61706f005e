package api

import (
	"context"

	"github.com/google/uuid"

	pb "github.com/careteam/careteam/proto/careteam/v1"
	"github.com/careteam/careteam/server/internal/careteam"
)

type patientServer struct {
	pb.UnimplementedPatientServiceServer
	svc *careteam.Service
}

func patientFromProto(in *pb.Patient) (careteam.Patient, error) {
	var v violations
	return careteam.Patient{
		GivenName:   in.GetGivenName(),
		FamilyName:  in.GetFamilyName(),
		BirthDate:   v.date("patient.birth_date", in.GetBirthDate()),
		Gender:      enumToDomain[careteam.Gender](in.GetGender()),
		Identifiers: identifiersFromProto(in.GetIdentifiers()),
	}, v.err()
}

func patientToProto(p *careteam.Patient) *pb.Patient {
	return &pb.Patient{
		Name:                    careteam.Patients.Name(p.ID),
		GivenName:               p.GivenName,
		FamilyName:              p.FamilyName,
		BirthDate:               formatDate(p.BirthDate),
		Gender:                  enumFromDomain[pb.AdministrativeGender](p.Gender),
		Identifiers:             identifiersToProto(p.Identifiers),
		RegisteringOrganization: careteam.Organizations.Name(p.OrganizationID),
		CreateTime:              timestamp(p.CreateTime),
		UpdateTime:              timestamp(p.UpdateTime),
		Etag:                    careteam.Etag(p.Version),
	}
}

func (s *patientServer) CreatePatient(ctx context.Context, req *pb.CreatePatientRequest) (*pb.CreatePatientResponse, error) {
	pt, err := create(ctx, req, req.GetPatient(), patientFromProto, s.svc.CreatePatient)
	if err != nil {
		return nil, err
	}
	return &pb.CreatePatientResponse{Patient: patientToProto(pt)}, nil
}

func (s *patientServer) GetPatient(ctx context.Context, req *pb.GetPatientRequest) (*pb.GetPatientResponse, error) {
	pt, err := onNamed(ctx, careteam.Patients, req.GetName(), s.svc.GetPatient)
	if err != nil {
		return nil, err
	}
	return &pb.GetPatientResponse{Patient: patientToProto(pt)}, nil
}

func (s *patientServer) ListPatients(ctx context.Context, req *pb.ListPatientsRequest) (*pb.ListPatientsResponse, error) {
	rows, next, err := listed(ctx, req, func(p careteam.Principal, page careteam.Page) ([]*careteam.Patient, uuid.UUID, error) {
		birth, err := parseDate("birth_date", req.GetBirthDate())
		if err != nil {
			return nil, uuid.Nil, err
		}
		return s.svc.ListPatients(ctx, p, careteam.PatientFilter{FamilyNamePrefix: req.GetFamilyNamePrefix(), BirthDate: birth}, page)
	}, patientToProto)
	if err != nil {
		return nil, err
	}
	return &pb.ListPatientsResponse{Patients: rows, NextPageToken: next}, nil
}

func (s *patientServer) UpdatePatient(ctx context.Context, req *pb.UpdatePatientRequest) (*pb.UpdatePatientResponse, error) {
	p, err := principalFrom(ctx)
	if err != nil {
		return nil, err
	}
	id, err := parseName(careteam.Patients, "patient.name", req.GetPatient().GetName())
	if err != nil {
		return nil, err
	}
	paths, err := maskPaths("update_mask", req.GetUpdateMask().GetPaths(), "given_name", "family_name", "birth_date", "gender", "identifiers")
	if err != nil {
		return nil, err
	}
	in, err := patientFromProto(req.GetPatient())
	if ctx, err = withUnconverted(ctx, err); err != nil {
		return nil, err
	}
	in.ID = id
	pt, err := s.svc.UpdatePatient(ctx, p, in, careteam.PatientUpdate{
		GivenName:   paths["given_name"],
		FamilyName:  paths["family_name"],
		BirthDate:   paths["birth_date"],
		Gender:      paths["gender"],
		Identifiers: paths["identifiers"],
	}, req.GetPatient().GetEtag(), idempotency(req.GetRequestId(), req))
	if err != nil {
		return nil, err
	}
	return &pb.UpdatePatientResponse{Patient: patientToProto(pt)}, nil
}

func (s *patientServer) LookupPatient(ctx context.Context, req *pb.LookupPatientRequest) (*pb.LookupPatientResponse, error) {
	p, err := principalFrom(ctx)
	if err != nil {
		return nil, err
	}
	pt, err := s.svc.LookupPatient(ctx, p, careteam.Identifier{
		System: req.GetIdentifier().GetSystem(), Value: req.GetIdentifier().GetValue(),
	})
	if err != nil {
		return nil, err
	}
	return &pb.LookupPatientResponse{Patient: patientToProto(pt)}, nil
}
