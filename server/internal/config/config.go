// Package config reads careteamd's settings from flags and CARETEAM_*
// environment variables (a flag given on the command line wins), so the
// same binary is configured by hand, by systemd or by a container platform.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/careteam/careteam/devtoken"
)

// Config is careteamd's configuration.
type Config struct {
	Listen      string
	DataDir     string
	DatabaseURL string
	// DatabaseOwnerURL, when set, migrates the schema as its owner, and
	// DatabaseURL's role is granted only what serving needs.
	DatabaseOwnerURL string
	// WALArchive is where the embedded database archives its WAL, for
	// point-in-time recovery; empty, it archives none.
	WALArchive      string
	DBMaxConns      int
	DBMinConns      int
	DBAcquireWait   time.Duration
	JWKSFile        string
	JWKSURL         string
	JWTIssuer       string
	JWTAudience     string
	BootstrapAdmin  string
	AckWindow       time.Duration
	LogLevel        string
	LogFormat       string
	ShutdownTimeout time.Duration
	RateLimit       float64
	RateBurst       int
	DefaultTimeout  time.Duration
	MaxMessageBytes int
	EventBuffer     int
	// MaxTokenLifetime, MaxConnectionAge and StreamRecheck bound how long a
	// credential, a connection and an unchecked stream last.
	MaxTokenLifetime time.Duration
	MaxConnectionAge time.Duration
	StreamRecheck    time.Duration
	Heartbeat        time.Duration
	EventRetention   time.Duration
	MetricsListen    string
	DebugListen      string
	OTLPEndpoint     string

	// CORSOrigins are the exact origins browsers may call the API from
	// besides the app's own; OIDCClientID and OIDCScopes are the web
	// app's client at the issuer.
	CORSOrigins  []string
	OIDCClientID string
	OIDCScopes   []string
	// PublicURL is the address clients reach careteamd at, behind any
	// proxy, for the links the FHIR endpoint writes.
	PublicURL string

	// WebhookInterval is how often due webhooks are delivered,
	// WebhookTimeout bounds one delivery, and WebhookAllowHTTP lets a
	// webhook use plain http to a loopback address.
	WebhookInterval  time.Duration
	WebhookTimeout   time.Duration
	WebhookAllowHTTP bool

	TLSCert           string
	TLSKey            string
	ClientCA          string
	InsecurePlaintext bool
}

// DevMode reports whether careteamd makes and trusts its own signing key:
// when no identity provider is configured. For local use only.
func (c *Config) DevMode() bool { return c.JWKSFile == "" && c.JWKSURL == "" }

// TLS reports whether careteamd speaks TLS.
func (c *Config) TLS() bool { return c.TLSCert != "" }

// OnLoopback reports whether careteamd listens where only this machine can
// reach it.
func (c *Config) OnLoopback() bool { return loopback(c.Listen) }

// PlaintextOffLoopback reports whether careteamd listens without TLS where
// other machines can reach it, which --insecure-plaintext must allow.
func (c *Config) PlaintextOffLoopback() bool { return !c.TLS() && !loopback(c.Listen) }

// loopback reports whether a listen address is reachable only from this
// machine. A host name other than localhost may resolve anywhere, and an
// empty host is every interface.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Embedded reports whether careteamd runs its own PostgreSQL.
func (c *Config) Embedded() bool { return c.DatabaseURL == "" }

// EnvPrefix prefixes the environment variable of every flag.
const EnvPrefix = "CARETEAM_"

