// Package loadfloor is careteam-load's measure of what careteamd's
// database allows with none of careteamd's code: transactions and reads
// of the shapes careteamd's calls run, straight through pgx, on tables of
// the floor's own (schema careteam_floor) in careteamd's database. A
// careteam call's throughput as a fraction of its floor's, measured in the
// same run on the same database, holds on other hardware where calls per
// second do not. It also samples that database's lock waits while the
// load runs (locks.go).
//
// It must not import careteamd's domain or store: a floor built from the
// code it measures would move with that code. The --scale seeder,
// which has to write careteam's own rows, is the subpackage seed.
package loadfloor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/careteam/careteam/server/internal/pgembed"
)

// EmbeddedURL is the database URL of careteamd's embedded PostgreSQL in
// dataDir.
func EmbeddedURL(dataDir string) string {
	return pgembed.ConnString(filepath.Join(dataDir, "postgres"), "careteam")
}

// schema is the floor's tables. No foreign keys: a key check takes a
// share lock on the parent row, a cost of careteam's schema, not of the
// transaction's shape. The written tables are emptied on every Open, so
// that a floor does not slow down from one run to the next as its indexes
// grow.
const schema = `
CREATE SCHEMA IF NOT EXISTS careteam_floor;
CREATE TABLE IF NOT EXISTS careteam_floor.clearance (
    id           uuid        PRIMARY KEY,
    patient_id   uuid        NOT NULL,
    physician_id uuid        NOT NULL,
    therapist_id uuid        NOT NULL,
    decision     text        NOT NULL,
    status       text        NOT NULL,
    notes        text        NOT NULL,
    valid_from   timestamptz NOT NULL,
    valid_until  timestamptz NOT NULL,
    create_time  timestamptz NOT NULL,
    update_time  timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS careteam_floor.visits (
    clearance_id uuid        PRIMARY KEY,
    used         integer     NOT NULL,
    update_time  timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS careteam_floor.session (
    id           uuid        PRIMARY KEY,
    clearance_id uuid        NOT NULL,
    patient_id   uuid        NOT NULL,
    therapist_id uuid        NOT NULL,
    state        text        NOT NULL,
    visit_number integer     NOT NULL,
    start_time   timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS careteam_floor.audit (
    id              uuid        PRIMARY KEY,
    time            timestamptz NOT NULL,
    subject         text        NOT NULL,
    practitioner_id uuid        NOT NULL,
    role            text        NOT NULL,
    organization_id uuid        NOT NULL,
    method          text        NOT NULL,
    resources       text[]      NOT NULL,
    patients        uuid[]      NOT NULL,
    outcome         text        NOT NULL,
    purpose         text        NOT NULL,
    request_id      text        NOT NULL,
    peer            text        NOT NULL
);
CREATE TABLE IF NOT EXISTS careteam_floor.event (
    id       uuid        PRIMARY KEY,
    type     text        NOT NULL,
    resource text        NOT NULL,
    time     timestamptz NOT NULL,
    payload  jsonb       NOT NULL
);
TRUNCATE careteam_floor.session, careteam_floor.audit, careteam_floor.event;
`

// seedClearances tops the clearances up to $1 rows; seedVisits gives
// each its visit counter.
const (
	seedClearances = `INSERT INTO careteam_floor.clearance
SELECT gen_random_uuid(), gen_random_uuid(), gen_random_uuid(), gen_random_uuid(), 'CLEARED', 'ACTIVE',
       'No red flags; cleared for massage.', now() - interval '1 day', now() + interval '10 years', now(), now()
FROM generate_series(1, $1::int - (SELECT count(*) FROM careteam_floor.clearance)::int)`
	seedVisits = `INSERT INTO careteam_floor.visits SELECT id, 0, now() FROM careteam_floor.clearance ON CONFLICT DO NOTHING`
)

// row is one seeded clearance, and the therapist its audit records name.
// Ids are held as [16]byte, which pgx encodes in binary directly.
type row struct {
	id, patient, therapist, org [16]byte
	subject                     string
}

// Floor runs the floors on its own pool.
type Floor struct {
	pool *pgxpool.Pool
	rows []row
	// free holds the rows no transaction holds: a caller takes one for
	// its transaction, so no two transactions ever lock the same row
	// however the callers are scheduled.
	free chan int
}

// Open connects to the database at databaseURL with a pool of callers
// connections, creates the floor's schema if it is missing, and seeds a
// row for each caller.
func Open(ctx context.Context, databaseURL string, callers int) (*Floor, error) {
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return nil, errors.New("loadfloor: the database URL is malformed")
	}
	cfg.MaxConns = int32(callers)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("loadfloor: %w", err)
	}
	f, err := prepare(ctx, pool, callers)
	if err != nil {
		pool.Close()
		return nil, err
	}
	return f, nil
}

