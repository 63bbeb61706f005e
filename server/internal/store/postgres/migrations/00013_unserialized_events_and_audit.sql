-- +goose Up

-- Events are numbered from a sequence as each writing transaction's last
-- act, and no lock is held to commit: readers take events only up to a
-- horizon that every transaction which might still write below it has
-- passed (Store.EventHorizon). The cursor row keeps only how far events
-- were pruned.
CREATE SEQUENCE event_cursors AS bigint;
SELECT setval('event_cursors', greatest(last_cursor, 1), last_cursor > 0) FROM event_cursor;

-- A call's audit record commits with the call's work into this inbox,
-- which has no shared row; one sealer at a time (Store.SealAudit) moves
-- records onto their hash chains in audit_events shortly after. The
-- record's canonical bytes are kept so the sealer hashes exactly what the
-- writer described.
CREATE TABLE audit_inbox (
    id               bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    chain            int         NOT NULL REFERENCES audit_chains (chain),
    canonical        bytea       NOT NULL,
    time             timestamptz NOT NULL,
    subject          text        NOT NULL,
    practitioner_id  uuid,
    role             text        NOT NULL,
    organization_id  uuid,
    method           text        NOT NULL,
    resources        text[]      NOT NULL,
    patients         uuid[]      NOT NULL,
    outcome          text        NOT NULL,
    purpose          text        NOT NULL,
    emergency_reason text        NOT NULL,
    request_id       text        NOT NULL,
    peer             text        NOT NULL,
    suppressed       integer     NOT NULL CHECK (suppressed >= 0)
);

-- +goose Down
-- Forward-only: released migrations are never reversed.
