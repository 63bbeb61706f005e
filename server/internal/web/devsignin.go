package web

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"time"
)

// DevSubject is someone the dev sign-in offers.
type DevSubject struct {
	Subject      string `json:"subject"`
	DisplayName  string `json:"displayName"`
	Role         string `json:"role"`
	Organization string `json:"organization"`
}

// DevSignIn lets a developer sign in to the web app as anyone in the
// directory, with a token of the dev key: only in dev mode (where anyone
// who can read the data directory can mint any token anyway), and only
// from this machine. The app wires it.
type DevSignIn struct {
	// Subjects lists who may be signed in as: the bootstrap
	// administrator and the directory's active entries.
	Subjects func(ctx context.Context) ([]DevSubject, error)
	// Mint returns a token for subject and when it expires.
	Mint func(subject string) (string, time.Time, error)
}

// ServeHTTP answers GET /dev/subjects and POST /dev/token.
func (d *DevSignIn) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		http.Error(w, "the dev sign-in answers this machine only", http.StatusForbidden)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/dev/subjects":
		subjects, err := d.Subjects(r.Context())
		if err != nil {
			http.Error(w, "the directory is unavailable", http.StatusServiceUnavailable)
			return
		}
		writeJSON(w, subjects)
	case r.Method == http.MethodPost && r.URL.Path == "/dev/token":
		// A JSON body only: a form a foreign page could post is refused.
		if r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "send application/json", http.StatusUnsupportedMediaType)
			return
		}
		var req struct {
			Subject string `json:"subject"`
		}
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&req); err != nil || req.Subject == "" {
			http.Error(w, "send {\"subject\": \"...\"}", http.StatusBadRequest)
			return
		}
		token, expires, err := d.Mint(req.Subject)
		if err != nil {
			http.Error(w, "no token could be minted", http.StatusInternalServerError)
			return
		}
		writeJSON(w, map[string]any{"token": token, "expireTime": expires.UTC().Format(time.RFC3339)})
	default:
		http.NotFound(w, r)
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
