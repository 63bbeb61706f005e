package api

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limits bound what one caller can ask of the server.
type Limits struct {
	// PerPrincipalRate is the sustained calls per second a principal may
	// make (each replica counts its own); Burst the calls above it allowed
	// at once. Zero disables the limit.
	PerPrincipalRate float64
	Burst            int
	// DefaultTimeout is the deadline given to a unary call that has none.
	DefaultTimeout time.Duration
}

// limiter holds a token bucket per principal; buckets idle for a while are
// dropped so that the map does not grow with every subject ever seen.
type limiter struct {
	limits Limits
	mu     sync.Mutex
	byKey  map[string]*bucket
	swept  time.Time
}

type bucket struct {
	lim  *rate.Limiter
	seen time.Time
}

func newLimiter(l Limits) *limiter { return &limiter{limits: l, byKey: map[string]*bucket{}} }

// allow reports whether key may make one more call now.
func (l *limiter) allow(key string, now time.Time) bool {
	if l.limits.PerPrincipalRate <= 0 {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.swept) > time.Minute {
		for k, b := range l.byKey {
			if now.Sub(b.seen) > time.Minute {
				delete(l.byKey, k)
			}
		}
		l.swept = now
	}
	b := l.byKey[key]
	if b == nil {
		b = &bucket{lim: rate.NewLimiter(rate.Limit(l.limits.PerPrincipalRate), max(l.limits.Burst, 1))}
		l.byKey[key] = b
	}
	b.seen = now
	return b.lim.AllowN(now, 1)
}
