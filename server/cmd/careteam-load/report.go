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

	"github.com/careteam/careteam/server/internal/loadfloor"
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
	Floors      []floorResult  `json:"floors,omitempty"`
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
	Locks        *lockReport `json:"lock_waits,omitempty"`
}

// floorResult is one floor's figures: the floor's phase, under the
// floor's phase name.
type floorResult struct {
	Key  string `json:"key"`
	What string `json:"what"`
	rpcResult
}

// lockReport is what the lock-wait sampler saw over a phase.
type lockReport struct {
	loadfloor.LockWaits
	Error string `json:"error,omitempty"`
}

// ratio is one careteam call, measured alone, against every floor.
type ratio struct {
	RPC        string       `json:"rpc"`
	Throughput float64      `json:"throughput_per_s"`
	P99Ms      float64      `json:"p99_ms"`
	Floors     []floorRatio `json:"against_floors"`
	Targets    []targetOut  `json:"targets,omitempty"`
}

type floorRatio struct {
	Floor string `json:"floor"`
	// Throughput is the call's over the floor's; P99 the call's p99 over
	// the floor's.
	Throughput float64 `json:"throughput_of_floor"`
	P99        float64 `json:"p99_over_floor_p99"`
}

type targetOut struct {
	Floor  string `json:"floor"`
	Target string `json:"target"`
	// Met is absent when the call or its floor was not measured.
	Met *bool `json:"met,omitempty"`
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

func (r *results) addPhase(ph *phaseStats, view *serverView, locks *lockReport) {
	loop := "closed"
	if ph.open {
		loop = "open"
	}
	secs := ph.elapsed().Seconds()
	r.Phases = append(r.Phases, phaseOut{Name: ph.name, Loop: loop, Seconds: secs, LoadToolCPUs: ph.cpu.Seconds() / secs,
		RPCs: ph.results(), Server: view, Locks: locks})
}

// addFloor adds a floor's phase, and its figures to the floors.
func (r *results) addFloor(fl floor, ph *phaseStats, locks *lockReport) {
	r.addPhase(ph, nil, locks)
	r.Floors = append(r.Floors, floorResult{Key: fl.key, What: fl.what, rpcResult: ph.result(fl.name)})
}

// floor is fl's figures, if it ran and had successful calls.
func (r *results) floor(fl floor) (floorResult, bool) {
	for _, f := range r.Floors {
		if f.Key == fl.key {
			return f, f.Count > 0
		}
	}
	return floorResult{}, false
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

// target is a goal the product is held to: a call alone against one
// floor.
type target struct {
	rpc   string
	floor floor
	// minThroughput is the least throughput as a fraction of the floor's;
	// maxP99 the most p99 as a multiple of the floor's (0: no bound).
	minThroughput, maxP99 float64
}

var targets = []target{
	{"StartSession", txFloor, 0.5, 3},
	{"GetReferral", readFloor, 0.4, 0},
	{"GetReferral", readAudit, 1.0, 0},
	{"CheckClearance", readFloor, 0.4, 0},
	{"CheckClearance", readAudit, 1.0, 0},
}

func (t target) String() string {
	s := fmt.Sprintf("throughput >= %g of %s", t.minThroughput, t.floor.key)
	if t.maxP99 > 0 {
		s += fmt.Sprintf(", p99 <= %gx its p99", t.maxP99)
	}
	return s
}

func (t target) met(x floorRatio) bool {
	return x.Throughput >= t.minThroughput && (t.maxP99 == 0 || x.P99 <= t.maxP99)
}

// ratios compares each call measured alone with every floor measured,
// and checks the targets.
func (r *results) ratios() {
	for _, p := range r.Phases {
		if strings.HasPrefix(p.Name, "floor: ") || p.Name == "mix" || p.Name == "soak" || strings.HasPrefix(p.Name, "mix ") {
			continue
		}
		x, _, ok := r.phaseRPC(p.Name)
		if !ok {
			continue
		}
		q := ratio{RPC: x.RPC, Throughput: x.Throughput, P99Ms: x.P99}
		against := map[string]floorRatio{}
		for _, fl := range allFloors {
			if f, ok := r.floor(fl); ok && x.Count > 0 {
				fr := floorRatio{Floor: fl.key, Throughput: x.Throughput / f.Throughput, P99: x.P99 / f.P99}
				q.Floors = append(q.Floors, fr)
				against[fl.key] = fr
			}
		}
		for _, t := range targets {
			if t.rpc != x.RPC {
				continue
			}
			out := targetOut{Floor: t.floor.key, Target: t.String()}
			if fr, ok := against[t.floor.key]; ok {
				out.Met = new(t.met(fr))
			}
			q.Targets = append(q.Targets, out)
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
				if x.RPC != p.Name {
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
	r.writeFloors(out)
	r.writeLocks(out)
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

// writeFloors prints what each floor is, each call against each floor,
// and the targets.
func (r *results) writeFloors(out io.Writer) {
	if len(r.Floors) == 0 {
		return
	}
	fmt.Fprintln(out, "\n== floors: none of careteamd's code, same run, same callers")
	tw := table(out, "floor\tcalls/s\tp99\twhat")
	for _, f := range r.Floors {
		fmt.Fprintf(tw, "%s\t%.0f\t%.2f\t%s\n", f.Key, f.Throughput, f.P99, f.What)
	}
	tw.Flush()
	if len(r.Ratios) == 0 {
		return
	}
	fmt.Fprintln(out, "\n== careteam calls alone against each floor: throughput as a fraction of the floor's / p99 as a multiple of the floor's")
	header := "RPC\tcalls/s\tp99"
	for _, fl := range allFloors {
		header += "\t" + fl.key
	}
	tw = table(out, header)
	for _, q := range r.Ratios {
		fmt.Fprintf(tw, "%s\t%.0f\t%.2f", q.RPC, q.Throughput, q.P99Ms)
		for _, fl := range allFloors {
			cell := "-"
			for _, fr := range q.Floors {
				if fr.Floor == fl.key {
					cell = fmt.Sprintf("%.2f / %.1fx", fr.Throughput, fr.P99)
				}
			}
			fmt.Fprintf(tw, "\t%s", cell)
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
	var rows []string
	for _, q := range r.Ratios {
		for _, t := range q.Targets {
			verdict := "not measured"
			if t.Met != nil {
				verdict = map[bool]string{true: "MET", false: "MISSED"}[*t.Met]
				for _, fr := range q.Floors {
					if fr.Floor == t.Floor {
						verdict = fmt.Sprintf("%.2f, p99 %.1fx: %s", fr.Throughput, fr.P99, verdict)
					}
				}
			}
			rows = append(rows, fmt.Sprintf("%s\t%s\t%s\n", q.RPC, t.Target, verdict))
		}
	}
	if len(rows) > 0 {
		fmt.Fprintln(out, "\n== targets")
		tw = table(out, "RPC\ttarget\tmeasured")
		for _, row := range rows {
			fmt.Fprint(tw, row)
		}
		tw.Flush()
	}
}

// writeLocks prints the lock-wait samples of the phases that took them.
func (r *results) writeLocks(out io.Writer) {
	header := false
	for _, p := range r.Phases {
		lw := p.Locks
		if lw == nil {
			continue
		}
		if !header {
			fmt.Fprintln(out, "\n== lock waits in careteamd's database: pg_stat_activity and ungranted pg_locks every 50 ms over the recorded interval")
			header = true
		}
		if lw.Error != "" {
			fmt.Fprintf(out, "%s: sampler failed: %s\n", p.Name, lw.Error)
		}
		fmt.Fprintf(out, "%s: %d samples, %d with a lock wait, at most %d waiters\n", p.Name, lw.Samples, lw.Waiting, lw.MaxWaiters)
		for i, k := range lw.Kinds {
			if i == 5 {
				fmt.Fprintf(out, "  and %d more\n", len(lw.Kinds)-i)
				break
			}
			rel := k.Relation
			if k.LockType == "transactionid" {
				rel = "(another transaction's row lock)"
			}
			fmt.Fprintf(out, "  %-14s %-40s in %d samples, at most %d waiters\n", k.LockType, rel, k.Samples, k.MaxWaiters)
		}
	}
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
	fmt.Fprintln(out, "  open; a high audit mean points at the final batch and commit (fsync), and the lock waits above at")
	fmt.Fprintln(out, "  rows the calls share (a wait on another transaction's row lock between unrelated calls is a bug); refusals")
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
