// Package devtoken is careteam's development identity: a signing key that
// careteamd makes in its data directory when no identity provider is
// configured, and the minting of tokens with it. It is for local use only;
// production deployments verify tokens of a real identity provider.
package devtoken

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Names of the files EnsureKey keeps in its directory.
const (
	devKeyFile  = "dev-signing-key.json"
	devJWKSFile = "dev-jwks.json"
)

// The issuer and audience of development tokens.
const (
	Issuer   = "careteam-dev"
	Audience = "careteam"
)

// DefaultDataDir is careteamd's data directory when none is configured:
// /var/lib/careteam for root, whose home the PostgreSQL user cannot enter,
// else $XDG_DATA_HOME/careteam or ~/.local/share/careteam.
func DefaultDataDir() (string, error) {
	if os.Geteuid() == 0 {
		return "/var/lib/careteam", nil
	}
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "careteam"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("devtoken: no home directory for the default data directory: %w", err)
	}
	return filepath.Join(home, ".local", "share", "careteam"), nil
}

// KeyDir is where the development key lives inside a data directory.
func KeyDir(dataDir string) string { return filepath.Join(dataDir, "dev-auth") }

// Mint returns a development token for subject, signed with the key in
// dataDir, valid for ttl.
func Mint(dataDir, subject string, ttl time.Duration) (string, error) {
	return MintToken(filepath.Join(KeyDir(dataDir), devKeyFile), Claims{
		Issuer: Issuer, Subject: subject, Audience: Audience, TTL: ttl,
	})
}

// Claims describes a token to mint. Empty strings are left out of the token
// rather than refused, so that tests can mint tokens a Verifier must reject.
type Claims struct {
	Issuer   string
	Subject  string
	Audience string
	// IssuedAt is the token's "iat"; zero means now. The expiry is
	// IssuedAt+TTL.
	IssuedAt time.Time
	// TTL is the token's lifetime and must be positive.
	TTL time.Duration
	// Scope is the OAuth "scope" claim, space-separated; empty: none.
	Scope string
}

// Signer mints tokens with one private key. The production issuer is an
// external identity provider; Signer serves dev mode and tests.
type Signer struct {
	signer jose.Signer
}

// NewSigner returns a Signer for an Ed25519, P-256 or RSA private key, signing
// with EdDSA, ES256 or RS256 respectively. The key's ID, if any, goes into
// each token's "kid" header.
func NewSigner(key jose.JSONWebKey) (*Signer, error) {
	var alg jose.SignatureAlgorithm
	switch k := key.Key.(type) {
	case ed25519.PrivateKey:
		alg = jose.EdDSA
	case *ecdsa.PrivateKey:
		if k.Curve != elliptic.P256() {
			return nil, errors.New("devtoken: ECDSA signing keys must use P-256")
		}
		alg = jose.ES256
	case *rsa.PrivateKey:
		if k.N.BitLen() < 2048 {
			return nil, errors.New("devtoken: RSA signing keys need at least 2048 bits")
		}
		alg = jose.RS256
	default:
		return nil, fmt.Errorf("devtoken: cannot sign with a %T key", key.Key)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return nil, fmt.Errorf("devtoken: %w", err)
	}
	return &Signer{signer: s}, nil
}

// Sign returns a compact JWT carrying c.
func (s *Signer) Sign(c Claims) (string, error) {
	if c.TTL <= 0 {
		return "", errors.New("devtoken: token TTL must be positive")
	}
	iat := c.IssuedAt
	if iat.IsZero() {
		iat = time.Now()
	}
	claims := jwt.Claims{
		Issuer:   c.Issuer,
		Subject:  c.Subject,
		IssuedAt: jwt.NewNumericDate(iat),
		Expiry:   jwt.NewNumericDate(iat.Add(c.TTL)),
	}
	if c.Audience != "" {
		claims.Audience = jwt.Audience{c.Audience}
	}
	b := jwt.Signed(s.signer).Claims(claims)
	if c.Scope != "" {
		b = b.Claims(map[string]any{"scope": c.Scope})
	}
	raw, err := b.Serialize()
	if err != nil {
		return "", fmt.Errorf("devtoken: signing token: %w", err)
	}
	return raw, nil
}

// MintToken signs c with the private JWK stored at keyPath, such as the one
// EnsureKey creates.
func MintToken(keyPath string, c Claims) (string, error) {
	key, err := loadSigningKey(keyPath)
	if err != nil {
		return "", err
	}
	s, err := NewSigner(key)
	if err != nil {
		return "", err
	}
	return s.Sign(c)
}

