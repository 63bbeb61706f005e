-- +goose Up

-- Amendments to signed notes: appended, never changed.
CREATE TABLE session_amendments (
    session_id uuid        NOT NULL REFERENCES sessions (id),
    seq        int         NOT NULL,
    author_id  uuid        NOT NULL REFERENCES practitioners (id),
    time       timestamptz NOT NULL,
    reason     text        NOT NULL,
    text       text        NOT NULL,
    PRIMARY KEY (session_id, seq)
);

-- A signed note never changes, whatever path a write takes: the database
-- refuses it too, not only the application.
-- +goose StatementBegin
CREATE FUNCTION refuse_signed_note_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.note_status = 'SIGNED' AND (
        NEW.note_status, NEW.subjective, NEW.objective, NEW.assessment, NEW.plan, NEW.pain_before, NEW.pain_after,
        NEW.oswestry_index, NEW.neck_disability_index, NEW.range_of_motion, NEW.treatments, NEW.duration_minutes,
        NEW.adverse_description, NEW.adverse_severity, NEW.deviation_reason, NEW.signed_by, NEW.sign_time, NEW.content_sha256,
        NEW.planned, NEW.referral_id, NEW.patient_id, NEW.therapist_id, NEW.start_time, NEW.state
    ) IS DISTINCT FROM (
        OLD.note_status, OLD.subjective, OLD.objective, OLD.assessment, OLD.plan, OLD.pain_before, OLD.pain_after,
        OLD.oswestry_index, OLD.neck_disability_index, OLD.range_of_motion, OLD.treatments, OLD.duration_minutes,
        OLD.adverse_description, OLD.adverse_severity, OLD.deviation_reason, OLD.signed_by, OLD.sign_time, OLD.content_sha256,
        OLD.planned, OLD.referral_id, OLD.patient_id, OLD.therapist_id, OLD.start_time, OLD.state
    ) THEN
        RAISE EXCEPTION 'session % has a signed note, which never changes', OLD.id USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END
$$;
-- +goose StatementEnd
CREATE TRIGGER sessions_signed_note_immutable BEFORE UPDATE ON sessions
    FOR EACH ROW EXECUTE FUNCTION refuse_signed_note_change();

-- +goose StatementBegin
CREATE FUNCTION refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% rows are append-only', TG_TABLE_NAME USING ERRCODE = 'integrity_constraint_violation';
END
$$;
-- +goose StatementEnd
CREATE TRIGGER session_amendments_append_only BEFORE UPDATE OR DELETE ON session_amendments
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER sessions_no_delete BEFORE DELETE ON sessions
    FOR EACH ROW EXECUTE FUNCTION refuse_change();

-- +goose Down
-- Forward-only: released migrations are never reversed.
