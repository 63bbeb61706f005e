package postgres_test

import (
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/careteam/careteam/server/internal/careteam"
	"github.com/careteam/careteam/server/internal/store/postgres"
	"github.com/careteam/careteam/server/internal/testdb"
)

// TestWebhookLeases: a due webhook is claimed by one replica at a time;
// once its lease runs out another may claim it, and then only the newer
// claim records its attempt, so a late replica cannot move the cursor
// back.
func TestWebhookLeases(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	store := postgres.New(testdb.New(t), quiet)
	now := time.Now().UTC().Truncate(time.Microsecond)
	w := &careteam.Webhook{ID: uuid.Must(uuid.NewV7()), Subject: "s", URL: "https://ehr.example/hook", Secret: []byte("k"), Cursor: 10,
		NextAttempt: now, CreateTime: now}
	claim := func(at, until time.Time) []*careteam.Webhook {
		var got []*careteam.Webhook
		if err := store.InTx(ctx, func(tx careteam.Tx) (err error) {
			got, err = tx.ClaimWebhooks(ctx, at, until, 10)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return got
	}
	finish := func(w *careteam.Webhook) bool {
		var ok bool
		if err := store.InTx(ctx, func(tx careteam.Tx) (err error) {
			ok, err = tx.FinishWebhookAttempt(ctx, w)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if err := store.InTx(ctx, func(tx careteam.Tx) error { return tx.InsertWebhook(ctx, w) }); err != nil {
		t.Fatal(err)
	}
	first := claim(now, now.Add(time.Minute))
	if len(first) != 1 {
		t.Fatalf("claimed %d", len(first))
	}
	if again := claim(now.Add(time.Second), now.Add(2*time.Minute)); len(again) != 0 {
		t.Fatal("a leased webhook was claimed twice")
	}
	second := claim(now.Add(2*time.Minute), now.Add(3*time.Minute))
	if len(second) != 1 {
		t.Fatal("a webhook whose lease ran out was not claimed")
	}
	second[0].Cursor = 300
	if !finish(second[0]) {
		t.Fatal("the live claim could not record its attempt")
	}
	first[0].Cursor = 110
	if finish(first[0]) {
		t.Error("the stale claim recorded its attempt")
	}
	var cursor int64
	if err := store.Read(ctx, func(tx careteam.Tx) error {
		got, err := tx.GetWebhook(ctx, w.ID)
		cursor = got.Cursor
		return err
	}); err != nil || cursor != 300 {
		t.Errorf("cursor %d (%v), want the live claim's 300", cursor, err)
	}
}
