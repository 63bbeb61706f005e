package careteam

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
)

// OrganizationKind says what an organization does.
type OrganizationKind string

// The organization kinds.
const (
	PhysicianPractice OrganizationKind = "PHYSICIAN_PRACTICE"
	MassagePractice   OrganizationKind = "MASSAGE_PRACTICE"
)

// Identifier is an external identifier (FHIR Identifier).
type Identifier struct {
	System string
	Value  string
}

// Organization is a physician practice or a massage-therapy practice.
type Organization struct {
	ID          uuid.UUID
	DisplayName string
	Kind        OrganizationKind
	Identifiers []Identifier
	// CredentialsClinicians trusts the organization's administrators to
	// create and change its physicians or therapists; otherwise only the
	// directory's administrator does.
	CredentialsClinicians bool
	Version               int64
	CreateTime            time.Time
	UpdateTime            time.Time
}

// OrganizationUpdate names the fields UpdateOrganization changes.
type OrganizationUpdate struct {
	DisplayName, Identifiers, CredentialsClinicians bool
}

// Specialty is a training a therapist holds and a referral can require.
type Specialty string

// The specialties.
const (
	SpecialtyArthritis    Specialty = "ARTHRITIS"
	SpecialtyFibromyalgia Specialty = "FIBROMYALGIA"
	SpecialtyOrthopedic   Specialty = "ORTHOPEDIC"
	SpecialtySports       Specialty = "SPORTS"
	SpecialtyPrenatal     Specialty = "PRENATAL"
	SpecialtyOncology     Specialty = "ONCOLOGY"
)

// Licence is a licence to practise.
type Licence struct {
	Number       string
	Jurisdiction string
	// ExpireDate is the last valid day (UTC midnight).
	ExpireDate time.Time
}

// ActiveOn reports whether the licence is valid on the day of t.
func (l *Licence) ActiveOn(t time.Time) bool {
	return l != nil && !dateOf(t).After(l.ExpireDate)
}

// Practitioner is a person who calls careteam.
type Practitioner struct {
	ID             uuid.UUID
	OrganizationID uuid.UUID
	// OrganizationKind is the kind of their organization, as read.
	OrganizationKind OrganizationKind
	DisplayName      string
	// GivenName (space-separated) and FamilyName are the name in parts,
	// for FHIR; optional.
	GivenName, FamilyName string
	Role                  Role
	Subject               string
	Identifiers           []Identifier
	Licence               *Licence
	Specialties           []Specialty
	// ActsFor are the organizations whose physicians an integration may
	// act for; only integrations have any.
	ActsFor    []uuid.UUID
	Active     bool
	Version    int64
	CreateTime time.Time
	UpdateTime time.Time
}

// OrganizationFilter narrows ListOrganizations.
type OrganizationFilter struct {
	Kind OrganizationKind
}

// PractitionerFilter narrows ListPractitioners; zero fields do not filter.
type PractitionerFilter struct {
	Role           Role
	OrganizationID uuid.UUID
	Specialty      Specialty
	// LicenceActiveOn keeps practitioners whose licence is valid on that
	// day, when not zero.
	LicenceActiveOn time.Time
}

// PractitionerUpdate names the fields UpdatePractitioner changes.
type PractitionerUpdate struct {
	DisplayName, Name, Identifiers, Licence, Specialties, Active, ActsFor bool
}

