// Package faults holds careteam's fault tests: the careteamd binary, built
// from this module, runs against a private PostgreSQL while the tests
// restart the database under it, kill it with SIGKILL, cut its client
// connections and starve its connection pool, and then check that every
// write acknowledged to a caller is in the database exactly once and that
// nothing was half written.
//
// The package holds only tests; each starts its own PostgreSQL cluster
// (pgembed) and careteamd process, so they run in parallel.
package faults

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/careteam/careteam/client"
	"github.com/careteam/careteam/devtoken"
	pb "github.com/careteam/careteam/proto/careteam/v1"
	"github.com/careteam/careteam/server/internal/pgembed"
)

// binary is careteamd, built once for the package; with -race when the
// tests run with -race, so that a data race in the server under faults
// fails the test that provoked it.
var binary string

// raceEnabled is set by race_test.go in -race builds.
var raceEnabled bool

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "careteam-faults-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	binary = filepath.Join(dir, "careteamd")
	args := []string{"build", "-o", binary}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, "github.com/careteam/careteam/server/cmd/careteamd")
	if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building careteamd: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// testDir returns a fresh directory that the postgres user, which runs
// PostgreSQL when the tests run as root, can traverse.
func testDir(t *testing.T) string {
	t.Helper()
	base := t.TempDir()
	if os.Geteuid() == 0 {
		// t.TempDir nests in a 0700 directory of root's.
		for _, d := range []string{filepath.Dir(base), base} {
			if err := os.Chmod(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	return base
}

// cluster is a private PostgreSQL the test can stop and start again.
type cluster struct {
	cfg pgembed.Config
	mu  sync.Mutex
	srv *pgembed.Server
}

func startCluster(t *testing.T) *cluster {
	t.Helper()
	c := &cluster{cfg: pgembed.Config{
		Dir:      filepath.Join(testDir(t), "pg"),
		Database: "careteam",
		Logger:   slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
		// The tests crash careteamd and PostgreSQL, never the machine:
		// without fsync the WAL still reaches the kernel, which keeps it
		// through a crash of PostgreSQL. synchronous_commit stays on: off,
		// a crash loses commits already reported, as the ledger would show.
		Settings: map[string]string{"fsync": "off", "full_page_writes": "off"},
	}}
	c.start(t)
	t.Cleanup(func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.srv != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_ = c.srv.Stop(ctx)
		}
	})
	return c
}

// url is where the cluster's careteam database answers; it stays the same
// across restarts.
func (c *cluster) url() string { return pgembed.ConnString(c.cfg.Dir, c.cfg.Database) }

func (c *cluster) start(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := pgembed.Start(ctx, c.cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	c.srv = srv
	c.mu.Unlock()
}

// stop shuts PostgreSQL down (fast shutdown: sessions are terminated,
// open transactions roll back).
func (c *cluster) stop(t *testing.T) {
	t.Helper()
	c.mu.Lock()
	srv := c.srv
	c.srv = nil
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Stop(ctx); err != nil {
		t.Fatal(err)
	}
}

// logBuffer collects a process's output; it may be read at any time.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// tail is the end of the logs, for failure messages.
func (b *logBuffer) tail() string {
	s := b.String()
	if len(s) > 20000 {
		s = "...\n" + s[len(s)-20000:]
	}
	return s
}

// server is careteamd on a fixed loopback address and data directory,
// started, killed and started again by the test; its logs span every run.
type server struct {
	t       *testing.T
	bin     string // the careteamd binary; the one built from this tree by default
	addr    string
	dataDir string
	args    []string
	logs    *logBuffer

	mu   sync.Mutex
	proc *process
}

type process struct {
	cmd    *exec.Cmd
	exited chan struct{}
	err    error
}

// startServer runs careteamd on the database at dbURL, in dev mode (its
// signing key in a data directory of its own), without the per-caller rate
// limit (the load would trip it), plus args.
func startServer(t *testing.T, dbURL string, args ...string) *server {
	t.Helper()
	s := newServer(t, append([]string{"--database-url", dbURL}, args...)...)
	s.start()
	return s
}

// newServer is careteamd with args, not yet started: on its embedded
// database unless args name another.
func newServer(t *testing.T, args ...string) *server {
	t.Helper()
	s := &server{
		t:       t,
		bin:     binary,
		addr:    freeAddr(t),
		dataDir: filepath.Join(testDir(t), "data"),
		logs:    &logBuffer{},
		args:    append([]string{"--rate-limit", "0", "--log-format", "text", "--shutdown-timeout", "2s"}, args...),
	}
	t.Cleanup(func() {
		s.kill()
		if strings.Contains(s.logs.String(), "WARNING: DATA RACE") {
			t.Errorf("careteamd reported a data race:\n%s", s.logs.tail())
		}
	})
	return s
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

// start runs careteamd and waits until its health is SERVING.
func (s *server) start() {
	s.t.Helper()
	fmt.Fprintf(s.logs, "=== test: starting careteamd at %s\n", time.Now().Format(time.RFC3339Nano))
	args := append([]string{"--data-dir", s.dataDir, "--listen", s.addr}, s.args...)
	cmd := exec.Command(s.bin, args...)
	cmd.Stdout, cmd.Stderr = s.logs, s.logs
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + s.dataDir}
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	p := &process{cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	s.mu.Lock()
	s.proc = p
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.awaitHealth(ctx, healthpb.HealthCheckResponse_SERVING); err != nil {
		select {
		case <-p.exited:
			s.t.Fatalf("careteamd exited: %v; logs:\n%s", p.err, s.logs.tail())
		default:
		}
		s.t.Fatalf("careteamd did not become healthy: %v; logs:\n%s", err, s.logs.tail())
	}
}

// kill ends careteamd with SIGKILL, which it cannot intercept, and waits
// for it to exit.
func (s *server) kill() {
	s.mu.Lock()
	p := s.proc
	s.proc = nil
	s.mu.Unlock()
	if p == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
	fmt.Fprintf(s.logs, "=== test: careteamd killed at %s\n", time.Now().Format(time.RFC3339Nano))
}

// awaitHealth polls grpc.health.v1 until it reports want or ctx ends.
func (s *server) awaitHealth(ctx context.Context, want healthpb.HealthCheckResponse_ServingStatus) error {
	conn, err := client.Dial(s.addr, client.WithPlaintext(), client.WithDialOptions(fastReconnect()))
	if err != nil {
		return err
	}
	defer conn.Close()
	h := healthpb.NewHealthClient(conn.Conn())
	var last string
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		resp, err := h.Check(cctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil && resp.GetStatus() == want {
			return nil
		}
		if err != nil {
			last = err.Error()
		} else {
			last = resp.GetStatus().String()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("health is not %v (last: %s): %w", want, last, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// fastReconnect has gRPC redial a lost server within half a second rather
// than after its default backoff of up to two minutes.
func fastReconnect() grpc.DialOption {
	return grpc.WithConnectParams(grpc.ConnectParams{
		Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 500 * time.Millisecond},
		MinConnectTimeout: 2 * time.Second,
	})
}

// client dials careteamd (or addr, when given, such as a proxy in front
// of it) as subject, with a dev-mode token.
func (s *server) client(t *testing.T, subject string, opts ...grpc.DialOption) *client.Client {
	t.Helper()
	return s.clientAt(t, s.addr, subject, opts...)
}

func (s *server) clientAt(t *testing.T, addr, subject string, opts ...grpc.DialOption) *client.Client {
	t.Helper()
	tok, err := devtoken.Mint(s.dataDir, subject, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.Dial(addr, client.WithPlaintext(), client.WithToken(client.StaticToken(tok)),
		client.WithDialOptions(append([]grpc.DialOption{fastReconnect()}, opts...)...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// team is the cast of the tests: a physician practice and a massage
// practice, a physician, a therapist, an auditor, and a patient.
type team struct {
	clinic, spa string
	dr, lmt     *pb.Practitioner
	patient     string
}

func newTeam(t *testing.T, ctx context.Context, s *server) *team {
	t.Helper()
	admin := s.client(t, "admin")
	org := func(name string, kind pb.OrganizationKind) string {
		resp, err := admin.Directory.CreateOrganization(ctx, &pb.CreateOrganizationRequest{Organization: &pb.Organization{DisplayName: name, Kind: kind}})
		if err != nil {
			t.Fatalf("CreateOrganization: %v", err)
		}
		return resp.GetOrganization().GetName()
	}
	person := func(org string, role pb.Role, subject string) *pb.Practitioner {
		p := &pb.Practitioner{DisplayName: subject, Role: role, Organization: org, Subject: subject}
		if role == pb.Role_ROLE_MASSAGE_THERAPIST {
			p.Licence = &pb.Licence{Number: "LMT-1", Jurisdiction: "US-WA", ExpireDate: time.Now().AddDate(1, 0, 0).Format("2006-01-02")}
			p.Specialties = []pb.Specialty{pb.Specialty_SPECIALTY_ARTHRITIS}
		}
		resp, err := admin.Directory.CreatePractitioner(ctx, &pb.CreatePractitionerRequest{Practitioner: p})
		if err != nil {
			t.Fatalf("CreatePractitioner(%s): %v", subject, err)
		}
		return resp.GetPractitioner()
	}
	tm := &team{}
	tm.clinic = org("Lakeside Family Medicine", pb.OrganizationKind_ORGANIZATION_KIND_PHYSICIAN_PRACTICE)
	tm.spa = org("Harbor Massage", pb.OrganizationKind_ORGANIZATION_KIND_MASSAGE_PRACTICE)
	tm.dr = person(tm.clinic, pb.Role_ROLE_PHYSICIAN, "dr")
	tm.lmt = person(tm.spa, pb.Role_ROLE_MASSAGE_THERAPIST, "lmt")
	person(tm.clinic, pb.Role_ROLE_AUDITOR, "auditor")
	pt, err := s.client(t, "dr").Patients.CreatePatient(ctx, &pb.CreatePatientRequest{Patient: &pb.Patient{GivenName: "Jo", FamilyName: "Smith", BirthDate: "1968-04-12"}})
	if err != nil {
		t.Fatalf("CreatePatient: %v", err)
	}
	tm.patient = pt.GetPatient().GetName()
	return tm
}

// newReferral is a referral of the team's patient from dr to lmt.
func (tm *team) newReferral(visits int32) *pb.Referral {
	return &pb.Referral{
		Patient: tm.patient, TargetTherapist: tm.lmt.GetName(), ReasonCodes: []string{"M54.50"},
		Priority: pb.ReferralPriority_REFERRAL_PRIORITY_ROUTINE, AuthorizedVisits: visits,
		RequiredSpecialties: []pb.Specialty{pb.Specialty_SPECIALTY_ARTHRITIS},
		RequestedTechniques: []pb.Technique{pb.Technique_TECHNIQUE_SWEDISH},
		ValidUntil:          timestamppb.New(time.Now().AddDate(0, 0, 90)),
	}
}

// maxVisits is the most visits a referral may authorize.
const maxVisits = 52

// readyReferrals returns n referrals under which lmt may start sessions:
// accepted, with the patient's consent and a patient-wide clearance on file.
func (tm *team) readyReferrals(t *testing.T, ctx context.Context, s *server, n int) []string {
	t.Helper()
	dr, lmt := s.client(t, "dr"), s.client(t, "lmt")
	var out []string
	for range n {
		r, err := dr.Referrals.CreateReferral(ctx, &pb.CreateReferralRequest{Referral: tm.newReferral(maxVisits)})
		if err != nil {
			t.Fatalf("CreateReferral: %v", err)
		}
		name := r.GetReferral().GetName()
		if _, err := dr.Referrals.SubmitReferral(ctx, &pb.SubmitReferralRequest{Name: name}); err != nil {
			t.Fatalf("SubmitReferral: %v", err)
		}
		if _, err := lmt.Referrals.AcceptReferral(ctx, &pb.AcceptReferralRequest{Name: name}); err != nil {
			t.Fatalf("AcceptReferral: %v", err)
		}
		out = append(out, name)
	}
	// The therapist's practice cares for the patient once it has accepted
	// a referral of theirs.
	if _, err := lmt.Clinical.RecordConsent(ctx, &pb.RecordConsentRequest{Consent: &pb.Consent{
		Patient: tm.patient, FormVersion: "2026-01", SignedDate: time.Now().UTC().Format("2006-01-02"),
		Signer: pb.ConsentSigner_CONSENT_SIGNER_PATIENT,
	}}); err != nil {
		t.Fatalf("RecordConsent: %v", err)
	}
	if _, err := dr.Clinical.IssueClearance(ctx, &pb.IssueClearanceRequest{Clearance: &pb.Clearance{
		Patient: tm.patient, Decision: pb.ClearanceDecision_CLEARANCE_DECISION_CLEARED,
	}}); err != nil {
		t.Fatalf("IssueClearance: %v", err)
	}
	return out
}

// swedishLumbar is the plan of every session the tests start.
var swedishLumbar = []*pb.Treatment{{
	Region: pb.BodyRegion_BODY_REGION_LUMBAR, Technique: pb.Technique_TECHNIQUE_SWEDISH, Pressure: pb.Pressure_PRESSURE_MEDIUM,
}}

// waitUntil polls cond every 20ms until it holds or timeout passes.
func waitUntil(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}
