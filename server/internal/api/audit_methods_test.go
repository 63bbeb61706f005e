package api_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	pb "github.com/careteam/careteam/proto/careteam/v1"
)

// TestEveryMethodAuditsSuccess makes one successful call of every careteam
// RPC and finds its audit record. The cases are keyed by method and the
// list of methods comes from the service descriptors, so an RPC added
// without a case fails this test.
func TestEveryMethodAuditsSuccess(t *testing.T) {
	t.Parallel()
	tm := newTeam(t)
	h := tm.harness
	h.practitioner(tm.clinic, pb.Role_ROLE_AUDITOR, "auditor")
	ctx := h.ctx
	root, dr, lmt, aud := h.as(rootAdmin), h.as("dr"), h.as("lmt"), h.as("auditor")

	// Resources the cases act on, made before any case runs.
	r, _ := tm.ready()
	ss, err := tm.start("lmt", r, swedishLumbar)
	if err != nil {
		t.Fatal(err)
	}
	d, err := dr.Clinical.RecordDiagnosis(ctx, &pb.RecordDiagnosisRequest{Diagnosis: &pb.Diagnosis{
		Patient: tm.patient.GetName(), Icd10Code: "M54.50", Display: "Low back pain"}})
	if err != nil {
		t.Fatal(err)
	}
	draft := tm.create(tm.newReferral())
	submitted := tm.referralIn(pb.ReferralState_REFERRAL_STATE_SUBMITTED)
	asked := tm.referralIn(pb.ReferralState_REFERRAL_STATE_AWAITING_INFO)
	declinable := tm.referralIn(pb.ReferralState_REFERRAL_STATE_SUBMITTED)
	cancellable := tm.referralIn(pb.ReferralState_REFERRAL_STATE_SUBMITTED)
	askable := tm.referralIn(pb.ReferralState_REFERRAL_STATE_SUBMITTED)
	completable := tm.referralIn(pb.ReferralState_REFERRAL_STATE_ACCEPTED)
	cancelSession, err := tm.start("lmt", r, swedishLumbar)
	if err != nil {
		t.Fatal(err)
	}
	signed, err := tm.start("lmt", r, swedishLumbar)
	if err != nil {
		t.Fatal(err)
	}
	noted, err := lmt.Sessions.UpdateSessionNote(ctx, &pb.UpdateSessionNoteRequest{Name: signed.GetName(), Etag: signed.GetEtag(),
		Note: &pb.SessionNote{Treatments: swedishLumbar}, UpdateMask: fieldMask("treatments")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lmt.Sessions.SignSessionNote(ctx, &pb.SignSessionNoteRequest{Name: signed.GetName(), Etag: noted.GetSession().GetEtag()}); err != nil {
		t.Fatal(err)
	}
	// A clearance of another patient, and one of a referral of its own,
	// so that holding or ending them leaves the other cases' referrals
	// alone: a red flag reported on a suspension holds every referral of
	// its patient.
	toSuspend := tm.clear(&pb.Clearance{Patient: h.patient("dr", "MRN-SUSPEND").GetName()})
	toRevoke := tm.clear(&pb.Clearance{Referral: tm.referralIn(pb.ReferralState_REFERRAL_STATE_ACCEPTED).GetName()})

	cases := map[string]func() error{
		"DirectoryService/CreateOrganization": func() error {
			_, err := root.Directory.CreateOrganization(ctx, &pb.CreateOrganizationRequest{Organization: &pb.Organization{DisplayName: "x", Kind: pb.OrganizationKind_ORGANIZATION_KIND_MASSAGE_PRACTICE}})
			return err
		},
		"DirectoryService/GetOrganization": func() error {
			_, err := dr.Directory.GetOrganization(ctx, &pb.GetOrganizationRequest{Name: tm.spa})
			return err
		},
		"DirectoryService/ListOrganizations": func() error {
			_, err := dr.Directory.ListOrganizations(ctx, &pb.ListOrganizationsRequest{})
			return err
		},
		"DirectoryService/UpdateOrganization": func() error {
			_, err := root.Directory.UpdateOrganization(ctx, &pb.UpdateOrganizationRequest{
				Organization: &pb.Organization{Name: tm.spa, CredentialsClinicians: true}, UpdateMask: fieldMask("credentials_clinicians")})
			return err
		},
		"DirectoryService/CreatePractitioner": func() error {
			_, err := root.Directory.CreatePractitioner(ctx, &pb.CreatePractitionerRequest{Practitioner: &pb.Practitioner{
				DisplayName: "x", Role: pb.Role_ROLE_COORDINATOR, Organization: tm.spa, Subject: "new-coord"}})
			return err
		},
		"DirectoryService/GetPractitioner": func() error {
			_, err := dr.Directory.GetPractitioner(ctx, &pb.GetPractitionerRequest{Name: tm.lmt.GetName()})
			return err
		},
		"DirectoryService/ListPractitioners": func() error {
			_, err := dr.Directory.ListPractitioners(ctx, &pb.ListPractitionersRequest{})
			return err
		},
		"DirectoryService/UpdatePractitioner": func() error {
			_, err := root.Directory.UpdatePractitioner(ctx, &pb.UpdatePractitionerRequest{
				Practitioner: &pb.Practitioner{Name: tm.otherDr.GetName(), DisplayName: "Dr Other"}, UpdateMask: fieldMask("display_name")})
			return err
		},
		"DirectoryService/GetCaller": func() error {
			_, err := dr.Directory.GetCaller(ctx, &pb.GetCallerRequest{})
			return err
		},
		"PatientService/CreatePatient": func() error {
			_, err := dr.Patients.CreatePatient(ctx, &pb.CreatePatientRequest{Patient: &pb.Patient{FamilyName: "New", BirthDate: "1980-01-01"}})
			return err
		},
		"PatientService/GetPatient": func() error {
			_, err := dr.Patients.GetPatient(ctx, &pb.GetPatientRequest{Name: tm.patient.GetName()})
			return err
		},
		"PatientService/ListPatients": func() error {
			_, err := dr.Patients.ListPatients(ctx, &pb.ListPatientsRequest{})
			return err
		},
		"PatientService/UpdatePatient": func() error {
			_, err := dr.Patients.UpdatePatient(ctx, &pb.UpdatePatientRequest{
				Patient: &pb.Patient{Name: tm.patient.GetName(), GivenName: "Jo"}, UpdateMask: fieldMask("given_name")})
			return err
		},
		"PatientService/LookupPatient": func() error {
			_, err := dr.Patients.LookupPatient(ctx, &pb.LookupPatientRequest{Identifier: &pb.Identifier{System: "urn:test:mrn", Value: "MRN-100"}})
			return err
		},
		"ReferralService/CreateReferral": func() error {
			_, err := dr.Referrals.CreateReferral(ctx, &pb.CreateReferralRequest{Referral: tm.newReferral()})
			return err
		},
		"ReferralService/GetReferral": func() error {
			_, err := dr.Referrals.GetReferral(ctx, &pb.GetReferralRequest{Name: r.GetName()})
			return err
		},
		"ReferralService/ListReferrals": func() error {
			_, err := dr.Referrals.ListReferrals(ctx, &pb.ListReferralsRequest{})
			return err
		},
		"ReferralService/SubmitReferral": func() error { _, err := (&clientSet{dr, draft.GetName()}).submit(); return err },
		"ReferralService/AssignReferral": func() error {
			_, err := dr.Referrals.AssignReferral(ctx, &pb.AssignReferralRequest{Name: submitted.GetName(), Therapist: tm.lmt2.GetName()})
			return err
		},
		"ReferralService/AcceptReferral":     func() error { _, err := (&clientSet{h.as("lmt2"), submitted.GetName()}).accept(); return err },
		"ReferralService/DeclineReferral":    func() error { _, err := (&clientSet{lmt, declinable.GetName()}).decline(); return err },
		"ReferralService/RequestInformation": func() error { _, err := (&clientSet{lmt, askable.GetName()}).ask(); return err },
		"ReferralService/ProvideInformation": func() error { _, err := (&clientSet{dr, asked.GetName()}).answer(); return err },
		"ReferralService/CancelReferral":     func() error { _, err := (&clientSet{dr, cancellable.GetName()}).cancel(); return err },
		"ReferralService/CompleteReferral":   func() error { _, err := (&clientSet{lmt, completable.GetName()}).complete(); return err },
		"ReferralService/GetReferralProgress": func() error {
			_, err := dr.Referrals.GetReferralProgress(ctx, &pb.GetReferralProgressRequest{Name: r.GetName()})
			return err
		},
		"ClinicalService/RecordDiagnosis": func() error {
			_, err := dr.Clinical.RecordDiagnosis(ctx, &pb.RecordDiagnosisRequest{Diagnosis: &pb.Diagnosis{
				Patient: tm.patient.GetName(), Icd10Code: "M79.7", Display: "Fibromyalgia"}})
			return err
		},
		"ClinicalService/GetDiagnosis": func() error {
			_, err := lmt.Clinical.GetDiagnosis(ctx, &pb.GetDiagnosisRequest{Name: d.GetDiagnosis().GetName()})
			return err
		},
		"ClinicalService/ListDiagnoses": func() error {
			_, err := lmt.Clinical.ListDiagnoses(ctx, &pb.ListDiagnosesRequest{Patient: tm.patient.GetName()})
			return err
		},
		"ClinicalService/UpdateDiagnosis": func() error {
			_, err := dr.Clinical.UpdateDiagnosis(ctx, &pb.UpdateDiagnosisRequest{
				Diagnosis: &pb.Diagnosis{Name: d.GetDiagnosis().GetName(), Notes: "Improving."}, UpdateMask: fieldMask("notes")})
			return err
		},
		"ClinicalService/RecordConsent": func() error { tm.consent(); return nil },
		"ClinicalService/ListConsents": func() error {
			_, err := lmt.Clinical.ListConsents(ctx, &pb.ListConsentsRequest{Patient: tm.patient.GetName()})
			return err
		},
		"ClinicalService/RequestClearance": func() error {
			_, err := lmt.Clinical.RequestClearance(ctx, &pb.RequestClearanceRequest{Patient: tm.patient.GetName(), Referral: r.GetName(), Question: "Cleared?"})
			return err
		},
		"ClinicalService/IssueClearance": func() error { tm.clear(&pb.Clearance{Referral: r.GetName()}); return nil },
		"ClinicalService/SuspendClearance": func() error {
			_, err := dr.Clinical.SuspendClearance(ctx, &pb.SuspendClearanceRequest{Name: toSuspend.GetName(),
				RedFlag: pb.RedFlag_RED_FLAG_INFECTION_SIGNS, Observation: "Fever."})
			return err
		},
		"ClinicalService/RevokeClearance": func() error {
			_, err := dr.Clinical.RevokeClearance(ctx, &pb.RevokeClearanceRequest{Name: toRevoke.GetName(), Reason: "Infection."})
			return err
		},
		"ClinicalService/GetClearance": func() error {
			_, err := lmt.Clinical.GetClearance(ctx, &pb.GetClearanceRequest{Name: toRevoke.GetName()})
			return err
		},
		"ClinicalService/ListClearances": func() error {
			_, err := lmt.Clinical.ListClearances(ctx, &pb.ListClearancesRequest{Patient: tm.patient.GetName()})
			return err
		},
		"ClinicalService/CheckClearance": func() error {
			_, err := lmt.Clinical.CheckClearance(ctx, &pb.CheckClearanceRequest{Referral: r.GetName(), Planned: swedishLumbar})
			return err
		},
		"SessionService/StartSession": func() error { _, err := tm.start("lmt", r, swedishLumbar); return err },
		"SessionService/GetSession": func() error {
			_, err := dr.Sessions.GetSession(ctx, &pb.GetSessionRequest{Name: ss.GetName()})
			return err
		},
		"SessionService/ListSessions": func() error {
			_, err := dr.Sessions.ListSessions(ctx, &pb.ListSessionsRequest{Referral: r.GetName()})
			return err
		},
		"SessionService/CancelSession": func() error {
			_, err := lmt.Sessions.CancelSession(ctx, &pb.CancelSessionRequest{Name: cancelSession.GetName(), Reason: pb.CancelReason_CANCEL_REASON_PATIENT_CANCELLED})
			return err
		},
		"SessionService/UpdateSessionNote": func() error {
			_, err := lmt.Sessions.UpdateSessionNote(ctx, &pb.UpdateSessionNoteRequest{Name: ss.GetName(), Etag: ss.GetEtag(),
				Note: &pb.SessionNote{Subjective: "Better."}, UpdateMask: fieldMask("subjective")})
			return err
		},
		"SessionService/SignSessionNote": func() error {
			s, err := lmt.Sessions.UpdateSessionNote(ctx, &pb.UpdateSessionNoteRequest{Name: ss.GetName(), Etag: "2",
				Note: &pb.SessionNote{Treatments: swedishLumbar}, UpdateMask: fieldMask("treatments")})
			if err != nil {
				return err
			}
			_, err = lmt.Sessions.SignSessionNote(ctx, &pb.SignSessionNoteRequest{Name: ss.GetName(), Etag: s.GetSession().GetEtag()})
			return err
		},
		"SessionService/AmendSessionNote": func() error {
			_, err := lmt.Sessions.AmendSessionNote(ctx, &pb.AmendSessionNoteRequest{Name: signed.GetName(), Reason: "Typo.", Text: "Medium, not firm."})
			return err
		},
		"EventService/ListEvents": func() error {
			_, err := dr.Events.ListEvents(ctx, &pb.ListEventsRequest{})
			return err
		},
		"EventService/WatchEvents": func() error {
			// A stream ends when its caller leaves; its record is written
			// then, with what it delivered.
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			stream, err := dr.Events.WatchEvents(wctx, &pb.WatchEventsRequest{})
			if err != nil {
				return err
			}
			if _, err := stream.Recv(); err != nil {
				return err
			}
			cancel()
			return nil
		},
		"AuditService/ListAuditEvents": func() error {
			_, err := aud.Audit.ListAuditEvents(ctx, &pb.ListAuditEventsRequest{})
			return err
		},
		"AuditService/VerifyAuditLog": func() error {
			_, err := aud.Audit.VerifyAuditLog(ctx, &pb.VerifyAuditLogRequest{})
			return err
		},
	}
	addFHIRCases(t, tm, cases)
	addWebhookCases(t, tm, cases)

	for _, m := range careteamMethods(t) {
		key := string(m.Parent().Name()) + "/" + string(m.Name())
		call, ok := cases[key]
		if !ok {
			t.Errorf("%s has no success case: add one", key)
			continue
		}
		method := "/careteam.v1." + key
		before := len(h.auditRows(method))
		if err := call(); err != nil {
			t.Errorf("%s: %v", key, err)
			continue
		}
		var rows []auditRow
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			// A stream's last record is written as the server sees it end.
			if rows = h.auditRows(method); len(rows) > before && (key != "EventService/WatchEvents" || rows[len(rows)-1].outcome == "CANCELLED") {
				break
			}
		}
		if len(rows) <= before {
			t.Errorf("%s: no audit record", key)
			continue
		}
		last := rows[len(rows)-1]
		if key == "EventService/WatchEvents" {
			// What it delivered was recorded as it went (OK), and its end
			// when the caller left.
			delivered := rows[before]
			if last.outcome != "CANCELLED" || delivered.outcome != "OK" || len(delivered.patients) == 0 {
				t.Errorf("%s: records %+v", key, rows[before:])
			}
			continue
		}
		if last.outcome != "OK" {
			t.Errorf("%s: record %+v", key, last)
		}
		// Every call that reads or writes patient data names the patients
		// in its record; the directory and the audit trail hold none.
		holdsNone := strings.HasPrefix(key, "DirectoryService/") || strings.HasPrefix(key, "AuditService/") ||
			strings.HasPrefix(key, "WebhookService/")
		if !holdsNone && len(last.patients) == 0 {
			t.Errorf("%s: its record names no patient: %+v", key, last)
		}
	}
}

// addWebhookCases adds the webhook RPCs' cases, on webhooks of their own.
func addWebhookCases(t *testing.T, tm *team, cases map[string]func() error) {
	lmt := tm.as("lmt")
	made := func() *pb.Webhook {
		resp, err := lmt.Webhooks.CreateWebhook(tm.ctx, &pb.CreateWebhookRequest{Url: "https://practice.example/careteam"})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetWebhook()
	}
	kept, doomed := made(), made()
	cases["WebhookService/CreateWebhook"] = func() error {
		_, err := lmt.Webhooks.CreateWebhook(tm.ctx, &pb.CreateWebhookRequest{Url: "https://practice.example/other"})
		return err
	}
	cases["WebhookService/GetWebhook"] = func() error {
		_, err := lmt.Webhooks.GetWebhook(tm.ctx, &pb.GetWebhookRequest{Name: kept.GetName()})
		return err
	}
	cases["WebhookService/ListWebhooks"] = func() error {
		_, err := lmt.Webhooks.ListWebhooks(tm.ctx, &pb.ListWebhooksRequest{})
		return err
	}
	cases["WebhookService/DeleteWebhook"] = func() error {
		_, err := lmt.Webhooks.DeleteWebhook(tm.ctx, &pb.DeleteWebhookRequest{Name: doomed.GetName()})
		return err
	}
}

// addFHIRCases adds the FHIR RPCs' cases: an export of a referral, a read
// of its Task, a search of the patient's orders, and an import of a bare
// ServiceRequest whose patient is in the contained resources.
func addFHIRCases(t *testing.T, tm *team, cases map[string]func() error) {
	dr := tm.as("dr")
	r := tm.create(tm.newReferral())
	npi := "9" + uuid.NewString()[:9]
	cases["FhirService/ExportReferralBundle"] = func() error {
		_, err := dr.FHIR.ExportReferralBundle(tm.ctx, &pb.ExportReferralBundleRequest{Referral: r.GetName()})
		return err
	}
	cases["FhirService/GetFhirResource"] = func() error {
		_, err := dr.FHIR.GetFhirResource(tm.ctx, &pb.GetFhirResourceRequest{ResourceType: "Task", Id: strings.TrimPrefix(r.GetName(), "referrals/")})
		return err
	}
	cases["FhirService/SearchFhirResources"] = func() error {
		_, err := dr.FHIR.SearchFhirResources(tm.ctx, &pb.SearchFhirResourcesRequest{ResourceType: "ServiceRequest",
			Parameters: []*pb.FhirSearchParameter{{Name: "patient", Value: strings.Replace(r.GetPatient(), "patients/", "Patient/", 1)}}})
		return err
	}
	cases["FhirService/ImportServiceRequest"] = func() error {
		_, err := dr.FHIR.ImportServiceRequest(tm.ctx, &pb.ImportServiceRequestRequest{ResourceJson: []byte(`{
			"resourceType": "ServiceRequest",
			"identifier": [{"system": "urn:test:orders", "value": "` + npi + `"}],
			"status": "active", "intent": "order",
			"contained": [{"resourceType": "Patient", "id": "p1",
				"identifier": [{"system": "urn:test:mrn", "value": "MRN-FHIR-1"}],
				"name": [{"family": "Fhir", "given": ["Pat"]}], "birthDate": "1970-05-06"}],
			"subject": {"reference": "#p1"},
			"reasonCode": [{"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "M54.50"}]}],
			"quantityQuantity": {"value": 4},
			"performer": [{"reference": "` + strings.Replace(tm.lmt.GetName(), "practitioners/", "Practitioner/", 1) + `"}],
			"code": {"text": "Massage therapy"}
		}`)})
		return err
	}
}
