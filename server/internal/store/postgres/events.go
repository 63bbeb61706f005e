package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/careteam/careteam/server/internal/careteam"
)

// EventChannel is the PostgreSQL notification channel a commit that wrote
// events notifies, so that every replica wakes its watchers.
const EventChannel = "careteam_events"

func (t *tx) AppendEvent(e careteam.Event) { t.events = append(t.events, e) }

// queueEvents queues the events' write as the transaction's last act:
// each takes the next cursor from a sequence, which holds no lock to
// commit, after the transaction has its transaction id, so that the
// horizon (EventHorizon) sees it as running from before its cursors
// existed.
func (t *tx) queueEvents() {
	if len(t.events) == 0 {
		return
	}
	type row struct {
		Seq      int        `json:"seq"`
		ID       uuid.UUID  `json:"id"`
		Type     string     `json:"type"`
		Resource string     `json:"resource"`
		Patient  *uuid.UUID `json:"patient"`
		Referral *uuid.UUID `json:"referral"`
		Time     time.Time  `json:"time"`
		Audience []string   `json:"audience"`
		Payload  json.RawMessage
	}
	rows := make([]row, len(t.events))
	for i := range t.events {
		e := &t.events[i]
		payload, err := json.Marshal(e)
		if err != nil {
			// Domain types always encode; a failure is a programming error.
			panic(fmt.Sprintf("encoding an event: %v", err))
		}
		rows[i] = row{Seq: i + 1, ID: e.ID, Type: string(e.Type), Resource: e.Resource, Patient: nullID(e.PatientID),
			Referral: nullID(e.ReferralID), Time: e.Time, Audience: nonNil(e.Audience), Payload: payload}
	}
	t.pending.Queue(`SELECT pg_current_xact_id()`)
	// Volatile functions in the select list are evaluated after ORDER BY:
	// a transaction's events are numbered in the order it wrote them.
	t.pending.Queue(`
		INSERT INTO events (cursor, id, type, resource, patient_id, referral_id, time, audience, payload)
		SELECT nextval('event_cursors'), x.id, x.type, x.resource, x.patient, x.referral, x.time, x.audience, x."Payload"
		FROM jsonb_to_recordset($1::jsonb) AS x(seq int, id uuid, type text, resource text, patient uuid, referral uuid,
			time timestamptz, audience text[], "Payload" jsonb)
		ORDER BY x.seq`, rows)
	t.events = nil
}

func scanEvent(row pgx.Row) (*careteam.Event, error) {
	var cursor int64
	var payload []byte
	if err := row.Scan(&cursor, &payload); err != nil {
		return nil, err
	}
	var e careteam.Event
	if err := json.Unmarshal(payload, &e); err != nil {
		return nil, err
	}
	e.Cursor = cursor
	return &e, nil
}

func (t *tx) ListEvents(ctx context.Context, audience []string, f careteam.EventFilter, after, through int64, limit int) ([]*careteam.Event, error) {
	args := pgx.NamedArgs{"after": after, "through": through, "limit": limit}
	where := []string{`cursor > @after`, `cursor <= @through`}
	if audience != nil {
		args["audience"] = audience
		where = append(where, `audience && @audience`)
	}
	if len(f.Types) > 0 {
		args["types"] = f.Types
		where = append(where, `type = ANY(@types)`)
	}
	if f.PatientID != uuid.Nil {
		args["patient"] = f.PatientID
		where = append(where, `patient_id = @patient`)
	}
	if f.ReferralID != uuid.Nil {
		args["referral"] = f.ReferralID
		where = append(where, `referral_id = @referral`)
	}
	rows, err := t.query(ctx, `SELECT cursor, payload FROM events WHERE `+strings.Join(where, " AND ")+
		` ORDER BY cursor LIMIT @limit`, args)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanEvent)
}

func (t *tx) OldestEventCursor(ctx context.Context) (int64, error) {
	var c int64
	err := t.queryRow(ctx, `SELECT pruned_through FROM event_cursor WHERE id = 1`).Scan(&c)
	return c, err
}

