package main

import (
	"flag"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	pb "github.com/careteam/careteam/proto/careteam/v1"
)

func init() {
	register(
		command{path: "dev token", summary: "mint a development token from careteamd's dev key (local use only)", setup: devToken},
		command{path: "whoami", summary: "show who careteamd takes the token's subject for: role, directory entry, organization", setup: whoami},
		command{path: "org create", summary: "create an organization (bootstrap admin)", setup: orgCreate},
		command{path: "org get", args: "organizations/ID", summary: "show an organization", setup: orgGet},
		command{path: "org list", summary: "list organizations", setup: orgList},
		command{path: "org update", args: "organizations/ID", summary: "change an organization (bootstrap admin)", setup: orgUpdate},
		command{path: "practitioner create", summary: "add a practitioner to an organization (its admin; clinicians and auditors: bootstrap admin)", setup: practitionerCreate},
		command{path: "practitioner get", args: "practitioners/ID", summary: "show a practitioner", setup: practitionerGet},
		command{path: "practitioner list", summary: "list practitioners", setup: practitionerList},
		command{path: "practitioner update", args: "practitioners/ID", summary: "change a practitioner (as for create; any admin of theirs may deactivate)", setup: practitionerUpdate},
	)
}

func whoami(fs *flag.FlagSet) action {
	return func(e *env, _ []string) (proto.Message, error) {
		c, err := e.dial()
		if err != nil {
			return nil, err
		}
		return c.Directory.GetCaller(e.ctx, &pb.GetCallerRequest{})
	}
}

func devToken(fs *flag.FlagSet) action {
	subject := fs.String("subject", "", "token subject (required)")
	dataDir := fs.String("data-dir", "", "careteamd's data directory (default: the global --data-dir, else careteamd's default)")
	ttl := fs.Duration("ttl", 12*time.Hour, "lifetime")
	return func(e *env, _ []string) (proto.Message, error) {
		if *subject == "" {
			return nil, usagef("--subject is required")
		}
		dir := *dataDir
		if dir == "" {
			dir = e.dataDir
		}
		tok, err := mintDevToken(dir, *subject, *ttl)
		if err != nil {
			return nil, err
		}
		_, err = fmt.Fprintln(e.out, tok)
		return nil, err
	}
}

func orgCreate(fs *flag.FlagSet) action {
	name := fs.String("name", "", "display name (required)")
	kind := fs.String("kind", "", "physician-practice or massage-practice (required)")
	credentials := fs.Bool("credentials-clinicians", false, "its administrators create and change its own physicians or therapists")
	var ids stringList
	fs.Var(&ids, "identifier", "identifier as system|value, such as an NPI (repeatable)")
	return func(e *env, _ []string) (proto.Message, error) {
		k, err := enumValue[pb.OrganizationKind]("kind", *kind)
		if err != nil {
			return nil, err
		}
		idents, err := identifiers(ids)
		if err != nil {
			return nil, err
		}
		c, err := e.dial()
		if err != nil {
			return nil, err
		}
		resp, err := c.Directory.CreateOrganization(e.ctx, &pb.CreateOrganizationRequest{
			Organization: &pb.Organization{DisplayName: *name, Kind: k, Identifiers: idents, CredentialsClinicians: *credentials},
		})
		return resp.GetOrganization(), err
	}
}

func orgUpdate(fs *flag.FlagSet) action {
	name := fs.String("name", "", "display name")
	credentials := fs.String("credentials-clinicians", "", "true or false: its administrators create and change its own physicians or therapists")
	etag := fs.String("etag", "", "fail unless the organization is still at this etag")
	var ids stringList
	fs.Var(&ids, "identifier", "identifier as system|value, such as an NPI (repeatable; replaces them all)")
	return func(e *env, args []string) (proto.Message, error) {
		target, err := oneArg(args, "organizations/ID")
		if err != nil {
			return nil, err
		}
		idents, err := identifiers(ids)
		if err != nil {
			return nil, err
		}
		o := &pb.Organization{Name: target, DisplayName: *name, Identifiers: idents, Etag: *etag}
		paths, err := updateMask(fs, map[string]string{"name": "display_name", "identifier": "identifiers",
			"credentials-clinicians": "credentials_clinicians"})
		if err != nil {
			return nil, err
		}
		if o.CredentialsClinicians, err = optionalBool("credentials-clinicians", *credentials); err != nil {
			return nil, err
		}
		c, err := e.dial()
		if err != nil {
			return nil, err
		}
		resp, err := c.Directory.UpdateOrganization(e.ctx, &pb.UpdateOrganizationRequest{
			Organization: o, UpdateMask: &fieldmaskpb.FieldMask{Paths: paths},
		})
		return resp.GetOrganization(), err
	}
}

func orgGet(fs *flag.FlagSet) action {
	return func(e *env, args []string) (proto.Message, error) {
		name, err := oneArg(args, "organizations/ID")
		if err != nil {
			return nil, err
		}
		c, err := e.dial()
		if err != nil {
			return nil, err
		}
		resp, err := c.Directory.GetOrganization(e.ctx, &pb.GetOrganizationRequest{Name: name})
		return resp.GetOrganization(), err
	}
}

func orgList(fs *flag.FlagSet) action {
	kind := fs.String("kind", "", "only this kind")
	size := fs.Int("page-size", 0, "results per page")
	token := fs.String("page-token", "", "page token from a previous page")
	return func(e *env, _ []string) (proto.Message, error) {
		k, err := enumValue[pb.OrganizationKind]("kind", *kind)
		if err != nil {
			return nil, err
		}
		c, err := e.dial()
		if err != nil {
			return nil, err
		}
		return c.Directory.ListOrganizations(e.ctx, &pb.ListOrganizationsRequest{Kind: k, PageSize: int32(*size), PageToken: *token})
	}
}

