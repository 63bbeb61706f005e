// Package postgres is the store: careteam's data in PostgreSQL through
// pgx/v5. It runs SQL and maps database errors to the domain's sentinels;
// it decides no policy, though it turns the scopes the policy hands it into
// WHERE clauses.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/careteam/careteam/server/internal/audit"
	"github.com/careteam/careteam/server/internal/careteam"
)

// Store implements careteam.Store on a pgx pool.
type Store struct {
	pool *pgxpool.Pool
	log  *slog.Logger
	// auditWritten, when set, observes the time of each audit append.
	auditWritten func(time.Duration)
	// acquireWait, when set, bounds a call's wait for a connection.
	acquireWait time.Duration

	// horizon is how far events are proven final (see EventHorizon);
	// marked tells settleMarks a mark waits.
	horizon eventHorizon
	marked  chan struct{}
	// notify asks for a notification to the other replicas' watchers.
	notify chan struct{}
	// sealWake asks the sealer to chain the records just committed.
	sealWake chan struct{}
	// auditGroup commits the records written on their own in groups.
	auditGroup auditGroup
	wakeMu     sync.Mutex
	wake       func() // this replica's watchers, once Listen runs
}

// ObserveAudit has f told how long each audit append takes.
func (s *Store) ObserveAudit(f func(time.Duration)) { s.auditWritten = f }

// ShedAfter has a call that waits longer than d for a free connection fail
// with careteam.ErrUnavailable: a pool that stays dry that long means the
// database is saturated, and a caller told to retry with backoff (the
// client does) sheds load, where one left queueing until its deadline
// only adds to it.
func (s *Store) ShedAfter(d time.Duration) { s.acquireWait = d }

// New returns a Store on pool.
func New(pool *pgxpool.Pool, log *slog.Logger) *Store {
	return &Store{pool: pool, log: log, notify: make(chan struct{}, 1), marked: make(chan struct{}, 1), sealWake: make(chan struct{}, 1)}
}

// maxAttempts bounds how often InTx reruns a transaction that lost a
// serialization conflict or a deadlock.
const maxAttempts = 4

// InTx runs fn in a READ COMMITTED transaction; rules that need a stable
// view lock the rows they decide on. A serialization failure or deadlock
// reruns fn, up to maxAttempts, then is careteam.ErrConflict.
func (s *Store) InTx(ctx context.Context, fn func(careteam.Tx) error) error {
	var err error
	for attempt := 1; attempt <= maxAttempts; attempt++ {
		err = s.inTx(ctx, fn)
		if !retryable(err) {
			break
		}
		s.log.DebugContext(ctx, "transaction retried", "attempt", attempt, "sqlstate", sqlState(err))
	}
	return mapError(err)
}

func (s *Store) inTx(ctx context.Context, fn func(careteam.Tx) error) (err error) {
	conn, err := s.acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	ptx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			// The rollback's own error adds nothing: the connection is
			// discarded by the pool if it is broken.
			_ = ptx.Rollback(context.WithoutCancel(ctx))
		}
	}()
	t := &tx{tx: ptx}
	if err = fn(t); err != nil {
		return err
	}
	// The queued writes, the events and the call's audit record go in one
	// batch, then the commit: the record commits with the work it
	// describes; if the commit fails, the call records its failure on its
	// own afterwards.
	audited := false
	if e := audit.FromContext(ctx); e != nil {
		if r, ok := e.Take("OK"); ok {
			defer func() {
				if err != nil {
					e.Untake()
				}
			}()
			t.pending.Queue(auditSQL, auditArgs(r)...)
			audited = true
		}
	}
	wroteEvents := len(t.events) > 0
	t.queueEvents()
	start := time.Now()
	if err = t.flush(ctx); err != nil {
		return err
	}
	if err = ptx.Commit(ctx); err != nil {
		return err
	}
	if audited {
		s.auditCommitted(time.Since(start))
	}
	if wroteEvents {
		s.eventsCommitted()
	}
	return nil
}

