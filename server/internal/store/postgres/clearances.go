package postgres

import (
	"context"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/careteam/careteam/server/internal/careteam"
)

const clearanceColumns = `c.id, c.patient_id, c.referral_id, c.physician_id, c.decision, c.status, c.valid_from, c.valid_until,
	c.precautions, c.contraindicated, c.evaluated_red_flags, c.notes, c.requested_by, c.question, c.issue_time,
	c.suspended_by, c.suspension_red_flag, c.suspension_observation, c.suspend_time,
	c.revoked_by, c.revoke_reason, c.revoke_time, c.superseded_by, c.supersede_time, c.version, c.create_time, c.update_time`

func scanClearance(row pgx.Row) (*careteam.Clearance, error) {
	var c careteam.Clearance
	var referral, requestedBy, suspendedBy, revokedBy, supersededBy *uuid.UUID
	var validFrom, validUntil, issue, suspendTime, revokeTime, supersedeTime *time.Time
	var flag careteam.RedFlag
	var observation, revokeReason string
	err := row.Scan(&c.ID, &c.PatientID, &referral, &c.PhysicianID, &c.Decision, &c.Status, &validFrom, &validUntil,
		&c.Precautions, &c.Contraindicated, &c.EvaluatedRedFlags, &c.Notes, &requestedBy, &c.Question, &issue,
		&suspendedBy, &flag, &observation, &suspendTime,
		&revokedBy, &revokeReason, &revokeTime, &supersededBy, &supersedeTime, &c.Version, &c.CreateTime, &c.UpdateTime)
	if err != nil {
		return nil, err
	}
	c.ReferralID, c.RequestedBy, c.SupersededBy = deref(referral), deref(requestedBy), deref(supersededBy)
	c.ValidFrom, c.ValidUntil, c.IssueTime, c.SupersedeTime = deref(validFrom), deref(validUntil), deref(issue), deref(supersedeTime)
	if suspendedBy != nil {
		c.Suspension = &careteam.Suspension{Actor: *suspendedBy, RedFlag: flag, Observation: observation, Time: deref(suspendTime)}
	}
	if revokedBy != nil {
		c.Revocation = &careteam.Revocation{Actor: *revokedBy, Reason: revokeReason, Time: deref(revokeTime)}
	}
	return &c, nil
}

// clearanceArgs are the columns InsertClearance and UpdateClearance write.
func clearanceArgs(c *careteam.Clearance) []any {
	var suspendedBy, revokedBy *uuid.UUID
	var flag careteam.RedFlag
	var observation, revokeReason string
	var suspendTime, revokeTime *time.Time
	if s := c.Suspension; s != nil {
		suspendedBy, flag, observation, suspendTime = &s.Actor, s.RedFlag, s.Observation, &s.Time
	}
	if r := c.Revocation; r != nil {
		revokedBy, revokeReason, revokeTime = &r.Actor, r.Reason, &r.Time
	}
	return []any{c.ID, c.PatientID, nullID(c.ReferralID), c.PhysicianID, c.Decision, c.Status,
		nullTime(c.ValidFrom), nullTime(c.ValidUntil), nonNil(c.Precautions), nonNil(c.Contraindicated), nonNil(c.EvaluatedRedFlags),
		c.Notes, nullID(c.RequestedBy), c.Question, nullTime(c.IssueTime),
		suspendedBy, flag, observation, suspendTime, revokedBy, revokeReason, revokeTime,
		nullID(c.SupersededBy), nullTime(c.SupersedeTime), c.Version, c.CreateTime, c.UpdateTime}
}

func (t *tx) InsertClearance(ctx context.Context, c *careteam.Clearance) error {
	err := t.exec(ctx, `
		INSERT INTO clearances (id, patient_id, referral_id, physician_id, decision, status, valid_from, valid_until,
			precautions, contraindicated, evaluated_red_flags, notes, requested_by, question, issue_time,
			suspended_by, suspension_red_flag, suspension_observation, suspend_time,
			revoked_by, revoke_reason, revoke_time, superseded_by, supersede_time, version, create_time, update_time)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27)`,
		clearanceArgs(c)...)
	return err
}