// EnsureKey gives dev mode an issuer of its own, so that a newcomer can
// run the server and call it without setting up an identity provider. It
// creates dir if needed, an Ed25519 private JWK in dir/dev-signing-key.json
// (mode 0600) if there is none, and the matching public JWKS in
// dir/dev-jwks.json (mode 0644), which a FileKeySet can serve. Existing keys are reused, so tokens
// minted earlier stay valid across restarts.
func EnsureKey(dir string) (keyPath, jwksPath string, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", fmt.Errorf("devtoken: dev key directory: %w", err)
	}
	keyPath = filepath.Join(dir, devKeyFile)
	jwksPath = filepath.Join(dir, devJWKSFile)

	key, err := loadSigningKey(keyPath)
	if errors.Is(err, fs.ErrNotExist) {
		key, err = createDevKey(keyPath)
	}
	if err != nil {
		return "", "", err
	}

	// The JWKS is always derived from the key, which repairs a missing or
	// stale file; rewriting it only on change keeps its mtime, and hence
	// any FileKeySet watching it, quiet.
	jwks, err := json.MarshalIndent(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{key.Public()}}, "", "  ")
	if err != nil {
		return "", "", fmt.Errorf("devtoken: encoding dev JWKS: %w", err)
	}
	if current, err := os.ReadFile(jwksPath); err == nil && bytes.Equal(current, jwks) {
		return keyPath, jwksPath, nil
	}
	if err := writeFileAtomic(jwksPath, jwks, 0o644); err != nil {
		return "", "", fmt.Errorf("devtoken: writing dev JWKS: %w", err)
	}
	return keyPath, jwksPath, nil
}

func createDevKey(keyPath string) (jose.JSONWebKey, error) {
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		return jose.JSONWebKey{}, fmt.Errorf("devtoken: generating dev key: %w", err)
	}
	key := jose.JSONWebKey{Key: priv, Use: "sig", Algorithm: string(jose.EdDSA)}
	// The RFC 7638 thumbprint makes a kid that is unique per key without
	// needing any state.
	thumb, err := key.Thumbprint(crypto.SHA256)
	if err != nil {
		return jose.JSONWebKey{}, fmt.Errorf("devtoken: dev key thumbprint: %w", err)
	}
	key.KeyID = base64.RawURLEncoding.EncodeToString(thumb)
	data, err := json.MarshalIndent(key, "", "  ")
	if err != nil {
		return jose.JSONWebKey{}, fmt.Errorf("devtoken: encoding dev key: %w", err)
	}

	// Written in full under a temporary name (CreateTemp uses mode 0600),
	// then linked into place: a link never replaces an existing file, so if
	// another process created a key meanwhile, both end up using that one.
	tmp, err := writeTemp(filepath.Dir(keyPath), data)
	if err != nil {
		return jose.JSONWebKey{}, fmt.Errorf("devtoken: writing dev key: %w", err)
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, keyPath); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return loadSigningKey(keyPath)
		}
		return jose.JSONWebKey{}, fmt.Errorf("devtoken: writing dev key: %w", err)
	}
	return key, nil
}

func loadSigningKey(path string) (jose.JSONWebKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return jose.JSONWebKey{}, fmt.Errorf("devtoken: signing key: %w", err)
	}
	var key jose.JSONWebKey
	if err := key.UnmarshalJSON(data); err != nil {
		return jose.JSONWebKey{}, fmt.Errorf("devtoken: signing key %s: %w", path, err)
	}
	if key.IsPublic() || !key.Valid() {
		return jose.JSONWebKey{}, fmt.Errorf("devtoken: signing key %s holds no private key", path)
	}
	return key, nil
}

// writeFileAtomic replaces path so that readers, such as a FileKeySet
// polling it, see either the old or the new content and never a torn write.
func writeFileAtomic(path string, data []byte, perm fs.FileMode) error {
	tmp, err := writeTemp(filepath.Dir(path), data)
	if err != nil {
		return err
	}
	if err := os.Chmod(tmp, perm); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// writeTemp writes data to a new mode-0600 file in dir and returns its name.
func writeTemp(dir string, data []byte) (string, error) {
	f, err := os.CreateTemp(dir, ".devtoken-*.tmp")
	if err != nil {
		return "", err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(f.Name())
		return "", err
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}