// tx implements careteam.Tx. Writes whose results nobody reads are queued
// and sent in one batch before the next read or the commit: a use case
// costs a round trip per read, not per statement.
type tx struct {
	tx      querier
	pending pgx.Batch
	// events wait here to be written, cursor-numbered, just before commit.
	events []careteam.Event
}

// The store implements each of the domain's storage interfaces.
var (
	_ careteam.Store          = (*Store)(nil)
	_ careteam.Requests       = (*tx)(nil)
	_ careteam.DirectoryStore = (*tx)(nil)
	_ careteam.PatientStore   = (*tx)(nil)
	_ careteam.ReferralStore  = (*tx)(nil)
	_ careteam.ClinicalStore  = (*tx)(nil)
	_ careteam.SessionStore   = (*tx)(nil)
	_ careteam.AuditStore     = (*tx)(nil)
	_ careteam.EventStore     = (*tx)(nil)
	_ careteam.ImportStore    = (*tx)(nil)
	_ careteam.WebhookStore   = (*tx)(nil)
)

// querier is a transaction, or a connection for reads outside one.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// Read runs fn's reads on one pooled connection without a transaction,
// saving the BEGIN and COMMIT round trips: each statement, or batch, runs
// in a transaction of its own, which under READ COMMITTED sees what a
// statement inside a longer one would. fn must not write.
func (s *Store) Read(ctx context.Context, fn func(careteam.Tx) error) error {
	conn, err := s.acquire(ctx)
	if err != nil {
		return mapError(err)
	}
	defer conn.Release()
	t := &tx{tx: conn}
	err = fn(t)
	if err == nil && (t.pending.Len() > 0 || len(t.events) > 0) {
		err = errors.New("store: a write outside a transaction")
	}
	return mapError(err)
}

// acquire takes a connection from the pool, waiting at most acquireWait.
func (s *Store) acquire(ctx context.Context) (*pgxpool.Conn, error) {
	if s.acquireWait <= 0 {
		return s.pool.Acquire(ctx)
	}
	actx, cancel := context.WithTimeout(ctx, s.acquireWait)
	defer cancel()
	conn, err := s.pool.Acquire(actx)
	if err != nil && ctx.Err() == nil && actx.Err() != nil {
		return nil, fmt.Errorf("no database connection free within %v: %w", s.acquireWait, careteam.ErrUnavailable)
	}
	return conn, err
}

// exec queues a write; its error surfaces when the queue is sent.
func (t *tx) exec(_ context.Context, sql string, args ...any) error {
	t.pending.Queue(sql, args...)
	return nil
}

// execNow runs a write whose result is needed at once.
func (t *tx) execNow(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if err := t.flush(ctx); err != nil {
		return pgconn.CommandTag{}, err
	}
	return t.tx.Exec(ctx, sql, args...)
}

// flush sends the queued writes.
func (t *tx) flush(ctx context.Context) error {
	if t.pending.Len() == 0 {
		return nil
	}
	b := t.pending
	t.pending = pgx.Batch{}
	return t.tx.SendBatch(ctx, &b).Close()
}

func (t *tx) query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if err := t.flush(ctx); err != nil {
		return nil, err
	}
	return t.tx.Query(ctx, sql, args...)
}

func (t *tx) queryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	if err := t.flush(ctx); err != nil {
		return errRow{err}
	}
	return t.tx.QueryRow(ctx, sql, args...)
}

// errRow is a row whose scan fails with the error that kept it from being
// read.
type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

func sqlState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

func retryable(err error) bool {
	switch sqlState(err) {
	case "40001", "40P01": // serialization_failure, deadlock_detected
		return true
	}
	return false
}

// constraintErrors names what each unique constraint protects, for the
// caller's error message.
var constraintErrors = map[string]string{
	"practitioners_subject_key":    "a practitioner with that subject exists",
	"practitioner_identifiers_key": "a practitioner with that identifier exists",
	"patient_identifiers_key":      "a patient with that identifier is registered in this organization",
}

