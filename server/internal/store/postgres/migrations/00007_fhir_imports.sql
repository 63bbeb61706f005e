-- +goose Up

-- FHIR ServiceRequests imported as referrals, by the identifier the EHR gave
-- them, so that importing the same ServiceRequest again finds its referral.
-- The identifier is unique within the importing physician's organization,
-- as a patient identifier is.
CREATE TABLE fhir_imports (
    organization_id uuid        NOT NULL REFERENCES organizations (id),
    system          text        NOT NULL,
    value           text        NOT NULL,
    -- Deferred: an import claims its identifier before it writes the
    -- referral, so that a concurrent import of the same one waits.
    referral_id     uuid        NOT NULL UNIQUE REFERENCES referrals (id) DEFERRABLE INITIALLY DEFERRED,
    create_time     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, system, value)
);

-- A ServiceRequest's performer may name a practice by identifier.
CREATE INDEX organizations_identifiers ON organizations USING gin (identifiers jsonb_path_ops);

-- +goose Down
-- Forward-only: released migrations are never reversed.
