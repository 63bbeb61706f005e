// Package web is careteamd's HTTP front door. One listener speaks HTTP/1.1
// and HTTP/2 (over TLS, or in plaintext on loopback) and serves:
//
//   - native gRPC, gRPC-web and the Connect protocol (binary and JSON),
//     all transcoded onto the one gRPC server by connectrpc.com/vanguard,
//     so every call of every protocol goes through the same
//     authentication, policy, limits, audit and logging;
//   - the web app, its built files embedded in the binary, at "/";
//   - the OpenAPI description of the JSON API at /openapi.json;
//   - in dev mode on loopback, the dev sign-in (devsignin.go).
//
// Every answer carries the security headers; CORS is off unless exact
// origins are configured; the API takes bearer tokens only, never cookies,
// so there is no cross-site request to forge.
package web

import (
	"context"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"connectrpc.com/vanguard/vanguardgrpc"
	"github.com/rs/cors"
	"google.golang.org/grpc"

	"github.com/careteam/careteam/server/internal/fhir"
	"github.com/careteam/careteam/server/internal/fhirrest"
)

// Config is what the front door needs.
type Config struct {
	// GRPC is the server every protocol reaches.
	GRPC *grpc.Server
	// CORSOrigins are the exact origins (scheme://host[:port]) that
	// browsers may call the API from; empty: none but the app's own.
	CORSOrigins []string
	// PublicURL is where clients reach careteamd (empty: where each
	// request came to), for the FHIR endpoint's links; FHIRNaming names
	// careteam's code systems and extensions there.
	PublicURL  string
	FHIRNaming fhir.Naming
	// MaxConnectionAge closes a connection this old: HTTP/2 connections
	// get a GOAWAY at their next answer and are cut ConnectionAgeGrace
	// later; zero: never.
	MaxConnectionAge   time.Duration
	ConnectionAgeGrace time.Duration
	// MaxHeaderBytes bounds a request's header list.
	MaxHeaderBytes int
	// App configures the web app: the identity provider it signs in with.
	App AppConfig
	// DevSignIn, when set, serves the dev sign-in (dev mode, loopback
	// only).
	DevSignIn *DevSignIn
}

// NewServer returns the front door's server: HTTP/1.1 and HTTP/2 (over
// TLS when the listener is, and in plaintext with prior knowledge, as
// gRPC clients speak it).
func NewServer(cfg Config) (*http.Server, error) {
	h, err := Handler(cfg)
	if err != nil {
		return nil, err
	}
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetHTTP2(true)
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{
		Handler:           h,
		Protocols:         &protocols,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       15 * time.Minute,
		HTTP2:             &http.HTTP2Config{SendPingTimeout: 2 * time.Minute, PingTimeout: 20 * time.Second},
		ConnContext:       ConnContext,
	}
	if cfg.MaxConnectionAge > 0 {
		// A connection that no answer closed (one long stream) is cut
		// once its grace has passed too; the client reconnects and
		// resumes.
		srv.ConnState = func(c net.Conn, state http.ConnState) {
			if state == http.StateNew {
				time.AfterFunc(cfg.MaxConnectionAge+cfg.ConnectionAgeGrace, func() { c.Close() })
			}
		}
	}
	return srv, nil
}

