package postgres

import (
	"context"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/careteam/careteam/server/internal/careteam"
)

// sessionVisible is the SQL form of a careteam.SessionScope over the
// sessions row aliased s.
func sessionVisible(scope careteam.SessionScope, args pgx.NamedArgs) string {
	or := sessionBranches(scope, args)
	if len(or) == 0 {
		return "false"
	}
	return "(" + strings.Join(or, " OR ") + ")"
}

// sessionBranches are the relations of a scope, each served by an index.
// A session carries its referral's parties, whose relations a referral
// scope names.
func sessionBranches(scope careteam.SessionScope, args pgx.NamedArgs) []string {
	var or []string
	if scope.Therapist != uuid.Nil {
		args["ss_therapist"] = scope.Therapist
		or = append(or, `s.therapist_id = @ss_therapist`)
	}
	rs := scope.Referrals
	if rs.Any {
		or = append(or, "true")
	}
	if rs.ReferringPhysician != uuid.Nil {
		args["ss_physician"] = rs.ReferringPhysician
		or = append(or, `s.referring_physician_id = @ss_physician`)
	}
	if rs.ReferralOrg != uuid.Nil {
		args["ss_org"] = rs.ReferralOrg
		or = append(or, `s.referring_org_id = @ss_org`, `s.target_org_id = @ss_org`)
	}
	if rs.Therapist != uuid.Nil {
		args["ss_referral_therapist"] = rs.Therapist
		or = append(or, `s.therapist_id = @ss_referral_therapist`)
	}
	return or
}

const sessionColumns = `s.id, s.referral_id, s.patient_id, s.therapist_id, s.clearance_id, s.state, s.planned,
	s.scheduled_start_time, s.start_time, s.visit_number, s.cancel_reason, s.cancel_text,
	s.note_status, s.subjective, s.objective, s.assessment, s.plan, s.pain_before, s.pain_after,
	s.oswestry_index, s.neck_disability_index, s.range_of_motion, s.treatments, s.duration_minutes,
	s.adverse_description, s.adverse_severity, s.deviation_reason, s.signed_by, s.sign_time, s.content_sha256,
	s.version, s.create_time, s.update_time,
	(SELECT coalesce(jsonb_agg(jsonb_build_object('author', a.author_id, 'time', a.time, 'reason', a.reason, 'text', a.text)
			ORDER BY a.seq), '[]')
	   FROM session_amendments a WHERE a.session_id = s.id)`

type amendmentJSON struct {
	Author uuid.UUID `json:"author"`
	Time   time.Time `json:"time"`
	Reason string    `json:"reason"`
	Text   string    `json:"text"`
}

func scanSession(row pgx.Row) (*careteam.Session, error) {
	var s careteam.Session
	n := &s.Note
	var adverseDescription string
	var adverseSeverity careteam.Severity
	var signedBy *uuid.UUID
	var signTime *time.Time
	var hash string
	var amendments []amendmentJSON
	err := row.Scan(&s.ID, &s.ReferralID, &s.PatientID, &s.TherapistID, &s.ClearanceID, &s.State, &s.Planned,
		&s.ScheduledStartTime, &s.StartTime, &s.VisitNumber, &s.CancelReason, &s.CancelText,
		&n.Status, &n.Subjective, &n.Objective, &n.Assessment, &n.Plan, &n.PainBefore, &n.PainAfter,
		&n.Oswestry, &n.NeckDisability, &n.RangeOfMotion, &n.Treatments, &n.DurationMinutes,
		&adverseDescription, &adverseSeverity, &n.DeviationReason, &signedBy, &signTime, &hash,
		&s.Version, &s.CreateTime, &s.UpdateTime, &amendments)
	if err != nil {
		return nil, err
	}
	if adverseDescription != "" || adverseSeverity != "" {
		n.AdverseEvent = &careteam.AdverseEvent{Description: adverseDescription, Severity: adverseSeverity}
	}
	if signedBy != nil {
		n.Signature = &careteam.Signature{Signer: *signedBy, Time: deref(signTime), ContentSHA256: hash}
	}
	for _, a := range amendments {
		n.Amendments = append(n.Amendments, careteam.Amendment(a))
	}
	return &s, nil
}

func (t *tx) InsertSession(ctx context.Context, s *careteam.Session) error {
	err := t.exec(ctx, `
		INSERT INTO sessions (id, referral_id, patient_id, therapist_id, clearance_id, state, planned,
			scheduled_start_time, start_time, visit_number, note_status, version, create_time, update_time,
			referring_physician_id, referring_org_id, target_org_id)
		SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14,
			r.referring_physician_id, r.referring_org_id, r.target_org_id
		FROM referrals r WHERE r.id = $2`,
		s.ID, s.ReferralID, s.PatientID, s.TherapistID, s.ClearanceID, s.State, s.Planned,
		s.ScheduledStartTime, s.StartTime, s.VisitNumber, s.Note.Status, s.Version, s.CreateTime, s.UpdateTime)
	return err
}

