-- +goose Up

-- A patient's informed consent to massage, held by the practice that
-- recorded it.
CREATE TABLE consents (
    id              uuid        PRIMARY KEY,
    patient_id      uuid        NOT NULL REFERENCES patients (id),
    organization_id uuid        NOT NULL REFERENCES organizations (id),
    recorded_by     uuid        NOT NULL REFERENCES practitioners (id),
    form_version    text        NOT NULL,
    signed_date     date        NOT NULL,
    signer          text        NOT NULL CHECK (signer IN ('PATIENT', 'GUARDIAN')),
    guardian_name   text        NOT NULL DEFAULT '',
    create_time     timestamptz NOT NULL
);
CREATE INDEX consents_patient ON consents (patient_id, organization_id, signed_date);

-- Clearances: a physician's decision, or (REQUESTED) a request for one. The
-- stored status never says EXPIRED: that is derived from valid_until.
CREATE TABLE clearances (
    id                     uuid        PRIMARY KEY,
    patient_id             uuid        NOT NULL REFERENCES patients (id),
    referral_id            uuid        REFERENCES referrals (id),
    physician_id           uuid        NOT NULL REFERENCES practitioners (id),
    decision               text        NOT NULL DEFAULT '' CHECK (decision IN ('', 'CLEARED', 'CLEARED_WITH_PRECAUTIONS', 'NOT_CLEARED')),
    status                 text        NOT NULL CHECK (status IN ('REQUESTED', 'ACTIVE', 'SUSPENDED', 'REVOKED', 'SUPERSEDED')),
    valid_from             timestamptz,
    valid_until            timestamptz,
    precautions            jsonb       NOT NULL DEFAULT '[]',
    contraindicated        text[]      NOT NULL DEFAULT '{}',
    evaluated_red_flags    text[]      NOT NULL DEFAULT '{}',
    notes                  text        NOT NULL DEFAULT '',
    requested_by           uuid        REFERENCES practitioners (id),
    question               text        NOT NULL DEFAULT '',
    issue_time             timestamptz,
    suspended_by           uuid        REFERENCES practitioners (id),
    suspension_red_flag    text        NOT NULL DEFAULT '',
    suspension_observation text        NOT NULL DEFAULT '',
    suspend_time           timestamptz,
    revoked_by             uuid        REFERENCES practitioners (id),
    revoke_reason          text        NOT NULL DEFAULT '',
    revoke_time            timestamptz,
    -- Deferred: a clearance is superseded before its successor is written.
    superseded_by          uuid        REFERENCES clearances (id) DEFERRABLE INITIALLY DEFERRED,
    version                bigint      NOT NULL,
    create_time            timestamptz NOT NULL,
    update_time            timestamptz NOT NULL,
    CHECK (status = 'REQUESTED' OR (decision <> '' AND valid_from IS NOT NULL AND valid_until > valid_from))
);
CREATE INDEX clearances_patient ON clearances (patient_id, id);
CREATE INDEX clearances_referral ON clearances (referral_id) WHERE referral_id IS NOT NULL;
CREATE INDEX clearances_physician ON clearances (physician_id, patient_id);
-- At most one clearance in force (ACTIVE or SUSPENDED) per patient and
-- scope (one referral, or every referral when referral_id is null): a new
-- one supersedes it.
CREATE UNIQUE INDEX clearances_current ON clearances (patient_id, coalesce(referral_id, '00000000-0000-0000-0000-000000000000'))
    WHERE status IN ('ACTIVE', 'SUSPENDED');

-- Sessions (FHIR Encounter) with their SOAP note.
CREATE TABLE sessions (
    id                   uuid        PRIMARY KEY,
    referral_id          uuid        NOT NULL REFERENCES referrals (id),
    patient_id           uuid        NOT NULL REFERENCES patients (id),
    therapist_id         uuid        NOT NULL REFERENCES practitioners (id),
    clearance_id         uuid        NOT NULL REFERENCES clearances (id),
    state                text        NOT NULL CHECK (state IN ('STARTED', 'COMPLETED', 'CANCELLED', 'NO_SHOW')),
    planned              jsonb       NOT NULL,
    scheduled_start_time timestamptz NOT NULL,
    start_time           timestamptz NOT NULL,
    visit_number         int         NOT NULL,
    cancel_reason        text        NOT NULL DEFAULT '',
    cancel_text          text        NOT NULL DEFAULT '',
    note_status          text        NOT NULL DEFAULT 'DRAFT' CHECK (note_status IN ('DRAFT', 'SIGNED')),
    subjective           text        NOT NULL DEFAULT '',
    objective            text        NOT NULL DEFAULT '',
    assessment           text        NOT NULL DEFAULT '',
    plan                 text        NOT NULL DEFAULT '',
    pain_before          int         CHECK (pain_before BETWEEN 0 AND 10),
    pain_after           int         CHECK (pain_after BETWEEN 0 AND 10),
    oswestry_index       int         CHECK (oswestry_index BETWEEN 0 AND 100),
    neck_disability_index int        CHECK (neck_disability_index BETWEEN 0 AND 100),
    range_of_motion      text        NOT NULL DEFAULT '',
    treatments           jsonb       NOT NULL DEFAULT '[]',
    duration_minutes     int         NOT NULL DEFAULT 0,
    adverse_description  text        NOT NULL DEFAULT '',
    adverse_severity     text        NOT NULL DEFAULT '',
    deviation_reason     text        NOT NULL DEFAULT '',
    signed_by            uuid        REFERENCES practitioners (id),
    sign_time            timestamptz,
    content_sha256       text        NOT NULL DEFAULT '',
    version              bigint      NOT NULL,
    create_time          timestamptz NOT NULL,
    update_time          timestamptz NOT NULL
);
CREATE INDEX sessions_referral ON sessions (referral_id, id);
CREATE UNIQUE INDEX sessions_visit ON sessions (referral_id, visit_number);
CREATE INDEX sessions_patient ON sessions (patient_id, id);
CREATE INDEX sessions_therapist ON sessions (therapist_id, id);

-- +goose Down
-- Forward-only: released migrations are never reversed.
