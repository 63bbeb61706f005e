package api_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/careteam/careteam/proto/careteam/v1"
)

func TestSessionStartsAfterClearance(t *testing.T) {
	t.Parallel()
	tm := newTeam(t)
	r, c := tm.ready()
	ss, err := tm.start("lmt", r, swedishLumbar)
	if err != nil {
		t.Fatal(err)
	}
	if ss.GetVisitNumber() != 1 || ss.GetClearance() != c.GetName() || ss.GetState() != pb.SessionState_SESSION_STATE_STARTED {
		t.Fatalf("session %v", ss)
	}
	got, err := tm.as("dr").Referrals.GetReferral(tm.ctx, &pb.GetReferralRequest{Name: r.GetName()})
	if err != nil {
		t.Fatal(err)
	}
	if got.GetReferral().GetState() != pb.ReferralState_REFERRAL_STATE_IN_PROGRESS || got.GetReferral().GetUsedVisits() != 1 {
		t.Fatalf("referral after the first session: %v", got.GetReferral())
	}
}

func TestDiagnoses(t *testing.T) {
	t.Parallel()
	tm := newTeam(t)
	r := tm.referralIn(pb.ReferralState_REFERRAL_STATE_SUBMITTED)
	hilltop := tm.harness.org("Hilltop", pb.OrganizationKind_ORGANIZATION_KIND_PHYSICIAN_PRACTICE)
	tm.harness.practitioner(hilltop, pb.Role_ROLE_PHYSICIAN, "outside-dr")
	record := func(as string, d *pb.Diagnosis) (*pb.Diagnosis, error) {
		resp, err := tm.as(as).Clinical.RecordDiagnosis(tm.ctx, &pb.RecordDiagnosisRequest{Diagnosis: d})
		return resp.GetDiagnosis(), err
	}
	d, err := record("dr", &pb.Diagnosis{
		Patient: tm.patient.GetName(), Icd10Code: "M47816", Display: "Spondylosis without myelopathy or radiculopathy, lumbar region",
		BodySites: []pb.BodyRegion{pb.BodyRegion_BODY_REGION_LUMBAR}, OnsetDate: "2025-11-02",
		Severity: pb.Severity_SEVERITY_MODERATE, RedFlags: []pb.RedFlag{pb.RedFlag_RED_FLAG_OSTEOPOROSIS},
		Notes: "DEXA T-score -2.7.",
	})
	if err != nil {
		t.Fatal(err)
	}
	if d.GetIcd10Code() != "M47.816" || d.GetClinicalStatus() != pb.ClinicalStatus_CLINICAL_STATUS_ACTIVE || d.GetPhysician() != tm.dr.GetName() {
		t.Fatalf("recorded %v", d)
	}
	t.Run("only physicians diagnose", func(t *testing.T) {
		for _, who := range []string{"lmt", "coord", "spa-coord"} {
			_, err := record(who, &pb.Diagnosis{Patient: tm.patient.GetName(), Icd10Code: "M54.50", Display: "Low back pain"})
			wantCode(t, err, codes.PermissionDenied)
		}
		// A physician with no relation to the patient cannot either.
		_, err := record("outside-dr", &pb.Diagnosis{Patient: tm.patient.GetName(), Icd10Code: "M54.50", Display: "Low back pain"})
		wantCode(t, err, codes.PermissionDenied)
	})
	t.Run("the code is validated", func(t *testing.T) {
		_, err := record("dr", &pb.Diagnosis{Patient: tm.patient.GetName(), Icd10Code: "5450", Display: "x"})
		if got := fieldViolations(t, err); !slices.Equal(got, []string{"diagnosis.icd10_code"}) {
			t.Fatalf("%v", got)
		}
	})
	t.Run("the therapist reads the diagnosis but not private notes", func(t *testing.T) {
		for who, wantNotes := range map[string]bool{"dr": true, "lmt": false, "coord": false, "spa-coord": false} {
			got, err := tm.as(who).Clinical.GetDiagnosis(tm.ctx, &pb.GetDiagnosisRequest{Name: d.GetName()})
			if err != nil {
				t.Fatalf("%s: %v", who, err)
			}
			if (got.GetDiagnosis().GetNotes() != "") != wantNotes || len(got.GetDiagnosis().GetRedFlags()) != 1 {
				t.Errorf("%s: notes %q, red flags %v", who, got.GetDiagnosis().GetNotes(), got.GetDiagnosis().GetRedFlags())
			}
		}
		for _, who := range []string{"lmt2", "other-lmt", "outside-dr"} {
			_, err := tm.as(who).Clinical.GetDiagnosis(tm.ctx, &pb.GetDiagnosisRequest{Name: d.GetName()})
			wantCode(t, err, codes.PermissionDenied)
			_, err = tm.as(who).Clinical.ListDiagnoses(tm.ctx, &pb.ListDiagnosesRequest{Patient: tm.patient.GetName()})
			wantCode(t, err, codes.PermissionDenied)
		}
	})
	t.Run("shareable notes reach the therapist; updates need the current etag", func(t *testing.T) {
		upd := &pb.Diagnosis{Name: d.GetName(), NotesShareable: true, Etag: d.GetEtag()}
		resp, err := tm.as("dr").Clinical.UpdateDiagnosis(tm.ctx, &pb.UpdateDiagnosisRequest{Diagnosis: upd, UpdateMask: fieldMask("notes_shareable")})
		if err != nil {
			t.Fatal(err)
		}
		_, err = tm.as("dr").Clinical.UpdateDiagnosis(tm.ctx, &pb.UpdateDiagnosisRequest{Diagnosis: upd, UpdateMask: fieldMask("notes_shareable")})
		wantCode(t, err, codes.Aborted)
		_, err = tm.as("lmt").Clinical.UpdateDiagnosis(tm.ctx, &pb.UpdateDiagnosisRequest{Diagnosis: &pb.Diagnosis{Name: d.GetName()}, UpdateMask: fieldMask("notes")})
		wantCode(t, err, codes.PermissionDenied)
		list, err := tm.as("lmt").Clinical.ListDiagnoses(tm.ctx, &pb.ListDiagnosesRequest{Patient: tm.patient.GetName()})
		if err != nil || len(list.GetDiagnoses()) != 1 || list.GetDiagnoses()[0].GetNotes() == "" {
			t.Fatalf("therapist list: %v %v", list, err)
		}
		if resp.GetDiagnosis().GetNotesShareable() != true {
			t.Fatal("not shareable after update")
		}
	})
	t.Run("a referral cites the patient's diagnoses only", func(t *testing.T) {
		in := tm.newReferral()
		in.ReasonDiagnoses = []string{d.GetName()}
		if got := tm.create(in); !slices.Equal(got.GetReasonDiagnoses(), []string{d.GetName()}) {
			t.Fatalf("reasons %v", got.GetReasonDiagnoses())
		}
		other := tm.patient
		tm.patient = tm.harness.patient("dr", "MRN-OTHER")
		defer func() { tm.patient = other }()
		in = tm.newReferral()
		in.ReasonDiagnoses = []string{d.GetName()}
		_, err := tm.as("dr").Referrals.CreateReferral(tm.ctx, &pb.CreateReferralRequest{Referral: in})
		fieldViolations(t, err)
	})
	t.Run("a practice's unassigned referral shows its therapists the patient, not the diagnoses", func(t *testing.T) {
		in := tm.newReferral()
		in.TargetTherapist, in.TargetOrganization = "", tm.spa
		toPractice := tm.create(in)
		if _, err := (&clientSet{tm.as("dr"), toPractice.GetName()}).submit(); err != nil {
			t.Fatal(err)
		}
		if _, err := tm.as("lmt2").Referrals.GetReferral(tm.ctx, &pb.GetReferralRequest{Name: toPractice.GetName()}); err != nil {
			t.Fatalf("the practice's therapist reads the unassigned referral: %v", err)
		}
		_, err := tm.as("lmt2").Clinical.GetDiagnosis(tm.ctx, &pb.GetDiagnosisRequest{Name: d.GetName()})
		wantCode(t, err, codes.PermissionDenied)
		_, err = tm.as("lmt2").Clinical.ListDiagnoses(tm.ctx, &pb.ListDiagnosesRequest{Patient: tm.patient.GetName()})
		wantCode(t, err, codes.PermissionDenied)
		if _, err := tm.as("dr").Referrals.AssignReferral(tm.ctx, &pb.AssignReferralRequest{Name: toPractice.GetName(), Therapist: tm.lmt2.GetName()}); err != nil {
			t.Fatal(err)
		}
		if _, err := tm.as("lmt2").Clinical.GetDiagnosis(tm.ctx, &pb.GetDiagnosisRequest{Name: d.GetName()}); err != nil {
			t.Fatalf("once assigned: %v", err)
		}
	})
	_ = r
}

