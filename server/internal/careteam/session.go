package careteam

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/careteam/careteam/server/internal/audit"
)

// SessionState is where a session stands.
type SessionState string

// The session states.
const (
	SessionStarted   SessionState = "STARTED"
	SessionCompleted SessionState = "COMPLETED"
	SessionCancelled SessionState = "CANCELLED"
	SessionNoShow    SessionState = "NO_SHOW"
)

// NoteStatus is where a session note stands.
type NoteStatus string

// The note statuses.
const (
	NoteDraft  NoteStatus = "DRAFT"
	NoteSigned NoteStatus = "SIGNED"
)

// AdverseEvent is an unwanted reaction during or after a session.
type AdverseEvent struct {
	Description string
	Severity    Severity
}

// Signature seals a note.
type Signature struct {
	Signer        uuid.UUID
	Time          time.Time
	ContentSHA256 string
}

// Amendment is text appended to a signed note.
type Amendment struct {
	Author uuid.UUID
	Time   time.Time
	Reason string
	Text   string
}

// Note is a session's SOAP note.
type Note struct {
	Status          NoteStatus
	Subjective      string
	Objective       string
	Assessment      string
	Plan            string
	PainBefore      *int
	PainAfter       *int
	Oswestry        *int
	NeckDisability  *int
	RangeOfMotion   string
	Treatments      []Treatment
	DurationMinutes int
	AdverseEvent    *AdverseEvent
	DeviationReason string
	Signature       *Signature
	Amendments      []Amendment
}

// Session is one massage session under a referral (FHIR Encounter).
type Session struct {
	ID                 uuid.UUID
	ReferralID         uuid.UUID
	PatientID          uuid.UUID
	TherapistID        uuid.UUID
	ClearanceID        uuid.UUID
	State              SessionState
	Planned            []Treatment
	ScheduledStartTime time.Time
	StartTime          time.Time
	VisitNumber        int
	CancelReason       string
	CancelText         string
	Note               Note
	Version            int64
	CreateTime         time.Time
	UpdateTime         time.Time
}

// SessionFilter narrows ListSessions; zero fields do not filter.
type SessionFilter struct {
	ReferralID  uuid.UUID
	PatientID   uuid.UUID
	TherapistID uuid.UUID
	From, To    time.Time
	State       SessionState
}

// CheckResult is the gate's answer for a planned session.
type CheckResult struct {
	Allowed    bool
	Violations []Violation
	Clearance  uuid.UUID
}

// GateSnapshot is what the store loads for the gate in one round trip.
type GateSnapshot struct {
	Referral      *Referral
	Therapist     *Practitioner
	Clearances    []*Clearance
	Findings      []*RedFlagFinding
	ConsentOnFile bool
}

// The times a caller may send beside the gate's question. The gate judges
// the server's clock; a caller's time is a charting fact at most, allowed
// this far ahead of the server's clock (clock skew), and for a scheduled
// start this far behind it (a session that starts late the same day).
const (
	maxClockSkew = 5 * time.Minute
	maxLateStart = 12 * time.Hour
)

// checkCallerTime refuses a time that lies outside [now-behind, now+skew].
func checkCallerTime(f *fields, field string, t, now time.Time, behind time.Duration) {
	switch {
	case t.IsZero():
	case t.After(now.Add(maxClockSkew)):
		f.add(field, "a session starts now, on the server's clock; %s is %s ahead of it", t.UTC().Format(time.RFC3339), t.Sub(now).Round(time.Second))
	case t.Before(now.Add(-behind)):
		f.add(field, "%s is %s before the server's clock; at most %s is allowed", t.UTC().Format(time.RFC3339), now.Sub(t).Round(time.Second), behind)
	}
}

// gateFacts loads what the gate decides on inside tx, in one round trip,
// as of the server's clock: for a start (lock), the referral locked so that
// visits are counted one start at a time and the patient and clearances
// locked for share so that a concurrent revocation, suspension or red flag
// orders itself before or after, never between.
func (s *Service) gateFacts(ctx context.Context, tx Tx, p Principal, referral, therapist uuid.UUID, plan []Treatment, lock bool) (GateFacts, error) {
	audit.Touch(ctx, Referrals.Name(referral), uuid.Nil)
	scope, err := referralScope(p)
	if err != nil {
		return GateFacts{}, err
	}
	now := s.clock.Now()
	snap, err := tx.GateSnapshot(ctx, referral, scope, therapist, dateOf(now), lock)
	if errors.Is(err, ErrNotFound) {
		return GateFacts{}, fmt.Errorf("%s: %w", Referrals.Name(referral), ErrPermissionDenied)
	}
	if err != nil {
		return GateFacts{}, err
	}
	audit.Touch(ctx, "", snap.Referral.PatientID)
	return GateFacts{
		Referral: snap.Referral, Therapist: snap.Therapist, Clearances: snap.Clearances, Findings: snap.Findings,
		ConsentOnFile: snap.ConsentOnFile, Plan: plan, Now: now,
	}, nil
}

