package api_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1"

	"github.com/careteam/careteam/client"
	"github.com/careteam/careteam/devtoken"
	pb "github.com/careteam/careteam/proto/careteam/v1"
	"github.com/careteam/careteam/server/internal/api"
)

func TestAuthentication(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	clinic := h.org("Lakeside", pb.OrganizationKind_ORGANIZATION_KIND_PHYSICIAN_PRACTICE)
	h.practitioner(clinic, pb.Role_ROLE_PHYSICIAN, "dr-a")

	call := func(c *client.Client) error {
		_, err := c.Patients.ListPatients(h.ctx, &pb.ListPatientsRequest{})
		return err
	}
	withToken := func(tok string) *client.Client {
		c, err := client.Dial(h.addr, client.WithPlaintext(), client.WithToken(client.StaticToken(tok)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	mint := func(c devtoken.Claims) string {
		tok, err := h.signer.Sign(c)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	now := h.clock.Now()
	for _, tc := range []struct {
		name   string
		client *client.Client
		want   codes.Code
	}{
		{"valid token", h.as("dr-a"), codes.OK},
		{"no token", h.anonymous(), codes.Unauthenticated},
		{"garbage token", withToken("not-a-jwt"), codes.Unauthenticated},
		{"expired token", withToken(mint(devtoken.Claims{Issuer: testIssuer, Subject: "dr-a", Audience: devtoken.Audience, IssuedAt: now.Add(-2 * time.Hour), TTL: time.Hour})), codes.Unauthenticated},
		{"other issuer", withToken(mint(devtoken.Claims{Issuer: "https://evil.test", Subject: "dr-a", Audience: devtoken.Audience, IssuedAt: now, TTL: time.Hour})), codes.Unauthenticated},
		{"other audience", withToken(mint(devtoken.Claims{Issuer: testIssuer, Subject: "dr-a", Audience: "other", IssuedAt: now, TTL: time.Hour})), codes.Unauthenticated},
		{"subject not in the directory", h.as("stranger"), codes.PermissionDenied},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.want == codes.OK {
				if err := call(tc.client); err != nil {
					t.Fatal(err)
				}
				return
			}
			wantCode(t, call(tc.client), tc.want)
		})
	}
	t.Run("every careteam method refuses anonymous calls", func(t *testing.T) {
		anon := h.anonymous()
		for _, m := range careteamMethods(t) {
			wantCode(t, invoke(h.ctx, anon, m), codes.Unauthenticated)
		}
	})
}

func TestValidationListsEveryBadField(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	_, err := h.as(rootAdmin).Directory.CreatePractitioner(h.ctx, &pb.CreatePractitionerRequest{
		Practitioner: &pb.Practitioner{
			Organization: "nonsense",
			Specialties:  []pb.Specialty{pb.Specialty(99)},
			Licence:      &pb.Licence{ExpireDate: "soon"},
		},
		RequestId: "not-a-uuid",
	})
	got := fieldViolations(t, err)
	for _, want := range []string{"practitioner.organization", "practitioner.specialties[0]", "practitioner.licence.number", "practitioner.licence.expire_date", "request_id"} {
		if !slices.Contains(got, want) {
			t.Errorf("no violation for %s in %v", want, got)
		}
	}
}

func TestRequestIDIsEchoed(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	var header metadata.MD
	ctx := metadata.AppendToOutgoingContext(h.ctx, "x-request-id", "trace-123")
	_, err := h.as(rootAdmin).Directory.ListOrganizations(ctx, &pb.ListOrganizationsRequest{}, grpcHeader(&header))
	if err != nil {
		t.Fatal(err)
	}
	if got := header.Get("x-request-id"); !slices.Equal(got, []string{"trace-123"}) {
		t.Fatalf("x-request-id = %v", got)
	}
	_, err = h.as(rootAdmin).Directory.ListOrganizations(h.ctx, &pb.ListOrganizationsRequest{}, grpcHeader(&header))
	if err != nil {
		t.Fatal(err)
	}
	if got := header.Get("x-request-id"); len(got) != 1 || uuid.Validate(got[0]) != nil {
		t.Fatalf("generated x-request-id = %v", got)
	}
}

func TestReflectionListsEveryService(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	stream, err := rpb.NewServerReflectionClient(h.anonymous().Conn()).ServerReflectionInfo(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		got = append(got, s.GetName())
	}
	for _, want := range []string{
		"careteam.v1.DirectoryService", "careteam.v1.PatientService", "careteam.v1.ReferralService",
		"careteam.v1.ClinicalService", "careteam.v1.SessionService", "careteam.v1.EventService",
		"careteam.v1.AuditService", "careteam.v1.FhirService", "grpc.health.v1.Health",
	} {
		if !slices.Contains(got, want) {
			t.Errorf("reflection lacks %s: %v", want, got)
		}
	}
}

// TestHealthNeedsNoToken: health answers without a token, and turns
// SERVING once careteamd has reached its database.
func TestHealthNeedsNoToken(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	var status healthpb.HealthCheckResponse_ServingStatus
	if !waitUntil(10*time.Second, func() bool {
		resp, err := healthpb.NewHealthClient(h.anonymous().Conn()).Check(h.ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			t.Fatal(err)
		}
		status = resp.GetStatus()
		return status == healthpb.HealthCheckResponse_SERVING
	}) {
		t.Fatalf("status %v", status)
	}
}

func TestRateLimitPerPrincipal(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *api.Config) { c.Limits = api.Limits{PerPrincipalRate: 0.001, Burst: 3} })
	clinic := h.org("Lakeside", pb.OrganizationKind_ORGANIZATION_KIND_PHYSICIAN_PRACTICE)
	h.practitioner(clinic, pb.Role_ROLE_PHYSICIAN, "dr-a")
	h.practitioner(clinic, pb.Role_ROLE_PHYSICIAN, "dr-b")
	list := func(who string) error {
		_, err := h.as(who).Patients.ListPatients(h.ctx, &pb.ListPatientsRequest{})
		return err
	}
	for range 3 {
		if err := list("dr-a"); err != nil {
			t.Fatal(err)
		}
	}
	wantCode(t, list("dr-a"), codes.ResourceExhausted)
	if err := list("dr-b"); err != nil {
		t.Fatalf("another caller was limited too: %v", err)
	}
	if rows := h.auditRows("/careteam.v1.PatientService/ListPatients"); rows[3].outcome != "RESOURCE_EXHAUSTED" {
		t.Fatalf("the refused call was recorded as %+v", rows[3])
	}
}

