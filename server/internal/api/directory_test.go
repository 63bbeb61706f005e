package api_test

import (
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	pb "github.com/careteam/careteam/proto/careteam/v1"
)

func TestDirectoryAdministration(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	clinic := h.org("Lakeside", pb.OrganizationKind_ORGANIZATION_KIND_PHYSICIAN_PRACTICE)
	spa := h.org("Harbor Massage", pb.OrganizationKind_ORGANIZATION_KIND_MASSAGE_PRACTICE)
	h.practitioner(clinic, pb.Role_ROLE_ADMIN, "clinic-admin")
	h.practitioner(clinic, pb.Role_ROLE_PHYSICIAN, "dr-a")

	newTherapist := func(org, subject string) *pb.CreatePractitionerRequest {
		return &pb.CreatePractitionerRequest{Practitioner: &pb.Practitioner{
			DisplayName: subject, Role: pb.Role_ROLE_MASSAGE_THERAPIST, Organization: org, Subject: subject,
			Licence: &pb.Licence{Number: "1", Jurisdiction: "US-WA", ExpireDate: "2030-01-01"},
		}}
	}
	newCoordinator := func(org, subject string) *pb.CreatePractitionerRequest {
		return &pb.CreatePractitionerRequest{Practitioner: &pb.Practitioner{
			DisplayName: subject, Role: pb.Role_ROLE_COORDINATOR, Organization: org, Subject: subject,
		}}
	}
	admin, root := h.as("clinic-admin"), h.as(rootAdmin)
	t.Run("an organization's admin manages its coordinators", func(t *testing.T) {
		if _, err := admin.Directory.CreatePractitioner(h.ctx, newCoordinator(clinic, "coord-in-clinic")); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("but not another organization's", func(t *testing.T) {
		_, err := admin.Directory.CreatePractitioner(h.ctx, newCoordinator(spa, "coord-elsewhere"))
		wantCode(t, err, codes.PermissionDenied)
	})
	t.Run("a physician manages no one", func(t *testing.T) {
		_, err := h.as("dr-a").Directory.CreatePractitioner(h.ctx, newCoordinator(clinic, "coord-by-dr"))
		wantCode(t, err, codes.PermissionDenied)
	})
	t.Run("only the bootstrap admin creates organizations", func(t *testing.T) {
		_, err := admin.Directory.CreateOrganization(h.ctx, &pb.CreateOrganizationRequest{
			Organization: &pb.Organization{DisplayName: "x", Kind: pb.OrganizationKind_ORGANIZATION_KIND_MASSAGE_PRACTICE},
		})
		wantCode(t, err, codes.PermissionDenied)
	})
	t.Run("only the bootstrap admin creates auditors", func(t *testing.T) {
		req := &pb.CreatePractitionerRequest{Practitioner: &pb.Practitioner{
			DisplayName: "aud", Role: pb.Role_ROLE_AUDITOR, Organization: clinic, Subject: "aud",
		}}
		_, err := admin.Directory.CreatePractitioner(h.ctx, req)
		wantCode(t, err, codes.PermissionDenied)
		if _, err := root.Directory.CreatePractitioner(h.ctx, req); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("a subject names one practitioner", func(t *testing.T) {
		_, err := admin.Directory.CreatePractitioner(h.ctx, newCoordinator(clinic, "dr-a"))
		wantCode(t, err, codes.AlreadyExists)
	})
	t.Run("an identifier names one practitioner", func(t *testing.T) {
		npi := []*pb.Identifier{{System: "http://hl7.org/fhir/sid/us-npi", Value: "1234567893"}}
		first := newTherapist(spa, "npi-1")
		first.Practitioner.Identifiers = npi
		if _, err := root.Directory.CreatePractitioner(h.ctx, first); err != nil {
			t.Fatal(err)
		}
		second := newTherapist(spa, "npi-2")
		second.Practitioner.Identifiers = npi
		_, err := root.Directory.CreatePractitioner(h.ctx, second)
		wantCode(t, err, codes.AlreadyExists)
	})
	t.Run("a therapist needs a licence, and only therapists hold specialties", func(t *testing.T) {
		_, err := admin.Directory.CreatePractitioner(h.ctx, &pb.CreatePractitionerRequest{Practitioner: &pb.Practitioner{
			DisplayName: "x", Role: pb.Role_ROLE_MASSAGE_THERAPIST, Organization: spa, Subject: "nolicence",
		}})
		if got := fieldViolations(t, err); !slices.Contains(got, "practitioner.licence") {
			t.Fatalf("violations %v", got)
		}
		_, err = admin.Directory.CreatePractitioner(h.ctx, &pb.CreatePractitionerRequest{Practitioner: &pb.Practitioner{
			DisplayName: "x", Role: pb.Role_ROLE_PHYSICIAN, Organization: clinic, Subject: "dr-special",
			Specialties: []pb.Specialty{pb.Specialty_SPECIALTY_SPORTS},
		}})
		if got := fieldViolations(t, err); !slices.Contains(got, "practitioner.specialties") {
			t.Fatalf("violations %v", got)
		}
	})
}

func TestUpdatePractitioner(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	spa := h.org("Harbor Massage", pb.OrganizationKind_ORGANIZATION_KIND_MASSAGE_PRACTICE)
	lmt := h.practitioner(spa, pb.Role_ROLE_MASSAGE_THERAPIST, "lmt", pb.Specialty_SPECIALTY_SPORTS)
	root := h.as(rootAdmin)

	lmt.Specialties = []pb.Specialty{pb.Specialty_SPECIALTY_ARTHRITIS, pb.Specialty_SPECIALTY_SPORTS}
	resp, err := root.Directory.UpdatePractitioner(h.ctx, &pb.UpdatePractitionerRequest{
		Practitioner: lmt, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"specialties"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.GetPractitioner(); len(got.GetSpecialties()) != 2 || got.GetEtag() == lmt.GetEtag() {
		t.Fatalf("after update: %v", got)
	}

	t.Run("a stale etag is ABORTED", func(t *testing.T) {
		_, err := root.Directory.UpdatePractitioner(h.ctx, &pb.UpdatePractitionerRequest{
			Practitioner: lmt, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"display_name"}},
		})
		wantCode(t, err, codes.Aborted)
	})
	t.Run("role cannot change", func(t *testing.T) {
		_, err := root.Directory.UpdatePractitioner(h.ctx, &pb.UpdatePractitionerRequest{
			Practitioner: resp.GetPractitioner(), UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"role"}},
		})
		if got := fieldViolations(t, err); !slices.Equal(got, []string{"update_mask"}) {
			t.Fatalf("violations %v", got)
		}
	})
	t.Run("a deactivated practitioner is refused", func(t *testing.T) {
		if _, err := h.as("lmt").Patients.ListPatients(h.ctx, &pb.ListPatientsRequest{}); err != nil {
			t.Fatal(err)
		}
		off := resp.GetPractitioner()
		off.Active = false
		if _, err := root.Directory.UpdatePractitioner(h.ctx, &pb.UpdatePractitionerRequest{
			Practitioner: off, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"active"}},
		}); err != nil {
			t.Fatal(err)
		}
		_, err := h.as("lmt").Patients.ListPatients(h.ctx, &pb.ListPatientsRequest{})
		wantCode(t, err, codes.PermissionDenied)
	})
}

