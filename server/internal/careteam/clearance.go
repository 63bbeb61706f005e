package careteam

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/careteam/careteam/server/internal/audit"
)

// ClearanceDecision is a physician's decision.
type ClearanceDecision string

// The decisions.
const (
	DecisionCleared                ClearanceDecision = "CLEARED"
	DecisionClearedWithPrecautions ClearanceDecision = "CLEARED_WITH_PRECAUTIONS"
	DecisionNotCleared             ClearanceDecision = "NOT_CLEARED"
)

// ClearanceStatus is where a clearance stands.
type ClearanceStatus string

// The statuses. EXPIRED is derived from the window, never stored; a
// SCHEDULED clearance reads as ACTIVE from the moment its window opens, and
// the one it replaces as SUPERSEDED, before any write says so.
const (
	ClearanceRequested  ClearanceStatus = "REQUESTED"
	ClearanceScheduled  ClearanceStatus = "SCHEDULED"
	ClearanceActive     ClearanceStatus = "ACTIVE"
	ClearanceSuspended  ClearanceStatus = "SUSPENDED"
	ClearanceRevoked    ClearanceStatus = "REVOKED"
	ClearanceSuperseded ClearanceStatus = "SUPERSEDED"
	ClearanceExpired    ClearanceStatus = "EXPIRED"
)

// PrecautionAction is what a precaution imposes.
type PrecautionAction string

// The precaution actions.
const (
	PrecautionAvoid         PrecautionAction = "AVOID"
	PrecautionLimitPressure PrecautionAction = "LIMIT_PRESSURE"
)

// Precaution is one structured rule: region x technique -> AVOID, or a
// maximum pressure. An empty region or technique means every one.
type Precaution struct {
	Region      BodyRegion       `json:"region,omitempty"`
	Technique   Technique        `json:"technique,omitempty"`
	Action      PrecautionAction `json:"action"`
	MaxPressure Pressure         `json:"max_pressure,omitempty"`
}

func (pc Precaution) covers(t Treatment) bool {
	return (pc.Region == "" || pc.Region == t.Region) && (pc.Technique == "" || pc.Technique == t.Technique)
}

func (pc Precaution) describe() string {
	region, technique := string(pc.Region), string(pc.Technique)
	if region == "" {
		region = "every region"
	}
	if technique == "" {
		technique = "every technique"
	}
	return technique + " on " + region
}

// Clearance is a physician's signed decision about a patient, or in status
// REQUESTED a request for one.
type Clearance struct {
	ID          uuid.UUID
	PatientID   uuid.UUID
	ReferralID  uuid.UUID // zero: every referral of the patient
	PhysicianID uuid.UUID
	Decision    ClearanceDecision
	Status      ClearanceStatus
	ValidFrom   time.Time
	ValidUntil  time.Time
	Precautions []Precaution
	// Contraindicated techniques must not be used at all.
	Contraindicated   []Technique
	EvaluatedRedFlags []RedFlag
	Notes             string
	RequestedBy       uuid.UUID
	Question          string
	IssueTime         time.Time
	Suspension        *Suspension
	Revocation        *Revocation
	// SupersededBy is the clearance that replaces this one, from
	// SupersedeTime: the moment it was issued, or for a scheduled successor
	// the opening of its window.
	SupersededBy  uuid.UUID
	SupersedeTime time.Time
	Version       int64
	CreateTime    time.Time
	UpdateTime    time.Time

	// EffectiveStatus is the status at read time (see statusAt).
	EffectiveStatus ClearanceStatus
}

// Suspension records why a clearance was suspended.
type Suspension struct {
	Actor       uuid.UUID
	RedFlag     RedFlag
	Observation string
	Time        time.Time
}

// Revocation records why a clearance was revoked.
type Revocation struct {
	Actor  uuid.UUID
	Reason string
	Time   time.Time
}

