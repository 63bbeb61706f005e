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

// validateReferral checks a new referral and fills its defaults.
func (s *Service) validateReferral(ctx context.Context, p Principal, r *Referral, now time.Time) error {
	f := fieldsFor(ctx)
	if r.PatientID == uuid.Nil {
		f.add("referral.patient", "required")
	}
	switch p.Role {
	case RolePhysician:
		if r.ReferringPhysicianID == uuid.Nil {
			r.ReferringPhysicianID = p.PractitionerID
		}
	case RoleCoordinator:
		if r.ReferringPhysicianID == uuid.Nil {
			f.add("referral.referring_physician", "required when a coordinator creates the referral")
		}
	}
	if r.TargetTherapistID == uuid.Nil && r.TargetOrgID == uuid.Nil {
		f.add("referral.target_therapist", "a target therapist or target organization is required")
	}
	if len(r.ReasonDiagnoses) == 0 && len(r.ReasonCodes) == 0 {
		f.add("referral.reason_codes", "at least one reason (a diagnosis or an ICD-10-CM code) is required")
	}
	for i, c := range r.ReasonCodes {
		code, ok := NormalizeICD10(c)
		if !ok {
			f.add(fmt.Sprintf("referral.reason_codes[%d]", i), "not an ICD-10-CM code")
		}
		r.ReasonCodes[i] = code
	}
	if r.AuthorizedVisits < 1 || r.AuthorizedVisits > maxAuthorizedVisits {
		f.add("referral.authorized_visits", "must be 1 to %d", maxAuthorizedVisits)
	}
	if r.ValidUntil.IsZero() {
		r.ValidUntil = now.Add(defaultReferralValidity)
	} else if !r.ValidUntil.After(now) {
		f.add("referral.valid_until", "must be in the future")
	} else if r.ValidUntil.After(now.Add(maxReferralValidity)) {
		f.add("referral.valid_until", "must be at most one year ahead")
	}
	if !r.ValidFrom.IsZero() && !r.ValidFrom.Before(r.ValidUntil) {
		f.add("referral.valid_from", "must be before the end of validity")
	}
	if r.Priority == "" {
		r.Priority = PriorityRoutine
	}
	slices.Sort(r.RequiredSpecialties)
	r.RequiredSpecialties = slices.Compact(r.RequiredSpecialties)
	return f.err()
}

// validFrom is when a referral created at created becomes valid: a start
// at or before its creation (careteam's export writes the creation time)
// restricts nothing, and is kept as none.
func validFrom(from, created time.Time) time.Time {
	if !from.After(created) {
		return time.Time{}
	}
	return from
}

// CreateReferral creates a DRAFT referral: a physician for themselves, or a
// coordinator for a physician of their organization. The patient must be
// visible to the caller; a target therapist must be qualified.
func (s *Service) CreateReferral(ctx context.Context, p Principal, r Referral, idem Idempotency) (*Referral, error) {
	if err := authorizeCreateReferral(p); err != nil {
		return nil, err
	}
	now := s.clock.Now()
	r.ValidFrom = validFrom(r.ValidFrom, now)
	if err := s.validateReferral(ctx, p, &r, now); err != nil {
		return nil, err
	}
	return mutate(ctx, s, p, "CreateReferral", idem,
		func(tx Tx) (*Referral, uuid.UUID, error) {
			if _, err := s.getPatient(ctx, tx, p, r.PatientID, false); err != nil {
				return nil, uuid.Nil, err
			}
			physician, err := tx.GetPractitioner(ctx, r.ReferringPhysicianID, false)
			if err != nil {
				return nil, uuid.Nil, referenceError(err, "referral.referring_physician")
			}
			if err := authorizeReferFor(p, physician); err != nil {
				return nil, uuid.Nil, err
			}
			if err := s.checkTarget(ctx, tx, &r, r.TargetTherapistID, r.TargetOrgID, now); err != nil {
				return nil, uuid.Nil, err
			}
			if err := s.checkReasonDiagnoses(ctx, tx, &r); err != nil {
				return nil, uuid.Nil, err
			}
			r.ID, r.ReferringOrgID, r.State = newID(), physician.OrganizationID, ReferralDraft
			audit.Touch(ctx, Referrals.Name(r.ID), r.PatientID)
			r.Version, r.CreateTime, r.UpdateTime = 1, now, now
			r.History = []StateChange{{To: ReferralDraft, Actor: p.PractitionerID, Time: now}}
			if err := tx.InsertReferral(ctx, &r); err != nil {
				return nil, uuid.Nil, err
			}
			tx.AppendEvent(referralEvent(EventReferralCreated, &r, p.PractitionerID, now))
			out := r
			redactReferral(p, &out)
			out.derive(now)
			return &out, r.ID, nil
		},
		func(tx Tx, id uuid.UUID) (*Referral, error) { return s.readReferral(ctx, tx, p, id) })
}

