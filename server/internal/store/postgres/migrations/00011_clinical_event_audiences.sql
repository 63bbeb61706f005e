-- +goose Up

-- Events of diagnoses and clearances reach whoever may read them, and no
-- one else: a therapist only through a referral assigned to them. Events
-- written before were addressed to every member of the registering
-- organization ("o:"), to a practice's therapists for its unassigned
-- referrals ("t:") and to whoever asked for a clearance; they are
-- readdressed as new ones are: to the registering organization's members
-- but its therapists ("s:"), without the practice's therapists, and to the
-- requester only when they are the physician or a therapist a referral of
-- the patient is assigned to.
UPDATE events e SET audience = ARRAY(
    SELECT DISTINCT CASE WHEN a LIKE 'o:%' THEN 's:' || substr(a, 3) ELSE a END
    FROM unnest(e.audience) AS a
    WHERE a NOT LIKE 't:%'
      AND NOT (e.type LIKE 'CLEARANCE\_%'
               AND a = 'p:' || (e.payload -> 'Clearance' ->> 'RequestedBy')
               AND a <> 'p:' || (e.payload -> 'Clearance' ->> 'PhysicianID')
               AND NOT EXISTS (SELECT 1 FROM referrals r
                               WHERE r.patient_id = e.patient_id AND a = 'p:' || r.target_therapist_id::text)))
WHERE e.type LIKE 'DIAGNOSIS\_%' OR e.type LIKE 'CLEARANCE\_%';

-- +goose Down
-- Forward-only: released migrations are never reversed.
