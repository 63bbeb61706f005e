package postgres

import (
	"context"

	"github.com/google/uuid"

	"github.com/careteam/careteam/server/internal/careteam"
)

// ClaimRequest records an idempotency key. When another transaction holds
// the same key, the insert waits for it: if it committed, this call finds
// its record; if it rolled back, this call proceeds as the first.
func (t *tx) ClaimRequest(ctx context.Context, key careteam.RequestKey) (careteam.RequestClaim, error) {
	tag, err := t.execNow(ctx, `
		INSERT INTO request_ids (subject, method, request_id, request_hash)
		VALUES ($1, $2, $3, $4)
		ON CONFLICT DO NOTHING`, key.Subject, key.Method, key.RequestID, key.Hash)
	if err != nil {
		return careteam.RequestClaim{}, err
	}
	if tag.RowsAffected() == 1 {
		return careteam.RequestClaim{Claimed: true}, nil
	}
	var c careteam.RequestClaim
	var resource *uuid.UUID
	err = t.queryRow(ctx, `
		SELECT request_hash, resource_id FROM request_ids
		WHERE subject = $1 AND method = $2 AND request_id = $3`,
		key.Subject, key.Method, key.RequestID).Scan(&c.Hash, &resource)
	if resource != nil {
		c.Resource = *resource
	}
	return c, err
}

// FinishRequest stores the id of the resource the request produced.
func (t *tx) FinishRequest(ctx context.Context, key careteam.RequestKey, resource uuid.UUID) error {
	err := t.exec(ctx, `
		UPDATE request_ids SET resource_id = $4
		WHERE subject = $1 AND method = $2 AND request_id = $3`,
		key.Subject, key.Method, key.RequestID, resource)
	return err
}
