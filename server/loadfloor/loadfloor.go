// Package loadfloor measures the database floor under StartSession: the
// transaction StartSession runs (the gate's snapshot under its locks, the
// visit, the session, the event), issued straight through pgx by the
// domain code the server runs, without gRPC, authentication or the audit
// trail. careteam-load runs it beside its load so that StartSession's
// throughput reads as a fraction of what the database alone allows, a
// ratio that holds on any machine. It lives outside server/internal so
// that the load tool can import it.
package loadfloor

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/careteam/careteam/server/internal/careteam"
	"github.com/careteam/careteam/server/internal/clock"
	"github.com/careteam/careteam/server/internal/pgembed"
	"github.com/careteam/careteam/server/internal/store/postgres"
)

// Floor starts sessions the way careteamd's StartSession does, minus
// everything but the database work.
type Floor struct {
	pool    *pgxpool.Pool
	service *careteam.Service
}

// Open connects to the database careteamd uses.
func Open(ctx context.Context, databaseURL string, maxConns int32) (*Floor, error) {
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return nil, fmt.Errorf("loadfloor: the database URL is malformed")
	}
	cfg.MaxConns = maxConns
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("loadfloor: %w", err)
	}
	store := postgres.New(pool, slog.New(slog.NewTextHandler(io.Discard, nil)))
	return &Floor{pool: pool, service: careteam.NewService(store, clock.System{}, careteam.Config{AckWindow: 48 * time.Hour})}, nil
}

// EmbeddedURL is the database URL of careteamd's embedded PostgreSQL in
// dataDir.
func EmbeddedURL(dataDir string) string {
	return pgembed.ConnString(filepath.Join(dataDir, "postgres"), "careteam")
}

// Close closes the connections.
func (f *Floor) Close() { f.pool.Close() }

// Therapist is a therapist the floor starts sessions as, resolved once.
type Therapist struct{ principal careteam.Principal }

// Resolve looks up the therapist whose token subject is subject.
func (f *Floor) Resolve(ctx context.Context, subject string) (*Therapist, error) {
	p, err := f.service.Authenticate(ctx, subject)
	if err != nil {
		return nil, fmt.Errorf("loadfloor: %w", err)
	}
	return &Therapist{principal: p}, nil
}

// Lumbar Swedish massage at medium pressure: the plan the load tool's
// sessions carry.
var plan = []careteam.Treatment{{Region: "LUMBAR", Technique: "SWEDISH", Pressure: "MEDIUM"}}

// StartSession starts a session under referral ("referrals/{id}") as th.
func (f *Floor) StartSession(ctx context.Context, th *Therapist, referral string) error {
	id, err := careteam.Referrals.Parse(referral)
	if err != nil {
		return err
	}
	_, err = f.service.StartSession(ctx, th.principal, id, plan, time.Time{}, careteam.Idempotency{RequestID: uuid.Nil})
	return err
}
