package fhir

import (
	"fmt"
	"html"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/careteam/careteam/server/internal/careteam"

	c4pb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/codes_go_proto"
	d4pb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/datatypes_go_proto"
	bcrpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/bundle_and_contained_resource_go_proto"
	cppb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/care_plan_go_proto"
	cmppb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/composition_go_proto"
	condpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/condition_go_proto"
	encpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/encounter_go_proto"
	obspb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/observation_go_proto"
	orgpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/organization_go_proto"
	ptpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/patient_go_proto"
	prpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/practitioner_go_proto"
	srpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/service_request_go_proto"
	taskpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/task_go_proto"
	vspb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/valuesets_go_proto"
)

// Bundle writes a referral's record as a FHIR R4 collection Bundle:
// Patient, ServiceRequest, Task, a Condition per diagnosis, the governing
// clearance as a CarePlan, an Encounter per session, an Observation per
// pain score and outcome measure, the progress report as a Composition,
// and the Practitioners and Organizations they name. Every entry's fullUrl
// is urn:uuid:{id}, and every reference is one of them, so each resolves
// inside the Bundle. The record is already redacted for its reader.
func Bundle(rec *careteam.ReferralRecord) ([]byte, error) {
	x := build(rec, false)
	out, err := newMarshaller().MarshalResource(x.b)
	if err != nil {
		return nil, fmt.Errorf("fhir: writing the bundle of %s: %w", careteam.Referrals.Name(rec.Referral.ID), err)
	}
	return out, nil
}

// build gathers the record's resources into x.b, their references relative
// ("Patient/{id}") when rest, else to the Bundle's urn:uuid fullUrls.
func build(rec *careteam.ReferralRecord, rest bool) *exporter {
	x := &exporter{rec: rec, rest: rest, b: &bcrpb.Bundle{
		Type:      &bcrpb.Bundle_TypeCode{Value: c4pb.BundleTypeCode_COLLECTION},
		Timestamp: instant(rec.Time),
	}}
	r := rec.Referral
	x.add(rec.Patient.ID, &bcrpb.ContainedResource{OneofResource: &bcrpb.ContainedResource_Patient{Patient: x.patient()}})
	x.add(r.ID, &bcrpb.ContainedResource{OneofResource: &bcrpb.ContainedResource_ServiceRequest{ServiceRequest: x.serviceRequest()}})
	task := x.task()
	x.add(derived(r.ID, "task"), &bcrpb.ContainedResource{OneofResource: &bcrpb.ContainedResource_Task{Task: task}})
	for _, d := range rec.Diagnoses {
		x.add(d.ID, &bcrpb.ContainedResource{OneofResource: &bcrpb.ContainedResource_Condition{Condition: x.condition(d)}})
	}
	if c := rec.Clearance; c != nil {
		x.add(c.ID, &bcrpb.ContainedResource{OneofResource: &bcrpb.ContainedResource_CarePlan{CarePlan: x.carePlan(c)}})
		task.Output = append(task.Output, output("clearance", x.ref(typeCarePlan, c.ID)))
	}
	for _, ss := range rec.Sessions {
		x.add(ss.ID, &bcrpb.ContainedResource{OneofResource: &bcrpb.ContainedResource_Encounter{Encounter: x.encounter(ss)}})
		task.Output = append(task.Output, output("session", x.ref(typeEncounter, ss.ID)))
		for _, o := range x.observations(ss) {
			task.Output = append(task.Output, output("measure", o.ref))
		}
	}
	x.add(derived(r.ID, "progress"), &bcrpb.ContainedResource{OneofResource: &bcrpb.ContainedResource_Composition{Composition: x.composition()}})
	task.Output = append(task.Output, output("progress-report", x.refTo(typeComposition, r.ID.String(), derived(r.ID, "progress"))))
	for _, pr := range x.practitioners() {
		x.add(pr.ID, &bcrpb.ContainedResource{OneofResource: &bcrpb.ContainedResource_Practitioner{Practitioner: practitioner(pr)}})
	}
	for _, o := range x.organizations() {
		x.add(o.ID, &bcrpb.ContainedResource{OneofResource: &bcrpb.ContainedResource_Organization{Organization: organization(o)}})
	}
	return x
}

type exporter struct {
	rec  *careteam.ReferralRecord
	rest bool
	b    *bcrpb.Bundle
	// observations are added after their encounter, in session order.
	observed []observation
}

// observation is an Observation with the reference to it.
type observation struct {
	*obspb.Observation
	ref *d4pb.Reference
}

func (x *exporter) add(id uuid.UUID, cr *bcrpb.ContainedResource) {
	x.b.Entry = append(x.b.Entry, &bcrpb.Bundle_Entry{FullUrl: uri(urn(id)), Resource: cr})
}

