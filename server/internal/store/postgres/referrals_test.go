package postgres_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/careteam/careteam/server/internal/careteam"
	"github.com/careteam/careteam/server/internal/store/postgres"
	"github.com/careteam/careteam/server/internal/testdb"
)

// storedReferral is what a scope and a filter decide on, read plainly.
type storedReferral struct {
	id, physician, referringOrg, therapist, targetOrg uuid.UUID
	state                                             careteam.ReferralState
	ackDue, validUntil                                *time.Time
}

// visible is the visibility rule of a scope, written as plainly as it is
// documented, against which the store's indexed union of branches is
// checked.
func (r storedReferral) visible(s careteam.ReferralScope) bool {
	switch {
	case s.Any:
		return true
	case s.ReferringPhysician != uuid.Nil && r.physician == s.ReferringPhysician:
		return true
	case s.ReferralOrg != uuid.Nil && (r.referringOrg == s.ReferralOrg || r.targetOrg == s.ReferralOrg):
		return true
	case s.Therapist != uuid.Nil && (r.therapist == s.Therapist || (r.therapist == uuid.Nil && r.targetOrg == s.TherapistOrg)):
		return true
	}
	return false
}

// matches is the filter's rule, as plainly.
func (r storedReferral) matches(f careteam.ReferralFilter) bool {
	state := r.state
	if slices.Contains(careteam.ExpirableStates, state) && !f.Now.Before(*r.validUntil) {
		state = careteam.ReferralExpired
	}
	if len(f.States) > 0 && !slices.Contains(f.States, state) {
		return false
	}
	if f.TargetTherapistID != uuid.Nil && r.therapist != f.TargetTherapistID {
		return false
	}
	if f.Overdue && (r.state != careteam.ReferralSubmitted || r.ackDue == nil || r.ackDue.After(f.Now) || !r.validUntil.After(f.Now)) {
		return false
	}
	return true
}

// TestListReferralsScopesAndPages: over thousands of referrals of many
// parties, every caller's scope and worklist filter, paged by keyset at an
// odd page size, lists exactly the referrals the plain rule selects,
// newest first, each once.
func TestListReferralsScopesAndPages(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := testdb.New(t)
	d := loadReferrals(t, pool, 3000)
	store := postgres.New(pool, quiet)

	rows, err := pool.Query(ctx, `SELECT id, referring_physician_id, referring_org_id, coalesce(target_therapist_id, '00000000-0000-0000-0000-000000000000'),
		target_org_id, state, ack_due, valid_until FROM referrals`)
	if err != nil {
		t.Fatal(err)
	}
	var all []storedReferral
	for rows.Next() {
		var r storedReferral
		var validUntil time.Time
		if err := rows.Scan(&r.id, &r.physician, &r.referringOrg, &r.therapist, &r.targetOrg, &r.state, &r.ackDue, &validUntil); err != nil {
			t.Fatal(err)
		}
		r.validUntil = &validUntil
		all = append(all, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	callers := d.callers()
	callers = append(callers, benchCaller{name: "physician", scope: careteam.ReferralScope{ReferringPhysician: all[0].physician}})
	for _, c := range callers {
		for _, shape := range listShapes(d, c) {
			t.Run(c.name+"/"+shape.name, func(t *testing.T) {
				var want []uuid.UUID
				for _, r := range all {
					if r.visible(c.scope) && r.matches(shape.filter) {
						want = append(want, r.id)
					}
				}
				slices.SortFunc(want, func(a, b uuid.UUID) int { return -slices.Compare(a[:], b[:]) })
				got := listAllReferrals(t, ctx, store, c.scope, shape.filter, 97)
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("%d listed, %d visible (-rule +store):\n%s", len(got), len(want), diff)
				}
			})
		}
	}
}

// listAllReferrals pages through ListReferrals, each page after the last
// id of the one before, as the API's page tokens do.
func listAllReferrals(t *testing.T, ctx context.Context, store *postgres.Store, scope careteam.ReferralScope, f careteam.ReferralFilter, size int) []uuid.UUID {
	t.Helper()
	var out []uuid.UUID
	page := careteam.Page{Size: size}
	for {
		var rows []*careteam.Referral
		if err := store.Read(ctx, func(tx careteam.Tx) (err error) {
			rows, err = tx.ListReferrals(ctx, scope, f, page)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		more := len(rows) > size
		if more {
			rows = rows[:size]
		}
		for _, r := range rows {
			out = append(out, r.ID)
		}
		if !more {
			return out
		}
		page.After = rows[len(rows)-1].ID
	}
}

// TestGateLocksSerializeARevocation: while a session start holds the gate's
// locks, a revocation of the clearance it judged waits for it; the
// locks are the store's to take, and a short lock timeout shows the wait.
func TestGateLocksSerializeARevocation(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := testdb.New(t)
	d := loadReferrals(t, pool, 200)
	store := postgres.New(pool, quiet)
	// A referral of the therapist's, and a clearance of its patient.
	var referral uuid.UUID
	clearance := uuid.New()
	if err := pool.QueryRow(ctx, `
		WITH r AS (SELECT id, patient_id, referring_physician_id FROM referrals WHERE target_therapist_id = $1 LIMIT 1),
		     c AS (INSERT INTO clearances (id, patient_id, physician_id, decision, status, valid_from, valid_until, issue_time,
		                                   version, create_time, update_time)
		           SELECT $2, patient_id, referring_physician_id, 'CLEARED', 'ACTIVE', now() - interval '1 day',
		                  now() + interval '1 year', now(), 1, now(), now() FROM r)
		SELECT id FROM r`, d.therapist.id, clearance).Scan(&referral); err != nil {
		t.Fatal(err)
	}
	start := make(chan struct{})
	release := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- store.InTx(ctx, func(tx careteam.Tx) error {
			if _, err := tx.GateSnapshot(ctx, referral, careteam.ReferralScope{Any: true}, d.therapist.id, time.Now(), true); err != nil {
				return err
			}
			close(start)
			<-release
			return nil
		})
	}()
	<-start
	revoke := func() error {
		tx, err := pool.Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(context.WithoutCancel(ctx))
		if _, err := tx.Exec(ctx, `SET LOCAL lock_timeout = '300ms'`); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE clearances SET revoke_reason = 'x' WHERE id = $1`, clearance)
		return err
	}
	var pgErr *pgconn.PgError
	if err := revoke(); !errors.As(err, &pgErr) || pgErr.Code != "55P03" {
		t.Errorf("a revocation while a start held the gate's locks: %v, want a lock timeout (55P03)", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := revoke(); err != nil {
		t.Errorf("the revocation after the start committed: %v", err)
	}
}
