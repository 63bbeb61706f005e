-- +goose Up

-- A red flag on a patient's record: carried by an active diagnosis, or
-- reported by the therapist who suspended a clearance. While it stands
-- (close_time is null) the gate admits a session only under a clearance
-- that evaluated it.
CREATE TABLE red_flag_findings (
    id           uuid        PRIMARY KEY,
    patient_id   uuid        NOT NULL REFERENCES patients (id),
    flag         text        NOT NULL,
    diagnosis_id uuid        REFERENCES diagnoses (id),
    clearance_id uuid        REFERENCES clearances (id),
    reported_by  uuid        REFERENCES practitioners (id),
    record_time  timestamptz NOT NULL,
    close_time   timestamptz,
    CHECK ((diagnosis_id IS NULL) <> (clearance_id IS NULL))
);
CREATE INDEX red_flag_findings_open ON red_flag_findings (patient_id) WHERE close_time IS NULL;

-- The clearances that attest a finding was evaluated.
CREATE TABLE red_flag_evaluations (
    finding_id   uuid NOT NULL REFERENCES red_flag_findings (id),
    clearance_id uuid NOT NULL REFERENCES clearances (id),
    PRIMARY KEY (finding_id, clearance_id)
);

-- A clearance whose window opens later is SCHEDULED until then; the one it
-- replaces stays in force and records, in supersede_time, when it is
-- replaced.
ALTER TABLE clearances DROP CONSTRAINT clearances_status_check;
ALTER TABLE clearances ADD CONSTRAINT clearances_status_check
    CHECK (status IN ('REQUESTED', 'SCHEDULED', 'ACTIVE', 'SUSPENDED', 'REVOKED', 'SUPERSEDED'));
ALTER TABLE clearances ADD COLUMN supersede_time timestamptz;
UPDATE clearances SET supersede_time = update_time WHERE status = 'SUPERSEDED';

-- Clearances issued before this migration with a window still to open
-- were put in force at once; they are scheduled now, and the one each
-- superseded is in force again until the window opens.
UPDATE clearances o SET status = 'ACTIVE', supersede_time = n.valid_from
    FROM clearances n
    WHERE o.superseded_by = n.id AND o.status = 'SUPERSEDED'
      AND n.status = 'ACTIVE' AND n.valid_from > now() AND o.valid_until > now();
UPDATE clearances SET status = 'SCHEDULED' WHERE status = 'ACTIVE' AND valid_from > now();

-- At most one scheduled clearance per scope; the sweep finds those whose
-- window opened.
CREATE UNIQUE INDEX clearances_scheduled ON clearances (patient_id, coalesce(referral_id, '00000000-0000-0000-0000-000000000000'))
    WHERE status = 'SCHEDULED';
CREATE INDEX clearances_opening ON clearances (valid_from) WHERE status = 'SCHEDULED';

-- Diagnoses recorded before there was one table of coded red flags carry
-- them now. The list is this table as it stood at this migration.
UPDATE diagnoses d SET red_flags = ARRAY(SELECT DISTINCT unnest(d.red_flags || t.flags) ORDER BY 1)
    FROM (VALUES
        ('G83.4', ARRAY['CAUDA_EQUINA_SYMPTOMS']),
        ('M80', ARRAY['OSTEOPOROSIS', 'SUSPECTED_FRACTURE']),
        ('M81', ARRAY['OSTEOPOROSIS']),
        ('M48.5', ARRAY['SUSPECTED_FRACTURE']),
        ('S12', ARRAY['SUSPECTED_FRACTURE', 'SIGNIFICANT_TRAUMA']),
        ('S22.0', ARRAY['SUSPECTED_FRACTURE', 'SIGNIFICANT_TRAUMA']),
        ('S32.0', ARRAY['SUSPECTED_FRACTURE', 'SIGNIFICANT_TRAUMA']),
        ('C41.2', ARRAY['MALIGNANCY_HISTORY']),
        ('C79.5', ARRAY['MALIGNANCY_HISTORY']),
        ('Z85', ARRAY['MALIGNANCY_HISTORY']),
        ('M46.2', ARRAY['INFECTION_SIGNS']),
        ('M46.3', ARRAY['INFECTION_SIGNS']),
        ('M46.4', ARRAY['INFECTION_SIGNS']),
        ('R63.4', ARRAY['UNEXPLAINED_WEIGHT_LOSS']),
        ('I82.4', ARRAY['DEEP_VEIN_THROMBOSIS']),
        ('Z79.01', ARRAY['ANTICOAGULANT_THERAPY'])
    ) AS t (prefix, flags)
    WHERE (d.icd10_code = t.prefix OR d.icd10_code LIKE t.prefix || '%' AND (t.prefix LIKE '%.%' OR d.icd10_code LIKE t.prefix || '.%'))
      AND NOT d.red_flags @> t.flags;

-- The red flags standing on each record: those of active diagnoses, and
-- those therapists reported on clearances still suspended.
INSERT INTO red_flag_findings (id, patient_id, flag, diagnosis_id, reported_by, record_time)
    SELECT gen_random_uuid(), d.patient_id, f.flag, d.id, d.physician_id, d.update_time
    FROM diagnoses d, unnest(d.red_flags) AS f (flag)
    WHERE d.clinical_status IN ('ACTIVE', 'RECURRENCE');
INSERT INTO red_flag_findings (id, patient_id, flag, clearance_id, reported_by, record_time)
    SELECT gen_random_uuid(), c.patient_id, c.suspension_red_flag, c.id, c.suspended_by, c.suspend_time
    FROM clearances c
    WHERE c.status = 'SUSPENDED' AND c.suspension_red_flag <> '';
-- A clearance issued after a finding was recorded, listing its flag,
-- evaluated it.
INSERT INTO red_flag_evaluations (finding_id, clearance_id)
    SELECT f.id, c.id FROM red_flag_findings f
    JOIN clearances c ON c.patient_id = f.patient_id
    WHERE c.status IN ('SCHEDULED', 'ACTIVE', 'SUSPENDED') AND c.evaluated_red_flags @> ARRAY[f.flag]
      AND c.issue_time >= f.record_time;

-- Organizations the directory's administrator trusts to credential their
-- own physicians or therapists.
ALTER TABLE organizations ADD COLUMN credentials_clinicians boolean NOT NULL DEFAULT false;

-- A clinical role fits one kind of organization only; practitioners who
-- hold one elsewhere no longer act.
UPDATE practitioners p SET active = false, version = p.version + 1, update_time = now()
    FROM organizations o
    WHERE o.id = p.organization_id AND p.active
      AND ((p.role = 'PHYSICIAN' AND o.kind <> 'PHYSICIAN_PRACTICE')
        OR (p.role = 'MASSAGE_THERAPIST' AND o.kind <> 'MASSAGE_PRACTICE'));

-- +goose Down
-- Forward-only: released migrations are never reversed.