// TestRefusalsNameTheirReason: each way a caller is refused before any
// rule runs carries the ErrorInfo reason a program keys off.
func TestRefusalsNameTheirReason(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *api.Config) { c.Limits = api.Limits{PerPrincipalRate: 0.001, Burst: 2} })
	clinic := h.org("Lakeside", pb.OrganizationKind_ORGANIZATION_KIND_PHYSICIAN_PRACTICE)
	h.practitioner(clinic, pb.Role_ROLE_PHYSICIAN, "dr")
	call := func(ctx context.Context, c *client.Client) error {
		_, err := c.Patients.ListPatients(ctx, &pb.ListPatientsRequest{})
		return err
	}
	withAuth := func(v string) context.Context { return metadata.AppendToOutgoingContext(h.ctx, "authorization", v) }
	for _, tc := range []struct {
		name   string
		err    error
		reason pb.ErrorReason
	}{
		{"no token", call(h.ctx, h.anonymous()), pb.ErrorReason_ERROR_REASON_TOKEN_MISSING},
		{"not a bearer token", call(withAuth("Basic ZHI6eA=="), h.anonymous()), pb.ErrorReason_ERROR_REASON_TOKEN_MALFORMED},
		{"a token that does not verify", call(withAuth("Bearer not.a.token"), h.anonymous()), pb.ErrorReason_ERROR_REASON_TOKEN_INVALID},
		{"the first call of the burst", call(h.ctx, h.as("dr")), pb.ErrorReason_ERROR_REASON_UNSPECIFIED},
		{"the second", call(h.ctx, h.as("dr")), pb.ErrorReason_ERROR_REASON_UNSPECIFIED},
		{"past the rate limit", call(h.ctx, h.as("dr")), pb.ErrorReason_ERROR_REASON_RATE_LIMITED},
	} {
		if got := client.Reason(tc.err); got != tc.reason {
			t.Errorf("%s: reason %v (%v), want %v", tc.name, got, tc.err, tc.reason)
		}
	}
}
