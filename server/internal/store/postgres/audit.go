package postgres

import (
	"cmp"
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/careteam/careteam/server/internal/audit"
	"github.com/careteam/careteam/server/internal/careteam"
)

// auditSQL puts a record in the inbox, where it is durable but not yet
// chained: the write shares no row with any other call's, so calls do not
// queue behind one another; SealAudit chains it shortly after.
const auditSQL = `
	INSERT INTO audit_inbox (chain, canonical, time, subject, practitioner_id, role, organization_id, method,
		resources, patients, outcome, purpose, emergency_reason, request_id, peer, suppressed)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)`

// inboxColumns are auditSQL's columns, in auditArgs' order.
var inboxColumns = []string{"chain", "canonical", "time", "subject", "practitioner_id", "role", "organization_id", "method",
	"resources", "patients", "outcome", "purpose", "emergency_reason", "request_id", "peer", "suppressed"}

func auditArgs(r audit.Record) []any {
	return []any{r.PickChain(), r.Canonical(), r.Time, r.Subject, nullID(r.PractitionerID), r.Role, nullID(r.OrganizationID), r.Method,
		nonNil(r.Resources), nonNil(r.Patients), r.Outcome, r.Purpose, r.EmergencyReason, r.RequestID, r.Peer, r.Suppressed}
}

// AppendAudit writes a record on its own: for a call whose transaction did
// not commit (denied, failed) or that had none. It returns once the record
// is committed. Records of concurrent calls are committed together: while
// one group is being written the next gathers, so a burst of reads costs a
// commit per group rather than per call, and a lone call waits for nothing
// but its own write.
func (s *Store) AppendAudit(ctx context.Context, r audit.Record) error {
	p := &pendingAudit{record: r, done: make(chan error, 1)}
	s.auditGroup.add(s, p)
	select {
	case err := <-p.done:
		return err
	case <-ctx.Done():
		// The record may still be written; the caller has gone either way.
		return mapError(ctx.Err())
	}
}

// pendingAudit is a record waiting for its group's commit.
type pendingAudit struct {
	record audit.Record
	done   chan error
}

// auditGroup gathers the records that arrive while a group is written.
type auditGroup struct {
	mu      sync.Mutex
	queue   []*pendingAudit
	running bool
}

// maxAuditGroup bounds the records one statement writes.
const maxAuditGroup = 1000

// auditWriteTimeout bounds one group's write: records are written even
// when their callers have gone, but not forever.
const auditWriteTimeout = 5 * time.Second

func (g *auditGroup) add(s *Store, p *pendingAudit) {
	g.mu.Lock()
	g.queue = append(g.queue, p)
	start := !g.running
	g.running = true
	g.mu.Unlock()
	if start {
		go g.run(s)
	}
}

// run writes groups until none waits; a writer exists only while records
// do.
func (g *auditGroup) run(s *Store) {
	for {
		g.mu.Lock()
		n := min(len(g.queue), maxAuditGroup)
		group := g.queue[:n:n]
		g.queue = g.queue[n:]
		if n == 0 {
			g.queue, g.running = nil, false
			g.mu.Unlock()
			return
		}
		g.mu.Unlock()
		s.writeAuditGroup(group)
	}
}

// writeAuditGroup commits a group in one statement. Should that fail, each
// record is tried on its own, so that one record the database refuses
// costs no other its write.
func (s *Store) writeAuditGroup(group []*pendingAudit) {
	ctx, cancel := context.WithTimeout(context.Background(), auditWriteTimeout)
	defer cancel()
	start := time.Now()
	var err error
	if len(group) == 1 {
		_, err = s.pool.Exec(ctx, auditSQL, auditArgs(group[0].record)...)
	} else {
		_, err = s.pool.CopyFrom(ctx, pgx.Identifier{"audit_inbox"}, inboxColumns, pgx.CopyFromSlice(len(group),
			func(i int) ([]any, error) { return auditArgs(group[i].record), nil }))
	}
	if err != nil && len(group) > 1 {
		for _, p := range group {
			_, err := s.pool.Exec(ctx, auditSQL, auditArgs(p.record)...)
			s.auditWrote(start, err)
			p.done <- mapError(err)
		}
		return
	}
	for _, p := range group {
		s.auditWrote(start, err)
		p.done <- mapError(err)
	}
}

// auditWrote is told of each record written on its own, or not.
func (s *Store) auditWrote(start time.Time, err error) {
	if err == nil {
		s.auditCommitted(time.Since(start))
	}
}

