package app

import "testing"

// TestExposedDatabases: careteamd warns of a database reached over the
// network in the clear, or over TLS that does not check whose server it
// is; not of a local one, nor of sslmode=verify-full.
func TestExposedDatabases(t *testing.T) {
	tests := []struct {
		url, why string
	}{
		{"postgres://u@db.example:5432/careteam?sslmode=disable", "possibly without TLS"},
		{"postgres://u@db.example:5432/careteam", "possibly without TLS"}, // prefer falls back to the clear
		{"postgres://u@db.example:5432/careteam?sslmode=allow", "possibly without TLS"},
		{"postgres://u@db.example:5432/careteam?sslmode=require", "with TLS that does not check the server's certificate"},
		{"postgres://u@db.example:5432/careteam?sslmode=verify-ca", "with TLS that does not check the server's name"},
		{"postgres://u@db.example:5432/careteam?sslmode=verify-full", ""},
		{"postgres://u@127.0.0.1:5432/careteam?sslmode=disable", ""},
		{"postgres://u@localhost/careteam", ""},
		{"postgres://u@[::1]:5432/careteam", ""},
		{"postgres://u@/careteam?host=/var/run/postgresql", ""},
		{"", ""},
	}
	for _, tc := range tests {
		if _, why := exposed(tc.url); why != tc.why {
			t.Errorf("%s: %q, want %q", tc.url, why, tc.why)
		}
	}
}
