package careteam

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/careteam/careteam/server/internal/audit"
)

// CancelReason NoShow keeps the visit used; every other reason returns it.
const CancelNoShow = "NO_SHOW"

// NoteUpdate names the note fields UpdateSessionNote changes.
type NoteUpdate struct {
	Subjective, Objective, Assessment, Plan, PainBefore, PainAfter, Oswestry, NeckDisability,
	RangeOfMotion, Treatments, DurationMinutes, AdverseEvent bool
}

// GetSession returns a session the caller may see.
func (s *Service) GetSession(ctx context.Context, p Principal, id uuid.UUID) (*Session, error) {
	return read(ctx, s, func(tx Tx) (*Session, error) { return s.readSession(ctx, tx, p, id, false) })
}

// ListSessions lists the sessions the caller may see, newest first.
func (s *Service) ListSessions(ctx context.Context, p Principal, f SessionFilter, page Page) ([]*Session, uuid.UUID, error) {
	scope, err := sessionScope(p)
	if err != nil {
		return nil, uuid.Nil, err
	}
	rows, next, err := listPage(ctx, s, page,
		func(tx Tx, page Page) ([]*Session, error) { return tx.ListSessions(ctx, scope, f, page) },
		func(ss *Session) uuid.UUID { return ss.ID },
		func(ss *Session) { audit.Touch(ctx, Sessions.Name(ss.ID), ss.PatientID) })
	if err != nil {
		return nil, uuid.Nil, err
	}
	for _, ss := range rows {
		redactSession(p, ss)
	}
	return rows, next, nil
}

// changeSession runs one change of a session by its therapist: lock it,
// check who, the etag and that the note is still a draft where needed, and
// save.
func (s *Service) changeSession(ctx context.Context, p Principal, id uuid.UUID, etag string, idem Idempotency, method string,
	allow func(p Principal, ss *Session) error, change func(tx Tx, ss *Session, now time.Time) ([]EventType, error),
) (*Session, error) {
	return mutate(ctx, s, p, method, idem,
		func(tx Tx) (*Session, uuid.UUID, error) {
			ss, err := s.readSession(ctx, tx, p, id, true)
			if err != nil {
				return nil, uuid.Nil, err
			}
			if err := allow(p, ss); err != nil {
				return nil, uuid.Nil, err
			}
			if err := checkEtag(etag, ss.Version); err != nil {
				return nil, uuid.Nil, err
			}
			now := s.clock.Now()
			events, err := change(tx, ss, now)
			if err != nil {
				return nil, uuid.Nil, err
			}
			ss.Version++
			ss.UpdateTime = now
			if err := tx.UpdateSession(ctx, ss); err != nil {
				return nil, uuid.Nil, err
			}
			if len(events) > 0 {
				r, err := lockSessionReferral(ctx, tx, ss)
				if err != nil {
					return nil, uuid.Nil, err
				}
				for _, t := range events {
					tx.AppendEvent(sessionEvent(t, ss, r, p.PractitionerID, now))
				}
			}
			out := *ss
			redactSession(p, &out)
			return &out, ss.ID, nil
		},
		func(tx Tx, id uuid.UUID) (*Session, error) { return s.readSession(ctx, tx, p, id, false) })
}

func requireDraft(ss *Session) error {
	if ss.State != SessionStarted || ss.Note.Status != NoteDraft {
		return precondition("NOTE_SIGNED", Sessions.Name(ss.ID), "the session is %s and its note %s; a signed note never changes", ss.State, ss.Note.Status)
	}
	return nil
}

// lockSessionReferral locks the session's referral (unscoped: the caller's
// right to act on the session was decided already).
func lockSessionReferral(ctx context.Context, tx ReferralStore, ss *Session) (*Referral, error) {
	return tx.GetReferral(ctx, ss.ReferralID, ReferralScope{Any: true}, true)
}

// saveReferral bumps and saves a referral changed as a side effect.
func saveReferral(ctx context.Context, tx ReferralStore, r *Referral, now time.Time) error {
	r.Version++
	r.UpdateTime = now
	return tx.UpdateReferral(ctx, r)
}

