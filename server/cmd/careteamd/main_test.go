package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/careteam/careteam/client"
	"github.com/careteam/careteam/devtoken"
	pb "github.com/careteam/careteam/proto/careteam/v1"
	"github.com/careteam/careteam/server/internal/pgembed"
)

// binary is careteamd built once for the tests in this file.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "careteamd-test-")
	if err != nil {
		panic(err)
	}
	// Readable by the unprivileged user the root test runs it as.
	if err := os.Chmod(dir, 0o755); err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "careteamd")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		os.Stderr.Write(out)
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// daemon is a careteamd process started the way the README says: no
// database URL, no identity provider.
type daemon struct {
	cmd  *exec.Cmd
	addr string // where clients reach it, on loopback
	tls  *tls.Config
	// logs may be read only once the process has exited: until then it is
	// written concurrently.
	logs    *bytes.Buffer
	exited  chan struct{}
	exitErr error
}

// launch is how a test starts careteamd beyond the README's defaults.
type launch struct {
	listen string      // --listen; default a free loopback port
	args   []string    // further flags
	tls    *tls.Config // how clients reach it; nil for plaintext
}

func startDaemon(t *testing.T, dataDir string, cred *syscall.Credential, l launch) *daemon {
	t.Helper()
	if l.listen == "" {
		l.listen = freeAddr(t)
	}
	_, port, err := net.SplitHostPort(l.listen)
	if err != nil {
		t.Fatal(err)
	}
	logs := &bytes.Buffer{}
	args := append([]string{"--data-dir", dataDir, "--listen", l.listen, "--log-format", "text"}, l.args...)
	cmd := exec.Command(binary, args...)
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dataDir}
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &daemon{cmd: cmd, addr: net.JoinHostPort("127.0.0.1", port), tls: l.tls, logs: logs, exited: make(chan struct{})}
	go func() {
		d.exitErr = cmd.Wait()
		close(d.exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-d.exited
		awaitPostgresStopped(t, dataDir)
	})
	d.awaitServing(t)
	return d
}

