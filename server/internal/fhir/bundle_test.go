package fhir_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/careteam/careteam/server/internal/careteam"
	"github.com/careteam/careteam/server/internal/fhir"
)

var now = time.Date(2026, 3, 4, 9, 0, 0, 0, time.UTC)

// record is a referral in state with everything an export shows: a
// reason diagnosis with a red flag, a clearance with precautions and, from
// IN_PROGRESS on, a signed session with every measure.
func record(state careteam.ReferralState) *careteam.ReferralRecord {
	id := func() uuid.UUID { return uuid.Must(uuid.NewV7()) }
	dr := &careteam.Practitioner{ID: id(), DisplayName: "Dr Ada Okafor", GivenName: "Ada", FamilyName: "Okafor", Role: careteam.RolePhysician, Active: true,
		Identifiers: []careteam.Identifier{{System: "http://hl7.org/fhir/sid/us-npi", Value: "1234567893"}}}
	lmt := &careteam.Practitioner{ID: id(), DisplayName: "Ben Ito, LMT", Role: careteam.RoleTherapist, Active: true}
	clinic := &careteam.Organization{ID: id(), DisplayName: "Lakeside Family Medicine"}
	spa := &careteam.Organization{ID: id(), DisplayName: "Harbor Massage Therapy",
		Identifiers: []careteam.Identifier{{System: "urn:oid:2.16.840.1.113883.19.5.77", Value: "HMT-0042"}}}
	pt := &careteam.Patient{ID: id(), GivenName: "Jo Ann", FamilyName: "Smith", BirthDate: time.Date(1968, 4, 12, 0, 0, 0, 0, time.UTC),
		Gender: careteam.GenderFemale, Identifiers: []careteam.Identifier{{System: "urn:oid:2.16.840.1.113883.19.5", Value: "MRN-004211"}}}
	lbp := &careteam.Diagnosis{ID: id(), PatientID: pt.ID, PhysicianID: dr.ID, ICD10Code: "M54.50", Display: "Low back pain, unspecified",
		BodySites: []careteam.BodyRegion{"LUMBAR"}, OnsetDate: now.AddDate(0, -4, 0), ClinicalStatus: careteam.StatusActive, Severity: "MODERATE",
		Notes: "Worse after long drives.", CreateTime: now}
	osteo := &careteam.Diagnosis{ID: id(), PatientID: pt.ID, PhysicianID: dr.ID, ICD10Code: "M81.0", Display: "Osteoporosis",
		ClinicalStatus: careteam.StatusActive, RedFlags: []careteam.RedFlag{"OSTEOPOROSIS"}, CreateTime: now}
	r := &careteam.Referral{ID: id(), PatientID: pt.ID, ReferringPhysicianID: dr.ID, ReferringOrgID: clinic.ID, TargetTherapistID: lmt.ID,
		TargetOrgID: spa.ID, ReasonDiagnoses: []uuid.UUID{lbp.ID}, ReasonCodes: []string{"M47.816"}, ClinicalNotes: "Light to medium pressure.",
		Priority: careteam.PriorityUrgent, RequestedTechniques: []careteam.Technique{"SWEDISH"}, AuthorizedVisits: 6,
		RequiredSpecialties: []careteam.Specialty{careteam.SpecialtyArthritis}, ValidUntil: now.AddDate(0, 0, 90),
		State: state, EffectiveState: state, CreateTime: now, UpdateTime: now.Add(1234 * time.Microsecond)}
	rec := &careteam.ReferralRecord{Referral: r, Patient: pt, Diagnoses: []*careteam.Diagnosis{lbp, osteo},
		Progress:      &careteam.Progress{Referral: r},
		Practitioners: map[uuid.UUID]*careteam.Practitioner{dr.ID: dr, lmt.ID: lmt},
		Organizations: map[uuid.UUID]*careteam.Organization{clinic.ID: clinic, spa.ID: spa}, Time: now}
	switch state {
	case careteam.ReferralDeclined:
		r.DeclineReason, r.DeclineText = "NO_CAPACITY", "Fully booked."
	case careteam.ReferralCancelled:
		r.CancelReason = "Patient moved away."
	}
	if state == careteam.ReferralDraft || state == careteam.ReferralSubmitted || state == careteam.ReferralAwaitingInfo {
		return rec
	}
	rec.Clearance = &careteam.Clearance{ID: id(), PatientID: pt.ID, ReferralID: r.ID, PhysicianID: dr.ID,
		Decision: careteam.DecisionClearedWithPrecautions, Status: careteam.ClearanceActive, EffectiveStatus: careteam.ClearanceActive,
		ValidFrom: now, ValidUntil: now.AddDate(0, 3, 0), IssueTime: now, EvaluatedRedFlags: []careteam.RedFlag{"OSTEOPOROSIS"},
		Precautions: []careteam.Precaution{
			{Region: "LUMBAR", Action: careteam.PrecautionLimitPressure, MaxPressure: careteam.PressureMedium},
			{Region: "CERVICAL", Technique: "DEEP_TISSUE", Action: careteam.PrecautionAvoid},
		},
		Contraindicated: []careteam.Technique{"HOT_STONE"}, Notes: "Re-check in 3 months."}
	if state == careteam.ReferralAccepted || state == careteam.ReferralDeclined {
		return rec
	}
	before, after, odi, ndi := 7, 4, 38, 20
	rec.Sessions = []*careteam.Session{
		{ID: id(), ReferralID: r.ID, PatientID: pt.ID, TherapistID: lmt.ID, State: careteam.SessionCompleted, StartTime: now.AddDate(0, 0, 2),
			VisitNumber: 1, Note: careteam.Note{Status: careteam.NoteSigned, PainBefore: &before, PainAfter: &after, Oswestry: &odi,
				NeckDisability: &ndi, DurationMinutes: 60, Assessment: "Tolerated well.", Plan: "Stretch daily."}},
		{ID: id(), ReferralID: r.ID, PatientID: pt.ID, TherapistID: lmt.ID, State: careteam.SessionStarted, StartTime: now.AddDate(0, 0, 9),
			VisitNumber: 2, Note: careteam.Note{Status: careteam.NoteDraft, PainBefore: &after}},
	}
	r.UsedVisits = 2
	rec.Progress = &careteam.Progress{Referral: r, Pain: &careteam.MeasureTrend{First: 7, Latest: 7, Sessions: 1},
		Oswestry: &careteam.MeasureTrend{First: 38, Latest: 38, Sessions: 1}, LatestAssessment: "Tolerated well.", LatestPlan: "Stretch <daily> & walk.",
		AdverseEvents: []careteam.AdverseEventSummary{{SessionID: rec.Sessions[0].ID, Severity: "MILD", Description: "Soreness", SessionTime: now}}}
	if state == careteam.ReferralCompleted {
		r.DischargeSummary = "Goals met."
	}
	return rec
}

