package careteam

import (
	"testing"
	"time"
)

func TestCheckWebhookURL(t *testing.T) {
	tests := []struct {
		url              string
		strict, loopback bool // accepted without and with AllowHTTP
	}{
		{"https://ehr.example/careteam", true, true},
		{"https://10.0.0.5:8443/hook", true, true},
		{"http://127.0.0.1:9000/hook", false, true},
		{"http://[::1]:9000/hook", false, true},
		{"http://localhost/hook", false, true},
		{"http://ehr.example/hook", false, false},
		{"http://10.0.0.5/hook", false, false},
		{"http://127.0.0.1.nip.io/hook", false, false},
		{"https://user:pw@ehr.example/hook", false, false},
		{"https://ehr.example/hook#x", false, false},
		{"ftp://ehr.example/hook", false, false},
		{"mailto:ops@ehr.example", false, false},
		{"//ehr.example/hook", false, false},
		{"https:///hook", false, false},
		{"not a url at all", false, false},
	}
	for _, tc := range tests {
		if got := checkWebhookURL(tc.url, WebhookPolicy{}) == ""; got != tc.strict {
			t.Errorf("%s without http allowed: accepted %v, want %v", tc.url, got, tc.strict)
		}
		if got := checkWebhookURL(tc.url, WebhookPolicy{AllowHTTP: true}) == ""; got != tc.loopback {
			t.Errorf("%s with http to loopback allowed: accepted %v, want %v", tc.url, got, tc.loopback)
		}
	}
}

func TestWebhookBackoff(t *testing.T) {
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second}
	for i, w := range want {
		if got := webhookBackoff(i + 1); got != w {
			t.Errorf("after %d failures: %v, want %v", i+1, got, w)
		}
	}
	if got := webhookBackoff(1000); got != 5*time.Minute {
		t.Errorf("after many failures: %v, want the 5 minute cap", got)
	}
}