// statusAt is the clearance's status at now: a scheduled clearance is
// ACTIVE once its window opens, the clearance it replaces SUPERSEDED from
// that moment, and an active one EXPIRED once its window has passed.
func (c *Clearance) statusAt(now time.Time) ClearanceStatus {
	st := c.Status
	switch st {
	case ClearanceScheduled:
		if !now.Before(c.ValidFrom) {
			st = ClearanceActive
		}
	case ClearanceActive, ClearanceSuspended:
		if c.SupersededBy != uuid.Nil && !now.Before(c.SupersedeTime) {
			return ClearanceSuperseded
		}
	}
	if st == ClearanceActive && !now.Before(c.ValidUntil) {
		return ClearanceExpired
	}
	return st
}

func (c *Clearance) derive(now time.Time) { c.EffectiveStatus = c.statusAt(now) }

// ClearanceFilter narrows ListClearances.
type ClearanceFilter struct {
	PatientID  uuid.UUID
	ReferralID uuid.UUID
	Status     ClearanceStatus
	Now        time.Time
}

// Consent is a patient's informed consent to massage treatment.
type Consent struct {
	ID             uuid.UUID
	PatientID      uuid.UUID
	OrganizationID uuid.UUID
	RecordedBy     uuid.UUID
	FormVersion    string
	SignedDate     time.Time
	Signer         string // PATIENT or GUARDIAN
	GuardianName   string
	CreateTime     time.Time
}

// clearance validity bounds.
const (
	defaultClearanceValidity = 90 * 24 * time.Hour
	maxClearanceValidity     = 365 * 24 * time.Hour
)

// validateDecision checks an issued decision and fills its window.
func validateDecision(c *Clearance, now time.Time) error {
	var f fields
	if c.Decision == "" {
		f.add("clearance.decision", "required")
	}
	if c.Decision == DecisionClearedWithPrecautions && len(c.Precautions) == 0 {
		f.add("clearance.precautions", "CLEARED_WITH_PRECAUTIONS needs at least one precaution")
	}
	for i, pc := range c.Precautions {
		if pc.Action == PrecautionLimitPressure && pc.MaxPressure == "" {
			f.add(fmt.Sprintf("clearance.precautions[%d].max_pressure", i), "required with LIMIT_PRESSURE")
		}
	}
	if c.ValidFrom.IsZero() {
		c.ValidFrom = now
	}
	if c.ValidUntil.IsZero() {
		c.ValidUntil = c.ValidFrom.Add(defaultClearanceValidity)
	}
	switch {
	case !c.ValidUntil.After(c.ValidFrom):
		f.add("clearance.valid_until", "must be after valid_from")
	case c.ValidUntil.Sub(c.ValidFrom) > maxClearanceValidity:
		f.add("clearance.valid_until", "a clearance is valid for at most 365 days")
	case !c.ValidUntil.After(now):
		f.add("clearance.valid_until", "must be in the future")
	}
	slices.Sort(c.Contraindicated)
	c.Contraindicated = slices.Compact(c.Contraindicated)
	slices.Sort(c.EvaluatedRedFlags)
	c.EvaluatedRedFlags = slices.Compact(c.EvaluatedRedFlags)
	return f.err()
}

// readClearance loads a clearance of a patient the caller may see.
func (s *Service) readClearance(ctx context.Context, tx Tx, p Principal, id uuid.UUID, forUpdate bool) (*Clearance, error) {
	audit.Touch(ctx, Clearances.Name(id), uuid.Nil)
	scope, err := clinicalScope(p, !forUpdate)
	if err != nil {
		return nil, err
	}
	c, err := tx.GetClearance(ctx, id, scope, forUpdate)
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("%s: %w", Clearances.Name(id), ErrPermissionDenied)
	}
	if err != nil {
		return nil, err
	}
	audit.Touch(ctx, "", c.PatientID)
	if !forUpdate { // what is read for a write is saved again whole
		redactClearance(p, c)
	}
	c.derive(s.clock.Now())
	return c, nil
}

// GetClearance returns a clearance the caller may see.
func (s *Service) GetClearance(ctx context.Context, p Principal, id uuid.UUID) (*Clearance, error) {
	return read(ctx, s, func(tx Tx) (*Clearance, error) { return s.readClearance(ctx, tx, p, id, false) })
}

