-- +goose Up

-- The audit trail: one record per call, hash-chained. Records are spread
-- over audit.Chains (16) chains so concurrent writers do not queue on one
-- head; each chain head row is locked while a record is appended, so a
-- chain never forks. The empty hash starts every chain.
CREATE TABLE audit_chains (
    chain    int    PRIMARY KEY,
    position bigint NOT NULL,
    hash     bytea  NOT NULL
);
INSERT INTO audit_chains (chain, position, hash) SELECT g, 0, '' FROM generate_series(0, 15) AS g;

CREATE TABLE audit_events (
    seq              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    chain            int         NOT NULL REFERENCES audit_chains (chain),
    position         bigint      NOT NULL,
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
    hash             bytea       NOT NULL,
    UNIQUE (chain, position)
);
CREATE INDEX audit_events_patients ON audit_events USING gin (patients);
CREATE INDEX audit_events_subject ON audit_events (subject, seq);
CREATE INDEX audit_events_time ON audit_events (time, seq);
CREATE INDEX audit_events_emergency ON audit_events (seq) WHERE purpose = 'EMERGENCY';

-- Append-only, whoever asks: the application cannot change or remove a
-- record, and an edit by a superuser who disables this is found by
-- VerifyAuditLog.
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

-- +goose Down
-- Forward-only: released migrations are never reversed.