func (t *tx) PruneEvents(ctx context.Context, before time.Time) (int64, error) {
	var n, through int64
	err := t.queryRow(ctx, `
		WITH gone AS (DELETE FROM events WHERE time < $1 RETURNING cursor),
		     up AS (UPDATE event_cursor SET pruned_through = greatest(pruned_through, (SELECT coalesce(max(cursor), 0) FROM gone))
		            WHERE id = 1 RETURNING pruned_through)
		SELECT (SELECT count(*) FROM gone), (SELECT pruned_through FROM up)`, before).Scan(&n, &through)
	return n, err
}

func (t *tx) PatientReferrals(ctx context.Context, patient uuid.UUID) ([]*careteam.Referral, error) {
	rows, err := t.query(ctx, `SELECT `+referralColumns+` FROM referrals r WHERE r.patient_id = $1 ORDER BY r.id`, patient)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanReferral)
}

func (t *tx) LockPatientReferrals(ctx context.Context, patient uuid.UUID, states []careteam.ReferralState) ([]*careteam.Referral, error) {
	// Lock first, then read in a statement of its own (see lockAndGet).
	if err := t.exec(ctx, `SELECT 1 FROM referrals WHERE patient_id = $1 AND state = ANY($2) ORDER BY id FOR NO KEY UPDATE`, patient, states); err != nil {
		return nil, err
	}
	rows, err := t.query(ctx, `SELECT `+referralColumns+` FROM referrals r WHERE r.patient_id = $1 AND r.state = ANY($2) ORDER BY r.id`, patient, states)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanReferral)
}

// EventHorizon returns a cursor at or below which every event is final:
// none can still commit below it, so a reader that has read every event up
// to it never later finds one it missed.
//
// Cursors come from a sequence as a transaction's last act, after it has
// its transaction id, and transactions commit in any order; so the newest
// cursor taken is final once every transaction id assigned before it was
// read has ended. EventHorizon reads the cursor, then takes a transaction
// id of its own as the mark: the cursor is proven once the oldest
// transaction still running on the cluster is younger than the mark. It
// waits up to wait for that (zero: not at all) and returns the newest
// cursor proven, by this call or an earlier one. A transaction held open
// (anywhere on the cluster: transaction ids are the cluster's) holds back
// every cursor taken after it began.
func (s *Store) EventHorizon(ctx context.Context, wait time.Duration) (int64, error) {
	var b pgx.Batch
	var m horizonMark
	var xmin int64
	// One implicit transaction; its commit needs no flush, for it only
	// marks a point in the order of transaction ids.
	b.Queue(`SELECT set_config('synchronous_commit', 'off', true)`)
	b.Queue(`SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM event_cursors`).QueryRow(func(r pgx.Row) error {
		return r.Scan(&m.cursor)
	})
	b.Queue(`SELECT pg_current_xact_id()::text::bigint`).QueryRow(func(r pgx.Row) error { return r.Scan(&m.xid) })
	b.Queue(oldestRunning).QueryRow(func(r pgx.Row) error { return r.Scan(&xmin) })
	if err := s.pool.SendBatch(ctx, &b).Close(); err != nil {
		return 0, mapError(err)
	}
	if s.horizon.add(m) {
		select {
		case s.marked <- struct{}{}:
		default:
		}
	}
	s.settle(xmin)
	deadline := time.Now().Add(wait)
	for pause := 500 * time.Microsecond; s.horizon.provenCursor() < m.cursor && time.Now().Before(deadline); pause = min(2*pause, 20*time.Millisecond) {
		select {
		case <-ctx.Done():
			return 0, mapError(ctx.Err())
		case <-time.After(pause):
		}
		if err := s.pool.QueryRow(ctx, oldestRunning).Scan(&xmin); err != nil {
			return 0, mapError(err)
		}
		s.settle(xmin)
	}
	return s.horizon.provenCursor(), nil
}

// oldestRunning is the oldest transaction id still running on the cluster
// (or the next to be assigned, when none is).
const oldestRunning = `SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint`

// settle proves the marks older than xmin; this replica's watchers wake
// when the horizon moves.
func (s *Store) settle(xmin int64) {
	if s.horizon.settle(xmin) {
		s.wakeLocal()
	}
}

// settleEvery is how often settleMarks looks while marks wait: a delay
// added to delivery, against a query each time on every replica.
const settleEvery = 5 * time.Millisecond

