package careteam

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/google/uuid"

	"github.com/careteam/careteam/server/internal/audit"
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
	// Physician: a physician who referred, diagnosed or cleared the
	// patient: who took them on.
	Physician uuid.UUID
	// AskedToClear: a physician a clearance request names, who sees the
	// patient's demographics to answer it, and not their record.
	AskedToClear uuid.UUID
	// ClearancesOf: in reads of clearances only, those naming this
	// physician (the requests put to them, their own decisions), whatever
	// else the scope shows.
	ClearancesOf uuid.UUID
	// Referrals: the patient has a referral visible through this scope.
	Referrals ReferralScope
	// Any drops the restriction: for the domain's own checks and locks,
	// never for a caller's read.
	Any bool
}

// patientScope returns the caller's patient scope: physicians through their
// organization's registrations and their own referrals, diagnoses and
// clearances; therapists through referrals targeted at them (or at their
// practice while unassigned); coordinators through their organization's
// referrals. Administrators and auditors see no patient.
//
// With emergency set (reads only), a physician who broke the glass sees any
// patient; the audit trail records the reason and flags the access.
func patientScope(p Principal, emergency bool) (PatientScope, error) {
	if emergency && p.emergency() {
		return PatientScope{Any: true}, nil
	}
	switch p.Role {
	case RolePhysician:
		return PatientScope{RegisteredByOrg: p.OrganizationID, Physician: p.PractitionerID}, nil
	case RoleTherapist, RoleCoordinator:
		rs, err := referralScope(p)
		return PatientScope{RegisteredByOrg: p.OrganizationID, Referrals: rs}, err
	}
	return PatientScope{}, fmt.Errorf("role %s reads no patient data: %w", p.Role, ErrPermissionDenied)
}

// demographicsScope is patientScope for reading a patient's own record (the
// demographics): a physician a clearance request names reads them too, to
// answer it. Nothing else they do reaches the patient through the request;
// answering it does (see IssueClearance).
func demographicsScope(p Principal) (PatientScope, error) {
	scope, err := patientScope(p, true)
	if err == nil && p.Role == RolePhysician && !scope.Any {
		scope.AskedToClear = p.PractitionerID
	}
	return scope, err
}

// clinicalScope returns whose diagnoses and clearances the caller may read.
// A therapist reads them only through a referral assigned to them, not
// through their practice's registrations or its unassigned referrals, which
// show them the patient; a physician only for patients they took on or
// their organization registered, not for being asked to clear one; everyone
// else wherever they see the patient.
func clinicalScope(p Principal, emergency bool) (PatientScope, error) {
	if p.Role == RoleTherapist {
		return PatientScope{Referrals: ReferralScope{Therapist: p.PractitionerID}}, nil
	}
	scope, err := patientScope(p, emergency)
	if err == nil && p.Role == RolePhysician {
		// Asked to clear, a physician reads the request, not the record,
		// until they take the patient on.
		scope.ClearancesOf = p.PractitionerID
	}
	return scope, err
}

