package careteam

import (
	"math/rand/v2"
	"testing"
	"time"
)

// march2026 returns a UTC instant in the week of Monday 2 to Sunday 8 and
// the week after: the 6th is a Friday, the 9th a Monday.
func march2026(day, hour, minute int) time.Time {
	return time.Date(2026, 3, day, hour, minute, 0, 0, time.UTC)
}

func TestBusinessBetween(t *testing.T) {
	t.Parallel()
	// UTC+10: Saturday morning there is still Friday in UTC, which is what
	// business time is measured in.
	sydney := time.FixedZone("UTC+10", 10*60*60)
	tests := []struct {
		name string
		a, b time.Time
		want time.Duration
	}{
		{"within a weekday", march2026(4, 10, 0), march2026(4, 15, 30), 5*time.Hour + 30*time.Minute},
		{"across a night", march2026(4, 22, 0), march2026(5, 2, 0), 4 * time.Hour},
		{"across a weekend", march2026(6, 10, 0), march2026(10, 10, 0), 48 * time.Hour},
		{"friday to monday", march2026(6, 10, 0), march2026(9, 10, 0), 24 * time.Hour},
		{"from a saturday", march2026(7, 10, 0), march2026(9, 10, 0), 10 * time.Hour},
		{"within a weekend", march2026(7, 1, 0), march2026(8, 23, 0), 0},
		{"friday midnight to saturday midnight", march2026(6, 0, 0), march2026(7, 0, 0), 24 * time.Hour},
		{"friday midnight to monday midnight", march2026(6, 0, 0), march2026(9, 0, 0), 24 * time.Hour},
		{"saturday midnight to monday midnight", march2026(7, 0, 0), march2026(9, 0, 0), 0},
		{"two whole weeks", march2026(2, 0, 0), march2026(16, 0, 0), 10 * 24 * time.Hour},
		{"one nanosecond of monday", march2026(9, 0, 0), march2026(9, 0, 0).Add(time.Nanosecond), time.Nanosecond},
		{"zero", march2026(4, 10, 0), march2026(4, 10, 0), 0},
		{"backwards", march2026(5, 10, 0), march2026(4, 10, 0), 0},
		{"judged in UTC", march2026(6, 19, 0).In(sydney), march2026(6, 23, 0).In(sydney), 4 * time.Hour},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := businessBetween(tc.a, tc.b); got != tc.want {
				t.Errorf("businessBetween(%v, %v) = %v, want %v", tc.a, tc.b, got, tc.want)
			}
		})
	}
}

func TestAddBusiness(t *testing.T) {
	t.Parallel()
	sydney := time.FixedZone("UTC+10", 10*60*60)
	tests := []struct {
		name string
		t    time.Time
		d    time.Duration
		want time.Time
	}{
		{"within a weekday", march2026(4, 10, 0), 5 * time.Hour, march2026(4, 15, 0)},
		{"across a night", march2026(4, 22, 0), 4 * time.Hour, march2026(5, 2, 0)},
		{"across a weekend", march2026(6, 10, 0), 48 * time.Hour, march2026(10, 10, 0)},
		// The earliest instant is the end of Friday, not Monday's start.
		{"exactly to the end of friday", march2026(6, 10, 0), 14 * time.Hour, march2026(7, 0, 0)},
		{"just past the end of friday", march2026(6, 10, 0), 14*time.Hour + time.Nanosecond, march2026(9, 0, 0).Add(time.Nanosecond)},
		{"from a saturday", march2026(7, 10, 0), time.Hour, march2026(9, 1, 0)},
		{"from sunday's last hour", march2026(8, 23, 0), 24 * time.Hour, march2026(10, 0, 0)},
		{"zero on a weekday", march2026(4, 10, 0), 0, march2026(4, 10, 0)},
		// No business time needs to pass, so no waiting for Monday.
		{"zero on a saturday", march2026(7, 10, 0), 0, march2026(7, 10, 0)},
		{"a whole day from midnight", march2026(9, 0, 0), 24 * time.Hour, march2026(10, 0, 0)},
		{"a whole week from midnight", march2026(9, 0, 0), 5 * 24 * time.Hour, march2026(14, 0, 0)},
		{"judged in UTC", march2026(6, 19, 0).In(sydney), 5 * time.Hour, march2026(7, 0, 0)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := addBusiness(tc.t, tc.d); !got.Equal(tc.want) {
				t.Errorf("addBusiness(%v, %v) = %v, want %v", tc.t, tc.d, got, tc.want)
			}
		})
	}
}

// TestBusinessTimeProperties checks that addBusiness inverts
// businessBetween and returns the earliest instant, over random instants
// and durations biased towards midnights and whole hours and days, where
// off-by-one errors live.
func TestBusinessTimeProperties(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(20260306, 2))
	base := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	const span = 3 * 365 * 24 * time.Hour
	instant := func() time.Time {
		t := base.Add(time.Duration(r.Int64N(int64(span))))
		switch r.IntN(4) {
		case 0:
			return dateOf(t)
		case 1:
			return t.Truncate(time.Hour)
		}
		return t
	}
	duration := func() time.Duration {
		switch r.IntN(5) {
		case 0:
			return 0
		case 1:
			return time.Duration(r.IntN(30)) * 24 * time.Hour
		case 2:
			return time.Duration(r.IntN(30*24)) * time.Hour
		case 3:
			return time.Duration(r.Int64N(1000))
		}
		return time.Duration(r.Int64N(int64(30 * 24 * time.Hour)))
	}

	for range 20_000 {
		t0, d := instant(), duration()
		u := addBusiness(t0, d)
		if got := businessBetween(t0, u); got != d {
			t.Fatalf("businessBetween(%v, addBusiness(%v, %v) = %v) = %v", t0, t0, d, u, got)
		}
		if d == 0 {
			if !u.Equal(t0) {
				t.Fatalf("addBusiness(%v, 0) = %v", t0, u)
			}
			continue
		}
		if !u.After(t0) {
			t.Fatalf("addBusiness(%v, %v) = %v, not later", t0, d, u)
		}
		if got := businessBetween(t0, u.Add(-time.Nanosecond)); got >= d {
			t.Fatalf("addBusiness(%v, %v) = %v is not the earliest: %v had passed a nanosecond before", t0, d, u, got)
		}
		// Positive business time ends on a weekday, or exactly at the
		// midnight that ends a Friday: the first instant of the weekend,
		// which no business time separates from Monday's start.
		if wd := u.UTC().Weekday(); wd == time.Saturday || wd == time.Sunday {
			if wd != time.Saturday || !u.Equal(dateOf(u)) {
				t.Fatalf("addBusiness(%v, %v) = %v, inside a weekend", t0, d, u)
			}
		}

		// The converse: for any later instant v, adding the business time
		// up to v lands no later than v and with none left to pass.
		v := t0.Add(time.Duration(r.Int64N(int64(30 * 24 * time.Hour))))
		k := businessBetween(t0, v)
		if w := addBusiness(t0, k); w.After(v) || businessBetween(w, v) != 0 {
			t.Fatalf("addBusiness(%v, businessBetween(%v, %v) = %v) = %v", t0, t0, v, k, w)
		}
		m := t0.Add(time.Duration(r.Int64N(int64(v.Sub(t0)) + 1)))
		if k != businessBetween(t0, m)+businessBetween(m, v) {
			t.Fatalf("businessBetween not additive over %v, %v, %v", t0, m, v)
		}
	}
}
