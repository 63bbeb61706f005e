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

// ReferralSystem is the identifier system of careteam's referrals: the
// value is the referral's id. It names the ServiceRequest of a referral
// careteam exported, and a referral in a search by identifier.
const ReferralSystem = "urn:careteam:referral"

// ImportRef names a resource the way a FHIR reference does: by careteam id
// (a resource careteam exported) or by external identifiers.
type ImportRef struct {
	ID          uuid.UUID
	Identifiers []Identifier
}

func (r ImportRef) given() bool { return r.ID != uuid.Nil || len(r.Identifiers) > 0 }

// ServiceRequestImport is a FHIR ServiceRequest in domain terms, as package
// fhir maps it.
type ServiceRequestImport struct {
	// Identifiers are the ServiceRequest's identifiers with a system and
	// a value other than careteam's own: each of them finds the order
	// again within the importing organization, whatever their order, which
	// makes the import idempotent.
	Identifiers []Identifier
	// CreateOnly finds an existing order without changing it.
	CreateOnly bool
	// ReferralID is set when an identifier is careteam's own: the
	// ServiceRequest of an exported referral.
	ReferralID uuid.UUID
	// Submit is set for an active ServiceRequest: the referral is
	// SUBMITTED at once.
	Submit bool
	// Settled lists, for a ServiceRequest on hold, completed or revoked,
	// the states a referral is exported with that status from: such a
	// ServiceRequest creates nothing and finds only a referral in one of
	// them, where, as in any state past SUBMITTED, it changes nothing.
	Settled []ReferralState
	// Requester is the requesting practitioner; zero when not named.
	Requester ImportRef
	// Patient is the subject: its ID (a careteam id) or Identifiers find
	// it, the rest registers it when nothing is found, unless
	// PatientFindOnly (the subject named an identifier and no resource).
	Patient         Patient
	PatientFindOnly bool
	// Diagnoses are the Conditions the ServiceRequest cites.
	Diagnoses []ImportedDiagnosis
	// Order carries the referral's order: ReasonCodes, ReasonTexts,
	// ClinicalNotes, PatientInstruction, ServiceCodes, ServiceText,
	// Priority, RequestedTechniques, AuthorizedVisits, ValidFrom,
	// ValidUntil (zero: the default for a new referral, unchanged for a
	// re-import) and RequiredSpecialties.
	Order Referral
	// Therapist and Practice are the performer; either may be zero.
	Therapist, Practice ImportRef
	// Locate returns the element of the FHIR input a domain field path
	// ("patient.birth_date", "diagnoses[1].icd10_code",
	// "referral.valid_until") came from, or "" when it knows none, so that
	// a rejection points into what the caller sent.
	Locate func(field string) string
}

// ImportedDiagnosis is a Condition: a diagnosis to find (by its careteam
// id when it names one, else by code among the caller's diagnoses of the
// patient) or record. Reason marks the referral's reasons.
type ImportedDiagnosis struct {
	Diagnosis Diagnosis
	Reason    bool
}

// ImportResult is what an import found or made.
type ImportResult struct {
	Referral  *Referral
	Patient   *Patient
	Diagnoses []*Diagnosis
	// Changed is false when the import found the referral as it was and
	// wrote nothing.
	Changed bool
	// Created is true when the import made the referral.
	Created bool
}

// ImportServiceRequest imports a FHIR ServiceRequest as a referral of the
// calling physician, in one transaction: the patient found by identifier or
// registered, the diagnoses found or recorded, the referral created and,
// for an active ServiceRequest, SUBMITTED at once. The ServiceRequest's
// identifier makes it idempotent: the same content again finds the
// referral and writes nothing; changed content updates the order and the
// diagnoses while the referral is DRAFT or SUBMITTED, and is refused once
// it has moved on.
func (s *Service) ImportServiceRequest(ctx context.Context, p Principal, in ServiceRequestImport, idem Idempotency) (*ImportResult, error) {
	// An integration imports for the physician who requested the order.
	if p.Role == RoleIntegration {
		var err error
		if p, err = s.actForRequester(ctx, p, in.Requester); err != nil {
			return nil, relocate(err, in.Locate)
		}
	}
	if err := authorizePhysician(p, "import ServiceRequests"); err != nil {
		return nil, err
	}
	res, err := mutate(ctx, s, p, "ImportServiceRequest", idem,
		func(tx Tx) (*ImportResult, uuid.UUID, error) {
			res, err := s.importServiceRequest(ctx, tx, p, &in)
			if err != nil {
				return nil, uuid.Nil, err
			}
			return res, res.Referral.ID, nil
		},
		func(tx Tx, id uuid.UUID) (*ImportResult, error) { return s.readImport(ctx, tx, p, id) })
	var found *foundOrder
	if errors.As(err, &found) {
		return read(ctx, s, func(tx Tx) (*ImportResult, error) { return s.readImport(ctx, tx, p, found.id) })
	}
	return res, relocate(err, in.Locate)
}