// derived is the urn:uuid of a resource careteam keeps no row of (the
// Task, an Observation, the progress report), stable across exports. Their
// logical ids are those of the row they come from (the referral's, a
// session's with the measure), so that the REST endpoint can read them.
func derived(id uuid.UUID, what string) uuid.UUID { return uuid.NewSHA1(id, []byte(what)) }

// Resource types the export writes.
const (
	typePatient        = "Patient"
	typeServiceRequest = "ServiceRequest"
	typeTask           = "Task"
	typeCondition      = "Condition"
	typeCarePlan       = "CarePlan"
	typeEncounter      = "Encounter"
	typeObservation    = "Observation"
	typeComposition    = "Composition"
	typePractitioner   = "Practitioner"
	typeOrganization   = "Organization"
)

// ref refers to a resource that has a row of its own, whose id it shares.
func (x *exporter) ref(kind string, id uuid.UUID) *d4pb.Reference {
	return x.refTo(kind, id.String(), id)
}

// refTo refers to the resource kind/logical, or to its urn:uuid in a
// collection Bundle.
func (x *exporter) refTo(kind, logical string, urnID uuid.UUID) *d4pb.Reference {
	if x.rest {
		return &d4pb.Reference{Reference: &d4pb.Reference_Uri{Uri: str(kind + "/" + logical)}}
	}
	return &d4pb.Reference{Reference: &d4pb.Reference_Uri{Uri: str(urn(urnID))}}
}

// owner refers to whom the referral is with: its therapist, else its
// practice.
func (x *exporter) owner(r *careteam.Referral) *d4pb.Reference {
	if r.TargetTherapistID != uuid.Nil {
		return x.ref(typePractitioner, r.TargetTherapistID)
	}
	return x.ref(typeOrganization, r.TargetOrgID)
}

func urn(id uuid.UUID) string { return "urn:uuid:" + id.String() }

func (x *exporter) patient() *ptpb.Patient {
	pt := x.rec.Patient
	p := &ptpb.Patient{
		Id:         id(pt.ID),
		Identifier: identifiers(systemPatient, pt.ID, pt.Identifiers),
		Name:       []*d4pb.HumanName{{Family: str(pt.FamilyName), Use: &d4pb.HumanName_UseCode{Value: c4pb.NameUseCode_OFFICIAL}}},
		BirthDate:  date(pt.BirthDate),
		Gender: &ptpb.Patient_GenderCode{Value: map[careteam.Gender]c4pb.AdministrativeGenderCode_Value{
			careteam.GenderMale: c4pb.AdministrativeGenderCode_MALE, careteam.GenderFemale: c4pb.AdministrativeGenderCode_FEMALE,
			careteam.GenderOther: c4pb.AdministrativeGenderCode_OTHER, careteam.GenderUnknown: c4pb.AdministrativeGenderCode_UNKNOWN,
		}[pt.Gender]},
	}
	for _, g := range strings.Fields(pt.GivenName) {
		p.Name[0].Given = append(p.Name[0].Given, str(g))
	}
	if p.Gender.Value == c4pb.AdministrativeGenderCode_INVALID_UNINITIALIZED {
		p.Gender = nil
	}
	// US Core Patient asks for an identifier (careteam's own is always
	// there), a family or given name and a gender.
	if p.Gender != nil && (pt.FamilyName != "" || pt.GivenName != "") {
		p.Meta = &d4pb.Meta{Profile: []*d4pb.Canonical{{Value: profileUSCorePatient}}}
	}
	return p
}

// requestStatus is the ServiceRequest's status: the order stands from
// submission until the referral ends.
var requestStatus = map[careteam.ReferralState]c4pb.RequestStatusCode_Value{
	careteam.ReferralDraft:        c4pb.RequestStatusCode_DRAFT,
	careteam.ReferralSubmitted:    c4pb.RequestStatusCode_ACTIVE,
	careteam.ReferralAwaitingInfo: c4pb.RequestStatusCode_ACTIVE,
	careteam.ReferralAccepted:     c4pb.RequestStatusCode_ACTIVE,
	careteam.ReferralDeclined:     c4pb.RequestStatusCode_ACTIVE,
	careteam.ReferralInProgress:   c4pb.RequestStatusCode_ACTIVE,
	careteam.ReferralOnHold:       c4pb.RequestStatusCode_ON_HOLD,
	careteam.ReferralCompleted:    c4pb.RequestStatusCode_COMPLETED,
	careteam.ReferralCancelled:    c4pb.RequestStatusCode_REVOKED,
	careteam.ReferralExpired:      c4pb.RequestStatusCode_REVOKED,
}