func TestIssueClearanceRules(t *testing.T) {
	t.Parallel()
	tm := newTeam(t)
	issue := func(as string, c *pb.Clearance) (*pb.Clearance, error) {
		if c.Patient == "" {
			c.Patient = tm.patient.GetName()
		}
		resp, err := tm.as(as).Clinical.IssueClearance(tm.ctx, &pb.IssueClearanceRequest{Clearance: c})
		return resp.GetClearance(), err
	}
	t.Run("physicians only", func(t *testing.T) {
		for _, who := range []string{"lmt", "coord"} {
			_, err := issue(who, &pb.Clearance{Decision: pb.ClearanceDecision_CLEARANCE_DECISION_CLEARED})
			wantCode(t, err, codes.PermissionDenied)
		}
	})
	t.Run("precautions are required with CLEARED_WITH_PRECAUTIONS", func(t *testing.T) {
		_, err := issue("dr", &pb.Clearance{Decision: pb.ClearanceDecision_CLEARANCE_DECISION_CLEARED_WITH_PRECAUTIONS})
		if got := fieldViolations(t, err); !slices.Equal(got, []string{"clearance.precautions"}) {
			t.Fatalf("%v", got)
		}
		_, err = issue("dr", &pb.Clearance{Decision: pb.ClearanceDecision_CLEARANCE_DECISION_CLEARED_WITH_PRECAUTIONS,
			Precautions: []*pb.Precaution{{Region: pb.BodyRegion_BODY_REGION_LUMBAR, Action: pb.PrecautionAction_PRECAUTION_ACTION_LIMIT_PRESSURE}}})
		fieldViolations(t, err) // a pressure limit without its pressure
	})
	t.Run("the window is 90 days by default and at most 365", func(t *testing.T) {
		c, err := issue("dr", &pb.Clearance{Decision: pb.ClearanceDecision_CLEARANCE_DECISION_CLEARED})
		if err != nil {
			t.Fatal(err)
		}
		if got := c.GetValidUntil().AsTime().Sub(c.GetValidFrom().AsTime()); got != 90*24*time.Hour {
			t.Fatalf("default window %v", got)
		}
		_, err = issue("dr", &pb.Clearance{Decision: pb.ClearanceDecision_CLEARANCE_DECISION_CLEARED,
			ValidUntil: timestamppb.New(tm.clock.Now().AddDate(1, 0, 1))})
		if got := fieldViolations(t, err); !slices.Equal(got, []string{"clearance.valid_until"}) {
			t.Fatalf("%v", got)
		}
	})
	t.Run("a new clearance supersedes the one in force", func(t *testing.T) {
		list, err := tm.as("dr").Clinical.ListClearances(tm.ctx, &pb.ListClearancesRequest{Patient: tm.patient.GetName()})
		if err != nil {
			t.Fatal(err)
		}
		var active []string
		for _, c := range list.GetClearances() {
			if c.GetStatus() == pb.ClearanceStatus_CLEARANCE_STATUS_ACTIVE {
				active = append(active, c.GetName())
			}
		}
		next, err := issue("dr", &pb.Clearance{Decision: pb.ClearanceDecision_CLEARANCE_DECISION_CLEARED})
		if err != nil {
			t.Fatal(err)
		}
		if len(active) != 1 {
			t.Fatalf("%d clearances in force before, want 1", len(active))
		}
		old, err := tm.as("dr").Clinical.GetClearance(tm.ctx, &pb.GetClearanceRequest{Name: active[0]})
		if err != nil {
			t.Fatal(err)
		}
		if old.GetClearance().GetStatus() != pb.ClearanceStatus_CLEARANCE_STATUS_SUPERSEDED || old.GetClearance().GetSupersededBy() != next.GetName() {
			t.Fatalf("old clearance %v", old.GetClearance())
		}
	})
	t.Run("active red flags must be attested as evaluated", func(t *testing.T) {
		for _, flags := range [][]pb.RedFlag{{pb.RedFlag_RED_FLAG_SUSPECTED_FRACTURE}, {pb.RedFlag_RED_FLAG_MALIGNANCY_HISTORY}} {
			if _, err := tm.as("dr").Clinical.RecordDiagnosis(tm.ctx, &pb.RecordDiagnosisRequest{Diagnosis: &pb.Diagnosis{
				Patient: tm.patient.GetName(), Icd10Code: "M54.50", Display: "Low back pain", RedFlags: flags,
			}}); err != nil {
				t.Fatal(err)
			}
		}
		// A resolved diagnosis' red flags no longer need attesting.
		resolved, err := tm.as("dr").Clinical.RecordDiagnosis(tm.ctx, &pb.RecordDiagnosisRequest{Diagnosis: &pb.Diagnosis{
			Patient: tm.patient.GetName(), Icd10Code: "S39.012A", Display: "Strain of lumbar muscle",
			RedFlags: []pb.RedFlag{pb.RedFlag_RED_FLAG_SIGNIFICANT_TRAUMA}, ClinicalStatus: pb.ClinicalStatus_CLINICAL_STATUS_RESOLVED,
		}})
		if err != nil || resolved == nil {
			t.Fatal(err)
		}
		_, err = issue("dr", &pb.Clearance{Decision: pb.ClearanceDecision_CLEARANCE_DECISION_CLEARED,
			EvaluatedRedFlags: []pb.RedFlag{pb.RedFlag_RED_FLAG_SUSPECTED_FRACTURE}})
		st := wantCode(t, err, codes.FailedPrecondition)
		// One violation per standing finding not attested: each diagnosis
		// carrying MALIGNANCY_HISTORY, none for the resolved one.
		types := preconditionTypes(t, err)
		if len(types) == 0 || slices.ContainsFunc(types, func(s string) bool { return s != "RED_FLAG_NOT_EVALUATED" }) ||
			!strings.Contains(st.Message(), "MALIGNANCY_HISTORY") || strings.Contains(st.Message(), "SUSPECTED_FRACTURE") || strings.Contains(st.Message(), "SIGNIFICANT_TRAUMA") {
			t.Fatalf("%v: %s", types, st.Message())
		}
		if _, err := issue("dr", &pb.Clearance{Decision: pb.ClearanceDecision_CLEARANCE_DECISION_CLEARED,
			EvaluatedRedFlags: []pb.RedFlag{pb.RedFlag_RED_FLAG_SUSPECTED_FRACTURE, pb.RedFlag_RED_FLAG_MALIGNANCY_HISTORY}}); err != nil {
			t.Fatal(err)
		}
	})
}

