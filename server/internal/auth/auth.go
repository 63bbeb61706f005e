// Package auth establishes who a caller is from the bearer JWT that
// accompanies every careteam call.
//
// It exists so that signature, algorithm and claim checks live in one audited
// place rather than in each handler. It deliberately answers only "which
// issuer vouches for which subject": mapping that pair to a physician or a
// massage therapist, and deciding what they may see, belongs to the server's
// directory, so that a change of role never requires a new token.
package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Identity is a caller proven by a verified token. Subjects are only unique
// per issuer, so both halves are needed to look the caller up.
type Identity struct {
	Issuer  string
	Subject string
	// Expiry is when the proof runs out: a stream it opened ends then.
	Expiry time.Time
	// Scopes are the token's OAuth scopes (such as system/*.read); nil
	// when it carries none.
	Scopes []string
}

// ErrUnauthenticated is wrapped by every error that means the presented token
// does not prove an identity. Callers map it to codes.Unauthenticated. Error
// messages never include the token, so they are safe to log and return.
var ErrUnauthenticated = errors.New("auth: unauthenticated")

// KeySet supplies the public keys a token's signature may be checked against.
type KeySet interface {
	// Keys returns the keys whose key ID is kid, or every key when kid is
	// empty. An error means the set could not be consulted at all (the token
	// may be fine), as opposed to an empty result, which means no key fits.
	// Callers must not modify the returned slice.
	Keys(ctx context.Context, kid string) ([]jose.JSONWebKey, error)
}

// StaticKeySet is a KeySet whose keys never change, for tests and for
// deployments that pin keys in configuration.
type StaticKeySet []jose.JSONWebKey

// Keys implements KeySet.
func (s StaticKeySet) Keys(_ context.Context, kid string) ([]jose.JSONWebKey, error) {
	return selectKeys(s, kid), nil
}

func selectKeys(keys []jose.JSONWebKey, kid string) []jose.JSONWebKey {
	if kid == "" {
		return keys
	}
	var out []jose.JSONWebKey
	for _, k := range keys {
		if k.KeyID == kid {
			out = append(out, k)
		}
	}
	return out
}

// allowedAlgorithms is the whole list of signature algorithms we accept.
// Only asymmetric ones: with an HMAC algorithm anyone holding the (public)
// verification key could mint tokens, and "none" needs no key at all.
var allowedAlgorithms = []jose.SignatureAlgorithm{jose.EdDSA, jose.ES256, jose.RS256}

// minRSABits refuses RSA keys too short to be trusted for signatures.
const minRSABits = 2048

// verificationKey returns the public key of k if it may verify signatures
// made with alg. Checking the key type here, rather than leaving it to the
// signature code, keeps a key published for one algorithm from ever being
// interpreted under another.
func verificationKey(k jose.JSONWebKey, alg jose.SignatureAlgorithm) (any, bool) {
	if k.Use != "" && k.Use != "sig" {
		return nil, false
	}
	if k.Algorithm != "" && k.Algorithm != string(alg) {
		return nil, false
	}
	// A JWKS should hold only public keys, but a private one published by
	// mistake still carries a usable public half.
	switch key := k.Public().Key.(type) {
	case ed25519.PublicKey:
		return key, alg == jose.EdDSA && len(key) == ed25519.PublicKeySize
	case *ecdsa.PublicKey:
		return key, alg == jose.ES256 && key.Curve == elliptic.P256()
	case *rsa.PublicKey:
		return key, alg == jose.RS256 && key.N.BitLen() >= minRSABits
	default:
		return nil, false
	}
}

// parseJWKS decodes a JSON Web Key Set, keeping only keys that can verify
// one of the allowed algorithms. Keys are decoded one at a time because a
// provider may publish key types go-jose cannot parse (encryption keys, new
// algorithms) next to the ones we need, and those must not poison the set.
func parseJWKS(data []byte) ([]jose.JSONWebKey, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("auth: decoding JWKS: %w", err)
	}
	var keys []jose.JSONWebKey
	for _, raw := range set.Keys {
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(raw); err != nil {
			continue
		}
		for _, alg := range allowedAlgorithms {
			if _, ok := verificationKey(k, alg); ok {
				keys = append(keys, k.Public())
				break
			}
		}
	}
	if len(keys) == 0 {
		return nil, errors.New("auth: JWKS has no usable signature verification keys")
	}
	return keys, nil
}