// ListClearances lists the clearances (and open requests) of the patients
// the caller may see, newest first.
func (s *Service) ListClearances(ctx context.Context, p Principal, f ClearanceFilter, page Page) ([]*Clearance, uuid.UUID, error) {
	scope, err := clinicalScope(p, f.PatientID != uuid.Nil)
	if err != nil {
		return nil, uuid.Nil, err
	}
	f.Now = s.clock.Now()
	rows, next, err := listPage(ctx, s, page,
		func(tx Tx, page Page) ([]*Clearance, error) { return tx.ListClearances(ctx, scope, f, page) },
		func(c *Clearance) uuid.UUID { return c.ID },
		func(c *Clearance) { audit.Touch(ctx, Clearances.Name(c.ID), c.PatientID) })
	if err != nil {
		return nil, uuid.Nil, err
	}
	for _, c := range rows {
		redactClearance(p, c)
		c.derive(f.Now)
	}
	return rows, next, nil
}

// RequestClearance asks a physician to clear a patient: the therapist a
// referral is assigned to, or a coordinator. Without a referral (a
// self-referred patient), the caller's practice must have registered the
// patient and names the physician, who then sees the patient.
func (s *Service) RequestClearance(ctx context.Context, p Principal, patient, referral, physician uuid.UUID, question string, idem Idempotency) (*Clearance, error) {
	if err := authorizeRequestClearance(p); err != nil {
		return nil, err
	}
	return mutate(ctx, s, p, "RequestClearance", idem,
		func(tx Tx) (*Clearance, uuid.UUID, error) {
			pt, err := s.getPatient(ctx, tx, p, patient, false)
			if err != nil {
				return nil, uuid.Nil, err
			}
			if referral != uuid.Nil {
				r, err := s.lockReferral(ctx, tx, p, referral, false)
				if err != nil {
					return nil, uuid.Nil, err
				}
				if r.PatientID != patient {
					return nil, uuid.Nil, &InvalidError{Violations: []FieldViolation{{Field: "referral", Description: "not a referral of the patient"}}}
				}
				if err := authorizeRequestClearanceFor(p, pt, r); err != nil {
					return nil, uuid.Nil, err
				}
				if physician == uuid.Nil {
					physician = r.ReferringPhysicianID
				}
			} else {
				if err := authorizeRequestClearanceFor(p, pt, nil); err != nil {
					return nil, uuid.Nil, err
				}
				if physician == uuid.Nil {
					return nil, uuid.Nil, &InvalidError{Violations: []FieldViolation{{Field: "physician", Description: "required without a referral"}}}
				}
			}
			doc, err := tx.GetPractitioner(ctx, physician, false)
			if err != nil {
				return nil, uuid.Nil, referenceError(err, "physician")
			}
			if doc.Role != RolePhysician || !doc.Active {
				return nil, uuid.Nil, &InvalidError{Violations: []FieldViolation{{Field: "physician", Description: "must be an active physician"}}}
			}
			now := s.clock.Now()
			c := &Clearance{
				ID: newID(), PatientID: patient, ReferralID: referral, PhysicianID: physician,
				Status: ClearanceRequested, RequestedBy: p.PractitionerID, Question: question,
				Version: 1, CreateTime: now, UpdateTime: now,
			}
			audit.Touch(ctx, Clearances.Name(c.ID), c.PatientID)
			if err := tx.InsertClearance(ctx, c); err != nil {
				return nil, uuid.Nil, err
			}
			if err := s.clearanceEvent(ctx, tx, EventClearanceRequested, c, p.PractitionerID); err != nil {
				return nil, uuid.Nil, err
			}
			c.derive(now)
			return c, c.ID, nil
		},
		func(tx Tx, id uuid.UUID) (*Clearance, error) { return s.readClearance(ctx, tx, p, id, false) })
}

