package careteam

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
)

// RedFlag is a sign that back pain may hide a serious condition, or a
// condition that makes massage risky.
type RedFlag string

// RedFlags lists every red flag; the API contract enumerates the same.
var RedFlags = []RedFlag{"CAUDA_EQUINA_SYMPTOMS", "SUSPECTED_FRACTURE", "MALIGNANCY_HISTORY", "INFECTION_SIGNS",
	"UNEXPLAINED_WEIGHT_LOSS", "PROGRESSIVE_NEUROLOGICAL_DEFICIT", "SIGNIFICANT_TRAUMA", "ANTICOAGULANT_THERAPY",
	"OSTEOPOROSIS", "DEEP_VEIN_THROMBOSIS"}

// codeRedFlags is the one table of ICD-10-CM codes (a code and every code
// under it) whose diagnosis carries red flags whatever the recording
// physician ticked: every path that records a diagnosis adds them.
var codeRedFlags = []struct {
	prefix string
	flags  []RedFlag
}{
	{"G83.4", []RedFlag{"CAUDA_EQUINA_SYMPTOMS"}},                    // cauda equina syndrome
	{"M80", []RedFlag{"OSTEOPOROSIS", "SUSPECTED_FRACTURE"}},         // osteoporosis with current pathological fracture
	{"M81", []RedFlag{"OSTEOPOROSIS"}},                               // osteoporosis without current pathological fracture
	{"M48.5", []RedFlag{"SUSPECTED_FRACTURE"}},                       // collapsed vertebra
	{"S12", []RedFlag{"SUSPECTED_FRACTURE", "SIGNIFICANT_TRAUMA"}},   // fracture of cervical vertebra
	{"S22.0", []RedFlag{"SUSPECTED_FRACTURE", "SIGNIFICANT_TRAUMA"}}, // fracture of thoracic vertebra
	{"S32.0", []RedFlag{"SUSPECTED_FRACTURE", "SIGNIFICANT_TRAUMA"}}, // fracture of lumbar vertebra
	{"C41.2", []RedFlag{"MALIGNANCY_HISTORY"}},                       // malignant neoplasm of vertebral column
	{"C79.5", []RedFlag{"MALIGNANCY_HISTORY"}},                       // secondary malignant neoplasm of bone
	{"Z85", []RedFlag{"MALIGNANCY_HISTORY"}},                         // personal history of malignant neoplasm
	{"M46.2", []RedFlag{"INFECTION_SIGNS"}},                          // osteomyelitis of vertebra
	{"M46.3", []RedFlag{"INFECTION_SIGNS"}},                          // infection of intervertebral disc (pyogenic)
	{"M46.4", []RedFlag{"INFECTION_SIGNS"}},                          // discitis
	{"R63.4", []RedFlag{"UNEXPLAINED_WEIGHT_LOSS"}},                  // abnormal weight loss
	{"I82.4", []RedFlag{"DEEP_VEIN_THROMBOSIS"}},                     // DVT of deep veins of lower extremity
	{"Z79.01", []RedFlag{"ANTICOAGULANT_THERAPY"}},                   // long-term use of anticoagulants
}

// CodeRedFlags returns the red flags an ICD-10-CM code carries by the
// table; code is normalized first, so "G834" and "g83.4" carry the same.
func CodeRedFlags(code string) []RedFlag {
	code, ok := NormalizeICD10(code)
	if !ok {
		return nil
	}
	var out []RedFlag
	for _, rc := range codeRedFlags {
		// A three-character category covers its dotted subcodes; a dotted
		// prefix covers every longer code.
		if code == rc.prefix || strings.HasPrefix(code, rc.prefix+".") || (strings.Contains(rc.prefix, ".") && strings.HasPrefix(code, rc.prefix)) {
			out = append(out, rc.flags...)
		}
	}
	return out
}

// RedFlagFinding is a red flag on a patient's record: carried by an active
// diagnosis, or reported by the therapist who suspended a clearance. While
// it stands, the gate admits a session only under a clearance that attests
// it was evaluated; a clearance issued before it was recorded cannot.
type RedFlagFinding struct {
	ID        uuid.UUID
	PatientID uuid.UUID
	Flag      RedFlag
	// DiagnosisID is set for a red flag of a diagnosis: it stands while the
	// diagnosis is active and carries the flag.
	DiagnosisID uuid.UUID
	// ClearanceID is set for a therapist's report: the clearance they
	// suspended. It stands until a clearance evaluates it.
	ClearanceID uuid.UUID
	ReportedBy  uuid.UUID
	RecordTime  time.Time
	// EvaluatedBy lists the clearances that attest it was evaluated.
	EvaluatedBy []uuid.UUID
}

// source names where the finding was recorded: its diagnosis, or the
// clearance whose suspension reported it.
func (f *RedFlagFinding) source() string {
	if f.DiagnosisID != uuid.Nil {
		return Diagnoses.Name(f.DiagnosisID)
	}
	return Clearances.Name(f.ClearanceID)
}

