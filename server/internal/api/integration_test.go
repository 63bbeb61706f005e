package api_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/careteam/careteam/client"
	"github.com/careteam/careteam/devtoken"
	pb "github.com/careteam/careteam/proto/careteam/v1"
)

// asScoped returns a client that calls as subject with tokens carrying
// scope (an OAuth scope claim; "-" for none at all).
func (h *harness) asScoped(subject, scope string) *client.Client {
	h.t.Helper()
	c, err := client.Dial(h.addr, client.WithPlaintext(), client.WithToken(func(context.Context) (string, error) {
		claims := devtoken.Claims{Issuer: testIssuer, Subject: subject, Audience: devtoken.Audience, IssuedAt: h.clock.Now(), TTL: time.Hour}
		if scope != "-" {
			claims.Scope = scope
		}
		return h.signer.Sign(claims)
	}))
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { c.Close() })
	return c
}

// actingFor is ctx with the x-act-for header naming practitioner.
func actingFor(ctx context.Context, practitioner string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "x-act-for", practitioner)
}

// orderFor is a bare ServiceRequest whose requester is practitioner
// (empty: none named).
func (tm *team) orderFor(practitioner, identifier string) []byte {
	requester := ""
	if practitioner != "" {
		requester = fmt.Sprintf(`"requester": {"reference": "Practitioner/%s"},`, strings.TrimPrefix(practitioner, "practitioners/"))
	}
	return fmt.Appendf(nil, `{"resourceType": "ServiceRequest", %s
		"identifier": [{"system": "urn:test:ehr-orders", "value": %q}], "status": "active", "intent": "order",
		"contained": [{"resourceType": "Patient", "id": "p", "identifier": [{"system": "urn:test:mrn", "value": "MRN-EHR-1"}],
			"name": [{"family": "Okoye", "given": ["Ife"]}], "birthDate": "1979-09-30"}],
		"subject": {"reference": "#p"},
		"reasonCode": [{"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "M54.50"}]}],
		"quantityQuantity": {"value": 4},
		"performer": [{"reference": "Practitioner/%s"}]}`, requester, identifier, strings.TrimPrefix(tm.lmt.GetName(), "practitioners/"))
}

