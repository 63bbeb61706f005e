package api_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/careteam/careteam/client"
	pb "github.com/careteam/careteam/proto/careteam/v1"
)

const (
	physicianPractice = pb.OrganizationKind_ORGANIZATION_KIND_PHYSICIAN_PRACTICE
	massagePractice   = pb.OrganizationKind_ORGANIZATION_KIND_MASSAGE_PRACTICE
)

var allRoles = []pb.Role{pb.Role_ROLE_PHYSICIAN, pb.Role_ROLE_MASSAGE_THERAPIST, pb.Role_ROLE_COORDINATOR, pb.Role_ROLE_ADMIN, pb.Role_ROLE_AUDITOR}

// trust lets an organization's administrators credential its clinicians.
func (h *harness) trust(org string, trusted bool) {
	h.t.Helper()
	if _, err := h.as(rootAdmin).Directory.UpdateOrganization(h.ctx, &pb.UpdateOrganizationRequest{
		Organization: &pb.Organization{Name: org, CredentialsClinicians: trusted}, UpdateMask: fieldMask("credentials_clinicians"),
	}); err != nil {
		h.t.Fatalf("UpdateOrganization(%s): %v", org, err)
	}
}

// newMember is a practitioner of role in org, as a caller would send it: a
// therapist with a licence, the others with none.
func (h *harness) newMember(org string, role pb.Role, subject string) *pb.Practitioner {
	pr := &pb.Practitioner{DisplayName: subject, Role: role, Organization: org, Subject: subject}
	if role == pb.Role_ROLE_MASSAGE_THERAPIST {
		pr.Licence = &pb.Licence{Number: "LMT 1001", Jurisdiction: "US-WA", ExpireDate: h.clock.Now().AddDate(2, 0, 0).Format("2006-01-02")}
	}
	return pr
}

// The directory's rule, written out: who may put a practitioner of role
// into an organization (or change one there), and what they get.
type dirOrg struct {
	name    string
	kind    pb.OrganizationKind
	trusted bool
}

type dirCaller struct {
	subject string
	role    pb.Role
	org     string // "" for the bootstrap administrator
	c       *client.Client
}

func (c dirCaller) String() string {
	if c.org == "" {
		return "the bootstrap administrator"
	}
	return fmt.Sprintf("a %v of %s", c.role, c.org)
}

func membershipRule(c dirCaller, o dirOrg, role pb.Role) codes.Code {
	root := c.org == ""
	clinical := role == pb.Role_ROLE_PHYSICIAN || role == pb.Role_ROLE_MASSAGE_THERAPIST
	switch {
	case !root && (c.role != pb.Role_ROLE_ADMIN || c.org != o.name):
		return codes.PermissionDenied // only the organization's administrators manage it
	case !root && role == pb.Role_ROLE_AUDITOR:
		return codes.PermissionDenied // auditors read the whole trail: the directory's call
	case !root && clinical && !o.trusted:
		return codes.PermissionDenied // clinicians are vouched for by the directory
	case role == pb.Role_ROLE_PHYSICIAN && o.kind != physicianPractice,
		role == pb.Role_ROLE_MASSAGE_THERAPIST && o.kind != massagePractice:
		return codes.InvalidArgument // the role does not fit the organization
	}
	return codes.OK
}

// directoryWorld is four organizations, one of each kind trusted to
// credential its clinicians and one not, each with an administrator, a
// coordinator and a clinician of the kind it has; an auditor; and the
// bootstrap administrator.
func directoryWorld(h *harness) ([]dirOrg, []dirCaller) {
	var orgs []dirOrg
	callers := []dirCaller{{subject: rootAdmin, role: pb.Role_ROLE_ADMIN, c: h.as(rootAdmin)}}
	for _, kind := range []pb.OrganizationKind{physicianPractice, massagePractice} {
		for _, trusted := range []bool{false, true} {
			o := dirOrg{h.org(fmt.Sprintf("%v trusted %v", kind, trusted), kind), kind, trusted}
			if trusted {
				h.trust(o.name, true)
			}
			orgs = append(orgs, o)
			clinician := pb.Role_ROLE_PHYSICIAN
			if kind == massagePractice {
				clinician = pb.Role_ROLE_MASSAGE_THERAPIST
			}
			for _, role := range []pb.Role{pb.Role_ROLE_ADMIN, pb.Role_ROLE_COORDINATOR, clinician} {
				subject := fmt.Sprintf("%v-%d", role, len(orgs))
				h.practitioner(o.name, role, subject)
				callers = append(callers, dirCaller{subject, role, o.name, h.as(subject)})
			}
		}
	}
	h.practitioner(orgs[0].name, pb.Role_ROLE_AUDITOR, "auditor")
	callers = append(callers, dirCaller{"auditor", pb.Role_ROLE_AUDITOR, orgs[0].name, h.as("auditor")})
	return orgs, callers
}

