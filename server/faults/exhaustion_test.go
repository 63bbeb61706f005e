package faults

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/careteam/careteam/client"
	"github.com/careteam/careteam/devtoken"
	pb "github.com/careteam/careteam/proto/careteam/v1"
)

// TestDatabaseStarvedOrSlow runs careteamd on a pool of two connections
// (its event listener holds a third, taken out of the pool for good) and
// makes the database stall from the test: first a table every call reads is locked, so calls wait
// and the pool runs dry; then the audit chains every call appends to are
// locked, so every write, and every failed call's own audit record,
// waits. In each, calls with a deadline must come back by it, with
// DEADLINE_EXCEEDED or with the server shedding them (RESOURCE_EXHAUSTED,
// UNAVAILABLE); calls that find no free connection within
// --db-acquire-wait must be shed, not queued; careteamd must finish each
// call itself too, not leave its handler waiting on the database; a call
// without a deadline must end by careteamd's --default-timeout (or be
// shed); and once the database answers again, careteamd must serve again.
func TestDatabaseStarvedOrSlow(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 55*time.Second)
	defer cancel()
	pg := startCluster(t)
	const defaultTimeout = 2 * time.Second
	const maxConns = 2
	s := startServer(t, pg.url(), "--db-max-conns", fmt.Sprint(maxConns), "--db-min-conns", "1", "--default-timeout", defaultTimeout.String(),
		"--db-acquire-wait", "300ms")
	newTeam(t, ctx, s)
	dr := s.client(t, "dr")
	tok, err := devtoken.Mint(s.dataDir, "dr", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// A client that sets no deadline of its own.
	drNoDeadline, err := client.Dial(s.addr, client.WithPlaintext(), client.WithToken(client.StaticToken(tok)), client.WithTimeout(0))
	if err != nil {
		t.Fatal(err)
	}
	defer drNoDeadline.Close()
	holder := connect(t, ctx, pg)
	var holderPID int
	if err := holder.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&holderPID); err != nil {
		t.Fatal(err)
	}

	const (
		calls    = 6
		deadline = time.Second
		// How late a call may come back to its caller.
		clientSlack = time.Second
		// How long careteamd may take to finish a call it has answered
		// DEADLINE_EXCEEDED: the deadline, then writing the failed
		// call's own audit record, which should be bounded too.
		serverBound = deadline + 8*time.Second
	)
	shed := []codes.Code{codes.DeadlineExceeded, codes.ResourceExhausted, codes.Unavailable}
	createPatient := func(ctx context.Context, c *client.Client, requestID string) error {
		ctx = metadata.AppendToOutgoingContext(ctx, "x-request-id", requestID)
		_, err := c.Patients.CreatePatient(ctx, &pb.CreatePatientRequest{Patient: &pb.Patient{GivenName: "Slow", FamilyName: "Patient", BirthDate: "1990-01-01"}})
		return err
	}

	shedCalls := 0
	for _, stall := range []struct{ name, sql string }{
		{"a table every call reads locked", `LOCK TABLE practitioners IN ACCESS EXCLUSIVE MODE`},
		{"the audit inbox locked", `LOCK TABLE audit_inbox IN EXCLUSIVE MODE`},
	} {
		tx, err := holder.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, stall.sql); err != nil {
			t.Fatal(err)
		}
		began := time.Now()

		// One call without a deadline: careteamd gives it --default-timeout.
		noDeadlineID := uuid.NewString()
		noDeadline := make(chan error, 1)
		go func() { noDeadline <- createPatient(context.WithoutCancel(ctx), drNoDeadline, noDeadlineID) }()

		type result struct {
			id      string
			err     error
			elapsed time.Duration
		}
		results := make([]result, calls)
		var wg sync.WaitGroup
		for i := range calls {
			wg.Go(func() {
				id := uuid.NewString()
				cctx, cancel := context.WithTimeout(ctx, deadline)
				defer cancel()
				start := time.Now()
				err := createPatient(cctx, dr, id)
				results[i] = result{id, err, time.Since(start)}
			})
		}
		wg.Wait()
		for _, r := range results {
			if r.elapsed > deadline+clientSlack {
				t.Errorf("%s: a call with a %v deadline came back after %v", stall.name, deadline, r.elapsed.Round(time.Millisecond))
			}
			if !slices.Contains(shed, status.Code(r.err)) {
				t.Errorf("%s: a call ended with %v, want one of %v", stall.name, r.err, shed)
			}
		}
		// careteamd's side: each call's log line, written when careteamd
		// has finished with it. CANCELLED there is the caller giving up at
		// its deadline before careteamd's own timer fired.
		for _, r := range results {
			line, ok := s.awaitCallLog(r.id, time.Until(began.Add(serverBound)))
			if !ok {
				t.Errorf("%s: careteamd had not finished a call %v after it began (deadline %v), with the database still stalled",
					stall.name, serverBound, deadline)
				continue
			}
			c := logField(line, "code")
			if !slices.ContainsFunc(append(shed, codes.Canceled), func(sc codes.Code) bool { return sc.String() == c }) {
				t.Errorf("%s: careteamd ended a call with %s: %s", stall.name, c, line)
			}
			if c == codes.Unavailable.String() {
				shedCalls++
			}
		}
		returned := false
		select {
		case err := <-noDeadline:
			returned = true
			if c := status.Code(err); c != codes.DeadlineExceeded && c != codes.Unavailable {
				t.Errorf("%s: a call without a deadline ended with %v, want DEADLINE_EXCEEDED after --default-timeout, or UNAVAILABLE", stall.name, err)
			}
			if took := time.Since(began); took > defaultTimeout+clientSlack+serverBound {
				t.Errorf("%s: a call without a deadline took %v", stall.name, took)
			}
		case <-time.After(time.Until(began.Add(defaultTimeout + serverBound))):
			t.Errorf("%s: a call without a deadline still hangs %v later (--default-timeout %v)", stall.name, time.Since(began).Round(time.Millisecond), defaultTimeout)
		}

		// Calls given up on must not leave sessions behind in PostgreSQL:
		// the pool bounds them, beside the event listener's.
		if n := pg.sessionsBut(t, ctx, holderPID); n > maxConns+1 {
			t.Errorf("%s: careteamd holds %d database sessions, more than --db-max-conns %d and its listener", stall.name, n, maxConns)
		}

		// The database answers again: so must careteamd.
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		released := time.Now()
		if !returned {
			select {
			case <-noDeadline:
			case <-time.After(10 * time.Second):
				t.Fatalf("%s: a call without a deadline still hangs 10s after the database recovered", stall.name)
			}
		}
		var last error
		if !waitUntil(15*time.Second, func() bool {
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			last = createPatient(cctx, dr, uuid.NewString())
			return last == nil
		}) {
			t.Fatalf("%s: careteamd did not recover within 15s of the database: %v\n%s", stall.name, last, s.logs.tail())
		}
		hctx, hcancel := context.WithTimeout(ctx, 10*time.Second)
		err = s.awaitHealth(hctx, healthpb.HealthCheckResponse_SERVING)
		hcancel()
		if err != nil {
			t.Fatalf("%s: %v", stall.name, err)
		}
		t.Logf("%s: stalled %v; serving again %v after the database recovered", stall.name,
			released.Sub(began).Round(time.Millisecond), time.Since(released).Round(time.Millisecond))
	}
	// The first calls to take the pool's two connections keep them until
	// their deadline: the calls queued behind them must have been shed.
	if shedCalls == 0 {
		t.Errorf("no call was shed with UNAVAILABLE while %d waited for the pool's %d connections", calls-maxConns, maxConns)
	}
	checkConsistency(t, ctx, connect(t, ctx, pg))
	verifyAudit(t, ctx, s.client(t, "auditor"), connect(t, ctx, pg))
	if t.Failed() {
		t.Logf("careteamd logs:\n%s", s.logs.tail())
	}
}

// awaitCallLog waits up to timeout for careteamd's log line of the call
// with the x-request-id id, which it writes when it has finished the call.
func (s *server) awaitCallLog(id string, timeout time.Duration) (string, bool) {
	var found string
	ok := waitUntil(max(timeout, 0), func() bool {
		for line := range strings.SplitSeq(s.logs.String(), "\n") {
			if strings.Contains(line, "msg=rpc") && strings.Contains(line, "request_id="+id+" ") {
				found = line
				return true
			}
		}
		return false
	})
	return found, ok
}

// logField is the value of key in a text log line.
func logField(line, key string) string {
	for f := range strings.FieldsSeq(line) {
		if v, ok := strings.CutPrefix(f, key+"="); ok {
			return v
		}
	}
	return fmt.Sprintf("(no %s)", key)
}

// sessionsBut counts the client sessions of the careteam database other
// than the test's own: careteamd's.
func (c *cluster) sessionsBut(t *testing.T, ctx context.Context, pid int) int {
	t.Helper()
	conn, err := pgx.Connect(ctx, c.url())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
		WHERE datname = current_database() AND backend_type = 'client backend' AND pid NOT IN (pg_backend_pid(), $1)`, pid).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
