package careteam

import (
	"fmt"

	"github.com/google/uuid"
)

// This file is the one place that decides access. Reads of patient data are
// decided by scopes: the relations through which a caller may see a row,
// which the store turns into SQL; writes are decided by the functions below,
// over the rows the use case loaded.

// PatientScope is the set of relations through which a caller sees a
// patient: a patient is visible when any set (non-zero) relation holds.
type PatientScope struct {
	// RegisteredByOrg: the organization that registered the patient.
	RegisteredByOrg uuid.UUID
	// ReferredBy: a physician who made a referral for the patient.
	ReferredBy uuid.UUID
}

// patientScope returns the caller's patient scope: physicians through their
// organization's registrations and their own referrals, diagnoses and
// clearances; therapists through referrals targeted at them (or at their
// practice while unassigned); coordinators through their organization's
// referrals. Administrators and auditors see no patient.
func patientScope(p Principal) (PatientScope, error) {
	switch p.Role {
	case RolePhysician:
		return PatientScope{RegisteredByOrg: p.OrganizationID, ReferredBy: p.PractitionerID}, nil
	case RoleTherapist, RoleCoordinator:
		return PatientScope{RegisteredByOrg: p.OrganizationID}, nil
	}
	return PatientScope{}, fmt.Errorf("role %s reads no patient data: %w", p.Role, ErrPermissionDenied)
}

// authorizeDirectory allows directory changes in org: the bootstrap
// administrator anywhere, an ADMIN in their own organization (uuid.Nil asks
// for the bootstrap administrator alone).
func authorizeDirectory(p Principal, org uuid.UUID) error {
	if p.Bootstrap || (p.Role == RoleAdmin && org != uuid.Nil && p.OrganizationID == org) {
		return nil
	}
	return fmt.Errorf("directory changes need an administrator of the organization: %w", ErrPermissionDenied)
}

// authorizeRegisterPatient allows clinicians and coordinators to register
// patients for their own organization.
func authorizeRegisterPatient(p Principal) error {
	switch p.Role {
	case RolePhysician, RoleTherapist, RoleCoordinator:
		return nil
	}
	return fmt.Errorf("role %s cannot register patients: %w", p.Role, ErrPermissionDenied)
}

// authorizeUpdatePatient allows the registering organization's clinicians
// and coordinators to change demographics.
func authorizeUpdatePatient(p Principal, pt *Patient) error {
	if err := authorizeRegisterPatient(p); err != nil {
		return err
	}
	if pt.OrganizationID != p.OrganizationID {
		return fmt.Errorf("only the registering organization changes %s: %w", Patients.Name(pt.ID), ErrPermissionDenied)
	}
	return nil
}
