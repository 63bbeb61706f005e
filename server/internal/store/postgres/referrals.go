package postgres

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/careteam/careteam/server/internal/careteam"
)

// referralVisible is the SQL form of a careteam.ReferralScope over the
// referrals row aliased r.
func referralVisible(s careteam.ReferralScope, args pgx.NamedArgs) string {
	or := referralBranches(s, args)
	if len(or) == 0 {
		return "false"
	}
	return "(" + strings.Join(or, " OR ") + ")"
}

// referralBranches are the relations of a scope, each a condition an index
// serves; a referral is visible when any holds.
func referralBranches(s careteam.ReferralScope, args pgx.NamedArgs) []string {
	if s.Any {
		return []string{"true"}
	}
	var or []string
	if s.ReferringPhysician != uuid.Nil {
		args["rs_physician"] = s.ReferringPhysician
		or = append(or, `r.referring_physician_id = @rs_physician`)
	}
	if s.ReferralOrg != uuid.Nil {
		args["rs_org"] = s.ReferralOrg
		or = append(or, `r.referring_org_id = @rs_org`, `r.target_org_id = @rs_org`)
	}
	if s.Therapist != uuid.Nil {
		args["rs_therapist"], args["rs_therapist_org"] = s.Therapist, s.TherapistOrg
		or = append(or, `r.target_therapist_id = @rs_therapist`, `(r.target_therapist_id IS NULL AND r.target_org_id = @rs_therapist_org)`)
	}
	return or
}

const referralFields = `r.id, r.patient_id, r.referring_physician_id, r.referring_org_id, r.target_therapist_id, r.target_org_id,
	r.reason_diagnoses, r.reason_codes, r.clinical_notes, r.priority, r.requested_techniques,
	r.authorized_visits, r.used_visits, r.sessions_started, r.valid_until, r.required_specialties, r.state, r.held_from,
	r.decline_reason, r.decline_text, r.cancel_reason, r.discharge_summary, r.attention_required,
	r.submit_time, r.ack_elapsed, r.ack_due, r.version, r.create_time, r.update_time,
	r.reason_texts, r.patient_instruction, r.service_codes, r.service_text, r.valid_from`

// referralJudged is a referral without its history and questions, for a
// read that only judges it (the gate's dry run) and never saves it back:
// saving appends the history entries beyond those read.
const referralJudged = referralFields + `, '[]'::jsonb, '[]'::jsonb`

const referralColumns = referralFields + `,
	(SELECT coalesce(jsonb_agg(jsonb_build_object('from', t.from_state, 'to', t.to_state, 'actor', t.actor_id,
			'time', t.time, 'reason', t.reason) ORDER BY t.seq), '[]')
	   FROM referral_transitions t WHERE t.referral_id = r.id),
	(SELECT coalesce(jsonb_agg(jsonb_build_object('question', q.question, 'asked_by', q.asked_by, 'ask_time', q.ask_time,
			'answer', q.answer, 'answered_by', q.answered_by, 'answer_time', q.answer_time) ORDER BY q.seq), '[]')
	   FROM referral_questions q WHERE q.referral_id = r.id)`

// transitionJSON and questionJSON are how history and questions travel
// between SQL and Go.
type transitionJSON struct {
	Seq    int                    `json:"seq"`
	From   careteam.ReferralState `json:"from"`
	To     careteam.ReferralState `json:"to"`
	Actor  *uuid.UUID             `json:"actor"`
	Time   time.Time              `json:"time"`
	Reason string                 `json:"reason"`
}

type questionJSON struct {
	Seq        int        `json:"seq"`
	Question   string     `json:"question"`
	AskedBy    uuid.UUID  `json:"asked_by"`
	AskTime    time.Time  `json:"ask_time"`
	Answer     string     `json:"answer"`
	AnsweredBy *uuid.UUID `json:"answered_by"`
	AnswerTime *time.Time `json:"answer_time"`
}

func scanReferral(row pgx.Row) (*careteam.Referral, error) {
	var r careteam.Referral
	var target *uuid.UUID
	var submit, ackDue, validFrom *time.Time
	var history []transitionJSON
	var questions []questionJSON
	err := row.Scan(&r.ID, &r.PatientID, &r.ReferringPhysicianID, &r.ReferringOrgID, &target, &r.TargetOrgID,
		&r.ReasonDiagnoses, &r.ReasonCodes, &r.ClinicalNotes, &r.Priority, &r.RequestedTechniques,
		&r.AuthorizedVisits, &r.UsedVisits, &r.SessionsStarted, &r.ValidUntil, &r.RequiredSpecialties, &r.State, &r.HeldFrom,
		&r.DeclineReason, &r.DeclineText, &r.CancelReason, &r.DischargeSummary, &r.AttentionRequired,
		&submit, &r.AckElapsed, &ackDue, &r.Version, &r.CreateTime, &r.UpdateTime,
		&r.ReasonTexts, &r.PatientInstruction, &r.ServiceCodes, &r.ServiceText, &validFrom,
		&history, &questions)
	if err != nil {
		return nil, err
	}
	r.TargetTherapistID, r.SubmitTime, r.AckDue, r.ValidFrom = deref(target), deref(submit), deref(ackDue), deref(validFrom)
	for _, h := range history {
		r.History = append(r.History, careteam.StateChange{From: h.From, To: h.To, Actor: deref(h.Actor), Time: h.Time, Reason: h.Reason})
	}
	for _, q := range questions {
		r.InformationRequests = append(r.InformationRequests, careteam.InformationRequest{
			Question: q.Question, AskedBy: q.AskedBy, AskTime: q.AskTime,
			Answer: q.Answer, AnsweredBy: deref(q.AnsweredBy), AnswerTime: deref(q.AnswerTime),
		})
	}
	return &r, nil
}