// mapError turns database errors into domain errors; errors already from
// the domain pass through. SQL text never reaches the caller.
func mapError(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case pgErr.Code == "23505": // unique_violation
			msg, ok := constraintErrors[pgErr.ConstraintName]
			if !ok {
				msg = "a unique key is taken"
			}
			return fmt.Errorf("%s: %w", msg, careteam.ErrAlreadyExists)
		case pgErr.Code == "40001" || pgErr.Code == "40P01" || pgErr.Code == "55P03":
			return careteam.ErrConflict
		case pgErr.Code == "57014": // query_canceled, by statement timeout
			return context.DeadlineExceeded
		case pgErr.Code == "53300" || pgErr.Code[:2] == "08" || pgErr.Code == "57P01" || pgErr.Code == "57P02" || pgErr.Code == "57P03" ||
			pgErr.Code == "25006":
			// too_many_connections, connection exceptions, admin and crash
			// shutdown, cannot_connect_now, and read_only_sql_transaction: a
			// server demoted to standby by a failover under a connection
			return fmt.Errorf("%w (sqlstate %s)", careteam.ErrUnavailable, pgErr.Code)
		}
		return fmt.Errorf("database error (sqlstate %s)", pgErr.Code)
	}
	// A server that goes away without a word (immediate shutdown, a crash
	// elsewhere in the cluster) leaves only an EOF behind. Retrying is safe:
	// every write carries a request id.
	var netErr net.Error
	var connectErr *pgconn.ConnectError
	if errors.As(err, &netErr) || errors.As(err, &connectErr) || pgconn.SafeToRetry(err) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, pgx.ErrTxClosed) || errors.Is(err, pgconn.ErrConnClosed) {
		return careteam.ErrUnavailable
	}
	return err
}

// notFound wraps pgx.ErrNoRows as the domain's ErrNotFound for name.
func notFound(err error, c careteam.Collection, id fmt.Stringer) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%s/%s: %w", c, id, careteam.ErrNotFound)
	}
	return err
}

// getByID reads the row of table with id through read, locked (see
// lockAndGet) when forUpdate; a missing row is c's ErrNotFound.
func getByID[T any](ctx context.Context, t *tx, table string, c careteam.Collection, id uuid.UUID, forUpdate bool,
	read string, args pgx.NamedArgs, scan func(pgx.Row) (*T, error),
) (*T, error) {
	var row *T
	var err error
	if forUpdate {
		row, err = lockAndGet(ctx, t, table, id, read, args, scan)
	} else {
		row, err = scan(t.queryRow(ctx, read, args))
	}
	return row, notFound(err, c, id)
}

// lockAndGet locks a row with one statement and reads it with a second, in
// one round trip. Both cannot be one statement: under READ COMMITTED a
// statement that waited for a row lock sees the row's new version, but its
// subqueries (a row's history, its identifiers) keep the statement's older
// snapshot and would miss what the previous lock holder wrote. The lock is
// NO KEY UPDATE, what the update that follows takes anyway: it excludes
// other writers of the row without holding up inserts whose foreign keys
// point at it.
func lockAndGet[T any](ctx context.Context, t *tx, table string, id uuid.UUID, read string, args pgx.NamedArgs, scan func(pgx.Row) (*T, error)) (*T, error) {
	if err := t.flush(ctx); err != nil {
		return nil, err
	}
	b := &pgx.Batch{}
	b.Queue(`SELECT 1 FROM `+table+` WHERE id = $1 FOR NO KEY UPDATE`, id)
	b.Queue(read, args)
	br := t.tx.SendBatch(ctx, b)
	defer br.Close()
	var one int
	if err := br.QueryRow().Scan(&one); err != nil {
		return nil, err
	}
	return scan(br.QueryRow())
}
