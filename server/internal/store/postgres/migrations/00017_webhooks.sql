-- +goose Up

-- Webhooks: where careteam pushes the events a subject may receive. cursor
-- is the last event the receiver took; lease_until marks the replica
-- delivering it, so that one delivers at a time and another takes over
-- when it stops.
CREATE TABLE webhooks (
    id                uuid        PRIMARY KEY,
    subject           text        NOT NULL,
    practitioner_id   uuid,
    url               text        NOT NULL,
    types             text[]      NOT NULL DEFAULT '{}',
    secret            bytea       NOT NULL,
    cursor            bigint      NOT NULL,
    last_delivery     timestamptz,
    last_attempt      timestamptz,
    next_attempt      timestamptz NOT NULL,
    last_error        text        NOT NULL DEFAULT '',
    failures          int         NOT NULL DEFAULT 0,
    lease_until       timestamptz,
    create_time       timestamptz NOT NULL
);
CREATE INDEX webhooks_subject ON webhooks (subject, id);
CREATE INDEX webhooks_due ON webhooks (next_attempt);

-- +goose Down
-- Forward-only: released migrations are never reversed.
