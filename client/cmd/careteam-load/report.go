package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// results is everything a run measured, as printed and as --json writes
// it.
type results struct {
	Tool        string         `json:"tool"`
	Started     time.Time      `json:"started"`
	Targets     []string       `json:"targets"`
	Machine     machine        `json:"load_tool_machine"`
	Config      configEcho     `json:"config"`
	Setup       setupFigures   `json:"setup"`
	Phases      []phaseOut     `json:"phases"`
	Floors      floors         `json:"floors"`
	Ratios      []ratio        `json:"ratios,omitempty"`
	Memory      *memoryFigures `json:"memory,omitempty"`
	Soak        *soakFigures   `json:"soak,omitempty"`
	Interrupted bool           `json:"interrupted,omitempty"`
}

type machine struct {
	CPUs       int    `json:"cpus"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	OS         string `json:"os"`
	Arch       string `json:"arch"`
	Go         string `json:"go"`
}

type configEcho struct {
	Concurrency  int     `json:"concurrency"`
	Rate         float64 `json:"rate_per_s,omitempty"`
	Duration     string  `json:"duration"`
	SoloDuration string  `json:"solo_duration"`
	Warmup       string  `json:"warmup"`
	Mix          string  `json:"mix"`
	Conns        int     `json:"conns"`
	Watchers     int     `json:"watchers"`
	Scale        int     `json:"scale,omitempty"`
	Soak         string  `json:"soak,omitempty"`
}

type setupFigures struct {
	Prefix        string       `json:"prefix"`
	Organizations int          `json:"organizations"`
	Physicians    int          `json:"physicians"`
	Therapists    int          `json:"therapists"`
	Coordinators  int          `json:"coordinators"`
	Patients      int          `json:"patients"`
	Seeded        *seedFigures `json:"seeded,omitempty"`
}

type seedFigures struct {
	Referrals   int64   `json:"referrals"`
	Sessions    int64   `json:"sessions"`
	Transitions int64   `json:"transitions"`
	Patients    int64   `json:"patients"`
	Seconds     float64 `json:"seconds"`
}

type phaseOut struct {
	Name string `json:"name"`
	// Loop is "open" (latency from each call's intended start, corrected
	// for coordinated omission) or "closed".
	Loop         string      `json:"loop"`
	Seconds      float64     `json:"seconds"`
	LoadToolCPUs float64     `json:"load_tool_cpu_cores"`
	RPCs         []rpcResult `json:"rpcs"`
	Server       *serverView `json:"server,omitempty"`
}

type floors struct {
	GRPC rpcResult `json:"grpc"`
	DB   rpcResult `json:"database"`
}

// ratio is one hot RPC, measured alone, against the floors.
type ratio struct {
	RPC          string  `json:"rpc"`
	Throughput   float64 `json:"throughput_per_s"`
	OfGRPCFloor  float64 `json:"throughput_of_grpc_floor"`
	OfDBFloor    float64 `json:"throughput_of_database_floor"`
	P99Ms        float64 `json:"p99_ms"`
	P99OfGRPCP99 float64 `json:"p99_over_grpc_floor_p99"`
	P99OfDBP99   float64 `json:"p99_over_database_floor_p99"`
	Target       string  `json:"target,omitempty"`
	TargetMet    *bool   `json:"target_met,omitempty"`
}

type memoryFigures struct {
	Watchers       int              `json:"watchers"`
	Before         []processFigures `json:"before_watchers"`
	Open           []processFigures `json:"watchers_open_idle"`
	EndOfMix       []processFigures `json:"watchers_open_end_of_mix"`
	StreamFailures string           `json:"stream_failures,omitempty"`
}

func newResults(cfg *config) *results {
	r := &results{Tool: "careteam-load", Started: time.Now().UTC(), Targets: cfg.targets, Machine: machineFigures(),
		Config: configEcho{Concurrency: cfg.concurrency, Rate: cfg.rate, Duration: cfg.duration.String(),
			SoloDuration: cfg.soloDuration.String(), Warmup: cfg.warmup.String(), Mix: cfg.mix.String(), Conns: cfg.conns,
			Watchers: cfg.watchers, Scale: cfg.scale}}
	if cfg.soak > 0 {
		r.Config.Soak = cfg.soak.String()
	}
	return r
}

func (r *results) addPhase(ph *phaseStats, view *serverView) {
	loop := "closed"
	if ph.open {
		loop = "open"
	}
	secs := ph.elapsed().Seconds()
	r.Phases = append(r.Phases, phaseOut{Name: ph.name, Loop: loop, Seconds: secs, LoadToolCPUs: ph.cpu.Seconds() / secs,
		RPCs: ph.results(), Server: view})
}

// phaseRPC is rpc's figures in the solo phase named after it.
func (r *results) phaseRPC(rpc string) (rpcResult, *serverView, bool) {
	for _, p := range r.Phases {
		if p.Name == rpc {
			for _, x := range p.RPCs {
				if x.RPC == rpc {
					return x, p.Server, true
				}
			}
		}
	}
	return rpcResult{}, nil, false
}

// targets are the goals for the hot RPCs against the floors.
var targets = map[string]struct {
	text string
	met  func(ratio) bool
}{
	"StartSession":   {">= 60% of the database floor, p99 < 4x its p99", func(x ratio) bool { return x.OfDBFloor >= 0.6 && x.P99OfDBP99 < 4 }},
	"GetReferral":    {">= 50% of the gRPC floor", func(x ratio) bool { return x.OfGRPCFloor >= 0.5 }},
	"CheckClearance": {">= 50% of the gRPC floor", func(x ratio) bool { return x.OfGRPCFloor >= 0.5 }},
}

func (r *results) ratios() {
	div := func(a, b float64) float64 {
		if b == 0 {
			return 0
		}
		return a / b
	}
	for _, p := range r.Phases {
		if strings.HasPrefix(p.Name, "floor: ") || p.Name == "mix" || p.Name == "soak" || strings.HasPrefix(p.Name, "mix ") {
			continue
		}
		x, _, ok := r.phaseRPC(p.Name)
		if !ok {
			continue
		}
		q := ratio{RPC: x.RPC, Throughput: x.Throughput, OfGRPCFloor: div(x.Throughput, r.Floors.GRPC.Throughput),
			OfDBFloor: div(x.Throughput, r.Floors.DB.Throughput), P99Ms: x.P99,
			P99OfGRPCP99: div(x.P99, r.Floors.GRPC.P99), P99OfDBP99: div(x.P99, r.Floors.DB.P99)}
		if t, ok := targets[x.RPC]; ok && x.Count > 0 {
			met := t.met(q)
			q.Target, q.TargetMet = t.text, &met
		}
		r.Ratios = append(r.Ratios, q)
	}
}

// write prints the report for people.
func (r *results) write(out io.Writer) {
	fmt.Fprintf(out, "\ncareteam-load  %s  targets %s\n", r.Started.Format("2006-01-02 15:04 MST"), strings.Join(r.Targets, ", "))
	fmt.Fprintf(out, "load tool machine: %d CPUs (GOMAXPROCS %d), %s/%s, %s\n", r.Machine.CPUs, r.Machine.GOMAXPROCS, r.Machine.OS, r.Machine.Arch, r.Machine.Go)
	s := r.Setup
	fmt.Fprintf(out, "setup: %d organizations, %d physicians, %d therapists, %d coordinators, %d patients (subjects %s-*)\n",
		s.Organizations, s.Physicians, s.Therapists, s.Coordinators, s.Patients, s.Prefix)
	if sd := s.Seeded; sd != nil {
		fmt.Fprintf(out, "seeded (--scale): %d referrals, %d sessions, %d transitions, %d patients in %.0fs\n",
			sd.Referrals, sd.Sessions, sd.Transitions, sd.Patients, sd.Seconds)
	}
	if r.Interrupted {
		fmt.Fprintln(out, "INTERRUPTED: the figures cover the phases run so far")
	}
	fmt.Fprintln(out, "\nLatency in ms from HdrHistogram over successful calls (open loop: from each call's intended start);")
	fmt.Fprintln(out, "calls/s counts successful calls over the recorded interval (after the warm-up).")

	var solo []phaseOut
	var soak *phaseOut
	for _, p := range r.Phases {
		switch {
		case p.Name == "soak":
			soak = &p
		case p.Name == "mix" || strings.HasPrefix(p.Name, "mix "):
			r.writePhase(out, p)
		default:
			solo = append(solo, p)
		}
	}

	if len(solo) > 0 {
		fmt.Fprintf(out, "\n== solo phases and floors: each alone, closed loop, %d callers, %.1fs each\n", r.Config.Concurrency, solo[0].Seconds)
		tw := table(out, "phase\tcalls\tcalls/s\tp50\tp90\tp99\tp99.9\tmax\terrors\tskipped\tload tool CPU\tcareteamd CPU")
		for _, p := range solo {
			for _, x := range p.RPCs {
				if x.RPC == watchLag {
					continue
				}
				name := p.Name
				if x.RPC != p.Name && !strings.HasPrefix(p.Name, "floor: ") {
					name = "  " + x.RPC // a detail row: one shape of the phase's RPC
				}
				server := ""
				if p.Server != nil {
					server = fmt.Sprintf("%.2f cores", p.Server.CPUCores)
				}
				fmt.Fprintf(tw, "%s\t%d\t%.0f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%s\t%s\t%.2f cores\t%s\n", name, x.Count, x.Throughput,
					x.P50, x.P90, x.P99, x.P999, x.Max, errorText(x), count(x.Skipped), p.LoadToolCPUs, server)
			}
		}
		tw.Flush()
		for _, p := range solo {
			writeFirstErrors(out, p.RPCs)
		}
	}
	if len(r.Ratios) > 0 {
		fmt.Fprintf(out, "\n== against the floors (gRPC floor: %s %.0f/s, p99 %.2f ms; database floor: %s %.0f/s, p99 %.2f ms)\n",
			grpcFloor, r.Floors.GRPC.Throughput, r.Floors.GRPC.P99, dbFloor, r.Floors.DB.Throughput, r.Floors.DB.P99)
		tw := table(out, "RPC\tcalls/s\tof gRPC floor\tof DB floor\tp99 ms\tp99 / gRPC floor p99\tp99 / DB floor p99\ttarget")
		for _, q := range r.Ratios {
			target := ""
			if q.TargetMet != nil {
				target = q.Target + ": " + map[bool]string{true: "MET", false: "MISSED"}[*q.TargetMet]
			}
			fmt.Fprintf(tw, "%s\t%.0f\t%.0f%%\t%.0f%%\t%.2f\t%.1fx\t%.1fx\t%s\n", q.RPC, q.Throughput, 100*q.OfGRPCFloor,
				100*q.OfDBFloor, q.P99Ms, q.P99OfGRPCP99, q.P99OfDBP99, target)
		}
		tw.Flush()
	}
	if _, view, ok := r.phaseRPC("StartSession"); ok && view != nil {
		r.writeServerView(out, view)
	}
	if m := r.Memory; m != nil && len(m.Before) > 0 {
		fmt.Fprintf(out, "\n== careteamd memory with %d WatchEvents streams (process_resident_memory_bytes, go_goroutines)\n", m.Watchers)
		tw := table(out, "target\twhen\tresident MiB\tgoroutines\tsubscribers")
		for i := range m.Before {
			for _, row := range []struct {
				when string
				f    []processFigures
			}{{"before the streams", m.Before}, {"streams open, idle", m.Open}, {"streams open, end of mix", m.EndOfMix}} {
				if i < len(row.f) {
					f := row.f[i]
					fmt.Fprintf(tw, "%s\t%s\t%.1f\t%.0f\t%.0f\n", f.Target, row.when, mib(f.ResidentBytes), f.Goroutines, f.Subscribers)
				}
			}
		}
		tw.Flush()
		if m.Watchers >= 1000 {
			worst := 0.0
			for _, f := range slices.Concat(m.Open, m.EndOfMix) {
				worst = max(worst, f.ResidentBytes)
			}
			fmt.Fprintf(out, "target: resident memory with 1,000 streams under 256 MiB: %s (%.1f MiB at most)\n",
				map[bool]string{true: "MET", false: "MISSED"}[mib(worst) < 256], mib(worst))
		}
		if m.StreamFailures != "" {
			fmt.Fprintf(out, "WatchEvents: %s\n", m.StreamFailures)
		}
	}
	if soak != nil {
		r.writePhase(out, *soak)
	}
	if sk := r.Soak; sk != nil {
		fmt.Fprintf(out, "\n== soak: %.0fs at %.0f calls/s (open loop), %d WatchEvents streams\n", sk.Seconds, sk.Rate, sk.Watchers)
		tw := table(out, "target\twhen\tresident MiB\tgoroutines")
		for i := range sk.IdleBefore {
			for _, row := range []struct {
				when string
				f    []processFigures
			}{{"idle before", sk.IdleBefore}, {"start (10s in)", sk.Start}, {"end", sk.End}, {"idle after (5s)", sk.IdleAfter}} {
				if i < len(row.f) {
					fmt.Fprintf(tw, "%s\t%s\t%.1f\t%.0f\n", row.f[i].Target, row.when, mib(row.f[i].ResidentBytes), row.f[i].Goroutines)
				}
			}
		}
		tw.Flush()
		if len(sk.Series) > 1 {
			var parts []string
			for _, smp := range sk.Series {
				var rss, g float64
				for _, f := range smp.Figures {
					rss, g = rss+f.ResidentBytes, g+f.Goroutines
				}
				parts = append(parts, fmt.Sprintf("%.0fs: %.0f MiB/%.0f", smp.Seconds, mib(rss), g))
			}
			fmt.Fprintf(out, "series (resident/goroutines, all targets): %s\n", strings.Join(parts, ", "))
		}
	}
	fmt.Fprintln(out)
}

func (r *results) writePhase(out io.Writer, p phaseOut) {
	mode := fmt.Sprintf("closed loop, %d callers", r.Config.Concurrency)
	if p.Loop == "open" {
		var total float64
		for _, x := range p.RPCs {
			if isTotal(x.RPC) {
				total += x.Throughput
			}
		}
		mode = fmt.Sprintf("open loop (%.0f calls/s done)", total)
	}
	fmt.Fprintf(out, "\n== %s: %s, %.1fs recorded, load tool used %.2f cores\n", p.Name, mode, p.Seconds, p.LoadToolCPUs)
	tw := table(out, "RPC\tcalls\tcalls/s\tp50\tp90\tp99\tp99.9\tmax\terrors\tskipped")
	var total rpcResult
	for _, x := range p.RPCs {
		fmt.Fprintf(tw, "%s\t%d\t%.1f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%s\t%s\n", x.RPC, x.Count, x.Throughput, x.P50, x.P90, x.P99,
			x.P999, x.Max, errorText(x), count(x.Skipped))
		if isTotal(x.RPC) {
			total.Count += x.Count
			total.Throughput += x.Throughput
			total.Skipped += x.Skipped
		}
	}
	fmt.Fprintf(tw, "all calls\t%d\t%.1f\t\t\t\t\t\t\t%s\n", total.Count, total.Throughput, count(total.Skipped))
	tw.Flush()
	writeFirstErrors(out, p.RPCs)
}

// writeFirstErrors shows the first message of each error code, which
// usually says why.
func writeFirstErrors(out io.Writer, rpcs []rpcResult) {
	for _, x := range rpcs {
		for _, k := range slices.Sorted(maps.Keys(x.FirstErrors)) {
			msg := x.FirstErrors[k]
			if len(msg) > 160 {
				msg = msg[:160] + "..."
			}
			fmt.Fprintf(out, "  first %s error of %s: %s\n", k, x.RPC, msg)
		}
	}
}

func (r *results) writeServerView(out io.Writer, v *serverView) {
	fmt.Fprintf(out, "\n== careteamd during StartSession alone (its /metrics, differences over the phase, all targets)\n")
	fmt.Fprintf(out, "  grpc_server_handling_seconds{grpc_method=\"StartSession\"}  %.0f calls, mean %.2f ms in the server\n", v.Calls, v.MeanMs)
	fmt.Fprintf(out, "  careteam_audit_write_seconds                              %.0f appends, mean %.2f ms (audit record + commit)\n", v.AuditWrites, v.AuditMeanMs)
	fmt.Fprintf(out, "  careteam_db_pool_empty_acquires_total                     %.0f calls waited for a connection, %.2f ms per call (pool of %.0f)\n",
		v.PoolWaits, v.PoolWaitMs, v.PoolMax)
	if len(v.GateRefusals) == 0 {
		fmt.Fprintf(out, "  careteam_gate_refusals_total                              none\n")
	} else {
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(v.GateRefusals)) {
			parts = append(parts, fmt.Sprintf("%s %.0f", k, v.GateRefusals[k]))
		}
		fmt.Fprintf(out, "  careteam_gate_refusals_total                              %s\n", strings.Join(parts, ", "))
	}
	fmt.Fprintf(out, "  process_cpu_seconds_total                                 careteamd used %.2f cores\n", v.CPUCores)
	fmt.Fprintln(out, "  Where to look when StartSession slows down: a server mean far below the client's p50 points at the")
	fmt.Fprintln(out, "  network or the client; pool waits at the pool size point at --db-max-conns or at transactions held")
	fmt.Fprintln(out, "  open; a high audit mean points at commit (fsync) and the audit chain and event cursor locks; refusals")
	fmt.Fprintln(out, "  are fast FAILED_PRECONDITIONs, not slowness. Then profile: go tool pprof -top")
	fmt.Fprintln(out, "  'http://DEBUG-LISTEN/debug/pprof/profile?seconds=20' while this phase runs (careteamd --debug-listen).")
}

func table(out io.Writer, header string) *tabwriter.Writer {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	return tw
}

func errorText(x rpcResult) string {
	if len(x.Errors) == 0 {
		return "0"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(x.Errors)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, x.Errors[k]))
	}
	return strings.Join(parts, ", ")
}

func count(n int64) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprint(n)
}

func goroutines(fs []processFigures) string {
	var parts []string
	for _, f := range fs {
		parts = append(parts, fmt.Sprintf("%.0f", f.Goroutines))
	}
	return strings.Join(parts, "/")
}

func (r *results) writeJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