// practitionerFlags declares the flags that describe a practitioner.
type practitionerFlags struct {
	name, given, family, licenceNumber, licenceJurisdiction, licenceExpires *string
	ids, specialties, actsFor                                               stringList
}

func declarePractitioner(fs *flag.FlagSet) *practitionerFlags {
	p := &practitionerFlags{
		name:                fs.String("name", "", "display name"),
		given:               fs.String("given", "", "given names, for FHIR (with --family)"),
		family:              fs.String("family", "", "family name, for FHIR"),
		licenceNumber:       fs.String("licence-number", "", "licence number"),
		licenceJurisdiction: fs.String("licence-jurisdiction", "", "licence jurisdiction, such as US-WA"),
		licenceExpires:      fs.String("licence-expires", "", "last day of the licence, YYYY-MM-DD"),
	}
	fs.Var(&p.ids, "identifier", "identifier as system|value, such as an NPI (repeatable)")
	fs.Var(&p.specialties, "specialty", "arthritis, fibromyalgia, orthopedic, sports, prenatal, oncology (repeatable)")
	fs.Var(&p.actsFor, "acts-for", "for an integration: a physician practice, organizations/ID, whose physicians it acts for (repeatable)")
	return p
}

func (p *practitionerFlags) proto() (*pb.Practitioner, error) {
	idents, err := identifiers(p.ids)
	if err != nil {
		return nil, err
	}
	specs, err := enumValues[pb.Specialty]("specialty", p.specialties)
	if err != nil {
		return nil, err
	}
	out := &pb.Practitioner{DisplayName: *p.name, GivenName: *p.given, FamilyName: *p.family, Identifiers: idents, Specialties: specs,
		ActsFor: p.actsFor}
	if *p.licenceNumber != "" || *p.licenceJurisdiction != "" || *p.licenceExpires != "" {
		out.Licence = &pb.Licence{Number: *p.licenceNumber, Jurisdiction: *p.licenceJurisdiction, ExpireDate: *p.licenceExpires}
	}
	return out, nil
}

func practitionerCreate(fs *flag.FlagSet) action {
	pf := declarePractitioner(fs)
	org := fs.String("org", "", "organization, organizations/ID (required)")
	role := fs.String("role", "", "physician, massage-therapist, coordinator, admin, auditor or integration (required)")
	subject := fs.String("subject", "", "the subject of their tokens (required)")
	return func(e *env, _ []string) (proto.Message, error) {
		pr, err := pf.proto()
		if err != nil {
			return nil, err
		}
		if pr.Role, err = enumValue[pb.Role]("role", *role); err != nil {
			return nil, err
		}
		pr.Organization, pr.Subject = *org, *subject
		c, err := e.dial()
		if err != nil {
			return nil, err
		}
		resp, err := c.Directory.CreatePractitioner(e.ctx, &pb.CreatePractitionerRequest{Practitioner: pr})
		return resp.GetPractitioner(), err
	}
}

func practitionerGet(fs *flag.FlagSet) action {
	return func(e *env, args []string) (proto.Message, error) {
		name, err := oneArg(args, "practitioners/ID")
		if err != nil {
			return nil, err
		}
		c, err := e.dial()
		if err != nil {
			return nil, err
		}
		resp, err := c.Directory.GetPractitioner(e.ctx, &pb.GetPractitionerRequest{Name: name})
		return resp.GetPractitioner(), err
	}
}

func practitionerList(fs *flag.FlagSet) action {
	role := fs.String("role", "", "only this role")
	org := fs.String("org", "", "only this organization")
	specialty := fs.String("specialty", "", "only holders of this specialty")
	active := fs.Bool("active-licence", false, "only practitioners whose licence is valid today")
	size := fs.Int("page-size", 0, "results per page")
	token := fs.String("page-token", "", "page token from a previous page")
	return func(e *env, _ []string) (proto.Message, error) {
		r, err := enumValue[pb.Role]("role", *role)
		if err != nil {
			return nil, err
		}
		s, err := enumValue[pb.Specialty]("specialty", *specialty)
		if err != nil {
			return nil, err
		}
		c, err := e.dial()
		if err != nil {
			return nil, err
		}
		return c.Directory.ListPractitioners(e.ctx, &pb.ListPractitionersRequest{
			Role: r, Organization: *org, Specialty: s, ActiveLicence: *active, PageSize: int32(*size), PageToken: *token,
		})
	}
}

func practitionerUpdate(fs *flag.FlagSet) action {
	pf := declarePractitioner(fs)
	active := fs.String("active", "", "true or false")
	etag := fs.String("etag", "", "the etag you read, to refuse the update if it changed since")
	return func(e *env, args []string) (proto.Message, error) {
		name, err := oneArg(args, "practitioners/ID")
		if err != nil {
			return nil, err
		}
		pr, err := pf.proto()
		if err != nil {
			return nil, err
		}
		pr.Name, pr.Etag = name, *etag
		paths, err := updateMask(fs, map[string]string{"name": "display_name", "given": "given_name", "family": "family_name",
			"identifier": "identifiers", "specialty": "specialties",
			"licence-number": "licence", "licence-jurisdiction": "licence", "licence-expires": "licence", "active": "active",
			"acts-for": "acts_for"})
		if err != nil {
			return nil, err
		}
		if pr.Active, err = optionalBool("active", *active); err != nil {
			return nil, err
		}
		c, err := e.dial()
		if err != nil {
			return nil, err
		}
		resp, err := c.Directory.UpdatePractitioner(e.ctx, &pb.UpdatePractitionerRequest{
			Practitioner: pr, UpdateMask: &fieldmaskpb.FieldMask{Paths: paths},
		})
		return resp.GetPractitioner(), err
	}
}
