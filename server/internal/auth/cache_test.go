package auth

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// swappableKeys is a key set an operator rotates.
type swappableKeys struct{ set atomic.Pointer[StaticKeySet] }

func (s *swappableKeys) Keys(ctx context.Context, kid string) ([]jose.JSONWebKey, error) {
	return s.set.Load().Keys(ctx, kid)
}

// TestVerifiedTokensAreRememberedNotTrustedBlindly: a token verified once
// is still refused once it expires, and once the key that signed it has
// left the key set, though its signature is not checked again.
func TestVerifiedTokensAreRememberedNotTrustedBlindly(t *testing.T) {
	key := newEdKey(t, "k1")
	keys := &swappableKeys{}
	set := publicSet(key)
	keys.set.Store(&set)
	clk := &fakeClock{now: testNow}
	v := newTestVerifier(t, keys, clk.Now)
	raw := signRaw(t, jose.EdDSA, key.Key, "k1", goodClaims())
	for i := range 2 {
		if _, err := v.Verify(t.Context(), raw); err != nil {
			t.Fatalf("verification %d: %v", i+1, err)
		}
	}
	// A forged token sharing nothing with the cached one but its key id.
	if _, err := v.Verify(t.Context(), raw[:len(raw)-4]+"AAAA"); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("an altered signature: %v", err)
	}

	other := newEdKey(t, "k1") // the same key id, another key
	rotated := publicSet(other)
	keys.set.Store(&rotated)
	if _, err := v.Verify(t.Context(), raw); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("after its key was removed, the token gave %v", err)
	}
	keys.set.Store(&set)
	if _, err := v.Verify(t.Context(), raw); err != nil {
		t.Errorf("with its key back: %v", err)
	}
	clk.Advance(2 * time.Hour)
	if _, err := v.Verify(t.Context(), raw); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("after it expired, the token gave %v", err)
	}
}