func (t *tx) UpdateClearance(ctx context.Context, c *careteam.Clearance) error {
	err := t.exec(ctx, `
		UPDATE clearances SET patient_id = $2, referral_id = $3, physician_id = $4, decision = $5, status = $6,
			valid_from = $7, valid_until = $8, precautions = $9, contraindicated = $10, evaluated_red_flags = $11,
			notes = $12, requested_by = $13, question = $14, issue_time = $15,
			suspended_by = $16, suspension_red_flag = $17, suspension_observation = $18, suspend_time = $19,
			revoked_by = $20, revoke_reason = $21, revoke_time = $22, superseded_by = $23, supersede_time = $24,
			version = $25, create_time = $26, update_time = $27
		WHERE id = $1`, clearanceArgs(c)...)
	return err
}

// clearanceVisible is the SQL form of a scope over clearances c of patients
// p: those of the patients it shows, and those naming its ClearancesOf.
func clearanceVisible(s careteam.PatientScope, args pgx.NamedArgs) string {
	visible := patientVisible(s, args)
	if s.ClearancesOf == uuid.Nil {
		return visible
	}
	args["cs_of"] = s.ClearancesOf
	return "(" + visible + " OR c.physician_id = @cs_of)"
}

func (t *tx) GetClearance(ctx context.Context, id uuid.UUID, scope careteam.PatientScope, forUpdate bool) (*careteam.Clearance, error) {
	args := pgx.NamedArgs{"id": id}
	q := `SELECT ` + clearanceColumns + ` FROM clearances c JOIN patients p ON p.id = c.patient_id
		WHERE c.id = @id AND ` + clearanceVisible(scope, args)
	return getByID(ctx, t, "clearances", careteam.Clearances, id, forUpdate, q, args, scanClearance)
}

func (t *tx) ListClearances(ctx context.Context, scope careteam.PatientScope, f careteam.ClearanceFilter, page careteam.Page) ([]*careteam.Clearance, error) {
	args := pgx.NamedArgs{"limit": page.Size + 1, "now": f.Now}
	where := []string{clearanceVisible(scope, args)}
	if page.After != uuid.Nil {
		args["after"] = page.After
		where = append(where, `c.id < @after`)
	}
	if f.PatientID != uuid.Nil {
		args["patient"] = f.PatientID
		where = append(where, `c.patient_id = @patient`)
	}
	if f.ReferralID != uuid.Nil {
		args["referral"] = f.ReferralID
		where = append(where, `c.referral_id = @referral`)
	}
	// The derived statuses, as the domain's statusAt reads them.
	const (
		opened     = `(c.status = 'SCHEDULED' AND c.valid_from <= @now)`
		replaced   = `(c.superseded_by IS NOT NULL AND c.supersede_time <= @now)`
		inWindow   = `c.valid_until > @now`
		notReplace = `NOT ` + replaced
	)
	switch f.Status {
	case "":
	case careteam.ClearanceExpired:
		where = append(where, `(c.status = 'ACTIVE' OR `+opened+`) AND NOT `+inWindow+` AND `+notReplace)
	case careteam.ClearanceActive:
		where = append(where, `(c.status = 'ACTIVE' OR `+opened+`) AND `+inWindow+` AND `+notReplace)
	case careteam.ClearanceScheduled:
		where = append(where, `c.status = 'SCHEDULED' AND c.valid_from > @now`)
	case careteam.ClearanceSuperseded:
		where = append(where, `(c.status = 'SUPERSEDED' OR (c.status IN ('ACTIVE', 'SUSPENDED') AND `+replaced+`))`)
	case careteam.ClearanceSuspended:
		where = append(where, `c.status = 'SUSPENDED' AND `+notReplace)
	default:
		args["status"] = f.Status
		where = append(where, `c.status = @status`)
	}
	rows, err := t.query(ctx, `SELECT `+clearanceColumns+` FROM clearances c JOIN patients p ON p.id = c.patient_id
		WHERE `+strings.Join(where, " AND ")+` ORDER BY c.id DESC LIMIT @limit`, args)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanClearance)
}

// ScopeClearances and ClearancesInForce lock what they return in id order,
// as every caller that locks several clearances does.
func (t *tx) ScopeClearances(ctx context.Context, patient, referral uuid.UUID) ([]*careteam.Clearance, error) {
	return t.lockClearances(ctx, `c.patient_id = $1 AND c.referral_id IS NOT DISTINCT FROM $2`, patient, nullID(referral))
}

