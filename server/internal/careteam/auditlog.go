package careteam

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/careteam/careteam/server/internal/audit"
)

// AuditFilter narrows ListAuditEvents; zero fields do not filter.
type AuditFilter struct {
	PatientID     uuid.UUID
	Subject       string
	From, To      time.Time
	Outcome       string
	EmergencyOnly bool
}

// Verification is the result of walking the audit chains over a range.
type Verification struct {
	Checked int64
	// BrokenSequence is the first record (lowest sequence) that does not
	// verify; for a chain whose end was removed, its last remaining record
	// (zero if none remains).
	BrokenSequence int64
	// Problem says what is wrong; empty when everything verifies.
	Problem string
	// Unsealed counts the records committed but not yet on their chains
	// when the check ended: durable, and not yet covered by it.
	Unsealed int64
}

// OK reports whether everything verified.
func (v *Verification) OK() bool { return v.Problem == "" }

// AuditHead is a chain's head checkpoint beside its last record.
type AuditHead struct {
	Chain        int
	Position     int64
	Hash         []byte
	LastPosition int64
	LastHash     []byte
	LastSequence int64
}

// ListAuditEvents lists audit records after a sequence, oldest first.
// Auditors only.
func (s *Service) ListAuditEvents(ctx context.Context, p Principal, f AuditFilter, after int64, size int) ([]*audit.Record, int64, error) {
	if err := authorizeAuditor(p); err != nil {
		return nil, 0, err
	}
	size = normalizePage(Page{Size: size}).Size
	// Records are listed once sealed, in the order of their chaining,
	// which later records never fall behind.
	if _, err := s.store.SealAudit(ctx); err != nil {
		return nil, 0, err
	}
	rows, err := read(ctx, s, func(tx Tx) ([]*audit.Record, error) { return tx.ListAudit(ctx, f, after, size+1) })
	if err != nil {
		return nil, 0, err
	}
	var next int64
	if len(rows) > size {
		rows = rows[:size]
		next = rows[size-1].Sequence
	}
	return rows, next, nil
}

// VerifyAuditLog recomputes every chain over the sequence range [from, to]
// (zero: open) and reports the first record that does not verify: an
// edited record, or one missing from its chain. Auditors only.
func (s *Service) VerifyAuditLog(ctx context.Context, p Principal, from, to int64) (*Verification, error) {
	if err := authorizeAuditor(p); err != nil {
		return nil, err
	}
	if _, err := s.store.SealAudit(ctx); err != nil {
		return nil, err
	}
	v := &Verification{}
	err := s.store.InTx(ctx, func(tx Tx) error {
		rows, err := tx.AuditRange(ctx, from, to)
		if err != nil {
			return err
		}
		v.Checked = int64(len(rows))
		report := func(r *audit.Record, problem string) {
			if v.BrokenSequence == 0 || r.Sequence < v.BrokenSequence {
				v.BrokenSequence, v.Problem = r.Sequence, problem
			}
		}
		// Rows come ordered by chain and position.
		for i := 0; i < len(rows); {
			chain := rows[i].Chain
			prev, err := tx.AuditHashAt(ctx, chain, rows[i].Position-1)
			if err != nil {
				report(rows[i], fmt.Sprintf("the record before it in chain %d is missing", chain))
				prev = nil
			}
			for want := rows[i].Position; i < len(rows) && rows[i].Chain == chain; i, want = i+1, want+1 {
				r := rows[i]
				if r.Position != want {
					report(r, fmt.Sprintf("chain %d skips from position %d to %d: records were removed", chain, want-1, r.Position))
				}
				if prev != nil && !bytes.Equal(audit.ChainHash(prev, r.Canonical()), r.Hash) {
					report(r, "the record's content does not match its hash: it was altered")
				}
				prev = r.Hash
			}
		}
		if v.Unsealed, err = tx.UnsealedAudit(ctx); err != nil {
			return err
		}
		if to != 0 {
			return nil
		}
		// Up to the present, every chain must end where its checkpoint
		// says: records removed from the end leave no gap to find.
		heads, err := tx.AuditHeads(ctx)
		if err != nil {
			return err
		}
		for _, h := range heads {
			if h.LastPosition != h.Position || !bytes.Equal(h.LastHash, h.Hash) {
				if v.Problem == "" {
					v.BrokenSequence = h.LastSequence
					v.Problem = fmt.Sprintf("chain %d ends at position %d, but its head checkpoint is at %d: records were removed from its end",
						h.Chain, h.LastPosition, h.Position)
				}
			}
		}
		return nil
	})
	return v, err
}