// referenceError turns a missing referenced resource into a field
// violation of the request.
func referenceError(err error, field string) error {
	if errors.Is(err, ErrNotFound) {
		return &InvalidError{Violations: []FieldViolation{{Field: field, Description: "no such resource"}}}
	}
	return err
}

// checkTarget sets a referral's target: a therapist (who must be qualified;
// their practice becomes the target organization) or a massage practice.
func (s *Service) checkTarget(ctx context.Context, tx DirectoryStore, r *Referral, therapist, org uuid.UUID, now time.Time) error {
	if therapist != uuid.Nil {
		th, err := tx.GetPractitioner(ctx, therapist, false)
		if err != nil {
			return referenceError(err, "referral.target_therapist")
		}
		if org != uuid.Nil && th.OrganizationID != org {
			return &InvalidError{Violations: []FieldViolation{{Field: "referral.target_organization", Description: "the target therapist belongs to another organization"}}}
		}
		if v := qualify(r, th, now); len(v) > 0 {
			return &PreconditionError{Violations: v}
		}
		r.TargetTherapistID, r.TargetOrgID = th.ID, th.OrganizationID
		return nil
	}
	o, err := tx.GetOrganization(ctx, org, false)
	if err != nil {
		return referenceError(err, "referral.target_organization")
	}
	if o.Kind != MassagePractice {
		return precondition("NOT_A_MASSAGE_PRACTICE", Organizations.Name(o.ID), "referrals go to massage practices")
	}
	r.TargetTherapistID, r.TargetOrgID = uuid.Nil, o.ID
	return nil
}

// readReferral loads a referral the caller may see, redacted for their
// role. A referral out of reach is ErrPermissionDenied whether or not it
// exists.
func (s *Service) readReferral(ctx context.Context, tx Tx, p Principal, id uuid.UUID) (*Referral, error) {
	r, err := s.lockReferral(ctx, tx, p, id, false)
	if err != nil {
		return nil, err
	}
	redactReferral(p, r)
	r.derive(s.clock.Now())
	return r, nil
}

func (s *Service) lockReferral(ctx context.Context, tx Tx, p Principal, id uuid.UUID, forUpdate bool) (*Referral, error) {
	audit.Touch(ctx, Referrals.Name(id), uuid.Nil)
	scope, err := referralScope(p)
	if err != nil {
		return nil, err
	}
	r, err := tx.GetReferral(ctx, id, scope, forUpdate)
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("%s: %w", Referrals.Name(id), ErrPermissionDenied)
	}
	if err != nil {
		return nil, err
	}
	audit.Touch(ctx, "", r.PatientID)
	return r, nil
}

// GetReferral returns a referral the caller may see.
func (s *Service) GetReferral(ctx context.Context, p Principal, id uuid.UUID) (*Referral, error) {
	return read(ctx, s, func(tx Tx) (*Referral, error) { return s.readReferral(ctx, tx, p, id) })
}

// ListReferrals lists the referrals the caller may see, newest first.
func (s *Service) ListReferrals(ctx context.Context, p Principal, f ReferralFilter, page Page) ([]*Referral, uuid.UUID, error) {
	scope, err := referralScope(p)
	if err != nil {
		return nil, uuid.Nil, err
	}
	f.Now = s.clock.Now()
	rows, next, err := listPage(ctx, s, page,
		func(tx Tx, page Page) ([]*Referral, error) { return tx.ListReferrals(ctx, scope, f, page) },
		func(r *Referral) uuid.UUID { return r.ID },
		func(r *Referral) { audit.Touch(ctx, Referrals.Name(r.ID), r.PatientID) })
	if err != nil {
		return nil, uuid.Nil, err
	}
	for _, r := range rows {
		redactReferral(p, r)
		r.derive(f.Now)
	}
	return rows, next, nil
}