// awaitPostgresStopped waits for the embedded PostgreSQL of dataDir, which
// shuts down on its own once careteamd is gone, to finish writing, so that
// the data directory can be removed.
func awaitPostgresStopped(t *testing.T, dataDir string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dataDir, "postgres", "postmaster.pid"))
	if err != nil {
		return // not started, or stopped and gone
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil {
		return
	}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return
		}
	}
	t.Errorf("the embedded PostgreSQL (pid %d) did not stop after careteamd was killed", pid)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func (d *daemon) awaitServing(t *testing.T) {
	t.Helper()
	c, err := client.Dial(d.addr, d.transport())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	h := healthpb.NewHealthClient(c.Conn())
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		resp, err := h.Check(ctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return
		}
		select {
		case <-d.exited:
			t.Fatalf("careteamd exited: %v; logs:\n%s", d.exitErr, d.logs)
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Fatalf("careteamd did not become healthy; logs:\n%s", d.logs)
}

// stop sends SIGTERM and expects a clean exit.
func (d *daemon) stop(t *testing.T) {
	t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-d.exited
	if d.exitErr != nil {
		t.Fatalf("careteamd exited with %v; logs:\n%s", d.exitErr, d.logs)
	}
}

func (d *daemon) transport() client.Option {
	if d.tls != nil {
		return client.WithTLS(d.tls)
	}
	return client.WithPlaintext()
}

func (d *daemon) client(t *testing.T, dataDir, subject string) *client.Client {
	t.Helper()
	tok, err := devtoken.Mint(dataDir, subject, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.Dial(d.addr, d.transport(), client.WithToken(client.StaticToken(tok)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestEmbeddedDefaultKeepsDataAcrossRestarts runs careteamd on its embedded
// default, creates data through the client, restarts it and finds the data.
// As root it runs careteamd as an unprivileged user too, since both must
// work.
func TestEmbeddedDefaultKeepsDataAcrossRestarts(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		cred *syscall.Credential
	}{{name: "as " + currentUser(t)}}
	if os.Geteuid() == 0 {
		if u, err := user.Lookup("postgres"); err == nil {
			uid, _ := strconv.Atoi(u.Uid)
			gid, _ := strconv.Atoi(u.Gid)
			cases = append(cases, struct {
				name string
				cred *syscall.Credential
			}{"as postgres", &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}})
		}
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// The unprivileged users must reach the data directory.
			base := t.TempDir()
			for _, dir := range []string{filepath.Dir(base), base} {
				if err := os.Chmod(dir, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			dataDir := filepath.Join(base, "data")
			if tc.cred != nil {
				if err := os.Mkdir(dataDir, 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.Chown(dataDir, int(tc.cred.Uid), int(tc.cred.Gid)); err != nil {
					t.Fatal(err)
				}
			}
			d := startDaemon(t, dataDir, tc.cred, launch{})
			ctx := t.Context()
			created, err := d.client(t, dataDir, "admin").Directory.CreateOrganization(ctx, &pb.CreateOrganizationRequest{
				Organization: &pb.Organization{DisplayName: "Lakeside", Kind: pb.OrganizationKind_ORGANIZATION_KIND_PHYSICIAN_PRACTICE},
			})
			if err != nil {
				t.Fatalf("CreateOrganization: %v\n%s", err, d.logs)
			}
			d.stop(t)
			if !strings.Contains(d.logs.String(), "stopping PostgreSQL") {
				t.Errorf("the embedded PostgreSQL was not stopped:\n%s", d.logs)
			}

			d = startDaemon(t, dataDir, tc.cred, launch{})
			got, err := d.client(t, dataDir, "admin").Directory.GetOrganization(ctx, &pb.GetOrganizationRequest{Name: created.GetOrganization().GetName()})
			if err != nil {
				t.Fatalf("after restart: %v\n%s", err, d.logs)
			}
			if got.GetOrganization().GetDisplayName() != "Lakeside" {
				t.Fatalf("after restart: %v", got.GetOrganization())
			}
			servesAsRuntimeRole(t, dataDir)
			d.stop(t)
		})
	}
}

// servesAsRuntimeRole checks that careteamd on its embedded default serves
// as a role that is not a superuser and owns nothing, and that the schema
// is the owner role's.
func servesAsRuntimeRole(t *testing.T, dataDir string) {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), pgembed.ConnString(filepath.Join(dataDir, "postgres"), "careteam"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	var serving []string
	var tableOwner string
	var runtimeSuper, runtimeOwns bool
	if err := conn.QueryRow(t.Context(), `
		SELECT (SELECT coalesce(array_agg(DISTINCT usename), '{}') FROM pg_stat_activity
		        WHERE datname = 'careteam' AND backend_type = 'client backend' AND pid <> pg_backend_pid()),
		       (SELECT tableowner FROM pg_tables WHERE tablename = 'audit_events'),
		       r.rolsuper, EXISTS (SELECT 1 FROM pg_class WHERE relowner = r.oid)
		FROM pg_roles r WHERE r.rolname = 'careteam_runtime'`).Scan(&serving, &tableOwner, &runtimeSuper, &runtimeOwns); err != nil {
		t.Fatal(err)
	}
	if len(serving) != 1 || serving[0] != "careteam_runtime" || tableOwner != "careteam_owner" || runtimeSuper || runtimeOwns {
		t.Errorf("careteamd connects as %v; audit_events owned by %s; careteam_runtime superuser %v, owns tables %v",
			serving, tableOwner, runtimeSuper, runtimeOwns)
	}
}

func currentUser(t *testing.T) string {
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	return u.Username
}

func TestHelpNamesEveryEnvironmentVariable(t *testing.T) {
	t.Parallel()
	out, err := exec.Command(binary, "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("--help: %v\n%s", err, out)
	}
	for _, want := range []string{"--listen, CARETEAM_LISTEN", "--data-dir, CARETEAM_DATA_DIR", "--database-url, CARETEAM_DATABASE_URL", "--jwks-file, CARETEAM_JWKS_FILE"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("--help lacks %q:\n%s", want, out)
		}
	}
}

func TestRefusesBadConfiguration(t *testing.T) {
	t.Parallel()
	cmd := exec.Command(binary, "--jwks-file", "/nonexistent", "--data-dir", t.TempDir())
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("started without an issuer for its JWKS:\n%s", out)
	}
	if !strings.Contains(string(out), "--jwt-issuer is required") {
		t.Fatalf("unclear error:\n%s", out)
	}
}
