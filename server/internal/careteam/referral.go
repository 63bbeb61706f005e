package careteam

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
)

// ReferralState is a referral's lifecycle state (FHIR Task status).
type ReferralState string

// The referral states.
const (
	ReferralDraft        ReferralState = "DRAFT"
	ReferralSubmitted    ReferralState = "SUBMITTED"
	ReferralAwaitingInfo ReferralState = "AWAITING_INFO"
	ReferralAccepted     ReferralState = "ACCEPTED"
	ReferralDeclined     ReferralState = "DECLINED"
	ReferralInProgress   ReferralState = "IN_PROGRESS"
	ReferralOnHold       ReferralState = "ON_HOLD"
	ReferralCompleted    ReferralState = "COMPLETED"
	ReferralCancelled    ReferralState = "CANCELLED"
	ReferralExpired      ReferralState = "EXPIRED"
)

// ExpirableStates are the states a referral leaves for EXPIRED once its
// validity has passed: every state before COMPLETED.
var ExpirableStates = []ReferralState{
	ReferralDraft, ReferralSubmitted, ReferralAwaitingInfo, ReferralAccepted,
	ReferralDeclined, ReferralInProgress, ReferralOnHold,
}

// Priority is how soon a referred patient should be seen.
type Priority string

// The priorities.
const (
	PriorityRoutine Priority = "ROUTINE"
	PriorityUrgent  Priority = "URGENT"
)

// DeclineReason is the coded reason a therapist declines a referral.
type DeclineReason string

// Technique is a massage technique.
type Technique string

// The reasons the system gives to routings; any other reason of a routing
// is the words of whoever routed.
const (
	reasonAssignedTo = "assigned to "
	reasonReimported = "changed by a FHIR re-import"
)

// Coding is a code of another system that careteam keeps as it came,
// such as a CPT code of an order or the category of a diagnosis.
type Coding struct {
	System  string `json:"system"`
	Code    string `json:"code"`
	Display string `json:"display,omitempty"`
}

// StateChange records one transition: who, when, why.
type StateChange struct {
	From   ReferralState
	To     ReferralState
	Actor  uuid.UUID
	Time   time.Time
	Reason string
}

// InformationRequest is a therapist's question to the referrer and its
// answer.
type InformationRequest struct {
	Question   string
	AskedBy    uuid.UUID
	AskTime    time.Time
	Answer     string
	AnsweredBy uuid.UUID
	AnswerTime time.Time
}

// Referral is a physician's request that a patient be treated by massage
// therapy (FHIR ServiceRequest with its Task).
type Referral struct {
	ID                   uuid.UUID
	PatientID            uuid.UUID
	ReferringPhysicianID uuid.UUID
	ReferringOrgID       uuid.UUID
	// TargetTherapistID is zero while the referral is addressed to a
	// practice without a therapist assigned.
	TargetTherapistID uuid.UUID
	TargetOrgID       uuid.UUID
	ReasonDiagnoses   []uuid.UUID
	ReasonCodes       []string
	// ReasonTexts are reasons given in words only, beside coded ones.
	ReasonTexts   []string
	ClinicalNotes string
	// PatientInstruction is the physician's instruction to the patient.
	PatientInstruction string
	// ServiceCodes and ServiceText say what is ordered, such as CPT 97124
	// (therapeutic massage).
	ServiceCodes        []Coding
	ServiceText         string
	Priority            Priority
	RequestedTechniques []Technique
	AuthorizedVisits    int
	UsedVisits          int
	// SessionsStarted counts every session ever started, cancelled ones
	// included, so each session gets a visit number of its own.
	SessionsStarted int
	// ValidFrom is when the order becomes valid: no session starts
	// before it. Zero: from its creation.
	ValidFrom           time.Time
	ValidUntil          time.Time
	RequiredSpecialties []Specialty
	// State is the stored state; StateAt derives EXPIRED from it.
	State ReferralState
	// HeldFrom is the state an ON_HOLD referral returns to.
	HeldFrom            ReferralState
	History             []StateChange
	InformationRequests []InformationRequest
	DeclineReason       DeclineReason
	DeclineText         string
	CancelReason        string
	DischargeSummary    string
	AttentionRequired   bool
	SubmitTime          time.Time
	// AckElapsed is the business time already spent waiting for
	// acknowledgement in earlier SUBMITTED spells; AckDue is when the
	// current spell makes the referral overdue (zero outside SUBMITTED).
	AckElapsed time.Duration
	AckDue     time.Time
	Version    int64
	CreateTime time.Time
	UpdateTime time.Time

	// Derived at read time by derive: the state with expiry applied,
	// whether acknowledgement is overdue, and the business time left until
	// it is due (negative past it; zero outside SUBMITTED).
	EffectiveState ReferralState
	Overdue        bool
	AckRemaining   time.Duration
}

