package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// scrape is one reading of careteamd's /metrics: each sample's value by
// its name and labels as the text format writes them.
type scrape struct {
	at      time.Time
	samples map[string][]sample
}

type sample struct {
	labels string // `{a="1",b="2"}`, or empty
	value  float64
}

var httpClient = &http.Client{Timeout: 10 * time.Second}

// scrapeMetrics reads one endpoint. The Prometheus text format is simple
// enough to read line by line; only samples are kept.
func scrapeMetrics(ctx context.Context, endpoint string) (*scrape, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint, nil)
	if err != nil {
		return nil, err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", endpoint, resp.Status)
	}
	s := &scrape{at: time.Now(), samples: map[string][]sample{}}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		nameEnd := strings.IndexAny(line, "{ ")
		if nameEnd < 0 {
			continue
		}
		name, rest, labels := line[:nameEnd], line[nameEnd:], ""
		if rest[0] == '{' {
			end := strings.LastIndexByte(rest, '}')
			if end < 0 {
				continue
			}
			labels, rest = rest[:end+1], rest[end+1:]
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			continue
		}
		s.samples[name] = append(s.samples[name], sample{labels, v})
	}
	return s, sc.Err()
}

// sum adds the samples of name whose labels contain every one of match
// (each `key="value"`).
func (s *scrape) sum(name string, match ...string) float64 {
	if s == nil {
		return 0
	}
	var total float64
next:
	for _, smp := range s.samples[name] {
		for _, m := range match {
			if !strings.Contains(smp.labels, m) {
				continue next
			}
		}
		total += smp.value
	}
	return total
}

// scrapes reads every --metrics endpoint; nil when there are none. A
// failing endpoint is reported and yields an empty reading.
func (l *load) scrapeAll(ctx context.Context) []*scrape {
	if len(l.cfg.metrics) == 0 {
		return nil
	}
	out := make([]*scrape, len(l.cfg.metrics))
	for i, m := range l.cfg.metrics {
		s, err := scrapeMetrics(ctx, m)
		if err != nil {
			l.prog.note("warning: metrics: %v", err)
			s = &scrape{at: time.Now(), samples: map[string][]sample{}}
		}
		out[i] = s
	}
	return out
}

// processFigures are one replica's process gauges at one moment.
type processFigures struct {
	Target        string  `json:"target"`
	ResidentBytes float64 `json:"resident_bytes"`
	Goroutines    float64 `json:"goroutines"`
	Subscribers   float64 `json:"event_subscribers"`
}

func (l *load) processFigures(ss []*scrape) []processFigures {
	out := make([]processFigures, len(ss))
	for i, s := range ss {
		out[i] = processFigures{Target: l.cfg.targets[i], ResidentBytes: s.sum("process_resident_memory_bytes"),
			Goroutines: s.sum("go_goroutines"), Subscribers: s.sum("careteam_event_subscribers")}
	}
	return out
}

func mib(b float64) float64 { return b / (1 << 20) }

// serverView is what careteamd's own metrics said about one RPC over a
// phase: the first places to look when it is slow.
type serverView struct {
	Method string `json:"method"`
	// Calls and MeanMs: grpc_server_handling_seconds, in the server.
	Calls  float64 `json:"calls"`
	MeanMs float64 `json:"mean_ms"`
	// AuditMeanMs: careteam_audit_write_seconds, the audit append and
	// commit of each call.
	AuditWrites float64 `json:"audit_writes"`
	AuditMeanMs float64 `json:"audit_mean_ms"`
	// PoolWaits and PoolWaitMs: careteam_db_pool_empty_acquires_total and
	// careteam_db_pool_acquire_wait_seconds_total, calls that found no
	// free connection and the time they waited for one.
	PoolWaits  float64 `json:"pool_empty_acquires"`
	PoolWaitMs float64 `json:"pool_acquire_wait_ms_per_call"`
	PoolMax    float64 `json:"pool_max_connections"`
	// GateRefusals: careteam_gate_refusals_total, by violation type.
	GateRefusals map[string]float64 `json:"gate_refusals,omitempty"`
	// CPUCores: process_cpu_seconds_total over the phase.
	CPUCores float64 `json:"careteamd_cpu_cores"`
}

// viewOf compares two readings of every replica, summed.
func viewOf(method string, before, after []*scrape) *serverView {
	if len(before) == 0 || len(before) != len(after) {
		return nil
	}
	v := &serverView{Method: method, GateRefusals: map[string]float64{}}
	m := `grpc_method="` + method + `"`
	var secs, auditSecs, waitSecs, cpu, elapsed float64
	for i := range before {
		b, a := before[i], after[i]
		v.Calls += a.sum("grpc_server_handling_seconds_count", m) - b.sum("grpc_server_handling_seconds_count", m)
		secs += a.sum("grpc_server_handling_seconds_sum", m) - b.sum("grpc_server_handling_seconds_sum", m)
		v.AuditWrites += a.sum("careteam_audit_write_seconds_count") - b.sum("careteam_audit_write_seconds_count")
		auditSecs += a.sum("careteam_audit_write_seconds_sum") - b.sum("careteam_audit_write_seconds_sum")
		v.PoolWaits += a.sum("careteam_db_pool_empty_acquires_total") - b.sum("careteam_db_pool_empty_acquires_total")
		waitSecs += a.sum("careteam_db_pool_acquire_wait_seconds_total") - b.sum("careteam_db_pool_acquire_wait_seconds_total")
		v.PoolMax += a.sum("careteam_db_pool_max_connections")
		cpu += a.sum("process_cpu_seconds_total") - b.sum("process_cpu_seconds_total")
		elapsed = max(elapsed, a.at.Sub(b.at).Seconds())
		for _, smp := range a.samples["careteam_gate_refusals_total"] {
			prev := 0.0
			for _, p := range b.samples["careteam_gate_refusals_total"] {
				if p.labels == smp.labels {
					prev = p.value
				}
			}
			if d := smp.value - prev; d > 0 {
				v.GateRefusals[labelValue(smp.labels, "violation")] += d
			}
		}
	}
	if v.Calls > 0 {
		v.MeanMs = secs / v.Calls * 1000
		v.PoolWaitMs = waitSecs / v.Calls * 1000
	}
	if v.AuditWrites > 0 {
		v.AuditMeanMs = auditSecs / v.AuditWrites * 1000
	}
	if elapsed > 0 {
		v.CPUCores = cpu / elapsed
	}
	return v
}

func labelValue(labels, key string) string {
	_, rest, ok := strings.Cut(labels, key+`="`)
	if !ok {
		return labels
	}
	v, _, _ := strings.Cut(rest, `"`)
	return v
}

// redactURL shows where a database URL points without its password.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(a malformed URL)"
	}
	return u.Redacted()
}
