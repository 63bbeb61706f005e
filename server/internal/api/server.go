// Package api is careteam's gRPC surface: handlers that turn requests into
// domain calls and results back into protos, behind one pipeline that gives
// every call a request id, a principal, validated input and a mapped status.
package api

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"buf.build/go/protovalidate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	pb "github.com/careteam/careteam/proto/careteam/v1"
	"github.com/careteam/careteam/server/internal/careteam"
	"github.com/careteam/careteam/server/internal/events"
	"github.com/careteam/careteam/server/internal/fhir"
)

// Config is what the API needs.
type Config struct {
	Service *careteam.Service
	// Audit writes the records of calls whose transaction did not.
	Audit    AuditWriter
	Verifier TokenVerifier
	Health   *health.Server
	Log      *slog.Logger
	// Limits are the per-caller limits; the zero value sets none.
	Limits Limits
	// Events fans committed events out to WatchEvents streams.
	Events *events.Hub
	// Heartbeat is how often an idle event stream gets a heartbeat
	// (default 15s).
	Heartbeat time.Duration
	// StreamRecheck is how often an event stream checks that its caller
	// may still receive what it watches (default 30s).
	StreamRecheck time.Duration
	// Observer is told what operators count; nil counts nothing.
	Observer Observer
	// Ready reports whether the schema is current; until it is, careteam
	// calls are UNAVAILABLE. Nil means always ready.
	Ready func() bool
	// FHIRNaming names careteam's code systems and extensions in what the
	// FHIR methods write and read.
	FHIRNaming fhir.Naming
}

// Observer receives what the API counts for operators.
type Observer interface {
	GateRefused(violationTypes []string)
	EventDelivered(lag time.Duration)
}

type noObserver struct{}

func (noObserver) GateRefused([]string)         {}
func (noObserver) EventDelivered(time.Duration) {}

// NewServer returns a gRPC server with every careteam service, health and
// reflection registered.
func NewServer(cfg Config, opts ...grpc.ServerOption) (*grpc.Server, error) {
	if cfg.Service == nil || cfg.Audit == nil || cfg.Verifier == nil || cfg.Health == nil || cfg.Log == nil || cfg.Events == nil {
		return nil, fmt.Errorf("api: every field of Config is required")
	}
	if cfg.Observer == nil {
		cfg.Observer = noObserver{}
	}
	if cfg.Ready == nil {
		cfg.Ready = func() bool { return true }
	}
	validator, err := protovalidate.New()
	if err != nil {
		return nil, fmt.Errorf("request validator: %w", err)
	}
	in := &interceptors{log: cfg.Log, ready: cfg.Ready, audit: cfg.Audit, limiter: newLimiter(cfg.Limits), verifier: cfg.Verifier,
		service: cfg.Service, validator: validator, failures: newAuthFailures()}
	// Failed authentications counted in a window are recorded when it
	// ends, and all of them when the server stops.
	go func() {
		tick := time.NewTicker(authFailureWindow / 4)
		defer tick.Stop()
		for {
			select {
			case <-cfg.Events.Done():
				in.appendAudit(context.Background(), in.failures.due(cfg.Service.Now(), true)...)
				return
			case <-tick.C:
				in.appendAudit(context.Background(), in.failures.due(cfg.Service.Now(), false)...)
			}
		}
	}()
	opts = append(opts, grpc.ChainUnaryInterceptor(in.unary), grpc.ChainStreamInterceptor(in.stream),
		grpc.ForceServerCodecV2(newLenientCodec()), grpc.MaxHeaderListSize(maxHeaderBytes))
	srv := grpc.NewServer(opts...)
	pb.RegisterDirectoryServiceServer(srv, &directoryServer{svc: cfg.Service})
	pb.RegisterPatientServiceServer(srv, &patientServer{svc: cfg.Service})
	pb.RegisterReferralServiceServer(srv, &referralServer{svc: cfg.Service})
	pb.RegisterClinicalServiceServer(srv, &clinicalServer{svc: cfg.Service, obs: cfg.Observer})
	pb.RegisterSessionServiceServer(srv, &sessionServer{svc: cfg.Service, obs: cfg.Observer})
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 15 * time.Second
	}

	if cfg.StreamRecheck <= 0 {
		cfg.StreamRecheck = 30 * time.Second
	}
	pb.RegisterEventServiceServer(srv, &eventServer{svc: cfg.Service, hub: cfg.Events, audit: cfg.Audit,
		heartbeat: cfg.Heartbeat, recheck: cfg.StreamRecheck, obs: cfg.Observer})
	pb.RegisterAuditServiceServer(srv, &auditServer{svc: cfg.Service})
	pb.RegisterFhirServiceServer(srv, &fhirServer{svc: cfg.Service, naming: cfg.FHIRNaming})
	pb.RegisterWebhookServiceServer(srv, &webhookServer{svc: cfg.Service})
	healthpb.RegisterHealthServer(srv, cfg.Health)
	reflection.Register(srv)
	return srv, nil
}