// IssueClearance records a physician's decision. It may answer a request
// (requested != zero), taking patient and referral from it. The patient's
// row is locked so that decisions for one patient are made one at a time.
// Every red flag standing on the patient's record must be attested as
// evaluated, except for a NOT_CLEARED decision, which may always be made.
// A decision in force at once supersedes the clearances in force or
// scheduled for its scope, and the held referrals it now governs return to
// where they were; a decision whose window opens later is SCHEDULED and
// takes over then (settleClearances), leaving the current one in force.
func (s *Service) IssueClearance(ctx context.Context, p Principal, in Clearance, requested uuid.UUID, idem Idempotency) (*Clearance, error) {
	if err := authorizePhysician(p, "issue clearances"); err != nil {
		return nil, err
	}
	return mutate(ctx, s, p, "IssueClearance", idem,
		func(tx Tx) (*Clearance, uuid.UUID, error) {
			now := s.clock.Now()
			c := &in
			c.ID, c.Version, c.CreateTime = newID(), 1, now
			// An open request addressed to the caller is their way in to
			// the patient: answering it takes the patient on.
			answering := false
			if requested != uuid.Nil {
				peek, err := s.readClearance(ctx, tx, p, requested, false)
				if err != nil {
					return nil, uuid.Nil, err
				}
				c.PatientID = peek.PatientID
				answering = peek.Status == ClearanceRequested && peek.PhysicianID == p.PractitionerID
			}
			if c.PatientID == uuid.Nil {
				return nil, uuid.Nil, &InvalidError{Violations: []FieldViolation{{Field: "clearance.patient", Description: "required"}}}
			}
			lock := s.lockPatientRecord
			if answering {
				lock = s.lockAnsweredPatient
			}
			if err := lock(ctx, tx, p, c.PatientID, now); err != nil {
				return nil, uuid.Nil, err
			}
			if requested != uuid.Nil {
				req, err := s.readClearance(ctx, tx, p, requested, true)
				if err != nil {
					return nil, uuid.Nil, err
				}
				if req.Status != ClearanceRequested || req.PhysicianID != p.PractitionerID {
					return nil, uuid.Nil, precondition("CLEARANCE_STATE", Clearances.Name(req.ID), "not an open request addressed to the caller (status %s)", req.Status)
				}
				c.ID, c.Version, c.CreateTime = req.ID, req.Version+1, req.CreateTime
				c.ReferralID, c.RequestedBy, c.Question = req.ReferralID, req.RequestedBy, req.Question
			}
			if err := validateDecision(c, now); err != nil {
				return nil, uuid.Nil, err
			}
			if c.ReferralID != uuid.Nil {
				r, err := tx.GetReferral(ctx, c.ReferralID, ReferralScope{Any: true}, false)
				if err != nil {
					return nil, uuid.Nil, referenceError(err, "clearance.referral")
				}
				if r.PatientID != c.PatientID {
					return nil, uuid.Nil, &InvalidError{Violations: []FieldViolation{{Field: "clearance.referral", Description: "not a referral of the patient"}}}
				}
			}
			findings, err := tx.OpenRedFlagFindings(ctx, c.PatientID)
			if err != nil {
				return nil, uuid.Nil, err
			}
			if c.Decision != DecisionNotCleared {
				if v := unattestedFindings(findings, c.EvaluatedRedFlags); len(v) > 0 {
					return nil, uuid.Nil, &PreconditionError{Violations: v}
				}
			}
			c.PhysicianID, c.Status, c.IssueTime, c.UpdateTime = p.PractitionerID, ClearanceActive, now, now
			if c.ValidFrom.After(now) {
				c.Status = ClearanceScheduled
			}
			audit.Touch(ctx, Clearances.Name(c.ID), c.PatientID)
			if err := supersede(ctx, tx, c, now); err != nil {
				return nil, uuid.Nil, err
			}
			if requested != uuid.Nil {
				err = tx.UpdateClearance(ctx, c)
			} else {
				err = tx.InsertClearance(ctx, c)
			}
			if err != nil {
				return nil, uuid.Nil, err
			}
			if err := evaluateFindings(ctx, tx, c, findings, now); err != nil {
				return nil, uuid.Nil, err
			}
			if c.Status == ClearanceActive {
				if err := s.resumeHeld(ctx, tx, p.PractitionerID, c, now); err != nil {
					return nil, uuid.Nil, err
				}
			}
			if err := s.clearanceEvent(ctx, tx, EventClearanceIssued, c, p.PractitionerID); err != nil {
				return nil, uuid.Nil, err
			}
			c.derive(now)
			return c, c.ID, nil
		},
		func(tx Tx, id uuid.UUID) (*Clearance, error) { return s.readClearance(ctx, tx, p, id, false) })
}