func (x *exporter) serviceRequest() *srpb.ServiceRequest {
	r := x.rec.Referral
	validFrom := r.CreateTime
	if !r.ValidFrom.IsZero() {
		validFrom = r.ValidFrom
	}
	idents := []*d4pb.Identifier{{System: uri(systemReferral), Value: str(r.ID.String())}}
	if len(x.rec.ImportIdentifiers) > 0 {
		idents = nil
		for _, k := range x.rec.ImportIdentifiers {
			idents = append(idents, &d4pb.Identifier{System: uri(k.System), Value: str(k.Value)})
		}
	}
	priority := c4pb.RequestPriorityCode_ROUTINE
	if r.Priority == careteam.PriorityUrgent {
		priority = c4pb.RequestPriorityCode_URGENT
	}
	sr := &srpb.ServiceRequest{
		Id:         id(r.ID),
		Identifier: idents,
		Status:     &srpb.ServiceRequest_StatusCode{Value: requestStatus[r.EffectiveState]},
		Intent:     &srpb.ServiceRequest_IntentCode{Value: c4pb.RequestIntentCode_ORDER},
		Priority:   &srpb.ServiceRequest_PriorityCode{Value: priority},
		Code:       concept("Massage therapy", coding(systemService, "MASSAGE_THERAPY", "Massage therapy")),
		Subject:    x.ref(typePatient, x.rec.Patient.ID),
		Quantity: &srpb.ServiceRequest_QuantityX{Choice: &srpb.ServiceRequest_QuantityX_Quantity{Quantity: &d4pb.Quantity{
			Value: &d4pb.Decimal{Value: fmt.Sprint(r.AuthorizedVisits)}, Unit: str("visits"), System: uri(systemUCUM), Code: code("{visits}"),
		}}},
		Occurrence: &srpb.ServiceRequest_OccurrenceX{Choice: &srpb.ServiceRequest_OccurrenceX_Period{Period: &d4pb.Period{
			Start: dateTime(validFrom), End: dateTime(r.ValidUntil),
		}}},
		AuthoredOn: dateTime(r.CreateTime),
		Requester:  x.ref(typePractitioner, r.ReferringPhysicianID),
	}
	for _, t := range r.RequestedTechniques {
		sr.OrderDetail = append(sr.OrderDetail, concept("", coding(systemTechnique, string(t), "")))
	}
	if len(r.RequiredSpecialties) > 0 {
		sr.PerformerType = concept("Massage therapist with the required training")
		for _, s := range r.RequiredSpecialties {
			sr.PerformerType.Coding = append(sr.PerformerType.Coding, coding(systemSpecialty, string(s), ""))
		}
	}
	if r.TargetTherapistID != uuid.Nil {
		sr.Performer = append(sr.Performer, x.ref(typePractitioner, r.TargetTherapistID))
	}
	sr.Performer = append(sr.Performer, x.ref(typeOrganization, r.TargetOrgID))
	for _, c := range r.ReasonCodes {
		sr.ReasonCode = append(sr.ReasonCode, concept("", coding(systemICD10, c, "")))
	}
	for _, t := range r.ReasonTexts {
		sr.ReasonCode = append(sr.ReasonCode, concept(t))
	}
	if r.PatientInstruction != "" {
		sr.PatientInstruction = str(r.PatientInstruction)
	}
	if len(r.ServiceCodes) > 0 || r.ServiceText != "" {
		sr.Code = concept(r.ServiceText)
		for _, c := range r.ServiceCodes {
			sr.Code.Coding = append(sr.Code.Coding, coding(c.System, c.Code, c.Display))
		}
	}
	for _, d := range x.rec.Diagnoses {
		if slices.Contains(r.ReasonDiagnoses, d.ID) {
			sr.ReasonReference = append(sr.ReasonReference, x.ref(typeCondition, d.ID))
		} else {
			sr.SupportingInfo = append(sr.SupportingInfo, x.ref(typeCondition, d.ID))
		}
	}
	if r.ClinicalNotes != "" {
		sr.Note = []*d4pb.Annotation{{Text: &d4pb.Markdown{Value: r.ClinicalNotes}}}
	}
	return sr
}

// taskStatus mirrors the referral's lifecycle in Task.status;
// businessStatus carries careteam's state itself.
var taskStatus = map[careteam.ReferralState]c4pb.TaskStatusCode_Value{
	careteam.ReferralDraft:        c4pb.TaskStatusCode_DRAFT,
	careteam.ReferralSubmitted:    c4pb.TaskStatusCode_REQUESTED,
	careteam.ReferralAwaitingInfo: c4pb.TaskStatusCode_RECEIVED,
	careteam.ReferralAccepted:     c4pb.TaskStatusCode_ACCEPTED,
	careteam.ReferralDeclined:     c4pb.TaskStatusCode_REJECTED,
	careteam.ReferralInProgress:   c4pb.TaskStatusCode_IN_PROGRESS,
	careteam.ReferralOnHold:       c4pb.TaskStatusCode_ON_HOLD,
	careteam.ReferralCompleted:    c4pb.TaskStatusCode_COMPLETED,
	careteam.ReferralCancelled:    c4pb.TaskStatusCode_CANCELLED,
	careteam.ReferralExpired:      c4pb.TaskStatusCode_FAILED,
}