// derive sets the fields derived from the time of reading.
func (r *Referral) derive(now time.Time) {
	r.EffectiveState = r.StateAt(now)
	r.Overdue = r.OverdueAt(now)
	r.AckRemaining = 0
	if r.EffectiveState == ReferralSubmitted && !r.AckDue.IsZero() {
		if now.Before(r.AckDue) {
			r.AckRemaining = businessBetween(now, r.AckDue)
		} else {
			r.AckRemaining = -businessBetween(r.AckDue, now)
		}
	}
}

// StateAt returns the referral's state at now: EXPIRED once its validity
// has passed before it completed.
func (r *Referral) StateAt(now time.Time) ReferralState {
	if slices.Contains(ExpirableStates, r.State) && !now.Before(r.ValidUntil) {
		return ReferralExpired
	}
	return r.State
}

// OverdueAt reports whether the referral waits for acknowledgement past its
// window at now.
func (r *Referral) OverdueAt(now time.Time) bool {
	return r.StateAt(now) == ReferralSubmitted && !r.AckDue.IsZero() && !now.Before(r.AckDue)
}

// RemainingVisits is the number of visits not yet used.
func (r *Referral) RemainingVisits() int { return max(r.AuthorizedVisits-r.UsedVisits, 0) }

// ReferralFilter narrows ListReferrals; zero fields do not filter.
type ReferralFilter struct {
	PatientID            uuid.UUID
	States               []ReferralState
	TargetTherapistID    uuid.UUID
	TargetOrgID          uuid.UUID
	ReferringPhysicianID uuid.UUID
	Priority             Priority
	Overdue              bool
	RequiredSpecialty    Specialty
	// ChangedAfter and ChangedBefore bound UpdateTime (exclusive); zero:
	// unbounded.
	ChangedAfter, ChangedBefore time.Time
	// Now is the time the derived EXPIRED state and overdue are judged at;
	// the use case sets it.
	Now time.Time
}

// ReferralScope is the set of relations through which a caller sees a
// referral; a referral is visible when any set relation holds.
type ReferralScope struct {
	ReferringPhysician uuid.UUID
	// ReferralOrg: the referring or the target organization.
	ReferralOrg uuid.UUID
	// Therapist: referrals targeted at this therapist, or at TherapistOrg
	// while no therapist is assigned.
	Therapist    uuid.UUID
	TherapistOrg uuid.UUID
	// Any drops the restriction: for the domain's own checks, never for a
	// caller's read.
	Any bool
}

// icd10Pattern is the ICD-10-CM code format: a letter, a digit, an
// alphanumeric, and optionally a dot and one to four alphanumerics.
var icd10Pattern = regexp.MustCompile(`^[A-Z][0-9][0-9A-Z](\.?[0-9A-Z]{1,4})?$`)

// NormalizeICD10 validates an ICD-10-CM code and returns it with its dot
// ("M5450" -> "M54.50").
func NormalizeICD10(code string) (string, bool) {
	code = strings.ToUpper(strings.TrimSpace(code))
	if !icd10Pattern.MatchString(code) {
		return "", false
	}
	if len(code) > 3 && code[3] != '.' {
		code = code[:3] + "." + code[3:]
	}
	return code, true
}

// referral validity bounds.
const (
	defaultReferralValidity = 90 * 24 * time.Hour
	maxReferralValidity     = 366 * 24 * time.Hour
	maxAuthorizedVisits     = 52
)

// referralAction is a transition of the referral lifecycle.
type referralAction string