// changeReferral runs one lifecycle action: lock the referral, check the
// caller may act, the etag and the transition, apply change, and save.
func (s *Service) changeReferral(ctx context.Context, p Principal, id uuid.UUID, etag string, idem Idempotency, a referralAction,
	change func(tx Tx, r *Referral, now time.Time) error,
) (*Referral, error) {
	return mutate(ctx, s, p, string(a), idem,
		func(tx Tx) (*Referral, uuid.UUID, error) {
			r, err := s.lockReferral(ctx, tx, p, id, true)
			if err != nil {
				return nil, uuid.Nil, err
			}
			if err := authorizeReferral(p, r, a); err != nil {
				return nil, uuid.Nil, err
			}
			if err := checkEtag(etag, r.Version); err != nil {
				return nil, uuid.Nil, err
			}
			now := s.clock.Now()
			if err := checkTransition(r, a, now); err != nil {
				return nil, uuid.Nil, err
			}
			if err := change(tx, r, now); err != nil {
				return nil, uuid.Nil, err
			}
			r.Version++
			r.UpdateTime = now
			if err := tx.UpdateReferral(ctx, r); err != nil {
				return nil, uuid.Nil, err
			}
			tx.AppendEvent(referralEvent(actionEvents[a], r, p.PractitionerID, now))
			redactReferral(p, r)
			r.derive(now)
			return r, r.ID, nil
		},
		func(tx Tx, id uuid.UUID) (*Referral, error) { return s.readReferral(ctx, tx, p, id) })
}

// actionEvents names the event of each lifecycle action.
var actionEvents = map[referralAction]EventType{
	actSubmit:      EventReferralSubmitted,
	actAssign:      EventReferralAssigned,
	actAccept:      EventReferralAccepted,
	actDecline:     EventReferralDeclined,
	actRequestInfo: EventReferralInformationRequest,
	actProvideInfo: EventReferralInformationProvided,
	actCancel:      EventReferralCancelled,
	actComplete:    EventReferralCompleted,
}

// SubmitReferral sends a DRAFT referral to its target.
func (s *Service) SubmitReferral(ctx context.Context, p Principal, id uuid.UUID, etag string, idem Idempotency) (*Referral, error) {
	return s.changeReferral(ctx, p, id, etag, idem, actSubmit, func(_ Tx, r *Referral, now time.Time) error {
		r.transition(ReferralSubmitted, p.PractitionerID, now, "", s.cfg.AckWindow, true)
		return nil
	})
}

// AssignReferral routes a referral to a qualified therapist; a DECLINED
// referral is re-routed and SUBMITTED again with a fresh acknowledgement
// window.
func (s *Service) AssignReferral(ctx context.Context, p Principal, id, therapist uuid.UUID, reason, etag string, idem Idempotency) (*Referral, error) {
	return s.changeReferral(ctx, p, id, etag, idem, actAssign, func(tx Tx, r *Referral, now time.Time) error {
		rerouting := r.State == ReferralDeclined
		if err := s.checkTarget(ctx, tx, r, therapist, uuid.Nil, now); err != nil {
			return err
		}
		if err := authorizeAssignTo(p, r); err != nil {
			return err
		}
		to := r.State
		if rerouting {
			to = ReferralSubmitted
			r.DeclineReason, r.DeclineText = "", ""
		}
		if reason == "" {
			reason = reasonAssignedTo + Practitioners.Name(therapist)
		}
		r.transition(to, p.PractitionerID, now, reason, s.cfg.AckWindow, rerouting)
		return nil
	})
}

// AcceptReferral is the target therapist's acceptance; a therapist of the
// target practice accepting an unassigned referral takes it.
func (s *Service) AcceptReferral(ctx context.Context, p Principal, id uuid.UUID, etag string, idem Idempotency) (*Referral, error) {
	return s.changeReferral(ctx, p, id, etag, idem, actAccept, func(tx Tx, r *Referral, now time.Time) error {
		th, err := tx.GetPractitioner(ctx, p.PractitionerID, false)
		if err != nil {
			return err
		}
		if v := qualify(r, th, now); len(v) > 0 {
			return &PreconditionError{Violations: v}
		}
		r.TargetTherapistID = th.ID
		r.transition(ReferralAccepted, p.PractitionerID, now, "", s.cfg.AckWindow, false)
		return nil
	})
}