func (t *tx) InsertReferral(ctx context.Context, r *careteam.Referral) error {
	err := t.exec(ctx, `
		INSERT INTO referrals (id, patient_id, referring_physician_id, referring_org_id, target_therapist_id, target_org_id,
			reason_diagnoses, reason_codes, clinical_notes, priority, requested_techniques, authorized_visits,
			valid_until, required_specialties, state, version, create_time, update_time,
			reason_texts, patient_instruction, service_codes, service_text, valid_from)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23)`,
		r.ID, r.PatientID, r.ReferringPhysicianID, r.ReferringOrgID, nullID(r.TargetTherapistID), r.TargetOrgID,
		nonNil(r.ReasonDiagnoses), nonNil(r.ReasonCodes), r.ClinicalNotes, r.Priority, nonNil(r.RequestedTechniques), r.AuthorizedVisits,
		r.ValidUntil, nonNil(r.RequiredSpecialties), r.State, r.Version, r.CreateTime, r.UpdateTime,
		nonNil(r.ReasonTexts), r.PatientInstruction, nonNil(r.ServiceCodes), r.ServiceText, nullTime(r.ValidFrom))
	if err != nil {
		return err
	}
	return t.saveReferralChildren(ctx, r)
}

func (t *tx) UpdateReferral(ctx context.Context, r *careteam.Referral) error {
	err := t.exec(ctx, `
		UPDATE referrals SET target_therapist_id = $2, target_org_id = $3, used_visits = $4, state = $5, held_from = $6,
			decline_reason = $7, decline_text = $8, cancel_reason = $9, discharge_summary = $10,
			attention_required = $11, submit_time = $12, ack_elapsed = $13, ack_due = $14, version = $15, update_time = $16,
			sessions_started = $17
		WHERE id = $1`,
		r.ID, nullID(r.TargetTherapistID), r.TargetOrgID, r.UsedVisits, r.State, r.HeldFrom,
		r.DeclineReason, r.DeclineText, r.CancelReason, r.DischargeSummary,
		r.AttentionRequired, nullTime(r.SubmitTime), r.AckElapsed, nullTime(r.AckDue), r.Version, r.UpdateTime,
		r.SessionsStarted)
	if err != nil {
		return err
	}
	return t.saveReferralChildren(ctx, r)
}

// saveReferralChildren appends the transitions not yet stored (the row is
// locked, so none can appear meanwhile) and saves the questions with their
// answers: one statement each whatever their number.
func (t *tx) saveReferralChildren(ctx context.Context, r *careteam.Referral) error {
	history := make([]transitionJSON, len(r.History))
	for i, h := range r.History {
		history[i] = transitionJSON{Seq: i, From: h.From, To: h.To, Actor: nullID(h.Actor), Time: h.Time, Reason: h.Reason}
	}
	questions := make([]questionJSON, len(r.InformationRequests))
	for i, q := range r.InformationRequests {
		questions[i] = questionJSON{Seq: i, Question: q.Question, AskedBy: q.AskedBy, AskTime: q.AskTime,
			Answer: q.Answer, AnsweredBy: nullID(q.AnsweredBy), AnswerTime: nullTime(q.AnswerTime)}
	}
	hj, err := json.Marshal(history)
	if err != nil {
		return err
	}
	qj, err := json.Marshal(questions)
	if err != nil {
		return err
	}
	t.pending.Queue(`
		INSERT INTO referral_transitions (referral_id, seq, from_state, to_state, actor_id, time, reason)
		SELECT $1, x.seq, coalesce(x."from", ''), x."to", x.actor, x.time, x.reason
		FROM jsonb_to_recordset($2::jsonb) AS x(seq int, "from" text, "to" text, actor uuid, time timestamptz, reason text)
		WHERE x.seq >= (SELECT count(*) FROM referral_transitions WHERE referral_id = $1)`, r.ID, hj)
	if len(questions) > 0 {
		t.pending.Queue(`
			INSERT INTO referral_questions (referral_id, seq, question, asked_by, ask_time, answer, answered_by, answer_time)
			SELECT $1, x.seq, x.question, x.asked_by, x.ask_time, x.answer, x.answered_by, x.answer_time
			FROM jsonb_to_recordset($2::jsonb) AS x(seq int, question text, asked_by uuid, ask_time timestamptz,
				answer text, answered_by uuid, answer_time timestamptz)
			ON CONFLICT (referral_id, seq) DO UPDATE
			SET answer = excluded.answer, answered_by = excluded.answered_by, answer_time = excluded.answer_time`, r.ID, qj)
	}
	return nil
}

