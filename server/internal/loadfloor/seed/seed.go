// Package seed bulk-loads years of referral history into careteamd's
// tables for careteam-load's --scale. Unlike its parent loadfloor, it is
// careteam's own code on purpose: the rows it writes must be the ones
// careteamd would have written (states, signed notes' hashes), and it
// finds the practitioners through the domain.
package seed

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/careteam/careteam/server/internal/careteam"
)

// Spec says whose history Write writes: the practitioners it names by
// token subject send and receive the referrals, so that their worklists
// and lists read through the history, as those of a practice network with
// years of it would.
type Spec struct {
	// Referrals is how many referrals to write.
	Referrals int
	// Physicians refer (each for the patients Write registers at their
	// organization); Therapists receive and treat.
	Physicians []string
	Therapists []string
}

// Result counts what Write wrote.
type Result struct {
	Patients, Referrals, Transitions, Sessions int64
	// Copy is the time the rows took; Index the time spent rebuilding
	// indexes and analyzing the tables.
	Copy, Index time.Duration
}

// Progress is told, now and then, how far a seed is: the stage, and
// the rows copied of the rows to copy.
type Progress func(stage string, done, total int64)

// History shape, after the store's list benchmarks: three years of
// referrals, the last week mostly open work, the last validity period
// mostly treatment, older ones mostly completed.
const (
	seedHistory  = 3 * 365 * 24 * time.Hour
	seedValidity = 90 * 24 * time.Hour
	seedFresh    = 7 * 24 * time.Hour
	seedAck      = 48 * time.Hour
	seedVisits   = 6
	// referralsPerPatient sets how many patients share the referrals.
	referralsPerPatient = 4
)

type stateWeight struct {
	state  careteam.ReferralState
	weight int
}

var (
	seedFreshMix = []stateWeight{
		{careteam.ReferralDraft, 5}, {careteam.ReferralSubmitted, 25}, {careteam.ReferralAccepted, 30},
		{careteam.ReferralInProgress, 30}, {careteam.ReferralDeclined, 5}, {careteam.ReferralCancelled, 5},
	}
	seedActiveMix = []stateWeight{
		{careteam.ReferralSubmitted, 2}, {careteam.ReferralAccepted, 5}, {careteam.ReferralInProgress, 45},
		{careteam.ReferralOnHold, 3}, {careteam.ReferralCompleted, 36}, {careteam.ReferralDeclined, 4}, {careteam.ReferralCancelled, 5},
	}
	seedHistoryMix = []stateWeight{
		{careteam.ReferralCompleted, 880}, {careteam.ReferralCancelled, 50}, {careteam.ReferralDeclined, 40},
		{careteam.ReferralSubmitted, 5}, {careteam.ReferralAccepted, 10}, {careteam.ReferralInProgress, 15},
	}
	// seedChains are the transitions that lead to each state.
	seedChains = map[careteam.ReferralState][]careteam.ReferralState{
		careteam.ReferralDraft:      {careteam.ReferralDraft},
		careteam.ReferralSubmitted:  {careteam.ReferralDraft, careteam.ReferralSubmitted},
		careteam.ReferralAccepted:   {careteam.ReferralDraft, careteam.ReferralSubmitted, careteam.ReferralAccepted},
		careteam.ReferralDeclined:   {careteam.ReferralDraft, careteam.ReferralSubmitted, careteam.ReferralDeclined},
		careteam.ReferralInProgress: {careteam.ReferralDraft, careteam.ReferralSubmitted, careteam.ReferralAccepted, careteam.ReferralInProgress},
		careteam.ReferralOnHold: {careteam.ReferralDraft, careteam.ReferralSubmitted, careteam.ReferralAccepted,
			careteam.ReferralInProgress, careteam.ReferralOnHold},
		careteam.ReferralCompleted: {careteam.ReferralDraft, careteam.ReferralSubmitted, careteam.ReferralAccepted,
			careteam.ReferralInProgress, careteam.ReferralCompleted},
		careteam.ReferralCancelled: {careteam.ReferralDraft, careteam.ReferralSubmitted, careteam.ReferralCancelled},
	}
)

func pick(rng *rand.Rand, mix []stateWeight) careteam.ReferralState {
	total := 0
	for _, m := range mix {
		total += m.weight
	}
	n := rng.IntN(total)
	for _, m := range mix {
		if n < m.weight {
			return m.state
		}
		n -= m.weight
	}
	return mix[len(mix)-1].state
}

