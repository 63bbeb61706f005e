package postgres_test

import (
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/careteam/careteam/server/internal/careteam"
	"github.com/careteam/careteam/server/internal/store/postgres"
	"github.com/careteam/careteam/server/internal/testdb"
)

// TestReadOnlyServerIsUnavailable writes to a server that takes no writes,
// as a primary demoted by a failover, or a promoted standby before its
// monitor confirms it, answers: the write is ErrUnavailable, which
// callers retry (and by then the new primary takes it), not an internal
// error.
func TestReadOnlyServerIsUnavailable(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	cfg, err := pgxpool.ParseConfig(testdb.NewURL(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.RuntimeParams["default_transaction_read_only"] = "on"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	now := time.Now().UTC()
	org := &careteam.Organization{ID: uuid.Must(uuid.NewV7()), DisplayName: "Clinic", Kind: careteam.PhysicianPractice, Version: 1, CreateTime: now, UpdateTime: now}
	err = postgres.New(pool, quiet).InTx(ctx, func(tx careteam.Tx) error { return tx.InsertOrganization(ctx, org) })
	if !errors.Is(err, careteam.ErrUnavailable) {
		t.Fatalf("a write to a read-only server: %v, want ErrUnavailable", err)
	}
}
