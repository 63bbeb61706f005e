// Package app assembles careteamd from its configuration: the database
// (embedded or configured) and its schema, the store, the domain service,
// the event hub, the gRPC server, and the work that runs beside them (the
// event listener, the audit sealer, the sweeps of what time alone changes,
// the health check). careteamd's main and every test that needs a running
// server start it the same way; nothing else wires these parts together.
package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/careteam/careteam/devtoken"
	"github.com/careteam/careteam/server/internal/api"
	"github.com/careteam/careteam/server/internal/auth"
	"github.com/careteam/careteam/server/internal/careteam"
	"github.com/careteam/careteam/server/internal/clock"
	"github.com/careteam/careteam/server/internal/config"
	"github.com/careteam/careteam/server/internal/events"
	"github.com/careteam/careteam/server/internal/fhir"
	"github.com/careteam/careteam/server/internal/fhirrest"
	"github.com/careteam/careteam/server/internal/store/postgres"
	"github.com/careteam/careteam/server/internal/telemetry"
	"github.com/careteam/careteam/server/internal/tlsconfig"
	"github.com/careteam/careteam/server/internal/web"
	"github.com/careteam/careteam/server/internal/webhook"
)

// Options are what tests set that careteamd's configuration does not.
// The zero value is careteamd's.
type Options struct {
	// Clock is the domain's clock and the token verifier's (default: the
	// system's).
	Clock clock.Clock
	// Verifier checks tokens (default: the keys --jwks-file or
	// --jwks-url names, or in dev mode the data directory's key).
	Verifier *auth.Verifier
	// Pool is the database to serve from instead of the configured one;
	// it is migrated like any other and stays the caller's to close.
	Pool *pgxpool.Pool
	// Listener is where the API is served (default: --listen).
	Listener net.Listener
	// HubCatchUp is how often the event hub reads the outbox without a
	// notification (default: the hub's).
	HubCatchUp time.Duration
	// API adjusts the API's configuration, after the configuration's.
	API func(*api.Config)
	// ServerOptions are added to the gRPC server's.
	ServerOptions []grpc.ServerOption
	// Storage, when set, gives the service and the audit writer in place
	// of the store, to measure what the store's parts cost.
	Storage func(*postgres.Store) (careteam.Store, api.AuditWriter)
	// HoldLoops, when set, starts the event hub and the work beside it
	// only once it is closed, as if migrating took that long.
	HoldLoops <-chan struct{}
	// SweepEvery is how often the sweeps of what time alone changes run
	// (default: a minute).
	SweepEvery time.Duration
}

// App is careteamd, assembled.
type App struct {
	cfg     *config.Config
	log     *slog.Logger
	opts    Options
	db      *database
	store   *postgres.Store
	service *careteam.Service
	hub     *events.Hub
	// webhooks delivers the webhooks due.
	webhooks *webhook.Deliverer
	health   *health.Server
	metrics  *telemetry.Metrics
	srv      *grpc.Server
	http     *http.Server
	lis      net.Listener
	tracing  *telemetry.Tracing
	// ready is set, and serving closed, once the schema is current.
	ready   atomic.Bool
	serving chan struct{}
}

