// Command careteamd is the careteam gRPC server. Run without a database URL
// it starts its own PostgreSQL in its data directory; without an identity
// provider it makes a development signing key (local use only).
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"

	"github.com/careteam/careteam/client/devtoken"
	"github.com/careteam/careteam/server/internal/api"
	"github.com/careteam/careteam/server/internal/auth"
	"github.com/careteam/careteam/server/internal/careteam"
	"github.com/careteam/careteam/server/internal/clock"
	"github.com/careteam/careteam/server/internal/config"
	"github.com/careteam/careteam/server/internal/events"
	"github.com/careteam/careteam/server/internal/pgembed"
	"github.com/careteam/careteam/server/internal/store/postgres"
	"github.com/careteam/careteam/server/internal/telemetry"
	"github.com/careteam/careteam/server/internal/tlsconfig"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := realMain(ctx); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "careteamd:", err)
		os.Exit(1)
	}
}

func realMain(ctx context.Context) error {
	defaultDataDir, err := devtoken.DefaultDataDir()
	if err != nil {
		return err
	}
	args, prune := os.Args[1:], false
	if len(args) > 0 && args[0] == "prune-events" {
		args, prune = args[1:], true
	}
	cfg, err := config.Parse(args, os.Getenv, defaultDataDir, os.Stderr)
	if err != nil {
		return err
	}
	log, err := newLogger(cfg)
	if err != nil {
		return err
	}
	slog.SetDefault(log)
	if prune {
		return pruneEvents(ctx, cfg, log)
	}
	return serve(ctx, cfg, log)
}

// pruneEvents deletes events older than --event-retention, on the
// configured or embedded database; watchers behind it then get OUT_OF_RANGE.
func pruneEvents(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	db, err := openDatabase(ctx, cfg, log, nil)
	if err != nil {
		return err
	}
	defer db.close()
	if _, err := db.migrate(ctx, log); err != nil {
		return fmt.Errorf("postgres.Migrate: %w", err)
	}
	service := careteam.NewService(postgres.New(db.pool, log), clock.System{}, careteam.Config{})
	before := time.Now().Add(-cfg.EventRetention)
	n, err := service.PruneEvents(ctx, before)
	if err != nil {
		return fmt.Errorf("PruneEvents: %w", err)
	}
	log.Info("events pruned", "deleted", n, "older_than", before)
	return nil
}

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
	if err != nil {
		return 0, err
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
		pg, err := pgembed.Start(ctx, pgembed.Config{Dir: filepath.Join(cfg.DataDir, "postgres"), Database: "careteam", Logger: log})
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

func serve(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	// Before the database starts, so that a bad certificate fails at once.
	var serverOpts []grpc.ServerOption
	if cfg.TLS() {
		tlsCfg, err := newTLSConfig(cfg, log)
		if err != nil {
			return err
		}
		serverOpts = append(serverOpts, grpc.Creds(credentials.NewTLS(tlsCfg)))
	} else if cfg.PlaintextOffLoopback() {
		log.Warn("INSECURE PLAINTEXT: listening without TLS on a non-loopback address (--insecure-plaintext); bearer tokens and patient data cross the network unencrypted. Use only behind a TLS-terminating proxy on a network you trust.",
			"address", cfg.Listen)
	}

	var tracing *telemetry.Tracing
	if cfg.OTLPEndpoint != "" {
		var err error
		if tracing, err = telemetry.StartTracing(ctx, cfg.OTLPEndpoint); err != nil {
			return err
		}
		defer func() { _ = tracing.Shutdown(context.WithoutCancel(ctx)) }()
		serverOpts = append(serverOpts, tracing.ServerOption())
	}
	db, err := openDatabase(ctx, cfg, log, tracing)
	if err != nil {
		return err
	}
	defer db.close()
	pool := db.pool

	verifier, err := newVerifier(cfg, log)
	if err != nil {
		return fmt.Errorf("newVerifier: %w", err)
	}

	healthSrv := health.NewServer()
	healthSrv.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	store := postgres.New(pool, log)
	service := careteam.NewService(store, clock.System{}, careteam.Config{
		BootstrapAdmin: cfg.BootstrapAdmin,
		AckWindow:      cfg.AckWindow,
	})
	serverOpts = append(serverOpts,
		grpc.MaxRecvMsgSize(cfg.MaxMessageBytes),
		// Clients may ping no more often than every 10s, with or without
		// calls in flight; idle connections are closed after 15 minutes,
		// and every connection once it is --max-connection-age old.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: 15 * time.Minute, Time: 2 * time.Minute, Timeout: 20 * time.Second,
			MaxConnectionAge: cfg.MaxConnectionAge, MaxConnectionAgeGrace: 30 * time.Second}),
	)
	// The event hub outlives nothing: it stops before the server drains,
	// so that open event streams end and let the drain finish.
	hubCtx, stopHub := context.WithCancel(context.WithoutCancel(ctx))
	defer stopHub()
	hub := events.NewHub(service, events.Config{Buffer: cfg.EventBuffer}, log)
	metrics := telemetry.NewMetrics(pool, hub.Watchers)
	store.ObserveAudit(metrics.AuditWritten)
	store.ShedAfter(cfg.DBAcquireWait)
	// The metrics interceptors go first, so that they time whole calls.
	serverOpts = append(serverOpts,
		grpc.ChainUnaryInterceptor(metrics.GRPC.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(metrics.GRPC.StreamServerInterceptor()))
	var schemaReady atomic.Bool
	srv, err := api.NewServer(api.Config{
		Service: service, Audit: store, Verifier: verifier, Health: healthSrv, Log: log, Events: hub,
		Heartbeat: cfg.Heartbeat, StreamRecheck: cfg.StreamRecheck, Observer: metrics, Ready: schemaReady.Load,
		Limits: api.Limits{PerPrincipalRate: cfg.RateLimit, Burst: cfg.RateBurst, DefaultTimeout: cfg.DefaultTimeout},
	}, serverOpts...)
	if err != nil {
		return fmt.Errorf("api.NewServer: %w", err)
	}
	metrics.GRPC.InitializeMetrics(srv)
	if cfg.MetricsListen != "" {
		if err := telemetry.Serve(hubCtx, cfg.MetricsListen, metrics.Handler(), log, "metrics"); err != nil {
			return err
		}
	}
	if cfg.DebugListen != "" {
		if err := telemetry.Serve(hubCtx, cfg.DebugListen, telemetry.DebugHandler(), log, "debug"); err != nil {
			return err
		}
	}
	lis, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(lis) }()
	log.Info("listening", "address", lis.Addr().String(), "tls", cfg.TLS(), "client_certificates", cfg.ClientCA != "",
		"embedded_database", cfg.Embedded(), "dev_mode", cfg.DevMode())

	// Health says NOT_SERVING until the schema is current.
	version, err := db.migrate(ctx, log)
	if err != nil {
		srv.Stop()
		return fmt.Errorf("postgres.Migrate: %w", err)
	}
	log.Info("schema ready", "version", version)
	schemaReady.Store(true)
	metrics.SchemaVersion(version)
	go watchDatabase(ctx, pool, healthSrv, log)
	go hub.Run(hubCtx)
	go store.Listen(hubCtx, hub.Wake)
	go store.Seal(hubCtx)
	go sweep(hubCtx, service, log)

	select {
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down", "timeout", cfg.ShutdownTimeout)
	healthSrv.Shutdown()
	stopHub()
	drained := make(chan struct{})
	go func() {
		srv.GracefulStop()
		close(drained)
	}()
	select {
	case <-drained:
	case <-time.After(cfg.ShutdownTimeout):
		log.Warn("shutdown timeout: cutting remaining calls")
		srv.Stop()
	}
	return nil
}

