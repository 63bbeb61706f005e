package postgres

import (
	"context"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/careteam/careteam/server/internal/careteam"
)

const diagnosisColumns = `d.id, d.patient_id, d.physician_id, d.icd10_code, d.display, d.body_sites, d.onset_date,
	d.clinical_status, d.severity, d.red_flags, d.notes, d.notes_shareable, d.categories, d.version, d.create_time, d.update_time`

func scanDiagnosis(row pgx.Row) (*careteam.Diagnosis, error) {
	var d careteam.Diagnosis
	var onset *time.Time
	err := row.Scan(&d.ID, &d.PatientID, &d.PhysicianID, &d.ICD10Code, &d.Display, &d.BodySites, &onset,
		&d.ClinicalStatus, &d.Severity, &d.RedFlags, &d.Notes, &d.NotesShareable, &d.Categories, &d.Version, &d.CreateTime, &d.UpdateTime)
	if onset != nil {
		d.OnsetDate = onset.UTC()
	}
	return &d, err
}

func (t *tx) InsertDiagnosis(ctx context.Context, d *careteam.Diagnosis) error {
	err := t.exec(ctx, `
		INSERT INTO diagnoses (id, patient_id, physician_id, icd10_code, display, body_sites, onset_date,
			clinical_status, severity, red_flags, notes, notes_shareable, categories, version, create_time, update_time)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)`,
		d.ID, d.PatientID, d.PhysicianID, d.ICD10Code, d.Display, nonNil(d.BodySites), nullTime(d.OnsetDate),
		d.ClinicalStatus, d.Severity, nonNil(d.RedFlags), d.Notes, d.NotesShareable, nonNil(d.Categories), d.Version, d.CreateTime, d.UpdateTime)
	return err
}

func (t *tx) GetDiagnosis(ctx context.Context, id uuid.UUID, scope careteam.PatientScope, forUpdate bool) (*careteam.Diagnosis, error) {
	args := pgx.NamedArgs{"id": id}
	q := `SELECT ` + diagnosisColumns + ` FROM diagnoses d JOIN patients p ON p.id = d.patient_id
		WHERE d.id = @id AND ` + patientVisible(scope, args)
	return getByID(ctx, t, "diagnoses", careteam.Diagnoses, id, forUpdate, q, args, scanDiagnosis)
}

func (t *tx) ListDiagnoses(ctx context.Context, patient uuid.UUID, page careteam.Page) ([]*careteam.Diagnosis, error) {
	rows, err := t.query(ctx, `SELECT `+diagnosisColumns+` FROM diagnoses d
		WHERE d.patient_id = $1 AND d.id > $2 ORDER BY d.id LIMIT $3`, patient, page.After, page.Size+1)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanDiagnosis)
}

func (t *tx) UpdateDiagnosis(ctx context.Context, d *careteam.Diagnosis) error {
	err := t.exec(ctx, `
		UPDATE diagnoses SET display = $2, body_sites = $3, clinical_status = $4, severity = $5, red_flags = $6,
			notes = $7, notes_shareable = $8, version = $9, update_time = $10, categories = $11
		WHERE id = $1`,
		d.ID, d.Display, nonNil(d.BodySites), d.ClinicalStatus, d.Severity, nonNil(d.RedFlags),
		d.Notes, d.NotesShareable, d.Version, d.UpdateTime, nonNil(d.Categories))
	return err
}

func (t *tx) DiagnosesOfPatient(ctx context.Context, patient uuid.UUID, ids []uuid.UUID) ([]uuid.UUID, error) {
	rows, err := t.query(ctx, `SELECT id FROM diagnoses WHERE patient_id = $1 AND id = ANY($2)`, patient, ids)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
}
