package web_test

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/go-jose/go-jose/v4"
	"github.com/google/uuid"

	"github.com/careteam/careteam/devtoken"
	"github.com/careteam/careteam/server/internal/auth"
)

// identityProvider is an OpenID Connect provider on loopback for the
// sign-in test: discovery, an authorization endpoint that signs the
// browser in as one subject at once, a token endpoint that checks PKCE,
// and the JWKS careteamd verifies its tokens with.
type identityProvider struct {
	t       *testing.T
	srv     *httptest.Server
	signer  *devtoken.Signer
	subject string
	client  string

	mu        sync.Mutex
	codes     map[string]pendingCode
	exchanged int
}

type pendingCode struct{ challenge, redirect string }

func newIdentityProvider(t *testing.T, subject, client string) *identityProvider {
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	key := jose.JSONWebKey{Key: priv, KeyID: "idp", Algorithm: string(jose.EdDSA), Use: "sig"}
	signer, err := devtoken.NewSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	p := &identityProvider{t: t, signer: signer, subject: subject, client: client, codes: map[string]pendingCode{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Access-Control-Allow-Origin", "*")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer": p.issuer(), "authorization_endpoint": p.issuer() + "/authorize", "token_endpoint": p.issuer() + "/token",
			"jwks_uri": p.issuer() + "/jwks", "code_challenge_methods_supported": []string{"S256"},
		})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{key.Public()}})
	})
	mux.HandleFunc("GET /authorize", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if q.Get("response_type") != "code" || q.Get("client_id") != p.client || q.Get("code_challenge_method") != "S256" ||
			q.Get("code_challenge") == "" || !strings.Contains(q.Get("scope"), "openid") {
			http.Error(w, "bad authorization request", http.StatusBadRequest)
			return
		}
		code := uuid.NewString()
		p.mu.Lock()
		p.codes[code] = pendingCode{challenge: q.Get("code_challenge"), redirect: q.Get("redirect_uri")}
		p.mu.Unlock()
		back, _ := url.Parse(q.Get("redirect_uri"))
		back.RawQuery = url.Values{"code": {code}, "state": {q.Get("state")}}.Encode()
		http.Redirect(w, r, back.String(), http.StatusFound)
	})
	mux.HandleFunc("OPTIONS /token", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Access-Control-Allow-Origin", "*")
		w.Header().Set("Access-Control-Allow-Headers", "content-type")
	})
	mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Access-Control-Allow-Origin", "*")
		if err := r.ParseForm(); err != nil {
			http.Error(w, "bad form", http.StatusBadRequest)
			return
		}
		p.mu.Lock()
		pending, ok := p.codes[r.Form.Get("code")]
		delete(p.codes, r.Form.Get("code"))
		p.mu.Unlock()
		sum := sha256.Sum256([]byte(r.Form.Get("code_verifier")))
		if !ok || r.Form.Get("grant_type") != "authorization_code" || r.Form.Get("client_id") != p.client ||
			r.Form.Get("redirect_uri") != pending.redirect || base64.RawURLEncoding.EncodeToString(sum[:]) != pending.challenge {
			http.Error(w, `{"error":"invalid_grant"}`, http.StatusBadRequest)
			return
		}
		tok, err := p.mint(p.subject)
		if err != nil {
			http.Error(w, "signing", http.StatusInternalServerError)
			return
		}
		p.mu.Lock()
		p.exchanged++
		p.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": 3600})
	})
	p.srv = httptest.NewServer(mux)
	t.Cleanup(p.srv.Close)
	return p
}

func (p *identityProvider) issuer() string { return p.srv.URL }

func (p *identityProvider) mint(subject string) (string, error) {
	return p.signer.Sign(devtoken.Claims{Issuer: p.issuer(), Subject: subject, Audience: devtoken.Audience, TTL: time.Hour})
}

// TestSignInWithOpenIDConnect: careteamd trusting an identity provider
// (not dev mode) offers its sign-in; the browser goes there and back, the
// app exchanges the code with its PKCE verifier, and the coordinator's
// worklist opens; the token is kept in memory only, and the code leaves
// the address bar.
func TestSignInWithOpenIDConnect(t *testing.T) {
	chromium, _ := browserNeeds(t)
	idp := newIdentityProvider(t, "coord-cy", "careteam-web")
	cfg := parseConfig(t, "--data-dir", t.TempDir(), "--jwks-url", idp.issuer()+"/jwks", "--jwt-issuer", idp.issuer(),
		"--bootstrap-admin", "admin", "--oidc-client-id", "careteam-web")
	// The provider's keys, fetched as careteamd fetches them, checked at
	// the real time while the domain's clock moves (see startWorld).
	verifier, err := auth.NewVerifier(auth.VerifierConfig{Issuer: cfg.JWTIssuer, Audience: cfg.JWTAudience,
		Keys: auth.NewRemoteKeySet(cfg.JWKSURL, nil, 0), Clock: time.Now})
	if err != nil {
		t.Fatal(err)
	}
	w := runWorld(t, cfg, verifier)
	w.mint = idp.mint
	w.seed()
	b := openBrowser(t, chromium, artifacts(t, "oidc"))

	b.do("open the app",
		chromedp.Navigate("http://"+w.addr+"/"),
		chromedp.WaitVisible(chromedp.CSS(`main button.primary`)),
		b.shot("sign-in"))
	if dev := b.read("the dev sign-in", chromedp.Evaluate[string](`String(document.querySelector("#dev-subject") !== null)`)); dev != "false" {
		t.Error("the dev sign-in is offered outside dev mode")
	}
	b.do("sign in at the identity provider",
		chromedp.Click(chromedp.CSS(`main button.primary`)),
		chromedp.WaitVisible(chromedp.CSS(`.live[data-state="live"]`)),
		b.shot("signed-in"))
	if who := b.read("who is signed in", chromedp.Text(chromedp.CSS(`#who`))); who != "Cy Mendez · Referral coordinator" {
		t.Errorf("signed in as %q", who)
	}
	if loc := b.read("the address", chromedp.Location()); strings.Contains(loc, "code=") || strings.Contains(loc, "state=") {
		t.Errorf("the address bar keeps the code: %s", loc)
	}
	stored := b.read("what the browser stores", chromedp.Evaluate[string](`JSON.stringify([Object.keys(localStorage), Object.keys(sessionStorage)])`))
	if stored != "[[],[]]" {
		t.Errorf("the browser stores %s after sign-in", stored)
	}
	idp.mu.Lock()
	exchanged := idp.exchanged
	idp.mu.Unlock()
	if exchanged != 1 {
		t.Errorf("%d codes exchanged, want 1", exchanged)
	}
}
