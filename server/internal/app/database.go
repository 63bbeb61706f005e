package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/careteam/careteam/server/internal/config"
	"github.com/careteam/careteam/server/internal/pgembed"
	"github.com/careteam/careteam/server/internal/store/postgres"
	"github.com/careteam/careteam/server/internal/telemetry"
)

// The roles the embedded default sets up: the schema's owner, which
// migrates, and the role careteamd serves as (see postgres.EnsureRoles).
const (
	embeddedOwner   = "careteam_owner"
	embeddedRuntime = "careteam_runtime"
)

// database is careteamd's database: the pool it serves from, and how it
// brings the schema up to date.
type database struct {
	pool *pgxpool.Pool
	// ownerURL migrates and grants runtimeRole what serving needs; empty,
	// the serving role migrates.
	ownerURL    string
	runtimeRole string
	close       func()
}

// migrate brings the schema up to date as its owner, grants the serving
// role its rights, and returns the schema's version.
func (d *database) migrate(ctx context.Context, log *slog.Logger) (int64, error) {
	if d.ownerURL == "" {
		return postgres.Migrate(ctx, d.pool, log)
	}
	owner, err := pgxpool.New(ctx, d.ownerURL)
	if err != nil {
		return 0, errors.New("the database owner's URL is malformed")
	}
	defer owner.Close()
	version, err := postgres.Migrate(ctx, owner, log)
	if err != nil || version > postgres.Known() {
		// A newer careteamd migrated, and granted what its tables need,
		// which this one does not know.
		return version, err
	}
	return version, postgres.GrantRuntime(ctx, owner, d.runtimeRole)
}

// openDatabase connects to the configured database, or starts the embedded
// one and sets up its roles. tracing, when set, traces its queries.
func openDatabase(ctx context.Context, cfg *config.Config, log *slog.Logger, tracing *telemetry.Tracing) (*database, error) {
	d := &database{ownerURL: cfg.DatabaseOwnerURL}
	databaseURL := cfg.DatabaseURL
	stopPG := func() {}
	if cfg.Embedded() {
		if err := os.MkdirAll(cfg.DataDir, 0o711); err != nil {
			return nil, fmt.Errorf("data directory: %w", err)
		}
		pg, err := pgembed.Start(ctx, pgembed.Config{
			Dir: filepath.Join(cfg.DataDir, "postgres"), Database: "careteam", Logger: log,
			WALArchive: cfg.WALArchive,
		})
		if err != nil {
			return nil, fmt.Errorf("pgembed.Start: %w", err)
		}
		stopPG = func() {
			if err := pg.Stop(context.WithoutCancel(ctx)); err != nil {
				log.Error("stopping PostgreSQL", "error", err.Error())
			}
		}
		if err := setUpEmbeddedRoles(ctx, pg.ConnString()); err != nil {
			stopPG()
			return nil, err
		}
		d.ownerURL = withUser(pg.ConnString(), embeddedOwner)
		databaseURL = withUser(pg.ConnString(), embeddedRuntime)
	}
	if d.ownerURL != "" {
		pc, err := pgxpool.ParseConfig(databaseURL)
		if err != nil || pc.ConnConfig.User == "" {
			stopPG()
			return nil, errors.New("--database-url must name its user when another role owns the schema")
		}
		d.runtimeRole = pc.ConnConfig.User
	}
	pool, err := newPool(ctx, cfg, databaseURL, tracing)
	if err != nil {
		stopPG()
		return nil, fmt.Errorf("newPool: %w", err)
	}
	for _, u := range []string{databaseURL, d.ownerURL} {
		if host, why := exposed(u); why != "" {
			log.Warn("the database is reached over the network "+why+"; use sslmode=verify-full", "host", host)
		}
	}
	d.pool, d.close = pool, func() { pool.Close(); stopPG() }
	return d, nil
}

// setUpEmbeddedRoles makes the embedded database's owner and runtime roles
// as its superuser.
func setUpEmbeddedRoles(ctx context.Context, superURL string) error {
	super, err := pgxpool.New(ctx, superURL)
	if err != nil {
		return err
	}
	defer super.Close()
	if err := postgres.EnsureRoles(ctx, super, embeddedOwner, embeddedRuntime); err != nil {
		return fmt.Errorf("embedded database roles: %w", err)
	}
	return nil
}

// withUser returns the connection URL u as user.
func withUser(u, user string) string {
	parsed, err := url.Parse(u)
	if err != nil {
		return u
	}
	parsed.User = url.User(user)
	return parsed.String()
}

// exposed reports a database URL that reaches a host other than this one
// with patient data open to the network: in the clear where the server
// allows it (sslmode disable, allow or prefer), or over TLS that does not
// check whose certificate it is (require, verify-ca). It says how, or "".
func exposed(u string) (host, why string) {
	if u == "" {
		return "", ""
	}
	cc, err := pgconn.ParseConfig(u)
	if err != nil {
		return "", ""
	}
	local := strings.HasPrefix(cc.Host, "/")
	if ip := net.ParseIP(cc.Host); ip != nil && ip.IsLoopback() || cc.Host == "localhost" {
		local = true
	}
	if local {
		return "", ""
	}
	plaintext := cc.TLSConfig == nil
	for _, fb := range cc.Fallbacks {
		plaintext = plaintext || fb.TLSConfig == nil
	}
	switch {
	case plaintext:
		return cc.Host, "possibly without TLS"
	case cc.TLSConfig.InsecureSkipVerify && cc.TLSConfig.VerifyPeerCertificate == nil:
		return cc.Host, "with TLS that does not check the server's certificate"
	case cc.TLSConfig.InsecureSkipVerify:
		return cc.Host, "with TLS that does not check the server's name"
	}
	return "", ""
}

func newPool(ctx context.Context, cfg *config.Config, url string, tracing *telemetry.Tracing) (*pgxpool.Pool, error) {
	pc, err := pgxpool.ParseConfig(url)
	if err != nil {
		// The URL may hold a password: say only that it is malformed.
		return nil, errors.New("the database URL is malformed")
	}
	if tracing != nil {
		tracing.TracePool(pc)
	}
	pc.MaxConns = int32(cfg.DBMaxConns)
	pc.MinConns = int32(cfg.DBMinConns)
	return pgxpool.NewWithConfig(ctx, pc)
}
