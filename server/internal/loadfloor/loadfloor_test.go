package loadfloor

import (
	"context"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/careteam/careteam/server/internal/testdb"
)

func TestMain(m *testing.M) { os.Exit(testdb.Main(m)) }

func count(t *testing.T, f *Floor, table string) int {
	t.Helper()
	var n int
	if err := f.pool.QueryRow(context.Background(), `SELECT count(*) FROM careteam_floor.`+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// The floors work on a database with nothing in it, write what their
// shapes say, and start each run with their written tables empty.
func TestFloors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := testdb.NewEmptyURL(t)
	f, err := Open(ctx, url, 4)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, step := range []func() error{
		func() error { return f.StartSession(ctx, false) },
		func() error { return f.StartSession(ctx, true) },
		func() error { return f.Read(ctx, rng, false) },
		func() error { return f.Read(ctx, rng, true) },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	for table, want := range map[string]int{"clearance": 4, "visits": 4, "session": 2, "audit": 2, "event": 1} {
		if n := count(t, f, table); n != want {
			t.Errorf("%s: %d rows, want %d", table, n, want)
		}
	}
	if b, err := eventPayload(&f.rows[0], "sessions/0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", 3, time.Now()); err != nil || len(b) < 250 || len(b) > 350 {
		t.Errorf("the event's payload is %d bytes (%v), want about 300", len(b), err)
	}
	f.Close()

	f, err = Open(ctx, url, 6)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if n, s := count(t, f, "clearance"), count(t, f, "session"); n != 6 || s != 0 || len(f.rows) != 6 {
		t.Errorf("reopened for 6 callers: %d clearances (%d held), %d sessions; want 6 (6), 0", n, len(f.rows), s)
	}
}

// A session start waiting for a row another transaction locked shows in
// the sampler.
func TestSamplerSeesALockWait(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := testdb.NewEmptyURL(t)
	f, err := Open(ctx, url, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	holder, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close(ctx)
	tx, err := holder.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SELECT * FROM careteam_floor.clearance FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	s, err := SampleLocks(ctx, url, 10*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan error, 1)
	go func() { started <- f.StartSession(ctx, false) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var waiting bool
		if err := holder.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_stat_activity WHERE wait_event_type = 'Lock')`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	got, err := s.Stop()
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-started; err != nil {
		t.Fatal(err)
	}
	if got.Samples == 0 || got.Waiting == 0 || got.MaxWaiters != 1 || len(got.Kinds) == 0 || got.Kinds[0].LockType != "transactionid" {
		t.Fatalf("sampler saw %+v; want a waiter on a transactionid", got)
	}
}
