package careteam

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/careteam/careteam/server/internal/audit"
)

// EventType is what happened.
type EventType string

// The event types.
const (
	EventReferralCreated             EventType = "REFERRAL_CREATED"
	EventReferralSubmitted           EventType = "REFERRAL_SUBMITTED"
	EventReferralAssigned            EventType = "REFERRAL_ASSIGNED"
	EventReferralAccepted            EventType = "REFERRAL_ACCEPTED"
	EventReferralDeclined            EventType = "REFERRAL_DECLINED"
	EventReferralInformationRequest  EventType = "REFERRAL_INFORMATION_REQUESTED"
	EventReferralInformationProvided EventType = "REFERRAL_INFORMATION_PROVIDED"
	EventReferralCancelled           EventType = "REFERRAL_CANCELLED"
	EventReferralCompleted           EventType = "REFERRAL_COMPLETED"
	EventReferralExpired             EventType = "REFERRAL_EXPIRED"
	EventReferralOnHold              EventType = "REFERRAL_ON_HOLD"
	EventReferralResumed             EventType = "REFERRAL_RESUMED"
	EventDiagnosisRecorded           EventType = "DIAGNOSIS_RECORDED"
	EventDiagnosisUpdated            EventType = "DIAGNOSIS_UPDATED"
	EventConsentRecorded             EventType = "CONSENT_RECORDED"
	EventClearanceRequested          EventType = "CLEARANCE_REQUESTED"
	EventClearanceIssued             EventType = "CLEARANCE_ISSUED"
	EventClearanceSuspended          EventType = "CLEARANCE_SUSPENDED"
	EventClearanceRevoked            EventType = "CLEARANCE_REVOKED"
	EventClearanceInForce            EventType = "CLEARANCE_IN_FORCE"
	EventClearanceInsufficient       EventType = "CLEARANCE_INSUFFICIENT"
	EventSessionStarted              EventType = "SESSION_STARTED"
	EventSessionCancelled            EventType = "SESSION_CANCELLED"
	EventNoteSigned                  EventType = "NOTE_SIGNED"
	EventNoteAmended                 EventType = "NOTE_AMENDED"
	EventAdverseEventReported        EventType = "ADVERSE_EVENT_REPORTED"
	EventDeviationReported           EventType = "DEVIATION_REPORTED"
	// EventPractitionerChanged is delivered to nobody: it tells the
	// practitioner's own open streams, in commit order, to check them
	// again before they deliver anything written after the change.
	EventPractitionerChanged EventType = "PRACTITIONER_CHANGED"
)

// Event is one state change, written in the transaction that made it.
type Event struct {
	ID uuid.UUID
	// Cursor increases in commit order; the store assigns it.
	Cursor     int64
	Type       EventType
	Resource   string
	PatientID  uuid.UUID
	ReferralID uuid.UUID
	// Organizations involved (referring, target, registering).
	Organizations []uuid.UUID
	Actor         uuid.UUID
	Time          time.Time
	// Audience lists who may receive the event (see audience tokens in
	// policy.go); the store filters on it, the policy fills it.
	Audience []string
	// The resource's new state: exactly one is set.
	Referral  *Referral  `json:",omitempty"`
	Diagnosis *Diagnosis `json:",omitempty"`
	Clearance *Clearance `json:",omitempty"`
	Session   *Session   `json:",omitempty"`
	Consent   *Consent   `json:",omitempty"`
}

// EventFilter narrows what a subscriber receives.
type EventFilter struct {
	Types      []EventType
	PatientID  uuid.UUID
	ReferralID uuid.UUID
}

// Matches reports whether e passes the filter.
func (f EventFilter) Matches(e *Event) bool {
	return (len(f.Types) == 0 || slices.Contains(f.Types, e.Type)) &&
		(f.PatientID == uuid.Nil || f.PatientID == e.PatientID) &&
		(f.ReferralID == uuid.Nil || f.ReferralID == e.ReferralID)
}

// ErrCursorExpired: the cursor is older than the retained history; the
// subscriber must resynchronize.
var ErrCursorExpired = errors.New("the cursor is older than the retained event history")

// CursorError says from where a subscriber whose cursor was pruned may
// resume after resynchronizing.
type CursorError struct {
	Oldest int64
}

