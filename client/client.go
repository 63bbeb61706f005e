// Package client is the Go client of careteam: Dial returns a connection
// with every service's stub, the caller's token on each call, a default
// deadline, a request id on every write so that retries are safe, and a
// retry policy for UNAVAILABLE.
package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	pb "github.com/careteam/careteam/proto/careteam/v1"
)

// TokenSource returns the bearer token for a call.
type TokenSource func(ctx context.Context) (string, error)

// StaticToken is a TokenSource that always returns token.
func StaticToken(token string) TokenSource {
	return func(context.Context) (string, error) { return token, nil }
}

type options struct {
	token     TokenSource
	purpose   []string // metadata pairs saying why calls access data
	tls       *tls.Config
	plaintext bool
	timeout   time.Duration
	dialOpts  []grpc.DialOption
}

// Option configures Dial.
type Option func(*options)

// WithToken authenticates every call with the token source.
func WithToken(ts TokenSource) Option { return func(o *options) { o.token = ts } }

// The headers that say why a call accesses data: TREATMENT (the default),
// PAYMENT, OPERATIONS, or EMERGENCY with a reason ("break the glass").
const (
	PurposeHeader         = "x-purpose-of-use"
	EmergencyReasonHeader = "x-emergency-reason"
)

// WithPurpose sends purpose of use, and for EMERGENCY its reason, on every
// call. An emergency reads only: careteamd refuses every write under it.
func WithPurpose(purpose, reason string) Option {
	return func(o *options) {
		o.purpose = []string{PurposeHeader, purpose}
		if reason != "" {
			o.purpose = append(o.purpose, EmergencyReasonHeader, reason)
		}
	}
}

// Emergency returns ctx for calls that break the glass: a physician reading
// outside their care team, for the reason given, which the audit trail
// records with every call so made.
func Emergency(ctx context.Context, reason string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, PurposeHeader, "EMERGENCY", EmergencyReasonHeader, reason)
}

// WithTLS speaks TLS with cfg (add client certificates for mutual TLS; a
// call without a token is then made by the certificate's subject). A
// MinVersion below TLS 1.2 is raised to it.
func WithTLS(cfg *tls.Config) Option { return func(o *options) { o.tls = cfg } }

