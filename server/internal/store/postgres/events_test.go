package postgres_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/careteam/careteam/server/internal/careteam"
	"github.com/careteam/careteam/server/internal/store/postgres"
	"github.com/careteam/careteam/server/internal/testdb"
)

// TestEventHorizonUnderRacingCommits has writers take cursors and commit
// in whatever order their transactions end, some held open a while after
// taking theirs, while a reader follows the log up to each horizon: the
// reader must never find an event below one it already passed, and ends
// with every event committed.
func TestEventHorizonUnderRacingCommits(t *testing.T) {
	pool := testdb.New(t)
	ctx := t.Context()
	store := postgres.New(pool, slog.New(slog.NewTextHandler(io.Discard, nil)))
	const writers, each = 8, 40
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for range each {
				// The store's own protocol, with a pause between taking the
				// cursor and committing that the store's writers never make.
				tx, err := pool.Begin(ctx)
				if err != nil {
					t.Error(err)
					return
				}
				payload, _ := json.Marshal(careteam.Event{ID: uuid.New(), Type: careteam.EventType("TEST"), Time: time.Now()})
				if _, err := tx.Exec(ctx, `SELECT pg_current_xact_id()`); err != nil {
					t.Error(err)
					return
				}
				if _, err := tx.Exec(ctx, `INSERT INTO events (cursor, id, type, resource, time, audience, payload)
					VALUES (nextval('event_cursors'), $1, 'TEST', '', now(), '{all}', $2)`, uuid.New(), payload); err != nil {
					t.Error(err)
					return
				}
				time.Sleep(time.Duration(rng.IntN(3000)) * time.Microsecond)
				if err := tx.Commit(ctx); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()

	var after int64
	seen := 0
	follow := func() {
		through, err := store.EventHorizon(ctx, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var batch []*careteam.Event
		if err := store.Read(ctx, func(tx careteam.Tx) (err error) {
			batch, err = tx.ListEvents(ctx, nil, careteam.EventFilter{}, 0, through, 100000)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		// Everything up to the reader's position was there before: the
		// horizon moved past nothing still to come.
		n := 0
		for _, e := range batch {
			if e.Cursor <= after {
				n++
			}
		}
		if n != seen {
			t.Fatalf("%d events at or below cursor %d, where the reader had found %d", n, after, seen)
		}
		if len(batch) > 0 {
			after, seen = batch[len(batch)-1].Cursor, len(batch)
		}
	}
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
		}
		follow()
	}
	follow()
	if seen != writers*each {
		t.Errorf("the reader found %d events, want %d", seen, writers*each)
	}
}
