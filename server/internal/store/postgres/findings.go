package postgres

import (
	"context"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/careteam/careteam/server/internal/careteam"
)

// findingsSQL and findingsGroup frame a query of findings, each with the
// clearances that evaluated it, around a WHERE clause on f.
const (
	findingsSQL = `SELECT f.id, f.patient_id, f.flag, f.diagnosis_id, f.clearance_id, f.reported_by, f.record_time,
		coalesce(array_agg(e.clearance_id ORDER BY e.clearance_id) FILTER (WHERE e.clearance_id IS NOT NULL), '{}')
		FROM red_flag_findings f LEFT JOIN red_flag_evaluations e ON e.finding_id = f.id`
	findingsGroup = ` GROUP BY f.id ORDER BY f.record_time, f.id`
)

func scanFinding(row pgx.Row) (*careteam.RedFlagFinding, error) {
	var f careteam.RedFlagFinding
	var diagnosis, clearance, reporter *uuid.UUID
	if err := row.Scan(&f.ID, &f.PatientID, &f.Flag, &diagnosis, &clearance, &reporter, &f.RecordTime, &f.EvaluatedBy); err != nil {
		return nil, err
	}
	f.DiagnosisID, f.ClearanceID, f.ReportedBy = deref(diagnosis), deref(clearance), deref(reporter)
	return &f, nil
}

func (t *tx) InsertRedFlagFindings(ctx context.Context, fs []*careteam.RedFlagFinding) error {
	for _, f := range fs {
		if err := t.exec(ctx, `
			INSERT INTO red_flag_findings (id, patient_id, flag, diagnosis_id, clearance_id, reported_by, record_time)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			f.ID, f.PatientID, f.Flag, nullID(f.DiagnosisID), nullID(f.ClearanceID), nullID(f.ReportedBy), f.RecordTime); err != nil {
			return err
		}
	}
	return nil
}

func (t *tx) OpenRedFlagFindings(ctx context.Context, patient uuid.UUID) ([]*careteam.RedFlagFinding, error) {
	rows, err := t.query(ctx, findingsSQL+` WHERE f.patient_id = $1 AND f.close_time IS NULL`+findingsGroup, patient)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanFinding)
}

func (t *tx) EvaluateRedFlagFindings(ctx context.Context, clearance uuid.UUID, findings []uuid.UUID) error {
	if len(findings) == 0 {
		return nil
	}
	return t.exec(ctx, `INSERT INTO red_flag_evaluations (finding_id, clearance_id)
		SELECT unnest($2::uuid[]), $1 ON CONFLICT DO NOTHING`, clearance, findings)
}

func (t *tx) CloseRedFlagFindings(ctx context.Context, findings []uuid.UUID, now time.Time) error {
	if len(findings) == 0 {
		return nil
	}
	return t.exec(ctx, `UPDATE red_flag_findings SET close_time = $2 WHERE id = ANY($1) AND close_time IS NULL`, findings, now)
}