// New assembles careteamd. Run serves it, and releases what New took when
// it returns; if New fails, it has released everything already.
func New(ctx context.Context, cfg *config.Config, log *slog.Logger, opts Options) (a *App, err error) {
	if opts.Clock == nil {
		opts.Clock = clock.System{}
	}
	if opts.SweepEvery <= 0 {
		opts.SweepEvery = sweepEvery
	}
	a = &App{cfg: cfg, log: log, opts: opts, serving: make(chan struct{})}
	var cleanup []func()
	defer func() {
		if err != nil {
			for i := len(cleanup) - 1; i >= 0; i-- {
				cleanup[i]()
			}
		}
	}()

	// Before the database starts, so that a bad certificate fails at once.
	var serverOpts []grpc.ServerOption
	var tlsCfg *tls.Config
	if cfg.TLS() {
		if tlsCfg, err = newTLSConfig(cfg, log); err != nil {
			return nil, err
		}
	} else if cfg.PlaintextOffLoopback() {
		log.Warn("INSECURE PLAINTEXT: listening without TLS on a non-loopback address (--insecure-plaintext); bearer tokens and patient data cross the network unencrypted. Use only behind a TLS-terminating proxy on a network you trust.",
			"address", cfg.Listen)
	}
	if cfg.OTLPEndpoint != "" {
		if a.tracing, err = telemetry.StartTracing(ctx, cfg.OTLPEndpoint); err != nil {
			return nil, err
		}
		cleanup = append(cleanup, func() { _ = a.tracing.Shutdown(context.WithoutCancel(ctx)) })
		serverOpts = append(serverOpts, a.tracing.ServerOption())
	}
	if opts.Pool != nil {
		a.db = &database{pool: opts.Pool, close: func() {}}
	} else if a.db, err = openDatabase(ctx, cfg, log, a.tracing); err != nil {
		return nil, err
	}
	cleanup = append(cleanup, a.db.close)

	verifier := opts.Verifier
	if verifier == nil {
		if verifier, err = newVerifier(cfg, opts.Clock, log); err != nil {
			return nil, fmt.Errorf("newVerifier: %w", err)
		}
	}
	a.store = postgres.New(a.db.pool, log)
	var storage careteam.Store = a.store
	var auditWriter api.AuditWriter = a.store
	if opts.Storage != nil {
		storage, auditWriter = opts.Storage(a.store)
	}
	a.service = careteam.NewService(storage, opts.Clock, careteam.Config{BootstrapAdmin: cfg.BootstrapAdmin, AckWindow: cfg.AckWindow,
		Webhooks: careteam.WebhookPolicy{AllowHTTP: cfg.WebhookAllowHTTP}})
	a.webhooks = webhook.New(webhook.Config{Service: a.service, Audit: auditWriter, Encode: api.EventJSON,
		Every: cfg.WebhookInterval, Timeout: cfg.WebhookTimeout, Log: log})
	a.hub = events.NewHub(a.service, events.Config{Buffer: cfg.EventBuffer, CatchUp: opts.HubCatchUp}, log)
	a.metrics = telemetry.NewMetrics(a.db.pool, a.hub.Watchers)
	a.store.ObserveAudit(a.metrics.AuditWritten)
	a.store.ShedAfter(cfg.DBAcquireWait)
	a.health = health.NewServer()
	a.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)

	serverOpts = append(serverOpts,
		grpc.MaxRecvMsgSize(cfg.MaxMessageBytes),
		// The metrics interceptors go first, so that they time whole calls.
		grpc.ChainUnaryInterceptor(a.metrics.GRPC.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(a.metrics.GRPC.StreamServerInterceptor()),
	)
	serverOpts = append(serverOpts, opts.ServerOptions...)
	var naming fhir.Naming
	if cfg.PublicURL != "" {
		naming = fhir.NewNaming(cfg.PublicURL + fhirrest.Base)
	}
	apiCfg := api.Config{
		FHIRNaming: naming,
		Service:    a.service, Audit: auditWriter, Verifier: verifier, Health: a.health, Log: log, Events: a.hub,
		Heartbeat: cfg.Heartbeat, StreamRecheck: cfg.StreamRecheck, Observer: a.metrics, Ready: a.ready.Load,
		Limits: api.Limits{PerPrincipalRate: cfg.RateLimit, Burst: cfg.RateBurst, DefaultTimeout: cfg.DefaultTimeout},
	}
	if opts.API != nil {
		opts.API(&apiCfg)
	}
	if a.srv, err = api.NewServer(apiCfg, serverOpts...); err != nil {
		return nil, fmt.Errorf("api.NewServer: %w", err)
	}
	a.metrics.GRPC.InitializeMetrics(a.srv)
	// Every protocol reaches the gRPC server through the HTTP front door:
	// idle connections close after 15 minutes, and every connection once
	// it is --max-connection-age old.
	webCfg := web.Config{
		GRPC: a.srv, CORSOrigins: cfg.CORSOrigins, MaxHeaderBytes: maxHeaderBytes, PublicURL: cfg.PublicURL, FHIRNaming: naming,
		MaxConnectionAge: cfg.MaxConnectionAge, ConnectionAgeGrace: 30 * time.Second,
		App: web.AppConfig{Issuer: cfg.JWTIssuer, ClientID: cfg.OIDCClientID, Scopes: cfg.OIDCScopes, AckWindow: cfg.AckWindow},
	}
	if cfg.DevMode() && cfg.OnLoopback() {
		webCfg.DevSignIn = a.devSignIn()
	}
	if a.http, err = web.NewServer(webCfg); err != nil {
		return nil, fmt.Errorf("web.NewServer: %w", err)
	}
	a.http.TLSConfig = tlsCfg
	a.http.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	a.lis = opts.Listener
	if a.lis == nil {
		if a.lis, err = net.Listen("tcp", cfg.Listen); err != nil {
			return nil, fmt.Errorf("listen: %w", err)
		}
	}
	return a, nil
}

