-- +goose Up

-- Integrations: EHR integrations in the directory, each granted to act for
-- the physicians of the organizations it names (acts_for); no other role
-- names any.
ALTER TABLE practitioners DROP CONSTRAINT practitioners_role_check;
ALTER TABLE practitioners ADD CONSTRAINT practitioners_role_check
    CHECK (role IN ('PHYSICIAN', 'MASSAGE_THERAPIST', 'COORDINATOR', 'ADMIN', 'AUDITOR', 'INTEGRATION'));
ALTER TABLE practitioners ADD COLUMN acts_for uuid[] NOT NULL DEFAULT '{}';
ALTER TABLE practitioners ADD CONSTRAINT practitioners_acts_for_check
    CHECK ((role = 'INTEGRATION') = (cardinality(acts_for) > 0));

-- +goose Down
-- Forward-only: released migrations are never reversed.
