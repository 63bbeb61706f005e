package api_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	pb "github.com/careteam/careteam/proto/careteam/v1"
)

// TestHeldTransactionHoldsEventsBack: a transaction that took an event
// cursor and stays open while later writes commit holds every later event
// back, from watchers and lists alike; once it commits, a watcher gets
// everything, in cursor order, nothing missed. Not parallel: the held
// transaction holds back every test's events on the cluster.
func TestHeldTransactionHoldsEventsBack(t *testing.T) {
	tm := newTeam(t)
	first := tm.create(tm.newReferral())
	ctx, cancel := context.WithTimeout(tm.ctx, 30*time.Second)
	defer cancel()
	got := make(chan *pb.Event, 10)
	go tm.as("dr").Watch(ctx, &pb.WatchEventsRequest{}, func(e *pb.Event) error { got <- e; return nil })
	var replayed *pb.Event
	select {
	case replayed = <-got:
	case <-ctx.Done():
		t.Fatal("nothing replayed")
	}
	if replayed.GetReferralState().GetName() != first.GetName() {
		t.Fatalf("replayed %v", replayed)
	}

	// The writer's protocol, stopped between taking its cursor and
	// committing: a copy of the first event, which dr may see.
	held, err := tm.pool.Begin(tm.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = held.Rollback(context.WithoutCancel(tm.ctx)) }()
	var heldCursor int64
	if _, err := held.Exec(tm.ctx, `SELECT pg_current_xact_id()`); err != nil {
		t.Fatal(err)
	}
	if err := held.QueryRow(tm.ctx, `INSERT INTO events (cursor, id, type, resource, patient_id, referral_id, time, audience, payload)
		SELECT nextval('event_cursors'), gen_random_uuid(), type, resource, patient_id, referral_id, time, audience, payload
		FROM events WHERE cursor = $1 RETURNING cursor`, replayed.GetCursor()).Scan(&heldCursor); err != nil {
		t.Fatal(err)
	}
	later := []string{tm.create(tm.newReferral()).GetName(), tm.create(tm.newReferral()).GetName()}

	list, err := tm.as("dr").Events.ListEvents(tm.ctx, &pb.ListEventsRequest{AfterCursor: replayed.GetCursor()})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.GetEvents()) != 0 {
		t.Errorf("ListEvents returned %d events beyond a cursor still open", len(list.GetEvents()))
	}
	if through := list.GetThroughCursor(); through < replayed.GetCursor() || through >= heldCursor {
		t.Errorf("ListEvents claims completeness through cursor %d, with %d still open (it started after %d)",
			through, heldCursor, replayed.GetCursor())
	}
	select {
	case e := <-got:
		t.Fatalf("delivered cursor %d while cursor %d was open", e.GetCursor(), heldCursor)
	default:
	}

	if err := held.Commit(tm.ctx); err != nil {
		t.Fatal(err)
	}
	wantNames := []string{first.GetName(), later[0], later[1]}
	var last int64
	for i, name := range wantNames {
		select {
		case e := <-got:
			if e.GetCursor() <= last || e.GetReferralState().GetName() != name || (i == 0 && e.GetCursor() != heldCursor) {
				t.Fatalf("event %d: cursor %d of %s after %d, want %s (the held event is cursor %d)",
					i, e.GetCursor(), e.GetReferralState().GetName(), last, name, heldCursor)
			}
			last = e.GetCursor()
		case <-ctx.Done():
			t.Fatalf("event %d never came", i)
		}
	}
	if got := listThrough(t, tm.as("dr"), &pb.ListEventsRequest{AfterCursor: replayed.GetCursor()}, last); len(got) != 3 {
		t.Errorf("after the commit, ListEvents returned %d events, want 3", len(got))
	}
}

// TestAuditRecordThatCannotCommit: when a call's audit record cannot be
// written, the call fails, its work is undone, a read returns no data, and
// the trail still verifies.
func TestAuditRecordThatCannotCommit(t *testing.T) {
	t.Parallel()
	tm := newTeam(t)
	for _, sql := range []string{
		`CREATE FUNCTION refuse_record() RETURNS trigger LANGUAGE plpgsql AS $$
		 BEGIN IF NEW.request_id = 'refuse-me' THEN RAISE EXCEPTION 'the disk is full'; END IF; RETURN NEW; END $$`,
		`CREATE TRIGGER refuse_record BEFORE INSERT ON audit_inbox FOR EACH ROW EXECUTE FUNCTION refuse_record()`,
	} {
		if _, err := tm.pool.Exec(tm.ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	refused := metadata.AppendToOutgoingContext(tm.ctx, "x-request-id", "refuse-me")
	before := tm.count(`SELECT count(*) FROM referrals`)
	_, err := tm.as("dr").Referrals.CreateReferral(refused, &pb.CreateReferralRequest{Referral: tm.newReferral()})
	if err == nil {
		t.Fatal("a referral was created without its audit record")
	}
	if c := codeOf(err); c == codes.OK || c == codes.InvalidArgument {
		t.Errorf("CreateReferral answered %v", c)
	}
	if n := tm.count(`SELECT count(*) FROM referrals`); n != before {
		t.Errorf("%d referrals, want %d: the write outlived its record", n, before)
	}
	got, err := tm.as("dr").Patients.GetPatient(refused, &pb.GetPatientRequest{Name: tm.patient.GetName()})
	if err == nil || got.GetPatient() != nil {
		t.Errorf("GetPatient returned %v, %v without its audit record", got, err)
	}
	tm.practitioner(tm.clinic, pb.Role_ROLE_AUDITOR, "auditor")
	v, err := tm.as("auditor").Audit.VerifyAuditLog(tm.ctx, &pb.VerifyAuditLogRequest{})
	if err != nil || !v.GetOk() {
		t.Fatalf("VerifyAuditLog: %v, %v", v, err)
	}
}
