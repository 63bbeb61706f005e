package postgres_test

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/careteam/careteam/server/internal/audit"
	"github.com/careteam/careteam/server/internal/careteam"
	"github.com/careteam/careteam/server/internal/store/postgres"
	"github.com/careteam/careteam/server/internal/testdb"
)

// record is an audit record of a call by subject; its chain follows from
// its request id.
func record(subject string, n int) audit.Record {
	return audit.Record{Time: time.Now().UTC(), Subject: subject, Role: "PHYSICIAN", Method: "/careteam.v1.Test/Call",
		Outcome: "OK", Purpose: "TREATMENT", RequestID: fmt.Sprintf("%s-%d-%s", subject, n, uuid.NewString())}
}

// TestAuditWritersDoNotWaitForTheSealer makes the sealer pause while it
// holds every chain head (a trigger of the test's own sleeps as the sealed
// records land) and appends records meanwhile: a call's record shares no
// row with the sealer, so each commits at once. Then everything is sealed
// and every chain's head checkpoint is at its last record.
func TestAuditWritersDoNotWaitForTheSealer(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := testdb.New(t)
	store := postgres.New(pool, quiet)
	if _, err := pool.Exec(ctx, `
		CREATE FUNCTION slow_seal() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN PERFORM pg_sleep(3); RETURN NULL; END $$;
		CREATE TRIGGER slow_seal AFTER INSERT ON audit_events FOR EACH STATEMENT EXECUTE FUNCTION slow_seal();`); err != nil {
		t.Fatal(err)
	}
	if err := store.AppendAudit(ctx, record("first", 0)); err != nil {
		t.Fatal(err)
	}
	sealed := make(chan error, 1)
	go func() { _, err := store.SealAudit(ctx); sealed <- err }()
	// Wait until the sealer sleeps with the heads locked.
	for {
		var n int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i := range 2 * audit.Chains {
		wctx, cancel := context.WithTimeout(ctx, time.Second)
		err := store.AppendAudit(wctx, record("writer", i))
		cancel()
		if err != nil {
			t.Fatalf("record %d waited for the sealer: %v", i, err)
		}
	}
	if err := <-sealed; err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `DROP TRIGGER slow_seal ON audit_events`); err != nil {
		t.Fatal(err)
	}
	if _, err := store.SealAudit(ctx); err != nil {
		t.Fatal(err)
	}
	checkHeads(t, store, 1+2*audit.Chains)
}