func (x *exporter) task() *taskpb.Task {
	r := x.rec.Referral
	state := r.EffectiveState
	t := &taskpb.Task{
		Id:             id(r.ID),
		BasedOn:        []*d4pb.Reference{x.ref(typeServiceRequest, r.ID)},
		Status:         &taskpb.Task_StatusCode{Value: taskStatus[state]},
		BusinessStatus: concept(businessText[state], coding(systemReferralState, string(state), "")),
		Intent:         &taskpb.Task_IntentCode{Value: vspb.TaskIntentValueSet_ORDER},
		Focus:          x.ref(typeServiceRequest, r.ID),
		ForValue:       x.ref(typePatient, r.PatientID),
		AuthoredOn:     dateTime(r.CreateTime),
		LastModified:   dateTime(r.UpdateTime),
		Requester:      x.ref(typePractitioner, r.ReferringPhysicianID),
		Owner:          x.owner(r),
		Restriction: &taskpb.Task_Restriction{
			Repetitions: &d4pb.PositiveInt{Value: uint32(max(r.AuthorizedVisits, 1))},
			Period:      &d4pb.Period{End: dateTime(r.ValidUntil)},
		},
	}
	switch {
	case state == careteam.ReferralDeclined:
		t.StatusReason = concept(r.DeclineText, coding(systemDeclineReason, string(r.DeclineReason), ""))
	case state == careteam.ReferralCancelled && r.CancelReason != "":
		t.StatusReason = concept(r.CancelReason)
	}
	return t
}

// businessText says each state in words.
var businessText = map[careteam.ReferralState]string{
	careteam.ReferralDraft:        "Draft",
	careteam.ReferralSubmitted:    "Submitted, awaiting acceptance",
	careteam.ReferralAwaitingInfo: "Awaiting information from the referrer",
	careteam.ReferralAccepted:     "Accepted",
	careteam.ReferralDeclined:     "Declined",
	careteam.ReferralInProgress:   "In progress",
	careteam.ReferralOnHold:       "On hold: clearance suspended",
	careteam.ReferralCompleted:    "Completed",
	careteam.ReferralCancelled:    "Cancelled",
	careteam.ReferralExpired:      "Expired",
}

func output(kind string, target *d4pb.Reference) *taskpb.Task_Output {
	return &taskpb.Task_Output{
		Type:  concept("", coding(systemResult, kind, "")),
		Value: &taskpb.Task_Output_ValueX{Choice: &taskpb.Task_Output_ValueX_Reference{Reference: target}},
	}
}

var clinicalStatus = map[careteam.ClinicalStatus]string{
	careteam.StatusActive: "active", careteam.StatusRecurrence: "recurrence",
	careteam.StatusRemission: "remission", careteam.StatusResolved: "resolved",
}

var severityCodes = map[careteam.Severity]*d4pb.Coding{
	"MILD":     coding(systemSNOMED, "255604002", "Mild"),
	"MODERATE": coding(systemSNOMED, "6736007", "Moderate"),
	"SEVERE":   coding(systemSNOMED, "24484000", "Severe"),
}

func (x *exporter) condition(d *careteam.Diagnosis) *condpb.Condition {
	c := &condpb.Condition{
		Id:                 id(d.ID),
		Identifier:         identifiers(systemDiagnosis, d.ID, nil),
		ClinicalStatus:     concept("", coding(systemConditionClinical, clinicalStatus[d.ClinicalStatus], "")),
		VerificationStatus: concept("", coding(systemConditionVerStatus, "confirmed", "")),
		Category:           []*d4pb.CodeableConcept{concept("", coding(systemConditionCategory, "problem-list-item", ""))},
		Code:               concept(d.Display, coding(systemICD10, d.ICD10Code, d.Display)),
		Subject:            x.ref(typePatient, d.PatientID),
		RecordedDate:       dateTime(d.CreateTime),
		Recorder:           x.ref(typePractitioner, d.PhysicianID),
	}
	if len(d.Categories) > 0 {
		c.Category = nil
		for _, k := range d.Categories {
			c.Category = append(c.Category, concept("", coding(k.System, k.Code, k.Display)))
		}
	}
	if sc, ok := severityCodes[d.Severity]; ok {
		c.Severity = concept("", sc)
	}
	for _, b := range d.BodySites {
		c.BodySite = append(c.BodySite, concept("", coding(systemBodyRegion, string(b), "")))
	}
	if !d.OnsetDate.IsZero() {
		c.Onset = &condpb.Condition_OnsetX{Choice: &condpb.Condition_OnsetX_DateTime{DateTime: dayTime(d.OnsetDate)}}
	}
	if d.Notes != "" {
		c.Note = []*d4pb.Annotation{{Text: &d4pb.Markdown{Value: d.Notes}}}
	}
	for _, f := range d.RedFlags {
		c.Extension = append(c.Extension, extension(extensionRedFlag, coding(systemRedFlag, string(f), "")))
	}
	return c
}