// unattestedFindings returns, one violation each, the standing findings
// whose red flag a decision does not list as evaluated.
func unattestedFindings(findings []*RedFlagFinding, evaluated []RedFlag) []Violation {
	var v []Violation
	for _, f := range findings {
		if !slices.Contains(evaluated, f.Flag) {
			v = append(v, Violation{Type: ViolationRedFlagNotEvaluated, Subject: f.source(),
				Description: fmt.Sprintf("red flag %s, recorded %s, must be listed in evaluated_red_flags once evaluated", f.Flag, f.RecordTime.UTC().Format(time.RFC3339))})
		}
	}
	return v
}

// evaluateFindings records that clearance c attests the standing findings
// whose red flag it lists. A therapist's report is answered by it and
// stands no longer; a diagnosis' red flag stands while the diagnosis
// carries it, so each later decision attests it again.
func evaluateFindings(ctx context.Context, tx ClinicalStore, c *Clearance, findings []*RedFlagFinding, now time.Time) error {
	var evaluated, answered []uuid.UUID
	for _, f := range findings {
		if !slices.Contains(c.EvaluatedRedFlags, f.Flag) {
			continue
		}
		evaluated = append(evaluated, f.ID)
		if f.DiagnosisID == uuid.Nil {
			answered = append(answered, f.ID)
		}
	}
	if err := tx.EvaluateRedFlagFindings(ctx, c.ID, evaluated); err != nil {
		return err
	}
	return tx.CloseRedFlagFindings(ctx, answered, now)
}

// supersede retires what c replaces in its patient's scope: a decision in
// force at once retires the clearance in force and any scheduled one; a
// scheduled decision retires any other scheduled one and marks the one in
// force to be superseded when its own window opens.
func supersede(ctx context.Context, tx ClinicalStore, c *Clearance, now time.Time) error {
	scope, err := tx.ScopeClearances(ctx, c.PatientID, c.ReferralID)
	if err != nil {
		return err
	}
	for _, cur := range scope {
		if cur.ID == c.ID {
			continue
		}
		if c.Status == ClearanceScheduled && cur.Status != ClearanceScheduled {
			cur.SupersededBy, cur.SupersedeTime = c.ID, c.ValidFrom
		} else {
			cur.Status, cur.SupersededBy, cur.SupersedeTime = ClearanceSuperseded, c.ID, now
		}
		cur.Version++
		cur.UpdateTime = now
		if err := tx.UpdateClearance(ctx, cur); err != nil {
			return err
		}
	}
	return nil
}

// lockPatientRecord locks a patient's row for a change to their clinical
// record, then brings their scheduled clearances whose window has opened
// into force, so that the change sees stored statuses as they stand at now.
// Lock order everywhere: patient, referrals, clearances.
func (s *Service) lockPatientRecord(ctx context.Context, tx Tx, p Principal, patient uuid.UUID, now time.Time) error {
	if _, err := s.getPatient(ctx, tx, p, patient, true); err != nil {
		return err
	}
	return s.settleClearances(ctx, tx, p.PractitionerID, patient, now)
}

// lockAnsweredPatient is lockPatientRecord for a physician answering a
// request addressed to them, which the caller has checked: the request
// reaches the patient where no other relation does.
func (s *Service) lockAnsweredPatient(ctx context.Context, tx Tx, p Principal, patient uuid.UUID, now time.Time) error {
	if _, err := loadPatient(ctx, tx, patient, PatientScope{Any: true}, true); err != nil {
		return err
	}
	return s.settleClearances(ctx, tx, p.PractitionerID, patient, now)
}

