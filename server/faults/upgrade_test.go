package faults

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	pb "github.com/careteam/careteam/proto/careteam/v1"
	"github.com/careteam/careteam/server/internal/store/postgres"
)

// TestRollingUpgrade runs the previous release of careteamd (the revision
// before the newest migration) under load, then starts this tree's beside
// it on the same database, as a rolling upgrade does: the new one migrates
// while the old one serves, and afterwards both serve one schema. No call
// may fail but with a retryable code, every acknowledged write must be
// there once, each version must read what the other wrote, and both must
// verify the one audit chain they wrote together; a previous release that
// knows schema_compatibility restarts on the migrated database.
func TestRollingUpgrade(t *testing.T) {
	t.Parallel()
	// The build is not the test: it may take minutes on a busy machine
	// with a cold cache.
	oldBinary, revision := previousRelease(t, t.Context())
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	pg := startCluster(t)
	old := newServer(t, "--database-url", pg.url())
	old.bin = oldBinary
	old.start()
	conn := connect(t, ctx, pg)
	latest := postgres.Known()
	if v := schemaVersion(t, ctx, conn); v != latest-1 {
		t.Fatalf("the previous release (%s) migrated to version %d, want %d", revision, v, latest-1)
	}
	tm := newTeam(t, ctx, old)
	l := newLoad(t, ctx)
	l.patients(old.client(t, "dr"), "dr")
	l.referrals(old.client(t, "dr"), "dr", tm)
	l.waitAcked(20, 15*time.Second)

	// The new release migrates under the old one's load, then takes its
	// share of the load.
	cur := startServer(t, pg.url())
	if v := schemaVersion(t, ctx, conn); v != latest {
		t.Fatalf("schema version %d after the new release started, want %d", v, latest)
	}
	l.patients(cur.client(t, "dr"), "dr")
	l.referrals(cur.client(t, "dr"), "dr", tm)
	l.waitAcked(l.ledger.acked.Load()+40, 20*time.Second)

	// Each reads and builds on what the other wrote.
	admin := cur.client(t, "admin")
	named, err := admin.Directory.CreatePractitioner(ctx, &pb.CreatePractitionerRequest{Practitioner: &pb.Practitioner{
		DisplayName: "Dr Rivera", GivenName: "Ana", FamilyName: "Rivera", Role: pb.Role_ROLE_PHYSICIAN,
		Organization: tm.clinic, Subject: "dr-rivera",
	}})
	if err != nil {
		t.Fatalf("CreatePractitioner on the new release: %v", err)
	}
	if got, err := old.client(t, "admin").Directory.GetPractitioner(ctx, &pb.GetPractitionerRequest{Name: named.GetPractitioner().GetName()}); err != nil ||
		got.GetPractitioner().GetDisplayName() != "Dr Rivera" {
		t.Errorf("the previous release reading a practitioner the new one wrote: %v, %v", got, err)
	}
	referral, err := cur.client(t, "dr").Referrals.CreateReferral(ctx, &pb.CreateReferralRequest{Referral: tm.newReferral(maxVisits)})
	if err != nil {
		t.Fatalf("CreateReferral on the new release: %v", err)
	}
	name := referral.GetReferral().GetName()
	if _, err := old.client(t, "dr").Referrals.SubmitReferral(ctx, &pb.SubmitReferralRequest{Name: name}); err != nil {
		t.Fatalf("SubmitReferral on the previous release of a referral the new one created: %v", err)
	}
	if _, err := cur.client(t, "lmt").Referrals.AcceptReferral(ctx, &pb.AcceptReferralRequest{Name: name}); err != nil {
		t.Fatalf("AcceptReferral on the new release of a referral the previous one submitted: %v", err)
	}
	l.stop()
	t.Logf("previous release %s beside this tree: %s", revision, l.ledger.summary())

	l.ledger.checkCodes(t, retryable...)
	hctx, hcancel := context.WithTimeout(ctx, 5*time.Second)
	defer hcancel()
	if err := old.awaitHealth(hctx, healthpb.HealthCheckResponse_SERVING); err != nil {
		t.Errorf("the previous release after the migration: %v", err)
	}
	// A previous release that reads schema_compatibility (migration 20)
	// may restart on the schema the new one migrated.
	if latest-1 >= 20 {
		old.kill()
		old.start()
		if _, err := old.client(t, "dr").Patients.GetPatient(ctx, &pb.GetPatientRequest{Name: tm.patient}); err != nil {
			t.Errorf("the previous release, restarted after the migration: %v", err)
		}
	} else {
		t.Logf("the previous release (schema %d) predates schema_compatibility: restarted now, it would refuse the newer schema", latest-1)
	}
	checkLedger(t, ctx, conn, l.ledger)
	checkConsistency(t, ctx, conn)
	verifyAudit(t, ctx, cur.client(t, "auditor"), conn)
	verifyAudit(t, ctx, old.client(t, "auditor"), conn)
	for _, s := range []*server{old, cur} {
		if failed := s.failedCalls(); failed != "" {
			t.Errorf("calls failed with INTERNAL or panicked:\n%s", failed)
		}
	}
}

// previousRelease builds careteamd as it was just before the newest
// migration was added, from this repository's history, and names that
// revision. Outside a git checkout with its history the test cannot run:
// it says so, and fails in CI, where the history is always there.
func previousRelease(t *testing.T, ctx context.Context) (binary, revision string) {
	t.Helper()
	git := func(args ...string) (string, error) {
		out, err := exec.CommandContext(ctx, "git", args...).Output()
		return strings.TrimSpace(string(out)), err
	}
	files, err := filepath.Glob("../internal/store/postgres/migrations/*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("migrations: %v", err)
	}
	// The commit that added the newest migration, whose parent is the
	// previous release; while that migration is not committed yet, HEAD is.
	added, err := git("log", "--diff-filter=A", "--format=%H", "-1", "--", files[len(files)-1])
	previous := added + "^"
	if added == "" {
		previous = "HEAD"
	}
	if err == nil {
		revision, err = git("rev-parse", "--short", previous)
	}
	if err != nil {
		msg := "the previous release is built from git history, which this checkout lacks"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	src := filepath.Join(t.TempDir(), "src")
	if err := os.Mkdir(src, 0o755); err != nil {
		t.Fatal(err)
	}
	// From the top: in a subdirectory git archive takes only that subtree.
	archive := exec.CommandContext(ctx, "sh", "-c", `git -C "$(git rev-parse --show-toplevel)" archive --format=tar "$1" | tar -x -C "$2"`,
		"sh", revision, src)
	if out, err := archive.CombinedOutput(); err != nil {
		t.Fatalf("extracting %s: %v\n%s", revision, err, out)
	}
	binary = filepath.Join(testDir(t), "careteamd-"+revision)
	args := []string{"build", "-o", binary}
	if raceEnabled {
		// As this tree's careteamd is built: the dependencies' builds are
		// then in the cache already.
		args = append(args, "-race")
	}
	build := exec.CommandContext(ctx, "go", append(args, "./server/cmd/careteamd")...)
	build.Dir = src
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building careteamd %s: %v\n%s", revision, err, out)
	}
	return binary, revision
}

func schemaVersion(t *testing.T, ctx context.Context, conn *pgx.Conn) int64 {
	t.Helper()
	var v int64
	if err := conn.QueryRow(ctx, `SELECT max(version_id) FROM goose_db_version`).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}
