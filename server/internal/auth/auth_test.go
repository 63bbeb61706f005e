package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"github.com/careteam/careteam/devtoken"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

const (
	testIssuer   = "https://id.careteam.test"
	testAudience = "careteam-api"
)

var testNow = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

type testKeys struct {
	ed, ec, rsa jose.JSONWebKey // private, with kids "ed", "ec", "rsa"
}

// fixtureKeys is shared because RSA key generation is slow under -race.
var fixtureKeys = sync.OnceValue(func() testKeys {
	_, edPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	ecPriv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	rsaPriv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return testKeys{
		ed:  jose.JSONWebKey{Key: edPriv, KeyID: "ed"},
		ec:  jose.JSONWebKey{Key: ecPriv, KeyID: "ec"},
		rsa: jose.JSONWebKey{Key: rsaPriv, KeyID: "rsa"},
	}
})

func newEdKey(t testing.TB, kid string) jose.JSONWebKey {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return jose.JSONWebKey{Key: priv, KeyID: kid}
}

func publicSet(keys ...jose.JSONWebKey) StaticKeySet {
	var set StaticKeySet
	for _, k := range keys {
		set = append(set, k.Public())
	}
	return set
}

func newTestVerifier(t testing.TB, keys KeySet, now func() time.Time) *Verifier {
	t.Helper()
	v, err := NewVerifier(VerifierConfig{Issuer: testIssuer, Audience: testAudience, Keys: keys, Clock: now})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func goodClaims() jwt.Claims {
	return jwt.Claims{
		Issuer:   testIssuer,
		Subject:  "dr-ada",
		Audience: jwt.Audience{testAudience},
		IssuedAt: jwt.NewNumericDate(testNow.Add(-time.Minute)),
		Expiry:   jwt.NewNumericDate(testNow.Add(time.Hour)),
	}
}

// signRaw signs arbitrary claims with any key go-jose accepts, including the
// ones the Verifier must refuse.
func signRaw(t testing.TB, alg jose.SignatureAlgorithm, key any, kid string, claims any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if kid != "" {
		opts = opts.WithHeader("kid", kid)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jwt.Signed(s).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func sign(t testing.TB, key jose.JSONWebKey, c devtoken.Claims) string {
	t.Helper()
	s, err := devtoken.NewSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := s.Sign(c)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func b64(v any) string {
	data, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(data)
}

// checkRefused asserts the error is an authentication failure that does not
// echo the token.
func checkRefused(t testing.TB, raw string, err error) {
	t.Helper()
	if err == nil {
		t.Fatal("token verified, want refusal")
	}
	if !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("error %q does not wrap ErrUnauthenticated", err)
	}
	if raw != "" && strings.Contains(err.Error(), raw) {
		t.Fatalf("error message contains the token: %q", err)
	}
}

func TestVerify(t *testing.T) {
	t.Parallel()
	k := fixtureKeys()
	v := newTestVerifier(t, publicSet(k.ed, k.ec, k.rsa), func() time.Time { return testNow })
	valid := devtoken.Claims{Issuer: testIssuer, Subject: "dr-ada", Audience: testAudience, IssuedAt: testNow.Add(-time.Minute), TTL: time.Hour}

	withClaims := func(edit func(*jwt.Claims)) string {
		c := goodClaims()
		edit(&c)
		return signRaw(t, jose.EdDSA, k.ed, "ed", c)
	}
	noKid := k.ed
	noKid.KeyID = ""
	rsaPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: must(x509.MarshalPKIXPublicKey(k.rsa.Public().Key))})
	edPublic := []byte(k.ed.Public().Key.(ed25519.PublicKey))
	oversizedClaims := map[string]any{
		"iss": testIssuer, "sub": "dr-ada", "aud": testAudience,
		"exp": testNow.Add(time.Hour).Unix(), "pad": strings.Repeat("x", 9000),
	}
	noneToken := b64(map[string]string{"alg": "none", "typ": "JWT"}) + "." + b64(goodClaims()) + "."
	jsonSigner := must(jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: k.ed}, nil))
	notJSON := must(must(jsonSigner.Sign([]byte("not json"))).CompactSerialize())

	tests := []struct {
		name   string
		token  string
		reason string // expected in the error; empty means the token must verify
	}{
		{"valid EdDSA", sign(t, k.ed, valid), ""},
		{"valid ES256", sign(t, k.ec, valid), ""},
		{"valid RS256", sign(t, k.rsa, valid), ""},
		{"valid without kid tries every key", sign(t, noKid, valid), ""},
		{"audience among several", withClaims(func(c *jwt.Claims) { c.Audience = jwt.Audience{"other", testAudience} }), ""},
		{"expired within leeway", withClaims(func(c *jwt.Claims) { c.Expiry = jwt.NewNumericDate(testNow.Add(-10 * time.Second)) }), ""},

		{"expired", withClaims(func(c *jwt.Claims) { c.Expiry = jwt.NewNumericDate(testNow.Add(-time.Minute)) }), "expired"},
		{"not yet valid", withClaims(func(c *jwt.Claims) { c.NotBefore = jwt.NewNumericDate(testNow.Add(5 * time.Minute)) }), "not valid yet"},
		{"issued in the future", withClaims(func(c *jwt.Claims) { c.IssuedAt = jwt.NewNumericDate(testNow.Add(5 * time.Minute)) }), "issued in the future"},
		{"wrong issuer", withClaims(func(c *jwt.Claims) { c.Issuer = "https://evil.test" }), "issuer"},
		{"issuer with trailing slash", withClaims(func(c *jwt.Claims) { c.Issuer = testIssuer + "/" }), "issuer"},
		{"no issuer", withClaims(func(c *jwt.Claims) { c.Issuer = "" }), "issuer"},
		{"wrong audience", withClaims(func(c *jwt.Claims) { c.Audience = jwt.Audience{"billing-api"} }), "audience"},
		{"no audience", withClaims(func(c *jwt.Claims) { c.Audience = nil }), "audience"},
		{"missing exp", withClaims(func(c *jwt.Claims) { c.Expiry = nil }), "no expiry"},
		{"missing sub", withClaims(func(c *jwt.Claims) { c.Subject = "" }), "no subject"},
		{"unknown kid", signRaw(t, jose.EdDSA, newEdKey(t, "ghost"), "", goodClaims()), "does not match"},
		{"wrong key with known kid", signRaw(t, jose.EdDSA, newEdKey(t, "ed"), "", goodClaims()), "does not match"},
		{"wrong key without kid", signRaw(t, jose.EdDSA, newEdKey(t, ""), "", goodClaims()), "does not match"},
		{"ES256 under an Ed25519 kid", signRaw(t, jose.ES256, k.ec.Key, "ed", goodClaims()), "does not match"},
		{"HS256 keyed with RSA public PEM", signRaw(t, jose.HS256, rsaPEM, "rsa", goodClaims()), "algorithm not allowed"},
		{"HS256 keyed with Ed25519 public key", signRaw(t, jose.HS256, edPublic, "ed", goodClaims()), "algorithm not allowed"},
		{"RS384", signRaw(t, jose.RS384, k.rsa.Key, "rsa", goodClaims()), "algorithm not allowed"},
		{"alg none", noneToken, "algorithm not allowed"},
		{"alg none on a real token's payload", b64(map[string]string{"alg": "none"}) + "." + strings.Split(sign(t, k.ed, valid), ".")[1] + ".", "algorithm not allowed"},
		{"empty", "", "malformed"},
		{"garbage", "not a token", "malformed"},
		{"three garbage parts", "a.b.c", "malformed"},
		{"signed payload that is not JSON", notJSON, "malformed"},
		{"oversized", signRaw(t, jose.EdDSA, k.ed, "", oversizedClaims), "longer than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			id, err := v.Verify(t.Context(), tt.token)
			if tt.reason != "" {
				checkRefused(t, tt.token, err)
				if !strings.Contains(err.Error(), tt.reason) {
					t.Fatalf("refused for %q, want a reason containing %q", err, tt.reason)
				}
				return
			}
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if want := (Identity{Issuer: testIssuer, Subject: "dr-ada"}); id.Issuer != want.Issuer || id.Subject != want.Subject || id.Expiry.IsZero() {
				t.Fatalf("identity = %+v, want %+v", id, want)
			}
		})
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestNewVerifierRefusesIncompleteConfig(t *testing.T) {
	t.Parallel()
	keys := publicSet(newEdKey(t, "k"))
	tests := map[string]VerifierConfig{
		"no issuer":       {Audience: testAudience, Keys: keys},
		"no audience":     {Issuer: testIssuer, Keys: keys},
		"no keys":         {Issuer: testIssuer, Audience: testAudience},
		"negative leeway": {Issuer: testIssuer, Audience: testAudience, Keys: keys, Leeway: -time.Second},
	}
	for name, cfg := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if _, err := NewVerifier(cfg); err == nil {
				t.Fatal("NewVerifier accepted an incomplete config")
			}
		})
	}
}

