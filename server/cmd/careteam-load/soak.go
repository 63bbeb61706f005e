package main

import (
	"context"
	"errors"
	"sync"
	"time"
)

// soakFigures are careteamd's goroutines and memory over a soak. A leak
// shows as idle goroutines that do not come back down after the load, or
// memory that keeps climbing under a steady load.
type soakFigures struct {
	Rate     float64 `json:"rate_per_s"`
	Seconds  float64 `json:"seconds"`
	Watchers int     `json:"watchers"`
	// IdleBefore and IdleAfter: with the watchers open and no other load,
	// before the soak and five seconds after it.
	IdleBefore []processFigures `json:"idle_before"`
	// Start is read ten seconds into the soak's load, End as it stops.
	Start     []processFigures `json:"start"`
	End       []processFigures `json:"end"`
	IdleAfter []processFigures `json:"idle_after"`
	Series    []soakSample     `json:"series"`
}

type soakSample struct {
	Seconds float64          `json:"seconds"`
	Figures []processFigures `json:"figures"`
}

// soakPhase runs the mix in an open loop at half the maximum rate the
// closed-loop mix reached (measuring it first if the mix ran open), with
// the watchers open, and samples careteamd's process figures throughout.
func (l *load) soakPhase(ctx context.Context, mixStats *phaseStats, res *results) (*soakFigures, error) {
	cfg := l.cfg
	if len(cfg.metrics) == 0 {
		return nil, errors.New("--soak reports careteamd's goroutines and memory: give --metrics")
	}
	rate := cfg.soakRate
	if rate == 0 {
		if mixStats == nil || mixStats.open {
			if err := l.prime(ctx, visitsFor(3000*cfg.mix.share("StartSession"), cfg.duration+cfg.warmup)); err != nil {
				return nil, err
			}
			mixStats = l.run(ctx, phase{name: "mix at maximum rate", concurrency: cfg.concurrency, warmup: cfg.warmup,
				duration: cfg.duration, choose: l.mixWork(cfg.mix)})
			res.addPhase(mixStats, nil, nil)
		}
		rate = totalThroughput(mixStats) / 2
	}
	if rate <= 0 || ctx.Err() != nil {
		return nil, ctx.Err()
	}
	// The mix's own flows replenish the accepted referrals; a minute's
	// worth in advance covers the start.
	if err := l.prime(ctx, visitsFor(rate*cfg.mix.share("StartSession"), time.Minute)); err != nil {
		return nil, err
	}
	s := &soakFigures{Rate: rate, Seconds: cfg.soak.Seconds(), Watchers: cfg.watchers}
	before := l.scrapeAll(ctx)
	var subs float64
	for _, sc := range before {
		subs += sc.sum("careteam_event_subscribers")
	}
	ws, err := l.openWatchers(ctx, cfg.watchers)
	if err != nil {
		return nil, err
	}
	defer ws.close()
	l.waitOpen(ctx, ws, subs)
	s.IdleBefore = l.processFigures(l.scrapeAll(ctx))

	var mu sync.Mutex
	sampling := false
	samplerDone := make(chan struct{})
	stopSampler := make(chan struct{})
	sample := func(began time.Time) {
		f := l.processFigures(l.scrapeAll(ctx))
		mu.Lock()
		s.Series = append(s.Series, soakSample{Seconds: time.Since(began).Seconds(), Figures: f})
		mu.Unlock()
	}
	p := phase{name: "soak", rate: rate, concurrency: cfg.concurrency, warmup: cfg.warmup, duration: cfg.soak,
		choose: l.mixWork(cfg.mix),
		started: func(ph *phaseStats) {
			ws.phase.Store(ph)
			sampling = true
			go func() {
				defer close(samplerDone)
				began := time.Now()
				first := time.NewTimer(10 * time.Second)
				defer first.Stop()
				select {
				case <-stopSampler:
					return
				case <-first.C:
				}
				sample(began)
				mu.Lock()
				s.Start = s.Series[0].Figures
				mu.Unlock()
				every := time.NewTicker(30 * time.Second)
				defer every.Stop()
				for {
					select {
					case <-stopSampler:
						return
					case <-every.C:
						sample(began)
					}
				}
			}()
		},
		stopped: func(*phaseStats) {
			ws.phase.Store(nil)
			close(stopSampler)
			if sampling {
				<-samplerDone
			}
			s.End = l.processFigures(l.scrapeAll(ctx))
		}}
	ph := l.run(ctx, p)
	res.addPhase(ph, nil, nil)
	l.prog.update("soak: waiting 5s for careteamd to go idle")
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
	}
	s.IdleAfter = l.processFigures(l.scrapeAll(ctx))
	l.prog.done("soak: idle goroutines %s before, %s after", goroutines(s.IdleBefore), goroutines(s.IdleAfter))
	if f := ws.failures(); f != "" {
		l.prog.note("warning: WatchEvents: %s", f)
	}
	return s, nil
}

func totalThroughput(ph *phaseStats) float64 {
	var t float64
	for _, r := range ph.results() {
		if isTotal(r.RPC) {
			t += r.Throughput
		}
	}
	return t
}
