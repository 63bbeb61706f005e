package careteam

import (
	"context"
	"time"

	"github.com/google/uuid"
)

// MeasureTrend is a measure's change from the first to the latest session
// that recorded it.
type MeasureTrend struct {
	First, Latest, Change int
	// MeanChangePerSession is Change spread over the sessions between the
	// first and the latest recording.
	MeanChangePerSession float64
	Sessions             int
}

// SessionSummary is one session as the progress report shows it.
type SessionSummary struct {
	SessionID       uuid.UUID
	StartTime       time.Time
	DurationMinutes int
	Treatments      []Treatment
	PainBefore      *int
	PainAfter       *int
	Oswestry        *int
	NeckDisability  *int
	AdverseEvent    bool
	Deviation       bool
	Signed          bool
}

// AdverseEventSummary is an adverse event reported in a session.
type AdverseEventSummary struct {
	SessionID   uuid.UUID
	Severity    Severity
	Description string
	SessionTime time.Time
}

// DeviationSummary is a documented deviation from the clearance.
type DeviationSummary struct {
	SessionID uuid.UUID
	Reason    string
	SignTime  time.Time
}

// Progress is what the referring physician reads about a referral.
type Progress struct {
	Referral              *Referral
	Sessions              []SessionSummary
	Pain                  *MeasureTrend
	Oswestry              *MeasureTrend
	NeckDisability        *MeasureTrend
	MeanSessionPainRelief float64
	AdverseEvents         []AdverseEventSummary
	Deviations            []DeviationSummary
	LatestAssessment      string
	LatestPlan            string
}

// GetReferralProgress reports a referral's progress to whoever may see the
// referral; coordinators get the figures without clinical text.
func (s *Service) GetReferralProgress(ctx context.Context, p Principal, id uuid.UUID) (*Referral, *Progress, error) {
	var pr *Progress
	err := s.store.Read(ctx, func(tx Tx) error {
		r, err := s.readReferral(ctx, tx, p, id)
		if err != nil {
			return err
		}
		pr, err = s.progress(ctx, tx, r)
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	redactProgress(p, pr)
	return pr.Referral, pr, nil
}

// progress builds the report of r from its sessions.
func (s *Service) progress(ctx context.Context, tx Tx, r *Referral) (*Progress, error) {
	sessions, err := tx.ReferralSessions(ctx, r.ID)
	if err != nil {
		return nil, err
	}
	return buildProgress(r, sessions), nil
}

// buildProgress summarizes sessions (oldest first). Sessions that did not
// happen (cancelled, no-show) are left out; trends and the latest
// assessment come from signed notes only, the record a physician can rely
// on; adverse events are reported from drafts too, since they cannot wait.
func buildProgress(r *Referral, sessions []*Session) *Progress {
	pr := &Progress{Referral: r}
	var pain, odi, ndi []int
	var relief []int
	for _, ss := range sessions {
		n := ss.Note
		// An adverse event is reported whatever became of the session.
		if n.AdverseEvent != nil {
			pr.AdverseEvents = append(pr.AdverseEvents, AdverseEventSummary{
				SessionID: ss.ID, Severity: n.AdverseEvent.Severity, Description: n.AdverseEvent.Description, SessionTime: ss.StartTime,
			})
		}
		if ss.State == SessionCancelled || ss.State == SessionNoShow {
			continue
		}
		signed := n.Status == NoteSigned
		treatments := n.Treatments
		if len(treatments) == 0 {
			treatments = ss.Planned
		}
		pr.Sessions = append(pr.Sessions, SessionSummary{
			SessionID: ss.ID, StartTime: ss.StartTime, DurationMinutes: n.DurationMinutes, Treatments: treatments,
			PainBefore: n.PainBefore, PainAfter: n.PainAfter, Oswestry: n.Oswestry, NeckDisability: n.NeckDisability,
			AdverseEvent: n.AdverseEvent != nil, Deviation: n.DeviationReason != "", Signed: signed,
		})
		if !signed {
			continue
		}
		if n.DeviationReason != "" {
			pr.Deviations = append(pr.Deviations, DeviationSummary{SessionID: ss.ID, Reason: n.DeviationReason, SignTime: n.Signature.Time})
		}
		if n.PainBefore != nil {
			pain = append(pain, *n.PainBefore)
		}
		if n.PainBefore != nil && n.PainAfter != nil {
			relief = append(relief, *n.PainBefore-*n.PainAfter)
		}
		if n.Oswestry != nil {
			odi = append(odi, *n.Oswestry)
		}
		if n.NeckDisability != nil {
			ndi = append(ndi, *n.NeckDisability)
		}
		pr.LatestAssessment, pr.LatestPlan = n.Assessment, n.Plan
	}
	pr.Pain, pr.Oswestry, pr.NeckDisability = trend(pain), trend(odi), trend(ndi)
	if len(relief) > 0 {
		sum := 0
		for _, d := range relief {
			sum += d
		}
		pr.MeanSessionPainRelief = float64(sum) / float64(len(relief))
	}
	return pr
}

// trend reports a measure's change from its first to its latest value; nil
// when it was never recorded.
func trend(values []int) *MeasureTrend {
	if len(values) == 0 {
		return nil
	}
	t := &MeasureTrend{First: values[0], Latest: values[len(values)-1], Sessions: len(values)}
	t.Change = t.Latest - t.First
	if len(values) > 1 {
		t.MeanChangePerSession = float64(t.Change) / float64(len(values)-1)
	}
	return t
}