// envName is the environment variable of a flag: --database-url is
// CARETEAM_DATABASE_URL.
func envName(flagName string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Parse reads the configuration from args (without the program name) and
// getenv. defaultDataDir is the data directory when none is given.
func Parse(args []string, getenv func(string) string, defaultDataDir string, usageOut io.Writer) (*Config, error) {
	c := &Config{}
	fs := flag.NewFlagSet("careteamd", flag.ContinueOnError)
	fs.SetOutput(usageOut)
	fs.StringVar(&c.Listen, "listen", "127.0.0.1:50051", "gRPC listen address")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "server certificate chain, PEM; reloaded when the file changes")
	fs.StringVar(&c.TLSKey, "tls-key", "", "server private key, PEM; reloaded when the file changes")
	fs.StringVar(&c.ClientCA, "client-ca", "", "CA certificates, PEM, for mutual TLS: a call without a token is made by the subject named in the Common Name of a client certificate they issued")
	fs.BoolVar(&c.InsecurePlaintext, "insecure-plaintext", false, "allow plaintext on a non-loopback address: tokens and patient data cross the network unencrypted")
	fs.StringVar(&c.DataDir, "data-dir", defaultDataDir, "data directory: the embedded PostgreSQL cluster and, in dev mode, the signing key")
	fs.StringVar(&c.DatabaseURL, "database-url", "", "PostgreSQL URL (postgres://...) careteamd serves as; empty runs an embedded PostgreSQL in the data directory")
	fs.StringVar(&c.DatabaseOwnerURL, "database-owner-url", "", "PostgreSQL URL of the role that owns the schema and migrates it; --database-url's role is then granted only what serving needs (empty: --database-url's role migrates)")
	fs.StringVar(&c.WALArchive, "wal-archive", "", "directory the embedded PostgreSQL copies each completed WAL segment to (at least every minute), for point-in-time recovery from a base backup; empty: none")
	fs.IntVar(&c.DBMaxConns, "db-max-conns", 20, "maximum database connections in the pool")
	fs.IntVar(&c.DBMinConns, "db-min-conns", 2, "database connections kept open when idle")
	fs.DurationVar(&c.DBAcquireWait, "db-acquire-wait", time.Second, "how long a call may wait for a free database connection before it is shed as UNAVAILABLE (retryable)")
	fs.StringVar(&c.JWKSFile, "jwks-file", "", "JWKS file with the token issuer's public keys (reloaded on change)")
	fs.StringVar(&c.JWKSURL, "jwks-url", "", "JWKS URL of an OIDC provider")
	fs.StringVar(&c.JWTIssuer, "jwt-issuer", "", "required token issuer (\"iss\"); dev mode: careteam-dev")
	fs.StringVar(&c.JWTAudience, "jwt-audience", "careteam", "required token audience (\"aud\")")
	fs.StringVar(&c.BootstrapAdmin, "bootstrap-admin", "", "token subject that administers the directory without an entry in it; dev mode: admin")
	fs.DurationVar(&c.AckWindow, "ack-window", 48*time.Hour, "weekday time (Monday-Friday, UTC) a submitted referral may wait for acceptance or decline before it is overdue; 48h is two business days")
	fs.StringVar(&c.LogLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&c.LogFormat, "log-format", "json", "log format: json or text")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 20*time.Second, "how long a shutdown waits for in-flight calls before cutting them")
	fs.Float64Var(&c.RateLimit, "rate-limit", 200, "calls per second one caller may sustain on this replica (0: no limit); more is RESOURCE_EXHAUSTED")
	fs.IntVar(&c.RateBurst, "rate-burst", 400, "calls one caller may make at once above --rate-limit")
	fs.DurationVar(&c.DefaultTimeout, "default-timeout", 30*time.Second, "deadline of a call that arrives without one")
	fs.IntVar(&c.MaxMessageBytes, "max-message-bytes", 4<<20, "largest request message accepted")
	fs.IntVar(&c.EventBuffer, "event-buffer", 1024, "events a WatchEvents stream may have waiting before it is cut off as too slow")
	fs.DurationVar(&c.MaxTokenLifetime, "max-token-lifetime", 24*time.Hour, "refuse a bearer token that has longer than this left to live")
	fs.DurationVar(&c.MaxConnectionAge, "max-connection-age", time.Hour, "close a client connection this old (its streams get 30s more); clients reconnect and authenticate again")
	fs.DurationVar(&c.StreamRecheck, "stream-recheck", 30*time.Second, "how often a WatchEvents stream checks its caller is still active in the same role and organization and still sees what it watches")
	fs.DurationVar(&c.Heartbeat, "heartbeat", 15*time.Second, "how often an idle WatchEvents stream gets a heartbeat")
	fs.StringVar(&c.MetricsListen, "metrics-listen", "", "serve Prometheus metrics on this address (/metrics); empty: off")
	fs.StringVar(&c.DebugListen, "debug-listen", "", "serve pprof profiles on this address (/debug/pprof/); keep it private; empty: off")
	fs.StringVar(&c.OTLPEndpoint, "otlp-endpoint", "", "export OpenTelemetry traces over OTLP/gRPC to host:port; empty: off")
	corsOrigins := fs.String("cors-origins", "", "comma-separated exact origins (https://host[:port]) browsers may call the API from besides careteamd's own web app; empty: none")
	fs.StringVar(&c.OIDCClientID, "oidc-client-id", "", "the web app's public client id at the OpenID Connect issuer (--jwt-issuer); empty: the app offers no OpenID Connect sign-in")
	oidcScopes := fs.String("oidc-scopes", "", "comma-separated scopes the web app asks for besides openid")
	fs.StringVar(&c.PublicURL, "public-url", "", "the https://host[:port] clients reach careteamd at (behind a TLS-terminating proxy), for the FHIR endpoint's links and the canonical URLs of careteam's code systems; empty: the address each request came to, and URNs")
	fs.DurationVar(&c.WebhookInterval, "webhook-interval", time.Second, "how often careteamd looks for webhooks due a delivery")
	fs.DurationVar(&c.WebhookTimeout, "webhook-timeout", 10*time.Second, "how long one webhook delivery may take, connection included")
	fs.BoolVar(&c.WebhookAllowHTTP, "webhook-allow-http", false, "allow webhooks over plain http to a loopback address (a receiver on this host)")
	fs.DurationVar(&c.EventRetention, "event-retention", 30*24*time.Hour, "events older than this are deleted by `careteamd prune-events`")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "careteamd: the careteam gRPC server.\n\nUsage: careteamd [flags]\n       careteamd prune-events [flags]   delete events older than --event-retention\n\nEvery flag can also be set by its environment variable; a flag on the command line wins.\n\n")
		fs.VisitAll(func(f *flag.Flag) {
			def := ""
			if f.DefValue != "" {
				def = fmt.Sprintf(" (default %q)", f.DefValue)
			}
			fmt.Fprintf(fs.Output(), "  --%s, %s\n      %s%s\n", f.Name, envName(f.Name), f.Usage, def)
		})
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if v := getenv(envName(f.Name)); v != "" && !set[f.Name] {
			if err := f.Value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", envName(f.Name), err))
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	c.CORSOrigins, c.OIDCScopes = splitList(*corsOrigins), splitList(*oidcScopes)
	return c, c.validate()
}