// clearanceStatus maps a clearance to the CarePlan it is exported as.
var clearanceStatus = map[careteam.ClearanceStatus]c4pb.RequestStatusCode_Value{
	careteam.ClearanceActive:     c4pb.RequestStatusCode_ACTIVE,
	careteam.ClearanceSuspended:  c4pb.RequestStatusCode_ON_HOLD,
	careteam.ClearanceRevoked:    c4pb.RequestStatusCode_REVOKED,
	careteam.ClearanceSuperseded: c4pb.RequestStatusCode_COMPLETED,
	careteam.ClearanceExpired:    c4pb.RequestStatusCode_COMPLETED,
}

// carePlan writes a clearance as the physician's plan of what massage may
// be given: its decision, window, precautions (an activity not to perform,
// or to perform only up to a pressure) and the red flags evaluated.
func (x *exporter) carePlan(c *careteam.Clearance) *cppb.CarePlan {
	cp := &cppb.CarePlan{
		Id:          id(c.ID),
		Identifier:  identifiers(systemClearance, c.ID, nil),
		Status:      &cppb.CarePlan_StatusCode{Value: clearanceStatus[c.EffectiveStatus]},
		Intent:      &cppb.CarePlan_IntentCode{Value: vspb.CarePlanIntentValueSet_ORDER},
		Category:    []*d4pb.CodeableConcept{concept("", coding(systemClearanceDecision, string(c.Decision), ""))},
		Title:       str("Medical clearance for massage therapy"),
		Subject:     x.ref(typePatient, c.PatientID),
		Period:      &d4pb.Period{Start: dateTime(c.ValidFrom), End: dateTime(c.ValidUntil)},
		Created:     dateTime(c.IssueTime),
		Author:      x.ref(typePractitioner, c.PhysicianID),
		Description: str(clearanceText(c)),
	}
	// A clearance limited to one referral cites its order as information
	// the plan considered (R4's basedOn takes CarePlans only). In a
	// collection Bundle it is cited only if the Bundle carries it.
	if c.ReferralID != uuid.Nil && (x.rest || x.rec.Referral != nil && c.ReferralID == x.rec.Referral.ID) {
		cp.SupportingInfo = []*d4pb.Reference{x.ref(typeServiceRequest, c.ReferralID)}
	}
	for _, f := range c.EvaluatedRedFlags {
		cp.Extension = append(cp.Extension, extension(extensionEvaluatedRedFlag, coding(systemRedFlag, string(f), "")))
	}
	for _, pc := range c.Precautions {
		d := &cppb.CarePlan_Activity_Detail{
			Kind:         &cppb.CarePlan_Activity_Detail_KindCode{Value: vspb.CarePlanActivityKindValueSet_SERVICE_REQUEST},
			Status:       &cppb.CarePlan_Activity_Detail_StatusCode{Value: c4pb.CarePlanActivityStatusCode_NOT_STARTED},
			DoNotPerform: &d4pb.Boolean{Value: pc.Action == careteam.PrecautionAvoid},
			Description:  str(precautionText(pc)),
		}
		if pc.Technique != "" {
			d.Code = concept("", coding(systemTechnique, string(pc.Technique), ""))
		}
		if pc.Region != "" {
			d.Extension = append(d.Extension, extension(extensionBodyRegion, coding(systemBodyRegion, string(pc.Region), "")))
		}
		if pc.MaxPressure != "" {
			d.Extension = append(d.Extension, extension(extensionMaxPressure, coding(systemPressure, string(pc.MaxPressure), "")))
		}
		cp.Activity = append(cp.Activity, &cppb.CarePlan_Activity{Detail: d})
	}
	for _, t := range c.Contraindicated {
		cp.Activity = append(cp.Activity, &cppb.CarePlan_Activity{Detail: &cppb.CarePlan_Activity_Detail{
			Kind:         &cppb.CarePlan_Activity_Detail_KindCode{Value: vspb.CarePlanActivityKindValueSet_SERVICE_REQUEST},
			Code:         concept("", coding(systemTechnique, string(t), "")),
			Status:       &cppb.CarePlan_Activity_Detail_StatusCode{Value: c4pb.CarePlanActivityStatusCode_NOT_STARTED},
			DoNotPerform: &d4pb.Boolean{Value: true},
			Description:  str("Contraindicated"),
		}})
	}
	if c.Notes != "" {
		cp.Note = []*d4pb.Annotation{{Text: &d4pb.Markdown{Value: c.Notes}}}
	}
	return cp
}