// DeclineReferral is the target therapist's refusal, with a coded reason.
func (s *Service) DeclineReferral(ctx context.Context, p Principal, id uuid.UUID, reason DeclineReason, text, etag string, idem Idempotency) (*Referral, error) {
	return s.changeReferral(ctx, p, id, etag, idem, actDecline, func(_ Tx, r *Referral, now time.Time) error {
		r.DeclineReason, r.DeclineText = reason, text
		r.transition(ReferralDeclined, p.PractitionerID, now, string(reason)+": "+text, s.cfg.AckWindow, false)
		return nil
	})
}

// RequestInformation records the target therapist's question; the referral
// waits (AWAITING_INFO, the acknowledgement clock paused) for the answer.
func (s *Service) RequestInformation(ctx context.Context, p Principal, id uuid.UUID, question, etag string, idem Idempotency) (*Referral, error) {
	return s.changeReferral(ctx, p, id, etag, idem, actRequestInfo, func(_ Tx, r *Referral, now time.Time) error {
		r.InformationRequests = append(r.InformationRequests, InformationRequest{Question: question, AskedBy: p.PractitionerID, AskTime: now})
		r.transition(ReferralAwaitingInfo, p.PractitionerID, now, "", s.cfg.AckWindow, false)
		return nil
	})
}

// ProvideInformation answers the open question and resubmits the referral.
func (s *Service) ProvideInformation(ctx context.Context, p Principal, id uuid.UUID, answer, etag string, idem Idempotency) (*Referral, error) {
	return s.changeReferral(ctx, p, id, etag, idem, actProvideInfo, func(_ Tx, r *Referral, now time.Time) error {
		q := &r.InformationRequests[len(r.InformationRequests)-1]
		q.Answer, q.AnsweredBy, q.AnswerTime = answer, p.PractitionerID, now
		r.transition(ReferralSubmitted, p.PractitionerID, now, "", s.cfg.AckWindow, false)
		return nil
	})
}

// CancelReferral withdraws a referral; the referring side only.
func (s *Service) CancelReferral(ctx context.Context, p Principal, id uuid.UUID, reason, etag string, idem Idempotency) (*Referral, error) {
	return s.changeReferral(ctx, p, id, etag, idem, actCancel, func(_ Tx, r *Referral, now time.Time) error {
		r.CancelReason = reason
		r.transition(ReferralCancelled, p.PractitionerID, now, reason, s.cfg.AckWindow, false)
		return nil
	})
}

// CompleteReferral closes treatment with a discharge summary made of the
// caller's note and the progress figures.
func (s *Service) CompleteReferral(ctx context.Context, p Principal, id uuid.UUID, note, etag string, idem Idempotency) (*Referral, *Progress, error) {
	var progress *Progress
	r, err := s.changeReferral(ctx, p, id, etag, idem, actComplete, func(tx Tx, r *Referral, now time.Time) error {
		r.transition(ReferralCompleted, p.PractitionerID, now, "", s.cfg.AckWindow, false)
		var err error
		if progress, err = s.progress(ctx, tx, r); err != nil {
			return err
		}
		r.DischargeSummary = dischargeSummary(note, progress)
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	if progress == nil {
		// A replayed request: report the progress as it stands.
		_, progress, err = s.GetReferralProgress(ctx, p, id)
	}
	return r, progress, err
}

// dischargeSummary is the closing note followed by the figures the
// physician reads first.
func dischargeSummary(note string, pr *Progress) string {
	var b strings.Builder
	b.WriteString(strings.TrimSpace(note))
	fmt.Fprintf(&b, "\n\nVisits: %d of %d used.", pr.Referral.UsedVisits, pr.Referral.AuthorizedVisits)
	if pr.Pain != nil {
		fmt.Fprintf(&b, " Pain (0-10) before treatment: first %d, latest %d (%+d).", pr.Pain.First, pr.Pain.Latest, pr.Pain.Change)
	}
	if pr.Oswestry != nil {
		fmt.Fprintf(&b, " Oswestry Disability Index: %d -> %d.", pr.Oswestry.First, pr.Oswestry.Latest)
	}
	if pr.NeckDisability != nil {
		fmt.Fprintf(&b, " Neck Disability Index: %d -> %d.", pr.NeckDisability.First, pr.NeckDisability.Latest)
	}
	if n := len(pr.AdverseEvents); n > 0 {
		fmt.Fprintf(&b, " Adverse events: %d.", n)
	}
	if pr.LatestPlan != "" {
		fmt.Fprintf(&b, "\nLatest plan: %s", pr.LatestPlan)
	}
	return b.String()
}