// seedPlan is the treatment every seeded session plans and records.
var seedPlan = []careteam.Treatment{{Region: "LUMBAR", Technique: "SWEDISH", Pressure: careteam.PressureMedium}}

// party is a resolved practitioner.
type party struct{ id, org uuid.UUID }

// seedRef is one generated referral, compact, so that a million fit
// easily; the rows of every table are made from it as they are copied.
type seedRef struct {
	id        uuid.UUID
	created   time.Time
	state     careteam.ReferralState
	patient   int32
	therapist int16 // index into therapists; -1 while unassigned (then target org is spa)
	spa       int16 // index into therapists whose org is the target
	sessions  int8
}

// Write writes spec.Referrals referrals with their history, and the
// sessions (signed notes but for an open last one) of those that reached
// treatment, to the database at databaseURL with COPY, for the load
// tool's --scale. It also registers a patient, with a patient-wide
// clearance, per four referrals. Rows are generated, not replayed through the service: a
// million referrals take minutes this way rather than hours.
//
// It is for load-test databases only. When it may (as the embedded
// database's superuser), it skips the foreign-key triggers, which the
// generator keeps satisfied, and it drops the referrals' and sessions'
// secondary indexes while copying and builds them again from their own
// definitions afterwards: writers of those tables wait meanwhile.
func Write(ctx context.Context, databaseURL string, spec Spec, progress Progress) (Result, error) {
	var res Result
	if spec.Referrals <= 0 {
		return res, nil
	}
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return res, errors.New("seed: the database URL is malformed")
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return res, fmt.Errorf("seed: %w", err)
	}
	defer pool.Close()
	if len(spec.Physicians) == 0 || len(spec.Therapists) == 0 {
		return res, errors.New("seed: seeding needs at least one physician and one therapist")
	}
	if progress == nil {
		progress = func(string, int64, int64) {}
	}
	resolve := func(subjects []string, role careteam.Role) ([]party, error) {
		out := make([]party, len(subjects))
		for i, s := range subjects {
			var p party
			var got careteam.Role
			if err := pool.QueryRow(ctx, `SELECT id, organization_id, role FROM practitioners WHERE subject = $1 AND active`, s).
				Scan(&p.id, &p.org, &got); err != nil {
				return nil, fmt.Errorf("seed: practitioner %s: %w", s, err)
			}
			if got != role {
				return nil, fmt.Errorf("seed: %s is a %s, not a %s", s, got, role)
			}
			out[i] = p
		}
		return out, nil
	}
	physicians, err := resolve(spec.Physicians, careteam.RolePhysician)
	if err != nil {
		return res, err
	}
	therapists, err := resolve(spec.Therapists, careteam.RoleTherapist)
	if err != nil {
		return res, err
	}

	began := time.Now()
	now := began.UTC().Truncate(time.Microsecond)
	rng := rand.New(rand.NewPCG(uint64(now.UnixNano()), uint64(spec.Referrals)))
	n := spec.Referrals
	patients := make([]seedPatient, max(n/referralsPerPatient, 1))
	patientTime := now.Add(-seedHistory - 24*time.Hour)
	for i := range patients {
		phys := rng.IntN(len(physicians))
		patients[i] = seedPatient{id: idAt(patientTime, rng), clearance: idAt(patientTime, rng), physician: int16(phys)}
	}
	refs := make([]seedRef, n)
	for i := range refs {
		created := now.Add(-seedHistory + time.Duration(float64(seedHistory)*(float64(i)+0.5)/float64(n)))
		var state careteam.ReferralState
		switch age := now.Sub(created); {
		case age < seedFresh:
			state = pick(rng, seedFreshMix)
		case age < seedValidity:
			state = pick(rng, seedActiveMix)
		default:
			state = pick(rng, seedHistoryMix)
		}
		th := int16(rng.IntN(len(therapists)))
		r := seedRef{id: idAt(created, rng), created: created, state: state, patient: int32(rng.IntN(len(patients))), therapist: th, spa: th}
		// Only referrals nobody accepted may still be addressed to the
		// practice rather than a therapist.
		if !slices.Contains(seedChains[state], careteam.ReferralAccepted) && rng.IntN(100) < 30 {
			r.therapist = -1
		}
		switch state {
		case careteam.ReferralInProgress, careteam.ReferralOnHold:
			r.sessions = int8(1 + rng.IntN(3))
		case careteam.ReferralCompleted:
			r.sessions = int8(2 + rng.IntN(3))
		}
		res.Sessions += int64(r.sessions)
		res.Transitions += int64(len(seedChains[state]))
		refs[i] = r
	}
	res.Patients, res.Referrals = int64(len(patients)), int64(n)

	g := &generator{now: now, refs: refs, patients: patients, physicians: physicians, therapists: therapists}
	if err := copyAll(ctx, cfg.ConnConfig, g, &res, progress); err != nil {
		return res, err
	}
	return res, nil
}

