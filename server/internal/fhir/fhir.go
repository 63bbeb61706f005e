// Package fhir maps between HL7 FHIR R4 JSON and careteam's domain: a
// ServiceRequest (bare with contained resources, or in a transaction or
// collection Bundle) becomes the import the domain runs, and a referral's
// record becomes a collection Bundle. The R4 model, its JSON and its
// structural validation are github.com/google/fhir/go's; this package
// holds careteam's mapping (README, "FHIR R4"). It knows nothing of
// storage or transport.
package fhir

import (
	"fmt"
	"reflect"
	"regexp"
	"strings"

	"github.com/google/fhir/go/fhirversion"
	"github.com/google/fhir/go/jsonformat"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/careteam/careteam/server/internal/careteam"

	bcrpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/bundle_and_contained_resource_go_proto"
)

// Code and identifier systems of others that the mapping uses.
const (
	systemICD10              = "http://hl7.org/fhir/sid/icd-10-cm"
	systemLOINC              = "http://loinc.org"
	systemSNOMED             = "http://snomed.info/sct"
	systemUCUM               = "http://unitsofmeasure.org"
	systemConditionClinical  = "http://terminology.hl7.org/CodeSystem/condition-clinical"
	systemConditionVerStatus = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
	systemConditionCategory  = "http://terminology.hl7.org/CodeSystem/condition-category"
	systemObservationCat     = "http://terminology.hl7.org/CodeSystem/observation-category"
	systemActCode            = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
)

// careteam's own identifier systems: the value is the careteam id, so that
// a resource careteam exported is found again when it comes back.
const (
	// systemReferral identifies the ServiceRequest of a referral made in
	// careteam; an imported one keeps the identifier it came with.
	systemReferral     = careteam.ReferralSystem
	systemPatient      = "urn:careteam:patient"
	systemPractitioner = "urn:careteam:practitioner"
	systemOrganization = "urn:careteam:organization"
	systemDiagnosis    = "urn:careteam:diagnosis"
	systemClearance    = "urn:careteam:clearance"
	systemSession      = "urn:careteam:session"
)

// careteam's code systems: each code is the domain's value, such as
// SWEDISH or CAUDA_EQUINA_SYMPTOMS.
const (
	systemTechnique         = "urn:careteam:technique"
	systemBodyRegion        = "urn:careteam:body-region"
	systemRedFlag           = "urn:careteam:red-flag"
	systemSpecialty         = "urn:careteam:specialty"
	systemPressure          = "urn:careteam:pressure"
	systemReferralState     = "urn:careteam:referral-state"
	systemDeclineReason     = "urn:careteam:decline-reason"
	systemClearanceDecision = "urn:careteam:clearance-decision"
	systemMeasure           = "urn:careteam:measure"
	systemService           = "urn:careteam:service"
	systemResult            = "urn:careteam:result"
)

// Extensions careteam defines.
const (
	// extensionRedFlag on a Condition carries one red flag (valueCoding
	// in urn:careteam:red-flag, or valueCode).
	extensionRedFlag = "urn:careteam:fhir:extension:red-flag"
	// extensionEvaluatedRedFlag on a clearance's CarePlan: a red flag the
	// physician attests was evaluated.
	extensionEvaluatedRedFlag = "urn:careteam:fhir:extension:evaluated-red-flag"
	// extensionBodyRegion and extensionMaxPressure qualify a precaution
	// (a CarePlan activity).
	extensionBodyRegion  = "urn:careteam:fhir:extension:body-region"
	extensionMaxPressure = "urn:careteam:fhir:extension:max-pressure"
)

// LOINC codes of what careteam measures (README, "FHIR R4").
const (
	loincPainNRS      = "72514-3" // Pain severity - 0-10 verbal numeric rating [Score] - Reported
	loincOswestry     = "97909-6" // Oswestry disability index score ODI
	loincProgressNote = "11506-3" // Progress note
)

// The domain's code lists. The domain keeps them as strings that the API
// contract enumerates; a test holds these lists to the contract.
var (
	techniques = []careteam.Technique{"SWEDISH", "DEEP_TISSUE", "SHIATSU", "TRIGGER_POINT", "MYOFASCIAL_RELEASE",
		"SPORTS", "STRETCHING", "HOT_STONE", "LYMPHATIC_DRAINAGE"}
	bodyRegions = []careteam.BodyRegion{"CERVICAL", "THORACIC", "LUMBAR", "SACRAL", "SHOULDER", "HIP", "LOWER_LIMB",
		"UPPER_LIMB", "ABDOMEN", "HEAD"}
	specialties = []careteam.Specialty{careteam.SpecialtyArthritis, careteam.SpecialtyFibromyalgia,
		careteam.SpecialtyOrthopedic, careteam.SpecialtySports, careteam.SpecialtyPrenatal, careteam.SpecialtyOncology}
)

func newUnmarshaller() *jsonformat.Unmarshaller {
	u, err := jsonformat.NewUnmarshaller("UTC", fhirversion.R4)
	if err != nil {
		panic(fmt.Sprintf("fhir: R4 unmarshaller: %v", err))
	}
	// Deeply nested input is refused before it costs stack.
	u.MaxNestingDepth = 64
	return u
}

func newMarshaller() *jsonformat.Marshaller {
	m, err := jsonformat.NewMarshaller(false, "", "", fhirversion.R4)
	if err != nil {
		panic(fmt.Sprintf("fhir: R4 marshaller: %v", err))
	}
	return m
}