// foundOrder ends a create-only import that found its order: returned as
// an error, it rolls back what the import claimed, so nothing is written.
type foundOrder struct{ id uuid.UUID }

func (f *foundOrder) Error() string { return Referrals.Name(f.id) + " exists" }

// importPlan is what an import resolved before it writes.
type importPlan struct {
	patient    *Patient
	newPatient bool
	diagnoses  []*Diagnosis
	// isNew, changed and prev (what a found diagnosis was) are parallel to
	// diagnoses.
	isNew, changed []bool
	prev           []*Diagnosis
	therapist, org uuid.UUID
}

// uniqueDiagnoses lists each diagnosis once, in the order the Conditions
// named them.
func (plan *importPlan) uniqueDiagnoses() []*Diagnosis {
	var out []*Diagnosis
	for _, d := range plan.diagnoses {
		if !slices.ContainsFunc(out, func(o *Diagnosis) bool { return o.ID == d.ID }) {
			out = append(out, d)
		}
	}
	return out
}

func (s *Service) importServiceRequest(ctx context.Context, tx Tx, p Principal, in *ServiceRequestImport) (*ImportResult, error) {
	now := s.clock.Now()
	me, err := tx.GetPractitioner(ctx, p.PractitionerID, false)
	if err != nil {
		return nil, err
	}
	f := fieldsFor(ctx)
	if err := checkRequester(ctx, tx, me, in.Requester, &f); err != nil {
		return nil, err
	}
	plan, err := s.resolveImport(ctx, tx, p, in, &f, now)
	if err != nil {
		return nil, err
	}
	if plan.patient == nil {
		return nil, f.err()
	}
	order := in.Order
	order.PatientID, order.ReferringPhysicianID = plan.patient.ID, me.ID
	order.TargetTherapistID, order.TargetOrgID = plan.therapist, plan.org
	order.ReasonDiagnoses = nil
	for i, d := range in.Diagnoses {
		if d.Reason && !slices.Contains(order.ReasonDiagnoses, plan.diagnoses[i].ID) {
			order.ReasonDiagnoses = append(order.ReasonDiagnoses, plan.diagnoses[i].ID)
		}
	}

	existing, id := in.ReferralID, newID()
	recorded := false
	if len(in.Identifiers) > 0 {
		if existing, recorded, err = s.claimIdentifiers(ctx, tx, p, me, in, id); err != nil {
			return nil, err
		}
	}
	if existing != uuid.Nil && in.CreateOnly {
		return nil, &foundOrder{existing}
	}
	if existing == uuid.Nil {
		order.ValidFrom = validFrom(order.ValidFrom, now)
		if len(in.Settled) > 0 {
			f.add("referral.state", "a ServiceRequest on hold, completed or revoked creates no referral; import it as draft or active")
			return nil, f.err()
		}
		order.ID = id
		return s.createImported(ctx, tx, p, me, in, plan, order, &f, now)
	}
	return s.reimport(ctx, tx, p, me, in, plan, order, existing, recorded, &f, now)
}