func TestGateRefusesWithEveryReason(t *testing.T) {
	t.Parallel()
	tm := newTeam(t)
	r := tm.referralIn(pb.ReferralState_REFERRAL_STATE_ACCEPTED)
	_, err := tm.start("lmt", r, swedishLumbar)
	if got := preconditionTypes(t, err); !slices.Equal(got, []string{"CLEARANCE_MISSING", "CONSENT_MISSING"}) {
		t.Fatalf("%v", got)
	}
	check, err := tm.as("lmt").Clinical.CheckClearance(tm.ctx, &pb.CheckClearanceRequest{Referral: r.GetName(), Planned: swedishLumbar})
	if err != nil {
		t.Fatal(err)
	}
	if check.GetAllowed() || len(check.GetViolations()) != 2 {
		t.Fatalf("check %v", check)
	}
	tm.consent()
	tm.clear(&pb.Clearance{
		Referral: r.GetName(),
		Decision: pb.ClearanceDecision_CLEARANCE_DECISION_CLEARED_WITH_PRECAUTIONS,
		Precautions: []*pb.Precaution{
			{Region: pb.BodyRegion_BODY_REGION_LUMBAR, Technique: pb.Technique_TECHNIQUE_DEEP_TISSUE, Action: pb.PrecautionAction_PRECAUTION_ACTION_AVOID},
			{Region: pb.BodyRegion_BODY_REGION_CERVICAL, Action: pb.PrecautionAction_PRECAUTION_ACTION_LIMIT_PRESSURE, MaxPressure: pb.Pressure_PRESSURE_LIGHT},
		},
		ContraindicatedTechniques: []pb.Technique{pb.Technique_TECHNIQUE_HOT_STONE},
	})
	risky := []*pb.Treatment{
		treatment(pb.BodyRegion_BODY_REGION_LUMBAR, pb.Technique_TECHNIQUE_DEEP_TISSUE, pb.Pressure_PRESSURE_FIRM),
		treatment(pb.BodyRegion_BODY_REGION_CERVICAL, pb.Technique_TECHNIQUE_SWEDISH, pb.Pressure_PRESSURE_MEDIUM),
		treatment(pb.BodyRegion_BODY_REGION_THORACIC, pb.Technique_TECHNIQUE_HOT_STONE, pb.Pressure_PRESSURE_LIGHT),
	}
	_, err = tm.start("lmt", r, risky)
	if got := preconditionTypes(t, err); !slices.Equal(got, []string{"PRECAUTION_VIOLATED", "PRECAUTION_VIOLATED", "CONTRAINDICATED_TECHNIQUE"}) &&
		!slices.Equal(got, []string{"CONTRAINDICATED_TECHNIQUE", "PRECAUTION_VIOLATED", "PRECAUTION_VIOLATED"}) {
		t.Fatalf("%v", got)
	}
	if got := tm.count(`SELECT count(*) FROM sessions`); got != 0 {
		t.Fatalf("a refused start wrote %d sessions", got)
	}
	t.Run("a dry run for another therapist", func(t *testing.T) {
		check, err := tm.as("spa-coord").Clinical.CheckClearance(tm.ctx, &pb.CheckClearanceRequest{
			Referral: r.GetName(), Therapist: tm.lmt2.GetName(), Planned: swedishLumbar,
		})
		if err != nil {
			t.Fatal(err)
		}
		var types []string
		for _, v := range check.GetViolations() {
			types = append(types, v.GetType())
		}
		if !slices.Equal(types, []string{"NOT_ASSIGNED_THERAPIST"}) {
			t.Fatalf("%v", types)
		}
		_, err = tm.as("lmt2").Clinical.CheckClearance(tm.ctx, &pb.CheckClearanceRequest{Referral: r.GetName(), Therapist: tm.lmt.GetName()})
		wantCode(t, err, codes.PermissionDenied)
	})
	if _, err := tm.start("lmt", r, swedishLumbar); err != nil {
		t.Fatalf("a plan within the precautions: %v", err)
	}
	t.Run("only the assigned therapist starts sessions", func(t *testing.T) {
		for _, who := range []string{"dr", "spa-coord"} {
			_, err := tm.start(who, r, swedishLumbar)
			wantCode(t, err, codes.PermissionDenied)
		}
		_, err := tm.start("lmt2", r, swedishLumbar)
		wantCode(t, err, codes.PermissionDenied) // lmt2 cannot see a referral assigned to lmt
	})
	t.Run("a clearance must not have ended", func(t *testing.T) {
		tm.clock.Advance(91 * 24 * time.Hour)
		check, err := tm.as("lmt").Clinical.CheckClearance(tm.ctx, &pb.CheckClearanceRequest{
			Referral: r.GetName(), Planned: swedishLumbar,
		})
		if err != nil || check.GetAllowed() || !slices.ContainsFunc(check.GetViolations(), func(v *pb.Violation) bool { return v.GetType() == "CLEARANCE_EXPIRED" }) {
			t.Fatalf("%v %v", check, err)
		}
	})
}