// CheckClearance answers, without side effects, whether a session could
// start now: the caller's own (a therapist), or, for a coordinator or the
// referring physician, a named therapist's. at, when set, must be the
// present within clock skew: the gate judges no other moment.
func (s *Service) CheckClearance(ctx context.Context, p Principal, referral, therapist uuid.UUID, at time.Time, plan []Treatment) (*CheckResult, error) {
	f := fieldsFor(ctx)
	checkCallerTime(&f, "session_time", at, s.clock.Now(), maxClockSkew)
	if err := f.err(); err != nil {
		return nil, err
	}
	if therapist == uuid.Nil {
		therapist = p.PractitionerID
	}
	var res *CheckResult
	err := s.store.Read(ctx, func(tx Tx) error {
		facts, err := s.gateFacts(ctx, tx, p, referral, therapist, plan, false)
		if err != nil {
			return err
		}
		if err := authorizeCheck(p, facts.Referral, therapist); err != nil {
			return err
		}
		c, v := Gate(facts)
		res = &CheckResult{Allowed: len(v) == 0, Violations: v}
		if c != nil {
			res.Clearance = c.ID
		}
		return nil
	})
	return res, err
}

// StartSession starts a session under the gate, in one transaction: the
// referral locked, the gate's facts loaded and judged at the server's
// clock, one visit used, the referral IN_PROGRESS from its first session.
// scheduled is the appointment's time as the practice charted it: kept on
// the session, bounded, and never judged.
func (s *Service) StartSession(ctx context.Context, p Principal, referral uuid.UUID, plan []Treatment, scheduled time.Time, idem Idempotency) (*Session, error) {
	if err := authorizeStartSession(p); err != nil {
		return nil, err
	}
	f := fieldsFor(ctx)
	if len(plan) == 0 {
		f.add("planned", "plan at least one treatment")
	}
	checkCallerTime(&f, "scheduled_start_time", scheduled, s.clock.Now(), maxLateStart)
	if err := f.err(); err != nil {
		return nil, err
	}
	return mutate(ctx, s, p, "StartSession", idem,
		func(tx Tx) (*Session, uuid.UUID, error) {
			facts, err := s.gateFacts(ctx, tx, p, referral, p.PractitionerID, plan, true)
			if err != nil {
				return nil, uuid.Nil, err
			}
			now := facts.Now
			r := facts.Referral
			c, v := Gate(facts)
			if len(v) > 0 {
				return nil, uuid.Nil, &PreconditionError{Violations: v}
			}
			r.UsedVisits++
			r.SessionsStarted++
			if r.State == ReferralAccepted {
				r.transition(ReferralInProgress, p.PractitionerID, now, "first session", s.cfg.AckWindow, false)
			}
			r.Version++
			r.UpdateTime = now
			if err := tx.UpdateReferral(ctx, r); err != nil {
				return nil, uuid.Nil, err
			}
			at := scheduled
			if at.IsZero() {
				at = now
			}
			ss := &Session{
				ID: newID(), ReferralID: r.ID, PatientID: r.PatientID, TherapistID: p.PractitionerID, ClearanceID: c.ID,
				State: SessionStarted, Planned: plan, ScheduledStartTime: at, StartTime: now, VisitNumber: r.SessionsStarted,
				Note: Note{Status: NoteDraft}, Version: 1, CreateTime: now, UpdateTime: now,
			}
			audit.Touch(ctx, Sessions.Name(ss.ID), ss.PatientID)
			if err := tx.InsertSession(ctx, ss); err != nil {
				return nil, uuid.Nil, err
			}
			tx.AppendEvent(sessionEvent(EventSessionStarted, ss, r, p.PractitionerID, now))
			return ss, ss.ID, nil
		},
		func(tx Tx, id uuid.UUID) (*Session, error) { return s.readSession(ctx, tx, p, id, false) })
}

// readSession loads a session the caller may see, redacted for their role.
func (s *Service) readSession(ctx context.Context, tx Tx, p Principal, id uuid.UUID, forUpdate bool) (*Session, error) {
	audit.Touch(ctx, Sessions.Name(id), uuid.Nil)
	scope, err := sessionScope(p)
	if err != nil {
		return nil, err
	}
	ss, err := tx.GetSession(ctx, id, scope, forUpdate)
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("%s: %w", Sessions.Name(id), ErrPermissionDenied)
	}
	if err != nil {
		return nil, err
	}
	audit.Touch(ctx, "", ss.PatientID)
	// A session read for a write is saved again: it must not lose what the
	// caller may not see.
	if !forUpdate {
		redactSession(p, ss)
	}
	return ss, nil
}
