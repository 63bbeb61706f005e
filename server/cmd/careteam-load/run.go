package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"slices"
	"time"

	"github.com/careteam/careteam/client"
	"github.com/careteam/careteam/server/internal/loadfloor"
	"github.com/careteam/careteam/server/internal/loadfloor/seed"
)

// load is one run: its configuration, what it set up, and the
// connections its calls go over.
type load struct {
	cfg   *config
	w     *world
	calls *conns
	prog  *progress
}

// dial opens one connection balanced over every target, authenticating
// each call as the actor its context carries.
func (l *load) dial() (*client.Client, error) {
	opts := []client.Option{client.WithToken(actorToken), client.WithTimeout(l.cfg.timeout)}
	if l.cfg.ca != "" {
		tlsCfg, err := client.TLSFromFiles(l.cfg.ca, "", "")
		if err != nil {
			return nil, err
		}
		opts = append(opts, client.WithTLS(tlsCfg))
	} else {
		opts = append(opts, client.WithPlaintext())
	}
	return client.DialAll(l.cfg.targets, opts...)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseConfig(args, stderr)
	if err != nil {
		return err
	}
	l := &load{cfg: cfg, w: &world{}, calls: &conns{}, prog: newProgress(stderr)}
	for range cfg.conns {
		c, err := l.dial()
		if err != nil {
			return err
		}
		l.calls.list = append(l.calls.list, c)
	}
	defer l.calls.close()

	res := newResults(cfg)
	if err := l.setup(ctx); err != nil {
		return err
	}
	res.Setup = setupFigures{Organizations: len(l.w.clinics) + len(l.w.spas), Physicians: len(l.w.physicians),
		Therapists: len(l.w.therapists), Coordinators: len(l.w.coordinators), Patients: len(l.w.patients), Prefix: cfg.prefix}
	if cfg.scale > 0 {
		if res.Setup.Seeded, err = l.seed(ctx); err != nil {
			return err
		}
	}

	var mixStats *phaseStats
	if cfg.runs("mix") && ctx.Err() == nil {
		if mixStats, res.Memory, err = l.mixPhase(ctx); err != nil {
			return err
		}
		res.addPhase(mixStats, nil, nil)
	}
	if cfg.runs("solo") && ctx.Err() == nil {
		if err := l.soloPhases(ctx, res); err != nil {
			return err
		}
	}
	if cfg.soak > 0 && ctx.Err() == nil {
		if res.Soak, err = l.soakPhase(ctx, mixStats, res); err != nil {
			return err
		}
	}
	res.Interrupted = ctx.Err() != nil
	res.write(stdout)
	if cfg.jsonPath != "" {
		if err := res.writeJSON(cfg.jsonPath); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "results written to %s\n", cfg.jsonPath)
	}
	return nil
}

// seed bulk-loads --scale referrals into the load's practices.
func (l *load) seed(ctx context.Context) (*seedFigures, error) {
	spec := seed.Spec{Referrals: l.cfg.scale}
	for _, ph := range l.w.physicians {
		spec.Physicians = append(spec.Physicians, ph.subject)
	}
	for _, th := range l.w.therapists {
		spec.Therapists = append(spec.Therapists, th.subject)
	}
	began := time.Now()
	r, err := seed.Write(ctx, l.cfg.databaseURL, spec, func(stage string, done, total int64) {
		l.prog.update("seed: %-34s %s %d/%d  %v", stage, bar(done, total), done, total, time.Since(began).Round(time.Second))
	})
	if err != nil {
		l.prog.done("seed: failed")
		return nil, fmt.Errorf("--scale writes through --database-url (by default the embedded database in --data-dir): %w", err)
	}
	l.prog.done("seed: %d referrals, %d sessions, %d patients in %v (copy %v, indexes and analyze %v)", r.Referrals, r.Sessions,
		r.Patients, time.Since(began).Round(time.Second), r.Copy.Round(time.Second), r.Index.Round(time.Second))
	return &seedFigures{Referrals: r.Referrals, Sessions: r.Sessions, Transitions: r.Transitions, Patients: r.Patients,
		Seconds: time.Since(began).Seconds()}, nil
}

// visitsFor estimates the session starts a phase may make at rate starts
// per second, with room to spare, so the pool is primed beforehand rather
// than during the measurement.
func visitsFor(rate float64, d time.Duration) int64 {
	return int64(max(rate, 500) * 1.5 * d.Seconds())
}

