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
	err := s.store.InTx(ctx, func(tx Tx) error {
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
	return &Progress{Referral: r}, nil
}