func TestSuspensionHoldsTheReferral(t *testing.T) {
	t.Parallel()
	tm := newTeam(t)
	r, c := tm.ready()
	if _, err := tm.start("lmt", r, swedishLumbar); err != nil {
		t.Fatal(err)
	}
	_, err := tm.as("lmt2").Clinical.SuspendClearance(tm.ctx, &pb.SuspendClearanceRequest{Name: c.GetName(),
		RedFlag: pb.RedFlag_RED_FLAG_CAUDA_EQUINA_SYMPTOMS, Observation: "Saddle numbness reported."})
	wantCode(t, err, codes.PermissionDenied)
	resp, err := tm.as("lmt").Clinical.SuspendClearance(tm.ctx, &pb.SuspendClearanceRequest{Name: c.GetName(),
		RedFlag: pb.RedFlag_RED_FLAG_CAUDA_EQUINA_SYMPTOMS, Observation: "Saddle numbness reported.", Etag: c.GetEtag()})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetClearance().GetStatus() != pb.ClearanceStatus_CLEARANCE_STATUS_SUSPENDED || resp.GetClearance().GetSuspension().GetActor() != tm.lmt.GetName() {
		t.Fatalf("%v", resp.GetClearance())
	}
	ref := func() *pb.Referral {
		got, err := tm.as("dr").Referrals.GetReferral(tm.ctx, &pb.GetReferralRequest{Name: r.GetName()})
		if err != nil {
			t.Fatal(err)
		}
		return got.GetReferral()
	}
	if got := ref(); got.GetState() != pb.ReferralState_REFERRAL_STATE_ON_HOLD || !got.GetAttentionRequired() {
		t.Fatalf("referral after suspension: %v", got.GetState())
	}
	_, err = tm.start("lmt", r, swedishLumbar)
	if got := preconditionTypes(t, err); !slices.Contains(got, "CLEARANCE_SUSPENDED") {
		t.Fatalf("%v", got)
	}
	// Clearing again must acknowledge the red flag the therapist reported.
	_, err = tm.as("dr").Clinical.IssueClearance(tm.ctx, &pb.IssueClearanceRequest{Clearance: &pb.Clearance{
		Patient: tm.patient.GetName(), Decision: pb.ClearanceDecision_CLEARANCE_DECISION_CLEARED,
	}})
	if got := preconditionTypes(t, err); !slices.Equal(got, []string{"RED_FLAG_NOT_EVALUATED"}) {
		t.Fatalf("re-clearing without attesting the reported red flag: %v", got)
	}
	// The physician re-clears, attesting it: the referral resumes where it
	// was.
	if _, err := tm.as("dr").Clinical.IssueClearance(tm.ctx, &pb.IssueClearanceRequest{Clearance: &pb.Clearance{
		Patient: tm.patient.GetName(), Decision: pb.ClearanceDecision_CLEARANCE_DECISION_CLEARED,
		EvaluatedRedFlags: []pb.RedFlag{pb.RedFlag_RED_FLAG_CAUDA_EQUINA_SYMPTOMS},
	}}); err != nil {
		t.Fatal(err)
	}
	if got := ref(); got.GetState() != pb.ReferralState_REFERRAL_STATE_IN_PROGRESS {
		t.Fatalf("referral after re-clearance: %v", got.GetState())
	}
	if _, err := tm.start("lmt", r, swedishLumbar); err != nil {
		t.Fatal(err)
	}
	t.Run("revocation ends it", func(t *testing.T) {
		list, err := tm.as("dr").Clinical.ListClearances(tm.ctx, &pb.ListClearancesRequest{Patient: tm.patient.GetName(), Status: pb.ClearanceStatus_CLEARANCE_STATUS_ACTIVE})
		if err != nil || len(list.GetClearances()) != 1 {
			t.Fatalf("%v %v", list, err)
		}
		_, err = tm.as("lmt").Clinical.RevokeClearance(tm.ctx, &pb.RevokeClearanceRequest{Name: list.GetClearances()[0].GetName(), Reason: "x"})
		wantCode(t, err, codes.PermissionDenied)
		if _, err := tm.as("dr").Clinical.RevokeClearance(tm.ctx, &pb.RevokeClearanceRequest{Name: list.GetClearances()[0].GetName(), Reason: "MRI shows a fracture."}); err != nil {
			t.Fatal(err)
		}
		_, err = tm.start("lmt", r, swedishLumbar)
		if got := preconditionTypes(t, err); !slices.Equal(got, []string{"CLEARANCE_REVOKED"}) {
			t.Fatalf("%v", got)
		}
	})
}