func (t *tx) ClearancesInForce(ctx context.Context, patient uuid.UUID) ([]*careteam.Clearance, error) {
	return t.lockClearances(ctx, `c.patient_id = $1`, patient)
}

// lockClearances locks, then reads, the clearances in force or scheduled
// that match where (see lockAndGet for why in two statements).
func (t *tx) lockClearances(ctx context.Context, where string, args ...any) ([]*careteam.Clearance, error) {
	where += ` AND c.status IN ('ACTIVE', 'SUSPENDED', 'SCHEDULED')`
	if err := t.exec(ctx, `SELECT 1 FROM clearances c WHERE `+where+` ORDER BY c.id FOR NO KEY UPDATE`, args...); err != nil {
		return nil, err
	}
	rows, err := t.query(ctx, `SELECT `+clearanceColumns+` FROM clearances c WHERE `+where+` ORDER BY c.id`, args...)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanClearance)
}

func (t *tx) ClaimScheduledPatients(ctx context.Context, now time.Time, limit int) ([]uuid.UUID, error) {
	rows, err := t.query(ctx, `
		SELECT p.id FROM patients p
		WHERE p.id IN (SELECT c.patient_id FROM clearances c WHERE c.status = 'SCHEDULED' AND c.valid_from <= $1)
		ORDER BY p.id LIMIT $2 FOR NO KEY UPDATE SKIP LOCKED`, now, limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
}

func (t *tx) ReferralsCoveredBy(ctx context.Context, c *careteam.Clearance, states []careteam.ReferralState) ([]*careteam.Referral, error) {
	args := pgx.NamedArgs{"patient": c.PatientID, "states": states}
	var cover string
	if c.ReferralID != uuid.Nil {
		args["referral"] = c.ReferralID
		cover = `r.id = @referral`
	} else {
		// A patient-wide clearance governs the referrals that have no
		// clearance of their own in force.
		cover = `NOT EXISTS (SELECT 1 FROM clearances o WHERE o.referral_id = r.id AND o.status IN ('ACTIVE', 'SUSPENDED'))`
	}
	// Lock first, then read in a statement of its own (see lockAndGet).
	if err := t.exec(ctx, `SELECT 1 FROM referrals r WHERE r.patient_id = @patient AND r.state = ANY(@states) AND `+cover+
		` ORDER BY r.id FOR NO KEY UPDATE`, args); err != nil {
		return nil, err
	}
	rows, err := t.query(ctx, `SELECT `+referralColumns+` FROM referrals r
		WHERE r.patient_id = @patient AND r.state = ANY(@states) AND `+cover+` ORDER BY r.id`, args)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanReferral)
}

func (t *tx) GateClearances(ctx context.Context, patient, referral uuid.UUID) ([]*careteam.Clearance, error) {
	rows, err := t.query(ctx, `
		SELECT `+clearanceColumns+` FROM clearances c
		WHERE c.patient_id = $1 AND (c.referral_id IS NULL OR c.referral_id = $2)
		  AND c.status IN ('SCHEDULED', 'ACTIVE', 'SUSPENDED', 'REVOKED')`, patient, referral)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanClearance)
}

const consentColumns = `id, patient_id, organization_id, recorded_by, form_version, signed_date, signer, guardian_name, create_time`

func scanConsent(row pgx.Row) (*careteam.Consent, error) {
	var c careteam.Consent
	err := row.Scan(&c.ID, &c.PatientID, &c.OrganizationID, &c.RecordedBy, &c.FormVersion, &c.SignedDate, &c.Signer, &c.GuardianName, &c.CreateTime)
	c.SignedDate = c.SignedDate.UTC()
	return &c, err
}

func (t *tx) InsertConsent(ctx context.Context, c *careteam.Consent) error {
	err := t.exec(ctx, `INSERT INTO consents (`+consentColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		c.ID, c.PatientID, c.OrganizationID, c.RecordedBy, c.FormVersion, c.SignedDate, c.Signer, c.GuardianName, c.CreateTime)
	return err
}

func (t *tx) GetConsent(ctx context.Context, id uuid.UUID) (*careteam.Consent, error) {
	c, err := scanConsent(t.queryRow(ctx, `SELECT `+consentColumns+` FROM consents WHERE id = $1`, id))
	return c, notFound(err, careteam.Consents, id)
}

