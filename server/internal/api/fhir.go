package api

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/careteam/careteam/proto/careteam/v1"
	"github.com/careteam/careteam/server/internal/careteam"
	"github.com/careteam/careteam/server/internal/fhir"
)

type fhirServer struct {
	pb.UnimplementedFhirServiceServer
	svc    *careteam.Service
	naming fhir.Naming
}

func (s *fhirServer) ImportServiceRequest(ctx context.Context, req *pb.ImportServiceRequestRequest) (*pb.ImportServiceRequestResponse, error) {
	p, err := principalFrom(ctx)
	if err != nil {
		return nil, err
	}
	in, err := fhir.ParseServiceRequest(s.naming.Inward(req.GetResourceJson()))
	if err != nil {
		return nil, err
	}
	in.CreateOnly = req.GetCreateOnly()
	res, err := s.svc.ImportServiceRequest(ctx, p, *in, idempotency(req.GetRequestId(), req))
	if err != nil {
		return nil, err
	}
	resp := &pb.ImportServiceRequestResponse{
		Referral: referralToProto(res.Referral),
		Patient:  patientToProto(res.Patient),
		Changed:  res.Changed,
		Created:  res.Created,
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
	if bundle, err = s.naming.Outward(bundle); err != nil {
		return nil, err
	}
	return &pb.ExportReferralBundleResponse{BundleJson: bundle}, nil
}

func (s *fhirServer) GetFhirResource(ctx context.Context, req *pb.GetFhirResourceRequest) (*pb.GetFhirResourceResponse, error) {
	p, err := principalFrom(ctx)
	if err != nil {
		return nil, err
	}
	r, err := s.read(ctx, p, req.GetResourceType(), req.GetId())
	if err != nil {
		return nil, err
	}
	res, err := s.toProto(r)
	if err != nil {
		return nil, err
	}
	return &pb.GetFhirResourceResponse{Resource: res}, nil
}

// read finds one resource by type and id through the domain's reads, so
// that what the caller may not read is refused and what it may is redacted
// as over every other method. Resources careteam keeps no row of (Task,
// Composition, Observation) and the ServiceRequest and Encounter are read
// as part of their referral's record.
func (s *fhirServer) read(ctx context.Context, p careteam.Principal, typ, id string) (fhir.Resource, error) {
	notFound := fmt.Errorf("%s/%s: %w", typ, id, careteam.ErrNotFound)
	row := func(s string) (uuid.UUID, error) {
		u, err := uuid.Parse(s)
		if err != nil || len(s) != 36 {
			return uuid.Nil, notFound
		}
		return u, nil
	}
	var referral uuid.UUID
	switch typ {
	case "Patient", "Condition", "CarePlan", "Practitioner", "Organization", "ServiceRequest", "Task", "Composition", "Encounter":
		u, err := row(id)
		if err != nil {
			return fhir.Resource{}, err
		}
		id = u.String() // ids are written in lower case
		switch typ {
		case "Patient":
			return readAs(s.svc.GetPatient(ctx, p, u))(fhir.PatientResource)
		case "Condition":
			return readAs(s.svc.GetDiagnosis(ctx, p, u))(fhir.ConditionResource)
		case "CarePlan":
			return readAs(s.svc.GetClearance(ctx, p, u))(fhir.CarePlanResource)
		case "Practitioner":
			return readAs(s.svc.GetPractitioner(ctx, p, u))(fhir.PractitionerResource)
		case "Organization":
			return readAs(s.svc.GetOrganization(ctx, p, u))(fhir.OrganizationResource)
		case "Encounter":
			ss, err := s.svc.GetSession(ctx, p, u)
			if err != nil {
				return fhir.Resource{}, err
			}
			referral = ss.ReferralID
		default:
			referral = u
		}
	case "Observation":
		// {session id}-{measure}
		u, err := row(id[:min(len(id), 36)])
		if err != nil || len(id) < 38 || id[36] != '-' {
			return fhir.Resource{}, notFound
		}
		id = u.String() + id[36:]
		ss, err := s.svc.GetSession(ctx, p, u)
		if err != nil {
			return fhir.Resource{}, err
		}
		referral = ss.ReferralID
	default:
		return fhir.Resource{}, invalid("resource_type", "careteam serves Patient, ServiceRequest, Task, Condition, CarePlan, "+
			"Encounter, Observation, Composition, Practitioner and Organization")
	}
	all, err := s.record(ctx, p, referral)
	if err != nil {
		return fhir.Resource{}, err
	}
	for _, r := range all {
		if r.Type == typ && r.ID == id {
			return r, nil
		}
	}
	return fhir.Resource{}, notFound
}

// record reads a referral's record as the caller may, as resources.
func (s *fhirServer) record(ctx context.Context, p careteam.Principal, referral uuid.UUID) ([]fhir.Resource, error) {
	rec, err := s.svc.GetReferralRecord(ctx, p, referral)
	if err != nil {
		return nil, err
	}
	return fhir.RecordResources(rec)
}

// readAs writes what a domain read returned as a FHIR resource.
func readAs[T any](v T, err error) func(func(T) (fhir.Resource, error)) (fhir.Resource, error) {
	return func(write func(T) (fhir.Resource, error)) (fhir.Resource, error) {
		if err != nil {
			return fhir.Resource{}, err
		}
		return write(v)
	}
}

func (s *fhirServer) SearchFhirResources(ctx context.Context, req *pb.SearchFhirResourcesRequest) (*pb.SearchFhirResourcesResponse, error) {
	p, err := principalFrom(ctx)
	if err != nil {
		return nil, err
	}
	params := make([]fhir.Param, len(req.GetParameters()))
	for i, sp := range req.GetParameters() {
		params[i] = fhir.Param{Name: sp.GetName(), Value: sp.GetValue()}
	}
	typ := req.GetResourceType()
	if typ == "Observation" {
		return s.searchObservations(ctx, p, req, params)
	}
	f, ident, err := fhir.ReferralSearch(typ, params)
	if err != nil {
		return nil, err
	}
	if ident != nil {
		// An identifier names an order or two: one page.
		if req.GetPageToken() != "" {
			return nil, invalid("page_token", "a search by identifier has one page")
		}
		rows, err := s.svc.FindReferralsByIdentifier(ctx, p, *ident)
		if err != nil {
			return nil, err
		}
		return s.found(ctx, p, typ, rows)
	}
	size := req.GetPageSize()
	if size == 0 {
		size = 20
	}
	page, err := decodePage(req, req.GetPageToken(), size)
	if err != nil {
		return nil, err
	}
	rows, next, err := s.svc.ListReferrals(ctx, p, f, page)
	if err != nil {
		return nil, err
	}
	resp, err := s.found(ctx, p, typ, rows)
	if err != nil {
		return nil, err
	}
	resp.NextPageToken = encodePage(req, next)
	return resp, nil
}

// searchObservations finds the measures of the sessions the caller sees; a
// page holds those of up to page_size sessions.
func (s *fhirServer) searchObservations(ctx context.Context, p careteam.Principal, req *pb.SearchFhirResourcesRequest,
	params []fhir.Param) (*pb.SearchFhirResourcesResponse, error) {
	f, wanted, err := fhir.ObservationSearch(params)
	if err != nil {
		return nil, err
	}
	page, err := decodePage(req, req.GetPageToken(), max(req.GetPageSize(), 20))
	if err != nil {
		return nil, err
	}
	sessions, next, err := s.svc.ListSessions(ctx, p, f, page)
	if err != nil {
		return nil, err
	}
	resp := &pb.SearchFhirResourcesResponse{NextPageToken: encodePage(req, next)}
	records := map[uuid.UUID][]fhir.Resource{}
	for _, ss := range sessions {
		all, ok := records[ss.ReferralID]
		if !ok {
			if all, err = s.record(ctx, p, ss.ReferralID); err != nil {
				return nil, err
			}
			records[ss.ReferralID] = all
		}
		// A measure the note does not record has no Observation.
		for _, id := range wanted(ss.ID) {
			for _, r := range all {
				if r.Type == "Observation" && r.ID == id {
					res, err := s.toProto(r)
					if err != nil {
						return nil, err
					}
					resp.Resources = append(resp.Resources, res)
				}
			}
		}
	}
	return resp, nil
}

// found writes the referrals a search found as resources of typ.
func (s *fhirServer) found(ctx context.Context, p careteam.Principal, typ string, rows []*careteam.Referral) (*pb.SearchFhirResourcesResponse, error) {
	resp := &pb.SearchFhirResourcesResponse{}
	for _, r := range rows {
		res, err := s.read(ctx, p, typ, r.ID.String())
		if err != nil {
			return nil, err
		}
		out, err := s.toProto(res)
		if err != nil {
			return nil, err
		}
		resp.Resources = append(resp.Resources, out)
	}
	return resp, nil
}

// toProto is a resource as the FHIR methods answer with it, careteam's
// systems named as the deployment names them.
func (s *fhirServer) toProto(r fhir.Resource) (*pb.FhirResource, error) {
	js, err := s.naming.Outward(r.JSON)
	if err != nil {
		return nil, err
	}
	out := &pb.FhirResource{ResourceType: r.Type, Id: r.ID, ResourceJson: js, Version: r.Version}
	if !r.Updated.IsZero() {
		out.UpdateTime = timestamppb.New(r.Updated)
	}
	return out, nil
}
