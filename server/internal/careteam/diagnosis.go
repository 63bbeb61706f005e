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

// ClinicalStatus is a diagnosis' clinical status (FHIR
// condition-clinical).
type ClinicalStatus string

// The clinical statuses.
const (
	StatusActive     ClinicalStatus = "ACTIVE"
	StatusRecurrence ClinicalStatus = "RECURRENCE"
	StatusRemission  ClinicalStatus = "REMISSION"
	StatusResolved   ClinicalStatus = "RESOLVED"
)

// Severity grades a diagnosis or an adverse event.
type Severity string

// BodyRegion is a region of the body.
type BodyRegion string

// Diagnosis is a physician's diagnosis of a patient (FHIR Condition).
type Diagnosis struct {
	ID             uuid.UUID
	PatientID      uuid.UUID
	PhysicianID    uuid.UUID
	ICD10Code      string
	Display        string
	BodySites      []BodyRegion
	OnsetDate      time.Time
	ClinicalStatus ClinicalStatus
	Severity       Severity
	RedFlags       []RedFlag
	Notes          string
	NotesShareable bool
	// Categories are the Condition's categories (such as
	// problem-list-item or encounter-diagnosis).
	Categories []Coding
	Version    int64
	CreateTime time.Time
	UpdateTime time.Time
}

// Active reports whether the condition is current: ACTIVE or RECURRENCE.
func (d *Diagnosis) Active() bool {
	return d.ClinicalStatus == StatusActive || d.ClinicalStatus == StatusRecurrence
}

// DiagnosisUpdate names the fields UpdateDiagnosis changes.
type DiagnosisUpdate struct {
	ClinicalStatus, Severity, Notes, NotesShareable, RedFlags, BodySites, Display bool
}

func (s *Service) validateDiagnosis(f *fields, d *Diagnosis) {
	if d.PatientID == uuid.Nil {
		f.add("diagnosis.patient", "required")
	}
	code, ok := NormalizeICD10(d.ICD10Code)
	if !ok {
		f.add("diagnosis.icd10_code", "required: an ICD-10-CM code such as M54.50")
	}
	d.ICD10Code = code
	if strings.TrimSpace(d.Display) == "" {
		f.add("diagnosis.display", "required")
	}
	if !d.OnsetDate.IsZero() && d.OnsetDate.After(dateOf(s.clock.Now())) {
		f.add("diagnosis.onset_date", "must not be in the future")
	}
	if d.ClinicalStatus == "" {
		d.ClinicalStatus = StatusActive
	}
	// The code's own red flags, whatever the caller ticked: they can be
	// neither forgotten nor removed.
	d.RedFlags = append(d.RedFlags, CodeRedFlags(d.ICD10Code)...)
	slices.Sort(d.RedFlags)
	d.RedFlags = slices.Compact(d.RedFlags)
	slices.Sort(d.BodySites)
	d.BodySites = slices.Compact(d.BodySites)
}

// RecordDiagnosis records a diagnosis of a patient the physician may see.
func (s *Service) RecordDiagnosis(ctx context.Context, p Principal, d Diagnosis, idem Idempotency) (*Diagnosis, error) {
	if err := authorizePhysician(p, "record diagnoses"); err != nil {
		return nil, err
	}
	f := fieldsFor(ctx)
	s.validateDiagnosis(&f, &d)
	if err := f.err(); err != nil {
		return nil, err
	}
	d.ID, d.PhysicianID, d.Version = newID(), p.PractitionerID, 1
	return mutate(ctx, s, p, "RecordDiagnosis", idem,
		func(tx Tx) (*Diagnosis, uuid.UUID, error) {
			now := s.clock.Now()
			if err := s.lockPatientRecord(ctx, tx, p, d.PatientID, now); err != nil {
				return nil, uuid.Nil, err
			}
			d.CreateTime, d.UpdateTime = now, now
			return &d, d.ID, s.saveDiagnosis(ctx, tx, p, nil, &d, now)
		},
		func(tx Tx, id uuid.UUID) (*Diagnosis, error) { return s.readDiagnosis(ctx, tx, p, id, false) })
}

// readDiagnosis loads a diagnosis of a patient the caller may see, redacted
// for their role.
func (s *Service) readDiagnosis(ctx context.Context, tx Tx, p Principal, id uuid.UUID, forUpdate bool) (*Diagnosis, error) {
	audit.Touch(ctx, Diagnoses.Name(id), uuid.Nil)
	scope, err := clinicalScope(p, !forUpdate)
	if err != nil {
		return nil, err
	}
	d, err := tx.GetDiagnosis(ctx, id, scope, forUpdate)
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("%s: %w", Diagnoses.Name(id), ErrPermissionDenied)
	}
	if err != nil {
		return nil, err
	}
	audit.Touch(ctx, "", d.PatientID)
	if !forUpdate { // what is read for a write is saved again whole
		redactDiagnosis(p, d)
	}
	return d, nil
}

// GetDiagnosis returns a diagnosis the caller may see.
func (s *Service) GetDiagnosis(ctx context.Context, p Principal, id uuid.UUID) (*Diagnosis, error) {
	return read(ctx, s, func(tx Tx) (*Diagnosis, error) { return s.readDiagnosis(ctx, tx, p, id, false) })
}

