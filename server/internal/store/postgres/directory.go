package postgres

import (
	"context"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/careteam/careteam/server/internal/careteam"
)

func (t *tx) InsertOrganization(ctx context.Context, o *careteam.Organization) error {
	err := t.exec(ctx, `
		INSERT INTO organizations (id, display_name, kind, identifiers, credentials_clinicians, version, create_time, update_time)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		o.ID, o.DisplayName, o.Kind, identifiersJSON(o.Identifiers), o.CredentialsClinicians, o.Version, o.CreateTime, o.UpdateTime)
	return err
}

func (t *tx) UpdateOrganization(ctx context.Context, o *careteam.Organization) error {
	return t.exec(ctx, `
		UPDATE organizations SET display_name = $2, identifiers = $3, credentials_clinicians = $4,
			version = $5, update_time = $6
		WHERE id = $1`,
		o.ID, o.DisplayName, identifiersJSON(o.Identifiers), o.CredentialsClinicians, o.Version, o.UpdateTime)
}

const organizationColumns = `id, display_name, kind, identifiers, credentials_clinicians, version, create_time, update_time`

func scanOrganization(row pgx.Row) (*careteam.Organization, error) {
	var o careteam.Organization
	err := row.Scan(&o.ID, &o.DisplayName, &o.Kind, &o.Identifiers, &o.CredentialsClinicians, &o.Version, &o.CreateTime, &o.UpdateTime)
	return &o, err
}

func (t *tx) GetOrganization(ctx context.Context, id uuid.UUID, forUpdate bool) (*careteam.Organization, error) {
	q := `SELECT ` + organizationColumns + ` FROM organizations WHERE id = @id`
	args := pgx.NamedArgs{"id": id}
	return getByID(ctx, t, "organizations", careteam.Organizations, id, forUpdate, q, args, scanOrganization)
}

func (t *tx) ListOrganizations(ctx context.Context, f careteam.OrganizationFilter, page careteam.Page) ([]*careteam.Organization, error) {
	rows, err := t.query(ctx, `
		SELECT `+organizationColumns+` FROM organizations
		WHERE id > $1 AND ($2 = '' OR kind = $2)
		ORDER BY id LIMIT $3`, page.After, f.Kind, page.Size+1)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanOrganization)
}

func (t *tx) InsertPractitioner(ctx context.Context, p *careteam.Practitioner) error {
	number, jurisdiction, expire := licenceColumns(p.Licence)
	err := t.exec(ctx, `
		INSERT INTO practitioners (id, organization_id, display_name, role, subject,
			licence_number, licence_jurisdiction, licence_expire_date, specialties, active,
			version, create_time, update_time, acts_for, given_name, family_name)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)`,
		p.ID, p.OrganizationID, p.DisplayName, p.Role, p.Subject,
		number, jurisdiction, expire, nonNil(p.Specialties), p.Active,
		p.Version, p.CreateTime, p.UpdateTime, nonNil(p.ActsFor), p.GivenName, p.FamilyName)
	if err != nil {
		return err
	}
	return t.replacePractitionerIdentifiers(ctx, p)
}

func (t *tx) replacePractitionerIdentifiers(ctx context.Context, p *careteam.Practitioner) error {
	if err := t.exec(ctx, `DELETE FROM practitioner_identifiers WHERE practitioner_id = $1`, p.ID); err != nil {
		return err
	}
	for i, id := range p.Identifiers {
		if err := t.exec(ctx, `
			INSERT INTO practitioner_identifiers (system, value, practitioner_id, ord) VALUES ($1, $2, $3, $4)`,
			id.System, id.Value, p.ID, i); err != nil {
			return err
		}
	}
	return nil
}

func licenceColumns(l *careteam.Licence) (number, jurisdiction *string, expire *time.Time) {
	if l == nil {
		return nil, nil, nil
	}
	return &l.Number, &l.Jurisdiction, &l.ExpireDate
}

const practitionerColumns = `p.id, p.organization_id,
	(SELECT o.kind FROM organizations o WHERE o.id = p.organization_id), p.display_name, p.role, p.subject,
	p.licence_number, p.licence_jurisdiction, p.licence_expire_date, p.specialties, p.active,
	p.version, p.create_time, p.update_time, p.acts_for, p.given_name, p.family_name,
	(SELECT coalesce(jsonb_agg(jsonb_build_object('system', i.system, 'value', i.value) ORDER BY i.ord), '[]')
	   FROM practitioner_identifiers i WHERE i.practitioner_id = p.id)`

func scanPractitioner(row pgx.Row) (*careteam.Practitioner, error) {
	var p careteam.Practitioner
	var number, jurisdiction *string
	var expire *time.Time
	err := row.Scan(&p.ID, &p.OrganizationID, &p.OrganizationKind, &p.DisplayName, &p.Role, &p.Subject,
		&number, &jurisdiction, &expire, &p.Specialties, &p.Active,
		&p.Version, &p.CreateTime, &p.UpdateTime, &p.ActsFor, &p.GivenName, &p.FamilyName, &p.Identifiers)
	if expire != nil {
		p.Licence = &careteam.Licence{Number: deref(number), Jurisdiction: deref(jurisdiction), ExpireDate: expire.UTC()}
	}
	return &p, err
}

func (t *tx) GetPractitioner(ctx context.Context, id uuid.UUID, forUpdate bool) (*careteam.Practitioner, error) {
	q := `SELECT ` + practitionerColumns + ` FROM practitioners p WHERE p.id = @id`
	args := pgx.NamedArgs{"id": id}
	return getByID(ctx, t, "practitioners", careteam.Practitioners, id, forUpdate, q, args, scanPractitioner)
}

func (t *tx) GetPractitionerBySubject(ctx context.Context, subject string) (*careteam.Practitioner, error) {
	p, err := scanPractitioner(t.queryRow(ctx, `SELECT `+practitionerColumns+` FROM practitioners p WHERE p.subject = $1`, subject))
	if err == pgx.ErrNoRows {
		return nil, careteam.ErrNotFound
	}
	return p, err
}

func (t *tx) ListPractitioners(ctx context.Context, f careteam.PractitionerFilter, page careteam.Page) ([]*careteam.Practitioner, error) {
	var orgID *uuid.UUID
	if f.OrganizationID != uuid.Nil {
		orgID = &f.OrganizationID
	}
	var activeOn *time.Time
	if !f.LicenceActiveOn.IsZero() {
		activeOn = &f.LicenceActiveOn
	}
	rows, err := t.query(ctx, `
		SELECT `+practitionerColumns+` FROM practitioners p
		WHERE p.id > $1
		  AND ($2 = '' OR p.role = $2)
		  AND ($3::uuid IS NULL OR p.organization_id = $3)
		  AND ($4 = '' OR p.specialties @> ARRAY[$4])
		  AND ($5::date IS NULL OR p.licence_expire_date >= $5)
		ORDER BY p.id LIMIT $6`,
		page.After, f.Role, orgID, f.Specialty, activeOn, page.Size+1)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanPractitioner)
}

func (t *tx) UpdatePractitioner(ctx context.Context, p *careteam.Practitioner) error {
	number, jurisdiction, expire := licenceColumns(p.Licence)
	err := t.exec(ctx, `
		UPDATE practitioners SET display_name = $2, licence_number = $3, licence_jurisdiction = $4,
			licence_expire_date = $5, specialties = $6, active = $7, version = $8, update_time = $9, acts_for = $10,
			given_name = $11, family_name = $12
		WHERE id = $1`,
		p.ID, p.DisplayName, number, jurisdiction, expire, nonNil(p.Specialties), p.Active, p.Version, p.UpdateTime, nonNil(p.ActsFor),
		p.GivenName, p.FamilyName)
	if err != nil {
		return err
	}
	return t.replacePractitionerIdentifiers(ctx, p)
}