// sweepEvery is how often careteamd writes what time alone changes:
// referrals whose validity has passed are announced to watchers, and
// scheduled clearances whose window has opened come into force. The gate
// never waits for the sweep (it judges every window when a session
// starts), so a minute is prompt.
const sweepEvery = time.Minute

// sweep runs the time-driven work until ctx ends, a batch at a time.
func sweep(ctx context.Context, service *careteam.Service, log *slog.Logger) {
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		drain(ctx, log, "expired referrals announced", service.AnnounceExpiries)
		drain(ctx, log, "scheduled clearances in force", service.SettleScheduledClearances)
	}
}

// drain calls step with a batch size until it returns a short batch or
// fails.
func drain(ctx context.Context, log *slog.Logger, done string, step func(context.Context, int) (int, error)) {
	const batch = 500
	for {
		n, err := step(ctx, batch)
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("sweep failed", "step", done, "error", err.Error())
			}
			return
		}
		if n > 0 {
			log.Info(done, "count", n)
		}
		if n < batch {
			return
		}
	}
}

func newLogger(cfg *config.Config) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
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

// newTLSConfig loads the server certificate, which is reloaded when its files
// change, and with --client-ca the CAs whose client certificates prove a
// subject.
func newTLSConfig(cfg *config.Config, log *slog.Logger) (*tls.Config, error) {
	cert, err := tlsconfig.LoadCertificate(cfg.TLSCert, cfg.TLSKey, log)
	if err != nil {
		return nil, err
	}
	var clientCAs *x509.CertPool
	if cfg.ClientCA != "" {
		if clientCAs, err = tlsconfig.LoadCertPool(cfg.ClientCA); err != nil {
			return nil, err
		}
	}
	return tlsconfig.Server(cert, clientCAs), nil
}

// newVerifier trusts the configured identity provider, or in dev mode a key
// of careteamd's own, made in its data directory.
func newVerifier(cfg *config.Config, log *slog.Logger) (*auth.Verifier, error) {
	var keys auth.KeySet
	switch {
	case cfg.JWKSURL != "":
		keys = auth.NewRemoteKeySet(cfg.JWKSURL, nil, 0)
	case cfg.JWKSFile != "":
		fks, err := auth.NewFileKeySet(cfg.JWKSFile)
		if err != nil {
			return nil, err
		}
		keys = fks
	default:
		_, jwks, err := devtoken.EnsureKey(devtoken.KeyDir(cfg.DataDir))
		if err != nil {
			return nil, err
		}
		fks, err := auth.NewFileKeySet(jwks)
		if err != nil {
			return nil, err
		}
		keys = fks
		log.Warn("DEV MODE: trusting a signing key made in the data directory; mint tokens with `careteam dev token`. For local use only.",
			"issuer", cfg.JWTIssuer, "bootstrap_admin", cfg.BootstrapAdmin)
	}
	return auth.NewVerifier(auth.VerifierConfig{Issuer: cfg.JWTIssuer, Audience: cfg.JWTAudience, Keys: keys, Clock: clock.System{}.Now,
		MaxLifetime: cfg.MaxTokenLifetime})
}

// watchDatabase keeps the health status in step with the database: SERVING
// while it answers, NOT_SERVING while it does not.
func watchDatabase(ctx context.Context, pool *pgxpool.Pool, h *health.Server, log *slog.Logger) {
	serving := false
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := pool.Ping(pctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		switch {
		case err == nil && !serving:
			h.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
			log.Info("health: serving")
			serving = true
		case err != nil && serving:
			h.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
			log.Warn("health: database unreachable", "error", err.Error())
			serving = false
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