func prepare(ctx context.Context, pool *pgxpool.Pool, callers int) (*Floor, error) {
	if _, err := pool.Exec(ctx, schema); err != nil {
		return nil, fmt.Errorf("loadfloor: creating schema careteam_floor (the role needs CREATE on the database): %w", err)
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("loadfloor: %w", err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, seedClearances, callers); err != nil {
		return nil, fmt.Errorf("loadfloor: seeding: %w", err)
	}
	if _, err := tx.Exec(ctx, seedVisits); err != nil {
		return nil, fmt.Errorf("loadfloor: seeding: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("loadfloor: seeding: %w", err)
	}
	rows, err := pool.Query(ctx, `SELECT id, patient_id, therapist_id FROM careteam_floor.clearance ORDER BY id LIMIT $1`, callers)
	if err != nil {
		return nil, fmt.Errorf("loadfloor: %w", err)
	}
	f := &Floor{pool: pool, free: make(chan int, callers)}
	var r row
	_, err = pgx.ForEachRow(rows, []any{&r.id, &r.patient, &r.therapist}, func() error {
		r.org, r.subject = uuid.New(), fmt.Sprintf("floor-therapist-%02d", len(f.rows))
		f.free <- len(f.rows)
		f.rows = append(f.rows, r)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("loadfloor: %w", err)
	}
	return f, nil
}

// Close closes the connections.
func (f *Floor) Close() { f.pool.Close() }

// errNotCleared is the gate's refusal, which the seeded rows never earn.
var errNotCleared = errors.New("loadfloor: the clearance does not allow a session")

// StartSession runs StartSession's transaction on a row of its own:
// BEGIN; the clearance FOR UPDATE; the visit counter's UPDATE; the
// session's INSERT; COMMIT, one round trip each. With audited, the
// transaction also writes an audit-sized and an event-sized row before it
// commits, as careteamd's does.
func (f *Floor) StartSession(ctx context.Context, audited bool) error {
	var i int
	select {
	case i = <-f.free:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { f.free <- i }()
	r := &f.rows[i]
	tx, err := f.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx) // a no-op once committed
	var status string
	var validUntil time.Time
	if err := tx.QueryRow(ctx, `SELECT status, valid_until FROM careteam_floor.clearance WHERE id = $1 FOR UPDATE`,
		r.id).Scan(&status, &validUntil); err != nil {
		return err
	}
	now := time.Now()
	if status != "ACTIVE" || !now.Before(validUntil) {
		return errNotCleared
	}
	var visit int32
	if err := tx.QueryRow(ctx, `UPDATE careteam_floor.visits SET used = used + 1, update_time = $2 WHERE clearance_id = $1 RETURNING used`,
		r.id, now).Scan(&visit); err != nil {
		return err
	}
	session := uuid.Must(uuid.NewV7())
	if _, err := tx.Exec(ctx, `INSERT INTO careteam_floor.session (id, clearance_id, patient_id, therapist_id, state, visit_number, start_time)
		VALUES ($1, $2, $3, $4, 'STARTED', $5, $6)`, [16]byte(session), r.id, r.patient, r.therapist, visit, now); err != nil {
		return err
	}
	if audited {
		name := "sessions/" + session.String()
		if err := f.audit(ctx, tx, r, now, "/careteam.v1.SessionService/StartSession", name); err != nil {
			return err
		}
		payload, err := eventPayload(r, name, visit, now)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO careteam_floor.event (id, type, resource, time, payload) VALUES ($1, $2, $3, $4, $5)`,
			[16]byte(uuid.Must(uuid.NewV7())), "session.started", name, now, payload); err != nil {
			return err
		}
	}
	return tx.Commit(ctx)
}

// Read reads a random clearance, every column, by its primary key. With
// audited, it then writes an audit-sized row in a statement of its own,
// committed before Read returns, as careteamd's reads record their audit.
func (f *Floor) Read(ctx context.Context, rng *rand.Rand, audited bool) error {
	r := &f.rows[rng.IntN(len(f.rows))]
	var id, patient, physician, therapist pgtype.UUID
	var decision, status, notes string
	var validFrom, validUntil, created, updated time.Time
	err := f.pool.QueryRow(ctx, `SELECT id, patient_id, physician_id, therapist_id, decision, status, notes, valid_from,
		valid_until, create_time, update_time FROM careteam_floor.clearance WHERE id = $1`, r.id).Scan(
		&id, &patient, &physician, &therapist, &decision, &status, &notes, &validFrom, &validUntil, &created, &updated)
	if err != nil || !audited {
		return err
	}
	return f.audit(ctx, f.pool, r, time.Now(), "/careteam.v1.ClinicalService/GetClearance", "clearances/"+uuid.UUID(r.id).String())
}

type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// audit writes a row the size of careteamd's audit record of one call.
func (f *Floor) audit(ctx context.Context, db execer, r *row, now time.Time, method, resource string) error {
	_, err := db.Exec(ctx, `INSERT INTO careteam_floor.audit (id, time, subject, practitioner_id, role, organization_id, method,
		resources, patients, outcome, purpose, request_id, peer) VALUES ($1, $2, $3, $4, 'THERAPIST', $5, $6, $7, $8, 'OK', 'TREATMENT', $9, $10)`,
		[16]byte(uuid.Must(uuid.NewV7())), now, r.subject, r.therapist, r.org, method,
		[]string{"referrals/" + uuid.UUID(r.id).String(), resource}, [][16]byte{r.patient}, uuid.NewString(), "127.0.0.1:50312")
	return err
}

// eventPayload is an event of about 300 bytes, the size of careteamd's
// session events.
func eventPayload(r *row, session string, visit int32, now time.Time) ([]byte, error) {
	type treatment struct {
		Region    string `json:"region"`
		Technique string `json:"technique"`
		Pressure  string `json:"pressure"`
	}
	return json.Marshal(struct {
		Session     string      `json:"session"`
		Referral    string      `json:"referral"`
		Therapist   string      `json:"therapist"`
		VisitNumber int32       `json:"visitNumber"`
		StartTime   time.Time   `json:"startTime"`
		Planned     []treatment `json:"planned"`
	}{session, "referrals/" + uuid.UUID(r.id).String(), "practitioners/" + uuid.UUID(r.therapist).String(), visit,
		now.Truncate(time.Microsecond), []treatment{{"LUMBAR", "SWEDISH", "MEDIUM"}}})
}