// CancelSession cancels a session whose note is unsigned. The visit is
// returned, except for a no-show, which is recorded as such.
func (s *Service) CancelSession(ctx context.Context, p Principal, id uuid.UUID, reason, text, etag string, idem Idempotency) (*Session, error) {
	allowAll := func(Principal, *Session) error { return nil }
	return s.changeSession(ctx, p, id, etag, idem, "CancelSession", allowAll,
		func(tx Tx, ss *Session, now time.Time) ([]EventType, error) {
			r, err := lockSessionReferral(ctx, tx, ss)
			if err != nil {
				return nil, err
			}
			if err := authorizeCancelSession(p, ss, r); err != nil {
				return nil, err
			}
			if err := requireDraft(ss); err != nil {
				return nil, err
			}
			ss.CancelReason, ss.CancelText = reason, text
			events := []EventType{EventSessionCancelled}
			if reason == CancelNoShow {
				ss.State = SessionNoShow
				return events, nil
			}
			ss.State = SessionCancelled
			r.UsedVisits--
			return events, saveReferral(ctx, tx, r, now)
		})
}

// UpdateSessionNote edits the draft note: the session's therapist, with the
// etag they read. Recording an adverse event marks the referral for the
// physician's attention.
func (s *Service) UpdateSessionNote(ctx context.Context, p Principal, id uuid.UUID, in Note, mask NoteUpdate, etag string, idem Idempotency) (*Session, error) {
	if etag == "" {
		return nil, &InvalidError{Violations: []FieldViolation{{Field: "etag", Description: "required: two people editing one note must not overwrite each other"}}}
	}
	return s.changeSession(ctx, p, id, etag, idem, "UpdateSessionNote", authorizeSessionTherapist,
		func(tx Tx, ss *Session, now time.Time) ([]EventType, error) {
			if err := requireDraft(ss); err != nil {
				return nil, err
			}
			n := &ss.Note
			hadAdverse := n.AdverseEvent != nil
			set := func(on bool, apply func()) {
				if on {
					apply()
				}
			}
			set(mask.Subjective, func() { n.Subjective = in.Subjective })
			set(mask.Objective, func() { n.Objective = in.Objective })
			set(mask.Assessment, func() { n.Assessment = in.Assessment })
			set(mask.Plan, func() { n.Plan = in.Plan })
			set(mask.PainBefore, func() { n.PainBefore = in.PainBefore })
			set(mask.PainAfter, func() { n.PainAfter = in.PainAfter })
			set(mask.Oswestry, func() { n.Oswestry = in.Oswestry })
			set(mask.NeckDisability, func() { n.NeckDisability = in.NeckDisability })
			set(mask.RangeOfMotion, func() { n.RangeOfMotion = in.RangeOfMotion })
			set(mask.Treatments, func() { n.Treatments = in.Treatments })
			set(mask.DurationMinutes, func() { n.DurationMinutes = in.DurationMinutes })
			set(mask.AdverseEvent, func() { n.AdverseEvent = in.AdverseEvent })
			if n.AdverseEvent != nil && !hadAdverse {
				r, err := lockSessionReferral(ctx, tx, ss)
				if err != nil {
					return nil, err
				}
				r.AttentionRequired = true
				return []EventType{EventAdverseEventReported}, saveReferral(ctx, tx, r, now)
			}
			return nil, nil
		})
}

// SignSessionNote seals the draft note: the session's therapist, with the
// etag of what they read. The treatments recorded are checked against the
// clearance as it stands now; a violation refuses the signature unless the
// therapist documents why they deviated, which is flagged to the physician.
func (s *Service) SignSessionNote(ctx context.Context, p Principal, id uuid.UUID, deviation, etag string, idem Idempotency) (*Session, error) {
	if etag == "" {
		return nil, &InvalidError{Violations: []FieldViolation{{Field: "etag", Description: "required: the signer signs what they read"}}}
	}
	return s.changeSession(ctx, p, id, etag, idem, "SignSessionNote", authorizeSessionTherapist,
		func(tx Tx, ss *Session, now time.Time) ([]EventType, error) {
			if err := requireDraft(ss); err != nil {
				return nil, err
			}
			if len(ss.Note.Treatments) == 0 {
				return nil, &InvalidError{Violations: []FieldViolation{{Field: "note.treatments", Description: "record the treatments given before signing"}}}
			}
			r, err := lockSessionReferral(ctx, tx, ss)
			if err != nil {
				return nil, err
			}
			clearances, err := tx.GateClearances(ctx, r.PatientID, r.ID)
			if err != nil {
				return nil, err
			}
			c := applicableClearance(clearances, r.ID, now)
			if c == nil {
				// Retired since the start: judge by the one the session
				// started under.
				if c, err = tx.GetClearance(ctx, ss.ClearanceID, PatientScope{Any: true}, false); err != nil {
					return nil, err
				}
			}
			events := []EventType{EventNoteSigned}
			if v := planViolations(c, ss.Note.Treatments); len(v) > 0 {
				if deviation == "" {
					return nil, &PreconditionError{Violations: v}
				}
				ss.Note.DeviationReason = deviation
				r.AttentionRequired = true
				if err := saveReferral(ctx, tx, r, now); err != nil {
					return nil, err
				}
				events = append(events, EventDeviationReported)
			}
			ss.Note.Status, ss.State = NoteSigned, SessionCompleted
			ss.Note.Signature = &Signature{Signer: p.PractitionerID, Time: now}
			ss.Note.Signature.ContentSHA256 = NoteHash(ss)
			return events, nil
		})
}