type seedPatient struct {
	id, clearance uuid.UUID
	physician     int16
}

// generator turns the compact referrals into rows.
type generator struct {
	now        time.Time
	refs       []seedRef
	patients   []seedPatient
	physicians []party
	therapists []party
}

func (g *generator) physicianOf(r *seedRef) party {
	return g.physicians[g.patients[r.patient].physician]
}

func (g *generator) therapistOf(r *seedRef) *uuid.UUID {
	if r.therapist < 0 {
		return nil
	}
	return &g.therapists[r.therapist].id
}

// stepTime spaces a referral's transitions over its age, a week apart at
// most, the submission within the hour.
func (g *generator) stepTime(r *seedRef, step int) time.Time {
	if step == 0 {
		return r.created
	}
	gap := min(g.now.Sub(r.created)/time.Duration(len(seedChains[r.state])+1), 7*24*time.Hour)
	if step == 1 {
		gap = min(gap, time.Hour)
	} else {
		gap *= time.Duration(step)
	}
	return r.created.Add(gap)
}

// actorOf is who made the transition to state.
func (g *generator) actorOf(r *seedRef, state careteam.ReferralState) uuid.UUID {
	switch state {
	case careteam.ReferralDraft, careteam.ReferralSubmitted, careteam.ReferralCancelled:
		return g.physicianOf(r).id
	}
	return g.therapists[r.spa].id
}

func (g *generator) referralRow(r *seedRef) []any {
	chain := seedChains[r.state]
	var submit, ackDue *time.Time
	var ackElapsed time.Duration
	if len(chain) > 1 {
		s := g.stepTime(r, 1)
		submit = &s
		if r.state == careteam.ReferralSubmitted {
			due := s.Add(seedAck) // the weekday rule is the server's; an approximation serves lists
			ackDue = &due
		} else {
			ackElapsed = min(g.stepTime(r, 2).Sub(s), seedAck)
		}
	}
	declineReason, declineText, cancelReason, discharge, held := "", "", "", "", ""
	switch r.state {
	case careteam.ReferralDeclined:
		declineReason, declineText = "NO_CAPACITY", "Fully booked until next month."
	case careteam.ReferralCancelled:
		cancelReason = "Patient moved away."
	case careteam.ReferralCompleted:
		discharge = "Goals met: pain reduced, range of motion restored."
	case careteam.ReferralOnHold:
		held = string(careteam.ReferralInProgress)
	}
	phys := g.physicianOf(r)
	return []any{r.id, g.patients[r.patient].id, phys.id, phys.org, g.therapistOf(r), g.therapists[r.spa].org,
		[]string{"M54.5"}, "Chronic low back pain, no red flags.", "ROUTINE", []string{"SWEDISH"},
		int32(seedVisits), int32(r.sessions), int32(r.sessions), r.created.Add(seedValidity), []string{}, string(r.state), held,
		declineReason, declineText, cancelReason, discharge, submit, ackElapsed, ackDue, int64(len(chain)),
		r.created, g.stepTime(r, len(chain)-1),
		// History: a seeded referral that expired before now is not news.
		!r.created.Add(seedValidity).After(g.now)}
}

var referralCols = []string{"id", "patient_id", "referring_physician_id", "referring_org_id", "target_therapist_id", "target_org_id",
	"reason_codes", "clinical_notes", "priority", "requested_techniques",
	"authorized_visits", "used_visits", "sessions_started", "valid_until", "required_specialties", "state", "held_from",
	"decline_reason", "decline_text", "cancel_reason", "discharge_summary", "submit_time", "ack_elapsed", "ack_due", "version",
	"create_time", "update_time", "expiry_announced"}

var transitionCols = []string{"referral_id", "seq", "from_state", "to_state", "actor_id", "time", "reason"}

