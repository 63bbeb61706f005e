package main

import (
	"flag"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	pb "github.com/careteam/careteam/proto/careteam/v1"
)

func init() {
	register(
		command{path: "patient create", summary: "register a patient for your organization", setup: patientCreate},
		command{path: "patient get", args: "patients/ID", summary: "show a patient", setup: patientGet},
		command{path: "patient list", summary: "list the patients you may see", setup: patientList},
		command{path: "patient update", args: "patients/ID", summary: "change a patient's demographics", setup: patientUpdate},
		command{path: "patient lookup", args: "SYSTEM|VALUE", summary: "find a patient by identifier", setup: patientLookup},
	)
}

type patientFlags struct {
	given, family, birth, gender *string
	ids                          stringList
}

func declarePatient(fs *flag.FlagSet) *patientFlags {
	p := &patientFlags{
		given:  fs.String("given", "", "given name(s)"),
		family: fs.String("family", "", "family name"),
		birth:  fs.String("birth-date", "", "date of birth, YYYY-MM-DD"),
		gender: fs.String("gender", "", "male, female, other or unknown"),
	}
	fs.Var(&p.ids, "identifier", "identifier as system|value, such as an MRN (repeatable)")
	return p
}

func (p *patientFlags) proto() (*pb.Patient, error) {
	idents, err := identifiers(p.ids)
	if err != nil {
		return nil, err
	}
	g, err := enumValue[pb.AdministrativeGender]("gender", *p.gender)
	if err != nil {
		return nil, err
	}
	return &pb.Patient{GivenName: *p.given, FamilyName: *p.family, BirthDate: *p.birth, Gender: g, Identifiers: idents}, nil
}

func patientCreate(fs *flag.FlagSet) action {
	pf := declarePatient(fs)
	return func(e *env, _ []string) (proto.Message, error) {
		pt, err := pf.proto()
		if err != nil {
			return nil, err
		}
		c, err := e.dial()
		if err != nil {
			return nil, err
		}
		resp, err := c.Patients.CreatePatient(e.ctx, &pb.CreatePatientRequest{Patient: pt})
		return resp.GetPatient(), err
	}
}

func patientGet(fs *flag.FlagSet) action {
	return func(e *env, args []string) (proto.Message, error) {
		name, err := oneArg(args, "patients/ID")
		if err != nil {
			return nil, err
		}
		c, err := e.dial()
		if err != nil {
			return nil, err
		}
		resp, err := c.Patients.GetPatient(e.ctx, &pb.GetPatientRequest{Name: name})
		return resp.GetPatient(), err
	}
}

func patientList(fs *flag.FlagSet) action {
	prefix := fs.String("family-prefix", "", "only family names starting with this")
	birth := fs.String("birth-date", "", "only patients born on this day, YYYY-MM-DD")
	size := fs.Int("page-size", 0, "results per page")
	token := fs.String("page-token", "", "page token from a previous page")
	return func(e *env, _ []string) (proto.Message, error) {
		c, err := e.dial()
		if err != nil {
			return nil, err
		}
		return c.Patients.ListPatients(e.ctx, &pb.ListPatientsRequest{
			FamilyNamePrefix: *prefix, BirthDate: *birth, PageSize: int32(*size), PageToken: *token,
		})
	}
}

func patientUpdate(fs *flag.FlagSet) action {
	pf := declarePatient(fs)
	etag := fs.String("etag", "", "the etag you read, to refuse the update if it changed since")
	return func(e *env, args []string) (proto.Message, error) {
		name, err := oneArg(args, "patients/ID")
		if err != nil {
			return nil, err
		}
		pt, err := pf.proto()
		if err != nil {
			return nil, err
		}
		pt.Name, pt.Etag = name, *etag
		paths, err := updateMask(fs, map[string]string{"given": "given_name", "family": "family_name", "birth-date": "birth_date",
			"gender": "gender", "identifier": "identifiers"})
		if err != nil {
			return nil, err
		}
		c, err := e.dial()
		if err != nil {
			return nil, err
		}
		resp, err := c.Patients.UpdatePatient(e.ctx, &pb.UpdatePatientRequest{
			Patient: pt, UpdateMask: &fieldmaskpb.FieldMask{Paths: paths},
		})
		return resp.GetPatient(), err
	}
}

func patientLookup(fs *flag.FlagSet) action {
	return func(e *env, args []string) (proto.Message, error) {
		v, err := oneArg(args, "SYSTEM|VALUE")
		if err != nil {
			return nil, err
		}
		id, err := identifier(v)
		if err != nil {
			return nil, err
		}
		c, err := e.dial()
		if err != nil {
			return nil, err
		}
		resp, err := c.Patients.LookupPatient(e.ctx, &pb.LookupPatientRequest{Identifier: id})
		return resp.GetPatient(), err
	}
}
