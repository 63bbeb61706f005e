package fhir

import (
	"testing"
	"time"

	"github.com/careteam/careteam/server/internal/careteam"
)

// TestLastUpdatedReadsThePrecisionGiven: each prefix bounds the range its
// value's precision spans, so gt the last time a poller saw skips nothing
// later in the same second.
func TestLastUpdatedReadsThePrecisionGiven(t *testing.T) {
	day := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	µs := time.Microsecond
	tests := []struct {
		value         string
		after, before time.Time
	}{
		{"gt2026-12-01", day.AddDate(0, 0, 1).Add(-µs), time.Time{}},
		{"ge2026-12-01", day.Add(-µs), time.Time{}},
		{"lt2026-12-01", time.Time{}, day},
		{"le2026-12-01", time.Time{}, day.AddDate(0, 0, 1)},
		{"2026-12-01", day.Add(-µs), day.AddDate(0, 0, 1)},
		{"ge2026", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(-µs), time.Time{}},
		{"lt2026-12", time.Time{}, day},
		{"gt2026-12-01T09:00Z", day.Add(9*time.Hour + time.Minute - µs), time.Time{}},
		{"gt2026-12-01T09:00:00Z", day.Add(9*time.Hour + time.Second - µs), time.Time{}},
		{"gt2026-12-01T09:00:00.123456Z", day.Add(9*time.Hour + 123457*µs - µs), time.Time{}},
		{"gt2026-12-01T10:00:00+01:00", day.Add(9*time.Hour + time.Second - µs), time.Time{}},
	}
	for _, tc := range tests {
		var f careteam.ReferralFilter
		if err := lastUpdated(&f, tc.value); err != nil {
			t.Errorf("%s: %v", tc.value, err)
			continue
		}
		if !f.ChangedAfter.Equal(tc.after) || !f.ChangedBefore.Equal(tc.before) {
			t.Errorf("%s: after %v before %v, want after %v before %v", tc.value, f.ChangedAfter, f.ChangedBefore, tc.after, tc.before)
		}
	}
	for _, bad := range []string{"yesterday", "gt2026-13-01", "sa2026-12-01", "2026-12-01T09:00:00", "gt"} {
		var f careteam.ReferralFilter
		if lastUpdated(&f, bad) == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}
