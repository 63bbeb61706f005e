package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"regexp"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

//go:embed migrations/*.sql
var migrations embed.FS

// ErrSchemaTooNew is returned by Migrate for a database a newer careteamd
// migrated and did not declare this one able to serve.
var ErrSchemaTooNew = errors.New("postgres: schema newer than this careteamd")

// lastUnruledMigration is the last migration released before the rule that
// migrations only expand: each of them, as far as compatibility goes, takes
// something away.
const lastUnruledMigration = 19

// Migrate applies the embedded migrations that the database lacks. A
// session-level advisory lock makes replicas starting at once apply each
// migration exactly once. It returns the schema version.
func Migrate(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger) (int64, error) {
	dir, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return 0, err
	}
	return migrate(ctx, pool, dir, log)
}

func migrate(ctx context.Context, pool *pgxpool.Pool, dir fs.FS, log *slog.Logger) (int64, error) {
	provider, closeDB, err := providerOf(pool, dir)
	if err != nil {
		return 0, err
	}
	defer closeDB()
	current, err := provider.GetDBVersion(ctx)
	if err != nil {
		return 0, fmt.Errorf("schema version: %w", err)
	}
	sources := provider.ListSources()
	if known := sources[len(sources)-1].Version; current > known {
		return current, servesNewer(ctx, pool, current, known, log)
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
	if version <= lastUnruledMigration {
		return version, nil // a test's partial schema, without the table
	}
	// What this run applied, goose applied under its lock, in order, to
	// the version before the first of them: only that says which release
	// served the database until now. Without (another replica migrated, or
	// one died before recording), only this schema's careteamd may serve,
	// unless the one that migrated recorded more.
	at, from := version, version
	if len(results) > 0 {
		at = results[len(results)-1].Source.Version
		if from, err = servesFrom(dir, sources, results); err != nil {
			return 0, err
		}
	}
	if _, err := pool.Exec(ctx, `INSERT INTO schema_compatibility (version, serves_from) VALUES ($1, $2)
		ON CONFLICT (version) DO UPDATE SET serves_from = least(schema_compatibility.serves_from, excluded.serves_from)`, at, from); err != nil {
		return 0, fmt.Errorf("recording the schema's compatibility: %w", err)
	}
	return version, nil
}

// Known is the version of the newest migration this careteamd carries.
func Known() int64 {
	files, _ := fs.Glob(migrations, "migrations/*.sql")
	var newest int64
	for _, f := range files {
		v, err := strconv.ParseInt(strings.SplitN(path.Base(f), "_", 2)[0], 10, 64)
		if err == nil && v > newest {
			newest = v
		}
	}
	return newest
}

// servesNewer decides whether a careteamd whose migrations end at known
// may serve a database a newer careteamd migrated to current: only if
// that one recorded it may (a rolling upgrade's previous release, or a
// rollback by one release). Otherwise the database holds what this
// careteamd does not know to keep consistent (a binary rolled back
// further), and serving it could corrupt it.
func servesNewer(ctx context.Context, pool *pgxpool.Pool, current, known int64, log *slog.Logger) error {
	var from int64
	err := pool.QueryRow(ctx, `SELECT serves_from FROM schema_compatibility WHERE version = $1`, current).Scan(&from)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("schema compatibility: %w", err)
	}
	if err != nil || known < from {
		return fmt.Errorf("%w: the database's schema is at version %d and this careteamd knows versions up to %d; "+
			"run the careteamd that migrated it, or restore a backup taken before", ErrSchemaTooNew, current, known)
	}
	log.WarnContext(ctx, "the database's schema is newer than this careteamd's, and the careteamd that migrated it declared this one able to serve it: finish the upgrade",
		"version", current, "known", known)
	return nil
}

// servesFrom is the oldest schema whose careteamd may serve the database
// once results were applied: the one before them (the release that served
// it until then), raised past what an applied migration takes away. A
// "-- contract:" migration takes away only what the release before the
// previous one used, so the schema just before it may still be served; a
// migration released before the rule may have taken anything, so only its
// own schema.
func servesFrom(dir fs.FS, sources []*goose.Source, results []*goose.MigrationResult) (int64, error) {
	var from int64
	for _, s := range sources {
		if s.Version < results[0].Source.Version {
			from = s.Version
		}
	}
	for _, r := range results {
		v := r.Source.Version
		if v <= lastUnruledMigration {
			from = max(from, v)
			continue
		}
		text, err := fs.ReadFile(dir, r.Source.Path)
		if err != nil {
			return 0, fmt.Errorf("migration %s: %w", r.Source.Path, err)
		}
		if contractLine.Match(text) {
			from = max(from, v-1)
		}
	}
	return from, nil
}

// contractLine marks a migration that takes away what the release before
// the previous one used: a line of its own starting "-- contract:".
// .ci/migrations.sh reads the same mark.
var contractLine = regexp.MustCompile(`(?m)^[ \t]*-- contract:`)

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
