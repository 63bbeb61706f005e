-- +goose Up

-- Migrations 00002, 00003 and 00004 were edited after databases had
-- applied them; a database that ran their first form lacks what the edits
-- added, and goose never runs a version twice. This brings such a database
-- to the schema the current forms make, and does nothing where they ran.
--
-- Two later edits are not replayed, because both were one-time backfills
-- of data as it stood when they ran, which replaying now would get wrong:
-- 00008's marking of referrals that had expired before there were expiry
-- events (a database that missed it announced them once, at its first
-- sweep), and 00009's fix to the scheduling of clearances issued before
-- scheduled clearances existed (their windows have opened since, and the
-- sweep put them in force).

-- 00002: each referral counts the sessions ever started on it, which
-- numbers them; a database without the count numbers its sessions now, in
-- the order they started, so that each visit has one number.
-- +goose StatementBegin
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM information_schema.columns
                   WHERE table_schema = 'public' AND table_name = 'referrals' AND column_name = 'sessions_started') THEN
        ALTER TABLE referrals ADD COLUMN sessions_started int NOT NULL DEFAULT 0;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_indexes WHERE schemaname = 'public' AND indexname = 'sessions_visit') THEN
        UPDATE sessions s SET visit_number = n.visit
        FROM (SELECT id, row_number() OVER (PARTITION BY referral_id ORDER BY start_time, id) AS visit FROM sessions) n
        WHERE n.id = s.id AND s.visit_number IS DISTINCT FROM n.visit;
        CREATE UNIQUE INDEX sessions_visit ON sessions (referral_id, visit_number);
    END IF;
    UPDATE referrals r SET sessions_started = s.started
    FROM (SELECT referral_id, max(visit_number) AS started FROM sessions GROUP BY referral_id) s
    WHERE s.referral_id = r.id AND r.sessions_started < s.started;
END
$$;
-- +goose StatementEnd

-- 00002: an index per way a caller sees referrals, and per open worklist.
DROP INDEX IF EXISTS referrals_overdue;
CREATE INDEX IF NOT EXISTS referrals_unassigned ON referrals (target_org_id, id) WHERE target_therapist_id IS NULL;
CREATE INDEX IF NOT EXISTS referrals_submitted_physician ON referrals (referring_physician_id, id) WHERE state = 'SUBMITTED';
CREATE INDEX IF NOT EXISTS referrals_submitted_referring_org ON referrals (referring_org_id, id) WHERE state = 'SUBMITTED';
CREATE INDEX IF NOT EXISTS referrals_submitted_target_org ON referrals (target_org_id, id) WHERE state = 'SUBMITTED';
CREATE INDEX IF NOT EXISTS referrals_submitted_therapist ON referrals (target_therapist_id, id) WHERE state = 'SUBMITTED';
CREATE STATISTICS IF NOT EXISTS referrals_target_dependency (dependencies) ON target_therapist_id, target_org_id FROM referrals;

-- 00003: a clearance is superseded before its successor is written.
ALTER TABLE clearances ALTER CONSTRAINT clearances_superseded_by_fkey DEFERRABLE INITIALLY DEFERRED;

-- 00003: sessions carry their referral's parties (which no longer change
-- once a referral is treated), each with an index.
ALTER TABLE sessions
    ADD COLUMN IF NOT EXISTS referring_physician_id uuid REFERENCES practitioners (id),
    ADD COLUMN IF NOT EXISTS referring_org_id uuid REFERENCES organizations (id),
    ADD COLUMN IF NOT EXISTS target_org_id uuid REFERENCES organizations (id);
UPDATE sessions s
SET referring_physician_id = r.referring_physician_id, referring_org_id = r.referring_org_id, target_org_id = r.target_org_id
FROM referrals r
WHERE r.id = s.referral_id AND s.referring_physician_id IS NULL;
ALTER TABLE sessions
    ALTER COLUMN referring_physician_id SET NOT NULL,
    ALTER COLUMN referring_org_id SET NOT NULL,
    ALTER COLUMN target_org_id SET NOT NULL;
CREATE INDEX IF NOT EXISTS sessions_referring_physician ON sessions (referring_physician_id, id);
CREATE INDEX IF NOT EXISTS sessions_referring_org ON sessions (referring_org_id, id);
CREATE INDEX IF NOT EXISTS sessions_target_org ON sessions (target_org_id, id);

-- 00004: a signed note's session keeps its clearance, visit number,
-- scheduled time and cancellation too.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION refuse_signed_note_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.note_status = 'SIGNED' AND (
        NEW.note_status, NEW.subjective, NEW.objective, NEW.assessment, NEW.plan, NEW.pain_before, NEW.pain_after,
        NEW.oswestry_index, NEW.neck_disability_index, NEW.range_of_motion, NEW.treatments, NEW.duration_minutes,
        NEW.adverse_description, NEW.adverse_severity, NEW.deviation_reason, NEW.signed_by, NEW.sign_time, NEW.content_sha256,
        NEW.planned, NEW.referral_id, NEW.patient_id, NEW.therapist_id, NEW.start_time, NEW.state,
        NEW.clearance_id, NEW.visit_number, NEW.scheduled_start_time, NEW.cancel_reason, NEW.cancel_text
    ) IS DISTINCT FROM (
        OLD.note_status, OLD.subjective, OLD.objective, OLD.assessment, OLD.plan, OLD.pain_before, OLD.pain_after,
        OLD.oswestry_index, OLD.neck_disability_index, OLD.range_of_motion, OLD.treatments, OLD.duration_minutes,
        OLD.adverse_description, OLD.adverse_severity, OLD.deviation_reason, OLD.signed_by, OLD.sign_time, OLD.content_sha256,
        OLD.planned, OLD.referral_id, OLD.patient_id, OLD.therapist_id, OLD.start_time, OLD.state,
        OLD.clearance_id, OLD.visit_number, OLD.scheduled_start_time, OLD.cancel_reason, OLD.cancel_text
    ) THEN
        RAISE EXCEPTION 'session % has a signed note, which never changes', OLD.id USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END
$$;
-- +goose StatementEnd

-- +goose Down
-- Forward-only: released migrations are never reversed.