// UpdateSession saves the session and appends amendments not yet stored.
// The note's columns are written only while the stored note is a draft (the
// signature is their last write): there is no path here that changes a
// signed note, and the database refuses one too (00004_signed_notes).
func (t *tx) UpdateSession(ctx context.Context, s *careteam.Session) error {
	n := &s.Note
	var adverseDescription string
	var adverseSeverity careteam.Severity
	if a := n.AdverseEvent; a != nil {
		adverseDescription, adverseSeverity = a.Description, a.Severity
	}
	var signedBy *uuid.UUID
	var signTime *time.Time
	var hash string
	if sig := n.Signature; sig != nil {
		signedBy, signTime, hash = &sig.Signer, &sig.Time, sig.ContentSHA256
	}
	// The session's columns first: the database refuses any change to a
	// session whose note is signed, and signing changes its state.
	err := t.exec(ctx, `
		UPDATE sessions SET state = $2, cancel_reason = $3, cancel_text = $4, version = $5, update_time = $6
		WHERE id = $1`,
		s.ID, s.State, s.CancelReason, s.CancelText, s.Version, s.UpdateTime)
	if err != nil {
		return err
	}
	err = t.exec(ctx, `
		UPDATE sessions SET note_status = $2,
			subjective = $3, objective = $4, assessment = $5, plan = $6, pain_before = $7, pain_after = $8,
			oswestry_index = $9, neck_disability_index = $10, range_of_motion = $11, treatments = $12,
			duration_minutes = $13, adverse_description = $14, adverse_severity = $15, deviation_reason = $16,
			signed_by = $17, sign_time = $18, content_sha256 = $19
		WHERE id = $1 AND note_status = 'DRAFT'`,
		s.ID, n.Status,
		n.Subjective, n.Objective, n.Assessment, n.Plan, n.PainBefore, n.PainAfter,
		n.Oswestry, n.NeckDisability, n.RangeOfMotion, nonNil(n.Treatments),
		n.DurationMinutes, adverseDescription, adverseSeverity, n.DeviationReason,
		signedBy, signTime, hash)
	if err != nil || len(n.Amendments) == 0 {
		return err
	}
	type numbered struct {
		Seq int `json:"seq"`
		amendmentJSON
	}
	amendments := make([]numbered, len(n.Amendments))
	for i, a := range n.Amendments {
		amendments[i] = numbered{i, amendmentJSON(a)}
	}
	err = t.exec(ctx, `
		INSERT INTO session_amendments (session_id, seq, author_id, time, reason, text)
		SELECT $1, x.seq, x.author, x.time, x.reason, x.text
		FROM jsonb_to_recordset($2::jsonb) AS x(seq int, author uuid, time timestamptz, reason text, text text)
		WHERE x.seq >= (SELECT count(*) FROM session_amendments WHERE session_id = $1)`, s.ID, amendments)
	return err
}

func (t *tx) GetSession(ctx context.Context, id uuid.UUID, scope careteam.SessionScope, forUpdate bool) (*careteam.Session, error) {
	args := pgx.NamedArgs{"id": id}
	q := `SELECT ` + sessionColumns + ` FROM sessions s WHERE s.id = @id AND ` + sessionVisible(scope, args)
	return getByID(ctx, t, "sessions", careteam.Sessions, id, forUpdate, q, args, scanSession)
}

func (t *tx) ListSessions(ctx context.Context, scope careteam.SessionScope, f careteam.SessionFilter, page careteam.Page) ([]*careteam.Session, error) {
	args := pgx.NamedArgs{"limit": page.Size + 1}
	var where []string
	if page.After != uuid.Nil {
		args["after"] = page.After
		where = append(where, `s.id < @after`)
	}
	if f.ReferralID != uuid.Nil {
		args["referral"] = f.ReferralID
		where = append(where, `s.referral_id = @referral`)
	}
	if f.PatientID != uuid.Nil {
		args["patient"] = f.PatientID
		where = append(where, `s.patient_id = @patient`)
	}
	if f.TherapistID != uuid.Nil {
		args["therapist"] = f.TherapistID
		where = append(where, `s.therapist_id = @therapist`)
	}
	if !f.From.IsZero() {
		args["from"] = f.From
		where = append(where, `s.start_time >= @from`)
	}
	if !f.To.IsZero() {
		args["to"] = f.To
		where = append(where, `s.start_time < @to`)
	}
	if f.State != "" {
		args["state"] = f.State
		where = append(where, `s.state = @state`)
	}
	// As in ListReferrals: each relation reads its own newest page off its
	// index, and the union is cut to one page.
	filters := ""
	if len(where) > 0 {
		filters = " AND " + strings.Join(where, " AND ")
	}
	var parts []string
	for _, b := range sessionBranches(scope, args) {
		parts = append(parts, `(SELECT s.id FROM sessions s WHERE `+b+filters+` ORDER BY s.id DESC LIMIT @limit)`)
	}
	if len(parts) == 0 {
		return nil, nil
	}
	rows, err := t.query(ctx, `SELECT `+sessionColumns+` FROM sessions s WHERE s.id IN (`+strings.Join(parts, " UNION ALL ")+
		`) ORDER BY s.id DESC LIMIT @limit`, args)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanSession)
}

func (t *tx) ReferralSessions(ctx context.Context, referral uuid.UUID) ([]*careteam.Session, error) {
	rows, err := t.query(ctx, `SELECT `+sessionColumns+` FROM sessions s WHERE s.referral_id = $1 ORDER BY s.start_time, s.id`, referral)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanSession)
}
