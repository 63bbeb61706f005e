package faults

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// TestFailoverMidLoad kills the primary of a pg_auto_failover cluster (its
// pg_autoctl and every PostgreSQL process, as when its machine dies) while
// careteamd, given both nodes in one multi-host URL, writes under load and
// a watcher follows the events. The monitor promotes the synchronous
// standby; careteamd must find it by itself, without a restart: calls fail
// only with retryable codes meanwhile, health goes NOT_SERVING and back,
// and afterwards every acknowledged write is on the new primary exactly
// once, the audit chain verifies and keeps being sealed there, and the
// watcher has every event once, in order. The client-visible
// unavailability (first failed attempt to first success) is logged as the
// figure the README quotes.
func TestFailoverMidLoad(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 110*time.Second)
	defer cancel()
	ha := startHACluster(t, ctx)
	s := startServer(t, ha.url(), "--heartbeat", "200ms")
	tm := newTeam(t, ctx, s)
	w := watchEvents(t, ctx, s.client(t, "dr"))
	referrals := tm.readyReferrals(t, ctx, s, 3)
	l := newLoad(t, ctx)
	for range 2 {
		l.patients(s.client(t, "dr"), "dr")
		l.referrals(s.client(t, "dr"), "dr", tm)
	}
	l.sessions(s.client(t, "lmt"), "lmt", referrals)
	l.waitAcked(30, 15*time.Second)
	health := watchHealth(t, ctx, s)

	victim := ha.primary(ctx)
	killed := time.Now()
	ha.kill(victim)
	acked := l.ledger.acked.Load()
	l.waitAcked(acked+30, 30*time.Second)
	first, back, ok := l.ledger.outage(killed)
	if !ok {
		t.Fatalf("no call failed after the primary died, or none succeeded since: %s", l.ledger.summary())
	}
	unavailable := back.Sub(first)
	t.Logf("client-visible unavailability: %v (first failed attempt %v after the kill, first success %v after it)",
		unavailable.Round(time.Millisecond), first.Sub(killed).Round(time.Millisecond), back.Sub(killed).Round(time.Millisecond))
	promoted := ha.primary(ctx)
	if promoted == victim {
		t.Fatalf("%s is still the primary", victim.name)
	}
	hctx, hcancel := context.WithTimeout(ctx, 10*time.Second)
	defer hcancel()
	if err := s.awaitHealth(hctx, healthpb.HealthCheckResponse_SERVING); err != nil {
		t.Fatalf("health after the failover: %v", err)
	}
	// careteamd's health pings the database every second: an outage
	// longer than two pings must show (a shorter one may fall between).
	if seen := health.stop(); unavailable > 2*time.Second && !seen[healthpb.HealthCheckResponse_NOT_SERVING] {
		t.Errorf("health stayed SERVING through %v without a database (seen: %v)", unavailable, seen)
	}
	l.stop()
	t.Logf("%s failed over to %s: %s", victim.name, promoted.name, l.ledger.summary())

	l.ledger.checkCodes(t, retryable...)
	if _, cs, _ := l.ledger.snapshot(); cs[codes.Unavailable] == 0 {
		t.Errorf("no call failed with UNAVAILABLE while there was no primary: %s", l.ledger.summary())
	}
	conn := ha.connect(ctx, promoted, "careteam")
	defer conn.Close(context.Background())
	checkLedger(t, ctx, conn, l.ledger)
	checkConsistency(t, ctx, conn)
	// The sealer goes on on the new primary: the inbox empties.
	if !waitUntil(10*time.Second, func() bool {
		var n int
		return conn.QueryRow(ctx, `SELECT count(*) FROM audit_inbox`).Scan(&n) == nil && n == 0
	}) {
		t.Error("audit records stay unsealed on the new primary")
	}
	verifyAudit(t, ctx, s.client(t, "auditor"), conn)
	w.check(t, ctx, s.client(t, "dr"))
	if !strings.Contains(s.logs.String(), "event notifications interrupted; reconnecting") {
		t.Error("careteamd's event listener never lost its connection to the old primary")
	}
	if t.Failed() {
		t.Logf("careteamd's failed calls:\n%s", s.failedCalls())
	}
}

// healthWatch records every health status careteamd reports.
type healthWatch struct {
	mu   sync.Mutex
	seen map[healthpb.HealthCheckResponse_ServingStatus]bool
	stop func() map[healthpb.HealthCheckResponse_ServingStatus]bool
}

// watchHealth polls careteamd's health every 50 ms until stop.
func watchHealth(t *testing.T, ctx context.Context, s *server) *healthWatch {
	t.Helper()
	h := &healthWatch{seen: map[healthpb.HealthCheckResponse_ServingStatus]bool{}}
	hctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	conn := s.client(t, "admin")
	go func() {
		defer close(done)
		hc := healthpb.NewHealthClient(conn.Conn())
		for hctx.Err() == nil {
			cctx, ccancel := context.WithTimeout(hctx, time.Second)
			resp, err := hc.Check(cctx, &healthpb.HealthCheckRequest{})
			ccancel()
			if err == nil {
				h.mu.Lock()
				h.seen[resp.GetStatus()] = true
				h.mu.Unlock()
			}
			select {
			case <-hctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	h.stop = sync.OnceValue(func() map[healthpb.HealthCheckResponse_ServingStatus]bool {
		cancel()
		<-done
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.seen
	})
	t.Cleanup(func() { h.stop() })
	return h
}
