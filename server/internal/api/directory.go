package api

import (
	"context"

	"github.com/google/uuid"

	pb "github.com/careteam/careteam/proto/careteam/v1"
	"github.com/careteam/careteam/server/internal/careteam"
)

type directoryServer struct {
	pb.UnimplementedDirectoryServiceServer
	svc *careteam.Service
}

func identifiersFromProto(ids []*pb.Identifier) []careteam.Identifier {
	out := make([]careteam.Identifier, len(ids))
	for i, id := range ids {
		out[i] = careteam.Identifier{System: id.GetSystem(), Value: id.GetValue()}
	}
	return out
}

func identifiersToProto(ids []careteam.Identifier) []*pb.Identifier {
	out := make([]*pb.Identifier, len(ids))
	for i, id := range ids {
		out[i] = &pb.Identifier{System: id.System, Value: id.Value}
	}
	return out
}

func organizationToProto(o *careteam.Organization) *pb.Organization {
	return &pb.Organization{
		Name:        careteam.Organizations.Name(o.ID),
		DisplayName: o.DisplayName,
		Kind:        enumFromDomain[pb.OrganizationKind](o.Kind),
		Identifiers: identifiersToProto(o.Identifiers),
		CreateTime:  timestamp(o.CreateTime),
		UpdateTime:  timestamp(o.UpdateTime),
		Etag:        careteam.Etag(o.Version),

		CredentialsClinicians: o.CredentialsClinicians,
	}
}

func organizationFromProto(in *pb.Organization) careteam.Organization {
	return careteam.Organization{
		DisplayName: in.GetDisplayName(),
		Kind:        enumToDomain[careteam.OrganizationKind](in.GetKind()),
		Identifiers: identifiersFromProto(in.GetIdentifiers()),

		CredentialsClinicians: in.GetCredentialsClinicians(),
	}
}

func (s *directoryServer) CreateOrganization(ctx context.Context, req *pb.CreateOrganizationRequest) (*pb.CreateOrganizationResponse, error) {
	p, err := principalFrom(ctx)
	if err != nil {
		return nil, err
	}
	o, err := s.svc.CreateOrganization(ctx, p, organizationFromProto(req.GetOrganization()), idempotency(req.GetRequestId(), req))
	if err != nil {
		return nil, err
	}
	return &pb.CreateOrganizationResponse{Organization: organizationToProto(o)}, nil
}

func (s *directoryServer) GetOrganization(ctx context.Context, req *pb.GetOrganizationRequest) (*pb.GetOrganizationResponse, error) {
	o, err := onNamed(ctx, careteam.Organizations, req.GetName(), s.svc.GetOrganization)
	if err != nil {
		return nil, err
	}
	return &pb.GetOrganizationResponse{Organization: organizationToProto(o)}, nil
}

func (s *directoryServer) ListOrganizations(ctx context.Context, req *pb.ListOrganizationsRequest) (*pb.ListOrganizationsResponse, error) {
	rows, next, err := listed(ctx, req, func(p careteam.Principal, page careteam.Page) ([]*careteam.Organization, uuid.UUID, error) {
		return s.svc.ListOrganizations(ctx, p, careteam.OrganizationFilter{Kind: enumToDomain[careteam.OrganizationKind](req.GetKind())}, page)
	}, organizationToProto)
	if err != nil {
		return nil, err
	}
	return &pb.ListOrganizationsResponse{Organizations: rows, NextPageToken: next}, nil
}

func (s *directoryServer) UpdateOrganization(ctx context.Context, req *pb.UpdateOrganizationRequest) (*pb.UpdateOrganizationResponse, error) {
	p, err := principalFrom(ctx)
	if err != nil {
		return nil, err
	}
	id, err := parseName(careteam.Organizations, "organization.name", req.GetOrganization().GetName())
	if err != nil {
		return nil, err
	}
	paths, err := maskPaths("update_mask", req.GetUpdateMask().GetPaths(), "display_name", "identifiers", "credentials_clinicians")
	if err != nil {
		return nil, err
	}
	in := organizationFromProto(req.GetOrganization())
	in.ID = id
	o, err := s.svc.UpdateOrganization(ctx, p, in, careteam.OrganizationUpdate{
		DisplayName:           paths["display_name"],
		Identifiers:           paths["identifiers"],
		CredentialsClinicians: paths["credentials_clinicians"],
	}, req.GetOrganization().GetEtag(), idempotency(req.GetRequestId(), req))
	if err != nil {
		return nil, err
	}
	return &pb.UpdateOrganizationResponse{Organization: organizationToProto(o)}, nil
}

func practitionerFromProto(in *pb.Practitioner) (careteam.Practitioner, error) {
	var v violations
	pr := careteam.Practitioner{
		OrganizationID: v.optionalName(careteam.Organizations, "practitioner.organization", in.GetOrganization()),
		DisplayName:    in.GetDisplayName(),
		GivenName:      in.GetGivenName(),
		FamilyName:     in.GetFamilyName(),
		Role:           enumToDomain[careteam.Role](in.GetRole()),
		Subject:        in.GetSubject(),
		Identifiers:    identifiersFromProto(in.GetIdentifiers()),
		Specialties:    enumsToDomain[careteam.Specialty](in.GetSpecialties()),
		Active:         in.GetActive(),
	}
	for i, org := range in.GetActsFor() {
		pr.ActsFor = append(pr.ActsFor, v.name(careteam.Organizations, indexed("practitioner.acts_for", i), org))
	}
	if l := in.GetLicence(); l != nil {
		pr.Licence = &careteam.Licence{Number: l.GetNumber(), Jurisdiction: l.GetJurisdiction(),
			ExpireDate: v.date("practitioner.licence.expire_date", l.GetExpireDate())}
	}
	return pr, v.err()
}