// maxHeaderBytes bounds a call's header list: a token, a request id and a
// purpose fit in a few KiB.
const maxHeaderBytes = 16 << 10

// devSignIn lets the web app sign in as anyone in the directory with the
// dev key: dev mode on loopback only (see web.DevSignIn).
func (a *App) devSignIn() *web.DevSignIn {
	admin := careteam.Principal{Subject: a.cfg.BootstrapAdmin, Role: careteam.RoleAdmin, Bootstrap: true}
	return &web.DevSignIn{
		Subjects: func(ctx context.Context) ([]web.DevSubject, error) {
			out := []web.DevSubject{{Subject: a.cfg.BootstrapAdmin, DisplayName: "Bootstrap administrator", Role: "ADMIN"}}
			orgs := map[uuid.UUID]string{}
			var page careteam.Page
			for {
				os, next, err := a.service.ListOrganizations(ctx, admin, careteam.OrganizationFilter{}, careteam.Page{After: page.After, Size: 500})
				if err != nil {
					return nil, err
				}
				for _, o := range os {
					orgs[o.ID] = o.DisplayName
				}
				if next == uuid.Nil {
					break
				}
				page.After = next
			}
			page = careteam.Page{}
			for {
				ps, next, err := a.service.ListPractitioners(ctx, admin, careteam.PractitionerFilter{}, false, careteam.Page{After: page.After, Size: 500})
				if err != nil {
					return nil, err
				}
				for _, p := range ps {
					if p.Active {
						out = append(out, web.DevSubject{Subject: p.Subject, DisplayName: p.DisplayName, Role: string(p.Role), Organization: orgs[p.OrganizationID]})
					}
				}
				if next == uuid.Nil {
					return out, nil
				}
				page.After = next
			}
		},
		Mint: func(subject string) (string, time.Time, error) {
			const ttl = 8 * time.Hour
			tok, err := devtoken.Mint(a.cfg.DataDir, subject, ttl)
			return tok, time.Now().Add(ttl), err
		},
	}
}

// Addr is the address the API is served on.
func (a *App) Addr() string { return a.lis.Addr().String() }

// Service is the domain service behind the API, for the work careteamd
// does on its own, outside any call (tests run it at their clock's time).
func (a *App) Service() *careteam.Service { return a.service }

// Serving is closed once the schema is current and calls are served.
func (a *App) Serving() <-chan struct{} { return a.serving }

// Watchers is how many event streams are subscribed to this replica.
func (a *App) Watchers() int { return a.hub.Watchers() }

// Store is the store behind the service.
func (a *App) Store() *postgres.Store { return a.store }

