// Package testdb gives each test a PostgreSQL database of its own, cloned in
// milliseconds from a template migrated once per test binary, so tests run
// in parallel against the real database. The server is the one named by
// CARETEAM_TEST_DATABASE_URL, or else a private PostgreSQL started from the
// machine's binaries for the test binary's lifetime.
package testdb

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/careteam/careteam/server/internal/pgembed"
	"github.com/careteam/careteam/server/internal/store/postgres"
)

// EnvURL names the environment variable of an existing PostgreSQL server
// (a URL to any database on it, as a role that may create databases).
const EnvURL = "CARETEAM_TEST_DATABASE_URL"

var (
	serverURL string // admin connection to the server
	template  string // migrated template database
	embedded  *pgembed.Server
	tempDir   string // holds the embedded cluster
	cloneMu   sync.Mutex
)

// Main wraps testing.M.Run for a package whose tests use New: it finds or
// starts the server, migrates the template, runs the tests and cleans up.
// Use it as: func TestMain(m *testing.M) { os.Exit(testdb.Main(m)) }.
func Main(m *testing.M) int {
	ctx := context.Background()
	if err := setUp(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "testdb:", err)
		return 1
	}
	code := m.Run()
	tearDown(ctx)
	return code
}

func setUp(ctx context.Context) error {
	serverURL = os.Getenv(EnvURL)
	if serverURL == "" {
		var err error
		if tempDir, err = os.MkdirTemp("", "careteam-testdb-"); err != nil {
			return err
		}
		// The PostgreSQL user must be able to reach the cluster directory
		// when the tests run as root.
		if err := os.Chmod(tempDir, 0o711); err != nil {
			return err
		}
		embedded, err = pgembed.Start(ctx, pgembed.Config{
			Dir:      filepath.Join(tempDir, "pg"),
			Database: "postgres",
			Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
			// Durability buys nothing in a throwaway cluster.
			Settings: map[string]string{"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off", "max_connections": "300"},
		})
		if err != nil {
			return fmt.Errorf("embedded PostgreSQL: %w", err)
		}
		serverURL = embedded.ConnString()
	}
	template = "careteam_tmpl_" + randomSuffix()
	if err := exec(ctx, `CREATE DATABASE `+pgx.Identifier{template}.Sanitize()); err != nil {
		return err
	}
	pool, err := pgxpool.New(ctx, withDatabase(serverURL, template))
	if err != nil {
		return err
	}
	defer pool.Close()
	if _, err := postgres.Migrate(ctx, pool, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		return err
	}
	return nil
}

func tearDown(ctx context.Context) {
	if embedded != nil {
		_ = embedded.Stop(ctx)
		_ = os.RemoveAll(tempDir)
		return
	}
	_ = exec(ctx, `DROP DATABASE IF EXISTS `+pgx.Identifier{template}.Sanitize()+` WITH (FORCE)`)
}

// New returns a pool on a fresh, migrated database that is dropped when the
// test ends.
func New(t testing.TB) *pgxpool.Pool {
	t.Helper()
	url := NewURL(t)
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatalf("testdb: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// NewURL returns the URL of a fresh, migrated database that is dropped when
// the test ends.
func NewURL(t testing.TB) string {
	t.Helper()
	if template == "" {
		t.Fatal("testdb: the package's TestMain must call testdb.Main")
	}
	return newDatabase(t, ` TEMPLATE `+pgx.Identifier{template}.Sanitize())
}

// NewEmptyURL returns the URL of a fresh database with no schema, dropped
// when the test ends: for tests of the migrations themselves.
func NewEmptyURL(t testing.TB) string {
	t.Helper()
	if serverURL == "" {
		t.Fatal("testdb: the package's TestMain must call testdb.Main")
	}
	return newDatabase(t, "")
}

func newDatabase(t testing.TB, options string) string {
	t.Helper()
	name := "careteam_test_" + randomSuffix()
	ctx := context.Background()
	// Cloning copies the template's files; one clone at a time keeps
	// PostgreSQL from refusing a template that another clone is reading.
	cloneMu.Lock()
	err := exec(ctx, `CREATE DATABASE `+pgx.Identifier{name}.Sanitize()+options)
	cloneMu.Unlock()
	if err != nil {
		t.Fatalf("testdb: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := exec(ctx, `DROP DATABASE IF EXISTS `+pgx.Identifier{name}.Sanitize()+` WITH (FORCE)`); err != nil {
			t.Errorf("testdb: dropping %s: %v", name, err)
		}
	})
	return withDatabase(serverURL, name)
}

func exec(ctx context.Context, sql string) error {
	conn, err := pgx.Connect(ctx, serverURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

// withDatabase returns url pointing at database db.
func withDatabase(url, db string) string {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		panic(fmt.Sprintf("testdb: bad server URL: %v", err))
	}
	cfg.Database = db
	// pgx has no config-to-URL function; keyword/value form is enough.
	dsn := fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable", cfg.Host, cfg.Port, cfg.User, db)
	if cfg.Password != "" {
		dsn += " password=" + quote(cfg.Password)
	}
	return dsn
}

func quote(s string) string {
	out := "'"
	for _, r := range s {
		if r == '\'' || r == '\\' {
			out += `\`
		}
		out += string(r)
	}
	return out + "'"
}

func randomSuffix() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
