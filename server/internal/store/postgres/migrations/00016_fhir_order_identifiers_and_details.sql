-- +goose Up

-- An EHR may send an order's identifiers in any order, and add one later:
-- every identifier of an imported ServiceRequest now finds its referral, so
-- a referral holds as many rows as it has identifiers (still unique within
-- the importing organization). The rows already here are each referral's
-- one key and stay as they are, first (ordinal 0); ordinal keeps the order
-- the ServiceRequest listed them in, for the export.
ALTER TABLE fhir_imports DROP CONSTRAINT fhir_imports_referral_id_key;
ALTER TABLE fhir_imports ADD COLUMN ordinal int NOT NULL DEFAULT 0;
CREATE INDEX fhir_imports_referral ON fhir_imports (referral_id, create_time, ordinal);
-- A FHIR search by identifier looks across organizations.
CREATE INDEX fhir_imports_identifier ON fhir_imports (system, value);

-- What an imported order says that careteam used to drop:
-- reason_texts: reasons given in words only (ServiceRequest.reasonCode.text);
-- patient_instruction: the physician's instructions to the patient;
-- service_codes, service_text: what is ordered (ServiceRequest.code, such as
-- CPT 97124), codings as [{"system", "code", "display"}];
-- valid_from: when the order becomes valid (occurrencePeriod.start); the
-- session gate starts no session before it.
ALTER TABLE referrals
    ADD COLUMN reason_texts text[] NOT NULL DEFAULT '{}',
    ADD COLUMN patient_instruction text NOT NULL DEFAULT '',
    ADD COLUMN service_codes jsonb NOT NULL DEFAULT '[]',
    ADD COLUMN service_text text NOT NULL DEFAULT '',
    ADD COLUMN valid_from timestamptz;

-- A diagnosis's categories (Condition.category), such as
-- problem-list-item or encounter-diagnosis, codings as above.
ALTER TABLE diagnoses ADD COLUMN categories jsonb NOT NULL DEFAULT '[]';

-- +goose Down
-- Forward-only: released migrations are never reversed.
