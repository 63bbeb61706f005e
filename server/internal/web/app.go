package web

import (
	"embed"
	"encoding/json"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

// The web app's built files (web/, `npm run build`), committed and
// checked for drift like the generated Go code.
//
//go:embed all:dist
var dist embed.FS

// AppConfig is what the web app needs to know of the server to sign in.
type AppConfig struct {
	// Issuer is the OpenID Connect issuer (--jwt-issuer), whose discovery
	// document names the authorization and token endpoints.
	Issuer string
	// ClientID is the web app's public client at the issuer
	// (--oidc-client-id); empty: no OpenID Connect sign-in.
	ClientID string
	// Scopes are asked for besides openid.
	Scopes []string
	// AckWindow is how long a submitted referral may wait for
	// acknowledgement, in business time.
	AckWindow time.Duration
}

// appConfig serves the web app's configuration.
func appConfig(cfg AppConfig, devSignIn bool) http.Handler {
	type oidc struct {
		Issuer   string   `json:"issuer"`
		ClientID string   `json:"clientId"`
		Scopes   []string `json:"scopes"`
	}
	body := struct {
		OIDC             *oidc `json:"oidc,omitempty"`
		DevSignIn        bool  `json:"devSignIn"`
		AckWindowSeconds int64 `json:"ackWindowSeconds"`
	}{DevSignIn: devSignIn, AckWindowSeconds: int64(cfg.AckWindow / time.Second)}
	if cfg.ClientID != "" {
		body.OIDC = &oidc{Issuer: cfg.Issuer, ClientID: cfg.ClientID, Scopes: append([]string{"openid"}, cfg.Scopes...)}
	}
	b, _ := json.Marshal(body) // a struct of strings and numbers always encodes
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = w.Write(b)
	})
}

// appHandler serves the app's files; any other path without a file
// extension is one of the app's own pages, answered with index.html.
// Hashed assets are cached for good, the page itself never.
func appHandler() http.Handler {
	root, err := fs.Sub(dist, "dist")
	if err != nil {
		panic(err) // the embedded tree always has dist
	}
	files := http.FileServerFS(root)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		name := strings.TrimPrefix(path.Clean(r.URL.Path), "/")
		if _, err := fs.Stat(root, name); err != nil || name == "" || name == "." {
			if path.Ext(name) != "" {
				http.NotFound(w, r)
				return
			}
			w.Header().Set("Cache-Control", "no-cache")
			http.ServeFileFS(w, r, root, "index.html")
			return
		}
		if strings.HasPrefix(name, "assets/") {
			w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
		}
		files.ServeHTTP(w, r)
	})
}
