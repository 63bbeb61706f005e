package auth

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// maxTokenBytes bounds the base64 and JSON decoding an unauthenticated caller
// can make us do before any signature is checked. Real tokens are well under
// 2 KiB.
const maxTokenBytes = 8 << 10

// DefaultLeeway absorbs clock skew between the issuer and this server.
const DefaultLeeway = 30 * time.Second

// DefaultMaxLifetime is the longest a token may still have to live when it
// is presented: a stolen token is worth only that long.
const DefaultMaxLifetime = 24 * time.Hour

// VerifierConfig configures a Verifier.
type VerifierConfig struct {
	// Issuer must equal the token's "iss" exactly.
	Issuer string
	// Audience must be one of the token's "aud" values, so that a token
	// issued for another service sharing the same provider is refused.
	Audience string
	// Keys holds the issuer's public keys.
	Keys KeySet
	// Clock returns the current time; nil means time.Now.
	Clock func() time.Time
	// Leeway is the clock skew tolerated on "exp", "nbf" and "iat"; zero
	// means DefaultLeeway.
	Leeway time.Duration
	// MaxLifetime refuses a token whose "exp" is further ahead than this;
	// zero means DefaultMaxLifetime.
	MaxLifetime time.Duration
}

// Verifier checks bearer tokens from a single issuer for a single audience.
// It is safe for concurrent use.
type Verifier struct {
	issuer   string
	audience string
	keys     KeySet
	clock    func() time.Time
	leeway   time.Duration
	maxLife  time.Duration
	verified tokenCache
}

// NewVerifier returns a Verifier for cfg. Issuer, Audience and Keys are
// required: an empty issuer or audience would silently disable that check.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	switch {
	case cfg.Issuer == "":
		return nil, errors.New("auth: verifier needs an issuer")
	case cfg.Audience == "":
		return nil, errors.New("auth: verifier needs an audience")
	case cfg.Keys == nil:
		return nil, errors.New("auth: verifier needs a key set")
	case cfg.Leeway < 0:
		return nil, errors.New("auth: leeway must not be negative")
	case cfg.MaxLifetime < 0:
		return nil, errors.New("auth: maximum token lifetime must not be negative")
	}
	v := &Verifier{
		issuer:   cfg.Issuer,
		audience: cfg.Audience,
		keys:     cfg.Keys,
		clock:    cfg.Clock,
		leeway:   cfg.Leeway,
		maxLife:  cfg.MaxLifetime,
	}
	if v.maxLife == 0 {
		v.maxLife = DefaultMaxLifetime
	}
	if v.clock == nil {
		v.clock = time.Now
	}
	if v.leeway == 0 {
		v.leeway = DefaultLeeway
	}
	return v, nil
}

// Verify checks raw (a compact JWS, without the "Bearer " prefix) and returns
// the identity it proves. Errors that wrap ErrUnauthenticated mean the token
// was refused; any other error means the key set could not be consulted.
func (v *Verifier) Verify(ctx context.Context, raw string) (Identity, error) {
	if len(raw) > maxTokenBytes {
		return Identity{}, fmt.Errorf("%w: token longer than %d bytes", ErrUnauthenticated, maxTokenBytes)
	}
	// A token seen before skips parsing and its signature check while the
	// key that verified it is still trusted; its claims are checked every
	// time.
	sum := sha256.Sum256([]byte(raw))
	claims, err := v.verified.get(ctx, sum, v.keys)
	if errors.Is(err, errNotCached) {
		claims, err = v.verifySignature(ctx, sum, raw)
	}
	if err != nil {
		return Identity{}, err
	}
	// go-jose treats a missing exp as "never expires"; we want every token to.
	if claims.Expiry == nil {
		return Identity{}, fmt.Errorf("%w: token has no expiry", ErrUnauthenticated)
	}
	if claims.Subject == "" {
		return Identity{}, fmt.Errorf("%w: token has no subject", ErrUnauthenticated)
	}
	now := v.clock()
	expected := jwt.Expected{
		Issuer:      v.issuer,
		AnyAudience: jwt.Audience{v.audience},
		Time:        now,
	}
	if err := claims.ValidateWithLeeway(expected, v.leeway); err != nil {
		return Identity{}, fmt.Errorf("%w: %w", ErrUnauthenticated, err)
	}
	expiry := claims.Expiry.Time()
	if expiry.Sub(now) > v.maxLife+v.leeway {
		return Identity{}, fmt.Errorf("%w: token lives longer than the %s this server accepts", ErrUnauthenticated, v.maxLife)
	}
	return Identity{Issuer: claims.Issuer, Subject: claims.Subject, Expiry: expiry, Scopes: claims.scopes()}, nil
}

// claims are what careteam reads of a token: the registered claims, and
// the OAuth "scope" (space-separated, as SMART Backend Services tokens
// carry it).
type claims struct {
	jwt.Claims
	Scope *string `json:"scope,omitempty"`
}

// scopes lists the token's scopes; nil when it carries no scope claim.
func (c claims) scopes() []string {
	if c.Scope == nil {
		return nil
	}
	return append([]string{}, strings.Fields(*c.Scope)...)
}

// verifySignature parses raw and returns its claims if one of the trusted
// keys signed it, remembering them under sum.
func (v *Verifier) verifySignature(ctx context.Context, sum [sha256.Size]byte, raw string) (claims, error) {
	var claims claims
	tok, err := jwt.ParseSigned(raw, allowedAlgorithms)
	if err != nil {
		// The parser's own message may quote decoded header bytes; a fixed
		// message keeps attacker-chosen content out of logs.
		if errors.As(err, new(*jose.ErrUnexpectedSignatureAlgorithm)) {
			return claims, fmt.Errorf("%w: signature algorithm not allowed", ErrUnauthenticated)
		}
		return claims, fmt.Errorf("%w: malformed token", ErrUnauthenticated)
	}
	// ParseSigned accepts only the compact form, which has exactly one
	// signature and so exactly one header.
	header := tok.Headers[0]
	alg := jose.SignatureAlgorithm(header.Algorithm)
	keys, err := v.keys.Keys(ctx, header.KeyID)
	if err != nil {
		return claims, fmt.Errorf("auth: key set unavailable: %w", err)
	}
	for _, k := range keys {
		pub, ok := verificationKey(k, alg)
		if !ok {
			continue
		}
		err := tok.Claims(pub, &claims)
		if err == nil {
			if claims.Expiry != nil {
				v.verified.put(sum, cachedToken{claims: claims, kid: header.KeyID, alg: alg, key: pub}, v.clock())
			}
			return claims, nil
		}
		if !errors.Is(err, jose.ErrCryptoFailure) {
			// Not a wrong key but a bad token (critical headers, or claims
			// that are not valid JSON), so no other key will do better.
			return claims, fmt.Errorf("%w: malformed token", ErrUnauthenticated)
		}
	}
	return claims, fmt.Errorf("%w: signature does not match any trusted key", ErrUnauthenticated)
}