func TestListPractitionersFilters(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	spa := h.org("Harbor Massage", pb.OrganizationKind_ORGANIZATION_KIND_MASSAGE_PRACTICE)
	other := h.org("Bay Massage", pb.OrganizationKind_ORGANIZATION_KIND_MASSAGE_PRACTICE)
	h.practitioner(spa, pb.Role_ROLE_MASSAGE_THERAPIST, "arthritis", pb.Specialty_SPECIALTY_ARTHRITIS)
	h.practitioner(spa, pb.Role_ROLE_MASSAGE_THERAPIST, "sports", pb.Specialty_SPECIALTY_SPORTS)
	h.practitioner(other, pb.Role_ROLE_MASSAGE_THERAPIST, "other-arthritis", pb.Specialty_SPECIALTY_ARTHRITIS)
	h.lapse(h.practitioner(spa, pb.Role_ROLE_MASSAGE_THERAPIST, "expired", pb.Specialty_SPECIALTY_ARTHRITIS))
	h.practitioner(spa, pb.Role_ROLE_COORDINATOR, "coord")

	c := h.as("coord")
	for _, tc := range []struct {
		name string
		req  *pb.ListPractitionersRequest
		want []string
	}{
		{"role", &pb.ListPractitionersRequest{Role: pb.Role_ROLE_COORDINATOR}, []string{"coord"}},
		{"organization and specialty", &pb.ListPractitionersRequest{Organization: spa, Specialty: pb.Specialty_SPECIALTY_ARTHRITIS}, []string{"arthritis", "expired"}},
		{"active licence", &pb.ListPractitionersRequest{Specialty: pb.Specialty_SPECIALTY_ARTHRITIS, ActiveLicence: true}, []string{"arthritis", "other-arthritis"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := c.Directory.ListPractitioners(h.ctx, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, p := range resp.GetPractitioners() {
				got = append(got, p.GetSubject())
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// TestPractitionerNameInParts: a practitioner's name in parts is kept and
// changed by its mask; a given name without a family name is refused.
func TestPractitionerNameInParts(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	root := h.as(rootAdmin)
	clinic := h.org("Lakeside Family Medicine", pb.OrganizationKind_ORGANIZATION_KIND_PHYSICIAN_PRACTICE)
	pr := &pb.Practitioner{Organization: clinic, Role: pb.Role_ROLE_PHYSICIAN, Subject: "named", DisplayName: "Dr Ada Okafor", GivenName: "Ada"}
	_, err := root.Directory.CreatePractitioner(h.ctx, &pb.CreatePractitionerRequest{Practitioner: pr})
	if v := fieldViolations(t, err); len(v) != 1 || !strings.HasPrefix(v[0], "practitioner.family_name") {
		t.Errorf("a given name alone: %v", v)
	}
	pr.FamilyName = "Okafor"
	made, err := root.Directory.CreatePractitioner(h.ctx, &pb.CreatePractitionerRequest{Practitioner: pr})
	if err != nil {
		t.Fatal(err)
	}
	if got := made.GetPractitioner(); got.GetGivenName() != "Ada" || got.GetFamilyName() != "Okafor" {
		t.Errorf("created as %q %q", got.GetGivenName(), got.GetFamilyName())
	}
	changed := made.GetPractitioner()
	changed.GivenName, changed.FamilyName = "Ada N.", "Okafor-Ito"
	upd, err := root.Directory.UpdatePractitioner(h.ctx, &pb.UpdatePractitionerRequest{Practitioner: changed,
		UpdateMask: fieldMask("given_name", "family_name")})
	if err != nil || upd.GetPractitioner().GetFamilyName() != "Okafor-Ito" || upd.GetPractitioner().GetGivenName() != "Ada N." {
		t.Errorf("updated to %v (%v)", upd.GetPractitioner(), err)
	}
}