// TestHeldReferralResumesOnTheNextClearance: a referral a suspension put
// ON_HOLD resumes when the physician clears the patient again, whichever
// way: after revoking the suspended clearance first, or with a clearance
// for this referral alone beside the suspended patient-wide one. A
// NOT_CLEARED decision in between keeps it held.
func TestHeldReferralResumesOnTheNextClearance(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name                     string
		revokeFirst, forReferral bool
	}{
		{"revoked, then a patient-wide clearance", true, false},
		{"a clearance for the referral alone", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tm := newTeam(t)
			r, c := tm.ready()
			if _, err := tm.start("lmt", r, swedishLumbar); err != nil {
				t.Fatal(err)
			}
			susp, err := tm.as("lmt").Clinical.SuspendClearance(tm.ctx, &pb.SuspendClearanceRequest{Name: c.GetName(),
				RedFlag: pb.RedFlag_RED_FLAG_SUSPECTED_FRACTURE, Observation: "Point tenderness over L3."})
			if err != nil {
				t.Fatal(err)
			}
			state := func(when string, want pb.ReferralState) {
				t.Helper()
				if got := tm.referral(r.GetName()).GetState(); got != want {
					t.Fatalf("%s: referral is %v, want %v", when, got, want)
				}
			}
			state("suspended", pb.ReferralState_REFERRAL_STATE_ON_HOLD)
			if tc.revokeFirst {
				if _, err := tm.as("dr").Clinical.RevokeClearance(tm.ctx, &pb.RevokeClearanceRequest{Name: c.GetName(),
					Reason: "Awaiting imaging.", Etag: susp.GetClearance().GetEtag()}); err != nil {
					t.Fatal(err)
				}
				state("revoked", pb.ReferralState_REFERRAL_STATE_ON_HOLD)
			}
			scope := func(c *pb.Clearance) *pb.Clearance {
				if tc.forReferral {
					c.Referral = r.GetName()
				}
				return c
			}
			tm.clear(scope(&pb.Clearance{Decision: pb.ClearanceDecision_CLEARANCE_DECISION_NOT_CLEARED}))
			state("not cleared", pb.ReferralState_REFERRAL_STATE_ON_HOLD)
			tm.clear(scope(&pb.Clearance{EvaluatedRedFlags: []pb.RedFlag{pb.RedFlag_RED_FLAG_SUSPECTED_FRACTURE}}))
			state("cleared again", pb.ReferralState_REFERRAL_STATE_IN_PROGRESS)
			if _, err := tm.start("lmt", r, swedishLumbar); err != nil {
				t.Fatalf("a session after the new clearance: %v", err)
			}
		})
	}
}

