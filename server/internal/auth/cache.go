package auth

import (
	"context"
	"crypto"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// maxCachedTokens bounds the verified-token cache. Only tokens whose
// signature verified enter it; when full it drops the expired ones, and
// if that is not enough, all.
const maxCachedTokens = 16 << 10

// cachedToken is a token whose signature verified, and the key that
// verified it.
type cachedToken struct {
	claims claims
	kid    string
	alg    jose.SignatureAlgorithm
	key    crypto.PublicKey
}

// tokenCache maps the SHA-256 of a token's bytes to its verified claims.
type tokenCache struct {
	mu     sync.Mutex
	tokens map[[sha256.Size]byte]cachedToken
}

var errNotCached = errors.New("auth: token not cached")

// get returns the claims of the token whose hash is sum if its signature
// verified before with a key that keys still hold; errNotCached if not.
func (c *tokenCache) get(ctx context.Context, sum [sha256.Size]byte, keys KeySet) (claims, error) {
	c.mu.Lock()
	t, ok := c.tokens[sum]
	c.mu.Unlock()
	if !ok {
		return claims{}, errNotCached
	}
	trusted, err := keys.Keys(ctx, t.kid)
	if err != nil {
		return claims{}, fmt.Errorf("auth: key set unavailable: %w", err)
	}
	for _, k := range trusted {
		pub, ok := verificationKey(k, t.alg)
		if same, comparable := pub.(interface{ Equal(crypto.PublicKey) bool }); ok && comparable && same.Equal(t.key) {
			return t.claims, nil
		}
	}
	return claims{}, errNotCached
}

func (c *tokenCache) put(sum [sha256.Size]byte, t cachedToken, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tokens == nil {
		c.tokens = map[[sha256.Size]byte]cachedToken{}
	}
	if len(c.tokens) >= maxCachedTokens {
		for k, old := range c.tokens {
			if !old.claims.Expiry.Time().After(now) {
				delete(c.tokens, k)
			}
		}
		if len(c.tokens) >= maxCachedTokens {
			clear(c.tokens)
		}
	}
	c.tokens[sum] = t
}
