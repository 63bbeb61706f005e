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
	// StreamsPerPrincipal caps the streams one principal holds open on a
	// replica; zero means defaultStreamsPerPrincipal.
	StreamsPerPrincipal int
	// FailedAuthRate is the sustained failed authentications per second
	// one peer address may make, FailedAuthBurst those above it at once;
	// past them, its calls are refused before their credentials are
	// checked. Zero means the defaults below.
	FailedAuthRate  float64
	FailedAuthBurst int
}

const (
	defaultStreamsPerPrincipal = 16
	defaultFailedAuthRate      = 10
	defaultFailedAuthBurst     = 200
)

// limiter holds a token bucket per principal, and one per peer address for
// failed authentications; buckets idle for a while are dropped so that the
// maps do not grow with every subject or address ever seen.
type limiter struct {
	limits  Limits
	mu      sync.Mutex
	byKey   map[string]*bucket
	byPeer  map[string]*bucket
	streams map[string]int
	swept   time.Time
}

type bucket struct {
	lim  *rate.Limiter
	seen time.Time
}

func newLimiter(l Limits) *limiter {
	if l.StreamsPerPrincipal <= 0 {
		l.StreamsPerPrincipal = defaultStreamsPerPrincipal
	}
	if l.FailedAuthRate <= 0 || l.FailedAuthBurst <= 0 {
		l.FailedAuthRate, l.FailedAuthBurst = defaultFailedAuthRate, defaultFailedAuthBurst
	}
	return &limiter{limits: l, byKey: map[string]*bucket{}, byPeer: map[string]*bucket{}, streams: map[string]int{}}
}

// allow reports whether key may make one more call now.
func (l *limiter) allow(key string, now time.Time) bool {
	if l.limits.PerPrincipalRate <= 0 {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweep(now)
	return l.bucket(l.byKey, key, l.limits.PerPrincipalRate, l.limits.Burst, now).AllowN(now, 1)
}

// peerMayTry reports whether peer has failed authentication less than its
// limit allows; it spends nothing.
func (l *limiter) peerMayTry(peer string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweep(now)
	return l.bucket(l.byPeer, peer, l.limits.FailedAuthRate, l.limits.FailedAuthBurst, now).TokensAt(now) >= 1
}

// peerFailed spends one of peer's failed authentications.
func (l *limiter) peerFailed(peer string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.bucket(l.byPeer, peer, l.limits.FailedAuthRate, l.limits.FailedAuthBurst, now).AllowN(now, 1)
}

// openStream counts a stream key holds open, unless it holds the most it
// may already; release ends the count.
func (l *limiter) openStream(key string) (release func(), ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.streams[key] >= l.limits.StreamsPerPrincipal {
		return nil, false
	}
	l.streams[key]++
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.streams[key]--; l.streams[key] == 0 {
			delete(l.streams, key)
		}
	}, true
}

// bucket returns key's bucket in m, made with r and burst if new; called
// with l locked.
func (l *limiter) bucket(m map[string]*bucket, key string, r float64, burst int, now time.Time) *rate.Limiter {
	b := m[key]
	if b == nil {
		b = &bucket{lim: rate.NewLimiter(rate.Limit(r), max(burst, 1))}
		m[key] = b
	}
	b.seen = now
	return b.lim
}

// sweep drops buckets idle for a minute; called with l locked.
func (l *limiter) sweep(now time.Time) {
	if now.Sub(l.swept) <= time.Minute {
		return
	}
	for _, m := range []map[string]*bucket{l.byKey, l.byPeer} {
		for k, b := range m {
			if now.Sub(b.seen) > time.Minute {
				delete(m, k)
			}
		}
	}
	l.swept = now
}
