package postgres

import (
	"context"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/careteam/careteam/server/internal/audit"
	"github.com/careteam/careteam/server/internal/careteam"
)

// auditSQL appends a record to its chain in one statement: the chain's
// head row advances (and stays locked until the transaction ends, so the
// chain never forks) and the record is written with SHA-256(previous head
// hash || canonical bytes).
const auditSQL = `
	WITH head AS (
		UPDATE audit_chains SET position = position + 1, hash = sha256(hash || $2)
		WHERE chain = $1 RETURNING position, hash)
	INSERT INTO audit_events (chain, position, hash, time, subject, practitioner_id, role, organization_id, method,
		resources, patients, outcome, purpose, emergency_reason, request_id, peer, suppressed)
	SELECT $1, head.position, head.hash, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16 FROM head`

func auditArgs(r audit.Record) []any {
	return []any{r.PickChain(), r.Canonical(), r.Time, r.Subject, nullID(r.PractitionerID), r.Role, nullID(r.OrganizationID), r.Method,
		nonNil(r.Resources), nonNil(r.Patients), r.Outcome, r.Purpose, r.EmergencyReason, r.RequestID, r.Peer, r.Suppressed}
}

// AppendAudit writes a record on its own: for a call whose transaction did
// not commit (denied, failed) or that had none.
func (s *Store) AppendAudit(ctx context.Context, r audit.Record) error {
	start := time.Now()
	_, err := s.pool.Exec(ctx, auditSQL, auditArgs(r)...)
	if err == nil && s.auditWritten != nil {
		s.auditWritten(time.Since(start))
	}
	return mapError(err)
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