// settleClearances brings into force the patient's scheduled clearances
// whose window has opened by now: each supersedes the clearance of its
// scope still in force, is announced (CLEARANCE_IN_FORCE) and resumes the
// held referrals it now governs. The gate does not wait for this: it judges
// every window at the moment of the start. The patient's row must be
// locked.
func (s *Service) settleClearances(ctx context.Context, tx Tx, actor, patient uuid.UUID, now time.Time) error {
	cs, err := tx.ClearancesInForce(ctx, patient)
	if err != nil {
		return err
	}
	for _, next := range cs {
		if next.Status != ClearanceScheduled || now.Before(next.ValidFrom) {
			continue
		}
		for _, cur := range cs {
			if cur.ReferralID != next.ReferralID || (cur.Status != ClearanceActive && cur.Status != ClearanceSuspended) {
				continue
			}
			cur.Status, cur.SupersededBy, cur.SupersedeTime = ClearanceSuperseded, next.ID, next.ValidFrom
			cur.Version++
			cur.UpdateTime = now
			if err := tx.UpdateClearance(ctx, cur); err != nil {
				return err
			}
		}
		next.Status = ClearanceActive
		next.Version++
		next.UpdateTime = now
		if err := tx.UpdateClearance(ctx, next); err != nil {
			return err
		}
		if err := s.resumeHeld(ctx, tx, actor, next, now); err != nil {
			return err
		}
		if err := s.clearanceEvent(ctx, tx, EventClearanceInForce, next, actor); err != nil {
			return err
		}
	}
	return nil
}

// SettleScheduledClearances brings into force the scheduled clearances
// whose window has opened, for up to limit patients, and returns how many
// patients it settled. Patients another transaction holds wait for a later
// sweep; replicas may sweep at once.
func (s *Service) SettleScheduledClearances(ctx context.Context, limit int) (int, error) {
	var n int
	err := s.store.InTx(ctx, func(tx Tx) error {
		now := s.clock.Now()
		patients, err := tx.ClaimScheduledPatients(ctx, now, limit)
		if err != nil {
			return err
		}
		for _, pt := range patients {
			if err := s.settleClearances(ctx, tx, uuid.Nil, pt, now); err != nil {
				return err
			}
		}
		n = len(patients)
		return nil
	})
	return n, err
}

// resumeHeld returns the ON_HOLD referrals that the clearance c, now in
// force, governs to the state their hold began in, unless c does not clear
// the patient or leaves a standing red flag unevaluated. A referral the gate
// still judges by another clearance (one of its own, suspended or revoked)
// stays held.
func (s *Service) resumeHeld(ctx context.Context, tx Tx, actor uuid.UUID, c *Clearance, now time.Time) error {
	if c.Decision == DecisionNotCleared {
		return nil
	}
	findings, err := tx.OpenRedFlagFindings(ctx, c.PatientID)
	if err != nil {
		return err
	}
	if len(unevaluatedFindings(findings, c)) > 0 {
		return nil
	}
	held, err := tx.ReferralsCoveredBy(ctx, c, []ReferralState{ReferralOnHold})
	if err != nil {
		return err
	}
	for _, r := range held {
		if err := checkTransition(r, actResume, now); err != nil {
			continue // expired while on hold: nothing to resume
		}
		cs, err := tx.GateClearances(ctx, r.PatientID, r.ID)
		if err != nil {
			return err
		}
		if g := applicableClearance(cs, r.ID, now); g == nil || g.ID != c.ID {
			continue
		}
		r.transition(r.HeldFrom, actor, now, "new clearance "+Clearances.Name(c.ID), s.cfg.AckWindow, false)
		r.HeldFrom = ""
		if err := saveReferral(ctx, tx, r, now); err != nil {
			return err
		}
		tx.AppendEvent(referralEvent(EventReferralResumed, r, actor, now))
	}
	return nil
}