// Run serves until ctx ends, then drains the calls in flight for up to
// --shutdown-timeout and releases everything New took. Calls are answered
// UNAVAILABLE, and health is NOT_SERVING, until the schema is current.
func (a *App) Run(ctx context.Context) error {
	defer func() {
		a.db.close()
		if a.tracing != nil {
			_ = a.tracing.Shutdown(context.WithoutCancel(ctx))
		}
	}()
	// The loops outlive nothing: they stop before the server drains, so
	// that open event streams end and let the drain finish.
	loopCtx, stopLoops := context.WithCancel(context.WithoutCancel(ctx))
	var loops sync.WaitGroup
	defer loops.Wait()
	defer stopLoops()
	if a.cfg.MetricsListen != "" {
		if err := telemetry.Serve(loopCtx, a.cfg.MetricsListen, a.metrics.Handler(), a.log, "metrics"); err != nil {
			a.lis.Close()
			return err
		}
	}
	if a.cfg.DebugListen != "" {
		if err := telemetry.Serve(loopCtx, a.cfg.DebugListen, telemetry.DebugHandler(), a.log, "debug"); err != nil {
			a.lis.Close()
			return err
		}
	}
	serveErr := make(chan error, 1)
	go func() {
		if a.http.TLSConfig != nil {
			serveErr <- a.http.ServeTLS(a.lis, "", "")
		} else {
			serveErr <- a.http.Serve(a.lis)
		}
	}()
	a.log.Info("listening", "address", a.Addr(), "tls", a.cfg.TLS(), "client_certificates", a.cfg.ClientCA != "",
		"embedded_database", a.cfg.Embedded() && a.opts.Pool == nil, "dev_mode", a.cfg.DevMode())

	version, err := a.db.migrate(ctx, a.log)
	if err != nil {
		a.http.Close()
		a.srv.Stop()
		return fmt.Errorf("postgres.Migrate: %w", err)
	}
	a.log.Info("schema ready", "version", version)
	a.ready.Store(true)
	close(a.serving)
	a.metrics.SchemaVersion(version)
	if a.opts.HoldLoops != nil {
		select {
		case <-a.opts.HoldLoops:
		case <-ctx.Done():
		}
	}
	for _, loop := range []func(context.Context){
		func(ctx context.Context) { watchDatabase(ctx, a.db.pool, a.health, a.log) },
		a.hub.Run,
		func(ctx context.Context) { a.store.Listen(ctx, a.hub.Wake) },
		a.store.Seal,
		func(ctx context.Context) { sweep(ctx, a.service, a.opts.SweepEvery, a.log) },
		func(ctx context.Context) { _ = a.webhooks.Run(ctx) },
	} {
		loops.Go(func() { loop(loopCtx) })
	}

	select {
	case err := <-serveErr:
		a.srv.Stop()
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	a.log.Info("shutting down", "timeout", a.cfg.ShutdownTimeout)
	a.health.Shutdown()
	stopLoops()
	shutdown, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.cfg.ShutdownTimeout)
	defer cancel()
	if err := a.http.Shutdown(shutdown); err != nil {
		a.log.Warn("shutdown timeout: cutting remaining calls")
		a.http.Close()
	}
	a.srv.Stop()
	return nil
}

// PruneEvents deletes events older than --event-retention from the
// configured or embedded database; watchers behind them then get
// OUT_OF_RANGE.
func PruneEvents(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
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

// sweepEvery is how often careteamd writes what time alone changes:
// referrals whose validity has passed are announced to watchers, and
// scheduled clearances whose window has opened come into force. The gate
// never waits for the sweep (it judges every window when a session
// starts), so a minute is prompt.
const sweepEvery = time.Minute

// sweep runs the time-driven work every period until ctx ends, a batch at
// a time.
func sweep(ctx context.Context, service *careteam.Service, period time.Duration, log *slog.Logger) {
	t := time.NewTicker(period)
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
func newVerifier(cfg *config.Config, clk clock.Clock, log *slog.Logger) (*auth.Verifier, error) {
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
	return auth.NewVerifier(auth.VerifierConfig{Issuer: cfg.JWTIssuer, Audience: cfg.JWTAudience, Keys: keys, Clock: clk.Now,
		MaxLifetime: cfg.MaxTokenLifetime})
}

// watchDatabase keeps the health status in step with the database: SERVING
// while it answers, NOT_SERVING while it does not. It asks every second, so
// that a load balancer hears of a failover's few seconds.
func watchDatabase(ctx context.Context, pool *pgxpool.Pool, h *health.Server, log *slog.Logger) {
	serving := false
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
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