// checkHeads checks that every chain's head checkpoint is at its last
// record and that the chains hold want records in all.
func checkHeads(t *testing.T, store *postgres.Store, want int64) {
	t.Helper()
	ctx := t.Context()
	var heads []*careteam.AuditHead
	if err := store.Read(ctx, func(tx careteam.Tx) (err error) {
		heads, err = tx.AuditHeads(ctx)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, h := range heads {
		if h.Position != h.LastPosition || !bytes.Equal(h.Hash, h.LastHash) {
			t.Errorf("chain %d: checkpoint at %d, last record at %d", h.Chain, h.Position, h.LastPosition)
		}
		total += h.LastPosition
	}
	if total != want {
		t.Errorf("the chains hold %d records, want %d", total, want)
	}
}

// TestMigration14 appends and seals records as version 13 did (the head
// checkpoint moved per record), leaves some unsealed, migrates, and seals
// them and more with the checkpoint moved per statement: every head ends
// at its chain's last record.
func TestMigration14(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := newPool(t, testdb.NewEmptyURL(t), nil, 4)
	if err := postgres.MigrateTo(ctx, pool, 13); err != nil {
		t.Fatal(err)
	}
	store := postgres.New(pool, quiet)
	appendN := func(from, n int) {
		for i := from; i < from+n; i++ {
			if err := store.AppendAudit(ctx, record("before", i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	appendN(0, 40)
	if _, err := store.SealAudit(ctx); err != nil {
		t.Fatal(err)
	}
	appendN(40, 10) // left in the inbox across the migration
	if _, err := postgres.Migrate(ctx, pool, quiet); err != nil {
		t.Fatal(err)
	}
	appendN(50, 30)
	if n, err := store.SealAudit(ctx); err != nil || n != 40 {
		t.Fatalf("sealed %d (%v), want 40", n, err)
	}
	checkHeads(t, store, 80)
	if _, err := pool.Exec(ctx, `INSERT INTO audit_inbox (chain, canonical, time, subject, role, method, resources, patients,
		outcome, purpose, emergency_reason, request_id, peer, suppressed)
		VALUES (16, '', now(), 's', '', '', '{}', '{}', '', '', '', '', '', 0)`); err == nil {
		t.Error("a record for chain 16 was taken")
	}
}

// statementCounter counts the statements and COPYs its pool runs.
type statementCounter struct{ n atomic.Int64 }

func (c *statementCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	c.n.Add(1)
	return ctx
}
func (c *statementCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (c *statementCounter) TraceCopyFromStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceCopyFromStartData) context.Context {
	c.n.Add(1)
	return ctx
}
func (c *statementCounter) TraceCopyFromEnd(context.Context, *pgx.Conn, pgx.TraceCopyFromEndData) {}

// TestAuditRecordsCommitInGroups appends records from many callers at once:
// each caller returns once its record is committed, and the records of
// callers that arrived together share statements. Then a record the
// database refuses (a NUL byte, which careteamd's callers never send)
// fails alone, its group's other records written one by one.
func TestAuditRecordsCommitInGroups(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	counter := &statementCounter{}
	pool := newPool(t, testdb.NewURL(t), counter, 8)
	store := postgres.New(pool, quiet)
	appendAll := func(subject string, callers, bad int) []error {
		errs := make([]error, callers)
		var wg sync.WaitGroup
		for i := range callers {
			wg.Go(func() {
				r := record(subject, i)
				if i == bad {
					r.Subject = "bad\x00subject"
				}
				errs[i] = store.AppendAudit(ctx, r)
			})
		}
		wg.Wait()
		return errs
	}
	count := func(subject string) int {
		var n int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM audit_inbox WHERE subject = $1`, subject).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	const callers = 200
	for i, err := range appendAll("together", callers, -1) {
		if err != nil {
			t.Errorf("caller %d: %v", i, err)
		}
	}
	if n := count("together"); n != callers {
		t.Errorf("the inbox holds %d records, want %d", n, callers)
	}
	if n := counter.n.Load(); n > callers/2 {
		t.Errorf("%d records took %d statements: they were not grouped", callers, n)
	}

	for i, err := range appendAll("beside a bad one", 20, 7) {
		if (err != nil) != (i == 7) {
			t.Errorf("caller %d: %v", i, err)
		}
	}
	if n := count("beside a bad one"); n != 19 {
		t.Errorf("the inbox holds %d of the good records, want 19", n)
	}
}

// TestSealersTakeTurns: while another replica's sealer holds the turn,
// the background sealer leaves the work to it at once, and SealAudit (run
// before an audit list or verification) waits for its turn; then it seals.
func TestSealersTakeTurns(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := testdb.New(t)
	store := postgres.New(pool, quiet)
	if err := store.AppendAudit(ctx, record("one", 0)); err != nil {
		t.Fatal(err)
	}
	other, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Rollback(context.WithoutCancel(ctx))
	if _, err := other.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(postgres.SealLock)); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if n, err := store.SealInTurn(wctx); n != 0 || err != nil {
		t.Errorf("the background sealer sealed %d (%v) while another held the turn", n, err)
	}
	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancelShort()
	if _, err := store.SealAudit(short); err == nil {
		t.Error("SealAudit did not wait for the sealer holding the turn")
	}
	if err := other.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := store.SealAudit(ctx); n != 1 || err != nil {
		t.Errorf("SealAudit sealed %d (%v), want 1", n, err)
	}
}
