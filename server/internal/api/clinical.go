package api

import (
	"context"

	"github.com/google/uuid"

	pb "github.com/careteam/careteam/proto/careteam/v1"
	"github.com/careteam/careteam/server/internal/careteam"
)

type clinicalServer struct {
	pb.UnimplementedClinicalServiceServer
	svc *careteam.Service
	obs Observer
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
		Categories:     codingsToProto(d.Categories),
		CreateTime:     timestamp(d.CreateTime),
		UpdateTime:     timestamp(d.UpdateTime),
		Etag:           careteam.Etag(d.Version),
	}
}

func (s *clinicalServer) RecordDiagnosis(ctx context.Context, req *pb.RecordDiagnosisRequest) (*pb.RecordDiagnosisResponse, error) {
	d, err := create(ctx, req, req.GetDiagnosis(), diagnosisFromProto, s.svc.RecordDiagnosis)
	if err != nil {
		return nil, err
	}
	return &pb.RecordDiagnosisResponse{Diagnosis: diagnosisToProto(d)}, nil
}

func (s *clinicalServer) GetDiagnosis(ctx context.Context, req *pb.GetDiagnosisRequest) (*pb.GetDiagnosisResponse, error) {
	d, err := onNamed(ctx, careteam.Diagnoses, req.GetName(), s.svc.GetDiagnosis)
	if err != nil {
		return nil, err
	}
	return &pb.GetDiagnosisResponse{Diagnosis: diagnosisToProto(d)}, nil
}