// resources indexes a Bundle's resources by type.
func resources(t *testing.T, b []byte) map[string][]map[string]any {
	t.Helper()
	var bundle struct {
		ResourceType string `json:"resourceType"`
		Type         string `json:"type"`
		Entry        []struct {
			FullURL  string         `json:"fullUrl"`
			Resource map[string]any `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(b, &bundle); err != nil {
		t.Fatal(err)
	}
	if bundle.ResourceType != "Bundle" || bundle.Type != "collection" {
		t.Fatalf("a %s of type %s", bundle.ResourceType, bundle.Type)
	}
	// Every fullUrl is a distinct urn:uuid, every Type/id distinct: the
	// Task shares its referral's id as the ServiceRequest does, but not
	// its fullUrl.
	out := map[string][]map[string]any{}
	fullURLs, ids := map[string]bool{}, map[string]bool{}
	for _, e := range bundle.Entry {
		typ := e.Resource["resourceType"].(string)
		key := typ + "/" + e.Resource["id"].(string)
		if _, err := uuid.Parse(strings.TrimPrefix(e.FullURL, "urn:uuid:")); err != nil || !strings.HasPrefix(e.FullURL, "urn:uuid:") ||
			fullURLs[e.FullURL] || ids[key] {
			t.Errorf("fullUrl %s of %s: not a distinct urn:uuid, or not a distinct resource", e.FullURL, key)
		}
		fullURLs[e.FullURL], ids[key] = true, true
		out[typ] = append(out[typ], e.Resource)
	}
	return out
}

func TestBundleOfEachStageIsValidR4(t *testing.T) {
	t.Parallel()
	tests := []struct {
		state                careteam.ReferralState
		task, request        string
		carePlans, encounter int
		observations         int
	}{
		{careteam.ReferralDraft, "draft", "draft", 0, 0, 0},
		{careteam.ReferralSubmitted, "requested", "active", 0, 0, 0},
		{careteam.ReferralAwaitingInfo, "received", "active", 0, 0, 0},
		{careteam.ReferralDeclined, "rejected", "active", 1, 0, 0},
		{careteam.ReferralAccepted, "accepted", "active", 1, 0, 0},
		{careteam.ReferralInProgress, "in-progress", "active", 1, 2, 5},
		{careteam.ReferralOnHold, "on-hold", "on-hold", 1, 2, 5},
		{careteam.ReferralCompleted, "completed", "completed", 1, 2, 5},
		{careteam.ReferralCancelled, "cancelled", "revoked", 1, 2, 5},
		{careteam.ReferralExpired, "failed", "revoked", 1, 2, 5},
	}
	for _, tc := range tests {
		t.Run(string(tc.state), func(t *testing.T) {
			t.Parallel()
			b, err := fhir.Bundle(record(tc.state))
			if err != nil {
				t.Fatal(err)
			}
			if err := fhir.Validate(b); err != nil {
				t.Fatalf("not valid R4: %v", err)
			}
			res := resources(t, b)
			task := res["Task"][0]
			business := task["businessStatus"].(map[string]any)["coding"].([]any)[0].(map[string]any)["code"]
			if task["status"] != tc.task || business != string(tc.state) || res["ServiceRequest"][0]["status"] != tc.request {
				t.Errorf("task %v (%v), request %v", task["status"], business, res["ServiceRequest"][0]["status"])
			}
			for typ, n := range map[string]int{"Patient": 1, "Condition": 2, "CarePlan": tc.carePlans, "Encounter": tc.encounter,
				"Observation": tc.observations, "Composition": 1, "Practitioner": 2, "Organization": 2} {
				if len(res[typ]) != n {
					t.Errorf("%d %s, want %d", len(res[typ]), typ, n)
				}
			}
			// Every result the Task reports is in the Bundle.
			if want := tc.carePlans + tc.encounter + tc.observations + 1; len(task["output"].([]any)) != want {
				t.Errorf("%d task outputs, want %d", len(task["output"].([]any)), want)
			}
		})
	}
}

func TestBundleMapping(t *testing.T) {
	t.Parallel()
	rec := record(careteam.ReferralCompleted)
	b, err := fhir.Bundle(rec)
	if err != nil {
		t.Fatal(err)
	}
	res := resources(t, b)
	text := string(b)
	for _, want := range []string{
		`"code":"72514-3","system":"http://loinc.org"`, `"code":"97909-6","system":"http://loinc.org"`,
		`"code":"NECK_DISABILITY_INDEX"`, `"code":"11506-3"`,
		`"url":"urn:careteam:fhir:extension:red-flag"`, `"url":"urn:careteam:fhir:extension:max-pressure"`,
		`"code":"CLEARED_WITH_PRECAUTIONS"`, `"priority":"urgent"`, `"code":"{visits}"`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the Bundle lacks %s", want)
		}
	}
	if !strings.Contains(text, "Stretch &lt;daily&gt; &amp; walk.") {
		t.Error("the progress report's narrative is not escaped")
	}
	cp := res["CarePlan"][0]
	if cp["status"] != "active" || len(cp["activity"].([]any)) != 3 {
		t.Errorf("clearance %v", cp)
	}
	var doNot []bool
	for _, a := range cp["activity"].([]any) {
		doNot = append(doNot, a.(map[string]any)["detail"].(map[string]any)["doNotPerform"].(bool))
	}
	if !slices.Equal(doNot, []bool{false, true, true}) {
		t.Errorf("precautions' doNotPerform %v", doNot)
	}
	if cmp := res["Composition"][0]; cmp["status"] != "final" {
		t.Errorf("the report of a completed referral is %v", cmp["status"])
	}
	sr := res["ServiceRequest"][0]
	if len(sr["reasonReference"].([]any)) != 1 || len(sr["supportingInfo"].([]any)) != 1 {
		t.Errorf("reasons %v, supporting %v", sr["reasonReference"], sr["supportingInfo"])
	}
}

func TestBundleRoundTrips(t *testing.T) {
	t.Parallel()
	rec := record(careteam.ReferralSubmitted)
	b, err := fhir.Bundle(rec)
	if err != nil {
		t.Fatal(err)
	}
	in := parse(t, b)
	r := rec.Referral
	if in.ReferralID != r.ID || !in.Submit || in.Patient.ID != rec.Patient.ID || in.Therapist.ID != r.TargetTherapistID ||
		in.Practice.ID != r.TargetOrgID || in.Requester.ID != r.ReferringPhysicianID {
		t.Fatalf("import of the export: %+v", in)
	}
	o := in.Order
	if !slices.Equal(o.ReasonCodes, r.ReasonCodes) || o.ClinicalNotes != r.ClinicalNotes || o.Priority != r.Priority ||
		!slices.Equal(o.RequestedTechniques, r.RequestedTechniques) || o.AuthorizedVisits != r.AuthorizedVisits ||
		!o.ValidUntil.Equal(r.ValidUntil) || !slices.Equal(o.RequiredSpecialties, r.RequiredSpecialties) {
		t.Errorf("order %+v", o)
	}
	if len(in.Diagnoses) != 2 || in.Diagnoses[0].Diagnosis.ID != rec.Diagnoses[0].ID || !in.Diagnoses[0].Reason || in.Diagnoses[1].Reason ||
		!slices.Equal(in.Diagnoses[1].Diagnosis.RedFlags, []careteam.RedFlag{"OSTEOPOROSIS"}) {
		t.Errorf("diagnoses %+v", in.Diagnoses)
	}

	rec.ImportIdentifiers = []careteam.Identifier{{System: "urn:oid:2.16.840.1.113883.19.5.99.1", Value: "SR-2026-00042"},
		{System: "urn:oid:2.16.840.1.113883.19.5.99.2", Value: "ER-7731"}}
	if b, err = fhir.Bundle(rec); err != nil {
		t.Fatal(err)
	}
	if in := parse(t, b); !slices.Equal(in.Identifiers, rec.ImportIdentifiers) || in.ReferralID != uuid.Nil {
		t.Errorf("an imported referral exports its import identifiers: %+v", in.Identifiers)
	}
}

func TestValidateFindsDanglingReferences(t *testing.T) {
	t.Parallel()
	d := load(t, "collection-bundle.json")
	if err := fhir.Validate(d.bytes(t)); err != nil {
		t.Fatalf("the collection Bundle is valid: %v", err)
	}
	d.set(t, "entry.2.resource.subject.reference", "Patient/elsewhere")
	err := fhir.Validate(d.bytes(t))
	var inv *careteam.InvalidError
	if !errors.As(err, &inv) || inv.Violations[0].Field != "Bundle.entry[2].resource.ofType(Condition).subject" {
		t.Fatalf("got %v", err)
	}
}

// TestRecordResourcesReferToEachOther: read one by one, as the REST
// endpoint serves them, a record's resources refer to each other as
// Type/id, and each reference resolves to one of them; the clearance
// cites its referral where R4 allows it (supportingInfo, not basedOn),
// and the patient declares the US Core profile it meets.
func TestRecordResourcesReferToEachOther(t *testing.T) {
	t.Parallel()
	rec := record(careteam.ReferralInProgress)
	got, err := fhir.RecordResources(rec)
	if err != nil {
		t.Fatal(err)
	}
	served := map[string]map[string]any{}
	for _, r := range got {
		if err := fhir.Validate(r.JSON); err != nil {
			t.Errorf("%s/%s is not valid R4: %v", r.Type, r.ID, err)
		}
		var m map[string]any
		if err := json.Unmarshal(r.JSON, &m); err != nil {
			t.Fatal(err)
		}
		if m["resourceType"] != r.Type || m["id"] != r.ID {
			t.Errorf("%s/%s holds a %v/%v", r.Type, r.ID, m["resourceType"], m["id"])
		}
		served[r.Type+"/"+r.ID] = m
	}
	if len(served) != len(got) {
		t.Errorf("%d resources under %d names", len(got), len(served))
	}
	var refs []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if s, ok := v["reference"].(string); ok {
				refs = append(refs, s)
			}
			for _, e := range v {
				walk(e)
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	for _, m := range served {
		walk(m)
	}
	if len(refs) < 20 {
		t.Fatalf("only %d references", len(refs))
	}
	for _, ref := range refs {
		if served[ref] == nil {
			t.Errorf("reference %s resolves to nothing served", ref)
		}
	}
	plan := served["CarePlan/"+rec.Clearance.ID.String()]
	if plan["basedOn"] != nil || fmt.Sprint(plan["supportingInfo"]) != fmt.Sprint([]any{map[string]any{"reference": "ServiceRequest/" + rec.Referral.ID.String()}}) {
		t.Errorf("the clearance cites its referral as basedOn %v, supportingInfo %v", plan["basedOn"], plan["supportingInfo"])
	}
	if p := fmt.Sprint(served["Patient/"+rec.Patient.ID.String()]["meta"]); !strings.Contains(p, "us-core-patient") {
		t.Errorf("the patient declares %s", p)
	}
	for _, pr := range rec.Practitioners {
		m := served["Practitioner/"+pr.ID.String()]
		declares := strings.Contains(fmt.Sprint(m["meta"]), "us-core-practitioner")
		name := fmt.Sprint(m["name"])
		if (pr.FamilyName != "") != declares || pr.FamilyName != "" && !strings.Contains(name, "family:"+pr.FamilyName) {
			t.Errorf("%s (family %q): name %s, declares US Core %v", pr.DisplayName, pr.FamilyName, name, declares)
		}
	}
	if task := served["Task/"+rec.Referral.ID.String()]; task == nil {
		t.Error("no Task under its referral's id")
	}
}

// TestNamingUnderABase: with a public FHIR base, what careteam writes
// names its code systems and extensions by canonical URLs under it (and
// nothing by the URNs), stays valid R4, and reads back as the URNs did.
func TestNamingUnderABase(t *testing.T) {
	t.Parallel()
	const base = "https://careteam.example.org/fhir/R4"
	n := fhir.NewNaming(base)
	b, err := fhir.Bundle(record(careteam.ReferralInProgress))
	if err != nil {
		t.Fatal(err)
	}
	named, err := n.Outward(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := fhir.Validate(named); err != nil {
		t.Fatalf("not valid R4 once named: %v", err)
	}
	for _, want := range []string{base + "/CodeSystem/technique", base + "/CodeSystem/referral-state", base + "/StructureDefinition/red-flag"} {
		if !strings.Contains(string(named), `"`+want+`"`) {
			t.Errorf("%s is not written", want)
		}
	}
	for _, urn := range []string{"urn:careteam:technique", "urn:careteam:referral-state", "urn:careteam:fhir:extension:red-flag"} {
		if strings.Contains(string(named), urn) {
			t.Errorf("%s is still written", urn)
		}
	}
	if n.URL("urn:careteam:patient") != "urn:careteam:patient" {
		t.Error("an identifier system was renamed")
	}
	before, after := parse(t, b), parse(t, n.Inward(named))
	if !slices.Equal(before.Order.RequestedTechniques, after.Order.RequestedTechniques) || len(before.Diagnoses) != len(after.Diagnoses) ||
		!slices.Equal(before.Diagnoses[1].Diagnosis.RedFlags, after.Diagnoses[1].Diagnosis.RedFlags) {
		t.Errorf("read back under the base: %+v, under the URNs: %+v", after.Order, before.Order)
	}
	if got := fhir.NewNaming("").Inward(named); string(got) != string(named) {
		t.Error("no naming changed the input")
	}
}