const (
	actSubmit      referralAction = "SubmitReferral"
	actAssign      referralAction = "AssignReferral"
	actAccept      referralAction = "AcceptReferral"
	actDecline     referralAction = "DeclineReferral"
	actRequestInfo referralAction = "RequestInformation"
	actProvideInfo referralAction = "ProvideInformation"
	actCancel      referralAction = "CancelReferral"
	actComplete    referralAction = "CompleteReferral"
	actStart       referralAction = "StartSession"
	actHold        referralAction = "SuspendClearance"
	actResume      referralAction = "IssueClearance"
)

// transitions is the lifecycle as PRODUCT.md draws it: the states each
// action may leave. Assign keeps DRAFT and SUBMITTED and re-routes DECLINED
// to SUBMITTED; resume returns to the state the hold began in.
var transitions = map[referralAction][]ReferralState{
	actSubmit:      {ReferralDraft},
	actAssign:      {ReferralDraft, ReferralSubmitted, ReferralDeclined},
	actAccept:      {ReferralSubmitted},
	actDecline:     {ReferralSubmitted},
	actRequestInfo: {ReferralSubmitted},
	actProvideInfo: {ReferralAwaitingInfo},
	actCancel:      ExpirableStates,
	actComplete:    {ReferralAccepted, ReferralInProgress},
	actStart:       {ReferralAccepted, ReferralInProgress},
	actHold:        {ReferralAccepted, ReferralInProgress},
	actResume:      {ReferralOnHold},
}

// checkTransition refuses an action the referral's state at now does not
// allow, naming the current state.
func checkTransition(r *Referral, a referralAction, now time.Time) error {
	state := r.StateAt(now)
	if state == ReferralExpired {
		return precondition("REFERRAL_EXPIRED", Referrals.Name(r.ID), "the referral's validity ended %s", r.ValidUntil.Format(time.RFC3339))
	}
	if !slices.Contains(transitions[a], state) {
		allowed := make([]string, len(transitions[a]))
		for i, s := range transitions[a] {
			allowed[i] = string(s)
		}
		return precondition("REFERRAL_STATE", Referrals.Name(r.ID), "the referral is %s; %s needs %s", state, a, strings.Join(allowed, " or "))
	}
	return nil
}

// transition moves the referral to state `to`, recording who, when and why,
// and keeps the acknowledgement clock: it runs while SUBMITTED, pauses while
// AWAITING_INFO, and restarts for a new receiver (restartClock).
func (r *Referral) transition(to ReferralState, actor uuid.UUID, now time.Time, reason string, window time.Duration, restartClock bool) {
	from := r.State
	if from == ReferralSubmitted && !r.AckDue.IsZero() {
		r.AckElapsed = window - businessBetween(now, r.AckDue)
		if now.After(r.AckDue) {
			r.AckElapsed = window + businessBetween(r.AckDue, now)
		}
	}
	if restartClock {
		r.AckElapsed = 0
	}
	r.AckDue = time.Time{}
	if to == ReferralSubmitted {
		r.AckDue = addBusiness(now, max(window-r.AckElapsed, 0))
		if r.SubmitTime.IsZero() {
			r.SubmitTime = now
		}
	}
	r.State = to
	r.History = append(r.History, StateChange{From: from, To: to, Actor: actor, Time: now, Reason: reason})
}

// qualify returns why a therapist may not take a referral: a licence not
// active at now, or required specialties they lack.
func qualify(r *Referral, th *Practitioner, now time.Time) []Violation {
	var v []Violation
	name := Practitioners.Name(th.ID)
	if th.Role != RoleTherapist || !th.Active {
		return []Violation{{Type: "NOT_A_THERAPIST", Subject: name, Description: "the practitioner is not an active massage therapist"}}
	}
	if !th.Licence.ActiveOn(now) {
		v = append(v, Violation{Type: "LICENCE_EXPIRED", Subject: name, Description: "the therapist's licence is not active"})
	}
	var missing []string
	for _, s := range r.RequiredSpecialties {
		if !slices.Contains(th.Specialties, s) {
			missing = append(missing, string(s))
		}
	}
	if len(missing) > 0 {
		v = append(v, Violation{Type: "NOT_QUALIFIED", Subject: name, Description: fmt.Sprintf("the therapist lacks required training: %s", strings.Join(missing, ", "))})
	}
	return v
}