func (s *clinicalServer) ListDiagnoses(ctx context.Context, req *pb.ListDiagnosesRequest) (*pb.ListDiagnosesResponse, error) {
	rows, next, err := listed(ctx, req, func(p careteam.Principal, page careteam.Page) ([]*careteam.Diagnosis, uuid.UUID, error) {
		patient, err := parseName(careteam.Patients, "patient", req.GetPatient())
		if err != nil {
			return nil, uuid.Nil, err
		}
		return s.svc.ListDiagnoses(ctx, p, patient, page)
	}, diagnosisToProto)
	if err != nil {
		return nil, err
	}
	return &pb.ListDiagnosesResponse{Diagnoses: rows, NextPageToken: next}, nil
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

func consentToProto(c *careteam.Consent) *pb.Consent {
	return &pb.Consent{
		Name:         careteam.Consents.Name(c.ID),
		Patient:      careteam.Patients.Name(c.PatientID),
		FormVersion:  c.FormVersion,
		SignedDate:   formatDate(c.SignedDate),
		Signer:       enumFromDomain[pb.ConsentSigner](c.Signer),
		GuardianName: c.GuardianName,
		RecordedBy:   careteam.Practitioners.Name(c.RecordedBy),
		Organization: careteam.Organizations.Name(c.OrganizationID),
		CreateTime:   timestamp(c.CreateTime),
	}
}

func (s *clinicalServer) RecordConsent(ctx context.Context, req *pb.RecordConsentRequest) (*pb.RecordConsentResponse, error) {
	p, err := principalFrom(ctx)
	if err != nil {
		return nil, err
	}
	in := req.GetConsent()
	var v violations
	c := careteam.Consent{
		PatientID:    v.optionalName(careteam.Patients, "consent.patient", in.GetPatient()),
		FormVersion:  in.GetFormVersion(),
		SignedDate:   v.date("consent.signed_date", in.GetSignedDate()),
		Signer:       enumToDomain[string](in.GetSigner()),
		GuardianName: in.GetGuardianName(),
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	out, err := s.svc.RecordConsent(ctx, p, c, idempotency(req.GetRequestId(), req))
	if err != nil {
		return nil, err
	}
	return &pb.RecordConsentResponse{Consent: consentToProto(out)}, nil
}

func (s *clinicalServer) ListConsents(ctx context.Context, req *pb.ListConsentsRequest) (*pb.ListConsentsResponse, error) {
	rows, next, err := listed(ctx, req, func(p careteam.Principal, page careteam.Page) ([]*careteam.Consent, uuid.UUID, error) {
		patient, err := parseName(careteam.Patients, "patient", req.GetPatient())
		if err != nil {
			return nil, uuid.Nil, err
		}
		return s.svc.ListConsents(ctx, p, patient, page)
	}, consentToProto)
	if err != nil {
		return nil, err
	}
	return &pb.ListConsentsResponse{Consents: rows, NextPageToken: next}, nil
}

func clearanceToProto(c *careteam.Clearance) *pb.Clearance {
	out := &pb.Clearance{
		Name:                      careteam.Clearances.Name(c.ID),
		Patient:                   careteam.Patients.Name(c.PatientID),
		Referral:                  careteam.Referrals.NameOrEmpty(c.ReferralID),
		Physician:                 careteam.Practitioners.Name(c.PhysicianID),
		Decision:                  enumFromDomain[pb.ClearanceDecision](c.Decision),
		Status:                    enumFromDomain[pb.ClearanceStatus](c.EffectiveStatus),
		ValidFrom:                 timestamp(c.ValidFrom),
		ValidUntil:                timestamp(c.ValidUntil),
		ContraindicatedTechniques: enumsFromDomain[pb.Technique](c.Contraindicated),
		EvaluatedRedFlags:         enumsFromDomain[pb.RedFlag](c.EvaluatedRedFlags),
		Notes:                     c.Notes,
		RequestedBy:               careteam.Practitioners.NameOrEmpty(c.RequestedBy),
		Question:                  c.Question,
		IssueTime:                 timestamp(c.IssueTime),
		SupersededBy:              careteam.Clearances.NameOrEmpty(c.SupersededBy),
		SupersedeTime:             timestamp(c.SupersedeTime),
		CreateTime:                timestamp(c.CreateTime),
		UpdateTime:                timestamp(c.UpdateTime),
		Etag:                      careteam.Etag(c.Version),
	}
	for _, pc := range c.Precautions {
		out.Precautions = append(out.Precautions, &pb.Precaution{
			Region:      enumFromDomain[pb.BodyRegion](pc.Region),
			Technique:   enumFromDomain[pb.Technique](pc.Technique),
			Action:      enumFromDomain[pb.PrecautionAction](pc.Action),
			MaxPressure: enumFromDomain[pb.Pressure](pc.MaxPressure),
		})
	}
	if sp := c.Suspension; sp != nil {
		out.Suspension = &pb.Suspension{Actor: careteam.Practitioners.Name(sp.Actor), RedFlag: enumFromDomain[pb.RedFlag](sp.RedFlag),
			Observation: sp.Observation, Time: timestamp(sp.Time)}
	}
	if rv := c.Revocation; rv != nil {
		out.Revocation = &pb.Revocation{Actor: careteam.Practitioners.Name(rv.Actor), Reason: rv.Reason, Time: timestamp(rv.Time)}
	}
	return out
}

func (s *clinicalServer) RequestClearance(ctx context.Context, req *pb.RequestClearanceRequest) (*pb.RequestClearanceResponse, error) {
	p, err := principalFrom(ctx)
	if err != nil {
		return nil, err
	}
	var v violations
	patient := v.name(careteam.Patients, "patient", req.GetPatient())
	referral := v.optionalName(careteam.Referrals, "referral", req.GetReferral())
	physician := v.optionalName(careteam.Practitioners, "physician", req.GetPhysician())
	if err := v.err(); err != nil {
		return nil, err
	}
	c, err := s.svc.RequestClearance(ctx, p, patient, referral, physician, req.GetQuestion(), idempotency(req.GetRequestId(), req))
	if err != nil {
		return nil, err
	}
	return &pb.RequestClearanceResponse{Clearance: clearanceToProto(c)}, nil
}

func (s *clinicalServer) IssueClearance(ctx context.Context, req *pb.IssueClearanceRequest) (*pb.IssueClearanceResponse, error) {
	p, err := principalFrom(ctx)
	if err != nil {
		return nil, err
	}
	in := req.GetClearance()
	var v violations
	c := careteam.Clearance{
		PatientID:         v.optionalName(careteam.Patients, "clearance.patient", in.GetPatient()),
		ReferralID:        v.optionalName(careteam.Referrals, "clearance.referral", in.GetReferral()),
		Decision:          enumToDomain[careteam.ClearanceDecision](in.GetDecision()),
		ValidFrom:         v.time("clearance.valid_from", in.GetValidFrom()),
		ValidUntil:        v.time("clearance.valid_until", in.GetValidUntil()),
		Contraindicated:   enumsToDomain[careteam.Technique](in.GetContraindicatedTechniques()),
		EvaluatedRedFlags: enumsToDomain[careteam.RedFlag](in.GetEvaluatedRedFlags()),
		Notes:             in.GetNotes(),
	}
	for _, pc := range in.GetPrecautions() {
		c.Precautions = append(c.Precautions, careteam.Precaution{
			Region:      enumToDomain[careteam.BodyRegion](pc.GetRegion()),
			Technique:   enumToDomain[careteam.Technique](pc.GetTechnique()),
			Action:      enumToDomain[careteam.PrecautionAction](pc.GetAction()),
			MaxPressure: enumToDomain[careteam.Pressure](pc.GetMaxPressure()),
		})
	}
	requested := v.optionalName(careteam.Clearances, "requested_clearance", req.GetRequestedClearance())
	if err := v.err(); err != nil {
		return nil, err
	}
	out, err := s.svc.IssueClearance(ctx, p, c, requested, idempotency(req.GetRequestId(), req))
	if err != nil {
		return nil, err
	}
	return &pb.IssueClearanceResponse{Clearance: clearanceToProto(out)}, nil
}

func (s *clinicalServer) SuspendClearance(ctx context.Context, req *pb.SuspendClearanceRequest) (*pb.SuspendClearanceResponse, error) {
	c, err := onNamed(ctx, careteam.Clearances, req.GetName(), func(ctx context.Context, p careteam.Principal, id uuid.UUID) (*careteam.Clearance, error) {
		return s.svc.SuspendClearance(ctx, p, id, enumToDomain[careteam.RedFlag](req.GetRedFlag()), req.GetObservation(), req.GetEtag(), idempotency(req.GetRequestId(), req))
	})
	if err != nil {
		return nil, err
	}
	return &pb.SuspendClearanceResponse{Clearance: clearanceToProto(c)}, nil
}

func (s *clinicalServer) RevokeClearance(ctx context.Context, req *pb.RevokeClearanceRequest) (*pb.RevokeClearanceResponse, error) {
	c, err := onNamed(ctx, careteam.Clearances, req.GetName(), func(ctx context.Context, p careteam.Principal, id uuid.UUID) (*careteam.Clearance, error) {
		return s.svc.RevokeClearance(ctx, p, id, req.GetReason(), req.GetEtag(), idempotency(req.GetRequestId(), req))
	})
	if err != nil {
		return nil, err
	}
	return &pb.RevokeClearanceResponse{Clearance: clearanceToProto(c)}, nil
}

func (s *clinicalServer) GetClearance(ctx context.Context, req *pb.GetClearanceRequest) (*pb.GetClearanceResponse, error) {
	c, err := onNamed(ctx, careteam.Clearances, req.GetName(), s.svc.GetClearance)
	if err != nil {
		return nil, err
	}
	return &pb.GetClearanceResponse{Clearance: clearanceToProto(c)}, nil
}

func (s *clinicalServer) ListClearances(ctx context.Context, req *pb.ListClearancesRequest) (*pb.ListClearancesResponse, error) {
	rows, next, err := listed(ctx, req, func(p careteam.Principal, page careteam.Page) ([]*careteam.Clearance, uuid.UUID, error) {
		var v violations
		f := careteam.ClearanceFilter{
			PatientID:  v.optionalName(careteam.Patients, "patient", req.GetPatient()),
			ReferralID: v.optionalName(careteam.Referrals, "referral", req.GetReferral()),
			Status:     enumToDomain[careteam.ClearanceStatus](req.GetStatus()),
		}
		if err := v.err(); err != nil {
			return nil, uuid.Nil, err
		}
		return s.svc.ListClearances(ctx, p, f, page)
	}, clearanceToProto)
	if err != nil {
		return nil, err
	}
	return &pb.ListClearancesResponse{Clearances: rows, NextPageToken: next}, nil
}

func violationsToProto(vs []careteam.Violation) []*pb.Violation {
	out := make([]*pb.Violation, len(vs))
	for i, v := range vs {
		out[i] = &pb.Violation{Type: v.Type, Subject: v.Subject, Description: v.Description}
	}
	return out
}

func (s *clinicalServer) CheckClearance(ctx context.Context, req *pb.CheckClearanceRequest) (*pb.CheckClearanceResponse, error) {
	p, err := principalFrom(ctx)
	if err != nil {
		return nil, err
	}
	var v violations
	referral := v.name(careteam.Referrals, "referral", req.GetReferral())
	therapist := v.optionalName(careteam.Practitioners, "therapist", req.GetTherapist())
	at := v.time("session_time", req.GetSessionTime())
	if err := v.err(); err != nil {
		return nil, err
	}
	res, err := s.svc.CheckClearance(ctx, p, referral, therapist, at, treatmentsFromProto(req.GetPlanned()))
	if err != nil {
		return nil, err
	}
	s.obs.GateRefused(violationTypes(res.Violations))
	return &pb.CheckClearanceResponse{
		Allowed:    res.Allowed,
		Violations: violationsToProto(res.Violations),
		Clearance:  careteam.Clearances.NameOrEmpty(res.Clearance),
	}, nil
}
