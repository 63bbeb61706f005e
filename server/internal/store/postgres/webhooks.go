package postgres

import (
	"context"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/careteam/careteam/server/internal/careteam"
)

const webhookColumns = `id, subject, practitioner_id, url, types, secret, cursor, last_delivery, last_attempt, next_attempt,
	last_error, failures, create_time, lease_until`

func scanWebhook(row pgx.Row) (*careteam.Webhook, error) {
	var w careteam.Webhook
	var practitioner *uuid.UUID
	var lastDelivery, lastAttempt, lease *time.Time
	err := row.Scan(&w.ID, &w.Subject, &practitioner, &w.URL, &w.Types, &w.Secret, &w.Cursor, &lastDelivery, &lastAttempt,
		&w.NextAttempt, &w.LastError, &w.Failures, &w.CreateTime, &lease)
	if lease != nil {
		w.Lease = *lease
	}
	if practitioner != nil {
		w.PractitionerID = *practitioner
	}
	if lastDelivery != nil {
		w.LastDelivery = *lastDelivery
	}
	if lastAttempt != nil {
		w.LastAttempt = *lastAttempt
	}
	return &w, err
}

func (t *tx) InsertWebhook(ctx context.Context, w *careteam.Webhook) error {
	var practitioner *uuid.UUID
	if w.PractitionerID != uuid.Nil {
		practitioner = &w.PractitionerID
	}
	return t.exec(ctx, `INSERT INTO webhooks (id, subject, practitioner_id, url, types, secret, cursor, next_attempt, create_time)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		w.ID, w.Subject, practitioner, w.URL, nonNil(w.Types), w.Secret, w.Cursor, w.NextAttempt, w.CreateTime)
}

func (t *tx) GetWebhook(ctx context.Context, id uuid.UUID) (*careteam.Webhook, error) {
	w, err := scanWebhook(t.queryRow(ctx, `SELECT `+webhookColumns+` FROM webhooks WHERE id = $1`, id))
	return w, notFound(err, careteam.Webhooks, id)
}

func (t *tx) ListWebhooks(ctx context.Context, subject string, page careteam.Page) ([]*careteam.Webhook, error) {
	rows, err := t.query(ctx, `SELECT `+webhookColumns+` FROM webhooks WHERE subject = $1 AND id > $2 ORDER BY id LIMIT $3`,
		subject, page.After, page.Size+1)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanWebhook)
}

func (t *tx) DeleteWebhook(ctx context.Context, id uuid.UUID) error {
	return t.exec(ctx, `DELETE FROM webhooks WHERE id = $1`, id)
}

// ClaimWebhooks takes the due webhooks no live lease holds; SKIP LOCKED
// lets replicas claim at once without waiting on each other.
func (t *tx) ClaimWebhooks(ctx context.Context, now, lease time.Time, limit int) ([]*careteam.Webhook, error) {
	rows, err := t.query(ctx, `UPDATE webhooks SET lease_until = $2 WHERE id IN (
			SELECT id FROM webhooks WHERE next_attempt <= $1 AND (lease_until IS NULL OR lease_until < $1)
			ORDER BY next_attempt LIMIT $3 FOR UPDATE SKIP LOCKED)
		RETURNING `+webhookColumns, now, lease, limit)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanWebhook)
}

func (t *tx) FinishWebhookAttempt(ctx context.Context, w *careteam.Webhook) (bool, error) {
	var lastDelivery *time.Time
	if !w.LastDelivery.IsZero() {
		lastDelivery = &w.LastDelivery
	}
	// A webhook deleted meanwhile stays deleted; one another replica
	// claimed since (the lease ran out) is theirs.
	tag, err := t.execNow(ctx, `UPDATE webhooks SET cursor = $2, last_delivery = $3, last_attempt = $4, next_attempt = $5,
			last_error = $6, failures = $7, lease_until = NULL
		WHERE id = $1 AND lease_until = $8`,
		w.ID, w.Cursor, lastDelivery, w.LastAttempt, w.NextAttempt, w.LastError, w.Failures, w.Lease)
	if err != nil {
		return false, err
	}
	return tag.RowsAffected() == 1, nil
}
