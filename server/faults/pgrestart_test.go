package faults

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// TestPostgresRestartedMidLoad takes PostgreSQL away under a write load,
// each time while a write is in the middle of its transaction, three ways: a fast shutdown and restart (sessions told "terminating
// connection due to administrator command"), an immediate shutdown and
// restart (sessions cut without a FATAL error, as when the host reboots
// it), and the crash of one server process, after which PostgreSQL
// restarts every session by itself. careteamd's health must go
// NOT_SERVING and back to SERVING while the database is away; calls must
// fail with UNAVAILABLE, which the client retries, never INTERNAL; and
// afterwards every write acknowledged to a caller must be in the database
// exactly once, with nothing half written.
func TestPostgresRestartedMidLoad(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 55*time.Second)
	defer cancel()
	pg := startCluster(t)
	s := startServer(t, pg.url())
	tm := newTeam(t, ctx, s)
	// Several connections, so that writes are in flight on the pool when
	// the database goes.
	l := newLoad(t, ctx)
	l.patients(s.client(t, "dr"), "dr")
	l.patients(s.client(t, "dr"), "dr")
	l.referrals(s.client(t, "dr"), "dr", tm)
	l.referrals(s.client(t, "dr"), "dr", tm)
	l.waitAcked(20, 15*time.Second)

	faults := []struct {
		name string
		// down takes the database away while the session pid is in the
		// middle of a write; up brings it back (nil: it comes back by
		// itself).
		down func(pid int)
		up   func()
	}{
		{"fast shutdown", func(int) { pg.stop(t) }, func() { pg.start(t) }},
		{"immediate shutdown", func(int) { pg.stopImmediately(t) }, func() { pg.start(t) }},
		{"crash of a server process", func(pid int) {
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
		}, nil},
	}
	for _, f := range faults {
		_, codesBefore, _ := l.ledger.snapshot()
		failedBefore := l.ledger.failures()
		pid, release := pg.pinWrite(t, ctx)
		down := time.Now()
		f.down(pid)
		release()
		if f.up != nil {
			hctx, hcancel := context.WithTimeout(ctx, 15*time.Second)
			err := s.awaitHealth(hctx, healthpb.HealthCheckResponse_NOT_SERVING)
			hcancel()
			if err != nil {
				t.Fatalf("%s: with the database stopped: %v\n%s", f.name, err, s.logs.tail())
			}
			t.Logf("%s: health NOT_SERVING %v after the database stopped", f.name, time.Since(down).Round(time.Millisecond))
			// Keep the database away until callers have seen it fail:
			// the client's own retries (five attempts, backoff to 2s)
			// outlast a short outage.
			if !waitUntil(15*time.Second, func() bool { return l.ledger.failures() > failedBefore }) {
				t.Fatalf("%s: no call failed in 15s without a database: calls hang? %s\n%s", f.name, l.ledger.summary(), s.logs.tail())
			}
			f.up()
			t.Logf("%s: database down for %v", f.name, time.Since(down).Round(time.Millisecond))
		}
		up := time.Now()
		hctx, hcancel := context.WithTimeout(ctx, 15*time.Second)
		err := s.awaitHealth(hctx, healthpb.HealthCheckResponse_SERVING)
		hcancel()
		if err != nil {
			t.Fatalf("%s: with the database back: %v\n%s", f.name, err, s.logs.tail())
		}
		t.Logf("%s: health SERVING %v after the database came back", f.name, time.Since(up).Round(time.Millisecond))
		l.waitAcked(20, 15*time.Second)
		_, codesAfter, _ := l.ledger.snapshot()
		var diff []string
		for c, n := range codesAfter {
			if n > codesBefore[c] {
				diff = append(diff, fmt.Sprintf("%v=%d", c, n-codesBefore[c]))
			}
		}
		t.Logf("%s: failed attempts: %s", f.name, strings.Join(diff, " "))
	}
	l.stop()
	t.Log(l.ledger.summary())

	l.ledger.checkCodes(t, retryable...)
	if _, cs, _ := l.ledger.snapshot(); cs[codes.Unavailable] == 0 {
		t.Errorf("no call failed with UNAVAILABLE while the database was down: %s", l.ledger.summary())
	}
	conn := connect(t, ctx, pg)
	checkLedger(t, ctx, conn, l.ledger)
	checkConsistency(t, ctx, conn)
	verifyAudit(t, ctx, s.client(t, "auditor"), conn)
	if t.Failed() {
		t.Logf("careteamd's failed calls:\n%s", s.failedCalls())
	}
}

// stopImmediately asks PostgreSQL for an immediate shutdown (SIGQUIT to
// the postmaster): every session is cut at once, with no FATAL error
// message, and the next start runs crash recovery.
func (c *cluster) stopImmediately(t *testing.T) {
	t.Helper()
	pid := c.postmasterPID(t)
	if err := syscall.Kill(pid, syscall.SIGQUIT); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	srv := c.srv
	c.srv = nil
	c.mu.Unlock()
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// After an immediate shutdown the postmaster may report a failure exit;
	// that it has exited is what counts.
	_ = srv.Stop(sctx)
	if sctx.Err() != nil {
		t.Fatal("PostgreSQL did not stop after SIGQUIT")
	}
}

func (c *cluster) postmasterPID(t *testing.T) int {
	t.Helper()
	pid := postmasterPID(c.cfg.Dir)
	if pid <= 0 {
		t.Fatal("no postmaster.pid")
	}
	return pid
}

// pinWrite makes sure the fault hits a write in flight, whatever the
// timing: it locks the patients table against inserts until one of
// careteamd's sessions is waiting for it in the middle of a CreatePatient
// transaction, and returns that session's pid. release drops the lock (if
// the fault has not already dropped it with the connection).
func (c *cluster) pinWrite(t *testing.T, ctx context.Context) (pid int, release func()) {
	t.Helper()
	conn, err := pgx.Connect(ctx, c.url())
	if err != nil {
		t.Fatal(err)
	}
	release = func() { _ = conn.Close(context.Background()) }
	if _, err := conn.Exec(ctx, `BEGIN; LOCK TABLE patients IN SHARE MODE`); err != nil {
		release()
		t.Fatal(err)
	}
	if !waitUntil(10*time.Second, func() bool {
		err := conn.QueryRow(ctx, `SELECT pid FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid() LIMIT 1`).Scan(&pid)
		return err == nil
	}) {
		release()
		t.Fatal("no write of careteamd's waited for the locked patients table within 10s")
	}
	return pid, release
}

// failedCalls are careteamd's log lines of calls that failed with
// INTERNAL, and of panics, for reports.
func (s *server) failedCalls() string {
	var out []string
	for line := range strings.SplitSeq(s.logs.String(), "\n") {
		if (strings.Contains(line, "msg=rpc") && strings.Contains(line, "code=Internal")) || strings.Contains(line, "panic") {
			out = append(out, line)
		}
	}
	if len(out) > 20 {
		out = append(out[:20], fmt.Sprintf("... and %d more", len(out)-20))
	}
	return strings.Join(out, "\n")
}