// settleMarks proves pending marks as the transactions before them end,
// so that the watchers learn of a horizon that moved without waiting for
// the next commit.
func (s *Store) settleMarks(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.marked:
		}
		for s.horizon.waiting() {
			select {
			case <-ctx.Done():
				return
			case <-time.After(settleEvery):
			}
			var xmin int64
			if err := s.pool.QueryRow(ctx, oldestRunning).Scan(&xmin); err != nil {
				if ctx.Err() == nil {
					s.log.WarnContext(ctx, "events: reading the oldest running transaction", "error", err.Error())
				}
				continue
			}
			s.settle(xmin)
		}
	}
}

// horizonMark is a cursor, final once every transaction older than xid
// has ended.
type horizonMark struct{ cursor, xid int64 }

// maxMarks bounds the marks waiting while a long transaction holds the
// horizon back; beyond it, the newest mark takes the place of the last.
const maxMarks = 64

// eventHorizon is the newest cursor proven final and the marks waiting.
type eventHorizon struct {
	mu      sync.Mutex
	proven  int64
	pending []horizonMark // cursor and xid rising
}

// add registers m unless its cursor is proven already, and reports
// whether it did.
func (h *eventHorizon) add(m horizonMark) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if m.cursor <= h.proven || (len(h.pending) > 0 && m.cursor <= h.pending[len(h.pending)-1].cursor) {
		return false
	}
	if len(h.pending) == maxMarks {
		h.pending[maxMarks-1] = m
	} else {
		h.pending = append(h.pending, m)
	}
	return true
}

// settle proves every mark older than xmin and reports whether the
// horizon moved.
func (h *eventHorizon) settle(xmin int64) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for n < len(h.pending) && h.pending[n].xid < xmin {
		n++
	}
	if n == 0 {
		return false
	}
	moved := h.pending[n-1].cursor > h.proven
	h.proven = max(h.proven, h.pending[n-1].cursor)
	h.pending = slices.Delete(h.pending, 0, n)
	return moved
}

func (h *eventHorizon) provenCursor() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.proven
}

func (h *eventHorizon) waiting() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.pending) > 0
}

// eventsCommitted is told of each commit that wrote events: this
// replica's watchers wake at once, and the others through one
// notification for however many commits happened while the last was sent.
// The notification is its own transaction because NOTIFY queues every
// transaction that sends one behind a lock on the notification queue.
func (s *Store) eventsCommitted() {
	s.wakeLocal()
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// Listen calls wake whenever a commit on any replica wrote events, until
// ctx ends, and sends this replica's notifications. It holds a connection
// of its own and reconnects after losing it; a notification lost
// meanwhile only delays delivery, because the caller also polls.
func (s *Store) Listen(ctx context.Context, wake func()) {
	s.setLocalWake(wake)
	defer s.setLocalWake(nil)
	go s.sendNotifications(ctx)
	go s.settleMarks(ctx)
	for ctx.Err() == nil {
		err := s.listen(ctx, wake)
		if ctx.Err() != nil {
			return
		}
		s.log.WarnContext(ctx, "event notifications interrupted; reconnecting", "error", err.Error())
		wake() // catch up on whatever was missed
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

func (s *Store) sendNotifications(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.notify:
		}
		if _, err := s.pool.Exec(ctx, `SELECT pg_notify($1, '')`, EventChannel); err != nil && ctx.Err() == nil {
			s.log.WarnContext(ctx, "notifying other replicas of events", "error", err.Error())
		}
	}
}

func (s *Store) setLocalWake(wake func()) {
	s.wakeMu.Lock()
	defer s.wakeMu.Unlock()
	s.wake = wake
}

func (s *Store) wakeLocal() {
	s.wakeMu.Lock()
	wake := s.wake
	s.wakeMu.Unlock()
	if wake != nil {
		wake()
	}
}

func (s *Store) listen(ctx context.Context, wake func()) error {
	pooled, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	// The connection stays in LISTEN mode: take it out of the pool for
	// good, and close it when done.
	conn := pooled.Hijack()
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+EventChannel); err != nil {
		return err
	}
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return err
		}
		wake()
	}
}