func (t *tx) ClaimExpiredReferrals(ctx context.Context, now time.Time, limit int) ([]*careteam.Referral, error) {
	// The states are spelled out, as in the predicate of the index
	// referrals_expiry_due, so that the planner can use it.
	rows, err := t.query(ctx, `
		WITH due AS (
			SELECT id FROM referrals
			WHERE NOT expiry_announced AND valid_until <= @now
			  AND state IN ('DRAFT', 'SUBMITTED', 'AWAITING_INFO', 'ACCEPTED', 'DECLINED', 'IN_PROGRESS', 'ON_HOLD')
			ORDER BY valid_until, id LIMIT @limit
			FOR NO KEY UPDATE SKIP LOCKED)
		UPDATE referrals r SET expiry_announced = true FROM due WHERE r.id = due.id
		RETURNING `+referralColumns, pgx.NamedArgs{"now": now, "limit": limit})
	if err != nil {
		return nil, err
	}
	return collect(rows, scanReferral)
}

func (t *tx) GetReferral(ctx context.Context, id uuid.UUID, scope careteam.ReferralScope, forUpdate bool) (*careteam.Referral, error) {
	args := pgx.NamedArgs{"id": id}
	q := `SELECT ` + referralColumns + ` FROM referrals r WHERE r.id = @id AND ` + referralVisible(scope, args)
	return getByID(ctx, t, "referrals", careteam.Referrals, id, forUpdate, q, args, scanReferral)
}

func (t *tx) ListReferrals(ctx context.Context, scope careteam.ReferralScope, f careteam.ReferralFilter, page careteam.Page) ([]*careteam.Referral, error) {
	args := pgx.NamedArgs{"limit": page.Size + 1, "now": f.Now, "expirable": careteam.ExpirableStates}
	var where []string
	if page.After != uuid.Nil {
		args["after"] = page.After
		where = append(where, `r.id < @after`)
	}
	if f.PatientID != uuid.Nil {
		args["patient"] = f.PatientID
		where = append(where, `r.patient_id = @patient`)
	}
	if f.TargetTherapistID != uuid.Nil {
		args["target_therapist"] = f.TargetTherapistID
		where = append(where, `r.target_therapist_id = @target_therapist`)
	}
	if f.TargetOrgID != uuid.Nil {
		args["target_org"] = f.TargetOrgID
		where = append(where, `r.target_org_id = @target_org`)
	}
	if f.ReferringPhysicianID != uuid.Nil {
		args["referring_physician"] = f.ReferringPhysicianID
		where = append(where, `r.referring_physician_id = @referring_physician`)
	}
	if f.Priority != "" {
		args["priority"] = f.Priority
		where = append(where, `r.priority = @priority`)
	}
	if f.RequiredSpecialty != "" {
		args["specialty"] = f.RequiredSpecialty
		where = append(where, `@specialty = ANY(r.required_specialties)`)
	}
	if len(f.States) > 0 {
		// EXPIRED is derived: an expirable state whose validity passed.
		var stored []careteam.ReferralState
		wantExpired := false
		for _, s := range f.States {
			if s == careteam.ReferralExpired {
				wantExpired = true
			} else {
				stored = append(stored, s)
			}
		}
		args["states"], args["want_expired"] = stored, wantExpired
		where = append(where, `((r.state = ANY(@states) AND (r.state <> ALL(@expirable) OR r.valid_until > @now))
			OR (@want_expired AND r.state = ANY(@expirable) AND r.valid_until <= @now))`)
	}
	if f.Overdue {
		where = append(where, `r.state = 'SUBMITTED' AND r.ack_due <= @now AND r.valid_until > @now`)
	}
	if !f.ChangedAfter.IsZero() {
		args["changed_after"] = f.ChangedAfter
		where = append(where, `r.update_time > @changed_after`)
	}
	if !f.ChangedBefore.IsZero() {
		args["changed_before"] = f.ChangedBefore
		where = append(where, `r.update_time < @changed_before`)
	}
	// No index returns an OR of relations newest first, and a backward scan
	// of the whole table finds a caller's few rows slowly; so each relation
	// reads its own newest page off its index, and the union is cut to one
	// page.
	filters := ""
	if len(where) > 0 {
		filters = " AND " + strings.Join(where, " AND ")
	}
	var parts []string
	for _, b := range referralBranches(scope, args) {
		parts = append(parts, `(SELECT r.id FROM referrals r WHERE `+b+filters+` ORDER BY r.id DESC LIMIT @limit)`)
	}
	if len(parts) == 0 {
		return nil, nil
	}
	rows, err := t.query(ctx, `SELECT `+referralColumns+` FROM referrals r WHERE r.id IN (`+strings.Join(parts, " UNION ALL ")+
		`) ORDER BY r.id DESC LIMIT @limit`, args)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanReferral)
}

// nonNil keeps a nil slice from being written as SQL NULL into a NOT NULL
// array column.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}