// Handler returns the front door's handler.
func Handler(cfg Config) (http.Handler, error) {
	rpc, err := vanguardgrpc.NewTranscoder(cfg.GRPC)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /openapi.json", openAPI())
	mux.Handle("GET /app-config.json", appConfig(cfg.App, cfg.DevSignIn != nil))
	if cfg.DevSignIn != nil {
		mux.Handle("/dev/", cfg.DevSignIn)
	}
	fhirAPI, err := fhirrest.Handler(rpc, cfg.PublicURL, cfg.FHIRNaming)
	if err != nil {
		return nil, err
	}
	mux.Handle(fhirrest.Base, fhirAPI)
	mux.Handle(fhirrest.Base+"/", fhirAPI)
	mux.Handle("/", appHandler())
	var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if isRPC(r) {
			plainJSON(r)
			rpc.ServeHTTP(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
	if len(cfg.CORSOrigins) > 0 {
		h = cors.New(cors.Options{
			AllowedOrigins: cfg.CORSOrigins,
			AllowedMethods: []string{http.MethodGet, http.MethodPost},
			AllowedHeaders: []string{"Authorization", "Content-Type", "Connect-Protocol-Version", "Connect-Timeout-Ms",
				"Grpc-Timeout", "X-Grpc-Web", "X-User-Agent", "X-Request-Id", "X-Purpose-Of-Use", "X-Emergency-Reason",
				"Accept", "If-None-Match", "If-None-Exist", "X-Act-For"},
			ExposedHeaders: []string{"Grpc-Status", "Grpc-Message", "Grpc-Status-Details-Bin", "X-Request-Id", "ETag", "Location", "Last-Modified"},
			MaxAge:         600,
		}).Handler(h)
	}
	issuer := ""
	if cfg.App.ClientID != "" {
		issuer = cfg.App.Issuer
	}
	return securityHeaders(issuer, connectionAge(cfg.MaxConnectionAge, h)), nil
}

// plainJSON makes a plain HTTP/JSON call, a POST of JSON to
// /package.Service/Method, the Connect protocol's unary call that it
// already is but for Connect's version header, which a client that knows
// nothing of Connect does not send.
func plainJSON(r *http.Request) {
	if r.Method == http.MethodPost && r.Header.Get("Connect-Protocol-Version") == "" &&
		strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		r.Header.Set("Connect-Protocol-Version", "1")
	}
}

// isRPC reports whether r is a call of any RPC protocol: gRPC or
// gRPC-web by its content type, or a Connect call (a POST, or a Connect
// GET) to /package.Service/Method.
func isRPC(r *http.Request) bool {
	ct := r.Header.Get("Content-Type")
	switch {
	case strings.HasPrefix(ct, "application/grpc"), strings.HasPrefix(ct, "application/connect"):
		return true
	case r.Method == http.MethodPost, r.Method == http.MethodGet && r.URL.Query().Has("connect"):
		return rpcPath.MatchString(r.URL.Path)
	}
	return false
}

// rpcPath is /package.Service/Method.
var rpcPath = regexp.MustCompile(`^/[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+/[A-Za-z_][A-Za-z0-9_]*$`)

// securityHeaders sets what every answer carries: the app's content
// security policy (its own scripts and styles; calls to itself and to the
// identity provider it signs in with; never framed), no MIME sniffing, no
// referrer, and its own browsing context.
func securityHeaders(issuer string, next http.Handler) http.Handler {
	connect := "'self'"
	if u, err := url.Parse(issuer); err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != "" {
		connect += " " + u.Scheme + "://" + u.Host
	}
	csp := "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src " + connect +
		"; frame-ancestors 'none'; base-uri 'none'; object-src 'none'; form-action 'self'"
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		if r.TLS != nil {
			h.Set("Strict-Transport-Security", "max-age=31536000")
		}
		next.ServeHTTP(w, r)
	})
}

type connStartKey struct{}

// ConnContext records when a connection was accepted, for connectionAge.
func ConnContext(ctx context.Context, _ net.Conn) context.Context {
	return context.WithValue(ctx, connStartKey{}, time.Now())
}

// connectionAge asks a client to leave a connection older than maxAge:
// "Connection: close" ends an HTTP/1.1 connection after the answer, and
// makes Go's HTTP/2 server send GOAWAY, so the client opens a new one (and
// authenticates again, perhaps on another replica) for its next call.
func connectionAge(maxAge time.Duration, next http.Handler) http.Handler {
	if maxAge <= 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if start, ok := r.Context().Value(connStartKey{}).(time.Time); ok && time.Since(start) >= maxAge {
			w.Header().Set("Connection", "close")
		}
		next.ServeHTTP(w, r)
	})
}
