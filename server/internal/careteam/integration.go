package careteam

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/google/uuid"

	"github.com/careteam/careteam/server/internal/audit"
)

// checkGrant checks that every organization an integration is granted is
// a physician practice: an integration acts for physicians only.
func checkGrant(ctx context.Context, tx DirectoryStore, orgs []uuid.UUID) error {
	var bad []FieldViolation
	for i, id := range orgs {
		o, err := tx.GetOrganization(ctx, id, false)
		switch {
		case errors.Is(err, ErrNotFound):
			bad = append(bad, FieldViolation{Field: fmt.Sprintf("practitioner.acts_for[%d]", i), Description: "no such organization"})
		case err != nil:
			return err
		case o.Kind != PhysicianPractice:
			bad = append(bad, FieldViolation{Field: fmt.Sprintf("practitioner.acts_for[%d]", i),
				Description: "an integration acts for the physicians of physician practices"})
		}
	}
	if len(bad) > 0 {
		return &InvalidError{Violations: bad}
	}
	return nil
}

// ActFor makes an integration's call the call of a physician it is
// granted to act for: an active physician of one of the organizations its
// directory entry names. Everything after is decided as for that
// physician; the call's audit record keeps the integration's subject with
// the physician as practitioner, so it names both.
func (s *Service) ActFor(ctx context.Context, p Principal, physician uuid.UUID) (Principal, error) {
	if p.Role != RoleIntegration {
		return Principal{}, fmt.Errorf("only an integration acts for another: %w", ErrPermissionDenied)
	}
	// Breaking the glass is a clinician's own act, with a reason they
	// answer for; an automated client acting for one does not.
	if p.Purpose == audit.PurposeEmergency {
		return Principal{}, fmt.Errorf("an integration does not break the glass: %w", ErrPermissionDenied)
	}
	var integration, target *Practitioner
	err := s.store.Read(ctx, func(tx Tx) (err error) {
		if integration, err = tx.GetPractitioner(ctx, p.PractitionerID, false); err != nil {
			return err
		}
		target, err = tx.GetPractitioner(ctx, physician, false)
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return Principal{}, fmt.Errorf("%s acts for no %s: %w", Practitioners.Name(p.PractitionerID), Practitioners.Name(physician), ErrPermissionDenied)
	}
	if err != nil {
		return Principal{}, err
	}
	if !target.Active || target.Role != RolePhysician || !roleFits(target.Role, target.OrganizationKind) ||
		!slices.Contains(integration.ActsFor, target.OrganizationID) {
		return Principal{}, fmt.Errorf("%s is granted to act for no %s: %w", Practitioners.Name(p.PractitionerID),
			Practitioners.Name(physician), ErrPermissionDenied)
	}
	if e := audit.FromContext(ctx); e != nil {
		e.Identify(p.Subject, target.ID, string(RolePhysician), target.OrganizationID)
	}
	return Principal{Subject: p.Subject, PractitionerID: target.ID, OrganizationID: target.OrganizationID, Role: RolePhysician,
		Purpose: p.Purpose, EmergencyReason: p.EmergencyReason, Via: p.PractitionerID}, nil
}

// actForRequester makes an integration's import the import of the
// physician its ServiceRequest names as requester, by careteam id or by
// one of their directory identifiers (such as an NPI).
func (s *Service) actForRequester(ctx context.Context, p Principal, req ImportRef) (Principal, error) {
	if !req.given() {
		return Principal{}, &InvalidError{Violations: []FieldViolation{{Field: "referral.referring_physician",
			Description: "required of an integration: the physician it imports the order for"}}}
	}
	id := req.ID
	if id == uuid.Nil {
		err := s.store.Read(ctx, func(tx Tx) error {
			for _, ident := range req.Identifiers {
				pr, err := tx.FindPractitionerByIdentifier(ctx, ident)
				if errors.Is(err, ErrNotFound) {
					continue
				}
				if err != nil {
					return err
				}
				id = pr.ID
				return nil
			}
			return nil
		})
		if err != nil {
			return Principal{}, err
		}
	}
	if id == uuid.Nil {
		var names []string
		for _, ident := range req.Identifiers {
			names = append(names, ident.System+"|"+ident.Value)
		}
		return Principal{}, &InvalidError{Violations: []FieldViolation{{Field: "referral.referring_physician",
			Description: fmt.Sprintf("no practitioner in the directory has the identifier %v", names)}}}
	}
	return s.ActFor(ctx, p, id)
}
