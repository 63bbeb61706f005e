package api_test

import (
	"slices"
	"sync"
	"testing"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	pb "github.com/careteam/careteam/proto/careteam/v1"
)

func TestPatientRegistration(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	clinic := h.org("Lakeside", pb.OrganizationKind_ORGANIZATION_KIND_PHYSICIAN_PRACTICE)
	other := h.org("Hilltop", pb.OrganizationKind_ORGANIZATION_KIND_PHYSICIAN_PRACTICE)
	h.practitioner(clinic, pb.Role_ROLE_PHYSICIAN, "dr-a")
	h.practitioner(clinic, pb.Role_ROLE_COORDINATOR, "coord-a")
	h.practitioner(other, pb.Role_ROLE_PHYSICIAN, "dr-b")
	h.practitioner(clinic, pb.Role_ROLE_ADMIN, "admin-a")
	h.practitioner(clinic, pb.Role_ROLE_AUDITOR, "auditor")

	pt := h.patient("dr-a", "MRN-1")
	mrn := &pb.Identifier{System: "urn:test:mrn", Value: "MRN-1"}

	t.Run("the registering organization finds the patient by identifier", func(t *testing.T) {
		for _, who := range []string{"dr-a", "coord-a"} {
			resp, err := h.as(who).Patients.LookupPatient(h.ctx, &pb.LookupPatientRequest{Identifier: mrn})
			if err != nil {
				t.Fatalf("%s: %v", who, err)
			}
			if resp.GetPatient().GetName() != pt.GetName() {
				t.Fatalf("%s found %s", who, resp.GetPatient().GetName())
			}
		}
	})
	t.Run("an identifier registered twice in one organization is ALREADY_EXISTS", func(t *testing.T) {
		_, err := h.as("coord-a").Patients.CreatePatient(h.ctx, &pb.CreatePatientRequest{Patient: &pb.Patient{
			FamilyName: "Other", BirthDate: "1980-01-01", Identifiers: []*pb.Identifier{mrn},
		}})
		wantCode(t, err, codes.AlreadyExists)
	})
	t.Run("another organization learns nothing", func(t *testing.T) {
		other := h.as("dr-b")
		_, err := other.Patients.GetPatient(h.ctx, &pb.GetPatientRequest{Name: pt.GetName()})
		wantCode(t, err, codes.PermissionDenied)
		// Hidden and missing patients get the same answer.
		_, err = other.Patients.GetPatient(h.ctx, &pb.GetPatientRequest{Name: "patients/" + uuid.NewString()})
		wantCode(t, err, codes.PermissionDenied)
		_, err = other.Patients.LookupPatient(h.ctx, &pb.LookupPatientRequest{Identifier: mrn})
		wantCode(t, err, codes.NotFound)
		_, err = other.Patients.LookupPatient(h.ctx, &pb.LookupPatientRequest{Identifier: &pb.Identifier{System: "urn:test:mrn", Value: "never"}})
		wantCode(t, err, codes.NotFound)
		list, err := other.Patients.ListPatients(h.ctx, &pb.ListPatientsRequest{})
		if err != nil || len(list.GetPatients()) != 0 {
			t.Fatalf("list = %v, %v", list.GetPatients(), err)
		}
		_, err = other.Patients.UpdatePatient(h.ctx, &pb.UpdatePatientRequest{
			Patient: &pb.Patient{Name: pt.GetName(), FamilyName: "X"}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"family_name"}},
		})
		wantCode(t, err, codes.PermissionDenied)
		// The same identifier may be registered there: it is unique per
		// organization, so it does not reveal the first registration.
		h.patient("dr-b", "MRN-1")
	})
	t.Run("administrators and auditors read no patient data", func(t *testing.T) {
		for _, who := range []string{"admin-a", "auditor", rootAdmin} {
			_, err := h.as(who).Patients.GetPatient(h.ctx, &pb.GetPatientRequest{Name: pt.GetName()})
			wantCode(t, err, codes.PermissionDenied)
			_, err = h.as(who).Patients.ListPatients(h.ctx, &pb.ListPatientsRequest{})
			wantCode(t, err, codes.PermissionDenied)
			_, err = h.as(who).Patients.CreatePatient(h.ctx, &pb.CreatePatientRequest{Patient: &pb.Patient{FamilyName: "X", BirthDate: "1990-01-01"}})
			wantCode(t, err, codes.PermissionDenied)
		}
	})
	t.Run("update with etag", func(t *testing.T) {
		upd := proto.Clone(pt).(*pb.Patient)
		upd.FamilyName = "Renamed"
		resp, err := h.as("coord-a").Patients.UpdatePatient(h.ctx, &pb.UpdatePatientRequest{
			Patient: upd, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"family_name"}},
		})
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetPatient().GetFamilyName() != "Renamed" || resp.GetPatient().GetGivenName() != pt.GetGivenName() {
			t.Fatalf("after update: %v", resp.GetPatient())
		}
		_, err = h.as("dr-a").Patients.UpdatePatient(h.ctx, &pb.UpdatePatientRequest{
			Patient: upd, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"family_name"}},
		})
		wantCode(t, err, codes.Aborted)
	})
}

