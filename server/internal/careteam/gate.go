package careteam

import (
	"bytes"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
)

// Violation types of the session gate.
const (
	ViolationReferralNotAccepted  = "REFERRAL_NOT_ACCEPTED"
	ViolationReferralExpired      = "REFERRAL_EXPIRED"
	ViolationReferralNotYetValid  = "REFERRAL_NOT_YET_VALID"
	ViolationNotAssigned          = "NOT_ASSIGNED_THERAPIST"
	ViolationVisitsExhausted      = "VISITS_EXHAUSTED"
	ViolationClearanceMissing     = "CLEARANCE_MISSING"
	ViolationClearanceNotCleared  = "CLEARANCE_NOT_CLEARED"
	ViolationClearanceExpired     = "CLEARANCE_EXPIRED"
	ViolationClearanceNotYetValid = "CLEARANCE_NOT_YET_VALID"
	ViolationClearanceRevoked     = "CLEARANCE_REVOKED"
	ViolationClearanceSuspended   = "CLEARANCE_SUSPENDED"
	ViolationConsentMissing       = "CONSENT_MISSING"
	ViolationPrecaution           = "PRECAUTION_VIOLATED"
	ViolationContraindicated      = "CONTRAINDICATED_TECHNIQUE"
	ViolationLicenceExpired       = "LICENCE_EXPIRED"
	ViolationNotQualified         = "NOT_QUALIFIED"
	ViolationRedFlagNotEvaluated  = "RED_FLAG_NOT_EVALUATED"
)

// GateFacts is everything the gate decides on, loaded in the transaction
// that would start the session (with the patient, the referral and the
// clearances locked). Every condition is judged at Now, the server's clock
// when the session starts: no time a caller sends enters the facts.
type GateFacts struct {
	Referral  *Referral
	Therapist *Practitioner
	// Clearances are the patient's clearances that may apply: patient-wide
	// or limited to this referral, in any status but REQUESTED.
	Clearances []*Clearance
	// Findings are the red flags standing on the patient's record.
	Findings []*RedFlagFinding
	// ConsentOnFile: the therapist's practice holds the patient's consent,
	// signed on or before Now's day.
	ConsentOnFile bool
	Plan          []Treatment
	Now           time.Time
}

// Gate decides whether a session may start: it returns the clearance that
// applies (nil if none) and every unmet condition, not just the first.
func Gate(f GateFacts) (*Clearance, []Violation) {
	var v []Violation
	r := f.Referral
	rname := Referrals.Name(r.ID)
	add := func(typ, subject, format string, args ...any) {
		v = append(v, Violation{Type: typ, Subject: subject, Description: fmt.Sprintf(format, args...)})
	}

	state := r.StateAt(f.Now)
	if state == ReferralExpired {
		add(ViolationReferralExpired, rname, "the referral's validity ends %s", r.ValidUntil.Format(time.RFC3339))
	}
	if f.Now.Before(r.ValidFrom) {
		add(ViolationReferralNotYetValid, rname, "the referral is valid from %s", r.ValidFrom.Format(time.RFC3339))
	}
	if state != ReferralExpired && state != ReferralAccepted && state != ReferralInProgress {
		add(ViolationReferralNotAccepted, rname, "the referral is %s", state)
	}
	tname := Practitioners.Name(f.Therapist.ID)
	if r.TargetTherapistID != f.Therapist.ID {
		add(ViolationNotAssigned, rname, "the referral is not assigned to %s", tname)
	}
	if r.RemainingVisits() == 0 {
		add(ViolationVisitsExhausted, rname, "all %d authorized visits are used", r.AuthorizedVisits)
	}

	c := applicableClearance(f.Clearances, r.ID, f.Now)
	if c == nil {
		add(ViolationClearanceMissing, Patients.Name(r.PatientID), "no clearance covers this patient and referral")
	} else {
		v = append(v, clearanceViolations(c, f.Now)...)
		v = append(v, planViolations(c, f.Plan)...)
		v = append(v, unevaluatedFindings(f.Findings, c)...)
	}
	if !f.ConsentOnFile {
		add(ViolationConsentMissing, Patients.Name(r.PatientID), "the practice holds no treatment consent of the patient")
	}
	if !f.Therapist.Licence.ActiveOn(f.Now) {
		add(ViolationLicenceExpired, tname, "the therapist's licence is not active today")
	}
	var missing []Specialty
	for _, s := range r.RequiredSpecialties {
		if !slices.Contains(f.Therapist.Specialties, s) {
			missing = append(missing, s)
		}
	}
	if len(missing) > 0 {
		add(ViolationNotQualified, tname, "the therapist no longer holds required training: %v", missing)
	}
	return c, v
}

