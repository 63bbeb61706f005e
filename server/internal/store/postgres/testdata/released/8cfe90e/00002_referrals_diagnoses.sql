-- +goose Up

-- Diagnoses (FHIR Condition) are recorded by physicians; referrals cite them
-- as their reason.
CREATE TABLE diagnoses (
    id              uuid        PRIMARY KEY,
    patient_id      uuid        NOT NULL REFERENCES patients (id),
    physician_id    uuid        NOT NULL REFERENCES practitioners (id),
    icd10_code      text        NOT NULL,
    display         text        NOT NULL,
    body_sites      text[]      NOT NULL DEFAULT '{}',
    onset_date      date,
    clinical_status text        NOT NULL CHECK (clinical_status IN ('ACTIVE', 'RECURRENCE', 'REMISSION', 'RESOLVED')),
    severity        text        NOT NULL DEFAULT '',
    red_flags       text[]      NOT NULL DEFAULT '{}',
    notes           text        NOT NULL DEFAULT '',
    notes_shareable boolean     NOT NULL DEFAULT false,
    version         bigint      NOT NULL,
    create_time     timestamptz NOT NULL,
    update_time     timestamptz NOT NULL
);
CREATE INDEX diagnoses_patient ON diagnoses (patient_id, id);
CREATE INDEX diagnoses_physician ON diagnoses (physician_id, patient_id);

-- Referrals (FHIR ServiceRequest + Task). The stored state never says
-- EXPIRED: expiry is derived from valid_until at read time and refused at
-- write time, so no background job is needed for correctness.
CREATE TABLE referrals (
    id                     uuid        PRIMARY KEY,
    patient_id             uuid        NOT NULL REFERENCES patients (id),
    referring_physician_id uuid        NOT NULL REFERENCES practitioners (id),
    referring_org_id       uuid        NOT NULL REFERENCES organizations (id),
    target_therapist_id    uuid        REFERENCES practitioners (id),
    target_org_id          uuid        NOT NULL REFERENCES organizations (id),
    reason_diagnoses       uuid[]      NOT NULL DEFAULT '{}',
    reason_codes           text[]      NOT NULL DEFAULT '{}',
    clinical_notes         text        NOT NULL DEFAULT '',
    priority               text        NOT NULL CHECK (priority IN ('ROUTINE', 'URGENT')),
    requested_techniques   text[]      NOT NULL DEFAULT '{}',
    authorized_visits      int         NOT NULL CHECK (authorized_visits BETWEEN 1 AND 52),
    used_visits            int         NOT NULL DEFAULT 0,
    sessions_started       int         NOT NULL DEFAULT 0,
    valid_until            timestamptz NOT NULL,
    required_specialties   text[]      NOT NULL DEFAULT '{}',
    state                  text        NOT NULL CHECK (state IN ('DRAFT', 'SUBMITTED', 'AWAITING_INFO', 'ACCEPTED', 'DECLINED', 'IN_PROGRESS', 'ON_HOLD', 'COMPLETED', 'CANCELLED')),
    held_from              text        NOT NULL DEFAULT '',
    decline_reason         text        NOT NULL DEFAULT '',
    decline_text           text        NOT NULL DEFAULT '',
    cancel_reason          text        NOT NULL DEFAULT '',
    discharge_summary      text        NOT NULL DEFAULT '',
    attention_required     boolean     NOT NULL DEFAULT false,
    submit_time            timestamptz,
    ack_elapsed            interval    NOT NULL DEFAULT '0',
    ack_due                timestamptz,
    version                bigint      NOT NULL,
    create_time            timestamptz NOT NULL,
    update_time            timestamptz NOT NULL,
    -- A started session uses one visit, exactly once.
    CHECK (used_visits BETWEEN 0 AND authorized_visits)
);
-- One index per way a worklist is filtered, each ending in id so that the
-- newest-first keyset page is read straight off the index.
CREATE INDEX referrals_patient ON referrals (patient_id, id);
CREATE INDEX referrals_referring_physician ON referrals (referring_physician_id, id);
CREATE INDEX referrals_referring_org ON referrals (referring_org_id, id);
CREATE INDEX referrals_target_org ON referrals (target_org_id, id);
CREATE INDEX referrals_target_therapist ON referrals (target_therapist_id, id);
CREATE INDEX referrals_overdue ON referrals (ack_due) WHERE state = 'SUBMITTED';

CREATE TABLE referral_transitions (
    referral_id uuid        NOT NULL REFERENCES referrals (id),
    seq         int         NOT NULL,
    from_state  text        NOT NULL,
    to_state    text        NOT NULL,
    actor_id    uuid,
    time        timestamptz NOT NULL,
    reason      text        NOT NULL DEFAULT '',
    PRIMARY KEY (referral_id, seq)
);

CREATE TABLE referral_questions (
    referral_id uuid        NOT NULL REFERENCES referrals (id),
    seq         int         NOT NULL,
    question    text        NOT NULL,
    asked_by    uuid        NOT NULL,
    ask_time    timestamptz NOT NULL,
    answer      text        NOT NULL DEFAULT '',
    answered_by uuid,
    answer_time timestamptz,
    PRIMARY KEY (referral_id, seq)
);

-- +goose Down
-- Forward-only: released migrations are never reversed.
