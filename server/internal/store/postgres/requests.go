package postgres

import (
	"bytes"
	"context"

	"github.com/google/uuid"

	"github.com/careteam/careteam/server/internal/careteam"
)

// ClaimRequest records an idempotency key. When another transaction holds
// the same key, the insert waits for it: if it committed, this call replays
// its result; if it rolled back, this call proceeds as the first.
func (t *tx) ClaimRequest(ctx context.Context, key careteam.RequestKey) (uuid.UUID, bool, error) {
	tag, err := t.execNow(ctx, `
		INSERT INTO request_ids (subject, method, request_id, request_hash)
		VALUES ($1, $2, $3, $4)
		ON CONFLICT DO NOTHING`, key.Subject, key.Method, key.RequestID, key.Hash)
	if err != nil {
		return uuid.Nil, false, err
	}
	if tag.RowsAffected() == 1 {
		return uuid.Nil, false, nil
	}
	var hash []byte
	var resource *uuid.UUID
	err = t.queryRow(ctx, `
		SELECT request_hash, resource_id FROM request_ids
		WHERE subject = $1 AND method = $2 AND request_id = $3`,
		key.Subject, key.Method, key.RequestID).Scan(&hash, &resource)
	if err != nil {
		return uuid.Nil, false, err
	}
	if !bytes.Equal(hash, key.Hash) || resource == nil {
		return uuid.Nil, false, &careteam.InvalidError{Violations: []careteam.FieldViolation{{
			Field: "request_id", Description: "already used for a different request",
		}}}
	}
	return *resource, true, nil
}

// FinishRequest stores the id of the resource the request produced.
func (t *tx) FinishRequest(ctx context.Context, key careteam.RequestKey, resource uuid.UUID) error {
	err := t.exec(ctx, `
		UPDATE request_ids SET resource_id = $4
		WHERE subject = $1 AND method = $2 AND request_id = $3`,
		key.Subject, key.Method, key.RequestID, resource)
	return err
}