func clearanceText(c *careteam.Clearance) string {
	s := fmt.Sprintf("%s, %s.", c.Decision, c.EffectiveStatus)
	if sp := c.Suspension; sp != nil && c.Status == careteam.ClearanceSuspended {
		s += fmt.Sprintf(" Suspended %s: red flag %s.", sp.Time.UTC().Format(time.RFC3339), sp.RedFlag)
	}
	if rv := c.Revocation; rv != nil {
		s += fmt.Sprintf(" Revoked %s.", rv.Time.UTC().Format(time.RFC3339))
	}
	return s
}

func precautionText(pc careteam.Precaution) string {
	region, technique := string(pc.Region), string(pc.Technique)
	if region == "" {
		region = "every region"
	}
	if technique == "" {
		technique = "every technique"
	}
	if pc.Action == careteam.PrecautionAvoid {
		return fmt.Sprintf("Avoid %s on %s", technique, region)
	}
	return fmt.Sprintf("%s on %s at most %s pressure", technique, region, pc.MaxPressure)
}

var encounterStatus = map[careteam.SessionState]c4pb.EncounterStatusCode_Value{
	careteam.SessionStarted:   c4pb.EncounterStatusCode_IN_PROGRESS,
	careteam.SessionCompleted: c4pb.EncounterStatusCode_FINISHED,
	careteam.SessionCancelled: c4pb.EncounterStatusCode_CANCELLED,
	careteam.SessionNoShow:    c4pb.EncounterStatusCode_CANCELLED,
}

func (x *exporter) encounter(ss *careteam.Session) *encpb.Encounter {
	e := &encpb.Encounter{
		Id:              id(ss.ID),
		Identifier:      identifiers(systemSession, ss.ID, nil),
		Status:          &encpb.Encounter_StatusCode{Value: encounterStatus[ss.State]},
		ClassValue:      coding(systemActCode, "AMB", "ambulatory"),
		Type:            []*d4pb.CodeableConcept{concept(fmt.Sprintf("Massage therapy session, visit %d", ss.VisitNumber), coding(systemService, "MASSAGE_THERAPY", "Massage therapy"))},
		Subject:         x.ref(typePatient, ss.PatientID),
		BasedOn:         []*d4pb.Reference{x.ref(typeServiceRequest, ss.ReferralID)},
		Participant:     []*encpb.Encounter_Participant{{Individual: x.ref(typePractitioner, ss.TherapistID)}},
		Period:          &d4pb.Period{Start: dateTime(ss.StartTime)},
		ServiceProvider: x.ref(typeOrganization, x.rec.Referral.TargetOrgID),
	}
	if n := ss.Note.DurationMinutes; n > 0 {
		e.Period.End = dateTime(ss.StartTime.Add(time.Duration(n) * time.Minute))
	}
	return e
}

// measures are what a note records per session, as Observations.
var measures = []struct {
	key, text string
	loinc     string
	value     func(n *careteam.Note) *int
}{
	{"PAIN_BEFORE_SESSION", "Pain before the session (NRS 0-10)", loincPainNRS, func(n *careteam.Note) *int { return n.PainBefore }},
	{"PAIN_AFTER_SESSION", "Pain after the session (NRS 0-10)", loincPainNRS, func(n *careteam.Note) *int { return n.PainAfter }},
	{"OSWESTRY_DISABILITY_INDEX", "Oswestry Disability Index (0-100)", loincOswestry, func(n *careteam.Note) *int { return n.Oswestry }},
	{"NECK_DISABILITY_INDEX", "Neck Disability Index (0-100)", "", func(n *careteam.Note) *int { return n.NeckDisability }},
}

// observationID is the logical id of a session's measure.
func observationID(session uuid.UUID, measure string) string {
	return session.String() + "-" + strings.ReplaceAll(strings.ToLower(measure), "_", "-")
}

