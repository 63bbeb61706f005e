-- +goose Up

-- A practitioner's name in parts, as FHIR's HumanName and US Core want it;
-- display_name stays what people read. Empty for entries made before.
ALTER TABLE practitioners
    ADD COLUMN given_name text NOT NULL DEFAULT '',
    ADD COLUMN family_name text NOT NULL DEFAULT '';

-- +goose Down
-- Forward-only: released migrations are never reversed.