// TestRevokedReferralClearanceKeepsItsHold: a referral whose own clearance
// was suspended and then revoked stays ON_HOLD when a patient-wide
// clearance is issued, since the gate still judges it by its own (revoked)
// clearance: the most specific decision wins.
func TestRevokedReferralClearanceKeepsItsHold(t *testing.T) {
	t.Parallel()
	tm := newTeam(t)
	r, _ := tm.ready()
	own := tm.clear(&pb.Clearance{Referral: r.GetName()})
	if _, err := tm.as("lmt").Clinical.SuspendClearance(tm.ctx, &pb.SuspendClearanceRequest{Name: own.GetName(),
		RedFlag: pb.RedFlag_RED_FLAG_SIGNIFICANT_TRAUMA, Observation: "Fell on ice yesterday."}); err != nil {
		t.Fatal(err)
	}
	if _, err := tm.as("dr").Clinical.RevokeClearance(tm.ctx, &pb.RevokeClearanceRequest{Name: own.GetName(), Reason: "Needs imaging."}); err != nil {
		t.Fatal(err)
	}
	tm.clear(&pb.Clearance{EvaluatedRedFlags: []pb.RedFlag{pb.RedFlag_RED_FLAG_SIGNIFICANT_TRAUMA}})
	if got := tm.referral(r.GetName()); got.GetState() != pb.ReferralState_REFERRAL_STATE_ON_HOLD {
		t.Fatalf("referral is %v, want ON_HOLD", got.GetState())
	}
	_, err := tm.start("lmt", r, swedishLumbar)
	if got := preconditionTypes(t, err); !slices.Contains(got, "CLEARANCE_REVOKED") {
		t.Fatalf("start: %v", got)
	}
}

