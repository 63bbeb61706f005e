package careteam

import "time"

// Business time is time that passes on weekdays (Monday to Friday, UTC),
// whole days of it: the clock that referral acknowledgement runs on, so a
// referral submitted on Friday is not overdue on Sunday.

func isWeekday(t time.Time) bool {
	wd := t.UTC().Weekday()
	return wd != time.Saturday && wd != time.Sunday
}

// businessBetween returns the business time from a to b (zero if b is not
// after a).
func businessBetween(a, b time.Time) time.Duration {
	a, b = a.UTC(), b.UTC()
	var total time.Duration
	for a.Before(b) {
		next := dateOf(a).AddDate(0, 0, 1)
		if next.After(b) {
			next = b
		}
		if isWeekday(a) {
			total += next.Sub(a)
		}
		a = next
	}
	return total
}

// addBusiness returns the earliest time at which d of business time has
// passed since t.
func addBusiness(t time.Time, d time.Duration) time.Time {
	t = t.UTC()
	for d > 0 {
		next := dateOf(t).AddDate(0, 0, 1)
		if isWeekday(t) {
			if left := next.Sub(t); d <= left {
				return t.Add(d)
			} else {
				d -= left
			}
		}
		t = next
	}
	return t
}