var sessionCols = []string{"id", "referral_id", "patient_id", "therapist_id", "clearance_id", "state", "planned",
	"scheduled_start_time", "start_time", "visit_number", "note_status", "subjective", "objective", "assessment", "plan",
	"pain_before", "pain_after", "treatments", "duration_minutes", "signed_by", "sign_time", "content_sha256",
	"version", "create_time", "update_time", "referring_physician_id", "referring_org_id", "target_org_id"}

// sessionRows returns the referral's sessions: a visit every few days
// from its acceptance, each note signed an hour after it started but for
// the last of a referral still in treatment.
func (g *generator) sessionRows(r *seedRef, rng *rand.Rand, planJSON json.RawMessage) [][]any {
	if r.sessions == 0 {
		return nil
	}
	th := g.therapists[r.therapist]
	phys := g.physicianOf(r)
	accepted := g.stepTime(r, 2)
	rows := make([][]any, 0, r.sessions)
	for v := 1; v <= int(r.sessions); v++ {
		start := accepted.Add(time.Duration(v) * 3 * 24 * time.Hour)
		if start.After(g.now) {
			start = g.now.Add(-time.Duration(int(r.sessions)-v+1) * time.Hour)
		}
		ss := &careteam.Session{ID: idAt(start, rng), ReferralID: r.id, PatientID: g.patients[r.patient].id, TherapistID: th.id,
			ClearanceID: g.patients[r.patient].clearance, StartTime: start}
		open := v == int(r.sessions) && r.state != careteam.ReferralCompleted
		state, noteStatus := "COMPLETED", "SIGNED"
		var signedBy *uuid.UUID
		var signTime *time.Time
		var painBefore, painAfter *int32
		subjective, objective, assessment, planText, hash := "", "", "", "", ""
		treatments, duration := json.RawMessage("[]"), int32(0)
		version := int64(1)
		if !open {
			before, after := max(7-v, 0), max(5-v, 0)
			ss.Note = careteam.Note{
				Subjective: "Low back stiff in the morning.", Objective: "Paraspinal tension L3-L5.",
				Assessment: "Improving.", Plan: "Continue; heat at home.",
				PainBefore: &before, PainAfter: &after, Treatments: seedPlan, DurationMinutes: 60,
				Signature: &careteam.Signature{Signer: th.id, Time: start.Add(time.Hour)},
			}
			painBefore, painAfter = new(int32(before)), new(int32(after))
			subjective, objective, assessment, planText = ss.Note.Subjective, ss.Note.Objective, ss.Note.Assessment, ss.Note.Plan
			treatments, duration = planJSON, 60
			signedBy, signTime = &th.id, &ss.Note.Signature.Time
			hash = careteam.NoteHash(ss)
			version = 3
		} else {
			state, noteStatus = "STARTED", "DRAFT"
		}
		update := start
		if signTime != nil {
			update = *signTime
		}
		rows = append(rows, []any{ss.ID, r.id, ss.PatientID, th.id, ss.ClearanceID, state, planJSON,
			start, start, int32(v), noteStatus, subjective, objective, assessment, planText,
			painBefore, painAfter, treatments, duration, signedBy, signTime, hash, version, start, update,
			phys.id, phys.org, g.therapists[r.spa].org})
	}
	return rows
}