func TestCreateIsIdempotent(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	clinic := h.org("Lakeside", pb.OrganizationKind_ORGANIZATION_KIND_PHYSICIAN_PRACTICE)
	h.practitioner(clinic, pb.Role_ROLE_PHYSICIAN, "dr-a")
	c := h.as("dr-a")
	req := &pb.CreatePatientRequest{
		Patient:   &pb.Patient{FamilyName: "Once", BirthDate: "1970-01-01"},
		RequestId: uuid.NewString(),
	}

	// Concurrent retries of one request: the first commit wins, the others
	// wait for it and return its result.
	var wg sync.WaitGroup
	names := make([]string, 8)
	errs := make([]error, 8)
	for i := range names {
		wg.Go(func() {
			resp, err := c.Patients.CreatePatient(h.ctx, req)
			names[i], errs[i] = resp.GetPatient().GetName(), err
		})
	}
	wg.Wait()
	for i := range names {
		if errs[i] != nil {
			t.Fatalf("call %d: %v", i, errs[i])
		}
		if names[i] != names[0] {
			t.Fatalf("call %d created %s, call 0 %s", i, names[i], names[0])
		}
	}
	if n := h.count(`SELECT count(*) FROM patients WHERE family_name = 'Once'`); n != 1 {
		t.Fatalf("%d patients written, want 1", n)
	}

	t.Run("the same request id with a different request is refused", func(t *testing.T) {
		other := proto.Clone(req).(*pb.CreatePatientRequest)
		other.Patient.FamilyName = "Twice"
		_, err := c.Patients.CreatePatient(h.ctx, other)
		if got := fieldViolations(t, err); !slices.Equal(got, []string{"request_id"}) {
			t.Fatalf("violations %v", got)
		}
	})
	t.Run("request ids are per caller", func(t *testing.T) {
		h.practitioner(clinic, pb.Role_ROLE_PHYSICIAN, "dr-b")
		resp, err := h.as("dr-b").Patients.CreatePatient(h.ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetPatient().GetName() == names[0] {
			t.Fatal("another caller's request id replayed someone else's result")
		}
	})
}

func TestListPatientsPages(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	clinic := h.org("Lakeside", pb.OrganizationKind_ORGANIZATION_KIND_PHYSICIAN_PRACTICE)
	h.practitioner(clinic, pb.Role_ROLE_PHYSICIAN, "dr-a")
	var want []string
	for range 7 {
		want = append(want, h.patient("dr-a", "").GetName())
	}
	c := h.as("dr-a")
	var got []string
	req := &pb.ListPatientsRequest{PageSize: 3, FamilyNamePrefix: "fam"}
	for {
		resp, err := c.Patients.ListPatients(h.ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range resp.GetPatients() {
			got = append(got, p.GetName())
		}
		if resp.GetNextPageToken() == "" {
			break
		}
		req.PageToken = resp.GetNextPageToken()
	}
	if !slices.Equal(got, want) {
		t.Fatalf("paged %v, want %v", got, want)
	}

	t.Run("a token is bound to its filters", func(t *testing.T) {
		first, err := c.Patients.ListPatients(h.ctx, &pb.ListPatientsRequest{PageSize: 3})
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Patients.ListPatients(h.ctx, &pb.ListPatientsRequest{PageSize: 3, PageToken: first.GetNextPageToken(), FamilyNamePrefix: "x"})
		if got := fieldViolations(t, err); !slices.Equal(got, []string{"page_token"}) {
			t.Fatalf("violations %v", got)
		}
		_, err = c.Patients.ListPatients(h.ctx, &pb.ListPatientsRequest{PageToken: "garbage!"})
		fieldViolations(t, err)
	})
}
