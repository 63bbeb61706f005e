package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// work is one arrival's call: it returns false when it found nothing to
// do.
type work func(ctx context.Context, ph *phaseStats, rng *rand.Rand, intended time.Time) bool

// phase describes one measured interval.
type phase struct {
	name string
	// rate > 0 runs an open loop at rate arrivals per second; otherwise
	// concurrency callers run a closed loop.
	rate        float64
	concurrency int
	warmup      time.Duration
	duration    time.Duration
	// choose returns the work of the next arrival.
	choose func(rng *rand.Rand) work
	// started and stopped run as recording starts and stops, for
	// measurements of the server over exactly the recorded interval.
	started, stopped func(*phaseStats)
}

// run runs the phase: a warm-up, then duration recorded. It stops
// starting calls when time is up (or ctx ends) and waits for those in
// flight, which are not counted, rather than cancelling them: a cancelled
// write may still commit, and the flows would lose track of it.
func (l *load) run(ctx context.Context, p phase) *phaseStats {
	ph := newPhaseStats(p.name, p.rate > 0)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var inflight atomic.Int64
	callCtx := context.WithoutCancel(ctx)
	if p.rate > 0 {
		wg.Go(func() { l.openLoop(callCtx, p, ph, stop, &inflight) })
	} else {
		for i := range p.concurrency {
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(i)))
				for {
					select {
					case <-stop:
						return
					default:
					}
					inflight.Add(1)
					found := p.choose(rng)(callCtx, ph, rng, time.Now())
					inflight.Add(-1)
					if !found {
						// Nothing to act on: let the flow that feeds it
						// catch up rather than spin.
						time.Sleep(time.Millisecond)
					}
				}
			})
		}
	}

	mode := fmt.Sprintf("%d callers", p.concurrency)
	if p.rate > 0 {
		mode = fmt.Sprintf("%.0f/s open loop", p.rate)
	}
	began := time.Now()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	recording := false
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case now := <-tick.C:
			switch {
			case !recording && now.Sub(began) >= p.warmup:
				recording = true
				ph.start()
				if p.started != nil {
					p.started(ph)
				}
			case recording && ph.elapsed() >= p.duration:
				done = true
				continue
			}
			if recording {
				e := ph.elapsed().Seconds()
				l.prog.update("%-28s %s %5.1fs/%s  %8d calls %8.0f/s  %5d errors  %4d in flight", p.name, mode, e, p.duration,
					ph.calls.Load(), float64(ph.calls.Load())/e, ph.failures.Load(), inflight.Load())
			} else {
				l.prog.update("%-28s %s  warming up %4.1fs/%s", p.name, mode, now.Sub(began).Seconds(), p.warmup)
			}
		}
	}
	if !recording {
		ph.start() // interrupted during the warm-up: an empty phase
	}
	ph.stop()
	if p.stopped != nil {
		p.stopped(ph)
	}
	close(stop)
	l.prog.update("%-28s finishing %d calls in flight", p.name, inflight.Load())
	wg.Wait()
	e := ph.elapsed().Seconds()
	l.prog.done("%-28s %s  %s  %d calls, %.0f/s, %d errors", p.name, mode, ph.elapsed().Round(100*time.Millisecond),
		ph.calls.Load(), float64(ph.calls.Load())/e, ph.failures.Load())
	return ph
}

// openLoop starts arrivals at fixed intervals whatever the answers' speed.
// Each call's latency is measured from when it was meant to start, so a
// server that falls behind is charged for the queue it builds (no
// coordinated omission). At most maxInflight calls run; later arrivals wait
// for a slot, and that wait counts in their latency too.
func (l *load) openLoop(ctx context.Context, p phase, ph *phaseStats, stop <-chan struct{}, inflight *atomic.Int64) {
	interval := time.Duration(float64(time.Second) / p.rate)
	slots := make(chan struct{}, l.cfg.maxInflight)
	var calls sync.WaitGroup
	defer calls.Wait()
	t0 := time.Now()
	for i := uint64(0); ; i++ {
		intended := t0.Add(time.Duration(i) * interval)
		if d := time.Until(intended); d > 0 {
			select {
			case <-stop:
				return
			case <-time.After(d):
			}
		}
		select {
		case <-stop:
			return
		case slots <- struct{}{}:
		}
		inflight.Add(1)
		calls.Go(func() {
			defer func() { <-slots; inflight.Add(-1) }()
			rng := rand.New(rand.NewPCG(i, uint64(t0.UnixNano())))
			p.choose(rng)(ctx, ph, rng, intended)
		})
	}
}

// mixWork chooses by the mix's weights.
func (l *load) mixWork(m mix) func(rng *rand.Rand) work {
	return func(rng *rand.Rand) work {
		return l.opWork(m.pick(rng.IntN(m.total)))
	}
}

// opWork is the work of the mix entry name.
func (l *load) opWork(name string) work {
	o := ops[name]
	return func(ctx context.Context, ph *phaseStats, rng *rand.Rand, at time.Time) bool {
		return o(l, ctx, ph, rng, at)
	}
}

// soloWork always does the same.
func soloWork(w work) func(*rand.Rand) work { return func(*rand.Rand) work { return w } }
