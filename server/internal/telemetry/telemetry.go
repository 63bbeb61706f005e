// Package telemetry is what operators watch: Prometheus metrics (per-RPC
// counts, codes and latency from the grpc-ecosystem interceptors, the
// database pool, the schema version, event streams, the audit trail's write
// latency and the gate's refusals), OpenTelemetry traces through the gRPC
// stats handler and pgx's tracer, and pprof. Each is off unless configured.
// Labels carry methods, codes and violation types, never patient data.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics holds careteamd's Prometheus collectors.
type Metrics struct {
	Registry      *prometheus.Registry
	GRPC          *grpcprom.ServerMetrics
	gateRefusals  *prometheus.CounterVec
	auditWrites   prometheus.Histogram
	deliveryLag   prometheus.Histogram
	schemaVersion prometheus.Gauge
}

// NewMetrics registers the collectors; watchers reports the open event
// streams.
func NewMetrics(pool *pgxpool.Pool, watchers func() int) *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		GRPC: grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram(
			grpcprom.WithHistogramBuckets([]float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}))),
		gateRefusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "careteam_gate_refusals_total", Help: "Session starts and checks the gate refused, by violation type.",
		}, []string{"violation"}),
		auditWrites: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "careteam_audit_write_seconds", Help: "Time to append a call's audit record and commit it with the call's queued writes and events.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		deliveryLag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "careteam_event_delivery_lag_seconds", Help: "From an event's commit time to its sending on a live stream.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		schemaVersion: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "careteam_schema_version", Help: "The migration version of the database schema.",
		}),
	}
	m.Registry.MustRegister(
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.GRPC, m.gateRefusals, m.auditWrites, m.deliveryLag, m.schemaVersion,
		poolCollector{pool},
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "careteam_event_subscribers", Help: "Open WatchEvents streams on this replica.",
		}, func() float64 { return float64(watchers()) }),
	)
	return m
}

// GateRefused counts a refusal's violations.
func (m *Metrics) GateRefused(types []string) {
	for _, t := range types {
		m.gateRefusals.WithLabelValues(t).Inc()
	}
}

// AuditWritten observes one audit append.
func (m *Metrics) AuditWritten(d time.Duration) { m.auditWrites.Observe(d.Seconds()) }

// EventDelivered observes the lag of one live event.
func (m *Metrics) EventDelivered(lag time.Duration) { m.deliveryLag.Observe(lag.Seconds()) }

// SchemaVersion records the migration version.
func (m *Metrics) SchemaVersion(v int64) { m.schemaVersion.Set(float64(v)) }

// poolCollector reports pgxpool statistics at scrape time.
type poolCollector struct{ pool *pgxpool.Pool }

var (
	poolAcquired = prometheus.NewDesc("careteam_db_pool_acquired_connections", "Connections in use.", nil, nil)
	poolIdle     = prometheus.NewDesc("careteam_db_pool_idle_connections", "Idle connections.", nil, nil)
	poolTotal    = prometheus.NewDesc("careteam_db_pool_total_connections", "Open connections.", nil, nil)
	poolMax      = prometheus.NewDesc("careteam_db_pool_max_connections", "Pool size limit.", nil, nil)
	poolWaits    = prometheus.NewDesc("careteam_db_pool_empty_acquires_total", "Acquires that had to wait for a connection.", nil, nil)
	poolWaitTime = prometheus.NewDesc("careteam_db_pool_acquire_wait_seconds_total", "Time spent waiting for connections.", nil, nil)
)

func (c poolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{poolAcquired, poolIdle, poolTotal, poolMax, poolWaits, poolWaitTime} {
		ch <- d
	}
}

func (c poolCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.pool.Stat()
	ch <- prometheus.MustNewConstMetric(poolAcquired, prometheus.GaugeValue, float64(s.AcquiredConns()))
	ch <- prometheus.MustNewConstMetric(poolIdle, prometheus.GaugeValue, float64(s.IdleConns()))
	ch <- prometheus.MustNewConstMetric(poolTotal, prometheus.GaugeValue, float64(s.TotalConns()))
	ch <- prometheus.MustNewConstMetric(poolMax, prometheus.GaugeValue, float64(s.MaxConns()))
	ch <- prometheus.MustNewConstMetric(poolWaits, prometheus.CounterValue, float64(s.EmptyAcquireCount()))
	ch <- prometheus.MustNewConstMetric(poolWaitTime, prometheus.CounterValue, s.AcquireDuration().Seconds())
}

// Serve runs an HTTP server on addr until ctx ends.
func Serve(ctx context.Context, addr string, h http.Handler, log *slog.Logger, what string) error {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%s listener: %w", what, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdownCtx)
	}()
	log.Info(what+" listening", "address", lis.Addr().String())
	go func() {
		if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error(what+" server stopped", "error", err.Error())
		}
	}()
	return nil
}

// MetricsHandler serves the registry.
func (m *Metrics) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}))
	return mux
}

// DebugHandler serves pprof: CPU and allocation profiles for finding where
// time goes. Keep its port private.
func DebugHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}