// SuspendClearance suspends a clearance in force because a red flag was
// found: the red flag stands on the patient's record until a clearance
// attests it was evaluated, so no session of the patient starts under any
// clearance issued before it; the referrals being treated go ON_HOLD and are
// marked for the physician's attention. The assigned therapist of a
// referral the clearance covers, or a physician who sees the patient.
func (s *Service) SuspendClearance(ctx context.Context, p Principal, id uuid.UUID, flag RedFlag, observation, etag string, idem Idempotency) (*Clearance, error) {
	return mutate(ctx, s, p, "SuspendClearance", idem,
		func(tx Tx) (*Clearance, uuid.UUID, error) {
			peek, err := s.readClearance(ctx, tx, p, id, false)
			if err != nil {
				return nil, uuid.Nil, err
			}
			now := s.clock.Now()
			if _, err := tx.GetPatient(ctx, peek.PatientID, PatientScope{Any: true}, true); err != nil {
				return nil, uuid.Nil, err
			}
			if err := s.settleClearances(ctx, tx, p.PractitionerID, peek.PatientID, now); err != nil {
				return nil, uuid.Nil, err
			}
			covered, err := tx.ReferralsCoveredBy(ctx, peek, []ReferralState{ReferralAccepted, ReferralInProgress})
			if err != nil {
				return nil, uuid.Nil, err
			}
			// Every referral being treated is held below: lock them before
			// the clearance.
			if _, err := tx.LockPatientReferrals(ctx, peek.PatientID, []ReferralState{ReferralAccepted, ReferralInProgress}); err != nil {
				return nil, uuid.Nil, err
			}
			c, err := s.readClearance(ctx, tx, p, id, true)
			if err != nil {
				return nil, uuid.Nil, err
			}
			if err := authorizeSuspend(p, covered); err != nil {
				return nil, uuid.Nil, err
			}
			if err := checkEtag(etag, c.Version); err != nil {
				return nil, uuid.Nil, err
			}
			if c.EffectiveStatus != ClearanceActive {
				return nil, uuid.Nil, precondition("CLEARANCE_STATE", Clearances.Name(c.ID), "only an active clearance can be suspended; it is %s", c.EffectiveStatus)
			}
			c.Status = ClearanceSuspended
			c.Suspension = &Suspension{Actor: p.PractitionerID, RedFlag: flag, Observation: observation, Time: now}
			c.Version++
			c.UpdateTime = now
			if err := tx.UpdateClearance(ctx, c); err != nil {
				return nil, uuid.Nil, err
			}
			if err := s.clearanceEvent(ctx, tx, EventClearanceSuspended, c, p.PractitionerID); err != nil {
				return nil, uuid.Nil, err
			}
			report := &RedFlagFinding{ID: newID(), PatientID: c.PatientID, Flag: flag, ClearanceID: c.ID, ReportedBy: p.PractitionerID, RecordTime: now}
			if err := s.raiseFindings(ctx, tx, p, c.PatientID, []*RedFlagFinding{report}, c.ID, now); err != nil {
				return nil, uuid.Nil, err
			}
			c.derive(now)
			return c, c.ID, nil
		},
		func(tx Tx, id uuid.UUID) (*Clearance, error) { return s.readClearance(ctx, tx, p, id, false) })
}

// RevokeClearance ends a clearance in force, or one scheduled, which then
// never takes over; a physician who sees the patient.
func (s *Service) RevokeClearance(ctx context.Context, p Principal, id uuid.UUID, reason, etag string, idem Idempotency) (*Clearance, error) {
	if err := authorizePhysician(p, "revoke clearances"); err != nil {
		return nil, err
	}
	return mutate(ctx, s, p, "RevokeClearance", idem,
		func(tx Tx) (*Clearance, uuid.UUID, error) {
			peek, err := s.readClearance(ctx, tx, p, id, false)
			if err != nil {
				return nil, uuid.Nil, err
			}
			now := s.clock.Now()
			if err := s.lockPatientRecord(ctx, tx, p, peek.PatientID, now); err != nil {
				return nil, uuid.Nil, err
			}
			c, err := s.readClearance(ctx, tx, p, id, true)
			if err != nil {
				return nil, uuid.Nil, err
			}
			if err := checkEtag(etag, c.Version); err != nil {
				return nil, uuid.Nil, err
			}
			switch c.EffectiveStatus {
			case ClearanceActive, ClearanceSuspended, ClearanceScheduled:
			default:
				return nil, uuid.Nil, precondition("CLEARANCE_STATE", Clearances.Name(c.ID), "only a clearance in force or scheduled can be revoked; it is %s", c.EffectiveStatus)
			}
			if c.Status == ClearanceScheduled {
				// The clearance it was to replace stays in force.
				if err := unlinkSuccessor(ctx, tx, c, now); err != nil {
					return nil, uuid.Nil, err
				}
			}
			c.Status = ClearanceRevoked
			c.Revocation = &Revocation{Actor: p.PractitionerID, Reason: reason, Time: now}
			c.SupersededBy, c.SupersedeTime = uuid.Nil, time.Time{}
			c.Version++
			c.UpdateTime = now
			if err := tx.UpdateClearance(ctx, c); err != nil {
				return nil, uuid.Nil, err
			}
			if err := s.clearanceEvent(ctx, tx, EventClearanceRevoked, c, p.PractitionerID); err != nil {
				return nil, uuid.Nil, err
			}
			c.derive(now)
			return c, c.ID, nil
		},
		func(tx Tx, id uuid.UUID) (*Clearance, error) { return s.readClearance(ctx, tx, p, id, false) })
}

