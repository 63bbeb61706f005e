package web_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	pb "github.com/careteam/careteam/proto/careteam/v1"
	"github.com/careteam/careteam/server/internal/web"
)

func handler(t *testing.T, cfg web.Config) http.Handler {
	t.Helper()
	srv := grpc.NewServer()
	pb.RegisterDirectoryServiceServer(srv, pb.UnimplementedDirectoryServiceServer{})
	cfg.GRPC = srv
	h, err := web.Handler(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func serve(h http.Handler, r *http.Request) *http.Response {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Result()
}

// TestSecurityHeadersOnEveryAnswer: the page, a file that does not exist,
// the OpenAPI description and an RPC all carry the security headers.
func TestSecurityHeadersOnEveryAnswer(t *testing.T) {
	t.Parallel()
	h := handler(t, web.Config{})
	rpc := httptest.NewRequest(http.MethodPost, "/careteam.v1.DirectoryService/GetCaller", strings.NewReader("{}"))
	rpc.Header.Set("Content-Type", "application/json")
	for _, r := range []*http.Request{
		httptest.NewRequest(http.MethodGet, "/", nil),
		httptest.NewRequest(http.MethodGet, "/worklist", nil),
		httptest.NewRequest(http.MethodGet, "/assets/missing.js", nil),
		httptest.NewRequest(http.MethodGet, "/openapi.json", nil),
		rpc,
	} {
		res := serve(h, r)
		for header, want := range map[string]string{
			"Content-Security-Policy": "frame-ancestors 'none'",
			"X-Content-Type-Options":  "nosniff",
			"Referrer-Policy":         "no-referrer",
			"X-Frame-Options":         "DENY",
		} {
			if got := res.Header.Get(header); !strings.Contains(got, want) {
				t.Errorf("%s %s: %s is %q, want %q in it", r.Method, r.URL.Path, header, got, want)
			}
		}
	}
}

// TestCORS: off by default; on, it admits exactly the origins configured,
// with no credentials (bearer tokens only).
func TestCORS(t *testing.T) {
	t.Parallel()
	preflight := func(origin string) *http.Request {
		r := httptest.NewRequest(http.MethodOptions, "/careteam.v1.DirectoryService/GetCaller", nil)
		r.Header.Set("Origin", origin)
		r.Header.Set("Access-Control-Request-Method", "POST")
		// As browsers send it: lower case, sorted.
		r.Header.Set("Access-Control-Request-Headers", "authorization,connect-protocol-version,content-type")
		return r
	}
	off := handler(t, web.Config{})
	if got := serve(off, preflight("https://ehr.example.org")).Header.Get("Access-Control-Allow-Origin"); got != "" {
		t.Errorf("with no origins configured, a preflight is admitted for %q", got)
	}
	on := handler(t, web.Config{CORSOrigins: []string{"https://ehr.example.org"}})
	res := serve(on, preflight("https://ehr.example.org"))
	if got := res.Header.Get("Access-Control-Allow-Origin"); got != "https://ehr.example.org" {
		t.Errorf("the configured origin: Access-Control-Allow-Origin %q", got)
	}
	if got := strings.ToLower(res.Header.Get("Access-Control-Allow-Headers")); !strings.Contains(got, "authorization") {
		t.Errorf("the configured origin may not send Authorization: %q", got)
	}
	if res.Header.Get("Access-Control-Allow-Credentials") != "" {
		t.Error("credentials (cookies) are allowed")
	}
	for _, other := range []string{"https://evil.example.org", "https://ehr.example.org.evil.example", "null"} {
		if got := serve(on, preflight(other)).Header.Get("Access-Control-Allow-Origin"); got != "" {
			t.Errorf("origin %q admitted as %q", other, got)
		}
	}
}

// TestOpenAPIDescribesEveryUnaryMethod: the served description is JSON,
// names the bearer token, and has a POST for every unary method.
func TestOpenAPIDescribesEveryUnaryMethod(t *testing.T) {
	t.Parallel()
	res := serve(handler(t, web.Config{}), httptest.NewRequest(http.MethodGet, "/openapi.json", nil))
	var doc struct {
		Swagger             string                                `json:"swagger"`
		Paths               map[string]map[string]json.RawMessage `json:"paths"`
		SecurityDefinitions map[string]json.RawMessage            `json:"securityDefinitions"`
	}
	if err := json.NewDecoder(res.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	if doc.Swagger != "2.0" || doc.SecurityDefinitions["bearer"] == nil {
		t.Errorf("swagger %q, security %v", doc.Swagger, doc.SecurityDefinitions)
	}
	for _, m := range methods(t) {
		if _, ok := doc.Paths[path(m)]["post"]; !ok {
			t.Errorf("%s is not described", path(m))
		}
	}
}

// TestDevSignInAnswersThisMachineOnly: a request from another address is
// refused, whatever it asks.
func TestDevSignInAnswersThisMachineOnly(t *testing.T) {
	t.Parallel()
	minted := false
	dev := &web.DevSignIn{
		Subjects: func(context.Context) ([]web.DevSubject, error) { return []web.DevSubject{{Subject: "admin"}}, nil },
		Mint:     func(string) (string, time.Time, error) { minted = true; return "t", time.Now(), nil },
	}
	h := handler(t, web.Config{DevSignIn: dev})
	for _, remote := range []string{"10.0.0.7:4000", "[2001:db8::1]:4000", "192.168.1.2:1"} {
		for _, r := range []*http.Request{
			httptest.NewRequest(http.MethodGet, "/dev/subjects", nil),
			httptest.NewRequest(http.MethodPost, "/dev/token", strings.NewReader(`{"subject":"admin"}`)),
		} {
			r.RemoteAddr = remote
			r.Header.Set("Content-Type", "application/json")
			if res := serve(h, r); res.StatusCode != http.StatusForbidden {
				t.Errorf("%s %s from %s: %d", r.Method, r.URL.Path, remote, res.StatusCode)
			}
		}
	}
	if minted {
		t.Error("a token was minted for a request from another machine")
	}
	// From this machine, a form post (which any page could make) is
	// refused too: JSON only.
	r := httptest.NewRequest(http.MethodPost, "/dev/token", strings.NewReader("subject=admin"))
	r.RemoteAddr = "127.0.0.1:5000"
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if res := serve(h, r); res.StatusCode != http.StatusUnsupportedMediaType || minted {
		t.Errorf("a form post: %d, minted %v", res.StatusCode, minted)
	}
	// Without the dev sign-in, the paths are the app's, not an API.
	if res := serve(handler(t, web.Config{}), httptest.NewRequest(http.MethodGet, "/dev/subjects", nil)); res.Header.Get("Content-Type") == "application/json" {
		t.Error("the dev sign-in answers when it is off")
	}
}
