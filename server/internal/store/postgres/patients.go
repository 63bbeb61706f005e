package postgres

import (
	"context"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/careteam/careteam/server/internal/careteam"
)

func (t *tx) InsertPatient(ctx context.Context, p *careteam.Patient) error {
	err := t.exec(ctx, `
		INSERT INTO patients (id, organization_id, registered_by, given_name, family_name, birth_date, gender,
			version, create_time, update_time)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		p.ID, p.OrganizationID, nullID(p.RegisteredBy), p.GivenName, p.FamilyName, p.BirthDate, p.Gender,
		p.Version, p.CreateTime, p.UpdateTime)
	if err != nil {
		return err
	}
	return t.replacePatientIdentifiers(ctx, p)
}

func (t *tx) replacePatientIdentifiers(ctx context.Context, p *careteam.Patient) error {
	if err := t.exec(ctx, `DELETE FROM patient_identifiers WHERE patient_id = $1`, p.ID); err != nil {
		return err
	}
	for i, id := range p.Identifiers {
		if err := t.exec(ctx, `
			INSERT INTO patient_identifiers (organization_id, system, value, patient_id, ord) VALUES ($1, $2, $3, $4, $5)`,
			p.OrganizationID, id.System, id.Value, p.ID, i); err != nil {
			return err
		}
	}
	return nil
}

const patientColumns = `p.id, p.organization_id, p.registered_by, p.given_name, p.family_name, p.birth_date, p.gender,
	p.version, p.create_time, p.update_time,
	(SELECT coalesce(jsonb_agg(jsonb_build_object('system', i.system, 'value', i.value) ORDER BY i.ord), '[]')
	   FROM patient_identifiers i WHERE i.patient_id = p.id)`

func scanPatient(row pgx.Row) (*careteam.Patient, error) {
	var p careteam.Patient
	var registeredBy *uuid.UUID
	err := row.Scan(&p.ID, &p.OrganizationID, &registeredBy, &p.GivenName, &p.FamilyName, &p.BirthDate, &p.Gender,
		&p.Version, &p.CreateTime, &p.UpdateTime, &p.Identifiers)
	p.RegisteredBy = deref(registeredBy)
	p.BirthDate = p.BirthDate.UTC()
	return &p, err
}

// patientVisible is the SQL form of a careteam.PatientScope over the patients
// row aliased p: true when any relation the scope names holds. It adds its
// arguments to args.
func patientVisible(s careteam.PatientScope, args pgx.NamedArgs) string {
	if s.Any {
		return "true"
	}
	var or []string
	if s.RegisteredByOrg != uuid.Nil {
		args["ps_org"] = s.RegisteredByOrg
		or = append(or, `p.organization_id = @ps_org`)
	}
	if s.Physician != uuid.Nil {
		args["ps_physician"] = s.Physician
		or = append(or,
			`EXISTS (SELECT 1 FROM referrals r WHERE r.patient_id = p.id AND r.referring_physician_id = @ps_physician)`,
			`EXISTS (SELECT 1 FROM diagnoses d WHERE d.patient_id = p.id AND d.physician_id = @ps_physician)`,
			`EXISTS (SELECT 1 FROM clearances c WHERE c.patient_id = p.id AND c.physician_id = @ps_physician AND c.status <> 'REQUESTED')`)
	}
	if s.AskedToClear != uuid.Nil {
		args["ps_asked"] = s.AskedToClear
		or = append(or, `EXISTS (SELECT 1 FROM clearances c WHERE c.patient_id = p.id AND c.physician_id = @ps_asked AND c.status = 'REQUESTED')`)
	}
	if rs := referralVisible(s.Referrals, args); rs != "false" {
		or = append(or, `EXISTS (SELECT 1 FROM referrals r WHERE r.patient_id = p.id AND `+rs+`)`)
	}
	if len(or) == 0 {
		return "false"
	}
	return "(" + strings.Join(or, " OR ") + ")"
}

func (t *tx) GetPatient(ctx context.Context, id uuid.UUID, scope careteam.PatientScope, forUpdate bool) (*careteam.Patient, error) {
	args := pgx.NamedArgs{"id": id}
	q := `SELECT ` + patientColumns + ` FROM patients p WHERE p.id = @id AND ` + patientVisible(scope, args)
	return getByID(ctx, t, "patients", careteam.Patients, id, forUpdate, q, args, scanPatient)
}

func (t *tx) ListPatients(ctx context.Context, scope careteam.PatientScope, f careteam.PatientFilter, page careteam.Page) ([]*careteam.Patient, error) {
	args := pgx.NamedArgs{"after": page.After, "limit": page.Size + 1}
	where := []string{`p.id > @after`, patientVisible(scope, args)}
	if f.FamilyNamePrefix != "" {
		args["prefix"] = likePrefix(strings.ToLower(f.FamilyNamePrefix))
		where = append(where, `lower(p.family_name) LIKE @prefix`)
	}
	if !f.BirthDate.IsZero() {
		args["birth_date"] = f.BirthDate
		where = append(where, `p.birth_date = @birth_date`)
	}
	rows, err := t.query(ctx, `SELECT `+patientColumns+` FROM patients p WHERE `+strings.Join(where, " AND ")+
		` ORDER BY p.id LIMIT @limit`, args)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanPatient)
}

func (t *tx) FindPatientsByIdentifier(ctx context.Context, scope careteam.PatientScope, id careteam.Identifier) ([]*careteam.Patient, error) {
	args := pgx.NamedArgs{"system": id.System, "value": id.Value}
	rows, err := t.query(ctx, `
		SELECT `+patientColumns+` FROM patients p
		WHERE p.id IN (SELECT patient_id FROM patient_identifiers WHERE system = @system AND value = @value)
		  AND `+patientVisible(scope, args)+`
		ORDER BY p.id LIMIT 10`, args)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanPatient)
}

func (t *tx) UpdatePatient(ctx context.Context, p *careteam.Patient) error {
	err := t.exec(ctx, `
		UPDATE patients SET given_name = $2, family_name = $3, birth_date = $4, gender = $5,
			version = $6, update_time = $7
		WHERE id = $1`,
		p.ID, p.GivenName, p.FamilyName, p.BirthDate, p.Gender, p.Version, p.UpdateTime)
	if err != nil {
		return err
	}
	return t.replacePatientIdentifiers(ctx, p)
}

// likePrefix escapes LIKE's wildcards in s and appends one.
func likePrefix(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return r.Replace(s) + "%"
}

func nullID(id uuid.UUID) *uuid.UUID {
	if id == uuid.Nil {
		return nil
	}
	return &id
}