func (e *CursorError) Error() string {
	return fmt.Sprintf("events up to cursor %d were pruned: resynchronize, then watch after cursor %d", e.Oldest, e.Oldest)
}

func (e *CursorError) Unwrap() error { return ErrCursorExpired }

// referralEvent is the event of a referral's change.
func referralEvent(t EventType, r *Referral, actor uuid.UUID, now time.Time) Event {
	return Event{
		ID: newID(), Type: t, Resource: Referrals.Name(r.ID), PatientID: r.PatientID, ReferralID: r.ID,
		Organizations: compactIDs(r.ReferringOrgID, r.TargetOrgID), Actor: actor, Time: now,
		Audience: referralAudience(r), Referral: snapshotReferral(r, now),
	}
}

// snapshotReferral copies the referral as it stands after the change.
func snapshotReferral(r *Referral, now time.Time) *Referral {
	c := *r
	c.derive(now)
	return &c
}

// patientEvent is the event of a change to something of a patient's: a
// diagnosis or a clearance (clinical), or a consent. Its audience is
// patientAudience over all the patient's referrals, as the reads of it are
// patient-wide even when it concerns one referral, and the physicians
// named.
func (s *Service) patientEvent(ctx context.Context, tx Tx, t EventType, resource string, patient, referral uuid.UUID, actor uuid.UUID, clinical bool, extra ...string) (Event, error) {
	refs, err := tx.PatientReferrals(ctx, patient)
	if err != nil {
		return Event{}, err
	}
	pt, err := tx.GetPatient(ctx, patient, PatientScope{Any: true}, false)
	if err != nil {
		return Event{}, err
	}
	orgs := []uuid.UUID{pt.OrganizationID}
	for _, r := range refs {
		orgs = append(orgs, r.ReferringOrgID, r.TargetOrgID)
	}
	aud := append(patientAudience(pt.OrganizationID, refs, clinical), extra...)
	slices.Sort(aud)
	return Event{
		ID: newID(), Type: t, Resource: resource, PatientID: patient, ReferralID: referral,
		Organizations: compactIDs(orgs...), Actor: actor, Time: s.clock.Now(), Audience: slices.Compact(aud),
	}, nil
}

// diagnosisEvent, clearanceEvent and consentEvent announce a change to a
// patient's record to the patient's care team.
func (s *Service) diagnosisEvent(ctx context.Context, tx Tx, t EventType, d *Diagnosis, actor uuid.UUID) error {
	e, err := s.patientEvent(ctx, tx, t, Diagnoses.Name(d.ID), d.PatientID, uuid.Nil, actor, true, practitionerToken(d.PhysicianID))
	if err != nil {
		return err
	}
	c := *d
	e.Diagnosis = &c
	tx.AppendEvent(e)
	return nil
}

func (s *Service) clearanceEvent(ctx context.Context, tx Tx, t EventType, c *Clearance, actor uuid.UUID) error {
	// Whoever asked for it hears of it as they read it: through the
	// patient's record, not for having asked.
	e, err := s.patientEvent(ctx, tx, t, Clearances.Name(c.ID), c.PatientID, c.ReferralID, actor, true, practitionerToken(c.PhysicianID))
	if err != nil {
		return err
	}
	cl := *c
	cl.derive(e.Time)
	e.Clearance = &cl
	tx.AppendEvent(e)
	return nil
}

func (s *Service) consentEvent(ctx context.Context, tx Tx, c *Consent, actor uuid.UUID) error {
	e, err := s.patientEvent(ctx, tx, EventConsentRecorded, Consents.Name(c.ID), c.PatientID, uuid.Nil, actor, false, practitionerToken(c.RecordedBy))
	if err != nil {
		return err
	}
	cc := *c
	e.Consent = &cc
	tx.AppendEvent(e)
	return nil
}

// sessionEvent is the event of a session's change.
func sessionEvent(t EventType, ss *Session, r *Referral, actor uuid.UUID, now time.Time) Event {
	c := *ss
	return Event{
		ID: newID(), Type: t, Resource: Sessions.Name(ss.ID), PatientID: ss.PatientID, ReferralID: ss.ReferralID,
		Organizations: compactIDs(r.ReferringOrgID, r.TargetOrgID), Actor: actor, Time: now,
		Audience: sessionAudience(ss, r), Session: &c,
	}
}

