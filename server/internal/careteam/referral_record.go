package careteam

import (
	"context"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/careteam/careteam/server/internal/audit"
)

// ReferralRecord is what careteam holds about one referral, as much of it
// as the reader may see, read in one transaction: what an export is made
// of.
type ReferralRecord struct {
	Referral *Referral
	// ImportIdentifiers are the identifiers the referral was imported
	// under, in the order they were recorded; none for a referral made in
	// careteam.
	ImportIdentifiers []Identifier
	Patient           *Patient
	// Diagnoses are the patient's, oldest first.
	Diagnoses []*Diagnosis
	// Clearance is the one that governs sessions under the referral, as
	// the gate picks it; nil when there is none.
	Clearance *Clearance
	// Sessions are the referral's that the reader sees, oldest first.
	Sessions []*Session
	Progress *Progress
	// Practitioners and Organizations are the directory entries the
	// record names.
	Practitioners map[uuid.UUID]*Practitioner
	Organizations map[uuid.UUID]*Organization
	// Time is when it was read.
	Time time.Time
}

// GetReferralRecord reads a referral with its patient, diagnoses,
// governing clearance, sessions and progress, through the reads each has
// on its own, so that the same access rules and redactions apply: whoever
// may read the referral gets what they could read piece by piece, and a
// coordinator no clinical text.
func (s *Service) GetReferralRecord(ctx context.Context, p Principal, id uuid.UUID) (*ReferralRecord, error) {
	rec := &ReferralRecord{Practitioners: map[uuid.UUID]*Practitioner{}, Organizations: map[uuid.UUID]*Organization{}}
	err := s.store.InTx(ctx, func(tx Tx) error {
		rec.Time = s.clock.Now()
		r, err := s.readReferral(ctx, tx, p, id)
		if err != nil {
			return err
		}
		rec.Referral = r
		if rec.Patient, err = s.getPatient(ctx, tx, p, r.PatientID, false); err != nil {
			return err
		}
		if rec.ImportIdentifiers, err = tx.ImportIdentifiersOf(ctx, r.ID); err != nil {
			return err
		}
		clinical, err := seesClinical(ctx, tx, p, r.PatientID)
		if err != nil {
			return err
		}
		if clinical {
			if rec.Diagnoses, err = every(func(page Page) ([]*Diagnosis, error) { return tx.ListDiagnoses(ctx, r.PatientID, page) },
				func(d *Diagnosis) uuid.UUID { return d.ID }); err != nil {
				return err
			}
		}
		for _, d := range rec.Diagnoses {
			audit.Touch(ctx, Diagnoses.Name(d.ID), d.PatientID)
			redactDiagnosis(p, d)
		}
		if err := s.readGoverningClearance(ctx, tx, p, rec); err != nil {
			return err
		}
		if err := s.readRecordSessions(ctx, tx, p, rec); err != nil {
			return err
		}
		if rec.Progress, err = s.progress(ctx, tx, r); err != nil {
			return err
		}
		redactProgress(p, rec.Progress)
		return s.readRecordDirectory(ctx, tx, rec)
	})
	if err != nil {
		return nil, err
	}
	return rec, nil
}

// readGoverningClearance picks, among the patient's clearances the reader
// sees, the one the gate would judge a session under the referral by.
func (s *Service) readGoverningClearance(ctx context.Context, tx Tx, p Principal, rec *ReferralRecord) error {
	scope, err := clinicalScope(p, true)
	if err != nil {
		return err
	}
	f := ClearanceFilter{PatientID: rec.Referral.PatientID, Now: rec.Time}
	cs, err := every(func(page Page) ([]*Clearance, error) { return tx.ListClearances(ctx, scope, f, page) },
		func(c *Clearance) uuid.UUID { return c.ID })
	if err != nil {
		return err
	}
	c := applicableClearance(cs, rec.Referral.ID, rec.Time)
	if c == nil {
		return nil
	}
	audit.Touch(ctx, Clearances.Name(c.ID), c.PatientID)
	redactClearance(p, c)
	c.derive(rec.Time)
	rec.Clearance = c
	return nil
}

// readRecordSessions reads the referral's sessions the reader sees.
func (s *Service) readRecordSessions(ctx context.Context, tx Tx, p Principal, rec *ReferralRecord) error {
	scope, err := sessionScope(p)
	if err != nil {
		return err
	}
	f := SessionFilter{ReferralID: rec.Referral.ID}
	sessions, err := every(func(page Page) ([]*Session, error) { return tx.ListSessions(ctx, scope, f, page) },
		func(ss *Session) uuid.UUID { return ss.ID })
	if err != nil {
		return err
	}
	// Listed newest first; a record reads oldest first.
	slices.Reverse(sessions)
	for _, ss := range sessions {
		audit.Touch(ctx, Sessions.Name(ss.ID), ss.PatientID)
		redactSession(p, ss)
	}
	rec.Sessions = sessions
	return nil
}

// readRecordDirectory reads the practitioners and organizations the record
// names; the directory holds no patient data and every caller may read it.
func (s *Service) readRecordDirectory(ctx context.Context, tx DirectoryStore, rec *ReferralRecord) error {
	r := rec.Referral
	people := []uuid.UUID{r.ReferringPhysicianID, r.TargetTherapistID}
	if rec.Clearance != nil {
		people = append(people, rec.Clearance.PhysicianID)
	}
	for _, d := range rec.Diagnoses {
		people = append(people, d.PhysicianID)
	}
	for _, ss := range rec.Sessions {
		people = append(people, ss.TherapistID)
	}
	for _, id := range compactIDs(people...) {
		pr, err := tx.GetPractitioner(ctx, id, false)
		if err != nil {
			return err
		}
		rec.Practitioners[id] = pr
	}
	for _, id := range compactIDs(r.ReferringOrgID, r.TargetOrgID) {
		o, err := tx.GetOrganization(ctx, id, false)
		if err != nil {
			return err
		}
		rec.Organizations[id] = o
	}
	return nil
}

// every reads a listing to its end, a page at a time.
func every[T any](list func(Page) ([]T, error), id func(T) uuid.UUID) ([]T, error) {
	var out []T
	page := Page{Size: maxPageSize}
	for {
		rows, err := list(page)
		if err != nil {
			return nil, err
		}
		rows, next := trimPage(rows, page, id)
		out = append(out, rows...)
		if next == uuid.Nil {
			return out, nil
		}
		page.After = next
	}
}
