-- +goose Up

-- An inbox record's chain was a foreign key to audit_chains: every call's
-- insert took a share lock on one of the 16 head rows, which the sealer
-- locks to advance them, so callers waited for the sealer and the sealer
-- for every caller in flight. The chain is picked by careteamd from a
-- fixed range; a check keeps it there without touching a shared row.
ALTER TABLE audit_inbox DROP CONSTRAINT audit_inbox_chain_fkey;
ALTER TABLE audit_inbox ADD CONSTRAINT audit_inbox_chain_range CHECK (chain BETWEEN 0 AND 15);

-- The head checkpoint moved once per sealed record, a row update each;
-- it now moves once per chain per sealing statement, to the last record
-- the statement appended.
DROP TRIGGER audit_events_checkpoint ON audit_events;

-- +goose StatementBegin
CREATE FUNCTION checkpoint_audit_heads() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    UPDATE audit_heads h SET position = a.position, hash = a.hash
    FROM (SELECT DISTINCT ON (chain) chain, position, hash FROM appended ORDER BY chain, position DESC) a
    WHERE h.chain = a.chain AND h.position < a.position;
    RETURN NULL;
END
$$;
-- +goose StatementEnd
REVOKE ALL ON FUNCTION checkpoint_audit_heads() FROM PUBLIC;
CREATE TRIGGER audit_events_checkpoint AFTER INSERT ON audit_events
    REFERENCING NEW TABLE AS appended
    FOR EACH STATEMENT EXECUTE FUNCTION checkpoint_audit_heads();
DROP FUNCTION checkpoint_audit_head();

-- +goose Down
-- Forward-only: released migrations are never reversed.