// TestWhoMayHoldWhichRole tries every role in every kind of organization,
// trusted and not, as every kind of caller, through each directory path
// that creates or changes a practitioner; what is refused writes nothing.
func TestWhoMayHoldWhichRole(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	orgs, callers := directoryWorld(h)

	t.Run("CreatePractitioner", func(t *testing.T) {
		for _, c := range callers {
			for _, o := range orgs {
				for _, role := range allRoles {
					subject := "new-" + uuid.NewString()
					_, err := c.c.Directory.CreatePractitioner(h.ctx, &pb.CreatePractitionerRequest{Practitioner: h.newMember(o.name, role, subject)})
					if got, want := codeOf(err), membershipRule(c, o, role); got != want {
						t.Errorf("%v creates a %v in %s: %v (%v), want %v", c, role, o.name, got, err, want)
					}
					if n, want := h.count(`SELECT count(*) FROM practitioners WHERE subject = $1`, subject), boolInt(err == nil); n != want {
						t.Errorf("%v creates a %v in %s: %d rows written, want %d", c, role, o.name, n, want)
					}
				}
			}
		}
	})

	// The practitioners each change is tried on: one of every role that
	// fits each organization, made by the bootstrap administrator.
	type target struct {
		org dirOrg
		pr  *pb.Practitioner
	}
	var targets []target
	for _, o := range orgs {
		for _, role := range allRoles {
			if membershipRule(callers[0], o, role) == codes.OK {
				targets = append(targets, target{o, h.practitioner(o.name, role, "target-"+uuid.NewString())})
			}
		}
	}
	current := func(t *testing.T, pr *pb.Practitioner) *pb.Practitioner {
		t.Helper()
		got, err := callers[0].c.Directory.GetPractitioner(h.ctx, &pb.GetPractitionerRequest{Name: pr.GetName()})
		if err != nil {
			t.Fatal(err)
		}
		return got.GetPractitioner()
	}

	t.Run("UpdatePractitioner changes", func(t *testing.T) {
		for _, c := range callers {
			for _, tg := range targets {
				before := current(t, tg.pr)
				in := proto.CloneOf(before)
				in.DisplayName = "renamed by " + c.subject
				_, err := c.c.Directory.UpdatePractitioner(h.ctx, &pb.UpdatePractitionerRequest{Practitioner: in, UpdateMask: fieldMask("display_name")})
				if got, want := codeOf(err), membershipRule(c, tg.org, tg.pr.GetRole()); got != want {
					t.Errorf("%v renames a %v of %s: %v (%v), want %v", c, tg.pr.GetRole(), tg.org.name, got, err, want)
				}
				if after := current(t, tg.pr); err != nil && after.GetEtag() != before.GetEtag() {
					t.Errorf("%v was refused renaming a %v of %s, yet it changed", c, tg.pr.GetRole(), tg.org.name)
				}
			}
		}
	})

	t.Run("UpdatePractitioner deactivates, and reactivating is a change", func(t *testing.T) {
		for _, c := range callers {
			for _, tg := range targets {
				off := current(t, tg.pr)
				off.Active = false
				_, err := c.c.Directory.UpdatePractitioner(h.ctx, &pb.UpdatePractitionerRequest{Practitioner: off, UpdateMask: fieldMask("active")})
				want := codes.PermissionDenied
				if c.org == "" || (c.role == pb.Role_ROLE_ADMIN && c.org == tg.org.name) {
					want = codes.OK // any administrator of theirs takes them out of service
				}
				if got := codeOf(err); got != want {
					t.Errorf("%v deactivates a %v of %s: %v (%v), want %v", c, tg.pr.GetRole(), tg.org.name, got, err, want)
				}
				if err != nil {
					continue
				}
				on := current(t, tg.pr)
				on.Active = true
				_, err = c.c.Directory.UpdatePractitioner(h.ctx, &pb.UpdatePractitionerRequest{Practitioner: on, UpdateMask: fieldMask("active")})
				if got, want := codeOf(err), membershipRule(c, tg.org, tg.pr.GetRole()); got != want {
					t.Errorf("%v reactivates a %v of %s: %v (%v), want %v", c, tg.pr.GetRole(), tg.org.name, got, err, want)
				}
				if err != nil {
					on.Etag = ""
					if _, err := callers[0].c.Directory.UpdatePractitioner(h.ctx, &pb.UpdatePractitionerRequest{Practitioner: on, UpdateMask: fieldMask("active")}); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
	})

	t.Run("deactivating alongside another change is that change", func(t *testing.T) {
		for _, tg := range targets {
			if tg.pr.GetRole() != pb.Role_ROLE_MASSAGE_THERAPIST || tg.org.trusted {
				continue
			}
			admin := callers[slices.IndexFunc(callers, func(c dirCaller) bool { return c.role == pb.Role_ROLE_ADMIN && c.org == tg.org.name })]
			in := current(t, tg.pr)
			in.Active, in.Licence.ExpireDate = false, h.clock.Now().AddDate(5, 0, 0).Format("2006-01-02")
			_, err := admin.c.Directory.UpdatePractitioner(h.ctx, &pb.UpdatePractitionerRequest{Practitioner: in, UpdateMask: fieldMask("active", "licence")})
			wantCode(t, err, codes.PermissionDenied)
		}
	})

	t.Run("UpdateOrganization and CreateOrganization", func(t *testing.T) {
		for _, c := range callers {
			want := codes.PermissionDenied
			if c.org == "" {
				want = codes.OK
			}
			for _, o := range orgs {
				_, err := c.c.Directory.UpdateOrganization(h.ctx, &pb.UpdateOrganizationRequest{
					Organization: &pb.Organization{Name: o.name, CredentialsClinicians: o.trusted}, UpdateMask: fieldMask("credentials_clinicians"),
				})
				if got := codeOf(err); got != want {
					t.Errorf("%v updates %s: %v (%v), want %v", c, o.name, got, err, want)
				}
			}
			_, err := c.c.Directory.CreateOrganization(h.ctx, &pb.CreateOrganizationRequest{Organization: &pb.Organization{DisplayName: "x", Kind: massagePractice}})
			if got := codeOf(err); got != want {
				t.Errorf("%v creates an organization: %v (%v), want %v", c, got, err, want)
			}
		}
	})
}

func codeOf(err error) codes.Code { return status.Code(err) }

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestMassagePracticeCannotMakeItsOwnPhysician is the finding: a massage
// practice's administrator made a "physician" who then cleared the
// practice's own patients and broke the glass on anyone's.
func TestMassagePracticeCannotMakeItsOwnPhysician(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	spa := h.org("Harbor Massage", massagePractice)
	h.practitioner(spa, pb.Role_ROLE_ADMIN, "spa-admin")
	admin := h.as("spa-admin")
	fake := &pb.CreatePractitionerRequest{Practitioner: h.newMember(spa, pb.Role_ROLE_PHYSICIAN, "fake-dr")}

	_, err := admin.Directory.CreatePractitioner(h.ctx, fake)
	wantCode(t, err, codes.PermissionDenied)
	// Trusted to credential its own clinicians, it still has no physicians:
	// neither its administrator nor the directory's can make one there.
	h.trust(spa, true)
	for _, c := range []*client.Client{admin, h.as(rootAdmin)} {
		_, err := c.Directory.CreatePractitioner(h.ctx, fake)
		if got := fieldViolations(t, err); !slices.Equal(got, []string{"practitioner.role"}) {
			t.Fatalf("violations %v", got)
		}
	}
	if n := h.count(`SELECT count(*) FROM practitioners WHERE subject = 'fake-dr'`); n != 0 {
		t.Fatalf("%d fake physicians written", n)
	}
}

// TestMisfitEntryActsForNobody: an entry whose role does not fit its
// organization, as could be stored before the directory checked, is not
// let in, whatever it sends, and its administrator can still retire it.
func TestMisfitEntryActsForNobody(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	spa := h.org("Harbor Massage", massagePractice)
	h.practitioner(spa, pb.Role_ROLE_ADMIN, "spa-admin")
	id := uuid.New()
	now := h.clock.Now()
	if _, err := h.pool.Exec(h.ctx, `
		INSERT INTO practitioners (id, organization_id, display_name, role, subject, active, version, create_time, update_time)
		VALUES ($1, $2, 'Misfit', 'PHYSICIAN', 'misfit-dr', true, 1, $3, $3)`, id, uuidOf(t, spa), now); err != nil {
		t.Fatal(err)
	}
	misfit := h.as("misfit-dr")
	_, err := misfit.Directory.GetCaller(h.ctx, &pb.GetCallerRequest{})
	wantCode(t, err, codes.PermissionDenied)
	_, err = misfit.Patients.ListPatients(metadata.AppendToOutgoingContext(h.ctx, "x-purpose-of-use", "EMERGENCY", "x-emergency-reason", "Unconscious in the ER."), &pb.ListPatientsRequest{})
	wantCode(t, err, codes.PermissionDenied)

	name := "practitioners/" + id.String()
	pr, err := h.as(rootAdmin).Directory.GetPractitioner(h.ctx, &pb.GetPractitionerRequest{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	renamed := proto.CloneOf(pr.GetPractitioner())
	renamed.DisplayName = "Still misfit"
	_, err = h.as(rootAdmin).Directory.UpdatePractitioner(h.ctx, &pb.UpdatePractitionerRequest{Practitioner: renamed, UpdateMask: fieldMask("display_name")})
	if got := fieldViolations(t, err); !slices.Equal(got, []string{"practitioner.role"}) {
		t.Fatalf("violations %v", got)
	}
	off := proto.CloneOf(pr.GetPractitioner())
	off.Active = false
	if _, err := h.as("spa-admin").Directory.UpdatePractitioner(h.ctx, &pb.UpdatePractitionerRequest{Practitioner: off, UpdateMask: fieldMask("active")}); err != nil {
		t.Fatal(err)
	}
}

// TestIdentifiersAndLicencesAreChecked sends the directory hostile and
// malformed identifiers and licences on every path that records them; each
// refusal lists every bad field and writes nothing.
func TestIdentifiersAndLicencesAreChecked(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	root := h.as(rootAdmin)
	spa := h.org("Harbor Massage", massagePractice)
	today := h.clock.Now()
	day := func(years, days int) string { return today.AddDate(years, 0, days).Format("2006-01-02") }
	npi := func(v string) []*pb.Identifier {
		return []*pb.Identifier{{System: "http://hl7.org/fhir/sid/us-npi", Value: v}}
	}

	t.Run("NPIs", func(t *testing.T) {
		for _, bad := range []string{"1234567890", "123456789", "12345678931", "12345678x3", "１２３４５６７８９３", "1234567893\x00", " 1234567893"} {
			_, err := root.Directory.CreateOrganization(h.ctx, &pb.CreateOrganizationRequest{Organization: &pb.Organization{
				DisplayName: "x", Kind: massagePractice, Identifiers: npi(bad)}})
			if got := fieldViolations(t, err); !slices.Equal(got, []string{"organization.identifiers[0].value"}) {
				t.Errorf("organization NPI %q: violations %v", bad, got)
			}
			in := h.newMember(spa, pb.Role_ROLE_MASSAGE_THERAPIST, "npi-"+uuid.NewString())
			in.Identifiers = npi(bad)
			_, err = root.Directory.CreatePractitioner(h.ctx, &pb.CreatePractitionerRequest{Practitioner: in})
			if got := fieldViolations(t, err); !slices.Equal(got, []string{"practitioner.identifiers[0].value"}) {
				t.Errorf("practitioner NPI %q: violations %v", bad, got)
			}
		}
		// Other systems' identifiers are not NPIs and keep their own form.
		org, err := root.Directory.CreateOrganization(h.ctx, &pb.CreateOrganizationRequest{Organization: &pb.Organization{
			DisplayName: "x", Kind: massagePractice, Identifiers: []*pb.Identifier{{System: "urn:test:org", Value: "1234567890"}}}})
		if err != nil {
			t.Fatal(err)
		}
		// UpdateOrganization checks them as CreateOrganization does.
		o := org.GetOrganization()
		o.Identifiers = append(o.Identifiers, npi("1234567890")...)
		_, err = root.Directory.UpdateOrganization(h.ctx, &pb.UpdateOrganizationRequest{Organization: o, UpdateMask: fieldMask("identifiers")})
		if got := fieldViolations(t, err); !slices.Equal(got, []string{"organization.identifiers[1].value"}) {
			t.Errorf("UpdateOrganization: violations %v", got)
		}
		o.Identifiers[1].Value = "1234567893"
		if _, err := root.Directory.UpdateOrganization(h.ctx, &pb.UpdateOrganizationRequest{Organization: o, UpdateMask: fieldMask("identifiers")}); err != nil {
			t.Fatalf("a valid NPI: %v", err)
		}
	})

	t.Run("licences", func(t *testing.T) {
		for _, tc := range []struct {
			name    string
			licence *pb.Licence
			want    []string
		}{
			{"valid, spaces slashes and dots inside", &pb.Licence{Number: "MA 60.1/23-A", Jurisdiction: "US-WA", ExpireDate: day(1, 0)}, nil},
			{"ends today", &pb.Licence{Number: "1", Jurisdiction: "US", ExpireDate: day(0, 0)}, nil},
			{"ten years ahead", &pb.Licence{Number: "1", Jurisdiction: "CA-ON", ExpireDate: day(10, 0)}, nil},
			{"expired yesterday", &pb.Licence{Number: "1", Jurisdiction: "US-WA", ExpireDate: day(0, -1)}, []string{"practitioner.licence.expire_date"}},
			{"more than ten years ahead", &pb.Licence{Number: "1", Jurisdiction: "US-WA", ExpireDate: day(10, 1)}, []string{"practitioner.licence.expire_date"}},
			{"not a date", &pb.Licence{Number: "1", Jurisdiction: "US-WA", ExpireDate: "2027-02-30"}, []string{"practitioner.licence.expire_date"}},
			{"hostile number and jurisdiction", &pb.Licence{Number: "1'; DROP TABLE practitioners; --", Jurisdiction: "us-wa", ExpireDate: day(1, 0)},
				[]string{"practitioner.licence.number", "practitioner.licence.jurisdiction"}},
			{"control bytes", &pb.Licence{Number: "LMT\n1", Jurisdiction: "US-WA\n", ExpireDate: day(1, 0)},
				[]string{"practitioner.licence.number", "practitioner.licence.jurisdiction"}},
			{"a NUL byte, which no request may carry", &pb.Licence{Number: "LMT\x001", Jurisdiction: "US-WA", ExpireDate: day(1, 0)},
				[]string{"practitioner.licence.number"}},
			{"everything wrong at once", &pb.Licence{Number: "-", Jurisdiction: "Washington", ExpireDate: day(-1, 0)},
				[]string{"practitioner.licence.number", "practitioner.licence.jurisdiction", "practitioner.licence.expire_date"}},
			{"too long", &pb.Licence{Number: strings.Repeat("7", 41), Jurisdiction: "US-WAX1", ExpireDate: day(1, 0)},
				[]string{"practitioner.licence.number", "practitioner.licence.jurisdiction"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				subject := "lic-" + uuid.NewString()
				in := h.newMember(spa, pb.Role_ROLE_MASSAGE_THERAPIST, subject)
				in.Licence = tc.licence
				_, err := root.Directory.CreatePractitioner(h.ctx, &pb.CreatePractitionerRequest{Practitioner: in})
				if tc.want == nil {
					if err != nil {
						t.Fatal(err)
					}
				} else if got := fieldViolations(t, err); !slices.Equal(got, tc.want) {
					t.Errorf("create: violations %v, want %v", got, tc.want)
				}
				// The same licence recorded on an existing therapist.
				pr := h.practitioner(spa, pb.Role_ROLE_MASSAGE_THERAPIST, "upd-"+uuid.NewString())
				pr.Licence = tc.licence
				_, err = root.Directory.UpdatePractitioner(h.ctx, &pb.UpdatePractitionerRequest{Practitioner: pr, UpdateMask: fieldMask("licence")})
				if tc.want == nil {
					if err != nil {
						t.Fatal(err)
					}
				} else if got := fieldViolations(t, err); !slices.Equal(got, tc.want) {
					t.Errorf("update: violations %v, want %v", got, tc.want)
				}
			})
		}
	})

	t.Run("a licence that lapsed since does not block other changes", func(t *testing.T) {
		pr := h.lapse(h.practitioner(spa, pb.Role_ROLE_MASSAGE_THERAPIST, "lapsed"))
		pr.DisplayName = "Lapsed, LMT"
		if _, err := root.Directory.UpdatePractitioner(h.ctx, &pb.UpdatePractitionerRequest{Practitioner: pr, UpdateMask: fieldMask("display_name")}); err != nil {
			t.Fatal(err)
		}
		// Re-sending the lapsed licence is recording it again: refused.
		pr.Etag = ""
		_, err := root.Directory.UpdatePractitioner(h.ctx, &pb.UpdatePractitionerRequest{Practitioner: pr, UpdateMask: fieldMask("licence")})
		if got := fieldViolations(t, err); !slices.Equal(got, []string{"practitioner.licence.expire_date"}) {
			t.Errorf("violations %v", got)
		}
	})
}

// TestTrustWithdrawnRacesCreates withdraws an organization's trust while
// its administrator creates therapists: each racing create is written whole
// or refused, and once the withdrawal is answered every create is refused.
func TestTrustWithdrawnRacesCreates(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	spa := h.org("Harbor Massage", massagePractice)
	h.trust(spa, true)
	h.practitioner(spa, pb.Role_ROLE_ADMIN, "spa-admin")
	admin := h.as("spa-admin")
	root := h.as(rootAdmin)

	const creators = 20
	start := make(chan struct{})
	errs := make(chan error, creators)
	for i := range creators {
		go func() {
			<-start
			_, err := admin.Directory.CreatePractitioner(h.ctx, &pb.CreatePractitionerRequest{
				Practitioner: h.newMember(spa, pb.Role_ROLE_MASSAGE_THERAPIST, fmt.Sprintf("race-%d", i))})
			errs <- err
		}()
	}
	close(start)
	if _, err := root.Directory.UpdateOrganization(h.ctx, &pb.UpdateOrganizationRequest{
		Organization: &pb.Organization{Name: spa, CredentialsClinicians: false}, UpdateMask: fieldMask("credentials_clinicians")}); err != nil {
		t.Fatal(err)
	}
	// The withdrawal has committed: every create from now on is refused.
	_, err := admin.Directory.CreatePractitioner(h.ctx, &pb.CreatePractitionerRequest{
		Practitioner: h.newMember(spa, pb.Role_ROLE_MASSAGE_THERAPIST, "after")})
	wantCode(t, err, codes.PermissionDenied)
	created := 0
	for range creators {
		switch err := <-errs; codeOf(err) {
		case codes.OK:
			created++
		case codes.PermissionDenied:
		default:
			t.Errorf("racing create: %v", err)
		}
	}
	if n := h.count(`SELECT count(*) FROM practitioners WHERE subject LIKE 'race-%'`); n != created {
		t.Errorf("%d racing creates answered OK, %d written", created, n)
	}
}