// observations adds a session's measures to the Bundle and returns them.
func (x *exporter) observations(ss *careteam.Session) []observation {
	status := c4pb.ObservationStatusCode_PRELIMINARY
	if ss.Note.Status == careteam.NoteSigned {
		status = c4pb.ObservationStatusCode_FINAL
	}
	var out []observation
	for _, m := range measures {
		v := m.value(&ss.Note)
		if v == nil {
			continue
		}
		code := concept(m.text, coding(systemMeasure, m.key, m.text))
		if m.loinc != "" {
			code.Coding = append([]*d4pb.Coding{coding(systemLOINC, m.loinc, "")}, code.Coding...)
		}
		oid, logical := derived(ss.ID, m.key), observationID(ss.ID, m.key)
		o := &obspb.Observation{
			Id:        &d4pb.Id{Value: logical},
			Status:    &obspb.Observation_StatusCode{Value: status},
			Category:  []*d4pb.CodeableConcept{concept("", coding(systemObservationCat, "survey", "Survey"))},
			Code:      code,
			Subject:   x.ref(typePatient, ss.PatientID),
			Encounter: x.ref(typeEncounter, ss.ID),
			Effective: &obspb.Observation_EffectiveX{Choice: &obspb.Observation_EffectiveX_DateTime{DateTime: dateTime(ss.StartTime)}},
			Performer: []*d4pb.Reference{x.ref(typePractitioner, ss.TherapistID)},
			Value:     &obspb.Observation_ValueX{Choice: &obspb.Observation_ValueX_Integer{Integer: &d4pb.Integer{Value: int32(*v)}}},
		}
		x.add(oid, &bcrpb.ContainedResource{OneofResource: &bcrpb.ContainedResource_Observation{Observation: o}})
		ob := observation{o, x.refTo(typeObservation, logical, oid)}
		x.observed = append(x.observed, ob)
		out = append(out, ob)
	}
	return out
}

// composition writes the progress report: visits, the pain and outcome
// trends with their Observations, adverse events and the latest
// assessment and plan, as far as the reader may read them.
func (x *exporter) composition() *cmppb.Composition {
	r, pr := x.rec.Referral, x.rec.Progress
	status := c4pb.CompositionStatusCode_PRELIMINARY
	if r.EffectiveState == careteam.ReferralCompleted {
		status = c4pb.CompositionStatusCode_FINAL
	}
	c := &cmppb.Composition{
		Id:      id(r.ID),
		Status:  &cmppb.Composition_StatusCode{Value: status},
		Type:    concept("Massage therapy progress report", coding(systemLOINC, loincProgressNote, "Progress note")),
		Subject: x.ref(typePatient, r.PatientID),
		Date:    dateTime(x.rec.Time),
		Author:  []*d4pb.Reference{x.owner(r)},
		Title:   str("Massage therapy progress report"),
	}
	visits := section("Visits", fmt.Sprintf("%d of %d authorized visits used; %d left.", r.UsedVisits, r.AuthorizedVisits, r.RemainingVisits()))
	for _, ss := range x.rec.Sessions {
		visits.Entry = append(visits.Entry, x.ref(typeEncounter, ss.ID))
	}
	c.Section = append(c.Section, visits)
	var lines []string
	trendLine := func(name string, t *careteam.MeasureTrend) {
		if t != nil {
			lines = append(lines, fmt.Sprintf("%s: first %d, latest %d (%+d over %d sessions).", name, t.First, t.Latest, t.Change, t.Sessions))
		}
	}
	trendLine("Pain before treatment (NRS 0-10)", pr.Pain)
	trendLine("Oswestry Disability Index", pr.Oswestry)
	trendLine("Neck Disability Index", pr.NeckDisability)
	if len(lines) == 0 {
		lines = append(lines, "No measure recorded in a signed note yet.")
	}
	measured := section("Pain and outcome measures", lines...)
	for _, o := range x.observed {
		measured.Entry = append(measured.Entry, o.ref)
	}
	c.Section = append(c.Section, measured)
	lines = nil
	for _, a := range pr.AdverseEvents {
		line := fmt.Sprintf("%s, severity %s", a.SessionTime.UTC().Format("2006-01-02"), a.Severity)
		if a.Description != "" {
			line += ": " + a.Description
		}
		lines = append(lines, line)
	}
	if len(lines) == 0 {
		lines = append(lines, "None reported.")
	}
	c.Section = append(c.Section, section("Adverse events", lines...))
	lines = nil
	if pr.LatestAssessment != "" {
		lines = append(lines, "Assessment: "+pr.LatestAssessment)
	}
	if pr.LatestPlan != "" {
		lines = append(lines, "Plan: "+pr.LatestPlan)
	}
	if r.DischargeSummary != "" {
		lines = append(lines, "Discharge summary: "+r.DischargeSummary)
	}
	if len(lines) > 0 {
		c.Section = append(c.Section, section("Assessment and plan", lines...))
	}
	return c
}

// section is a Composition section whose narrative is lines, escaped.
func section(title string, lines ...string) *cmppb.Composition_Section {
	var b strings.Builder
	b.WriteString(`<div xmlns="http://www.w3.org/1999/xhtml">`)
	for _, l := range lines {
		b.WriteString("<p>" + html.EscapeString(l) + "</p>")
	}
	b.WriteString("</div>")
	return &cmppb.Composition_Section{
		Title: str(title),
		Text: &d4pb.Narrative{
			Status: &d4pb.Narrative_StatusCode{Value: c4pb.NarrativeStatusCode_GENERATED},
			Div:    &d4pb.Xhtml{Value: b.String()},
		},
	}
}