// unevaluatedFindings returns the findings clearance c does not attest were
// evaluated, one violation each.
func unevaluatedFindings(findings []*RedFlagFinding, c *Clearance) []Violation {
	var v []Violation
	for _, f := range findings {
		if slices.Contains(f.EvaluatedBy, c.ID) {
			continue
		}
		v = append(v, Violation{Type: ViolationRedFlagNotEvaluated, Subject: f.source(),
			Description: fmt.Sprintf("red flag %s, recorded %s, was not evaluated by %s", f.Flag, f.RecordTime.UTC().Format(time.RFC3339), Clearances.Name(c.ID))})
	}
	return v
}

// activeRedFlags returns the red flags a diagnosis puts on the patient's
// record: none unless it is active.
func activeRedFlags(d *Diagnosis) []RedFlag {
	if d == nil || !d.Active() {
		return nil
	}
	return d.RedFlags
}

// recordDiagnosisFindings keeps the patient's findings in step with a
// diagnosis just saved (prev is what it was, nil when new): a red flag it
// now carries actively and did not before is a new finding, raised at once;
// one it no longer carries is withdrawn. The patient's row must be locked.
func (s *Service) recordDiagnosisFindings(ctx context.Context, tx Tx, p Principal, prev, d *Diagnosis, now time.Time) error {
	before, after := activeRedFlags(prev), activeRedFlags(d)
	var added []*RedFlagFinding
	for _, flag := range after {
		if !slices.Contains(before, flag) {
			added = append(added, &RedFlagFinding{ID: newID(), PatientID: d.PatientID, Flag: flag, DiagnosisID: d.ID, ReportedBy: p.PractitionerID, RecordTime: now})
		}
	}
	var gone []RedFlag
	for _, flag := range before {
		if !slices.Contains(after, flag) {
			gone = append(gone, flag)
		}
	}
	if len(gone) > 0 {
		open, err := tx.OpenRedFlagFindings(ctx, d.PatientID)
		if err != nil {
			return err
		}
		var withdrawn []uuid.UUID
		for _, f := range open {
			if f.DiagnosisID == d.ID && slices.Contains(gone, f.Flag) {
				withdrawn = append(withdrawn, f.ID)
			}
		}
		if err := tx.CloseRedFlagFindings(ctx, withdrawn, now); err != nil {
			return err
		}
	}
	return s.raiseFindings(ctx, tx, p, d.PatientID, added, uuid.Nil, now)
}

// raiseFindings records new red flags on a patient's record. No clearance
// has evaluated them, so every one in force becomes insufficient at once:
// each is announced to its physician (CLEARANCE_INSUFFICIENT, except
// skip, whose own event says more), and each referral being treated goes
// ON_HOLD for the physician's attention until a clearance attesting them
// governs it. The patient's row must be locked.
func (s *Service) raiseFindings(ctx context.Context, tx Tx, p Principal, patient uuid.UUID, added []*RedFlagFinding, skip uuid.UUID, now time.Time) error {
	if len(added) == 0 {
		return nil
	}
	if err := tx.InsertRedFlagFindings(ctx, added); err != nil {
		return err
	}
	flags := make([]string, len(added))
	for i, f := range added {
		flags[i] = string(f.Flag)
	}
	reason := "red flag recorded: " + strings.Join(flags, ", ")
	treated, err := tx.LockPatientReferrals(ctx, patient, []ReferralState{ReferralAccepted, ReferralInProgress})
	if err != nil {
		return err
	}
	if err := s.holdReferrals(ctx, tx, p, treated, reason, now); err != nil {
		return err
	}
	inForce, err := tx.ClearancesInForce(ctx, patient)
	if err != nil {
		return err
	}
	for _, c := range inForce {
		if c.ID == skip || c.statusAt(now) == ClearanceExpired {
			continue
		}
		if err := s.clearanceEvent(ctx, tx, EventClearanceInsufficient, c, p.PractitionerID); err != nil {
			return err
		}
	}
	return nil
}

// holdReferrals puts referrals being treated ON_HOLD, flagged for the
// physician's attention, remembering the state to return to.
func (s *Service) holdReferrals(ctx context.Context, tx Tx, p Principal, refs []*Referral, reason string, now time.Time) error {
	for _, r := range refs {
		if checkTransition(r, actHold, now) != nil {
			continue // expired: no session can start under it anyway
		}
		r.HeldFrom = r.State
		r.AttentionRequired = true
		r.transition(ReferralOnHold, p.PractitionerID, now, reason, s.cfg.AckWindow, false)
		if err := saveReferral(ctx, tx, r, now); err != nil {
			return err
		}
		tx.AppendEvent(referralEvent(EventReferralOnHold, r, p.PractitionerID, now))
	}
	return nil
}