// copyAll copies parents first (in case the foreign keys are checked),
// then the referrals and the sessions on one connection each and the
// transitions on a third, then rebuilds the dropped indexes and analyzes.
func copyAll(ctx context.Context, connCfg *pgx.ConnConfig, g *generator, res *Result, progress Progress) error {
	began := time.Now()
	checked := false
	var conns []*pgx.Conn
	defer func() {
		for _, c := range conns {
			c.Close(context.WithoutCancel(ctx))
		}
	}()
	for range 3 {
		conn, err := pgx.ConnectConfig(ctx, connCfg.Copy())
		if err != nil {
			return fmt.Errorf("seed: %w", err)
		}
		conns = append(conns, conn)
		// Skipping the foreign-key triggers makes the copy several times
		// faster; only a superuser may, and the generator keeps the keys
		// valid.
		if _, err := conn.Exec(ctx, `SET session_replication_role = replica`); err != nil {
			checked = true
		}
	}
	copyRows := func(conn *pgx.Conn, table string, cols []string, src pgx.CopyFromSource) error {
		if _, err := conn.CopyFrom(ctx, pgx.Identifier{table}, cols, binaryIDs{src}); err != nil {
			return fmt.Errorf("seed: copying %s: %w", table, err)
		}
		return nil
	}

	// Patients and their patient-wide clearances.
	rng := rand.New(rand.NewPCG(7, uint64(len(g.refs))))
	progress("patients", 0, int64(len(g.patients)))
	patientTime := g.now.Add(-seedHistory - 24*time.Hour)
	i := 0
	err := copyRows(conns[0], "patients", []string{"id", "organization_id", "registered_by", "given_name", "family_name",
		"birth_date", "gender", "version", "create_time", "update_time"},
		pgx.CopyFromFunc(func() ([]any, error) {
			if i == len(g.patients) {
				return nil, nil
			}
			p := &g.patients[i]
			phys := g.physicians[p.physician]
			i++
			return []any{p.id, phys.org, phys.id, fmt.Sprintf("Given%d", i), fmt.Sprintf("Seeded%d", i%5000),
				time.Date(1940+rng.IntN(65), time.Month(1+rng.IntN(12)), 1+rng.IntN(28), 0, 0, 0, 0, time.UTC),
				[...]string{"FEMALE", "MALE"}[rng.IntN(2)], int64(1), patientTime, patientTime}, nil
		}))
	if err != nil {
		return err
	}
	i = 0
	err = copyRows(conns[0], "clearances", []string{"id", "patient_id", "physician_id", "decision", "status", "valid_from",
		"valid_until", "issue_time", "version", "create_time", "update_time"},
		pgx.CopyFromFunc(func() ([]any, error) {
			if i == len(g.patients) {
				return nil, nil
			}
			p := &g.patients[i]
			i++
			return []any{p.clearance, p.id, g.physicians[p.physician].id, "CLEARED", "ACTIVE", patientTime,
				g.now.Add(30 * 24 * time.Hour), patientTime, int64(1), patientTime, patientTime}, nil
		}))
	if err != nil {
		return err
	}
	progress("patients", int64(len(g.patients)), int64(len(g.patients)))

	// Secondary indexes are built once at the end rather than updated a
	// row at a time: for a large seed that is most of the time saved.
	var indexes []string
	for _, table := range []string{"referrals", "sessions"} {
		defs, err := dropIndexes(ctx, conns[0], table)
		if err != nil {
			return err
		}
		indexes = append(indexes, defs...)
	}

	plan, err := json.Marshal(seedPlan)
	if err != nil {
		return err
	}
	total := res.Referrals + res.Sessions + res.Transitions
	var done atomic.Int64
	counted := func(src func() ([]any, error)) pgx.CopyFromSource {
		return pgx.CopyFromFunc(func() ([]any, error) {
			row, err := src()
			if row != nil {
				if d := done.Add(1); d%20000 == 0 {
					progress("referrals, transitions, sessions", d, total)
				}
			}
			return row, err
		})
	}
	errs := make([]error, 3)
	var wg sync.WaitGroup
	wg.Go(func() {
		i := 0
		errs[0] = copyRows(conns[0], "referrals", referralCols, counted(func() ([]any, error) {
			if i == len(g.refs) {
				return nil, nil
			}
			i++
			return g.referralRow(&g.refs[i-1]), nil
		}))
	})
	wg.Go(func() {
		if checked {
			return // after the referrals, below
		}
		errs[1] = copyTransitions(conns[1], g, copyRows, counted)
	})
	wg.Go(func() {
		if checked {
			return
		}
		errs[2] = copySessions(conns[2], g, plan, copyRows, counted)
	})
	wg.Wait()
	if checked && errs[0] == nil {
		errs[1] = copyTransitions(conns[1], g, copyRows, counted)
		errs[2] = copySessions(conns[2], g, plan, copyRows, counted)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	progress("referrals, transitions, sessions", total, total)
	res.Copy = time.Since(began)

	indexed := time.Now()
	// Two connections build the indexes, one per core of a small machine.
	var next atomic.Int64
	var ierrs [2]error
	for w := range ierrs {
		wg.Go(func() {
			for {
				k := int(next.Add(1)) - 1
				if k >= len(indexes) {
					return
				}
				progress("indexes", int64(k), int64(len(indexes)))
				if _, err := conns[w].Exec(ctx, indexes[k]); err != nil {
					ierrs[w] = fmt.Errorf("seed: rebuilding an index: %w", err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(ierrs[:]...); err != nil {
		return err
	}
	progress("vacuum and analyze", 0, 1)
	if _, err := conns[0].Exec(ctx, `VACUUM (ANALYZE) patients, clearances, referrals, referral_transitions, sessions`); err != nil {
		return fmt.Errorf("seed: vacuum: %w", err)
	}
	progress("vacuum and analyze", 1, 1)
	res.Index = time.Since(indexed)
	return nil
}

func copyTransitions(conn *pgx.Conn, g *generator,
	copyRows func(*pgx.Conn, string, []string, pgx.CopyFromSource) error, counted func(func() ([]any, error)) pgx.CopyFromSource) error {
	i, step := 0, 0
	return copyRows(conn, "referral_transitions", transitionCols, counted(func() ([]any, error) {
		for i < len(g.refs) && step == len(seedChains[g.refs[i].state]) {
			i, step = i+1, 0
		}
		if i == len(g.refs) {
			return nil, nil
		}
		r := &g.refs[i]
		chain := seedChains[r.state]
		from, reason := "", ""
		if step > 0 {
			from = string(chain[step-1])
		}
		switch chain[step] {
		case careteam.ReferralDeclined:
			reason = "NO_CAPACITY: Fully booked until next month."
		case careteam.ReferralCancelled:
			reason = "Patient moved away."
		}
		row := []any{r.id, int32(step), from, string(chain[step]), g.actorOf(r, chain[step]), g.stepTime(r, step), reason}
		step++
		return row, nil
	}))
}

func copySessions(conn *pgx.Conn, g *generator, plan json.RawMessage,
	copyRows func(*pgx.Conn, string, []string, pgx.CopyFromSource) error, counted func(func() ([]any, error)) pgx.CopyFromSource) error {
	rng := rand.New(rand.NewPCG(11, uint64(len(g.refs))))
	i := 0
	var pending [][]any
	return copyRows(conn, "sessions", sessionCols, counted(func() ([]any, error) {
		for len(pending) == 0 {
			if i == len(g.refs) {
				return nil, nil
			}
			pending = g.sessionRows(&g.refs[i], rng, plan)
			i++
		}
		row := pending[0]
		pending = pending[1:]
		return row, nil
	}))
}

// dropIndexes drops table's indexes that back no constraint and returns
// their definitions, to be run again once the rows are in.
func dropIndexes(ctx context.Context, conn *pgx.Conn, table string) ([]string, error) {
	rows, err := conn.Query(ctx, `SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() AND tablename = $1
		AND indexname NOT IN (SELECT conname FROM pg_constraint WHERE conrelid = $1::regclass)`, table)
	if err != nil {
		return nil, fmt.Errorf("seed: listing indexes: %w", err)
	}
	type index struct{ name, def string }
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (index, error) {
		var ix index
		err := r.Scan(&ix.name, &ix.def)
		return ix, err
	})
	if err != nil {
		return nil, fmt.Errorf("seed: listing indexes: %w", err)
	}
	defs := make([]string, 0, len(list))
	for _, ix := range list {
		if _, err := conn.Exec(ctx, `DROP INDEX `+pgx.Identifier{ix.name}.Sanitize()); err != nil {
			return nil, fmt.Errorf("seed: dropping index %s: %w", ix.name, err)
		}
		defs = append(defs, ix.def)
	}
	return defs, nil
}

// binaryIDs hands pgx each uuid.UUID as [16]byte, which it encodes
// directly: a uuid.UUID goes through its driver.Valuer, a text detour that
// would take most of the copy's time.
type binaryIDs struct{ pgx.CopyFromSource }

func (s binaryIDs) Values() ([]any, error) {
	row, err := s.CopyFromSource.Values()
	for i, v := range row {
		switch v := v.(type) {
		case uuid.UUID:
			row[i] = [16]byte(v)
		case *uuid.UUID:
			row[i] = nil
			if v != nil {
				row[i] = [16]byte(*v)
			}
		}
	}
	return row, err
}

// idAt is a UUIDv7 for the instant t, as the server's ids are, so that
// newest-first by id is newest-first by creation as in production.
func idAt(t time.Time, rng *rand.Rand) uuid.UUID {
	var u uuid.UUID
	binary.BigEndian.PutUint64(u[0:8], uint64(t.UnixMilli())<<16|rng.Uint64()&0x0fff)
	binary.BigEndian.PutUint64(u[8:16], rng.Uint64())
	u[6] = 0x70 | u[6]&0x0f
	u[8] = 0x80 | u[8]&0x3f
	return u
}
