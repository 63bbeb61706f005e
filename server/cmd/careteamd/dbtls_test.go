package main

import (
	"context"
	"crypto/x509"
	"net"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	pb "github.com/careteam/careteam/proto/careteam/v1"
	"github.com/careteam/careteam/server/internal/pgembed"
)

// TestDatabaseOverVerifiedTLS runs careteamd against a PostgreSQL reached
// over TCP with sslmode=verify-full: it serves, and every connection it
// holds is encrypted. With a CA that did not sign the server's certificate,
// or a host name the certificate does not name, or without TLS at all, it
// refuses to start and says why.
func TestDatabaseOverVerifiedTLS(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	ca := newAuthority(t, "careteam test database CA")
	certPEM, keyPEM := ca.issue(t, "postgres", x509.ExtKeyUsageServerAuth) // names 127.0.0.1 only
	files := t.TempDir()
	caFile := writeFile(t, files, "ca.pem", ca.certPEM())
	otherCAFile := writeFile(t, files, "other-ca.pem", newAuthority(t, "another CA").certPEM())
	const password = "a 'quoted' secret"
	addr := freeAddr(t)
	pg, err := pgembed.Start(ctx, pgembed.Config{
		Dir:      filepath.Join(filepath.Dir(newDataDir(t)), "pg"),
		Database: "careteam",
		Settings: map[string]string{"fsync": "off"},
		TCP: &pgembed.TCP{
			Addr:     addr,
			CertFile: writeFile(t, files, "server.crt", certPEM),
			KeyFile:  writeFile(t, files, "server.key", keyPEM),
			Password: password,
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pg.Stop(context.Background()) })
	_, port, _ := net.SplitHostPort(addr)
	dbURL := func(host string, query url.Values) string {
		u := url.URL{Scheme: "postgres", User: url.UserPassword("careteam", password), Host: net.JoinHostPort(host, port),
			Path: "/careteam", RawQuery: query.Encode()}
		return u.String()
	}

	t.Run("verify-full with the server's CA", func(t *testing.T) {
		dataDir := newDataDir(t)
		d := startDaemon(t, dataDir, nil, launch{args: []string{"--database-url",
			dbURL("127.0.0.1", url.Values{"sslmode": {"verify-full"}, "sslrootcert": {caFile}})}})
		if _, err := d.client(t, dataDir, "admin").Directory.CreateOrganization(ctx, &pb.CreateOrganizationRequest{
			Organization: &pb.Organization{DisplayName: "Lakeside", Kind: pb.OrganizationKind_ORGANIZATION_KIND_PHYSICIAN_PRACTICE},
		}); err != nil {
			t.Fatalf("CreateOrganization: %v", err)
		}
		conn, err := pgx.Connect(ctx, pg.ConnString())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		var conns, encrypted int
		if err := conn.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE s.ssl AND s.version IN ('TLSv1.2', 'TLSv1.3'))
			FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
			WHERE a.datname = 'careteam' AND a.backend_type = 'client backend' AND a.pid <> pg_backend_pid()`).Scan(&conns, &encrypted); err != nil {
			t.Fatal(err)
		}
		if conns == 0 || encrypted != conns {
			t.Errorf("%d of careteamd's %d database connections are encrypted", encrypted, conns)
		}
		d.stop(t)
		if strings.Contains(d.logs.String(), "reached over the network") {
			t.Errorf("careteamd warned about a verified connection:\n%s", d.logs)
		}
	})

	refused := []struct {
		name, url, want string
	}{
		{"a CA that did not sign the certificate", dbURL("127.0.0.1", url.Values{"sslmode": {"verify-full"}, "sslrootcert": {otherCAFile}}),
			"certificate signed by unknown authority"},
		{"a host name the certificate does not name", dbURL("localhost", url.Values{"sslmode": {"verify-full"}, "sslrootcert": {caFile}}),
			"wanted to match localhost"},
		{"no TLS", dbURL("127.0.0.1", url.Values{"sslmode": {"disable"}}), "no pg_hba.conf entry"},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
			defer cancel()
			out, err := exec.CommandContext(cctx, binary, "--data-dir", newDataDir(t), "--listen", freeAddr(t),
				"--database-url", tc.url).CombinedOutput()
			if err == nil || cctx.Err() != nil {
				t.Fatalf("careteamd did not refuse to start (%v):\n%s", err, out)
			}
			if !strings.Contains(string(out), tc.want) {
				t.Errorf("careteamd's error does not say %q:\n%s", tc.want, out)
			}
			if strings.Contains(string(out), password) {
				t.Errorf("careteamd's error shows the database password:\n%s", out)
			}
		})
	}
}