func practitionerToProto(p *careteam.Practitioner) *pb.Practitioner {
	out := &pb.Practitioner{
		Name:         careteam.Practitioners.Name(p.ID),
		DisplayName:  p.DisplayName,
		GivenName:    p.GivenName,
		FamilyName:   p.FamilyName,
		Role:         enumFromDomain[pb.Role](p.Role),
		Organization: careteam.Organizations.Name(p.OrganizationID),
		Subject:      p.Subject,
		Identifiers:  identifiersToProto(p.Identifiers),
		Specialties:  enumsFromDomain[pb.Specialty](p.Specialties),
		Active:       p.Active,
		CreateTime:   timestamp(p.CreateTime),
		UpdateTime:   timestamp(p.UpdateTime),
		Etag:         careteam.Etag(p.Version),
	}
	for _, org := range p.ActsFor {
		out.ActsFor = append(out.ActsFor, careteam.Organizations.Name(org))
	}
	if l := p.Licence; l != nil {
		out.Licence = &pb.Licence{Number: l.Number, Jurisdiction: l.Jurisdiction, ExpireDate: formatDate(l.ExpireDate)}
	}
	return out
}

func (s *directoryServer) CreatePractitioner(ctx context.Context, req *pb.CreatePractitionerRequest) (*pb.CreatePractitionerResponse, error) {
	pr, err := create(ctx, req, req.GetPractitioner(), practitionerFromProto, s.svc.CreatePractitioner)
	if err != nil {
		return nil, err
	}
	return &pb.CreatePractitionerResponse{Practitioner: practitionerToProto(pr)}, nil
}

func (s *directoryServer) GetPractitioner(ctx context.Context, req *pb.GetPractitionerRequest) (*pb.GetPractitionerResponse, error) {
	pr, err := onNamed(ctx, careteam.Practitioners, req.GetName(), s.svc.GetPractitioner)
	if err != nil {
		return nil, err
	}
	return &pb.GetPractitionerResponse{Practitioner: practitionerToProto(pr)}, nil
}

func (s *directoryServer) ListPractitioners(ctx context.Context, req *pb.ListPractitionersRequest) (*pb.ListPractitionersResponse, error) {
	rows, next, err := listed(ctx, req, func(p careteam.Principal, page careteam.Page) ([]*careteam.Practitioner, uuid.UUID, error) {
		org, err := parseOptionalName(careteam.Organizations, "organization", req.GetOrganization())
		if err != nil {
			return nil, uuid.Nil, err
		}
		return s.svc.ListPractitioners(ctx, p, careteam.PractitionerFilter{
			Role:           enumToDomain[careteam.Role](req.GetRole()),
			OrganizationID: org,
			Specialty:      enumToDomain[careteam.Specialty](req.GetSpecialty()),
		}, req.GetActiveLicence(), page)
	}, practitionerToProto)
	if err != nil {
		return nil, err
	}
	return &pb.ListPractitionersResponse{Practitioners: rows, NextPageToken: next}, nil
}

func (s *directoryServer) UpdatePractitioner(ctx context.Context, req *pb.UpdatePractitionerRequest) (*pb.UpdatePractitionerResponse, error) {
	p, err := principalFrom(ctx)
	if err != nil {
		return nil, err
	}
	id, err := parseName(careteam.Practitioners, "practitioner.name", req.GetPractitioner().GetName())
	if err != nil {
		return nil, err
	}
	paths, err := maskPaths("update_mask", req.GetUpdateMask().GetPaths(), "display_name", "given_name", "family_name", "identifiers", "licence", "specialties",
		"active", "acts_for")
	if err != nil {
		return nil, err
	}
	in, err := practitionerFromProto(req.GetPractitioner())
	if ctx, err = withUnconverted(ctx, err); err != nil {
		return nil, err
	}
	in.ID = id
	pr, err := s.svc.UpdatePractitioner(ctx, p, in, careteam.PractitionerUpdate{
		DisplayName: paths["display_name"],
		Name:        paths["given_name"] || paths["family_name"],
		Identifiers: paths["identifiers"],
		Licence:     paths["licence"],
		Specialties: paths["specialties"],
		Active:      paths["active"],
		ActsFor:     paths["acts_for"],
	}, req.GetPractitioner().GetEtag(), idempotency(req.GetRequestId(), req))
	if err != nil {
		return nil, err
	}
	return &pb.UpdatePractitionerResponse{Practitioner: practitionerToProto(pr)}, nil
}

func (s *directoryServer) GetCaller(ctx context.Context, _ *pb.GetCallerRequest) (*pb.GetCallerResponse, error) {
	p, err := principalFrom(ctx)
	if err != nil {
		return nil, err
	}
	return &pb.GetCallerResponse{
		Subject:      p.Subject,
		Role:         enumFromDomain[pb.Role](p.Role),
		Practitioner: careteam.Practitioners.NameOrEmpty(p.PractitionerID),
		Organization: careteam.Organizations.NameOrEmpty(p.OrganizationID),
	}, nil
}
