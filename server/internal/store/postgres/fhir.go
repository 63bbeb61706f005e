package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

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

// ClaimImport inserts each identifier for referral, in a fixed order so
// that two imports of the same identifiers wait for each other rather than
// deadlock, and returns the referral each one names: referral where the
// identifier was free, else the one that took it first, read after the
// transaction that held it ended.
func (t *tx) ClaimImport(ctx context.Context, org uuid.UUID, ids []careteam.Identifier, referral uuid.UUID) ([]uuid.UUID, error) {
	order := make([]int, len(ids))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		return cmp.Or(cmp.Compare(ids[a].System, ids[b].System), cmp.Compare(ids[a].Value, ids[b].Value))
	})
	systems, values, ordinals := make([]string, len(ids)), make([]string, len(ids)), make([]int, len(ids))
	for k, i := range order {
		systems[k], values[k], ordinals[k] = ids[i].System, ids[i].Value, i
	}
	_, err := t.execNow(ctx, `
		INSERT INTO fhir_imports (organization_id, system, value, referral_id, ordinal)
		SELECT $1, x.system, x.value, $2, x.ordinal FROM unnest($3::text[], $4::text[], $5::int[]) WITH ORDINALITY AS x(system, value, ordinal, n)
		ORDER BY x.n
		ON CONFLICT (organization_id, system, value) DO NOTHING`, org, referral, systems, values, ordinals)
	if err != nil {
		return nil, err
	}
	rows, err := t.query(ctx, `SELECT f.referral_id FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS x(system, value, n)
		JOIN fhir_imports f ON f.organization_id = $1 AND f.system = x.system AND f.value = x.value
		ORDER BY x.n`, org, systems, values)
	if err != nil {
		return nil, err
	}
	found, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil {
		return nil, err
	}
	if len(found) != len(ids) {
		return nil, fmt.Errorf("claim import: %d of %d identifiers recorded", len(found), len(ids))
	}
	holders := make([]uuid.UUID, len(ids))
	for k, i := range order {
		holders[i] = found[k]
	}
	return holders, nil
}

func (t *tx) MoveImportIdentifiers(ctx context.Context, org, from, to uuid.UUID) error {
	return t.exec(ctx, `UPDATE fhir_imports SET referral_id = $3 WHERE organization_id = $1 AND referral_id = $2`, org, from, to)
}

func (t *tx) ImportIdentifiersOf(ctx context.Context, referral uuid.UUID) ([]careteam.Identifier, error) {
	rows, err := t.query(ctx, `SELECT system, value FROM fhir_imports WHERE referral_id = $1
		ORDER BY create_time, ordinal, system, value`, referral)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (careteam.Identifier, error) {
		var id careteam.Identifier
		err := row.Scan(&id.System, &id.Value)
		return id, err
	})
}

func (t *tx) FindImportedReferrals(ctx context.Context, scope careteam.ReferralScope, id careteam.Identifier) ([]*careteam.Referral, error) {
	args := pgx.NamedArgs{"system": id.System, "value": id.Value}
	rows, err := t.query(ctx, `SELECT `+referralColumns+` FROM referrals r
		WHERE r.id IN (SELECT referral_id FROM fhir_imports WHERE system = @system AND value = @value)
		  AND `+referralVisible(scope, args)+` ORDER BY r.id DESC`, args)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanReferral)
}

func (t *tx) UpdateReferralOrder(ctx context.Context, r *careteam.Referral) error {
	return t.exec(ctx, `
		UPDATE referrals SET reason_diagnoses = $2, reason_codes = $3, clinical_notes = $4, priority = $5,
			requested_techniques = $6, authorized_visits = $7, valid_until = $8, required_specialties = $9,
			reason_texts = $10, patient_instruction = $11, service_codes = $12, service_text = $13, valid_from = $14
		WHERE id = $1`,
		r.ID, nonNil(r.ReasonDiagnoses), nonNil(r.ReasonCodes), r.ClinicalNotes, r.Priority,
		nonNil(r.RequestedTechniques), r.AuthorizedVisits, r.ValidUntil, nonNil(r.RequiredSpecialties),
		nonNil(r.ReasonTexts), r.PatientInstruction, nonNil(r.ServiceCodes), r.ServiceText, nullTime(r.ValidFrom))
}