// mixPhase runs the mix with the watchers open and reads careteamd's
// memory before the streams open, with them open and idle, and at the end
// of the mix.
func (l *load) mixPhase(ctx context.Context) (*phaseStats, *memoryFigures, error) {
	cfg := l.cfg
	guess := cfg.rate
	if guess == 0 {
		guess = 3000 // calls per second a closed loop might reach on a small machine
	}
	if err := l.prime(ctx, visitsFor(guess*cfg.mix.share("StartSession"), cfg.duration+cfg.warmup)); err != nil {
		return nil, nil, err
	}
	mem := &memoryFigures{Watchers: cfg.watchers}
	before := l.scrapeAll(ctx)
	mem.Before = l.processFigures(before)
	ws, err := l.openWatchers(ctx, cfg.watchers)
	if err != nil {
		return nil, nil, err
	}
	defer ws.close()
	var subs float64
	for _, s := range before {
		subs += s.sum("careteam_event_subscribers")
	}
	l.waitOpen(ctx, ws, subs)
	mem.Open = l.processFigures(l.scrapeAll(ctx))

	p := phase{name: "mix", rate: cfg.rate, concurrency: cfg.concurrency, warmup: cfg.warmup, duration: cfg.duration,
		choose:  l.mixWork(cfg.mix),
		started: func(ph *phaseStats) { ws.phase.Store(ph) },
		stopped: func(*phaseStats) {
			ws.phase.Store(nil)
			mem.EndOfMix = l.processFigures(l.scrapeAll(ctx))
		}}
	ph := l.run(ctx, p)
	if f := ws.failures(); f != "" {
		l.prog.note("warning: WatchEvents: %s", f)
		mem.StreamFailures = f
	}
	return ph, mem, nil
}

// soloPhases runs the floors and each --solo RPC alone at --concurrency,
// each floor beside the calls it is the floor of, so that a drift of the
// machine over the run falls on both alike.
func (l *load) soloPhases(ctx context.Context, res *results) error {
	cfg := l.cfg
	// The reads need accepted referrals to read, even when the mix did
	// not run.
	if err := l.prime(ctx, 0); err != nil {
		return err
	}
	f, err := loadfloor.Open(ctx, cfg.databaseURL, cfg.concurrency)
	if err != nil {
		return fmt.Errorf("the database floors (give --database-url when careteamd's database is not the embedded one in --data-dir): %w", err)
	}
	defer f.Close()
	l.prog.done("floors: schema careteam_floor ready in %s, a row per caller", redactURL(cfg.databaseURL))
	if err := l.grpcFloorPhase(ctx, res); err != nil {
		return err
	}
	l.dbFloorPhases(ctx, f, res, true)
	solo := func(name string) {
		var before []*scrape
		var view *serverView
		p := phase{name: name, concurrency: cfg.concurrency, warmup: cfg.warmup, duration: cfg.soloDuration,
			choose:  soloWork(l.opWork(name)),
			started: func(*phaseStats) { before = l.scrapeAll(ctx) },
			stopped: func(*phaseStats) { view = viewOf(name, before, l.scrapeAll(ctx)) }}
		var locks *lockWatch
		if name == "StartSession" {
			locks = l.watchLocks(ctx, &p)
		}
		ph := l.run(ctx, p)
		res.addPhase(ph, view, locks.result())
	}
	for _, name := range cfg.solo {
		if name != "StartSession" && ctx.Err() == nil {
			solo(name)
		}
	}
	l.dbFloorPhases(ctx, f, res, false)
	if slices.Contains(cfg.solo, "StartSession") && ctx.Err() == nil {
		// Room for StartSession at twice the faster transaction floor.
		tx, _ := res.floor(txFloor)
		txa, _ := res.floor(txAuditFloor)
		if err := l.prime(ctx, visitsFor(2*max(tx.Throughput, txa.Throughput), cfg.soloDuration+cfg.warmup)); err != nil {
			return err
		}
		solo("StartSession")
	}
	res.ratios()
	return nil
}

func machineFigures() machine {
	return machine{CPUs: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), OS: runtime.GOOS, Arch: runtime.GOARCH, Go: runtime.Version()}
}