// seesClinical reports whether the caller may read the patient's diagnoses
// and clearances.
func seesClinical(ctx context.Context, tx Tx, p Principal, patient uuid.UUID) (bool, error) {
	scope, err := clinicalScope(p, true)
	if err != nil {
		return false, err
	}
	_, err = tx.GetPatient(ctx, patient, scope, false)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// referralScope returns the caller's referral scope: a physician sees the
// referrals they made; a coordinator those of their organization, as
// referrer or target; a therapist those targeted at them, or at their
// practice while unassigned.
func referralScope(p Principal) (ReferralScope, error) {
	switch p.Role {
	case RolePhysician:
		return ReferralScope{ReferringPhysician: p.PractitionerID}, nil
	case RoleCoordinator:
		return ReferralScope{ReferralOrg: p.OrganizationID}, nil
	case RoleTherapist:
		return ReferralScope{Therapist: p.PractitionerID, TherapistOrg: p.OrganizationID}, nil
	}
	return ReferralScope{}, fmt.Errorf("role %s reads no referrals: %w", p.Role, ErrPermissionDenied)
}

// redactReferral removes what the caller's role may not read:
// coordinators route and watch referrals by states, dates and coded
// reasons, never clinical free text: not the notes, the reasons given in
// words, the instruction to the patient, the words naming the service or
// the discharge summary, not the questions and answers between clinicians, not the
// words of a decline, a cancellation or a re-routing. The slices are
// replaced, not edited, since a referral may be shared with other readers.
func redactReferral(p Principal, r *Referral) {
	if p.Role != RoleCoordinator {
		return
	}
	r.ClinicalNotes, r.DischargeSummary, r.DeclineText, r.CancelReason = "", "", "", ""
	r.ReasonTexts, r.PatientInstruction, r.ServiceText = nil, "", ""
	if r.InformationRequests != nil {
		irs := slices.Clone(r.InformationRequests)
		for i := range irs {
			irs[i].Question, irs[i].Answer = "", ""
		}
		r.InformationRequests = irs
	}
	if r.History != nil {
		h := slices.Clone(r.History)
		for i := range h {
			h[i].Reason = codedReason(h[i])
		}
		r.History = h
	}
}

// codedReason is what a coordinator may read of a state change's reason:
// the code of a decline, which the history records before the therapist's
// words; nothing of a cancellation's or a routing's reason, which are the
// caller's words, unless the system wrote it; and the system's reasons
// elsewhere.
func codedReason(c StateChange) string {
	switch {
	case c.To == ReferralDeclined:
		code, _, _ := strings.Cut(c.Reason, ": ")
		return code
	case c.To == ReferralCancelled:
		return ""
	case c.From == c.To || c.From == ReferralDeclined: // routed
		if name, ok := strings.CutPrefix(c.Reason, reasonAssignedTo); ok {
			if _, err := Practitioners.Parse(name); err == nil {
				return c.Reason
			}
		}
		if c.Reason == reasonReimported {
			return c.Reason
		}
		return ""
	}
	return c.Reason
}

// authorizeWrite refuses every change made under emergency access:
// breaking the glass lets a physician read outside their care team, and
// since care-team membership comes from writes (a referral, a diagnosis, a
// clearance), refusing them keeps an emergency from leaving lasting access.
func authorizeWrite(p Principal) error {
	if p.Purpose == audit.PurposeEmergency {
		return fmt.Errorf("emergency access reads only; make changes under purpose TREATMENT: %w", ErrPermissionDenied)
	}
	return nil
}

// authorizeWatch refuses a stream opened under emergency access: breaking
// the glass lasts the one call that gives its reason, and a stream would
// outlast it.
func authorizeWatch(p Principal) error {
	if p.Purpose == audit.PurposeEmergency {
		return fmt.Errorf("emergency access lasts one call; a stream is not opened under it: %w", ErrPermissionDenied)
	}
	return nil
}

// authorizeCreateReferral allows physicians and coordinators to refer.
func authorizeCreateReferral(p Principal) error {
	if p.Role == RolePhysician || p.Role == RoleCoordinator {
		return nil
	}
	return fmt.Errorf("role %s cannot create referrals: %w", p.Role, ErrPermissionDenied)
}

// authorizeReferFor allows a physician to refer for themselves and a
// coordinator for an active physician of their organization.
func authorizeReferFor(p Principal, physician *Practitioner) error {
	if physician.Role != RolePhysician || !physician.Active {
		return &InvalidError{Violations: []FieldViolation{{Field: "referral.referring_physician", Description: "must be an active physician"}}}
	}
	if p.Role == RolePhysician && physician.ID == p.PractitionerID {
		return nil
	}
	if p.Role == RoleCoordinator && physician.OrganizationID == p.OrganizationID {
		return nil
	}
	return fmt.Errorf("a referral is made by its physician or a coordinator of their organization: %w", ErrPermissionDenied)
}

// referringSide reports whether the caller acts for the referrer: the
// referring physician or a coordinator of their organization.
func referringSide(p Principal, r *Referral) bool {
	return (p.Role == RolePhysician && p.PractitionerID == r.ReferringPhysicianID) ||
		(p.Role == RoleCoordinator && p.OrganizationID == r.ReferringOrgID)
}

// receivingTherapist reports whether the caller is the therapist the
// referral is for, or a therapist of the target practice while it is
// unassigned.
func receivingTherapist(p Principal, r *Referral) bool {
	if p.Role != RoleTherapist {
		return false
	}
	return p.PractitionerID == r.TargetTherapistID || (r.TargetTherapistID == uuid.Nil && p.OrganizationID == r.TargetOrgID)
}

// authorizeReferral decides who moves a referral: the receiving therapist
// moves it forward (accept, decline, ask), the referring side cancels,
// answers and re-routes; coordinators of either side route; the assigned
// therapist or the referring physician completes.
func authorizeReferral(p Principal, r *Referral, a referralAction) error {
	allowed := false
	switch a {
	case actSubmit, actProvideInfo, actCancel:
		allowed = referringSide(p, r)
	case actAssign:
		// Only the referring side re-routes a declined referral.
		allowed = referringSide(p, r) ||
			(p.Role == RoleCoordinator && p.OrganizationID == r.TargetOrgID && r.State != ReferralDeclined)
	case actAccept, actDecline, actRequestInfo:
		allowed = receivingTherapist(p, r)
	case actComplete:
		allowed = (p.Role == RoleTherapist && p.PractitionerID == r.TargetTherapistID) ||
			(p.Role == RolePhysician && p.PractitionerID == r.ReferringPhysicianID)
	}
	if !allowed {
		return fmt.Errorf("%s may not %s %s: %w", p.Role, a, Referrals.Name(r.ID), ErrPermissionDenied)
	}
	return nil
}

// authorizeAssignTo completes authorizeReferral for AssignReferral once the
// new target is set on r: a coordinator of the receiving practice assigns
// within it.
func authorizeAssignTo(p Principal, r *Referral) error {
	if !referringSide(p, r) && r.TargetOrgID != p.OrganizationID {
		return fmt.Errorf("a receiving coordinator assigns within their practice: %w", ErrPermissionDenied)
	}
	return nil
}

// authorizeStartSession lets only therapists start sessions; the gate then
// requires the referral's assigned therapist.
func authorizeStartSession(p Principal) error {
	if p.Role != RoleTherapist {
		return fmt.Errorf("sessions are started by the assigned therapist: %w", ErrPermissionDenied)
	}
	return nil
}

// authorizeRecordConsent lets the therapist's practice record consent.
func authorizeRecordConsent(p Principal) error {
	if p.Role != RoleTherapist && p.Role != RoleCoordinator {
		return fmt.Errorf("consent is recorded by the therapist's practice: %w", ErrPermissionDenied)
	}
	return nil
}

// authorizeRequestClearanceFor narrows authorizeRequestClearance to the
// patient and referral asked about: under a referral, a therapist must be
// its assigned one; without one, the caller's practice must have registered
// the patient.
func authorizeRequestClearanceFor(p Principal, pt *Patient, r *Referral) error {
	if r != nil {
		if p.Role == RoleTherapist && r.TargetTherapistID != p.PractitionerID {
			return fmt.Errorf("only the assigned therapist asks for clearance: %w", ErrPermissionDenied)
		}
		return nil
	}
	if pt.OrganizationID != p.OrganizationID {
		return fmt.Errorf("without a referral, only the registering practice asks for clearance: %w", ErrPermissionDenied)
	}
	return nil
}

// authorizeCredential decides who vouches for a credentialed practitioner
// (see credentialed) by creating or changing them: the directory's
// administrator always; an ADMIN of an organization trusted to credential
// its own clinicians (CredentialsClinicians) for its physicians and
// therapists; nobody else for auditors, whose reach is the whole audit
// trail. Taking a practitioner out of service needs no credential.
func authorizeCredential(p Principal, role Role, org *Organization) error {
	if !credentialed(role) || p.Bootstrap || (role != RoleAuditor && role != RoleIntegration && org.CredentialsClinicians) {
		return nil
	}
	return fmt.Errorf("only the directory's administrator vouches for a %s of %s: %w", role, Organizations.Name(org.ID), ErrPermissionDenied)
}

// authorizeMembership decides whether the caller may put a practitioner of
// this role into org, or change one there: an administrator of org, who
// vouches for credentialed roles only when trusted to (authorizeCredential);
// and the role must fit the organization's kind.
func authorizeMembership(p Principal, role Role, org *Organization) error {
	if err := authorizeDirectory(p, org.ID); err != nil {
		return err
	}
	if err := authorizeCredential(p, role, org); err != nil {
		return err
	}
	if !roleFits(role, org.Kind) {
		return &InvalidError{Violations: []FieldViolation{{
			Field:       "practitioner.role",
			Description: fmt.Sprintf("a %s does not belong to a %s organization", role, org.Kind),
		}}}
	}
	return nil
}

// authorizeChange decides whether the caller may change pr, reading their
// organization locked so that a trust withdrawn meanwhile is not acted on.
func authorizeChange(ctx context.Context, tx DirectoryStore, p Principal, pr *Practitioner) error {
	org, err := tx.GetOrganization(ctx, pr.OrganizationID, true)
	if err != nil {
		return err
	}
	return authorizeMembership(p, pr.Role, org)
}

// authorizeRequester lets a physician import only what they requested: a
// requester the ServiceRequest names must be the caller, by careteam id or
// by one of the caller's directory identifiers (such as an NPI).
func authorizeRequester(me *Practitioner, requester ImportRef) error {
	if !requester.given() || requester.ID == me.ID {
		return nil
	}
	if requester.ID == uuid.Nil && slices.ContainsFunc(requester.Identifiers, func(id Identifier) bool { return slices.Contains(me.Identifiers, id) }) {
		return nil
	}
	return fmt.Errorf("a physician imports the ServiceRequests they requested: %w", ErrPermissionDenied)
}

// authorizeReimport lets only the physician who imported a referral
// import it again.
func authorizeReimport(me *Practitioner, r *Referral) error {
	if r.ReferringPhysicianID != me.ID {
		return fmt.Errorf("%s was imported by another physician: %w", Referrals.Name(r.ID), ErrPermissionDenied)
	}
	return nil
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

// authorizePhysician allows physicians only: they diagnose and clear.
func authorizePhysician(p Principal, what string) error {
	if p.Role == RolePhysician {
		return nil
	}
	return fmt.Errorf("only physicians %s: %w", what, ErrPermissionDenied)
}

// redactDiagnosis hides the physician's free-text notes from coordinators,
// and from therapists unless the physician marked them shareable.
func redactDiagnosis(p Principal, d *Diagnosis) {
	if p.Role == RoleCoordinator || (p.Role == RoleTherapist && !d.NotesShareable) {
		d.Notes = ""
	}
}

// redactProgress keeps clinical text of the progress report from
// coordinators, who see its figures only.
func redactProgress(p Principal, pr *Progress) {
	if p.Role != RoleCoordinator {
		return
	}
	pr.LatestAssessment, pr.LatestPlan = "", ""
	for i := range pr.AdverseEvents {
		pr.AdverseEvents[i].Description = ""
	}
	for i := range pr.Deviations {
		pr.Deviations[i].Reason = ""
	}
}

// authorizeRequestClearance allows the treating side to ask for clearance:
// therapists and coordinators.
func authorizeRequestClearance(p Principal) error {
	if p.Role == RoleTherapist || p.Role == RoleCoordinator {
		return nil
	}
	return fmt.Errorf("clearance is requested by the therapist or a coordinator: %w", ErrPermissionDenied)
}

// authorizeSuspend allows a physician who sees the patient, or the therapist
// assigned to a referral the clearance covers, to suspend it.
func authorizeSuspend(p Principal, covered []*Referral) error {
	if p.Role == RolePhysician {
		return nil
	}
	if p.Role == RoleTherapist && slices.ContainsFunc(covered, func(r *Referral) bool { return r.TargetTherapistID == p.PractitionerID }) {
		return nil
	}
	return fmt.Errorf("a clearance is suspended by a physician or the therapist treating under it: %w", ErrPermissionDenied)
}

// redactClearance hides the physician's notes from coordinators.
func redactClearance(p Principal, c *Clearance) {
	if p.Role != RoleCoordinator {
		return
	}
	c.Notes, c.Question = "", ""
	// Copies, not edits: the clearance may be shared with other readers.
	if c.Suspension != nil {
		susp := *c.Suspension
		susp.Observation = ""
		c.Suspension = &susp
	}
	if c.Revocation != nil {
		rev := *c.Revocation
		rev.Reason = ""
		c.Revocation = &rev
	}
}

// SessionScope is the set of relations through which a caller sees a
// session: their own (a therapist), or under a referral they see.
type SessionScope struct {
	Therapist uuid.UUID
	Referrals ReferralScope
}

// sessionScope: a therapist sees their own sessions; the referring
// physician and the coordinators of either organization see the sessions of
// the referrals they see (coordinators without the note's contents).
func sessionScope(p Principal) (SessionScope, error) {
	switch p.Role {
	case RoleTherapist:
		return SessionScope{Therapist: p.PractitionerID}, nil
	case RolePhysician, RoleCoordinator:
		rs, err := referralScope(p)
		return SessionScope{Referrals: rs}, err
	}
	return SessionScope{}, fmt.Errorf("role %s reads no sessions: %w", p.Role, ErrPermissionDenied)
}

// redactSession leaves coordinators the session's metadata and the note's
// status and signature, never its contents.
func redactSession(p Principal, s *Session) {
	if p.Role == RoleCoordinator {
		s.Note = Note{Status: s.Note.Status, Signature: s.Note.Signature}
	}
}

// authorizeCheck lets a therapist check their own gate, and a coordinator
// or the referring physician check any therapist's.
func authorizeCheck(p Principal, r *Referral, therapist uuid.UUID) error {
	switch {
	case p.Role == RoleTherapist && therapist == p.PractitionerID:
		return nil
	case p.Role == RoleCoordinator, p.Role == RolePhysician && p.PractitionerID == r.ReferringPhysicianID:
		if therapist != p.PractitionerID {
			return nil
		}
		return &InvalidError{Violations: []FieldViolation{{Field: "therapist", Description: "name the therapist to check"}}}
	}
	return fmt.Errorf("the gate is checked by the therapist, a coordinator or the referring physician: %w", ErrPermissionDenied)
}

// authorizeSessionTherapist allows only the session's therapist to write
// and sign its note.
func authorizeSessionTherapist(p Principal, s *Session) error {
	if p.Role == RoleTherapist && p.PractitionerID == s.TherapistID {
		return nil
	}
	return fmt.Errorf("only the session's therapist writes its note: %w", ErrPermissionDenied)
}

// authorizeCancelSession allows the session's therapist, or a coordinator
// of the treating practice (its front desk records no-shows).
func authorizeCancelSession(p Principal, s *Session, r *Referral) error {
	if p.Role == RoleCoordinator && p.OrganizationID == r.TargetOrgID {
		return nil
	}
	return authorizeSessionTherapist(p, s)
}

// authorizeAuditor allows auditors, and only them, to read the audit trail.
func authorizeAuditor(p Principal) error {
	if p.Role == RoleAuditor {
		return nil
	}
	return fmt.Errorf("only auditors read the audit trail: %w", ErrPermissionDenied)
}

// Event audiences. An event lists who may receive it as tokens: a
// practitioner, the coordinators or the therapists of an organization, or
// every member of an organization. A subscriber receives an event whose
// audience shares a token with theirs.
func practitionerToken(id uuid.UUID) string { return "p:" + id.String() }
func coordinators(org uuid.UUID) string     { return "c:" + org.String() }
func therapists(org uuid.UUID) string       { return "t:" + org.String() }
func orgMembers(org uuid.UUID) string       { return "o:" + org.String() }

// staff is every member of an organization but its therapists: those who
// read a clinical record through their organization's registration.
func staff(org uuid.UUID) string { return "s:" + org.String() }

// patientAudience mirrors patientScope for an event about a patient: the
// registering organization and every party of the patient's referrals.
// For clinical content (diagnoses, clearances) it mirrors clinicalScope
// instead: the registering organization's members but its therapists, and
// a therapist only through a referral assigned to them, never through
// their practice.
func patientAudience(registeringOrg uuid.UUID, refs []*Referral, clinical bool) []string {
	aud := []string{orgMembers(registeringOrg)}
	if clinical {
		aud = []string{staff(registeringOrg)}
	}
	for _, r := range refs {
		parties := referralAudience(r)
		if clinical {
			parties = slices.DeleteFunc(parties, func(a string) bool { return a == therapists(r.TargetOrgID) })
		}
		aud = append(aud, parties...)
	}
	return aud
}

// eventAudience is what a subscriber matches: a physician their own
// events and their organization's patients'; a therapist theirs, their
// practice's unassigned referrals' and its patients'; a coordinator their
// organization's. Administrators and auditors receive no events.
func eventAudience(p Principal) ([]string, error) {
	switch p.Role {
	case RolePhysician:
		return []string{practitionerToken(p.PractitionerID), orgMembers(p.OrganizationID), staff(p.OrganizationID)}, nil
	case RoleTherapist:
		return []string{practitionerToken(p.PractitionerID), therapists(p.OrganizationID), orgMembers(p.OrganizationID)}, nil
	case RoleCoordinator:
		return []string{coordinators(p.OrganizationID), orgMembers(p.OrganizationID), staff(p.OrganizationID)}, nil
	}
	return nil, fmt.Errorf("role %s receives no events: %w", p.Role, ErrPermissionDenied)
}

// referralAudience mirrors referralScope: the referring physician, the
// coordinators of both organizations, and the therapist it is for (or the
// practice's therapists while unassigned).
func referralAudience(r *Referral) []string {
	aud := []string{practitionerToken(r.ReferringPhysicianID), coordinators(r.ReferringOrgID), coordinators(r.TargetOrgID)}
	if r.TargetTherapistID != uuid.Nil {
		return append(aud, practitionerToken(r.TargetTherapistID))
	}
	return append(aud, therapists(r.TargetOrgID))
}

// sessionAudience mirrors sessionScope: the session's therapist, the
// referring physician and the coordinators of both organizations.
func sessionAudience(s *Session, r *Referral) []string {
	return []string{practitionerToken(s.TherapistID), practitionerToken(r.ReferringPhysicianID),
		coordinators(r.ReferringOrgID), coordinators(r.TargetOrgID)}
}

// RedactEvent removes from an event's resource what the subscriber may not
// read, as the reads of that resource would.
func RedactEvent(p Principal, e *Event) {
	if e.Referral != nil {
		redactReferral(p, e.Referral)
	}
	if e.Diagnosis != nil {
		redactDiagnosis(p, e.Diagnosis)
	}
	if e.Clearance != nil {
		redactClearance(p, e.Clearance)
	}
	if e.Session != nil {
		redactSession(p, e.Session)
	}
}
