package main

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Latencies are kept in microseconds, from 1 µs to 2 minutes, to three
// significant digits: finer than any call here and longer than any
// deadline.
const (
	histMin     = 1
	histMax     = int64(2 * time.Minute / time.Microsecond)
	histSigFigs = 3
)

// recorder is one RPC's outcomes in one phase.
type recorder struct {
	mu     sync.Mutex
	hist   *hdrhistogram.Histogram // successful calls only
	ok     int64
	errors map[codes.Code]int64
	// firstError keeps one message per code, to tell what went wrong.
	firstError map[codes.Code]string
	// skipped counts arrivals that found nothing to work on (no draft to
	// submit, no session to sign): the mix's flows did not keep up.
	skipped int64
}

// phaseStats is what one phase measured, by RPC.
type phaseStats struct {
	name string
	// open reports open-loop arrivals, whose latencies are measured from
	// the intended start and so include any wait behind earlier calls
	// (corrected for coordinated omission).
	open bool
	mu   sync.Mutex
	rpcs map[string]*recorder
	// began and ended bound the recorded interval (after the warm-up).
	began, ended time.Time
	// recording is off during the warm-up.
	recording atomic.Bool
	// Totals for the progress line.
	calls, failures atomic.Int64
	// cpu is the load tool's own CPU time over the recorded interval.
	cpu time.Duration
}

func newPhaseStats(name string, open bool) *phaseStats {
	return &phaseStats{name: name, open: open, rpcs: map[string]*recorder{}}
}

func (p *phaseStats) recorder(rpc string) *recorder {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.rpcs[rpc]
	if r == nil {
		r = &recorder{hist: hdrhistogram.New(histMin, histMax, histSigFigs), errors: map[codes.Code]int64{}, firstError: map[codes.Code]string{}}
		p.rpcs[rpc] = r
	}
	return r
}

// start begins recording (the warm-up is over).
func (p *phaseStats) start() {
	p.began = time.Now()
	p.cpu = -cpuTime()
	p.calls.Store(0)
	p.failures.Store(0)
	p.recording.Store(true)
}

// stop ends recording; calls still in flight are not counted.
func (p *phaseStats) stop() {
	if p.recording.Swap(false) {
		p.ended = time.Now()
		p.cpu += cpuTime()
	}
}

func (p *phaseStats) elapsed() time.Duration {
	if p.ended.IsZero() {
		return time.Since(p.began)
	}
	return p.ended.Sub(p.began)
}

// record notes one call of rpc that took d (from its intended start in
// an open loop) and ended with err.
func (p *phaseStats) record(rpc string, d time.Duration, err error) {
	if !p.recording.Load() {
		return
	}
	p.calls.Add(1)
	if err != nil {
		p.failures.Add(1)
	}
	p.note(rpc, d, err)
}

// detail records a call already recorded under its RPC again, under a
// finer name (an RPC and the shape of its request), left out of totals.
func (p *phaseStats) detail(name string, d time.Duration, err error) {
	if p.recording.Load() {
		p.note(name, d, err)
	}
}

// isTotal says whether a row counts in a phase's totals: not a detail
// row, nor the watchers' delivery lag.
func isTotal(name string) bool { return name != watchLag && !strings.Contains(name, " (") }

func (p *phaseStats) note(rpc string, d time.Duration, err error) {
	r := p.recorder(rpc)
	code := codes.OK
	if err != nil {
		code = errorCode(err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if code != codes.OK {
		if r.errors[code]++; r.errors[code] == 1 {
			r.firstError[code] = err.Error()
		}
		return
	}
	r.ok++
	// A value above the range is clamped rather than lost.
	_ = r.hist.RecordValue(min(max(d.Microseconds(), histMin), histMax))
}

// skip notes an arrival that found no work.
func (p *phaseStats) skip(rpc string) {
	if !p.recording.Load() {
		return
	}
	r := p.recorder(rpc)
	r.mu.Lock()
	r.skipped++
	r.mu.Unlock()
}

// errorCode is the gRPC code of err; a deadline or cancellation of the
// load tool's own context counts as such.
func errorCode(err error) codes.Code {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	}
	if s, ok := status.FromError(err); ok {
		return s.Code()
	}
	return codes.Unknown
}

// rpcResult is one RPC's figures in a phase, as reported.
type rpcResult struct {
	RPC    string           `json:"rpc"`
	Count  int64            `json:"count"`
	Errors map[string]int64 `json:"errors,omitempty"`
	// FirstErrors is the first message of each error code.
	FirstErrors map[string]string `json:"first_errors,omitempty"`
	Skipped     int64             `json:"skipped,omitempty"`
	Throughput  float64           `json:"throughput_per_s"`
	P50         float64           `json:"p50_ms"`
	P90         float64           `json:"p90_ms"`
	P99         float64           `json:"p99_ms"`
	P999        float64           `json:"p99_9_ms"`
	Max         float64           `json:"max_ms"`
}

func (r rpcResult) errorTotal() int64 {
	var n int64
	for _, v := range r.Errors {
		n += v
	}
	return n
}

// results summarizes the phase, RPCs in name order.
func (p *phaseStats) results() []rpcResult {
	secs := p.elapsed().Seconds()
	p.mu.Lock()
	names := make([]string, 0, len(p.rpcs))
	for n := range p.rpcs {
		names = append(names, n)
	}
	p.mu.Unlock()
	slices.Sort(names)
	out := make([]rpcResult, 0, len(names))
	for _, n := range names {
		r := p.recorder(n)
		r.mu.Lock()
		res := rpcResult{RPC: n, Count: r.ok, Skipped: r.skipped, Throughput: float64(r.ok) / secs}
		if len(r.errors) > 0 {
			res.Errors, res.FirstErrors = map[string]int64{}, map[string]string{}
			for c, v := range r.errors {
				res.Errors[c.String()], res.FirstErrors[c.String()] = v, r.firstError[c]
			}
		}
		if r.ok > 0 {
			ms := func(q float64) float64 { return float64(r.hist.ValueAtQuantile(q)) / 1000 }
			res.P50, res.P90, res.P99, res.P999 = ms(50), ms(90), ms(99), ms(99.9)
			res.Max = float64(r.hist.Max()) / 1000
		}
		r.mu.Unlock()
		out = append(out, res)
	}
	return out
}

// result returns one RPC's figures, zero if it was never called.
func (p *phaseStats) result(rpc string) rpcResult {
	for _, r := range p.results() {
		if r.RPC == rpc {
			return r
		}
	}
	return rpcResult{RPC: rpc}
}
