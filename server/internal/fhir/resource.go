package fhir

import (
	"fmt"
	"time"

	"github.com/careteam/careteam/server/internal/careteam"

	bcrpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/bundle_and_contained_resource_go_proto"
)

// profileUSCorePatient is declared by exported Patients that meet it.
const profileUSCorePatient = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"

// Resource is one resource as the REST endpoint serves it: references in
// it are relative ("Patient/{id}").
type Resource struct {
	Type, ID string
	JSON     []byte
	// Updated is when it last changed, where careteam knows; else zero.
	Updated time.Time
}

// RecordResources writes every resource of a referral's record (what its
// Bundle holds), each on its own. The record is already redacted for its
// reader.
func RecordResources(rec *careteam.ReferralRecord) ([]Resource, error) {
	x := build(rec, true)
	out := make([]Resource, 0, len(x.b.Entry))
	for _, e := range x.b.Entry {
		r, err := resource(e.GetResource())
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	for i := range out {
		out[i].Updated = x.updated(out[i])
	}
	return out, nil
}

// updated is when a resource of the record last changed, where careteam
// keeps the time.
func (x *exporter) updated(r Resource) time.Time {
	rec := x.rec
	switch r.Type {
	case typeServiceRequest, typeTask:
		return rec.Referral.UpdateTime
	case typePatient:
		return rec.Patient.UpdateTime
	case typeCondition:
		for _, d := range rec.Diagnoses {
			if d.ID.String() == r.ID {
				return d.UpdateTime
			}
		}
	case typeCarePlan:
		if c := rec.Clearance; c != nil {
			return c.UpdateTime
		}
	case typeEncounter:
		for _, ss := range rec.Sessions {
			if ss.ID.String() == r.ID {
				return ss.UpdateTime
			}
		}
	}
	return time.Time{}
}

// PatientResource writes a patient read on its own.
func PatientResource(pt *careteam.Patient) (Resource, error) {
	x := &exporter{rec: &careteam.ReferralRecord{Patient: pt}, rest: true}
	r, err := resource(&bcrpb.ContainedResource{OneofResource: &bcrpb.ContainedResource_Patient{Patient: x.patient()}})
	r.Updated = pt.UpdateTime
	return r, err
}

// ConditionResource writes a diagnosis read on its own.
func ConditionResource(d *careteam.Diagnosis) (Resource, error) {
	x := &exporter{rec: &careteam.ReferralRecord{}, rest: true}
	r, err := resource(&bcrpb.ContainedResource{OneofResource: &bcrpb.ContainedResource_Condition{Condition: x.condition(d)}})
	r.Updated = d.UpdateTime
	return r, err
}

// CarePlanResource writes a clearance read on its own.
func CarePlanResource(c *careteam.Clearance) (Resource, error) {
	x := &exporter{rec: &careteam.ReferralRecord{}, rest: true}
	r, err := resource(&bcrpb.ContainedResource{OneofResource: &bcrpb.ContainedResource_CarePlan{CarePlan: x.carePlan(c)}})
	r.Updated = c.UpdateTime
	return r, err
}

// resource marshals the one resource a ContainedResource holds and names
// it by its type and id.
func resource(cr *bcrpb.ContainedResource) (Resource, error) {
	c := cr.ProtoReflect()
	field := c.WhichOneof(c.Descriptor().Oneofs().ByName("oneof_resource"))
	if field == nil {
		return Resource{}, fmt.Errorf("fhir: an empty contained resource")
	}
	m := c.Get(field).Message()
	typ := string(m.Descriptor().Name())
	js, err := newMarshaller().MarshalResource(m.Interface())
	if err != nil {
		return Resource{}, fmt.Errorf("fhir: writing a %s: %w", typ, err)
	}
	id := m.Get(m.Descriptor().Fields().ByName("id")).Message()
	return Resource{Type: typ, ID: id.Get(id.Descriptor().Fields().ByName("value")).String(), JSON: js}, nil
}

// PractitionerResource writes a directory entry read on its own.
func PractitionerResource(p *careteam.Practitioner) (Resource, error) {
	r, err := resource(&bcrpb.ContainedResource{OneofResource: &bcrpb.ContainedResource_Practitioner{Practitioner: practitioner(p)}})
	r.Updated = p.UpdateTime
	return r, err
}

// OrganizationResource writes an organization read on its own.
func OrganizationResource(o *careteam.Organization) (Resource, error) {
	r, err := resource(&bcrpb.ContainedResource{OneofResource: &bcrpb.ContainedResource_Organization{Organization: organization(o)}})
	r.Updated = o.UpdateTime
	return r, err
}
