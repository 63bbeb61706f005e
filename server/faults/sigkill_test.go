package faults

import (
	"context"
	"testing"
	"time"
)

// TestServerKilledMidLoad kills careteamd with SIGKILL under a load of
// patient, referral and session writes, twice, and starts it again on the
// same database and data directory each time. Every write acknowledged to
// a caller must be in the database exactly once; no referral, session,
// audit record or event may be half written (each commits with its
// transaction or not at all: every referral has its REFERRAL_CREATED
// event and its audit record, every session its visit counted, its event
// and its audit record, the event log and every audit chain have no gap);
// and an auditor's VerifyAuditLog must report the chains intact.
func TestServerKilledMidLoad(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 55*time.Second)
	defer cancel()
	pg := startCluster(t)
	s := startServer(t, pg.url())
	tm := newTeam(t, ctx, s)
	ready := tm.readyReferrals(t, ctx, s, 6)

	l := newLoad(t, ctx)
	l.patients(s.client(t, "dr"), "dr")
	l.referrals(s.client(t, "dr"), "dr", tm)
	l.referrals(s.client(t, "dr"), "dr", tm)
	// Two therapists' sessions contend for the same referral's lock.
	lmt := s.client(t, "lmt")
	l.sessions(lmt, "lmt", ready)
	l.sessions(s.client(t, "lmt"), "lmt", ready)
	l.waitAcked(30, 15*time.Second)

	for i := range 3 {
		failedBefore := l.ledger.failures()
		// The first time, careteamd dies with a write in the middle of its
		// transaction, waiting for a lock the test holds until careteamd
		// is back: the dead server's transaction (its request_id claimed)
		// outlives it, and the caller's retry on the new one must wait for
		// it to roll back, then write once.
		release := func() {}
		if i == 0 {
			_, release = pg.pinWrite(t, ctx)
		}
		s.kill()
		killed := time.Now()
		// Stay down until callers have seen careteamd gone: the client's
		// own retries outlast a quick restart, and the point is the
		// caller's retry of a write whose outcome it does not know.
		if !waitUntil(10*time.Second, func() bool { return l.ledger.failures() > failedBefore }) {
			t.Fatalf("no call failed in 10s with careteamd killed: %s", l.ledger.summary())
		}
		s.start()
		release()
		t.Logf("kill %d: careteamd serving again %v after SIGKILL", i+1, time.Since(killed).Round(time.Millisecond))
		l.waitAcked(30, 15*time.Second)
	}
	l.stop()
	t.Log(l.ledger.summary())

	l.ledger.checkCodes(t, retryable...)
	conn := connect(t, ctx, pg)
	checkLedger(t, ctx, conn, l.ledger)
	checkConsistency(t, ctx, conn)
	var sessions int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM sessions`).Scan(&sessions); err != nil {
		t.Fatal(err)
	}
	if sessions == 0 {
		t.Error("the load started no session")
	}
	verifyAudit(t, ctx, s.client(t, "auditor"), conn)
	if t.Failed() {
		t.Logf("careteamd's failed calls:\n%s", s.failedCalls())
	}
}
