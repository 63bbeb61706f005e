package faults

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/careteam/careteam/client"
	pb "github.com/careteam/careteam/proto/careteam/v1"
	"github.com/careteam/careteam/server/internal/pgembed"
	"github.com/careteam/careteam/server/internal/store/postgres"
)

// TestRestoreToAPointInTime follows the README's backup and restore recipe
// for the embedded database: careteamd archives its WAL (--wal-archive), a
// base backup is taken with pg_basebackup, more is written, and the backup
// is restored to a time between those writes. careteamd started on the
// restored cluster must hold exactly the writes acknowledged before that
// time, its audit chain must verify, the signed note must be unchanged with
// its hash, and the schema must be current.
func TestRestoreToAPointInTime(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Second)
	defer cancel()
	base := testDir(t)
	archive := filepath.Join(base, "wal-archive")
	s := newServer(t, "--wal-archive", archive)
	s.start()
	tm := newTeam(t, ctx, s)
	dr, lmt := s.client(t, "dr"), s.client(t, "lmt")

	backup := filepath.Join(base, "base-backup")
	baseBackup(t, ctx, s.pgDir(), backup)

	// Before the target: patients, and a session whose note is signed.
	before := createPatients(t, ctx, dr, 5)
	referral := tm.readyReferrals(t, ctx, s, 1)[0]
	signed := signedSession(t, ctx, lmt, referral)
	target := time.Now()
	time.Sleep(100 * time.Millisecond) // commit times are the same clock's
	after := createPatients(t, ctx, dr, 5)
	archiveAll(t, ctx, s.pgDir())
	s.kill()
	awaitStopped(t, s.pgDir())

	// Restore into a new data directory, as onto a new machine.
	r := newServer(t, "--wal-archive", archive)
	restore(t, backup, filepath.Join(r.dataDir, "postgres"), archive, target)
	r.start()
	dr = r.client(t, "dr")
	for _, name := range before {
		if _, err := dr.Patients.GetPatient(ctx, &pb.GetPatientRequest{Name: name}); err != nil {
			t.Errorf("%s, written before the target: %v", name, err)
		}
	}
	// A patient who does not exist is PERMISSION_DENIED, as any the caller
	// may not know exists; the count below tells it from a refusal.
	for _, name := range after {
		if _, err := dr.Patients.GetPatient(ctx, &pb.GetPatientRequest{Name: name}); status.Code(err) != codes.PermissionDenied {
			t.Errorf("%s, written after the target: %v", name, err)
		}
	}
	got, err := r.client(t, "lmt").Sessions.GetSession(ctx, &pb.GetSessionRequest{Name: signed.GetName()})
	if err != nil {
		t.Fatalf("the signed session: %v", err)
	}
	if !proto.Equal(got.GetSession().GetNote(), signed.GetNote()) {
		t.Errorf("the signed note changed in the restore:\n got %v\nwant %v", got.GetSession().GetNote(), signed.GetNote())
	}

	conn, err := pgx.Connect(ctx, pgembed.ConnString(r.pgDir(), "careteam"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var patients, created, timeline int
	var version int64
	if err := conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM patients), (SELECT count(*) FROM `+auditRecords+` a
			WHERE a.method = '/careteam.v1.PatientService/CreatePatient'),
		(SELECT timeline_id FROM pg_control_checkpoint()), (SELECT max(version_id) FROM goose_db_version)`).
		Scan(&patients, &created, &timeline, &version); err != nil {
		t.Fatal(err)
	}
	if want := 1 + len(before); patients != want || created != want {
		t.Errorf("%d patients and %d audit records of their creation after the restore, want %d", patients, created, want)
	}
	if timeline < 2 {
		t.Errorf("the restored cluster is on timeline %d: it did not recover to a point and promote", timeline)
	}
	if want := postgres.Known(); version != want {
		t.Errorf("schema version %d after the restore, want %d", version, want)
	}
	verifyAudit(t, ctx, r.client(t, "auditor"), conn)
}

// pgDir is careteamd's embedded PostgreSQL cluster.
func (s *server) pgDir() string { return filepath.Join(s.dataDir, "postgres") }

// postgresCredential is who runs PostgreSQL's programs: the postgres user
// when the tests run as root (they refuse root), else ourselves.
func postgresCredential(t *testing.T) *syscall.SysProcAttr {
	t.Helper()
	if os.Geteuid() != 0 {
		return nil
	}
	uid, gid := postgresIDs(t)
	return &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
}

func postgresIDs(t *testing.T) (uid, gid int) {
	t.Helper()
	u, err := user.Lookup("postgres")
	if err != nil {
		t.Fatalf("no postgres user to run PostgreSQL's programs as: %v", err)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return uid, gid
}

// pgProgram runs one of PostgreSQL's client programs as postgresCredential.
func pgProgram(t *testing.T, ctx context.Context, name string, args ...string) {
	t.Helper()
	bin, err := pgembed.BinDir()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, filepath.Join(bin, name), args...)
	cmd.SysProcAttr = postgresCredential(t)
	cmd.Dir = "/"
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// baseBackup takes the README's base backup of the cluster in pgDir into
// dir: plain format, with the WAL it needs to be consistent.
func baseBackup(t *testing.T, ctx context.Context, pgDir, dir string) {
	t.Helper()
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		uid, gid := postgresIDs(t)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	pgProgram(t, ctx, "pg_basebackup", "--host", pgDir, "--port", "5432", "--username", "careteam",
		"--pgdata", dir, "--wal-method", "stream", "--checkpoint", "fast", "--no-password")
}

// archiveAll closes the current WAL segment and waits until it is archived,
// so that the archive holds every write made so far.
func archiveAll(t *testing.T, ctx context.Context, pgDir string) {
	t.Helper()
	conn, err := pgx.Connect(ctx, pgembed.ConnString(pgDir, "careteam"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var segment string
	if err := conn.QueryRow(ctx, `SELECT pg_walfile_name(pg_switch_wal())`).Scan(&segment); err != nil {
		t.Fatal(err)
	}
	if !waitUntil(30*time.Second, func() bool {
		var archived *string
		err := conn.QueryRow(ctx, `SELECT last_archived_wal FROM pg_stat_archiver`).Scan(&archived)
		return err == nil && archived != nil && *archived >= segment
	}) {
		t.Fatalf("WAL segment %s was not archived within 30s", segment)
	}
}

// restore is the README's restore: the base backup copied into pgDir, told
// where the archive is and when to stop, and to become a primary there.
func restore(t *testing.T, backup, pgDir, archive string, target time.Time) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(pgDir), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", backup, pgDir).CombinedOutput(); err != nil {
		t.Fatalf("copying the base backup: %v\n%s", err, out)
	}
	settings := fmt.Sprintf("restore_command = 'cp ''%s/%%f'' %%p'\nrecovery_target_time = '%s'\nrecovery_target_action = 'promote'\n",
		archive, target.UTC().Format("2006-01-02 15:04:05.000000+00"))
	f, err := os.OpenFile(filepath.Join(pgDir, "postgresql.auto.conf"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(settings); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pgDir, "recovery.signal"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
}

// awaitStopped waits for the PostgreSQL of a killed careteamd, which shuts
// down once its parent is gone.
func awaitStopped(t *testing.T, pgDir string) {
	t.Helper()
	if !waitUntil(30*time.Second, func() bool {
		_, err := os.Stat(filepath.Join(pgDir, "postmaster.pid"))
		return os.IsNotExist(err)
	}) {
		t.Fatal("PostgreSQL did not stop within 30s of careteamd")
	}
}

// createPatients has c register n patients and returns their names.
func createPatients(t *testing.T, ctx context.Context, c *client.Client, n int) []string {
	t.Helper()
	var names []string
	for i := range n {
		resp, err := c.Patients.CreatePatient(ctx, &pb.CreatePatientRequest{RequestId: uuid.NewString(), Patient: &pb.Patient{
			GivenName: "Ana", FamilyName: fmt.Sprintf("Restore-%d", i), BirthDate: "1970-01-01",
		}})
		if err != nil {
			t.Fatalf("CreatePatient: %v", err)
		}
		names = append(names, resp.GetPatient().GetName())
	}
	return names
}

// signedSession starts a session under referral, writes its note and
// signs it.
func signedSession(t *testing.T, ctx context.Context, lmt *client.Client, referral string) *pb.Session {
	t.Helper()
	started, err := lmt.Sessions.StartSession(ctx, &pb.StartSessionRequest{Referral: referral, Planned: swedishLumbar, RequestId: uuid.NewString()})
	if err != nil {
		t.Fatalf("StartSession: %v", err)
	}
	ss := started.GetSession()
	updated, err := lmt.Sessions.UpdateSessionNote(ctx, &pb.UpdateSessionNoteRequest{
		Name: ss.GetName(), Etag: ss.GetEtag(),
		Note: &pb.SessionNote{Subjective: "Low back ache.", Assessment: "Muscular strain.", Plan: "Weekly.",
			Treatments: swedishLumbar, DurationMinutes: 50},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"subjective", "assessment", "plan", "treatments", "duration_minutes"}},
	})
	if err != nil {
		t.Fatalf("UpdateSessionNote: %v", err)
	}
	signed, err := lmt.Sessions.SignSessionNote(ctx, &pb.SignSessionNoteRequest{Name: ss.GetName(), Etag: updated.GetSession().GetEtag()})
	if err != nil {
		t.Fatalf("SignSessionNote: %v", err)
	}
	if signed.GetSession().GetNote().GetSignature().GetContentSha256() == "" {
		t.Fatalf("a signed note without its hash: %v", signed.GetSession().GetNote())
	}
	return signed.GetSession()
}