// dateOf truncates t to its UTC day.
func dateOf(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// CreateOrganization creates an organization. Bootstrap administrator only.
func (s *Service) CreateOrganization(ctx context.Context, p Principal, o Organization, idem Idempotency) (*Organization, error) {
	if err := authorizeDirectory(p, uuid.Nil); err != nil {
		return nil, err
	}
	f := fieldsFor(ctx)
	if o.Kind == "" {
		f.add("organization.kind", "required")
	}
	validateOrganization(&f, &o)
	if err := f.err(); err != nil {
		return nil, err
	}
	now := s.clock.Now()
	o.ID, o.Version, o.CreateTime, o.UpdateTime = newID(), 1, now, now
	return mutate(ctx, s, p, "CreateOrganization", idem,
		func(tx Tx) (*Organization, uuid.UUID, error) {
			return &o, o.ID, tx.InsertOrganization(ctx, &o)
		},
		func(tx Tx, id uuid.UUID) (*Organization, error) { return tx.GetOrganization(ctx, id, false) })
}

func validateOrganization(f *fields, o *Organization) {
	if strings.TrimSpace(o.DisplayName) == "" {
		f.add("organization.display_name", "required")
	}
	validateIdentifiers(f, "organization.identifiers", o.Identifiers)
}

// UpdateOrganization changes the fields named in mask. Bootstrap
// administrator only: whether an organization credentials its own
// clinicians is the directory's decision. etag, when not empty, must be the
// current one.
func (s *Service) UpdateOrganization(ctx context.Context, p Principal, in Organization, mask OrganizationUpdate, etag string, idem Idempotency) (*Organization, error) {
	if err := authorizeDirectory(p, uuid.Nil); err != nil {
		return nil, err
	}
	return mutate(ctx, s, p, "UpdateOrganization", idem,
		func(tx Tx) (*Organization, uuid.UUID, error) {
			cur, err := tx.GetOrganization(ctx, in.ID, true)
			if err != nil {
				return nil, uuid.Nil, err
			}
			if err := checkEtag(etag, cur.Version); err != nil {
				return nil, uuid.Nil, err
			}
			if mask.DisplayName {
				cur.DisplayName = in.DisplayName
			}
			if mask.Identifiers {
				cur.Identifiers = in.Identifiers
			}
			if mask.CredentialsClinicians {
				cur.CredentialsClinicians = in.CredentialsClinicians
			}
			f := fieldsFor(ctx)
			validateOrganization(&f, cur)
			if err := f.err(); err != nil {
				return nil, uuid.Nil, err
			}
			cur.Version++
			cur.UpdateTime = s.clock.Now()
			return cur, cur.ID, tx.UpdateOrganization(ctx, cur)
		},
		func(tx Tx, id uuid.UUID) (*Organization, error) { return tx.GetOrganization(ctx, id, false) })
}

// GetOrganization returns an organization. The directory is readable by
// every authenticated caller: routing needs it and it holds no patient data.
func (s *Service) GetOrganization(ctx context.Context, p Principal, id uuid.UUID) (*Organization, error) {
	return read(ctx, s, func(tx Tx) (*Organization, error) { return tx.GetOrganization(ctx, id, false) })
}

// ListOrganizations lists organizations by creation.
func (s *Service) ListOrganizations(ctx context.Context, p Principal, f OrganizationFilter, page Page) ([]*Organization, uuid.UUID, error) {
	return listPage(ctx, s, page,
		func(tx Tx, page Page) ([]*Organization, error) { return tx.ListOrganizations(ctx, f, page) },
		func(o *Organization) uuid.UUID { return o.ID }, nil)
}

// validatePractitioner checks a practitioner about to be stored; the
// licence only when it is being recorded, since one recorded earlier may
// since have lapsed.
func validatePractitioner(f *fields, pr *Practitioner, licenceChanged bool, now time.Time) {
	if strings.TrimSpace(pr.DisplayName) == "" {
		f.add("practitioner.display_name", "required")
	}
	if pr.GivenName != "" && pr.FamilyName == "" {
		f.add("practitioner.family_name", "required with a given name")
	}
	validateIdentifiers(f, "practitioner.identifiers", pr.Identifiers)
	if pr.Role == RoleTherapist && pr.Licence == nil {
		f.add("practitioner.licence", "required for a massage therapist")
	}
	if pr.Licence != nil && licenceChanged {
		validateLicence(f, pr.Licence, now)
	}
	if len(pr.Specialties) > 0 && pr.Role != RoleTherapist {
		f.add("practitioner.specialties", "only massage therapists hold specialties")
	}
	switch {
	case pr.Role == RoleIntegration && len(pr.ActsFor) == 0:
		f.add("practitioner.acts_for", "required for an integration: the organizations whose physicians it acts for")
	case pr.Role != RoleIntegration && len(pr.ActsFor) > 0:
		f.add("practitioner.acts_for", "only integrations act for others")
	}
	slices.SortFunc(pr.ActsFor, func(a, b uuid.UUID) int { return strings.Compare(a.String(), b.String()) })
	pr.ActsFor = slices.Compact(pr.ActsFor)
	slices.Sort(pr.Specialties)
	pr.Specialties = slices.Compact(pr.Specialties)
}

// CreatePractitioner adds a practitioner to an organization whose kind fits
// their role. An ADMIN of that organization, or the bootstrap
// administrator; only the latter creates auditors, and clinicians unless
// the organization credentials its own.
func (s *Service) CreatePractitioner(ctx context.Context, p Principal, pr Practitioner, idem Idempotency) (*Practitioner, error) {
	f := fieldsFor(ctx)
	if pr.OrganizationID == uuid.Nil {
		f.add("practitioner.organization", "required")
	}
	if !pr.Role.valid() {
		f.add("practitioner.role", "required")
	}
	if strings.TrimSpace(pr.Subject) == "" {
		f.add("practitioner.subject", "required")
	}
	now := s.clock.Now()
	validatePractitioner(&f, &pr, true, now)
	if err := f.err(); err != nil {
		return nil, err
	}
	if err := authorizeDirectory(p, pr.OrganizationID); err != nil {
		return nil, err
	}
	pr.ID, pr.Version, pr.Active, pr.CreateTime, pr.UpdateTime = newID(), 1, true, now, now
	return mutate(ctx, s, p, "CreatePractitioner", idem,
		func(tx Tx) (*Practitioner, uuid.UUID, error) {
			// Locked so that a trust withdrawn meanwhile is not acted on.
			org, err := tx.GetOrganization(ctx, pr.OrganizationID, true)
			if err != nil {
				return nil, uuid.Nil, err
			}
			if err := authorizeMembership(p, pr.Role, org); err != nil {
				return nil, uuid.Nil, err
			}
			if err := checkGrant(ctx, tx, pr.ActsFor); err != nil {
				return nil, uuid.Nil, err
			}
			pr.OrganizationKind = org.Kind
			return &pr, pr.ID, tx.InsertPractitioner(ctx, &pr)
		},
		func(tx Tx, id uuid.UUID) (*Practitioner, error) { return tx.GetPractitioner(ctx, id, false) })
}

// GetPractitioner returns a practitioner; readable by every authenticated
// caller.
func (s *Service) GetPractitioner(ctx context.Context, p Principal, id uuid.UUID) (*Practitioner, error) {
	return read(ctx, s, func(tx Tx) (*Practitioner, error) { return tx.GetPractitioner(ctx, id, false) })
}

// ListPractitioners lists practitioners by creation. activeLicence keeps
// those whose licence is valid today.
func (s *Service) ListPractitioners(ctx context.Context, p Principal, f PractitionerFilter, activeLicence bool, page Page) ([]*Practitioner, uuid.UUID, error) {
	if activeLicence {
		f.LicenceActiveOn = dateOf(s.clock.Now())
	}
	return listPage(ctx, s, page,
		func(tx Tx, page Page) ([]*Practitioner, error) { return tx.ListPractitioners(ctx, f, page) },
		func(pr *Practitioner) uuid.UUID { return pr.ID }, nil)
}

// UpdatePractitioner changes the fields named in mask, under the same
// authority that creates such a practitioner; any administrator of their
// organization may deactivate them. etag, when not empty, must be the
// current one.
func (s *Service) UpdatePractitioner(ctx context.Context, p Principal, in Practitioner, mask PractitionerUpdate, etag string, idem Idempotency) (*Practitioner, error) {
	return mutate(ctx, s, p, "UpdatePractitioner", idem,
		func(tx Tx) (*Practitioner, uuid.UUID, error) {
			cur, err := tx.GetPractitioner(ctx, in.ID, true)
			if err != nil {
				return nil, uuid.Nil, err
			}
			if deactivates := mask == (PractitionerUpdate{Active: true}) && !in.Active; deactivates {
				err = authorizeDirectory(p, cur.OrganizationID)
			} else {
				err = authorizeChange(ctx, tx, p, cur)
			}
			if err != nil {
				return nil, uuid.Nil, err
			}
			if err := checkEtag(etag, cur.Version); err != nil {
				return nil, uuid.Nil, err
			}
			if mask.DisplayName {
				cur.DisplayName = in.DisplayName
			}
			if mask.Name {
				cur.GivenName, cur.FamilyName = in.GivenName, in.FamilyName
			}
			if mask.Identifiers {
				cur.Identifiers = in.Identifiers
			}
			if mask.Licence {
				cur.Licence = in.Licence
			}
			if mask.Specialties {
				cur.Specialties = in.Specialties
			}
			if mask.Active {
				cur.Active = in.Active
			}
			if mask.ActsFor {
				if err := checkGrant(ctx, tx, in.ActsFor); err != nil {
					return nil, uuid.Nil, err
				}
				cur.ActsFor = in.ActsFor
			}
			f := fieldsFor(ctx)
			now := s.clock.Now()
			validatePractitioner(&f, cur, mask.Licence, now)
			if err := f.err(); err != nil {
				return nil, uuid.Nil, err
			}
			cur.Version++
			cur.UpdateTime = now
			tx.AppendEvent(Event{ID: newID(), Type: EventPractitionerChanged, Resource: Practitioners.Name(cur.ID), Actor: p.PractitionerID, Time: now})
			return cur, cur.ID, tx.UpdatePractitioner(ctx, cur)
		},
		func(tx Tx, id uuid.UUID) (*Practitioner, error) { return tx.GetPractitioner(ctx, id, false) })
}