func TestClearanceRequests(t *testing.T) {
	t.Parallel()
	tm := newTeam(t)
	h := tm.harness
	r := tm.referralIn(pb.ReferralState_REFERRAL_STATE_ACCEPTED)
	ask := func(as string, req *pb.RequestClearanceRequest) (*pb.Clearance, error) {
		resp, err := h.as(as).Clinical.RequestClearance(h.ctx, req)
		return resp.GetClearance(), err
	}
	_, err := ask("lmt2", &pb.RequestClearanceRequest{Patient: tm.patient.GetName(), Referral: r.GetName(), Question: "Cleared?"})
	wantCode(t, err, codes.PermissionDenied)
	req, err := ask("lmt", &pb.RequestClearanceRequest{Patient: tm.patient.GetName(), Referral: r.GetName(), Question: "Any contraindication to deep tissue work on the lumbar spine?"})
	if err != nil {
		t.Fatal(err)
	}
	if req.GetStatus() != pb.ClearanceStatus_CLEARANCE_STATUS_REQUESTED || req.GetPhysician() != tm.dr.GetName() {
		t.Fatalf("request %v", req)
	}
	open, err := h.as("dr").Clinical.ListClearances(h.ctx, &pb.ListClearancesRequest{Status: pb.ClearanceStatus_CLEARANCE_STATUS_REQUESTED})
	if err != nil || len(open.GetClearances()) != 1 {
		t.Fatalf("the physician's open requests: %v %v", open, err)
	}
	// Answering it turns the request into the decision.
	resp, err := h.as("dr").Clinical.IssueClearance(h.ctx, &pb.IssueClearanceRequest{RequestedClearance: req.GetName(),
		Clearance: &pb.Clearance{Decision: pb.ClearanceDecision_CLEARANCE_DECISION_CLEARED}})
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.GetClearance(); got.GetName() != req.GetName() || got.GetStatus() != pb.ClearanceStatus_CLEARANCE_STATUS_ACTIVE ||
		got.GetReferral() != r.GetName() || got.GetQuestion() == "" {
		t.Fatalf("answered %v", got)
	}
	_, err = h.as("dr").Clinical.IssueClearance(h.ctx, &pb.IssueClearanceRequest{RequestedClearance: req.GetName(),
		Clearance: &pb.Clearance{Decision: pb.ClearanceDecision_CLEARANCE_DECISION_CLEARED}})
	wantCode(t, err, codes.FailedPrecondition)

	t.Run("a self-referred patient", func(t *testing.T) {
		// The massage practice registers the patient and names their
		// physician, who then sees the patient and can refer and clear.
		self := h.patient("lmt2", "SPA-7")
		_, err := h.as("other-dr").Patients.GetPatient(h.ctx, &pb.GetPatientRequest{Name: self.GetName()})
		wantCode(t, err, codes.PermissionDenied)
		_, err = ask("lmt2", &pb.RequestClearanceRequest{Patient: self.GetName(), Question: "Cleared for massage?"})
		if got := fieldViolations(t, err); !slices.Equal(got, []string{"physician"}) {
			t.Fatalf("%v", got)
		}
		c, err := ask("lmt2", &pb.RequestClearanceRequest{Patient: self.GetName(), Physician: tm.otherDr.GetName(), Question: "Cleared for massage?"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.as("other-dr").Patients.GetPatient(h.ctx, &pb.GetPatientRequest{Name: self.GetName()}); err != nil {
			t.Fatalf("the named physician cannot see the patient: %v", err)
		}
		if _, err := h.as("other-dr").Clinical.IssueClearance(h.ctx, &pb.IssueClearanceRequest{RequestedClearance: c.GetName(),
			Clearance: &pb.Clearance{Decision: pb.ClearanceDecision_CLEARANCE_DECISION_CLEARED}}); err != nil {
			t.Fatal(err)
		}
		// Another practice's therapist cannot ask about this patient.
		_, err = ask("other-lmt", &pb.RequestClearanceRequest{Patient: self.GetName(), Physician: tm.otherDr.GetName(), Question: "?"})
		wantCode(t, err, codes.PermissionDenied)
	})
}

func TestConsentRules(t *testing.T) {
	t.Parallel()
	tm := newTeam(t)
	tm.referralIn(pb.ReferralState_REFERRAL_STATE_ACCEPTED)
	_, err := tm.as("lmt").Clinical.RecordConsent(tm.ctx, &pb.RecordConsentRequest{Consent: &pb.Consent{
		Patient: tm.patient.GetName(), FormVersion: "v1", SignedDate: "2026-03-01", Signer: pb.ConsentSigner_CONSENT_SIGNER_GUARDIAN,
	}})
	if got := fieldViolations(t, err); !slices.Equal(got, []string{"consent.guardian_name"}) {
		t.Fatalf("%v", got)
	}
	_, err = tm.as("dr").Clinical.RecordConsent(tm.ctx, &pb.RecordConsentRequest{Consent: &pb.Consent{
		Patient: tm.patient.GetName(), FormVersion: "v1", SignedDate: "2026-03-01", Signer: pb.ConsentSigner_CONSENT_SIGNER_PATIENT,
	}})
	wantCode(t, err, codes.PermissionDenied)
	tm.consent()
	list, err := tm.as("spa-coord").Clinical.ListConsents(tm.ctx, &pb.ListConsentsRequest{Patient: tm.patient.GetName()})
	if err != nil || len(list.GetConsents()) != 1 || list.GetConsents()[0].GetOrganization() != tm.spa {
		t.Fatalf("%v %v", list, err)
	}
}

// TestRevocationAndStartSerialize holds a revocation open in the database
// while a session start runs: the start must wait for it and then see the
// clearance revoked. It proves the gate reads the clearance under a lock,
// not from a snapshot taken before the revocation committed.
func TestRevocationAndStartSerialize(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		status string
		want   string
	}{
		{"revoke", "REVOKED", "CLEARANCE_REVOKED"},
		{"suspend", "SUSPENDED", "CLEARANCE_SUSPENDED"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tm := newTeam(t)
			r, c := tm.ready()
			id := uuid.MustParse(c.GetName()[len("clearances/"):])
			tx, err := tm.pool.Begin(tm.ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(context.Background())
			if _, err := tx.Exec(tm.ctx, `SELECT 1 FROM clearances WHERE id = $1 FOR UPDATE`, id); err != nil {
				t.Fatal(err)
			}
			var startErr error
			done := make(chan struct{})
			go func() {
				defer close(done)
				_, startErr = tm.start("lmt", r, swedishLumbar)
			}()
			tm.awaitLockWait()
			if _, err := tx.Exec(tm.ctx, `UPDATE clearances SET status = $2 WHERE id = $1`, id, tc.status); err != nil {
				t.Fatal(err)
			}
			if err := tx.Commit(tm.ctx); err != nil {
				t.Fatal(err)
			}
			<-done
			if got := preconditionTypes(t, startErr); !slices.Contains(got, tc.want) {
				t.Fatalf("start after the %s committed: %v", tc.name, got)
			}
		})
	}
}

// awaitLockWait returns once some backend of the test database waits for
// a lock: the session start is then blocked behind the test's transaction.
func (h *harness) awaitLockWait() {
	h.t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if h.count(`SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`) > 0 {
			return
		}
	}
	h.t.Fatal("no call ever waited for the lock")
}