// auditCommitted is told of each record committed to the inbox.
func (s *Store) auditCommitted(took time.Duration) {
	if s.auditWritten != nil {
		s.auditWritten(took)
	}
	select {
	case s.sealWake <- struct{}{}:
	default:
	}
}

// sealLock is the advisory lock that lets one sealer run at a time, on
// whichever replica.
const sealLock = 0x63617265_61756469 // "careaudi"

// sealBatch bounds the records one sealing transaction moves.
const sealBatch = 1000

// sealEvery is how often Seal runs with no record written on this
// replica, to seal what other replicas (or a replica that stopped) left.
const sealEvery = time.Second

// sealGather is how long the sealer lets records gather after one is
// committed on this replica.
const sealGather = 10 * time.Millisecond

// Seal runs the sealer until ctx ends: shortly after records are
// committed on this replica, and every sealEvery.
func (s *Store) Seal(ctx context.Context) {
	tick := time.NewTicker(sealEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.sealWake:
			// Let the records of a burst gather into one seal.
			select {
			case <-ctx.Done():
				return
			case <-time.After(sealGather):
			}
		case <-tick.C:
		}
		if _, err := s.seal(ctx, false); err != nil && ctx.Err() == nil {
			s.log.WarnContext(ctx, "sealing the audit trail", "error", err.Error())
		}
	}
}

// SealAudit moves every record committed to the inbox onto its hash
// chain, in the order the records were written, and reports how many it
// moved. Sealers on several replicas take turns: it waits for another
// replica's sealer, so that every record committed before the call is
// sealed when it returns.
func (s *Store) SealAudit(ctx context.Context) (int, error) { return s.seal(ctx, true) }

// seal seals batches until the inbox is empty. Unless wait is set, it
// leaves the work to another replica's sealer that holds the turn, which
// seals what this one would have.
func (s *Store) seal(ctx context.Context, wait bool) (int, error) {
	total := 0
	for {
		n, err := s.sealOnce(ctx, wait)
		total += n
		if err != nil || n < sealBatch {
			return total, mapError(err)
		}
	}
}

var sealColumns = []string{"chain", "position", "hash", "time", "subject", "practitioner_id", "role", "organization_id", "method",
	"resources", "patients", "outcome", "purpose", "emergency_reason", "request_id", "peer", "suppressed"}

