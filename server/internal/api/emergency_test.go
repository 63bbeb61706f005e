package api_test

import (
	"context"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/careteam/careteam/client"
	pb "github.com/careteam/careteam/proto/careteam/v1"
)

// TestEmergencyReadsAndWritesNothing is the finding: under purpose
// EMERGENCY an outside physician recorded a diagnosis and created a
// referral for another clinic's patient, and that write made them part of
// the care team for good. Breaking the glass now reads, writes nothing,
// and leaves no access behind.
func TestEmergencyReadsAndWritesNothing(t *testing.T) {
	t.Parallel()
	tm := newTeam(t)
	h := tm.harness
	hilltop := h.org("Hilltop", physicianPractice)
	erDoc := h.practitioner(hilltop, pb.Role_ROLE_PHYSICIAN, "er-doc")
	er := h.as("er-doc")
	emergency := client.Emergency(h.ctx, "Unconscious in the ER; checking for anticoagulants.")
	patient := tm.patient.GetName()

	if _, err := er.Patients.GetPatient(emergency, &pb.GetPatientRequest{Name: patient}); err != nil {
		t.Fatalf("emergency read: %v", err)
	}
	if _, err := er.Clinical.ListDiagnoses(emergency, &pb.ListDiagnosesRequest{Patient: patient}); err != nil {
		t.Fatalf("emergency read of diagnoses: %v", err)
	}

	writes := map[string]func(ctx context.Context) error{
		"RecordDiagnosis": func(ctx context.Context) error {
			_, err := er.Clinical.RecordDiagnosis(ctx, &pb.RecordDiagnosisRequest{Diagnosis: &pb.Diagnosis{
				Patient: patient, Icd10Code: "M54.50", Display: "Low back pain"}})
			return err
		},
		"CreateReferral": func(ctx context.Context) error {
			r := tm.newReferral()
			r.ReferringPhysician = erDoc.GetName()
			_, err := er.Referrals.CreateReferral(ctx, &pb.CreateReferralRequest{Referral: r})
			return err
		},
		"IssueClearance": func(ctx context.Context) error {
			_, err := er.Clinical.IssueClearance(ctx, &pb.IssueClearanceRequest{Clearance: &pb.Clearance{
				Patient: patient, Decision: pb.ClearanceDecision_CLEARANCE_DECISION_NOT_CLEARED}})
			return err
		},
		"CreatePatient": func(ctx context.Context) error {
			_, err := er.Patients.CreatePatient(ctx, &pb.CreatePatientRequest{Patient: &pb.Patient{
				GivenName: "Jo", FamilyName: "Doe", BirthDate: "1970-01-01"}})
			return err
		},
	}
	for name, write := range writes {
		if err := write(emergency); status.Code(err) != codes.PermissionDenied {
			t.Errorf("%s under emergency access: %v, want PermissionDenied", name, err)
		}
	}
	for table, n := range map[string]int{
		"diagnoses":  h.count(`SELECT count(*) FROM diagnoses WHERE physician_id = $1`, uuidOf(t, erDoc.GetName())),
		"referrals":  h.count(`SELECT count(*) FROM referrals WHERE referring_physician_id = $1`, uuidOf(t, erDoc.GetName())),
		"clearances": h.count(`SELECT count(*) FROM clearances WHERE physician_id = $1`, uuidOf(t, erDoc.GetName())),
		"patients":   h.count(`SELECT count(*) FROM patients WHERE organization_id = $1`, uuidOf(t, hilltop)),
	} {
		if n != 0 {
			t.Errorf("%d %s written under emergency access", n, table)
		}
	}
	// Nor does it open a stream, which would outlast the call.
	stream, err := er.Events.WatchEvents(emergency, &pb.WatchEventsRequest{Patient: patient})
	if err == nil {
		_, err = stream.Recv()
	}
	wantCode(t, err, codes.PermissionDenied)
	// Nothing lasts: without the emergency, the patient is out of reach.
	_, err = er.Patients.GetPatient(h.ctx, &pb.GetPatientRequest{Name: patient})
	wantCode(t, err, codes.PermissionDenied)
	// Not even the caller's own care team is written to under it.
	wantCode(t, func() error {
		_, err := tm.as("dr").Clinical.RecordDiagnosis(client.Emergency(h.ctx, "habit"), &pb.RecordDiagnosisRequest{Diagnosis: &pb.Diagnosis{
			Patient: patient, Icd10Code: "M54.50", Display: "Low back pain"}})
		return err
	}(), codes.PermissionDenied)
	// The same calls under TREATMENT are judged by the care team as usual.
	wantCode(t, writes["RecordDiagnosis"](h.ctx), codes.PermissionDenied)
	if _, err := tm.as("dr").Clinical.RecordDiagnosis(h.ctx, &pb.RecordDiagnosisRequest{Diagnosis: &pb.Diagnosis{
		Patient: patient, Icd10Code: "M54.50", Display: "Low back pain"}}); err != nil {
		t.Fatal(err)
	}
}

// TestClientSendsPurpose: a connection-wide purpose reaches the server on
// unary calls and streams, and a call's own purpose wins.
func TestClientSendsPurpose(t *testing.T) {
	t.Parallel()
	tm := newTeam(t)
	h := tm.harness
	hilltop := h.org("Hilltop", physicianPractice)
	h.practitioner(hilltop, pb.Role_ROLE_PHYSICIAN, "er-doc")
	c, err := client.Dial(h.addr, client.WithPlaintext(), client.WithPurpose("EMERGENCY", "Collapsed at the pharmacy."),
		client.WithToken(func(context.Context) (string, error) { return h.token("er-doc"), nil }))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Patients.GetPatient(h.ctx, &pb.GetPatientRequest{Name: tm.patient.GetName()}); err != nil {
		t.Fatalf("connection-wide emergency: %v", err)
	}
	treatment := metadata.AppendToOutgoingContext(h.ctx, client.PurposeHeader, "TREATMENT")
	_, err = c.Patients.GetPatient(treatment, &pb.GetPatientRequest{Name: tm.patient.GetName()})
	wantCode(t, err, codes.PermissionDenied)
	if n := h.sealed().count(`SELECT count(*) FROM audit_events WHERE subject = 'er-doc' AND purpose = 'EMERGENCY' AND outcome = 'OK'
		AND emergency_reason = 'Collapsed at the pharmacy.'`); n != 1 {
		t.Fatalf("%d emergency records", n)
	}
}
