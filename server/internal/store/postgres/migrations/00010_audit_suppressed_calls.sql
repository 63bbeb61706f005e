-- +goose Up

-- A record may stand for like calls it did not record one by one: failed
-- authentications from one peer within a minute are recorded once, with
-- how many more there were.
ALTER TABLE audit_events ADD COLUMN suppressed integer NOT NULL DEFAULT 0 CHECK (suppressed >= 0);

-- +goose Down
-- Forward-only: released migrations are never reversed.