// unlinkSuccessor clears the pending supersession that the scheduled
// clearance next put on the clearance in force of its scope.
func unlinkSuccessor(ctx context.Context, tx ClinicalStore, next *Clearance, now time.Time) error {
	scope, err := tx.ScopeClearances(ctx, next.PatientID, next.ReferralID)
	if err != nil {
		return err
	}
	for _, cur := range scope {
		if cur.SupersededBy != next.ID || cur.Status == ClearanceSuperseded {
			continue
		}
		cur.SupersededBy, cur.SupersedeTime = uuid.Nil, time.Time{}
		cur.Version++
		cur.UpdateTime = now
		if err := tx.UpdateClearance(ctx, cur); err != nil {
			return err
		}
	}
	return nil
}

// RecordConsent records a patient's consent to massage for the caller's
// practice: a therapist or coordinator who sees the patient.
func (s *Service) RecordConsent(ctx context.Context, p Principal, c Consent, idem Idempotency) (*Consent, error) {
	if err := authorizeRecordConsent(p); err != nil {
		return nil, err
	}
	f := fieldsFor(ctx)
	if c.PatientID == uuid.Nil {
		f.add("consent.patient", "required")
	}
	if strings.TrimSpace(c.FormVersion) == "" {
		f.add("consent.form_version", "required")
	}
	now := s.clock.Now()
	if c.SignedDate.IsZero() {
		f.add("consent.signed_date", "required")
	} else if c.SignedDate.After(dateOf(now)) {
		f.add("consent.signed_date", "must not be in the future")
	}
	switch c.Signer {
	case "":
		f.add("consent.signer", "required")
	case "GUARDIAN":
		if strings.TrimSpace(c.GuardianName) == "" {
			f.add("consent.guardian_name", "required when a guardian signed")
		}
	}
	if err := f.err(); err != nil {
		return nil, err
	}
	c.ID, c.OrganizationID, c.RecordedBy, c.CreateTime = newID(), p.OrganizationID, p.PractitionerID, now
	return mutate(ctx, s, p, "RecordConsent", idem,
		func(tx Tx) (*Consent, uuid.UUID, error) {
			if _, err := s.getPatient(ctx, tx, p, c.PatientID, false); err != nil {
				return nil, uuid.Nil, err
			}
			audit.Touch(ctx, Consents.Name(c.ID), c.PatientID)
			if err := tx.InsertConsent(ctx, &c); err != nil {
				return nil, uuid.Nil, err
			}
			return &c, c.ID, s.consentEvent(ctx, tx, &c, p.PractitionerID)
		},
		func(tx Tx, id uuid.UUID) (*Consent, error) { return tx.GetConsent(ctx, id) })
}

// ListConsents lists a visible patient's consents.
func (s *Service) ListConsents(ctx context.Context, p Principal, patient uuid.UUID, page Page) ([]*Consent, uuid.UUID, error) {
	return listPage(ctx, s, page,
		func(tx Tx, page Page) ([]*Consent, error) {
			if _, err := s.getPatient(ctx, tx, p, patient, false); err != nil {
				return nil, err
			}
			return tx.ListConsents(ctx, patient, page)
		},
		func(c *Consent) uuid.UUID { return c.ID }, nil)
}
