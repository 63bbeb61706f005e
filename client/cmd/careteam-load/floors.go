package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/careteam/careteam/server/loadfloor"
)

// The floors make the results portable: a hot RPC's throughput as a
// fraction of what the same machine does with the least work of its kind
// holds on any hardware, where calls per second do not.
const (
	// grpcFloor is an authenticated unary call that does nothing else:
	// token check, directory lookup, audit record, gRPC both ways.
	grpcFloor = "GetCaller"
	// dbFloor is StartSession's transaction (gate snapshot under its
	// locks, visit, session, event) replayed straight through pgx by the
	// server's own domain code, without gRPC, authentication or audit.
	dbFloor = "loadfloor.StartSession"
)

// dbFloorPhase runs the database floor at --concurrency, on sessions
// under the same pool of accepted referrals as StartSession's phase.
func (l *load) dbFloorPhase(ctx context.Context) (*phaseStats, error) {
	l.prog.update("database floor: connecting to %s", redactURL(l.cfg.databaseURL))
	f, err := loadfloor.Open(ctx, l.cfg.databaseURL, int32(l.cfg.concurrency))
	if err != nil {
		return nil, fmt.Errorf("database floor (give --database-url when careteamd's database is not the embedded one in --data-dir): %w", err)
	}
	defer f.Close()
	resolved := map[*therapist]*loadfloor.Therapist{}
	for _, th := range l.w.therapists {
		if resolved[th], err = f.Resolve(ctx, th.subject); err != nil {
			return nil, fmt.Errorf("database floor: %w", err)
		}
	}
	w := func(ctx context.Context, ph *phaseStats, rng *rand.Rand, at time.Time) bool {
		r := l.w.startable.take(rng)
		if r == nil {
			ph.skip(dbFloor)
			return false
		}
		err := f.StartSession(ctx, resolved[r.patient.therapist], r.name)
		ph.record(dbFloor, time.Since(at), err)
		l.w.startable.give(r, err == nil)
		return true
	}
	return l.run(ctx, phase{name: "floor: " + dbFloor, concurrency: l.cfg.concurrency, warmup: l.cfg.warmup,
		duration: l.cfg.soloDuration, choose: soloWork(w)}), nil
}

// grpcFloorPhase runs GetCaller at --concurrency as therapists, with
// careteamd's view of it.
func (l *load) grpcFloorPhase(ctx context.Context) (*phaseStats, *serverView) {
	var before []*scrape
	var view *serverView
	ph := l.run(ctx, phase{name: "floor: " + grpcFloor, concurrency: l.cfg.concurrency, warmup: l.cfg.warmup,
		duration: l.cfg.soloDuration, choose: soloWork(l.opWork(grpcFloor)),
		started: func(*phaseStats) { before = l.scrapeAll(ctx) },
		stopped: func(*phaseStats) { view = viewOf(grpcFloor, before, l.scrapeAll(ctx)) }})
	return ph, view
}
