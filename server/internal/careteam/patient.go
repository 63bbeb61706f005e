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

// Gender is a patient's administrative gender (FHIR AdministrativeGender).
type Gender string

// The genders.
const (
	GenderMale    Gender = "MALE"
	GenderFemale  Gender = "FEMALE"
	GenderOther   Gender = "OTHER"
	GenderUnknown Gender = "UNKNOWN"
)

// Patient is a person receiving care.
type Patient struct {
	ID uuid.UUID
	// OrganizationID is the registering organization; identifiers are
	// unique within it.
	OrganizationID uuid.UUID
	// RegisteredBy is the practitioner who registered the patient.
	RegisteredBy uuid.UUID
	GivenName    string
	FamilyName   string
	BirthDate    time.Time
	Gender       Gender
	Identifiers  []Identifier
	Version      int64
	CreateTime   time.Time
	UpdateTime   time.Time
}

// PatientFilter narrows ListPatients; zero fields do not filter.
type PatientFilter struct {
	FamilyNamePrefix string
	BirthDate        time.Time
}

// PatientUpdate names the fields UpdatePatient changes.
type PatientUpdate struct {
	GivenName, FamilyName, BirthDate, Gender, Identifiers bool
}

func (s *Service) validatePatient(f *fields, pt *Patient) {
	if strings.TrimSpace(pt.FamilyName) == "" {
		f.add("patient.family_name", "required")
	}
	if pt.BirthDate.IsZero() {
		f.add("patient.birth_date", "required")
	} else if pt.BirthDate.After(dateOf(s.clock.Now())) {
		f.add("patient.birth_date", "must not be in the future")
	}
	if pt.Gender == "" {
		pt.Gender = GenderUnknown
	}
	validateIdentifiers(f, "patient.identifiers", pt.Identifiers)
}

// CreatePatient registers a patient for the caller's organization. An
// identifier already registered there is ErrAlreadyExists.
func (s *Service) CreatePatient(ctx context.Context, p Principal, pt Patient, idem Idempotency) (*Patient, error) {
	if err := authorizeRegisterPatient(p); err != nil {
		return nil, err
	}
	f := fieldsFor(ctx)
	s.validatePatient(&f, &pt)
	if err := f.err(); err != nil {
		return nil, err
	}
	now := s.clock.Now()
	pt.ID, pt.OrganizationID, pt.RegisteredBy = newID(), p.OrganizationID, p.PractitionerID
	pt.Version, pt.CreateTime, pt.UpdateTime = 1, now, now
	return mutate(ctx, s, p, "CreatePatient", idem,
		func(tx Tx) (*Patient, uuid.UUID, error) {
			audit.Touch(ctx, Patients.Name(pt.ID), pt.ID)
			return &pt, pt.ID, tx.InsertPatient(ctx, &pt)
		},
		func(tx Tx, id uuid.UUID) (*Patient, error) { return s.getPatient(ctx, tx, p, id, false) })
}

// getPatient loads a patient the caller may see. A patient out of reach is
// ErrPermissionDenied whether or not it exists, so that nothing reveals to
// another organization that a patient exists.
func (s *Service) getPatient(ctx context.Context, tx Tx, p Principal, id uuid.UUID, forUpdate bool) (*Patient, error) {
	scope, err := patientScope(p, !forUpdate)
	if err != nil {
		return nil, err
	}
	return loadPatient(ctx, tx, id, scope, forUpdate)
}

func loadPatient(ctx context.Context, tx PatientStore, id uuid.UUID, scope PatientScope, forUpdate bool) (*Patient, error) {
	audit.Touch(ctx, Patients.Name(id), id)
	pt, err := tx.GetPatient(ctx, id, scope, forUpdate)
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("%s: %w", Patients.Name(id), ErrPermissionDenied)
	}
	return pt, err
}

// GetPatient returns a patient the caller may see, in demographicsScope.
func (s *Service) GetPatient(ctx context.Context, p Principal, id uuid.UUID) (*Patient, error) {
	scope, err := demographicsScope(p)
	if err != nil {
		return nil, err
	}
	return read(ctx, s, func(tx Tx) (*Patient, error) { return loadPatient(ctx, tx, id, scope, false) })
}

// ListPatients lists the patients the caller may see, by registration.
func (s *Service) ListPatients(ctx context.Context, p Principal, f PatientFilter, page Page) ([]*Patient, uuid.UUID, error) {
	scope, err := patientScope(p, false)
	if err != nil {
		return nil, uuid.Nil, err
	}
	return listPage(ctx, s, page,
		func(tx Tx, page Page) ([]*Patient, error) { return tx.ListPatients(ctx, scope, f, page) },
		func(pt *Patient) uuid.UUID { return pt.ID },
		func(pt *Patient) { audit.Touch(ctx, Patients.Name(pt.ID), pt.ID) })
}

// UpdatePatient changes the fields named in mask.
func (s *Service) UpdatePatient(ctx context.Context, p Principal, in Patient, mask PatientUpdate, etag string, idem Idempotency) (*Patient, error) {
	return mutate(ctx, s, p, "UpdatePatient", idem,
		func(tx Tx) (*Patient, uuid.UUID, error) {
			cur, err := s.getPatient(ctx, tx, p, in.ID, true)
			if err != nil {
				return nil, uuid.Nil, err
			}
			if err := authorizeUpdatePatient(p, cur); err != nil {
				return nil, uuid.Nil, err
			}
			if err := checkEtag(etag, cur.Version); err != nil {
				return nil, uuid.Nil, err
			}
			if mask.GivenName {
				cur.GivenName = in.GivenName
			}
			if mask.FamilyName {
				cur.FamilyName = in.FamilyName
			}
			if mask.BirthDate {
				cur.BirthDate = in.BirthDate
			}
			if mask.Gender {
				cur.Gender = in.Gender
			}
			if mask.Identifiers {
				cur.Identifiers = in.Identifiers
			}
			f := fieldsFor(ctx)
			s.validatePatient(&f, cur)
			if err := f.err(); err != nil {
				return nil, uuid.Nil, err
			}
			cur.Version++
			cur.UpdateTime = s.clock.Now()
			return cur, cur.ID, tx.UpdatePatient(ctx, cur)
		},
		func(tx Tx, id uuid.UUID) (*Patient, error) { return s.getPatient(ctx, tx, p, id, false) })
}

// LookupPatient finds a patient the caller may see by identifier: the one
// the caller's organization registered, else the earliest registered.
func (s *Service) LookupPatient(ctx context.Context, p Principal, id Identifier) (*Patient, error) {
	scope, err := patientScope(p, true)
	if err != nil {
		return nil, err
	}
	var found *Patient
	err = s.store.Read(ctx, func(tx Tx) error {
		rows, err := tx.FindPatientsByIdentifier(ctx, scope, id)
		if err != nil {
			return err
		}
		if len(rows) == 0 {
			// The same answer whether the identifier is unknown or
			// registered out of the caller's reach.
			return fmt.Errorf("no visible patient has that identifier: %w", ErrNotFound)
		}
		found = rows[0]
		if i := slices.IndexFunc(rows, func(pt *Patient) bool { return pt.OrganizationID == p.OrganizationID }); i >= 0 {
			found = rows[i]
		}
		audit.Touch(ctx, Patients.Name(found.ID), found.ID)
		return nil
	})
	return found, err
}