// claimIdentifiers records the order's identifiers in the caller's
// organization for a new referral id, and returns the referral they name
// instead when any names one already (with the ServiceRequest's careteam
// id, if it has one), and whether identifiers new to it were recorded
// for it. Identifiers naming different referrals are refused, naming
// them, once the caller is known to be the physician who imported each.
func (s *Service) claimIdentifiers(ctx context.Context, tx Tx, p Principal, me *Practitioner, in *ServiceRequestImport, id uuid.UUID) (uuid.UUID, bool, error) {
	holders, err := tx.ClaimImport(ctx, me.OrganizationID, in.Identifiers, id)
	if err != nil {
		return uuid.Nil, false, err
	}
	var found []uuid.UUID
	if in.ReferralID != uuid.Nil {
		found = append(found, in.ReferralID)
	}
	for _, h := range holders {
		if h != id && !slices.Contains(found, h) {
			found = append(found, h)
		}
	}
	switch len(found) {
	case 0:
		return uuid.Nil, false, nil
	case 1:
		if !slices.Contains(holders, id) {
			return found[0], false, nil
		}
		// The identifiers new to the order name the referral found.
		return found[0], true, tx.MoveImportIdentifiers(ctx, me.OrganizationID, id, found[0])
	}
	conflict := &PreconditionError{}
	for _, rid := range found {
		r, err := s.lockReferral(ctx, tx, p, rid, false)
		if err != nil {
			return uuid.Nil, false, err
		}
		if err := authorizeReimport(me, r); err != nil {
			return uuid.Nil, false, err
		}
		var names []string
		if rid == in.ReferralID {
			names = append(names, ReferralSystem+"|"+rid.String())
		}
		for i, h := range holders {
			if h == rid {
				names = append(names, in.Identifiers[i].System+"|"+in.Identifiers[i].Value)
			}
		}
		conflict.Violations = append(conflict.Violations, Violation{Type: ViolationIdentifierConflict, Subject: Referrals.Name(rid),
			Description: fmt.Sprintf("the order's identifiers %s name this referral; its other identifiers name another", strings.Join(names, ", "))})
	}
	return uuid.Nil, false, conflict
}

// ViolationIdentifierConflict: the identifiers of an imported order name
// different referrals, so it is not known which one it is.
const ViolationIdentifierConflict = "IDENTIFIER_CONFLICT"

// checkRequester refuses a requester other than the caller: one the
// directory knows as someone else is ErrPermissionDenied; identifiers the
// directory does not know are a bad field, reported with them (an
// identifier such as an NPI is no patient data).
func checkRequester(ctx context.Context, tx ImportStore, me *Practitioner, req ImportRef, f *fields) error {
	denied := authorizeRequester(me, req)
	if denied == nil || req.ID != uuid.Nil {
		return denied
	}
	var unknown []string
	for _, id := range req.Identifiers {
		_, err := tx.FindPractitionerByIdentifier(ctx, id)
		switch {
		case err == nil:
			return denied
		case !errors.Is(err, ErrNotFound):
			return err
		}
		unknown = append(unknown, id.System+"|"+id.Value)
	}
	f.add("referral.referring_physician", "no practitioner in the directory has the identifier %s; the requester must be you", strings.Join(unknown, ", "))
	return nil
}

// resolveImport finds the patient, the diagnoses and the target, and
// validates the patient and the diagnoses, filing bad fields in f.
func (s *Service) resolveImport(ctx context.Context, tx Tx, p Principal, in *ServiceRequestImport, f *fields, now time.Time) (*importPlan, error) {
	plan := &importPlan{}
	pt := in.Patient
	if !in.PatientFindOnly {
		s.validatePatient(f, &pt)
	}
	found, err := s.findImportedPatient(ctx, tx, p, in.Patient)
	if err != nil {
		return nil, err
	}
	switch {
	case found != nil:
		plan.patient = found
		if err := s.lockPatientRecord(ctx, tx, p, found.ID, now); err != nil {
			return nil, err
		}
	case in.PatientFindOnly:
		f.add("referral.patient", "no patient you can see has this identifier")
		return plan, nil
	case len(pt.Identifiers) == 0:
		f.add("patient.identifiers", "at least one identifier is required: it finds the patient again on the next import")
		return plan, nil
	default:
		pt.ID, pt.OrganizationID, pt.RegisteredBy = newID(), p.OrganizationID, p.PractitionerID
		pt.Version, pt.CreateTime, pt.UpdateTime = 1, now, now
		plan.patient, plan.newPatient = &pt, true
	}
	if err := s.resolveDiagnoses(ctx, tx, p, in, plan, f, now); err != nil {
		return nil, err
	}
	if err := resolveTarget(ctx, tx, in, plan, f); err != nil {
		return nil, err
	}
	return plan, nil
}