// TestConcurrentRevokeAndStart races revocation, and suspension, against
// session start many times, through the RPCs: either the start committed
// first (a session under the then-active clearance) or it is refused for
// the clearance the other call left; it never fails any other way.
func TestConcurrentRevokeAndStart(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		end  func(tm *team, c *pb.Clearance) error
		want string
	}{
		{"revoke", func(tm *team, c *pb.Clearance) error {
			_, err := tm.as("dr").Clinical.RevokeClearance(tm.ctx, &pb.RevokeClearanceRequest{Name: c.GetName(), Reason: "New imaging."})
			return err
		}, "CLEARANCE_REVOKED"},
		{"suspend", func(tm *team, c *pb.Clearance) error {
			_, err := tm.as("dr").Clinical.SuspendClearance(tm.ctx, &pb.SuspendClearanceRequest{Name: c.GetName(),
				RedFlag: pb.RedFlag_RED_FLAG_INFECTION_SIGNS, Observation: "Fever reported."})
			return err
		}, "CLEARANCE_SUSPENDED"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tm := newTeam(t)
			started, refused := 0, 0
			for range 15 {
				r, c := tm.ready()
				var wg sync.WaitGroup
				var startErr, endErr error
				wg.Go(func() { _, startErr = tm.start("lmt", r, swedishLumbar) })
				wg.Go(func() { endErr = tc.end(tm, c) })
				wg.Wait()
				if endErr != nil {
					t.Fatalf("%s failed: %v", tc.name, endErr)
				}
				if startErr == nil {
					started++
				} else if got := preconditionTypes(t, startErr); slices.Contains(got, tc.want) {
					refused++
				} else {
					t.Fatalf("start refused for %v", got)
				}
				tm.patient = tm.harness.patient("dr", "")
			}
			t.Logf("start first %d times, %s first %d times", started, tc.name, refused)
		})
	}
}

// TestLastVisitGoesOnce races two starts for the last visit.
func TestLastVisitGoesOnce(t *testing.T) {
	t.Parallel()
	tm := newTeam(t)
	for range 10 {
		in := tm.newReferral()
		in.AuthorizedVisits = 1
		r := tm.create(in)
		if _, err := (&clientSet{tm.as("dr"), r.GetName()}).submit(); err != nil {
			t.Fatal(err)
		}
		if _, err := (&clientSet{tm.as("lmt"), r.GetName()}).accept(); err != nil {
			t.Fatal(err)
		}
		tm.consent()
		tm.clear(&pb.Clearance{})
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i := range errs {
			wg.Go(func() { _, errs[i] = tm.start("lmt", r, swedishLumbar) })
		}
		wg.Wait()
		ok := 0
		for _, err := range errs {
			if err == nil {
				ok++
			} else if got := preconditionTypes(t, err); !slices.Equal(got, []string{"VISITS_EXHAUSTED"}) {
				t.Fatalf("%v", got)
			}
		}
		if ok != 1 {
			t.Fatalf("%d starts succeeded for one visit", ok)
		}
		if n := tm.count(`SELECT count(*) FROM sessions WHERE referral_id = $1`, uuid.MustParse(r.GetName()[len("referrals/"):])); n != 1 {
			t.Fatalf("%d sessions for one visit", n)
		}
	}
}

func TestRetriedStartUsesOneVisit(t *testing.T) {
	t.Parallel()
	tm := newTeam(t)
	r, _ := tm.ready()
	req := &pb.StartSessionRequest{Referral: r.GetName(), Planned: swedishLumbar, RequestId: uuid.NewString()}
	var names []string
	for range 3 {
		resp, err := tm.as("lmt").Sessions.StartSession(tm.ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, resp.GetSession().GetName())
	}
	if names[0] != names[1] || names[1] != names[2] {
		t.Fatalf("retries started %v", names)
	}
	got, err := tm.as("dr").Referrals.GetReferral(tm.ctx, &pb.GetReferralRequest{Name: r.GetName()})
	if err != nil || got.GetReferral().GetUsedVisits() != 1 {
		t.Fatalf("used visits %d, %v", got.GetReferral().GetUsedVisits(), err)
	}
}
