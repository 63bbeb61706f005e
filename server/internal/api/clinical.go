package api

import (
	"context"

	pb "github.com/careteam/careteam/proto/careteam/v1"
	"github.com/careteam/careteam/server/internal/careteam"
)

type clinicalServer struct {
	pb.UnimplementedClinicalServiceServer
	svc *careteam.Service
}

func diagnosisFromProto(in *pb.Diagnosis) (careteam.Diagnosis, error) {
	var v violations
	d := careteam.Diagnosis{
		PatientID:      v.optionalName(careteam.Patients, "diagnosis.patient", in.GetPatient()),
		ICD10Code:      in.GetIcd10Code(),
		Display:        in.GetDisplay(),
		BodySites:      enumsToDomain[careteam.BodyRegion](in.GetBodySites()),
		OnsetDate:      v.date("diagnosis.onset_date", in.GetOnsetDate()),
		ClinicalStatus: enumToDomain[careteam.ClinicalStatus](in.GetClinicalStatus()),
		Severity:       enumToDomain[careteam.Severity](in.GetSeverity()),
		RedFlags:       enumsToDomain[careteam.RedFlag](in.GetRedFlags()),
		Notes:          in.GetNotes(),
		NotesShareable: in.GetNotesShareable(),
	}
	return d, v.err()
}

func diagnosisToProto(d *careteam.Diagnosis) *pb.Diagnosis {
	return &pb.Diagnosis{
		Name:           careteam.Diagnoses.Name(d.ID),
		Patient:        careteam.Patients.Name(d.PatientID),
		Physician:      careteam.Practitioners.Name(d.PhysicianID),
		Icd10Code:      d.ICD10Code,
		Display:        d.Display,
		BodySites:      enumsFromDomain[pb.BodyRegion](d.BodySites),
		OnsetDate:      formatDate(d.OnsetDate),
		ClinicalStatus: enumFromDomain[pb.ClinicalStatus](d.ClinicalStatus),
		Severity:       enumFromDomain[pb.Severity](d.Severity),
		RedFlags:       enumsFromDomain[pb.RedFlag](d.RedFlags),
		Notes:          d.Notes,
		NotesShareable: d.NotesShareable,
		CreateTime:     timestamp(d.CreateTime),
		UpdateTime:     timestamp(d.UpdateTime),
		Etag:           careteam.Etag(d.Version),
	}
}

func (s *clinicalServer) RecordDiagnosis(ctx context.Context, req *pb.RecordDiagnosisRequest) (*pb.RecordDiagnosisResponse, error) {
	p, err := principalFrom(ctx)
	if err != nil {
		return nil, err
	}
	in, err := diagnosisFromProto(req.GetDiagnosis())
	if err != nil {
		return nil, err
	}
	d, err := s.svc.RecordDiagnosis(ctx, p, in, idempotency(req.GetRequestId(), req))
	if err != nil {
		return nil, err
	}
	return &pb.RecordDiagnosisResponse{Diagnosis: diagnosisToProto(d)}, nil
}

func (s *clinicalServer) GetDiagnosis(ctx context.Context, req *pb.GetDiagnosisRequest) (*pb.GetDiagnosisResponse, error) {
	p, err := principalFrom(ctx)
	if err != nil {
		return nil, err
	}
	id, err := parseName(careteam.Diagnoses, "name", req.GetName())
	if err != nil {
		return nil, err
	}
	d, err := s.svc.GetDiagnosis(ctx, p, id)
	if err != nil {
		return nil, err
	}
	return &pb.GetDiagnosisResponse{Diagnosis: diagnosisToProto(d)}, nil
}

func (s *clinicalServer) ListDiagnoses(ctx context.Context, req *pb.ListDiagnosesRequest) (*pb.ListDiagnosesResponse, error) {
	p, err := principalFrom(ctx)
	if err != nil {
		return nil, err
	}
	patient, err := parseName(careteam.Patients, "patient", req.GetPatient())
	if err != nil {
		return nil, err
	}
	page, err := decodePage(req, req.GetPageToken(), req.GetPageSize())
	if err != nil {
		return nil, err
	}
	rows, next, err := s.svc.ListDiagnoses(ctx, p, patient, page)
	if err != nil {
		return nil, err
	}
	resp := &pb.ListDiagnosesResponse{NextPageToken: encodePage(req, next)}
	for _, d := range rows {
		resp.Diagnoses = append(resp.Diagnoses, diagnosisToProto(d))
	}
	return resp, nil
}

func (s *clinicalServer) UpdateDiagnosis(ctx context.Context, req *pb.UpdateDiagnosisRequest) (*pb.UpdateDiagnosisResponse, error) {
	p, err := principalFrom(ctx)
	if err != nil {
		return nil, err
	}
	id, err := parseName(careteam.Diagnoses, "diagnosis.name", req.GetDiagnosis().GetName())
	if err != nil {
		return nil, err
	}
	paths, err := maskPaths("update_mask", req.GetUpdateMask().GetPaths(),
		"clinical_status", "severity", "notes", "notes_shareable", "red_flags", "body_sites", "display")
	if err != nil {
		return nil, err
	}
	in, err := diagnosisFromProto(req.GetDiagnosis())
	if err != nil {
		return nil, err
	}
	in.ID = id
	d, err := s.svc.UpdateDiagnosis(ctx, p, in, careteam.DiagnosisUpdate{
		ClinicalStatus: paths["clinical_status"],
		Severity:       paths["severity"],
		Notes:          paths["notes"],
		NotesShareable: paths["notes_shareable"],
		RedFlags:       paths["red_flags"],
		BodySites:      paths["body_sites"],
		Display:        paths["display"],
	}, req.GetDiagnosis().GetEtag(), idempotency(req.GetRequestId(), req))
	if err != nil {
		return nil, err
	}
	return &pb.UpdateDiagnosisResponse{Diagnosis: diagnosisToProto(d)}, nil
}