// TLSFromFiles returns a TLS configuration from PEM files: caFile, when
// given, holds the roots that careteamd's certificate must chain to instead
// of the system's; certFile and keyFile, when given, are a client
// certificate for mutual TLS.
func TLSFromFiles(caFile, certFile, keyFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		data, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("client: CA file: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(data) {
			return nil, fmt.Errorf("client: no PEM certificate in %s", caFile)
		}
	}
	if certFile != "" || keyFile != "" {
		if certFile == "" || keyFile == "" {
			return nil, errors.New("client: a client certificate needs both its certificate and key files")
		}
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("client: client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// WithPlaintext speaks plaintext; Dial allows it only to a loopback
// address (else ErrPlaintextNotLoopback), so a token never crosses a
// network unencrypted.
func WithPlaintext() Option { return func(o *options) { o.plaintext = true } }

// ErrPlaintextNotLoopback is Dial's refusal of plaintext to an address other
// machines may hold.
var ErrPlaintextNotLoopback = errors.New("client: plaintext is allowed only to a loopback address")

// WithTimeout sets the deadline of calls whose context has none (default
// 30s; 0 keeps calls without one).
func WithTimeout(d time.Duration) Option { return func(o *options) { o.timeout = d } }

// WithDialOptions adds raw gRPC dial options.
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(o *options) { o.dialOpts = append(o.dialOpts, opts...) }
}

// Client holds one connection and the stub of every careteam service.
type Client struct {
	conn *grpc.ClientConn

	Directory pb.DirectoryServiceClient
	Patients  pb.PatientServiceClient
	Referrals pb.ReferralServiceClient
	Clinical  pb.ClinicalServiceClient
	Sessions  pb.SessionServiceClient
	Events    pb.EventServiceClient
	Audit     pb.AuditServiceClient
	FHIR      pb.FhirServiceClient
	Webhooks  pb.WebhookServiceClient
}

// serviceConfig retries UNAVAILABLE calls of every careteam service. Writes
// are safe to retry because the client gives each one a request id that the
// server deduplicates (AIP-155).
const serviceConfig = `{
  "loadBalancingConfig": [{"round_robin": {}}],
  "methodConfig": [{
    "name": [
      {"service": "careteam.v1.DirectoryService"},
      {"service": "careteam.v1.PatientService"},
      {"service": "careteam.v1.ReferralService"},
      {"service": "careteam.v1.ClinicalService"},
      {"service": "careteam.v1.SessionService"},
      {"service": "careteam.v1.AuditService"},
      {"service": "careteam.v1.FhirService"},
      {"service": "careteam.v1.WebhookService"},
      {"service": "careteam.v1.EventService", "method": "ListEvents"}
    ],
    "retryPolicy": {
      "maxAttempts": 5,
      "initialBackoff": "0.1s",
      "maxBackoff": "2s",
      "backoffMultiplier": 2,
      "retryableStatusCodes": ["UNAVAILABLE"]
    }
  }]
}`

// Dial connects to a careteamd at target ("host:port").
func Dial(target string, opts ...Option) (*Client, error) {
	o := options{timeout: 30 * time.Second}
	for _, opt := range opts {
		opt(&o)
	}
	var creds credentials.TransportCredentials
	switch {
	case o.plaintext && o.tls != nil:
		return nil, errors.New("client: choose TLS or plaintext, not both")
	case o.plaintext:
		if !loopback(target) {
			return nil, fmt.Errorf("%w, not %q", ErrPlaintextNotLoopback, target)
		}
		creds = insecure.NewCredentials()
	case o.tls != nil:
		cfg := o.tls
		if cfg.MinVersion < tls.VersionTLS12 {
			cfg = cfg.Clone()
			cfg.MinVersion = tls.VersionTLS12
		}
		creds = credentials.NewTLS(cfg)
	default:
		creds = credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12})
	}
	dialOpts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultServiceConfig(serviceConfig),
		grpc.WithChainUnaryInterceptor(defaults(o.timeout, o.purpose)),
		grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			return streamer(withPurpose(ctx, o.purpose), desc, cc, method, opts...)
		}),
	}
	if o.token != nil {
		dialOpts = append(dialOpts, grpc.WithPerRPCCredentials(tokenCredentials{source: o.token, secure: !o.plaintext}))
	}
	conn, err := grpc.NewClient(target, append(dialOpts, o.dialOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	return &Client{
		conn:      conn,
		Directory: pb.NewDirectoryServiceClient(conn),
		Patients:  pb.NewPatientServiceClient(conn),
		Referrals: pb.NewReferralServiceClient(conn),
		Clinical:  pb.NewClinicalServiceClient(conn),
		Sessions:  pb.NewSessionServiceClient(conn),
		Events:    pb.NewEventServiceClient(conn),
		Audit:     pb.NewAuditServiceClient(conn),
		FHIR:      pb.NewFhirServiceClient(conn),
		Webhooks:  pb.NewWebhookServiceClient(conn),
	}, nil
}

// Conn returns the underlying connection, for health checks and
// reflection.
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

func loopback(target string) bool {
	host, _, err := net.SplitHostPort(target)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// defaults gives a call the default deadline, the connection's purpose of
// use, and a write a request id when the caller left it empty, so that
// every retry of this call carries the same id.
func defaults(timeout time.Duration, purpose []string) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		ctx = withPurpose(ctx, purpose)
		if _, ok := ctx.Deadline(); !ok && timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, timeout)
			defer cancel()
		}
		if m, ok := req.(proto.Message); ok {
			req = withRequestID(m)
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
}

// withPurpose adds the connection's purpose of use to a call that does not
// say its own.
func withPurpose(ctx context.Context, purpose []string) context.Context {
	if len(purpose) == 0 {
		return ctx
	}
	if md, ok := metadata.FromOutgoingContext(ctx); ok && len(md.Get(PurposeHeader)) > 0 {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, purpose...)
}

// withRequestID returns m with a fresh request_id if it has an empty one;
// the caller's message is left untouched.
func withRequestID(m proto.Message) proto.Message {
	r := m.ProtoReflect()
	fd := r.Descriptor().Fields().ByName("request_id")
	if fd == nil || fd.Kind() != protoreflect.StringKind || r.Get(fd).String() != "" {
		return m
	}
	c := proto.Clone(m)
	c.ProtoReflect().Set(fd, protoreflect.ValueOfString(uuid.NewString()))
	return c
}

type tokenCredentials struct {
	source TokenSource
	secure bool
}

func (t tokenCredentials) GetRequestMetadata(ctx context.Context, _ ...string) (map[string]string, error) {
	tok, err := t.source(ctx)
	if err != nil {
		return nil, fmt.Errorf("client: token: %w", err)
	}
	return map[string]string{"authorization": "Bearer " + tok}, nil
}

func (t tokenCredentials) RequireTransportSecurity() bool { return t.secure }