// practitioners and organizations list the directory entries the record
// names, in a stable order.
func (x *exporter) practitioners() []*careteam.Practitioner {
	return slices.SortedFunc(maps.Values(x.rec.Practitioners), func(a, b *careteam.Practitioner) int { return strings.Compare(a.ID.String(), b.ID.String()) })
}

func (x *exporter) organizations() []*careteam.Organization {
	return slices.SortedFunc(maps.Values(x.rec.Organizations), func(a, b *careteam.Organization) int { return strings.Compare(a.ID.String(), b.ID.String()) })
}

func practitioner(p *careteam.Practitioner) *prpb.Practitioner {
	name := &d4pb.HumanName{Text: str(p.DisplayName)}
	out := &prpb.Practitioner{
		Id:         id(p.ID),
		Identifier: identifiers(systemPractitioner, p.ID, p.Identifiers),
		Active:     &d4pb.Boolean{Value: p.Active},
		Name:       []*d4pb.HumanName{name},
	}
	// US Core Practitioner asks for an identifier (careteam's own is
	// always there) and a family name.
	if p.FamilyName != "" {
		name.Family, name.Use = str(p.FamilyName), &d4pb.HumanName_UseCode{Value: c4pb.NameUseCode_OFFICIAL}
		for _, g := range strings.Fields(p.GivenName) {
			name.Given = append(name.Given, str(g))
		}
		out.Meta = &d4pb.Meta{Profile: []*d4pb.Canonical{{Value: profileUSCorePractitioner}}}
	}
	return out
}

func organization(o *careteam.Organization) *orgpb.Organization {
	return &orgpb.Organization{
		Id:         id(o.ID),
		Identifier: identifiers(systemOrganization, o.ID, o.Identifiers),
		Active:     &d4pb.Boolean{Value: true},
		Name:       str(o.DisplayName),
	}
}

// identifiers lists careteam's identifier of a resource, then the
// external ones it holds.
func identifiers(system string, own uuid.UUID, external []careteam.Identifier) []*d4pb.Identifier {
	out := []*d4pb.Identifier{{System: uri(system), Value: str(own.String())}}
	for _, e := range external {
		out = append(out, &d4pb.Identifier{System: uri(e.System), Value: str(e.Value)})
	}
	return out
}

func extension(url string, c *d4pb.Coding) *d4pb.Extension {
	return &d4pb.Extension{Url: uri(url), Value: &d4pb.Extension_ValueX{Choice: &d4pb.Extension_ValueX_Coding{Coding: c}}}
}

func concept(text string, codings ...*d4pb.Coding) *d4pb.CodeableConcept {
	cc := &d4pb.CodeableConcept{Coding: codings}
	if text != "" {
		cc.Text = str(text)
	}
	return cc
}

func coding(system, value, display string) *d4pb.Coding {
	c := &d4pb.Coding{System: uri(system), Code: code(value)}
	if display != "" {
		c.Display = str(display)
	}
	return c
}

func id(v uuid.UUID) *d4pb.Id   { return &d4pb.Id{Value: v.String()} }
func str(s string) *d4pb.String { return &d4pb.String{Value: s} }
func uri(s string) *d4pb.Uri    { return &d4pb.Uri{Value: s} }
func code(s string) *d4pb.Code  { return &d4pb.Code{Value: s} }

// dateTime writes t at the precision it has, so that what is read back is
// the same instant.
func dateTime(t time.Time) *d4pb.DateTime {
	if t.IsZero() {
		return nil
	}
	prec := d4pb.DateTime_SECOND
	switch {
	case t.Nanosecond()%int(time.Millisecond) != 0:
		prec = d4pb.DateTime_MICROSECOND
	case t.Nanosecond() != 0:
		prec = d4pb.DateTime_MILLISECOND
	}
	return &d4pb.DateTime{ValueUs: t.UnixMicro(), Timezone: "Z", Precision: prec}
}

// dayTime writes a date as a dateTime of day precision.
func dayTime(t time.Time) *d4pb.DateTime {
	return &d4pb.DateTime{ValueUs: day(t).UnixMicro(), Timezone: "UTC", Precision: d4pb.DateTime_DAY}
}

func date(t time.Time) *d4pb.Date {
	if t.IsZero() {
		return nil
	}
	return &d4pb.Date{ValueUs: day(t).UnixMicro(), Timezone: "UTC", Precision: d4pb.Date_DAY}
}

func instant(t time.Time) *d4pb.Instant {
	prec := d4pb.Instant_SECOND
	if t.Nanosecond() != 0 {
		prec = d4pb.Instant_MICROSECOND
	}
	return &d4pb.Instant{ValueUs: t.UnixMicro(), Timezone: "Z", Precision: prec}
}
