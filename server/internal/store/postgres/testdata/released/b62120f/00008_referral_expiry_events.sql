-- +goose Up

-- A referral expires without a write (its state is derived when it is
-- read), so the REFERRAL_EXPIRED event is written by a sweep; this marks the
-- referrals whose expiry an event has announced, so each is announced once.
ALTER TABLE referrals ADD COLUMN expiry_announced boolean NOT NULL DEFAULT false;

-- The sweep's worklist: referrals in a state that expires, not yet
-- announced, by the end of their validity. The states are the domain's
-- ExpirableStates.
CREATE INDEX referrals_expiry_due ON referrals (valid_until)
    WHERE NOT expiry_announced
      AND state IN ('DRAFT', 'SUBMITTED', 'AWAITING_INFO', 'ACCEPTED', 'DECLINED', 'IN_PROGRESS', 'ON_HOLD');

-- +goose Down
-- Forward-only: released migrations are never reversed.
