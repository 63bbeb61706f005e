package auth

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
)

const (
	// DefaultRefresh is how long a RemoteKeySet trusts a fetched JWKS when
	// NewRemoteKeySet is given no interval.
	DefaultRefresh = time.Hour

	// minFetchInterval stops tokens with made-up key IDs, or a provider
	// that is down, from turning every call into a request to the provider.
	minFetchInterval = 10 * time.Second

	// fetchTimeout applies even when the caller's client has no timeout,
	// because callers may be waiting on the fetch.
	fetchTimeout = 10 * time.Second

	// maxJWKSBytes guards against a misbehaving endpoint; real key sets are
	// a few KiB.
	maxJWKSBytes = 1 << 20
)

// RemoteKeySet is a KeySet fetched from an OpenID Connect provider's
// jwks_uri. Keys are cached and fetched again when a token names an unknown
// key ID (the provider has rotated) or once the refresh interval has passed;
// either way at most one fetch starts per ten seconds. There is no timer:
// fetches start only from Keys, so an idle server makes no requests and there
// is nothing to shut down.
type RemoteKeySet struct {
	url     string
	client  *http.Client
	refresh time.Duration
	now     func() time.Time // replaced in tests to avoid sleeping

	mu          sync.Mutex
	keys        []jose.JSONWebKey
	fetchedAt   time.Time     // of the last successful fetch
	attemptedAt time.Time     // of the last fetch started, successful or not
	lastErr     error         // of the last fetch, nil if it succeeded
	inflight    chan struct{} // closed when the running fetch ends; nil if none
}

// NewRemoteKeySet returns a key set for the JWKS at url. A nil client means
// http.DefaultClient and a non-positive refresh means DefaultRefresh. Nothing
// is fetched until the first call to Keys.
func NewRemoteKeySet(url string, client *http.Client, refresh time.Duration) *RemoteKeySet {
	if client == nil {
		client = http.DefaultClient
	}
	if refresh <= 0 {
		refresh = DefaultRefresh
	}
	return &RemoteKeySet{url: url, client: client, refresh: refresh, now: time.Now}
}

// Keys implements KeySet. It fails only while no fetch has ever succeeded;
// after that, fetch failures keep the previous keys, since a provider outage
// should not log out every user.
func (r *RemoteKeySet) Keys(ctx context.Context, kid string) ([]jose.JSONWebKey, error) {
	r.mu.Lock()
	now := r.now()
	stale := r.keys == nil || now.Sub(r.fetchedAt) >= r.refresh
	missing := kid != "" && len(selectKeys(r.keys, kid)) == 0
	allowed := r.inflight != nil || r.attemptedAt.IsZero() || now.Sub(r.attemptedAt) >= minFetchInterval
	if (stale || missing) && allowed {
		done := r.startFetchLocked(now)
		// A routine refresh must not add latency to callers whose key we
		// already hold; only those who cannot proceed without it wait.
		if r.keys == nil || missing {
			r.mu.Unlock()
			select {
			case <-done:
			case <-ctx.Done():
				return nil, fmt.Errorf("auth: waiting for JWKS: %w", ctx.Err())
			}
			r.mu.Lock()
		}
	}
	defer r.mu.Unlock()
	if r.keys == nil {
		return nil, fmt.Errorf("auth: no JWKS from %s yet: %w", r.url, r.lastErr)
	}
	return selectKeys(r.keys, kid), nil
}

// startFetchLocked joins the running fetch or starts one. The fetch runs on
// its own goroutine and context so that one caller giving up does not cancel
// it for the others waiting.
func (r *RemoteKeySet) startFetchLocked(now time.Time) chan struct{} {
	if r.inflight != nil {
		return r.inflight
	}
	done := make(chan struct{})
	r.inflight = done
	r.attemptedAt = now
	go func() {
		keys, err := r.download()
		r.mu.Lock()
		r.lastErr = err
		if err != nil {
			slog.Warn("auth: fetching JWKS failed; keeping previous keys", "url", r.url, "err", err)
		} else {
			r.keys, r.fetchedAt = keys, r.now()
		}
		r.inflight = nil
		r.mu.Unlock()
		close(done)
	}()
	return done
}

func (r *RemoteKeySet) download() ([]jose.JSONWebKey, error) {
	ctx, cancel := context.WithTimeout(context.Background(), fetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("auth: JWKS endpoint answered %s", resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, err
	}
	if len(body) > maxJWKSBytes {
		return nil, fmt.Errorf("auth: JWKS larger than %d bytes", maxJWKSBytes)
	}
	return parseJWKS(body)
}