type failingKeySet struct{}

func (failingKeySet) Keys(context.Context, string) ([]jose.JSONWebKey, error) {
	return nil, errors.New("provider down")
}

func TestKeySetFailureIsNotUnauthenticated(t *testing.T) {
	t.Parallel()
	key := newEdKey(t, "k")
	v := newTestVerifier(t, failingKeySet{}, func() time.Time { return testNow })
	_, err := v.Verify(t.Context(), signRaw(t, jose.EdDSA, key, "", goodClaims()))
	if err == nil || errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("err = %v, want a key set error that does not blame the token", err)
	}
}

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func jwksJSON(t testing.TB, keys ...jose.JSONWebKey) []byte {
	t.Helper()
	data, err := json.Marshal(jose.JSONWebKeySet{Keys: publicSet(keys...)})
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestFileKeySetRotation(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "jwks.json")
	oldKey, newKey := newEdKey(t, "old"), newEdKey(t, "new")
	mtime := time.Date(2029, 6, 1, 0, 0, 0, 0, time.UTC)
	replace := func(data []byte) {
		t.Helper()
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		mtime = mtime.Add(time.Hour)
		if err := os.Chtimes(path, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	replace(jwksJSON(t, oldKey))

	ks, err := NewFileKeySet(path)
	if err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{now: testNow}
	ks.now = clock.Now
	v := newTestVerifier(t, ks, func() time.Time { return testNow })
	oldToken := signRaw(t, jose.EdDSA, oldKey, "", goodClaims())
	newToken := signRaw(t, jose.EdDSA, newKey, "", goodClaims())
	accepts := func(raw string) bool {
		_, err := v.Verify(t.Context(), raw)
		return err == nil
	}

	if !accepts(oldToken) || accepts(newToken) {
		t.Fatal("initial key set wrong")
	}

	replace(jwksJSON(t, newKey))
	if !accepts(oldToken) {
		t.Fatal("file re-read before the check interval passed")
	}
	clock.Advance(fileCheckInterval)
	if accepts(oldToken) || !accepts(newToken) {
		t.Fatal("rotated key not picked up")
	}

	replace([]byte(`{"keys": [`))
	clock.Advance(fileCheckInterval)
	if !accepts(newToken) {
		t.Fatal("malformed file replaced the last good keys")
	}

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	clock.Advance(fileCheckInterval)
	if !accepts(newToken) {
		t.Fatal("missing file dropped the last good keys")
	}

	replace(jwksJSON(t, oldKey))
	clock.Advance(fileCheckInterval)
	if !accepts(oldToken) {
		t.Fatal("restored file not picked up")
	}
}

func TestNewFileKeySetRefusesBadFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	files := map[string]string{
		"malformed.json": `{"keys": [`,
		"empty.json":     `{"keys": []}`,
		"symmetric.json": `{"keys": [{"kty": "oct", "k": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"}]}`,
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"malformed.json", "empty.json", "symmetric.json", "missing.json"} {
		if _, err := NewFileKeySet(filepath.Join(dir, name)); err == nil {
			t.Errorf("NewFileKeySet(%s) succeeded", name)
		}
	}
}

// jwksServer serves a JWKS that the test can swap or break.
type jwksServer struct {
	*httptest.Server
	hits atomic.Int32

	mu     sync.Mutex
	body   []byte
	status int
}

func newJWKSServer(t testing.TB, body []byte) *jwksServer {
	s := &jwksServer{body: body, status: http.StatusOK}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		s.hits.Add(1)
		s.mu.Lock()
		defer s.mu.Unlock()
		w.WriteHeader(s.status)
		w.Write(s.body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) set(status int, body []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status, s.body = status, body
}

func TestRemoteKeySet(t *testing.T) {
	t.Parallel()
	keyA, keyB := newEdKey(t, "a"), newEdKey(t, "b")
	srv := newJWKSServer(t, jwksJSON(t, keyA))
	clock := &fakeClock{now: testNow}
	ks := NewRemoteKeySet(srv.URL, srv.Client(), time.Hour)
	ks.now = clock.Now
	v := newTestVerifier(t, ks, func() time.Time { return testNow })
	tokenA := signRaw(t, jose.EdDSA, keyA, "", goodClaims())
	tokenB := signRaw(t, jose.EdDSA, keyB, "", goodClaims())
	ghost := signRaw(t, jose.EdDSA, newEdKey(t, "ghost"), "", goodClaims())
	// wantHits < 0: the fetches are not counted (one may be under way).
	verify := func(raw string, wantOK bool, wantHits int32) {
		t.Helper()
		_, err := v.Verify(t.Context(), raw)
		if wantOK && err != nil {
			t.Fatalf("Verify: %v", err)
		}
		if !wantOK {
			checkRefused(t, raw, err)
		}
		if got := srv.hits.Load(); wantHits >= 0 && got != wantHits {
			t.Fatalf("JWKS fetched %d times, want %d", got, wantHits)
		}
	}

	verify(tokenA, true, 1)
	verify(tokenA, true, 1) // cached

	srv.set(http.StatusOK, jwksJSON(t, keyA, keyB))
	verify(tokenB, false, 1) // unknown kid, but the last fetch was too recent
	clock.Advance(minFetchInterval)
	verify(tokenB, true, 2) // unknown kid triggers a refetch
	verify(ghost, false, 2) // rate-limited again

	srv.set(http.StatusInternalServerError, []byte("oops"))
	clock.Advance(minFetchInterval)
	verify(ghost, false, 3)  // refetch fails
	verify(tokenA, true, 3)  // old keys kept
	verify(tokenB, true, 3)  //
	verify(ghost, false, 3)  // failure counts against the rate limit
	clock.Advance(time.Hour) // past the refresh interval
	srv.set(http.StatusOK, jwksJSON(t, keyB))
	// The refresh runs in the background, and may have reached the server
	// already; the old keys serve meanwhile.
	verify(tokenA, true, -1)
	ks.mu.Lock()
	done := ks.inflight
	ks.mu.Unlock()
	if done != nil {
		<-done
	}
	verify(tokenA, false, 4) // key A was retired by the refresh
	verify(tokenB, true, 4)
}

func TestRemoteKeySetWithoutKeysIsUnavailable(t *testing.T) {
	t.Parallel()
	srv := newJWKSServer(t, nil)
	srv.set(http.StatusInternalServerError, nil)
	ks := NewRemoteKeySet(srv.URL, srv.Client(), 0)
	v := newTestVerifier(t, ks, func() time.Time { return testNow })
	_, err := v.Verify(t.Context(), signRaw(t, jose.EdDSA, newEdKey(t, "a"), "", goodClaims()))
	if err == nil || errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("err = %v, want a key set error that does not blame the token", err)
	}
}

func TestDevTokenVerifies(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "dev")
	keyPath, jwksPath, err := devtoken.EnsureKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]os.FileMode{keyPath: 0o600, jwksPath: 0o644} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s has mode %v, want %v", filepath.Base(path), got, want)
		}
	}
	keyBefore := must(os.ReadFile(keyPath))
	jwksBefore := must(os.ReadFile(jwksPath))
	if strings.Contains(string(jwksBefore), `"d"`) {
		t.Fatal("JWKS contains private key material")
	}

	keyPath2, jwksPath2, err := devtoken.EnsureKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	if keyPath2 != keyPath || jwksPath2 != jwksPath {
		t.Fatal("second call returned different paths")
	}
	if string(must(os.ReadFile(keyPath))) != string(keyBefore) || string(must(os.ReadFile(jwksPath))) != string(jwksBefore) {
		t.Fatal("second call changed the key files")
	}

	// A lost JWKS is rebuilt from the existing key rather than rotating it.
	if err := os.Remove(jwksPath); err != nil {
		t.Fatal(err)
	}
	if _, _, err := devtoken.EnsureKey(dir); err != nil {
		t.Fatal(err)
	}
	if string(must(os.ReadFile(jwksPath))) != string(jwksBefore) {
		t.Fatal("rebuilt JWKS differs")
	}

	raw, err := devtoken.MintToken(keyPath, devtoken.Claims{Issuer: testIssuer, Subject: "mt-bo", Audience: testAudience, IssuedAt: testNow, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ks, err := NewFileKeySet(jwksPath)
	if err != nil {
		t.Fatal(err)
	}
	id, err := newTestVerifier(t, ks, func() time.Time { return testNow }).Verify(t.Context(), raw)
	if err != nil {
		t.Fatalf("minted token does not verify: %v", err)
	}
	if id.Issuer != testIssuer || id.Subject != "mt-bo" || !id.Expiry.Equal(testNow.Add(time.Hour)) {
		t.Fatalf("identity = %+v", id)
	}

	if _, err := devtoken.MintToken(keyPath, devtoken.Claims{Issuer: testIssuer, Subject: "mt-bo", Audience: testAudience}); err == nil {
		t.Fatal("MintToken accepted a zero TTL")
	}
	if _, err := devtoken.MintToken(jwksPath, devtoken.Claims{Issuer: testIssuer, Subject: "mt-bo", Audience: testAudience, TTL: time.Hour}); err == nil {
		t.Fatal("MintToken signed with a public key file")
	}
}

func FuzzVerify(f *testing.F) {
	key := newEdKey(f, "k")
	v := newTestVerifier(f, publicSet(key), func() time.Time { return testNow })
	expired := goodClaims()
	expired.Expiry = jwt.NewNumericDate(testNow.Add(-time.Hour))
	// Well-formed seeds steer the fuzzer into the signature and claim code;
	// none of them may verify.
	f.Add(signRaw(f, jose.EdDSA, key, "", expired))
	f.Add(signRaw(f, jose.EdDSA, newEdKey(f, "k"), "", goodClaims()))
	f.Add(signRaw(f, jose.HS256, []byte(key.Public().Key.(ed25519.PublicKey)), "k", goodClaims()))
	f.Add(b64(map[string]string{"alg": "none"}) + "." + b64(goodClaims()) + ".")
	f.Add("")
	f.Add("..")
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, raw string) {
		id, err := v.Verify(context.Background(), raw)
		if err == nil {
			t.Fatalf("random input verified as %+v", id)
		}
		if !errors.Is(err, ErrUnauthenticated) {
			t.Fatalf("error %q does not wrap ErrUnauthenticated", err)
		}
		// Only token-shaped inputs: short strings can match the message by chance.
		if strings.Count(raw, ".") == 2 && len(raw) > 16 && strings.Contains(err.Error(), raw) {
			t.Fatalf("error message contains the token: %q", err)
		}
	})
}