func compactIDs(ids ...uuid.UUID) []uuid.UUID {
	var out []uuid.UUID
	for _, id := range ids {
		if id != uuid.Nil && !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	return out
}

// horizonWait bounds how long a list or a replay waits for the events
// committed before it to be final (see Store.EventHorizon): a transaction
// held open longer holds them back, and the answer ends before them.
const horizonWait = time.Second

// EventPage is a page of events: Next is the cursor the next page starts
// after (zero: none), Through the cursor up to which the page is
// complete.
type EventPage struct {
	Events        []*Event
	Next, Through int64
}

// ListEvents pages through the events the caller may receive, in cursor
// order.
func (s *Service) ListEvents(ctx context.Context, p Principal, f EventFilter, after int64, size int) (*EventPage, error) {
	aud, err := eventAudience(p)
	if err != nil {
		return nil, err
	}
	size = normalizePage(Page{Size: size}).Size
	through, err := s.store.EventHorizon(ctx, horizonWait)
	if err != nil {
		return nil, err
	}
	var rows []*Event
	var next int64
	err = s.store.InTx(ctx, func(tx Tx) error {
		oldest, err := tx.OldestEventCursor(ctx)
		if err != nil {
			return err
		}
		if after != 0 && after < oldest {
			return &CursorError{Oldest: oldest}
		}
		if rows, err = tx.ListEvents(ctx, aud, f, after, through, size+1); err != nil {
			return err
		}
		if len(rows) > size {
			rows = rows[:size]
			next = rows[size-1].Cursor
		}
		for _, e := range rows {
			audit.Touch(ctx, e.Resource, e.PatientID)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, e := range rows {
		RedactEvent(p, e)
	}
	page := &EventPage{Events: rows, Next: next, Through: through}
	if next != 0 {
		page.Through = next
	}
	return page, nil
}

// Subscriber is what a watcher needs from the domain: who may receive
// which event, and each event as that subscriber may see it.
type Subscriber struct {
	Principal Principal
	Filter    EventFilter
	audience  []string
}

// NewSubscriber checks the caller may watch events at all.
func NewSubscriber(p Principal, f EventFilter) (*Subscriber, error) {
	if err := authorizeWatch(p); err != nil {
		return nil, err
	}
	aud, err := eventAudience(p)
	if err != nil {
		return nil, err
	}
	return &Subscriber{Principal: p, Filter: f, audience: aud}, nil
}

// Recheck reports whether sub may go on receiving: its subject is still in
// the directory and active, with the same role and organization, and still
// sees the patient or referral its filter names. A stream calls it as it
// runs, so that access ended elsewhere ends the stream too; an error says
// why, as ErrPermissionDenied. The checks are not reads to audit.
func (s *Service) Recheck(ctx context.Context, sub *Subscriber) error {
	was := sub.Principal
	now, err := s.Authenticate(ctx, was.Subject)
	if err == nil && was.Via != uuid.Nil {
		// An integration's stream goes on while its grant holds.
		now, err = s.ActFor(ctx, now, was.PractitionerID)
	}
	if err != nil {
		return err
	}
	if now.PractitionerID != was.PractitionerID || now.Role != was.Role || now.OrganizationID != was.OrganizationID {
		return fmt.Errorf("%s is now %s of %s: %w", was.Subject, now.Role, Organizations.NameOrEmpty(now.OrganizationID), ErrPermissionDenied)
	}
	unaudited := audit.NewContext(ctx, nil)
	if id := sub.Filter.PatientID; id != uuid.Nil {
		if _, err := s.GetPatient(unaudited, was, id); err != nil {
			return lostSight(Patients.Name(id), err)
		}
	}
	if id := sub.Filter.ReferralID; id != uuid.Nil {
		if _, err := s.GetReferral(unaudited, was, id); err != nil {
			return lostSight(Referrals.Name(id), err)
		}
	}
	return nil
}

// lostSight says a watcher no longer sees what it watches; a resource it
// may not read is, to it, one that does not exist.
func lostSight(name string, err error) error {
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrPermissionDenied) {
		return fmt.Errorf("no access to %s: %w", name, ErrPermissionDenied)
	}
	return err
}

// Concerns reports whether e changed the subscriber's own directory entry,
// after which its stream must Recheck before delivering anything later.
func (sub *Subscriber) Concerns(e *Event) bool {
	return e.Type == EventPractitionerChanged && e.Resource == Practitioners.Name(sub.Principal.PractitionerID)
}

// Receives reports whether the subscriber may, and asked to, receive e.
func (sub *Subscriber) Receives(e *Event) bool {
	if !sub.Filter.Matches(e) {
		return false
	}
	for _, a := range e.Audience {
		if slices.Contains(sub.audience, a) {
			return true
		}
	}
	return false
}

// ViewClass is the part of a reader that decides how an event is redacted
// for them: every reader of one class sees an event alike.
type ViewClass = Role

// ViewClass returns the subscriber's class: redaction (RedactEvent)
// depends on the reader's role alone.
func (sub *Subscriber) ViewClass() ViewClass { return sub.Principal.Role }

// View returns e as the subscriber may see it, the same for every
// subscriber of its ViewClass.
func (sub *Subscriber) View(e *Event) *Event {
	c := cloneEvent(e)
	RedactEvent(sub.Principal, c)
	return c
}

// cloneEvent copies an event deeply enough that redaction leaves the
// original (shared by every subscriber) untouched.
func cloneEvent(e *Event) *Event {
	c := *e
	if e.Referral != nil {
		r := *e.Referral
		c.Referral = &r
	}
	if e.Diagnosis != nil {
		d := *e.Diagnosis
		c.Diagnosis = &d
	}
	if e.Clearance != nil {
		cl := *e.Clearance
		c.Clearance = &cl
	}
	if e.Session != nil {
		ss := *e.Session
		c.Session = &ss
	}
	return &c
}

// EventsAfter returns up to limit events after cursor, unfiltered, for the
// server's fan-out to subscribers.
func (s *Service) EventsAfter(ctx context.Context, after int64, limit int) ([]*Event, error) {
	// The fan-out waits for nothing: it is woken again when the horizon
	// moves.
	through, err := s.store.EventHorizon(ctx, 0)
	if err != nil {
		return nil, err
	}
	return read(ctx, s, func(tx Tx) ([]*Event, error) { return tx.ListEvents(ctx, nil, EventFilter{}, after, through, limit) })
}

// ReplayEvents returns up to limit events after cursor that sub receives,
// checking first that the cursor is still retained.
func (s *Service) ReplayEvents(ctx context.Context, sub *Subscriber, after int64, limit int) ([]*Event, error) {
	through, err := s.store.EventHorizon(ctx, horizonWait)
	if err != nil {
		return nil, err
	}
	var rows []*Event
	err = s.store.InTx(ctx, func(tx Tx) error {
		oldest, err := tx.OldestEventCursor(ctx)
		if err != nil {
			return err
		}
		if after != 0 && after < oldest {
			return &CursorError{Oldest: oldest}
		}
		rows, err = tx.ListEvents(ctx, sub.audience, sub.Filter, after, through, limit)
		return err
	})
	for _, e := range rows {
		RedactEvent(sub.Principal, e)
	}
	return rows, err
}

// LatestEventCursor returns the newest cursor below which no event can
// still be committed.
func (s *Service) LatestEventCursor(ctx context.Context) (int64, error) {
	return s.store.EventHorizon(ctx, horizonWait)
}

// AnnounceExpiries writes the REFERRAL_EXPIRED event of up to limit
// referrals whose validity has passed, each once, and returns how many it
// announced. Expiry itself needs no write: it is derived when a referral is
// read and enforced when one is changed; this only tells watchers. Replicas
// may sweep at once: a referral one of them holds waits for a later sweep.
func (s *Service) AnnounceExpiries(ctx context.Context, limit int) (int, error) {
	var n int
	err := s.store.InTx(ctx, func(tx Tx) error {
		now := s.clock.Now()
		due, err := tx.ClaimExpiredReferrals(ctx, now, limit)
		if err != nil {
			return err
		}
		for _, r := range due {
			tx.AppendEvent(referralEvent(EventReferralExpired, r, uuid.Nil, now))
		}
		n = len(due)
		return nil
	})
	return n, err
}

// PruneEvents deletes events older than before; watchers whose cursor is
// older then get ErrCursorExpired.
func (s *Service) PruneEvents(ctx context.Context, before time.Time) (int64, error) {
	var n int64
	err := s.store.InTx(ctx, func(tx Tx) (err error) {
		n, err = tx.PruneEvents(ctx, before)
		return err
	})
	return n, err
}