func (s *Store) sealOnce(ctx context.Context, wait bool) (int, error) {
	var n int
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if wait {
			if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(sealLock)); err != nil {
				return err
			}
		} else {
			var turn bool
			if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock($1)`, int64(sealLock)).Scan(&turn); err != nil || !turn {
				return err
			}
		}
		rows, err := tx.Query(ctx, `
			DELETE FROM audit_inbox WHERE id IN (SELECT id FROM audit_inbox ORDER BY id LIMIT $1)
			RETURNING id, chain, canonical, time, subject, practitioner_id, role, organization_id, method,
				resources, patients, outcome, purpose, emergency_reason, request_id, peer, suppressed`, sealBatch)
		if err != nil {
			return err
		}
		type inboxed struct {
			id        int64
			canonical []byte
			values    []any // in sealColumns' order
		}
		batch, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (inboxed, error) {
			var (
				in                                                             inboxed
				chain, suppressed                                              int32
				at                                                             time.Time
				subject, role, method, outcome, purpose, reason, request, peer string
				practitioner, org                                              *uuid.UUID
				resources                                                      []string
				patients                                                       []uuid.UUID
			)
			err := row.Scan(&in.id, &chain, &in.canonical, &at, &subject, &practitioner, &role, &org, &method,
				&resources, &patients, &outcome, &purpose, &reason, &request, &peer, &suppressed)
			in.values = []any{chain, nil, nil, at, subject, practitioner, role, org, method,
				resources, patients, outcome, purpose, reason, request, peer, suppressed}
			return in, err
		})
		slices.SortFunc(batch, func(a, b inboxed) int { return cmp.Compare(a.id, b.id) })
		type head struct {
			position int64
			hash     []byte
		}
		heads := map[int32]*head{}
		hrows, err := tx.Query(ctx, `SELECT chain, position, hash FROM audit_chains ORDER BY chain FOR NO KEY UPDATE`)
		if err != nil {
			return err
		}
		var chain int32
		var h head
		if _, err := pgx.ForEachRow(hrows, []any{&chain, &h.position, &h.hash}, func() error {
			heads[chain] = &head{h.position, h.hash}
			return nil
		}); err != nil {
			return err
		}
		for _, in := range batch {
			hd := heads[in.values[0].(int32)]
			hd.position++
			hd.hash = audit.ChainHash(hd.hash, in.canonical)
			in.values[1], in.values[2] = hd.position, hd.hash
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"audit_events"}, sealColumns, pgx.CopyFromSlice(len(batch),
			func(i int) ([]any, error) { return batch[i].values, nil })); err != nil {
			return err
		}
		var b pgx.Batch
		for c, hd := range heads {
			b.Queue(`UPDATE audit_chains SET position = $2, hash = $3 WHERE chain = $1 AND position <> $2`, c, hd.position, hd.hash)
		}
		n = len(batch)
		return tx.SendBatch(ctx, &b).Close()
	})
	return n, err
}

// UnsealedAudit counts the records committed and not yet sealed.
func (t *tx) UnsealedAudit(ctx context.Context) (int64, error) {
	var n int64
	err := t.queryRow(ctx, `SELECT count(*) FROM audit_inbox`).Scan(&n)
	return n, err
}

const auditColumns = `seq, chain, position, time, subject, practitioner_id, role, organization_id, method,
	resources, patients, outcome, purpose, emergency_reason, request_id, peer, suppressed, hash`

func scanAudit(row pgx.Row) (*audit.Record, error) {
	var r audit.Record
	var practitioner, org *uuid.UUID
	err := row.Scan(&r.Sequence, &r.Chain, &r.Position, &r.Time, &r.Subject, &practitioner, &r.Role, &org, &r.Method,
		&r.Resources, &r.Patients, &r.Outcome, &r.Purpose, &r.EmergencyReason, &r.RequestID, &r.Peer, &r.Suppressed, &r.Hash)
	r.PractitionerID, r.OrganizationID = deref(practitioner), deref(org)
	return &r, err
}

func (t *tx) ListAudit(ctx context.Context, f careteam.AuditFilter, after int64, limit int) ([]*audit.Record, error) {
	args := pgx.NamedArgs{"after": after, "limit": limit}
	where := []string{`seq > @after`}
	if f.PatientID != uuid.Nil {
		args["patient"] = []uuid.UUID{f.PatientID}
		where = append(where, `patients @> @patient`)
	}
	if f.Subject != "" {
		args["subject"] = f.Subject
		where = append(where, `subject = @subject`)
	}
	if !f.From.IsZero() {
		args["from"] = f.From
		where = append(where, `time >= @from`)
	}
	if !f.To.IsZero() {
		args["to"] = f.To
		where = append(where, `time < @to`)
	}
	if f.Outcome != "" {
		args["outcome"] = f.Outcome
		where = append(where, `outcome = @outcome`)
	}
	if f.EmergencyOnly {
		where = append(where, `purpose = 'EMERGENCY'`)
	}
	rows, err := t.query(ctx, `SELECT `+auditColumns+` FROM audit_events WHERE `+strings.Join(where, " AND ")+
		` ORDER BY seq LIMIT @limit`, args)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanAudit)
}

func (t *tx) AuditRange(ctx context.Context, from, to int64) ([]*audit.Record, error) {
	rows, err := t.query(ctx, `SELECT `+auditColumns+` FROM audit_events
		WHERE seq >= $1 AND ($2 = 0 OR seq <= $2) ORDER BY chain, position`, from, to)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanAudit)
}

func (t *tx) AuditHashAt(ctx context.Context, chain int, position int64) ([]byte, error) {
	if position == 0 {
		return []byte{}, nil
	}
	var h []byte
	err := t.queryRow(ctx, `SELECT hash FROM audit_events WHERE chain = $1 AND position = $2`, chain, position).Scan(&h)
	if err == pgx.ErrNoRows {
		return nil, careteam.ErrNotFound
	}
	return h, err
}

func (t *tx) AuditHeads(ctx context.Context) ([]*careteam.AuditHead, error) {
	rows, err := t.query(ctx, `
		SELECT h.chain, h.position, h.hash, coalesce(e.position, 0), coalesce(e.hash, ''), coalesce(e.seq, 0)
		FROM audit_heads h
		LEFT JOIN LATERAL (SELECT position, hash, seq FROM audit_events
		                   WHERE chain = h.chain ORDER BY position DESC LIMIT 1) e ON true
		ORDER BY h.chain`)
	if err != nil {
		return nil, err
	}
	return collect(rows, func(row pgx.Row) (*careteam.AuditHead, error) {
		var h careteam.AuditHead
		err := row.Scan(&h.Chain, &h.Position, &h.Hash, &h.LastPosition, &h.LastHash, &h.LastSequence)
		return &h, err
	})
}
