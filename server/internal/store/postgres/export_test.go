package postgres

import (
	"context"
	"io/fs"

	"github.com/jackc/pgx/v5/pgxpool"
)

// MigrateTo applies the migrations up to version, so that a test can
// load data as a released version stored it and migrate forward from it.
func MigrateTo(ctx context.Context, pool *pgxpool.Pool, version int64) error {
	provider, closeDB, err := migrationProvider(pool)
	if err != nil {
		return err
	}
	defer closeDB()
	_, err = provider.UpTo(ctx, version)
	return err
}

// MigrationVersions lists the embedded migrations' versions, in order.
func MigrationVersions(pool *pgxpool.Pool) ([]int64, error) {
	provider, closeDB, err := migrationProvider(pool)
	if err != nil {
		return nil, err
	}
	defer closeDB()
	var out []int64
	for _, s := range provider.ListSources() {
		out = append(out, s.Version)
	}
	return out, nil
}

// SealInTurn runs one background sealing pass: it leaves the work to a
// sealer that holds the turn.
func (s *Store) SealInTurn(ctx context.Context) (int, error) { return s.seal(ctx, false) }

// SealLock is the advisory lock that gives a sealer its turn.
const SealLock = sealLock

// Migrations are the embedded migration files.
func Migrations() fs.FS {
	dir, err := fs.Sub(migrations, "migrations")
	if err != nil {
		panic(err)
	}
	return dir
}

// MigrateFS applies the migrations in dir, as a released version shipped
// them, up to version.
func MigrateFS(ctx context.Context, pool *pgxpool.Pool, dir fs.FS, version int64) error {
	provider, closeDB, err := providerOf(pool, dir)
	if err != nil {
		return err
	}
	defer closeDB()
	_, err = provider.UpTo(ctx, version)
	return err
}

// MigrateDir applies the migrations in dir, as Migrate the embedded ones.
var MigrateDir = migrate