// splitList splits a comma-separated flag, dropping empty items.
func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func (c *Config) validate() error {
	if c.DevMode() {
		if c.JWTIssuer == "" {
			c.JWTIssuer = devtoken.Issuer
		}
		if c.BootstrapAdmin == "" {
			c.BootstrapAdmin = "admin"
		}
	}
	var errs []error
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("--listen %q: want host:port", c.Listen))
	} else if c.TLSCert == "" && c.TLSKey == "" && !c.InsecurePlaintext && !loopback(c.Listen) {
		errs = append(errs, fmt.Errorf("refusing plaintext on %s, which is not a loopback address: give --tls-cert and --tls-key, or --insecure-plaintext to send tokens and patient data unencrypted", c.Listen))
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("give --tls-cert and --tls-key together"))
	}
	if c.ClientCA != "" && c.TLSCert == "" {
		errs = append(errs, errors.New("--client-ca needs --tls-cert and --tls-key"))
	}
	if c.TLSCert != "" && c.InsecurePlaintext {
		errs = append(errs, errors.New("give --tls-cert or --insecure-plaintext, not both"))
	}
	if c.DataDir == "" && (c.Embedded() || c.DevMode()) {
		errs = append(errs, errors.New("--data-dir is required for the embedded database and dev mode"))
	}
	if !c.DevMode() && c.JWTIssuer == "" {
		errs = append(errs, errors.New("--jwt-issuer is required with --jwks-file or --jwks-url"))
	}
	for _, o := range c.CORSOrigins {
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Path != "" || u.RawQuery != "" || o == "*" {
			errs = append(errs, fmt.Errorf("--cors-origins: %q is not an exact origin such as https://ehr.example.org", o))
		}
	}
	if c.DatabaseOwnerURL != "" && c.DatabaseURL == "" {
		errs = append(errs, errors.New("--database-owner-url needs --database-url: the embedded default sets up its own roles"))
	}
	if c.WALArchive != "" && c.DatabaseURL != "" {
		errs = append(errs, errors.New("--wal-archive is for the embedded database: archive an external database's WAL with its server's settings"))
	}
	if c.JWKSFile != "" && c.JWKSURL != "" {
		errs = append(errs, errors.New("give --jwks-file or --jwks-url, not both"))
	}
	if c.DBMaxConns < 1 || c.DBMinConns < 0 || c.DBMinConns > c.DBMaxConns || c.DBAcquireWait <= 0 {
		errs = append(errs, errors.New("need 0 <= --db-min-conns <= --db-max-conns, --db-max-conns >= 1 and a positive --db-acquire-wait"))
	}
	if c.RateLimit < 0 || c.RateBurst < 1 || c.DefaultTimeout <= 0 {
		errs = append(errs, errors.New("need --rate-limit >= 0, --rate-burst >= 1 and a positive --default-timeout"))
	}
	if c.MaxMessageBytes < 2<<20 {
		errs = append(errs, errors.New("--max-message-bytes must be at least 2 MiB: a FHIR import may be 1 MiB of JSON"))
	}
	if c.EventBuffer < 1 || c.Heartbeat <= 0 || c.EventRetention <= 0 {
		errs = append(errs, errors.New("need --event-buffer >= 1, and a positive --heartbeat and --event-retention"))
	}
	if c.PublicURL != "" {
		if u, err := url.Parse(c.PublicURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Path != "" && u.Path != "/" ||
			u.RawQuery != "" || u.User != nil {
			errs = append(errs, fmt.Errorf("--public-url: %q is not an address such as https://careteam.example.org", c.PublicURL))
		}
		c.PublicURL = strings.TrimSuffix(c.PublicURL, "/")
	}
	if c.WebhookInterval <= 0 || c.WebhookTimeout <= 0 {
		errs = append(errs, errors.New("need a positive --webhook-interval and --webhook-timeout"))
	}
	if c.MaxTokenLifetime <= 0 || c.MaxConnectionAge <= 0 || c.StreamRecheck <= 0 {
		errs = append(errs, errors.New("need a positive --max-token-lifetime, --max-connection-age and --stream-recheck"))
	}
	if c.AckWindow <= 0 {
		errs = append(errs, errors.New("--ack-window must be positive"))
	}
	if c.LogFormat != "json" && c.LogFormat != "text" {
		errs = append(errs, errors.New("--log-format must be json or text"))
	}
	return errors.Join(errs...)
}