// findImportedPatient finds the subject among the patients the caller may
// see: by careteam id, else by the first identifier that finds one,
// preferring the caller's organization's registration as LookupPatient
// does. It returns nil when nothing is found.
func (s *Service) findImportedPatient(ctx context.Context, tx Tx, p Principal, in Patient) (*Patient, error) {
	if in.ID != uuid.Nil {
		return s.getPatient(ctx, tx, p, in.ID, false)
	}
	scope, err := patientScope(p, false)
	if err != nil {
		return nil, err
	}
	for _, id := range in.Identifiers {
		rows, err := tx.FindPatientsByIdentifier(ctx, scope, id)
		if err != nil {
			return nil, err
		}
		if len(rows) == 0 {
			continue
		}
		found := rows[0]
		if i := slices.IndexFunc(rows, func(pt *Patient) bool { return pt.OrganizationID == p.OrganizationID }); i >= 0 {
			found = rows[i]
		}
		audit.Touch(ctx, Patients.Name(found.ID), found.ID)
		return found, nil
	}
	return nil, nil
}

// resolveDiagnoses validates each Condition and finds the diagnosis it
// names: by careteam id, else the caller's diagnosis of the patient with
// the same code, else a new one. A found diagnosis takes the Condition's
// display, status, severity, red flags, body sites, notes and categories.
func (s *Service) resolveDiagnoses(ctx context.Context, tx Tx, p Principal, in *ServiceRequestImport, plan *importPlan, f *fields, now time.Time) error {
	var recorded []*Diagnosis
	if !plan.newPatient {
		var err error
		if recorded, err = tx.ListDiagnoses(ctx, plan.patient.ID, Page{Size: maxPageSize}); err != nil {
			return err
		}
	}
	for i, imp := range in.Diagnoses {
		field := fmt.Sprintf("diagnoses[%d]", i)
		d := imp.Diagnosis
		d.PatientID = plan.patient.ID
		nested(f, "diagnosis", field, func(sub *fields) { s.validateDiagnosis(sub, &d) })
		var cur *Diagnosis
		if d.ID != uuid.Nil {
			found, err := s.readDiagnosis(ctx, tx, p, d.ID, true)
			if err != nil {
				return err
			}
			if found.PatientID != d.PatientID {
				f.add(field, "a diagnosis of another patient")
			} else if d.ICD10Code != "" && found.ICD10Code != d.ICD10Code {
				f.add(field+".icd10_code", "differs from the code of the diagnosis it names; a new code is a new diagnosis")
			}
			cur = found
		} else {
			// The same Condition twice, or the caller's earlier diagnosis.
			pick := func(x *Diagnosis) bool {
				return x.ICD10Code == d.ICD10Code && x.PhysicianID == p.PractitionerID && x.PatientID == d.PatientID
			}
			if j := slices.IndexFunc(plan.diagnoses, pick); j >= 0 {
				cur = plan.diagnoses[j]
			} else if j := slices.IndexFunc(recorded, pick); j >= 0 {
				cur = recorded[j]
				audit.Touch(ctx, Diagnoses.Name(cur.ID), cur.PatientID)
			}
		}
		switch {
		case cur == nil:
			d.ID, d.PhysicianID, d.Version, d.CreateTime, d.UpdateTime = newID(), p.PractitionerID, 1, now, now
			plan.diagnoses, plan.isNew, plan.changed = append(plan.diagnoses, &d), append(plan.isNew, true), append(plan.changed, false)
			plan.prev = append(plan.prev, nil)
		default:
			plan.prev = append(plan.prev, cur)
			changed := cur.Display != d.Display || cur.ClinicalStatus != d.ClinicalStatus || cur.Severity != d.Severity ||
				!slices.Equal(cur.RedFlags, d.RedFlags) || !slices.Equal(cur.BodySites, d.BodySites) || cur.Notes != d.Notes ||
				!slices.Equal(cur.Categories, d.Categories)
			if changed {
				next := *cur
				next.Display, next.ClinicalStatus, next.Severity = d.Display, d.ClinicalStatus, d.Severity
				next.RedFlags, next.BodySites, next.Notes, next.Categories = d.RedFlags, d.BodySites, d.Notes, d.Categories
				cur = &next
			}
			plan.diagnoses, plan.isNew, plan.changed = append(plan.diagnoses, cur), append(plan.isNew, false), append(plan.changed, changed)
		}
	}
	return nil
}

