package fhir

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/careteam/careteam/server/internal/careteam"

	d4pb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/datatypes_go_proto"
	bcrpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/bundle_and_contained_resource_go_proto"
)

// US Core profiles exported resources declare where they meet them.
const (
	profileUSCorePatient      = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"
	profileUSCorePractitioner = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-practitioner"
)

// Resource is one resource as the REST endpoint serves it: references in
// it are relative ("Patient/{id}"), and its meta carries its version (a
// hash of its content, which changes whenever it does) and, where careteam
// keeps it, when it last changed.
type Resource struct {
	Type, ID string
	JSON     []byte
	Version  string
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
		r, err := resource(e.GetResource(), x.updated)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// updated is when a resource of the record last changed, where careteam
// keeps the time.
func (x *exporter) updated(typ, id string) time.Time {
	rec := x.rec
	switch typ {
	case typeServiceRequest, typeTask:
		return rec.Referral.UpdateTime
	case typePatient:
		return rec.Patient.UpdateTime
	case typeCondition:
		for _, d := range rec.Diagnoses {
			if d.ID.String() == id {
				return d.UpdateTime
			}
		}
	case typeCarePlan:
		if c := rec.Clearance; c != nil {
			return c.UpdateTime
		}
	case typeEncounter:
		for _, ss := range rec.Sessions {
			if ss.ID.String() == id {
				return ss.UpdateTime
			}
		}
	}
	return time.Time{}
}

// at returns a fixed time for resource's updated.
func at(t time.Time) func(string, string) time.Time {
	return func(string, string) time.Time { return t }
}

// PatientResource writes a patient read on its own.
func PatientResource(pt *careteam.Patient) (Resource, error) {
	x := &exporter{rec: &careteam.ReferralRecord{Patient: pt}, rest: true}
	return resource(&bcrpb.ContainedResource{OneofResource: &bcrpb.ContainedResource_Patient{Patient: x.patient()}}, at(pt.UpdateTime))
}

// ConditionResource writes a diagnosis read on its own.
func ConditionResource(d *careteam.Diagnosis) (Resource, error) {
	x := &exporter{rec: &careteam.ReferralRecord{}, rest: true}
	return resource(&bcrpb.ContainedResource{OneofResource: &bcrpb.ContainedResource_Condition{Condition: x.condition(d)}}, at(d.UpdateTime))
}

// CarePlanResource writes a clearance read on its own.
func CarePlanResource(c *careteam.Clearance) (Resource, error) {
	x := &exporter{rec: &careteam.ReferralRecord{}, rest: true}
	return resource(&bcrpb.ContainedResource{OneofResource: &bcrpb.ContainedResource_CarePlan{CarePlan: x.carePlan(c)}}, at(c.UpdateTime))
}

// PractitionerResource writes a directory entry read on its own.
func PractitionerResource(p *careteam.Practitioner) (Resource, error) {
	return resource(&bcrpb.ContainedResource{OneofResource: &bcrpb.ContainedResource_Practitioner{Practitioner: practitioner(p)}}, at(p.UpdateTime))
}

// OrganizationResource writes an organization read on its own.
func OrganizationResource(o *careteam.Organization) (Resource, error) {
	return resource(&bcrpb.ContainedResource{OneofResource: &bcrpb.ContainedResource_Organization{Organization: organization(o)}}, at(o.UpdateTime))
}

// resource marshals the one resource a ContainedResource holds, named by
// its type and id, with its meta: the version is the hash of its content
// without the meta, so it changes exactly when the content does.
func resource(cr *bcrpb.ContainedResource, updated func(typ, id string) time.Time) (Resource, error) {
	c := cr.ProtoReflect()
	field := c.WhichOneof(c.Descriptor().Oneofs().ByName("oneof_resource"))
	if field == nil {
		return Resource{}, fmt.Errorf("fhir: an empty contained resource")
	}
	m := c.Get(field).Message()
	typ := string(m.Descriptor().Name())
	idMsg := m.Get(m.Descriptor().Fields().ByName("id")).Message()
	r := Resource{Type: typ, ID: idMsg.Get(idMsg.Descriptor().Fields().ByName("value")).String()}
	r.Updated = updated(typ, r.ID)
	content, err := newMarshaller().MarshalResource(m.Interface())
	if err != nil {
		return Resource{}, fmt.Errorf("fhir: writing a %s: %w", typ, err)
	}
	sum := sha256.Sum256(content)
	r.Version = hex.EncodeToString(sum[:8])
	meta := m.Mutable(m.Descriptor().Fields().ByName("meta")).Message().Interface().(*d4pb.Meta)
	meta.VersionId = &d4pb.Id{Value: r.Version}
	if !r.Updated.IsZero() {
		meta.LastUpdated = instant(r.Updated)
	}
	if r.JSON, err = newMarshaller().MarshalResource(m.Interface()); err != nil {
		return Resource{}, fmt.Errorf("fhir: writing a %s: %w", typ, err)
	}
	return r, nil
}