func (t *tx) ListConsents(ctx context.Context, patient uuid.UUID, page careteam.Page) ([]*careteam.Consent, error) {
	rows, err := t.query(ctx, `SELECT `+consentColumns+` FROM consents WHERE patient_id = $1 AND id > $2 ORDER BY id LIMIT $3`,
		patient, page.After, page.Size+1)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanConsent)
}

// GateSnapshot loads in one round trip what the session gate decides on:
// the referral (locked FOR NO KEY UPDATE when lock is set, so that visits are
// counted one start at a time), the therapist, the clearances that may
// govern (locked FOR SHARE, so that a concurrent revocation or suspension
// orders itself before or after the start, never in between), the red
// flags standing on the patient's record, and whether the therapist's
// practice holds the patient's consent signed by day. Each
// statement after the lock takes a fresh snapshot, so all see what the
// previous lock holder committed.
func (t *tx) GateSnapshot(ctx context.Context, referral uuid.UUID, scope careteam.ReferralScope, therapist uuid.UUID, day time.Time, lock bool) (*careteam.GateSnapshot, error) {
	if err := t.flush(ctx); err != nil {
		return nil, err
	}
	args := pgx.NamedArgs{"id": referral}
	forShare := ""
	b := &pgx.Batch{}
	if lock {
		// Lock order everywhere: patient, referrals, clearances. The
		// patient's row, shared, waits for a clearance being issued for the
		// patient, so the clearances read below include the new one.
		b.Queue(`SELECT 1 FROM patients WHERE id = (SELECT patient_id FROM referrals WHERE id = $1) FOR SHARE`, referral)
		b.Queue(`SELECT 1 FROM referrals WHERE id = $1 FOR NO KEY UPDATE`, referral)
		forShare = " FOR SHARE"
	}
	// A start saves the referral, so it reads it whole; a check only judges
	// it.
	columns := referralJudged
	if lock {
		columns = referralColumns
	}
	b.Queue(`SELECT `+columns+` FROM referrals r WHERE r.id = @id AND `+referralVisible(scope, args), args)
	b.Queue(`SELECT `+practitionerColumns+` FROM practitioners p WHERE p.id = $1`, therapist)
	b.Queue(`SELECT `+clearanceColumns+` FROM clearances c
		WHERE c.patient_id = (SELECT patient_id FROM referrals WHERE id = $1) AND (c.referral_id IS NULL OR c.referral_id = $1)
		  AND c.status IN ('SCHEDULED', 'ACTIVE', 'SUSPENDED', 'REVOKED')`+forShare, referral)
	b.Queue(findingsSQL+` WHERE f.patient_id = (SELECT patient_id FROM referrals WHERE id = $1) AND f.close_time IS NULL`+findingsGroup, referral)
	b.Queue(`SELECT EXISTS (SELECT 1 FROM consents
		WHERE patient_id = (SELECT patient_id FROM referrals WHERE id = $1)
		  AND organization_id = (SELECT organization_id FROM practitioners WHERE id = $2) AND signed_date <= $3)`,
		referral, therapist, day)
	br := t.tx.SendBatch(ctx, b)
	defer br.Close()
	if lock {
		for range 2 {
			var one int
			if err := br.QueryRow().Scan(&one); err != nil {
				return nil, notFound(err, careteam.Referrals, referral)
			}
		}
	}
	var snap careteam.GateSnapshot
	var err error
	if snap.Referral, err = scanReferral(br.QueryRow()); err != nil {
		return nil, notFound(err, careteam.Referrals, referral)
	}
	if snap.Therapist, err = scanPractitioner(br.QueryRow()); err != nil {
		return nil, notFound(err, careteam.Practitioners, therapist)
	}
	rows, err := br.Query()
	if err != nil {
		return nil, err
	}
	if snap.Clearances, err = collect(rows, scanClearance); err != nil {
		return nil, err
	}
	if rows, err = br.Query(); err != nil {
		return nil, err
	}
	if snap.Findings, err = collect(rows, scanFinding); err != nil {
		return nil, err
	}
	if err := br.QueryRow().Scan(&snap.ConsentOnFile); err != nil {
		return nil, err
	}
	return &snap, br.Close()
}
