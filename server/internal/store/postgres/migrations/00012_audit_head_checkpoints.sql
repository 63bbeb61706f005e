-- +goose Up

-- Each chain's head, checkpointed where the role careteamd runs as cannot
-- write: a trigger that runs with its owner's rights moves it forward as
-- records are appended. A chain whose last records were removed (which
-- takes disabling the append-only triggers) ends short of its checkpoint,
-- and VerifyAuditLog says so.
CREATE TABLE audit_heads (
    chain    int    PRIMARY KEY REFERENCES audit_chains (chain),
    position bigint NOT NULL,
    hash     bytea  NOT NULL
);
INSERT INTO audit_heads (chain, position, hash) SELECT chain, position, hash FROM audit_chains;

-- +goose StatementBegin
CREATE FUNCTION checkpoint_audit_head() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    UPDATE audit_heads SET position = NEW.position, hash = NEW.hash
    WHERE chain = NEW.chain AND position < NEW.position;
    RETURN NULL;
END
$$;
-- +goose StatementEnd
REVOKE ALL ON FUNCTION checkpoint_audit_head() FROM PUBLIC;
CREATE TRIGGER audit_events_checkpoint AFTER INSERT ON audit_events
    FOR EACH ROW EXECUTE FUNCTION checkpoint_audit_head();

-- +goose Down
-- Forward-only: released migrations are never reversed.
