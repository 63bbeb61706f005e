package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/careteam/careteam/server/internal/careteam"
)

func (t *tx) FindPractitionerByIdentifier(ctx context.Context, id careteam.Identifier) (*careteam.Practitioner, error) {
	p, err := scanPractitioner(t.queryRow(ctx, `SELECT `+practitionerColumns+` FROM practitioners p
		WHERE p.id = (SELECT practitioner_id FROM practitioner_identifiers WHERE system = $1 AND value = $2)`,
		id.System, id.Value))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("practitioner by identifier: %w", careteam.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	return p, nil
}

// FindOrganizationsByIdentifier returns at most two organizations: enough
// for the caller to tell a unique match from an ambiguous one.
func (t *tx) FindOrganizationsByIdentifier(ctx context.Context, id careteam.Identifier) ([]*careteam.Organization, error) {
	rows, err := t.query(ctx, `SELECT `+organizationColumns+` FROM organizations
		WHERE identifiers @> jsonb_build_array(jsonb_build_object('system', $1::text, 'value', $2::text))
		ORDER BY id LIMIT 2`, id.System, id.Value)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanOrganization)
}

// ClaimImport inserts the key, or waits for the transaction that holds it
// and then reads which referral it names, as ClaimRequest does.
func (t *tx) ClaimImport(ctx context.Context, key careteam.ImportKey, referral uuid.UUID) (uuid.UUID, bool, error) {
	tag, err := t.execNow(ctx, `
		INSERT INTO fhir_imports (organization_id, system, value, referral_id) VALUES ($1, $2, $3, $4)
		ON CONFLICT (organization_id, system, value) DO NOTHING`,
		key.OrganizationID, key.Identifier.System, key.Identifier.Value, referral)
	if err != nil {
		return uuid.Nil, false, err
	}
	if tag.RowsAffected() == 1 {
		return referral, true, nil
	}
	var holder uuid.UUID
	err = t.queryRow(ctx, `SELECT referral_id FROM fhir_imports WHERE organization_id = $1 AND system = $2 AND value = $3`,
		key.OrganizationID, key.Identifier.System, key.Identifier.Value).Scan(&holder)
	return holder, false, err
}

func (t *tx) ImportKeyOf(ctx context.Context, referral uuid.UUID) (careteam.ImportKey, error) {
	var k careteam.ImportKey
	err := t.queryRow(ctx, `SELECT organization_id, system, value FROM fhir_imports WHERE referral_id = $1`, referral).
		Scan(&k.OrganizationID, &k.Identifier.System, &k.Identifier.Value)
	return k, notFound(err, careteam.Referrals, referral)
}

func (t *tx) UpdateReferralOrder(ctx context.Context, r *careteam.Referral) error {
	return t.exec(ctx, `
		UPDATE referrals SET reason_diagnoses = $2, reason_codes = $3, clinical_notes = $4, priority = $5,
			requested_techniques = $6, authorized_visits = $7, valid_until = $8, required_specialties = $9
		WHERE id = $1`,
		r.ID, nonNil(r.ReasonDiagnoses), nonNil(r.ReasonCodes), r.ClinicalNotes, r.Priority,
		nonNil(r.RequestedTechniques), r.AuthorizedVisits, r.ValidUntil, nonNil(r.RequiredSpecialties))
}
