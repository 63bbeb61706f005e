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

// The statuses; EXPIRED is derived from the window, never stored.
const (
	ClearanceRequested  ClearanceStatus = "REQUESTED"
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
	SupersededBy      uuid.UUID
	Version           int64
	CreateTime        time.Time
	UpdateTime        time.Time

	// EffectiveStatus is Status with expiry applied, set at read time.
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

func (c *Clearance) derive(now time.Time) {
	c.EffectiveStatus = c.Status
	if c.Status == ClearanceActive && !now.Before(c.ValidUntil) {
		c.EffectiveStatus = ClearanceExpired
	}
}

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

// unevaluatedRedFlags returns the red flags of the patient's active
// diagnoses that the clearance does not attest were evaluated.
func unevaluatedRedFlags(diagnoses []*Diagnosis, evaluated []RedFlag) []RedFlag {
	var missing []RedFlag
	for _, d := range diagnoses {
		if !d.Active() {
			continue
		}
		for _, rf := range d.RedFlags {
			if !slices.Contains(evaluated, rf) && !slices.Contains(missing, rf) {
				missing = append(missing, rf)
			}
		}
	}
	slices.Sort(missing)
	return missing
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
// row is locked so that decisions for one patient are made one at a time;
// the new clearance supersedes the one in force for the same scope, and the
// held referrals it now governs return to where they were, whichever
// clearance held them (superseded here, or suspended and since revoked).
func (s *Service) IssueClearance(ctx context.Context, p Principal, in Clearance, requested uuid.UUID, idem Idempotency) (*Clearance, error) {
	if err := authorizePhysician(p, "issue clearances"); err != nil {
		return nil, err
	}
	return mutate(ctx, s, p, "IssueClearance", idem,
		func(tx Tx) (*Clearance, uuid.UUID, error) {
			now := s.clock.Now()
			c := &in
			c.ID, c.Version, c.CreateTime = newID(), 1, now
			if requested != uuid.Nil {
				peek, err := s.readClearance(ctx, tx, p, requested, false)
				if err != nil {
					return nil, uuid.Nil, err
				}
				c.PatientID = peek.PatientID
			}
			if c.PatientID == uuid.Nil {
				return nil, uuid.Nil, &InvalidError{Violations: []FieldViolation{{Field: "clearance.patient", Description: "required"}}}
			}
			// Decisions for one patient are made one at a time; lock order
			// everywhere: patient, referrals, clearances.
			if _, err := s.getPatient(ctx, tx, p, c.PatientID, true); err != nil {
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
			diagnoses, err := tx.ListDiagnoses(ctx, c.PatientID, Page{Size: maxPageSize})
			if err != nil {
				return nil, uuid.Nil, err
			}
			if missing := unevaluatedRedFlags(diagnoses, c.EvaluatedRedFlags); len(missing) > 0 {
				names := make([]string, len(missing))
				for i, m := range missing {
					names[i] = string(m)
				}
				return nil, uuid.Nil, precondition("RED_FLAGS_NOT_EVALUATED", Patients.Name(c.PatientID),
					"the patient has active diagnoses with red flags the clearance must attest were evaluated: %s", strings.Join(names, ", "))
			}
			c.PhysicianID, c.Status, c.IssueTime, c.UpdateTime = p.PractitionerID, ClearanceActive, now, now
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
			if err := s.resumeHeld(ctx, tx, p, c, now); err != nil {
				return nil, uuid.Nil, err
			}
			if err := s.clearanceEvent(ctx, tx, EventClearanceIssued, c, p.PractitionerID); err != nil {
				return nil, uuid.Nil, err
			}
			c.derive(now)
			return c, c.ID, nil
		},
		func(tx Tx, id uuid.UUID) (*Clearance, error) { return s.readClearance(ctx, tx, p, id, false) })
}

// supersede retires the clearance in force for c's patient and scope.
func supersede(ctx context.Context, tx Tx, c *Clearance, now time.Time) error {
	current, err := tx.CurrentClearance(ctx, c.PatientID, c.ReferralID)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	current.Status, current.SupersededBy = ClearanceSuperseded, c.ID
	current.Version++
	current.UpdateTime = now
	return tx.UpdateClearance(ctx, current)
}

// resumeHeld returns the ON_HOLD referrals that the new clearance c governs
// to the state their hold began in, unless c does not clear the patient. A
// referral the gate still judges by another clearance (one of its own,
// suspended or revoked) stays held.
func (s *Service) resumeHeld(ctx context.Context, tx Tx, p Principal, c *Clearance, now time.Time) error {
	if c.Decision == DecisionNotCleared {
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
		if g := applicableClearance(cs, r.ID); g == nil || g.ID != c.ID {
			continue
		}
		r.transition(r.HeldFrom, p.PractitionerID, now, "new clearance "+Clearances.Name(c.ID), s.cfg.AckWindow, false)
		r.HeldFrom = ""
		if err := saveReferral(ctx, tx, r, now); err != nil {
			return err
		}
		tx.AppendEvent(referralEvent(EventReferralResumed, r, p.PractitionerID, now))
	}
	return nil
}

// SuspendClearance suspends a clearance in force because a red flag was
// found: no session can start, the referrals it covers go ON_HOLD and are
// marked for the physician's attention. The assigned therapist of a covered
// referral, or a physician who sees the patient.
func (s *Service) SuspendClearance(ctx context.Context, p Principal, id uuid.UUID, flag RedFlag, observation, etag string, idem Idempotency) (*Clearance, error) {
	return mutate(ctx, s, p, "SuspendClearance", idem,
		func(tx Tx) (*Clearance, uuid.UUID, error) {
			peek, err := s.readClearance(ctx, tx, p, id, false)
			if err != nil {
				return nil, uuid.Nil, err
			}
			// Lock order everywhere: patient, referrals, clearance.
			if _, err := tx.GetPatient(ctx, peek.PatientID, PatientScope{Any: true}, true); err != nil {
				return nil, uuid.Nil, err
			}
			covered, err := tx.ReferralsCoveredBy(ctx, peek, []ReferralState{ReferralAccepted, ReferralInProgress})
			if err != nil {
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
			now := s.clock.Now()
			if c.Status != ClearanceActive || c.EffectiveStatus == ClearanceExpired {
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
			for _, r := range covered {
				if checkTransition(r, actHold, now) != nil {
					continue
				}
				r.HeldFrom = r.State
				r.AttentionRequired = true
				r.transition(ReferralOnHold, p.PractitionerID, now, "clearance suspended: "+string(flag), s.cfg.AckWindow, false)
				if err := saveReferral(ctx, tx, r, now); err != nil {
					return nil, uuid.Nil, err
				}
				tx.AppendEvent(referralEvent(EventReferralOnHold, r, p.PractitionerID, now))
			}
			c.derive(now)
			return c, c.ID, nil
		},
		func(tx Tx, id uuid.UUID) (*Clearance, error) { return s.readClearance(ctx, tx, p, id, false) })
}

// RevokeClearance ends a clearance; a physician who sees the patient.
func (s *Service) RevokeClearance(ctx context.Context, p Principal, id uuid.UUID, reason, etag string, idem Idempotency) (*Clearance, error) {
	if err := authorizePhysician(p, "revoke clearances"); err != nil {
		return nil, err
	}
	return mutate(ctx, s, p, "RevokeClearance", idem,
		func(tx Tx) (*Clearance, uuid.UUID, error) {
			c, err := s.readClearance(ctx, tx, p, id, true)
			if err != nil {
				return nil, uuid.Nil, err
			}
			if err := checkEtag(etag, c.Version); err != nil {
				return nil, uuid.Nil, err
			}
			if c.Status != ClearanceActive && c.Status != ClearanceSuspended {
				return nil, uuid.Nil, precondition("CLEARANCE_STATE", Clearances.Name(c.ID), "only a clearance in force can be revoked; it is %s", c.EffectiveStatus)
			}
			now := s.clock.Now()
			c.Status = ClearanceRevoked
			c.Revocation = &Revocation{Actor: p.PractitionerID, Reason: reason, Time: now}
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

// RecordConsent records a patient's consent to massage for the caller's
// practice: a therapist or coordinator who sees the patient.
func (s *Service) RecordConsent(ctx context.Context, p Principal, c Consent, idem Idempotency) (*Consent, error) {
	if err := authorizeRecordConsent(p); err != nil {
		return nil, err
	}
	var f fields
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
