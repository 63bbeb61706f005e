-- +goose Up

-- One row per idempotent write (AIP-155): the first call's result is what
-- a retry with the same request id gets back.
CREATE TABLE request_ids (
    subject      text        NOT NULL,
    method       text        NOT NULL,
    request_id   uuid        NOT NULL,
    request_hash bytea       NOT NULL,
    resource_id  uuid,
    create_time  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subject, method, request_id)
);

CREATE TABLE organizations (
    id           uuid        PRIMARY KEY,
    display_name text        NOT NULL,
    kind         text        NOT NULL CHECK (kind IN ('PHYSICIAN_PRACTICE', 'MASSAGE_PRACTICE')),
    identifiers  jsonb       NOT NULL DEFAULT '[]',
    version      bigint      NOT NULL,
    create_time  timestamptz NOT NULL,
    update_time  timestamptz NOT NULL
);

CREATE TABLE practitioners (
    id                   uuid        PRIMARY KEY,
    organization_id      uuid        NOT NULL REFERENCES organizations (id),
    display_name         text        NOT NULL,
    role                 text        NOT NULL CHECK (role IN ('PHYSICIAN', 'MASSAGE_THERAPIST', 'COORDINATOR', 'ADMIN', 'AUDITOR')),
    subject              text        NOT NULL CONSTRAINT practitioners_subject_key UNIQUE,
    licence_number       text,
    licence_jurisdiction text,
    licence_expire_date  date,
    specialties          text[]      NOT NULL DEFAULT '{}',
    active               boolean     NOT NULL,
    version              bigint      NOT NULL,
    create_time          timestamptz NOT NULL,
    update_time          timestamptz NOT NULL,
    CHECK (role = 'MASSAGE_THERAPIST' OR specialties = '{}'),
    CHECK (role <> 'MASSAGE_THERAPIST' OR licence_expire_date IS NOT NULL)
);
CREATE INDEX practitioners_organization ON practitioners (organization_id, id);
CREATE INDEX practitioners_specialties ON practitioners USING gin (specialties);

-- Identifiers such as an NPI name one practitioner across the directory.
CREATE TABLE practitioner_identifiers (
    system          text NOT NULL,
    value           text NOT NULL,
    practitioner_id uuid NOT NULL REFERENCES practitioners (id) ON DELETE CASCADE,
    ord             int  NOT NULL,
    CONSTRAINT practitioner_identifiers_key PRIMARY KEY (system, value)
);
CREATE INDEX practitioner_identifiers_practitioner ON practitioner_identifiers (practitioner_id);

CREATE TABLE patients (
    id              uuid        PRIMARY KEY,
    organization_id uuid        NOT NULL REFERENCES organizations (id),
    registered_by   uuid        REFERENCES practitioners (id),
    given_name      text        NOT NULL,
    family_name     text        NOT NULL,
    birth_date      date        NOT NULL,
    gender          text        NOT NULL CHECK (gender IN ('MALE', 'FEMALE', 'OTHER', 'UNKNOWN')),
    version         bigint      NOT NULL,
    create_time     timestamptz NOT NULL,
    update_time     timestamptz NOT NULL
);
CREATE INDEX patients_organization ON patients (organization_id, id);
CREATE INDEX patients_family_name ON patients (lower(family_name) text_pattern_ops);

-- A patient identifier is unique within the registering organization, so an
-- EHR can create-or-find by it, and nothing tells another organization that
-- it is known here.
CREATE TABLE patient_identifiers (
    organization_id uuid NOT NULL,
    system          text NOT NULL,
    value           text NOT NULL,
    patient_id      uuid NOT NULL REFERENCES patients (id) ON DELETE CASCADE,
    ord             int  NOT NULL,
    CONSTRAINT patient_identifiers_key PRIMARY KEY (organization_id, system, value)
);
CREATE INDEX patient_identifiers_lookup ON patient_identifiers (system, value);
CREATE INDEX patient_identifiers_patient ON patient_identifiers (patient_id);

-- +goose Down
-- Forward-only: released migrations are never reversed.