// issues collects what the unmarshaller's validation reports.
type issues struct{ list []careteam.FieldViolation }

func (is *issues) ReportValidationError(path string, err error) error {
	is.list = append(is.list, libraryViolations(err, path)...)
	return nil
}

func (is *issues) ReportValidationWarning(string, error) error { return nil }

// unmarshal reads R4 JSON with the library's validation: cardinality,
// required elements, codes bound to required value sets, reference target
// types, primitive formats. Its problems are field violations at FHIRPath
// locations.
func unmarshal(data []byte) (*bcrpb.ContainedResource, []careteam.FieldViolation) {
	var is issues
	msg, err := newUnmarshaller().UnmarshalWithErrorReporter(data, &is)
	if err != nil {
		return nil, libraryViolations(err, "")
	}
	if len(is.list) > 0 {
		return nil, is.list
	}
	cr, ok := msg.(*bcrpb.ContainedResource)
	if !ok {
		return nil, []careteam.FieldViolation{{Field: "resourceType", Description: "not an R4 resource"}}
	}
	return cr, nil
}

var missingField = regexp.MustCompile(`^missing required field "([A-Za-z0-9_]+)"$`)

// libraryViolations turns the library's errors into field violations.
// Its error types are internal to it, so their Path and Details fields are
// read by reflection; Diagnostics, which may quote the input's values, is
// read only for an unknown element, where it holds the element's name.
func libraryViolations(err error, path string) []careteam.FieldViolation {
	v := reflect.ValueOf(err)
	var items []reflect.Value
	if v.Kind() == reflect.Slice {
		for i := 0; i < v.Len(); i++ {
			items = append(items, v.Index(i))
		}
	} else {
		items = []reflect.Value{v}
	}
	var out []careteam.FieldViolation
	for _, item := range items {
		for item.Kind() == reflect.Pointer || item.Kind() == reflect.Interface {
			if item.IsNil() {
				break
			}
			item = item.Elem()
		}
		field := func(name string) string {
			if item.Kind() != reflect.Struct {
				return ""
			}
			f := item.FieldByName(name)
			if !f.IsValid() || f.Kind() != reflect.String {
				return ""
			}
			return f.String()
		}
		at, details := field("Path"), field("Details")
		if at == "" {
			at = path
		}
		switch {
		case details == "":
			out = append(out, careteam.FieldViolation{Field: "resource_json", Description: "not FHIR R4 JSON"})
			continue
		case details == "invalid JSON":
			out = append(out, careteam.FieldViolation{Field: "resource_json", Description: "not JSON"})
			continue
		case details == "unknown field":
			if name := strings.Trim(field("Diagnostics"), `"`); name != "" && len(name) <= 64 {
				at += "." + name
			}
			details = "not an element of this R4 type"
		}
		if m := missingField.FindStringSubmatch(details); m != nil {
			at, details = at+"."+m[1], "required"
		}
		if at == "" {
			at = "resourceType"
		}
		out = append(out, careteam.FieldViolation{Field: fhirPath(at), Description: details})
	}
	if len(out) == 0 {
		out = append(out, careteam.FieldViolation{Field: "resource_json", Description: "not FHIR R4 JSON"})
	}
	return out
}

// fhirPath writes the library's element path in FHIRPath: a resource
// inside a Bundle entry or a contained one is named by its type, which the
// library writes either as the type ("Bundle.entry[1].resource.Patient")
// or as the field of its resource union ("resource.serviceRequest"); both
// become "Bundle.entry[1].resource.ofType(Patient)".
func fhirPath(path string) string {
	parts := strings.Split(path, ".")
	for i := 1; i < len(parts); i++ {
		p := parts[i]
		if p == "" {
			continue
		}
		if typ, ok := resourceTypes[p]; ok && (parts[i-1] == "resource" || strings.HasPrefix(parts[i-1], "contained[")) {
			p = typ
		}
		if p[0] >= 'A' && p[0] <= 'Z' {
			parts[i] = "ofType(" + p + ")"
		}
	}
	out := strings.Join(parts, ".")
	if len(out) > 256 {
		out = out[:256]
	}
	return out
}

// resourceTypes maps the JSON names of the R4 resource union's fields
// ("serviceRequest") to their resource types ("ServiceRequest").
var resourceTypes = func() map[string]string {
	out := map[string]string{}
	fields := (&bcrpb.ContainedResource{}).ProtoReflect().Descriptor().Oneofs().ByName("oneof_resource").Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		out[fd.JSONName()] = string(fd.Message().Name())
	}
	return out
}()

// resourceOf returns the resource a ContainedResource holds and its type
// name, or nil.
func resourceOf(cr *bcrpb.ContainedResource) (protoreflect.Message, string) {
	if cr == nil {
		return nil, ""
	}
	m := cr.ProtoReflect()
	od := m.Descriptor().Oneofs().ByName("oneof_resource")
	fd := m.WhichOneof(od)
	if fd == nil {
		return nil, ""
	}
	res := m.Get(fd).Message()
	return res, string(res.Descriptor().Name())
}

// resourceID returns a resource's logical id.
func resourceID(res protoreflect.Message) string {
	if res == nil {
		return ""
	}
	fd := res.Descriptor().Fields().ByName("id")
	if fd == nil || !res.Has(fd) {
		return ""
	}
	id := res.Get(fd).Message()
	return id.Get(id.Descriptor().Fields().ByName("value")).String()
}