// applicableClearance picks the clearance that governs a session under
// referral at now: among those whose window has opened and that nothing
// has superseded by now, the latest issued one limited to the referral if
// there is one, else the latest patient-wide one (issued at the same
// instant: the one created last, by its time-ordered id). The most specific
// decision wins, so a revoked referral clearance is not rescued by a
// patient-wide one. When no window has opened, the one that opens first
// is returned, so that the gate says it is not yet valid.
func applicableClearance(cs []*Clearance, referral uuid.UUID, now time.Time) *Clearance {
	var scoped, wide, early *Clearance
	for _, c := range cs {
		if st := c.statusAt(now); st == ClearanceRequested || st == ClearanceSuperseded {
			continue
		}
		if c.ReferralID != uuid.Nil && c.ReferralID != referral {
			continue
		}
		if now.Before(c.ValidFrom) {
			if early == nil || c.ValidFrom.Before(early.ValidFrom) {
				early = c
			}
			continue
		}
		slot := &wide
		if c.ReferralID == referral {
			slot = &scoped
		}
		if *slot == nil || c.IssueTime.After((*slot).IssueTime) ||
			(c.IssueTime.Equal((*slot).IssueTime) && bytes.Compare(c.ID[:], (*slot).ID[:]) > 0) {
			*slot = c
		}
	}
	switch {
	case scoped != nil:
		return scoped
	case wide != nil:
		return wide
	}
	return early
}

// clearanceViolations judges the clearance's status, decision and window at
// now.
func clearanceViolations(c *Clearance, now time.Time) []Violation {
	name := Clearances.Name(c.ID)
	var v []Violation
	switch c.statusAt(now) {
	case ClearanceSuspended:
		v = append(v, Violation{Type: ViolationClearanceSuspended, Subject: name, Description: "the clearance is suspended: a red flag was reported"})
	case ClearanceRevoked:
		v = append(v, Violation{Type: ViolationClearanceRevoked, Subject: name, Description: "the clearance was revoked"})
	}
	if c.Decision == DecisionNotCleared {
		v = append(v, Violation{Type: ViolationClearanceNotCleared, Subject: name, Description: "the physician did not clear the patient for massage"})
	}
	if now.Before(c.ValidFrom) {
		v = append(v, Violation{Type: ViolationClearanceNotYetValid, Subject: name, Description: fmt.Sprintf("the clearance is valid from %s", c.ValidFrom.Format(time.RFC3339))})
	}
	if !now.Before(c.ValidUntil) {
		v = append(v, Violation{Type: ViolationClearanceExpired, Subject: name, Description: fmt.Sprintf("the clearance expired %s", c.ValidUntil.Format(time.RFC3339))})
	}
	return v
}

// planViolations checks each treatment against the clearance's
// precautions and contraindications, naming region, technique and rule.
func planViolations(c *Clearance, plan []Treatment) []Violation {
	name := Clearances.Name(c.ID)
	var v []Violation
	for _, t := range plan {
		if slices.Contains(c.Contraindicated, t.Technique) {
			v = append(v, Violation{Type: ViolationContraindicated, Subject: name,
				Description: fmt.Sprintf("%s is contraindicated (planned on %s)", t.Technique, t.Region)})
		}
		for _, pc := range c.Precautions {
			if !pc.covers(t) {
				continue
			}
			switch {
			case pc.Action == PrecautionAvoid:
				v = append(v, Violation{Type: ViolationPrecaution, Subject: name,
					Description: fmt.Sprintf("%s on %s: the clearance says AVOID %s", t.Technique, t.Region, pc.describe())})
			case pc.Action == PrecautionLimitPressure && exceeds(t.Pressure, pc.MaxPressure):
				v = append(v, Violation{Type: ViolationPrecaution, Subject: name,
					Description: fmt.Sprintf("%s on %s at %s pressure: the clearance limits %s to %s", t.Technique, t.Region, t.Pressure, pc.describe(), pc.MaxPressure)})
			}
		}
	}
	return v
}
