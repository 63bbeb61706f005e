-- +goose Up

-- The transactional outbox. A transaction that writes events takes the
-- cursor row's lock as its last act and holds it until it commits, so
-- cursors are assigned in commit order: a reader who has seen cursor N
-- never later finds one below N.
CREATE TABLE event_cursor (
    id             int    PRIMARY KEY CHECK (id = 1),
    last_cursor    bigint NOT NULL,
    -- Events up to here were pruned; a watcher behind it must resync.
    pruned_through bigint NOT NULL
);
INSERT INTO event_cursor VALUES (1, 0, 0);

CREATE TABLE events (
    cursor        bigint      PRIMARY KEY,
    id            uuid        NOT NULL UNIQUE,
    type          text        NOT NULL,
    resource      text        NOT NULL,
    patient_id    uuid,
    referral_id   uuid,
    time          timestamptz NOT NULL,
    audience      text[]      NOT NULL,
    payload       jsonb       NOT NULL
);
CREATE INDEX events_audience ON events USING gin (audience);
CREATE INDEX events_time ON events (time);

-- +goose Down
-- Forward-only: released migrations are never reversed.