// ListDiagnoses lists a visible patient's diagnoses, oldest first.
func (s *Service) ListDiagnoses(ctx context.Context, p Principal, patient uuid.UUID, page Page) ([]*Diagnosis, uuid.UUID, error) {
	rows, next, err := listPage(ctx, s, page,
		func(tx Tx, page Page) ([]*Diagnosis, error) {
			if _, err := s.getPatient(ctx, tx, p, patient, false); err != nil {
				return nil, err
			}
			switch ok, err := seesClinical(ctx, tx, p, patient); {
			case err != nil:
				return nil, err
			case !ok:
				return nil, fmt.Errorf("%s: diagnoses are shared with a therapist through a referral assigned to them: %w", Patients.Name(patient), ErrPermissionDenied)
			}
			return tx.ListDiagnoses(ctx, patient, page)
		},
		func(d *Diagnosis) uuid.UUID { return d.ID },
		func(d *Diagnosis) { audit.Touch(ctx, Diagnoses.Name(d.ID), d.PatientID) })
	if err != nil {
		return nil, uuid.Nil, err
	}
	for _, d := range rows {
		redactDiagnosis(p, d)
	}
	return rows, next, nil
}

// UpdateDiagnosis changes a diagnosis; a physician who sees the patient.
func (s *Service) UpdateDiagnosis(ctx context.Context, p Principal, in Diagnosis, mask DiagnosisUpdate, etag string, idem Idempotency) (*Diagnosis, error) {
	if err := authorizePhysician(p, "update diagnoses"); err != nil {
		return nil, err
	}
	return mutate(ctx, s, p, "UpdateDiagnosis", idem,
		func(tx Tx) (*Diagnosis, uuid.UUID, error) {
			peek, err := s.readDiagnosis(ctx, tx, p, in.ID, false)
			if err != nil {
				return nil, uuid.Nil, err
			}
			now := s.clock.Now()
			if err := s.lockPatientRecord(ctx, tx, p, peek.PatientID, now); err != nil {
				return nil, uuid.Nil, err
			}
			d, err := s.readDiagnosis(ctx, tx, p, in.ID, true)
			if err != nil {
				return nil, uuid.Nil, err
			}
			if err := checkEtag(etag, d.Version); err != nil {
				return nil, uuid.Nil, err
			}
			prev := *d
			if mask.ClinicalStatus {
				d.ClinicalStatus = in.ClinicalStatus
			}
			if mask.Severity {
				d.Severity = in.Severity
			}
			if mask.Notes {
				d.Notes = in.Notes
			}
			if mask.NotesShareable {
				d.NotesShareable = in.NotesShareable
			}
			if mask.RedFlags {
				d.RedFlags = in.RedFlags
			}
			if mask.BodySites {
				d.BodySites = in.BodySites
			}
			if mask.Display {
				d.Display = in.Display
			}
			f := fieldsFor(ctx)
			s.validateDiagnosis(&f, d)
			if err := f.err(); err != nil {
				return nil, uuid.Nil, err
			}
			d.Version++
			d.UpdateTime = now
			return d, d.ID, s.saveDiagnosis(ctx, tx, p, &prev, d, now)
		},
		func(tx Tx, id uuid.UUID) (*Diagnosis, error) { return s.readDiagnosis(ctx, tx, p, id, false) })
}

// saveDiagnosis writes a diagnosis, recorded (prev nil) or changed from
// prev, announces it, and keeps the patient's red-flag findings in step:
// every path that records a diagnosis goes through here. The patient's row
// must be locked (lockPatientRecord).
func (s *Service) saveDiagnosis(ctx context.Context, tx Tx, p Principal, prev, d *Diagnosis, now time.Time) error {
	audit.Touch(ctx, Diagnoses.Name(d.ID), d.PatientID)
	event := EventDiagnosisRecorded
	if prev == nil {
		if err := tx.InsertDiagnosis(ctx, d); err != nil {
			return err
		}
	} else {
		if err := tx.UpdateDiagnosis(ctx, d); err != nil {
			return err
		}
		event = EventDiagnosisUpdated
	}
	if err := s.diagnosisEvent(ctx, tx, event, d, p.PractitionerID); err != nil {
		return err
	}
	return s.recordDiagnosisFindings(ctx, tx, p, prev, d, now)
}

// checkReasonDiagnoses requires a referral's reason diagnoses to be
// diagnoses of its patient.
func (s *Service) checkReasonDiagnoses(ctx context.Context, tx ClinicalStore, r *Referral) error {
	if len(r.ReasonDiagnoses) == 0 {
		return nil
	}
	found, err := tx.DiagnosesOfPatient(ctx, r.PatientID, r.ReasonDiagnoses)
	if err != nil {
		return err
	}
	f := fieldsFor(ctx)
	for i, id := range r.ReasonDiagnoses {
		if !slices.Contains(found, id) {
			f.add(fmt.Sprintf("referral.reason_diagnoses[%d]", i), "not a diagnosis of the referral's patient")
		}
	}
	return f.err()
}