// resolveTarget finds the performer in the directory.
func resolveTarget(ctx context.Context, tx ImportStore, in *ServiceRequestImport, plan *importPlan, f *fields) error {
	plan.therapist = in.Therapist.ID
	if plan.therapist == uuid.Nil {
		for _, id := range in.Therapist.Identifiers {
			pr, err := tx.FindPractitionerByIdentifier(ctx, id)
			if errors.Is(err, ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			plan.therapist = pr.ID
			break
		}
		if plan.therapist == uuid.Nil && in.Therapist.given() {
			f.add("referral.target_therapist", "no practitioner in the directory has this identifier")
		}
	}
	plan.org = in.Practice.ID
	if plan.org == uuid.Nil {
		for _, id := range in.Practice.Identifiers {
			orgs, err := tx.FindOrganizationsByIdentifier(ctx, id)
			if err != nil {
				return err
			}
			if len(orgs) > 1 {
				f.add("referral.target_organization", "several organizations in the directory have this identifier")
				return nil
			}
			if len(orgs) == 1 {
				plan.org = orgs[0].ID
				break
			}
		}
		if plan.org == uuid.Nil && in.Practice.given() {
			f.add("referral.target_organization", "no organization in the directory has this identifier")
		}
	}
	return nil
}

// createImported writes a new referral and what it needs: the patient if
// new, the diagnoses new or changed, the submission.
func (s *Service) createImported(ctx context.Context, tx Tx, p Principal, me *Practitioner, in *ServiceRequestImport, plan *importPlan, r Referral, f *fields, now time.Time) (*ImportResult, error) {
	f.merge(s.validateReferral(ctx, p, &r, now))
	if err := f.err(); err != nil {
		return nil, err
	}
	if err := s.checkTarget(ctx, tx, &r, r.TargetTherapistID, r.TargetOrgID, now); err != nil {
		return nil, err
	}
	if plan.newPatient {
		audit.Touch(ctx, Patients.Name(plan.patient.ID), plan.patient.ID)
		if err := tx.InsertPatient(ctx, plan.patient); err != nil {
			return nil, err
		}
	}
	r.ReferringOrgID, r.State = me.OrganizationID, ReferralDraft
	r.Version, r.CreateTime, r.UpdateTime = 1, now, now
	r.History = []StateChange{{To: ReferralDraft, Actor: me.ID, Time: now, Reason: "imported from a FHIR ServiceRequest"}}
	audit.Touch(ctx, Referrals.Name(r.ID), r.PatientID)
	if err := tx.InsertReferral(ctx, &r); err != nil {
		return nil, err
	}
	tx.AppendEvent(referralEvent(EventReferralCreated, &r, me.ID, now))
	if err := s.saveImportedDiagnoses(ctx, tx, p, plan, now); err != nil {
		return nil, err
	}
	if in.Submit {
		r.transition(ReferralSubmitted, me.ID, now, "", s.cfg.AckWindow, true)
		if err := saveReferral(ctx, tx, &r, now); err != nil {
			return nil, err
		}
		tx.AppendEvent(referralEvent(EventReferralSubmitted, &r, me.ID, now))
	}
	r.derive(now)
	return &ImportResult{Referral: &r, Patient: plan.patient, Diagnoses: plan.uniqueDiagnoses(), Changed: true, Created: true}, nil
}

// reimport applies an import to the referral it names. Content equal to
// the referral's changes nothing; changed content is applied only while
// the referral is DRAFT or SUBMITTED, before a therapist has taken it on.
// recorded says that the import recorded identifiers new to the referral,
// which is a change in any state: it only names the order.
func (s *Service) reimport(ctx context.Context, tx Tx, p Principal, me *Practitioner, in *ServiceRequestImport, plan *importPlan, order Referral, id uuid.UUID, recorded bool, f *fields, now time.Time) (*ImportResult, error) {
	r, err := s.lockReferral(ctx, tx, p, id, true)
	if err != nil {
		return nil, err
	}
	if err := authorizeReimport(me, r); err != nil {
		return nil, err
	}
	if r.PatientID != order.PatientID {
		return nil, &InvalidError{Violations: []FieldViolation{{Field: "referral.patient", Description: "the referral imported under this identifier is of another patient"}}}
	}
	if state := r.StateAt(now); len(in.Settled) > 0 && !slices.Contains(in.Settled, state) {
		return nil, precondition("REFERRAL_STATE", Referrals.Name(r.ID), "the referral is %s, which the ServiceRequest's status does not describe; an import does not move a referral past SUBMITTED", state)
	}
	if order.ValidUntil.IsZero() {
		order.ValidUntil = r.ValidUntil
	}
	order.ValidFrom = validFrom(order.ValidFrom, r.CreateTime)
	// A performer the referral already has is no change: a therapist
	// without their practice, or a practice whose therapist took the
	// referral on.
	named := order.TargetTherapistID != uuid.Nil || order.TargetOrgID != uuid.Nil
	if named && (order.TargetTherapistID == uuid.Nil || order.TargetTherapistID == r.TargetTherapistID) &&
		(order.TargetOrgID == uuid.Nil || order.TargetOrgID == r.TargetOrgID) {
		order.TargetTherapistID, order.TargetOrgID = r.TargetTherapistID, r.TargetOrgID
	}
	invalid := s.validateReferral(ctx, p, &order, now)
	if err := f.err(); err != nil {
		f.merge(invalid)
		return nil, f.err()
	}
	submit := in.Submit && r.State == ReferralDraft
	changed := submit || orderChanged(r, &order) || slices.Contains(plan.isNew, true) || slices.Contains(plan.changed, true)
	if !changed {
		r.derive(now)
		return &ImportResult{Referral: r, Patient: plan.patient, Diagnoses: plan.uniqueDiagnoses(), Changed: recorded}, nil
	}
	// Judged only for a change: content equal to the referral is the
	// referral as it stands, even once its validity has passed.
	if invalid != nil {
		return nil, invalid
	}
	if state := r.StateAt(now); state != ReferralDraft && state != ReferralSubmitted {
		return nil, precondition("REFERRAL_STATE", Referrals.Name(r.ID), "the referral is %s; a re-import changes it only while it is DRAFT or SUBMITTED", state)
	}
	if order.TargetTherapistID != r.TargetTherapistID || order.TargetOrgID != r.TargetOrgID {
		if err := s.checkTarget(ctx, tx, &order, order.TargetTherapistID, order.TargetOrgID, now); err != nil {
			return nil, err
		}
	}
	r.TargetTherapistID, r.TargetOrgID = order.TargetTherapistID, order.TargetOrgID
	r.ReasonDiagnoses, r.ReasonCodes, r.ReasonTexts = order.ReasonDiagnoses, order.ReasonCodes, order.ReasonTexts
	r.ClinicalNotes, r.PatientInstruction, r.Priority = order.ClinicalNotes, order.PatientInstruction, order.Priority
	r.ServiceCodes, r.ServiceText = order.ServiceCodes, order.ServiceText
	r.RequestedTechniques, r.AuthorizedVisits = order.RequestedTechniques, order.AuthorizedVisits
	r.ValidFrom, r.ValidUntil = order.ValidFrom, order.ValidUntil
	r.RequiredSpecialties = order.RequiredSpecialties
	if err := tx.UpdateReferralOrder(ctx, r); err != nil {
		return nil, err
	}
	r.transition(r.State, me.ID, now, reasonReimported, s.cfg.AckWindow, false)
	if submit {
		r.transition(ReferralSubmitted, me.ID, now, "", s.cfg.AckWindow, true)
	}
	if err := saveReferral(ctx, tx, r, now); err != nil {
		return nil, err
	}
	// The contract has no event for a changed order: the receiver hears
	// of it as a submission of the new content.
	if r.State == ReferralSubmitted {
		tx.AppendEvent(referralEvent(EventReferralSubmitted, r, me.ID, now))
	}
	if err := s.saveImportedDiagnoses(ctx, tx, p, plan, now); err != nil {
		return nil, err
	}
	r.derive(now)
	return &ImportResult{Referral: r, Patient: plan.patient, Diagnoses: plan.uniqueDiagnoses(), Changed: true}, nil
}

// orderChanged reports whether the imported order differs from what the
// referral holds; both are normalized by validateReferral.
func orderChanged(r, order *Referral) bool {
	sameSet := func(a, b []uuid.UUID) bool {
		return len(a) == len(b) && !slices.ContainsFunc(a, func(id uuid.UUID) bool { return !slices.Contains(b, id) })
	}
	return !sameSet(r.ReasonDiagnoses, order.ReasonDiagnoses) || !slices.Equal(r.ReasonCodes, order.ReasonCodes) ||
		!slices.Equal(r.ReasonTexts, order.ReasonTexts) || r.ClinicalNotes != order.ClinicalNotes ||
		r.PatientInstruction != order.PatientInstruction || !slices.Equal(r.ServiceCodes, order.ServiceCodes) ||
		r.ServiceText != order.ServiceText || !r.ValidFrom.Equal(order.ValidFrom.Truncate(time.Microsecond)) || r.Priority != order.Priority ||
		!slices.Equal(r.RequestedTechniques, order.RequestedTechniques) || r.AuthorizedVisits != order.AuthorizedVisits ||
		!r.ValidUntil.Equal(order.ValidUntil.Truncate(time.Microsecond)) || !slices.Equal(r.RequiredSpecialties, order.RequiredSpecialties) ||
		r.TargetTherapistID != order.TargetTherapistID || r.TargetOrgID != order.TargetOrgID
}

// saveImportedDiagnoses records the new diagnoses and saves the changed
// ones, as RecordDiagnosis and UpdateDiagnosis do.
func (s *Service) saveImportedDiagnoses(ctx context.Context, tx Tx, p Principal, plan *importPlan, now time.Time) error {
	saved := map[uuid.UUID]bool{}
	for i, d := range plan.diagnoses {
		if saved[d.ID] || (!plan.isNew[i] && !plan.changed[i]) {
			continue
		}
		saved[d.ID] = true
		if !plan.isNew[i] {
			d.Version++
			d.UpdateTime = now
		}
		if err := s.saveDiagnosis(ctx, tx, p, plan.prev[i], d, now); err != nil {
			return err
		}
	}
	return nil
}

// readImport rebuilds the result of an import that a retry replays: the
// referral, its patient and its reason diagnoses.
func (s *Service) readImport(ctx context.Context, tx Tx, p Principal, id uuid.UUID) (*ImportResult, error) {
	r, err := s.readReferral(ctx, tx, p, id)
	if err != nil {
		return nil, err
	}
	pt, err := s.getPatient(ctx, tx, p, r.PatientID, false)
	if err != nil {
		return nil, err
	}
	res := &ImportResult{Referral: r, Patient: pt}
	for _, did := range r.ReasonDiagnoses {
		d, err := s.readDiagnosis(ctx, tx, p, did, false)
		if err != nil {
			return nil, err
		}
		res.Diagnoses = append(res.Diagnoses, d)
	}
	return res, nil
}

// merge adds the violations of an InvalidError to f; other errors cannot
// come from the validations it is given.
func (f *fields) merge(err error) {
	var inv *InvalidError
	if errors.As(err, &inv) {
		f.violations = append(f.violations, inv.Violations...)
	}
}

// nested runs a validation that names its fields under from and files
// its violations under to.
func nested(f *fields, from, to string, validate func(*fields)) {
	var sub fields
	validate(&sub)
	for _, v := range sub.violations {
		v.Field = to + strings.TrimPrefix(v.Field, from)
		f.violations = append(f.violations, v)
	}
}

// relocate names each bad field of an InvalidError by where it sat in the
// caller's input, as locate knows it.
func relocate(err error, locate func(string) string) error {
	var inv *InvalidError
	if locate == nil || !errors.As(err, &inv) {
		return err
	}
	out := &InvalidError{Violations: make([]FieldViolation, len(inv.Violations))}
	for i, v := range inv.Violations {
		if at := locate(v.Field); at != "" {
			v.Field = at
		}
		out.Violations[i] = v
	}
	return out
}

// FindReferralsByIdentifier returns the referrals an identifier names that
// the caller may read, newest first, redacted as any read of them is: the
// referral itself for careteam's own identifier (ReferralSystem), else
// those imported under the identifier, in any organization. What the
// caller may not read is left out, as if it did not exist.
func (s *Service) FindReferralsByIdentifier(ctx context.Context, p Principal, id Identifier) ([]*Referral, error) {
	scope, err := referralScope(p)
	if err != nil {
		return nil, err
	}
	now := s.clock.Now()
	return read(ctx, s, func(tx Tx) ([]*Referral, error) {
		var rows []*Referral
		if id.System == ReferralSystem {
			rid, err := uuid.Parse(id.Value)
			if err != nil || rid.String() != id.Value {
				return nil, nil
			}
			r, err := tx.GetReferral(ctx, rid, scope, false)
			switch {
			case errors.Is(err, ErrNotFound):
				return nil, nil
			case err != nil:
				return nil, err
			}
			rows = []*Referral{r}
		} else if rows, err = tx.FindImportedReferrals(ctx, scope, id); err != nil {
			return nil, err
		}
		for _, r := range rows {
			audit.Touch(ctx, Referrals.Name(r.ID), r.PatientID)
			redactReferral(p, r)
			r.derive(now)
		}
		return rows, nil
	})
}