// TestIntegrationActsForItsPhysicians: an EHR integration, granted by the
// directory's administrator to act for the physicians of the clinic,
// imports an order for the physician it names as requester and reads as
// the physician its x-act-for header names; never as itself, never for a
// physician outside its grant or for anyone else, never beyond its
// token's scopes; the audit trail names both the integration and the
// physician.
func TestIntegrationActsForItsPhysicians(t *testing.T) {
	t.Parallel()
	tm := newTeam(t)
	h, ctx := tm.harness, tm.ctx
	root := h.as(rootAdmin)
	elsewhere := h.org("Hillside Clinic", pb.OrganizationKind_ORGANIZATION_KIND_PHYSICIAN_PRACTICE)
	far := h.practitioner(elsewhere, pb.Role_ROLE_PHYSICIAN, "far-dr")

	// The grant: required, of physician practices only, the bootstrap
	// administrator's to give.
	integration := &pb.Practitioner{Organization: tm.clinic, Role: pb.Role_ROLE_INTEGRATION, Subject: "ehr", DisplayName: "Lakeside EHR"}
	_, err := root.Directory.CreatePractitioner(ctx, &pb.CreatePractitionerRequest{Practitioner: integration})
	wantCode(t, err, codes.InvalidArgument)
	integration.ActsFor = []string{tm.spa}
	_, err = root.Directory.CreatePractitioner(ctx, &pb.CreatePractitionerRequest{Practitioner: integration})
	wantCode(t, err, codes.InvalidArgument)
	integration.ActsFor = []string{tm.clinic}
	created, err := root.Directory.CreatePractitioner(ctx, &pb.CreatePractitionerRequest{Practitioner: integration})
	if err != nil {
		t.Fatal(err)
	}

	ehr := h.asScoped("ehr", "system/ServiceRequest.write system/*.read")
	imported, err := ehr.FHIR.ImportServiceRequest(ctx, &pb.ImportServiceRequestRequest{ResourceJson: tm.orderFor(tm.dr.GetName(), "EHR-1")})
	if err != nil {
		t.Fatalf("the integration's import for dr: %v", err)
	}
	if got := imported.GetReferral().GetReferringPhysician(); got != tm.dr.GetName() {
		t.Errorf("the order's physician is %s, want %s", got, tm.dr.GetName())
	}
	// One statement, so that a record the sealer moves from the inbox to
	// the chain meanwhile is counted once.
	if n := h.count(`SELECT count(*) FROM (SELECT method, subject, practitioner_id, role, outcome FROM audit_inbox
		UNION ALL SELECT method, subject, practitioner_id, role, outcome FROM audit_events) a
		WHERE method = '/careteam.v1.FhirService/ImportServiceRequest' AND subject = 'ehr'
		AND practitioner_id::text = $1 AND role = 'PHYSICIAN' AND outcome = 'OK'`, strings.TrimPrefix(tm.dr.GetName(), "practitioners/")); n != 1 {
		t.Errorf("%d audit records name the integration and the physician, want 1", n)
	}

	refusals := []struct {
		name string
		call func() error
		code codes.Code
	}{
		{"an order of a physician outside the grant", func() error {
			_, err := ehr.FHIR.ImportServiceRequest(ctx, &pb.ImportServiceRequestRequest{ResourceJson: tm.orderFor(far.GetName(), "EHR-2")})
			return err
		}, codes.PermissionDenied},
		{"an order naming no physician", func() error {
			_, err := ehr.FHIR.ImportServiceRequest(ctx, &pb.ImportServiceRequestRequest{ResourceJson: tm.orderFor("", "EHR-3")})
			return err
		}, codes.InvalidArgument},
		{"an order of a therapist", func() error {
			_, err := ehr.FHIR.ImportServiceRequest(ctx, &pb.ImportServiceRequestRequest{ResourceJson: tm.orderFor(tm.lmt.GetName(), "EHR-4")})
			return err
		}, codes.PermissionDenied},
		{"a write its scopes do not grant", func() error {
			_, err := h.asScoped("ehr", "system/*.read").FHIR.ImportServiceRequest(ctx,
				&pb.ImportServiceRequestRequest{ResourceJson: tm.orderFor(tm.dr.GetName(), "EHR-5")})
			return err
		}, codes.PermissionDenied},
		{"a token without scopes", func() error {
			_, err := h.asScoped("ehr", "-").Referrals.ListReferrals(actingFor(ctx, tm.dr.GetName()), &pb.ListReferralsRequest{})
			return err
		}, codes.PermissionDenied},
		{"a read as itself", func() error {
			_, err := ehr.Referrals.ListReferrals(ctx, &pb.ListReferralsRequest{})
			return err
		}, codes.PermissionDenied},
		{"a read for a physician outside the grant", func() error {
			_, err := ehr.Referrals.ListReferrals(actingFor(ctx, far.GetName()), &pb.ListReferralsRequest{})
			return err
		}, codes.PermissionDenied},
		{"a read for a therapist", func() error {
			_, err := ehr.Referrals.ListReferrals(actingFor(ctx, tm.lmt.GetName()), &pb.ListReferralsRequest{})
			return err
		}, codes.PermissionDenied},
		{"breaking the glass for its physician", func() error {
			emergency := metadata.AppendToOutgoingContext(actingFor(ctx, tm.dr.GetName()),
				"x-purpose-of-use", "EMERGENCY", "x-emergency-reason", "automated sync")
			_, err := ehr.Patients.GetPatient(emergency, &pb.GetPatientRequest{Name: tm.patient.GetName()})
			return err
		}, codes.PermissionDenied},
		{"a webhook its scopes would not let it read the events of", func() error {
			_, err := h.asScoped("ehr", "system/Subscription.write").Webhooks.CreateWebhook(actingFor(ctx, tm.dr.GetName()),
				&pb.CreateWebhookRequest{Url: "https://ehr.example/careteam"})
			return err
		}, codes.PermissionDenied},
		{"a write a SMART v2 scope of another letter does not grant", func() error {
			_, err := h.asScoped("ehr", "system/ServiceRequest.rs system/*.u").FHIR.ImportServiceRequest(ctx,
				&pb.ImportServiceRequestRequest{ResourceJson: tm.orderFor(tm.dr.GetName(), "EHR-6")})
			return err
		}, codes.PermissionDenied},
		{"a physician naming another to act for", func() error {
			_, err := tm.as("dr").Referrals.ListReferrals(actingFor(ctx, tm.otherDr.GetName()), &pb.ListReferralsRequest{})
			return err
		}, codes.InvalidArgument},
	}
	for _, tc := range refusals {
		err := tc.call()
		t.Logf("%s: %v", tc.name, err)
		if status.Code(err) != tc.code {
			t.Errorf("%s: %v, want %s", tc.name, err, tc.code)
		}
	}

	list, err := ehr.Referrals.ListReferrals(actingFor(ctx, tm.dr.GetName()), &pb.ListReferralsRequest{})
	if err != nil || len(list.GetReferrals()) != 1 || list.GetReferrals()[0].GetName() != imported.GetReferral().GetName() {
		t.Fatalf("acting for dr: %v (%v)", list.GetReferrals(), err)
	}
	// The grant withdrawn, the physician is out of reach at once.
	created.GetPractitioner().ActsFor = []string{elsewhere}
	if _, err := root.Directory.UpdatePractitioner(ctx, &pb.UpdatePractitionerRequest{Practitioner: created.GetPractitioner(),
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"acts_for"}}}); err != nil {
		t.Fatal(err)
	}
	_, err = ehr.Referrals.ListReferrals(actingFor(ctx, tm.dr.GetName()), &pb.ListReferralsRequest{})
	wantCode(t, err, codes.PermissionDenied)
}