// AmendSessionNote appends an amendment to a signed note; the session's
// therapist. Nothing is overwritten.
func (s *Service) AmendSessionNote(ctx context.Context, p Principal, id uuid.UUID, reason, text string, idem Idempotency) (*Session, *Amendment, error) {
	ss, err := s.changeSession(ctx, p, id, "", idem, "AmendSessionNote", authorizeSessionTherapist,
		func(tx Tx, ss *Session, now time.Time) ([]EventType, error) {
			if ss.Note.Status != NoteSigned {
				return nil, precondition("NOTE_NOT_SIGNED", Sessions.Name(ss.ID), "a draft note is edited, not amended")
			}
			ss.Note.Amendments = append(ss.Note.Amendments, Amendment{Author: p.PractitionerID, Time: now, Reason: reason, Text: text})
			return []EventType{EventNoteAmended}, nil
		})
	if err != nil {
		return nil, nil, err
	}
	return ss, &ss.Note.Amendments[len(ss.Note.Amendments)-1], nil
}

// canonicalNote is the content a signature covers, in a fixed order and
// encoding (JSON of this struct, fields in this order, times in RFC 3339
// with nanoseconds in UTC), so anyone can recompute the hash.
type canonicalNote struct {
	Session         string        `json:"session"`
	Referral        string        `json:"referral"`
	Patient         string        `json:"patient"`
	Therapist       string        `json:"therapist"`
	StartTime       time.Time     `json:"start_time"`
	Subjective      string        `json:"subjective"`
	Objective       string        `json:"objective"`
	Assessment      string        `json:"assessment"`
	Plan            string        `json:"plan"`
	PainBefore      *int          `json:"pain_before"`
	PainAfter       *int          `json:"pain_after"`
	Oswestry        *int          `json:"oswestry_disability_index"`
	NeckDisability  *int          `json:"neck_disability_index"`
	RangeOfMotion   string        `json:"range_of_motion"`
	Treatments      []Treatment   `json:"treatments"`
	DurationMinutes int           `json:"duration_minutes"`
	AdverseEvent    *AdverseEvent `json:"adverse_event"`
	DeviationReason string        `json:"deviation_reason"`
	Signer          string        `json:"signer"`
	SignTime        time.Time     `json:"sign_time"`
}

// NoteHash returns the hex SHA-256 of a signed note's canonical content.
func NoteHash(ss *Session) string {
	n := ss.Note
	treatments := n.Treatments
	if treatments == nil {
		treatments = []Treatment{}
	}
	b, err := json.Marshal(canonicalNote{
		Session: Sessions.Name(ss.ID), Referral: Referrals.Name(ss.ReferralID), Patient: Patients.Name(ss.PatientID),
		Therapist: Practitioners.Name(ss.TherapistID), StartTime: ss.StartTime.UTC(),
		Subjective: n.Subjective, Objective: n.Objective, Assessment: n.Assessment, Plan: n.Plan,
		PainBefore: n.PainBefore, PainAfter: n.PainAfter, Oswestry: n.Oswestry, NeckDisability: n.NeckDisability,
		RangeOfMotion: n.RangeOfMotion, Treatments: treatments, DurationMinutes: n.DurationMinutes,
		AdverseEvent: n.AdverseEvent, DeviationReason: n.DeviationReason,
		Signer: Practitioners.Name(n.Signature.Signer), SignTime: n.Signature.Time.UTC(),
	})
	if err != nil {
		panic(fmt.Sprintf("encoding a note: %v", err))
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