func TestMaxLifetime(t *testing.T) {
	key := newEdKey(t, "k1")
	now := func() time.Time { return testNow }
	v := newTestVerifier(t, publicSet(key), now)
	for left, ok := range map[time.Duration]bool{
		time.Hour:          true,
		DefaultMaxLifetime: true,
		DefaultMaxLifetime + DefaultLeeway + time.Second: false,
		3000 * 24 * time.Hour:                            false,
	} {
		c := goodClaims()
		c.Expiry = jwt.NewNumericDate(testNow.Add(left))
		id, err := v.Verify(t.Context(), signRaw(t, jose.EdDSA, key.Key, "k1", c))
		if (err == nil) != ok {
			t.Errorf("a token with %v left: %v, want accepted %v", left, err, ok)
		}
		if err == nil && !id.Expiry.Equal(testNow.Add(left)) {
			t.Errorf("expiry %v, want %v", id.Expiry, testNow.Add(left))
		}
	}
	// A stricter bound is honoured.
	strict, err := NewVerifier(VerifierConfig{Issuer: testIssuer, Audience: testAudience, Keys: publicSet(key), Clock: now, MaxLifetime: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	c := goodClaims()
	c.Expiry = jwt.NewNumericDate(testNow.Add(2 * time.Hour))
	if _, err := strict.Verify(t.Context(), signRaw(t, jose.EdDSA, key.Key, "k1", c)); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("two hours left under a one-hour bound: %v", err)
	}
}
