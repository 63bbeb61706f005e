package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

//go:embed migrations/*.sql
var migrations embed.FS

// ErrSchemaTooNew is returned by Migrate for a database a newer careteamd
// migrated.
var ErrSchemaTooNew = errors.New("postgres: schema newer than this careteamd")

// Migrate applies the embedded migrations that the database lacks. A
// session-level advisory lock makes replicas starting at once apply each
// migration exactly once. It returns the schema version.
func Migrate(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger) (int64, error) {
	provider, closeDB, err := migrationProvider(pool)
	if err != nil {
		return 0, err
	}
	defer closeDB()
	// A database a newer careteamd migrated holds tables and columns this
	// one does not know to keep consistent (a rolled-back binary): serving
	// it could corrupt what the newer one wrote.
	current, err := provider.GetDBVersion(ctx)
	if err != nil {
		return 0, fmt.Errorf("schema version: %w", err)
	}
	sources := provider.ListSources()
	if known := sources[len(sources)-1].Version; current > known {
		return 0, fmt.Errorf("%w: the database's schema is at version %d and this careteamd knows versions up to %d; "+
			"run the careteamd that migrated it, or restore a backup taken before", ErrSchemaTooNew, current, known)
	}
	results, err := provider.Up(ctx)
	if err != nil {
		return 0, fmt.Errorf("apply migrations: %w", err)
	}
	for _, r := range results {
		log.InfoContext(ctx, "migration applied", "version", r.Source.Version, "file", r.Source.Path, "duration", r.Duration)
	}
	version, err := provider.GetDBVersion(ctx)
	if err != nil {
		return 0, fmt.Errorf("schema version: %w", err)
	}
	return version, nil
}

// migrationProvider runs the embedded migrations on pool under the
// advisory lock; closeDB releases what it holds.
func migrationProvider(pool *pgxpool.Pool) (p *goose.Provider, closeDB func() error, err error) {
	dir, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return nil, nil, err
	}
	return providerOf(pool, dir)
}

// providerOf runs the migrations in dir on pool under the advisory lock.
func providerOf(pool *pgxpool.Pool, dir fs.FS) (p *goose.Provider, closeDB func() error, err error) {
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return nil, nil, fmt.Errorf("migration lock: %w", err)
	}
	db := stdlib.OpenDBFromPool(pool)
	p, err = goose.NewProvider(goose.DialectPostgres, db, dir,
		goose.WithSessionLocker(locker), goose.WithDisableGlobalRegistry(true))
	if err != nil {
		db.Close()
		return nil, nil, fmt.Errorf("migrations: %w", err)
	}
	return p, db.Close, nil
}
