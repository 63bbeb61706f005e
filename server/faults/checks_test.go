package faults

import (
	"context"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/careteam/careteam/client"
	pb "github.com/careteam/careteam/proto/careteam/v1"
)

// connect opens a superuser connection to the cluster's careteam database,
// for checks straight in the tables and for holding locks.
func connect(t *testing.T, ctx context.Context, c *cluster) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(ctx, c.url())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// createdBy names the table of the resource each write method creates or
// changes.
var createdBy = map[string]string{
	"CreatePatient":  "patients",
	"CreateReferral": "referrals",
	"SubmitReferral": "referrals",
	"StartSession":   "sessions",
}

// checkLedger checks that every acknowledged write is in the database
// exactly once: its request_id is recorded against the very resource the
// caller was given, that resource exists, and no resource exists twice
// (every create carries a request_id, so each patient, referral and
// session has one request row of its own).
func checkLedger(t *testing.T, ctx context.Context, conn *pgx.Conn, l *ledger) {
	t.Helper()
	acks, _, _ := l.snapshot()
	if len(acks) == 0 {
		t.Fatal("the load had no write acknowledged")
	}
	rows, err := conn.Query(ctx, `SELECT subject, method, request_id::text, resource_id FROM request_ids`)
	if err != nil {
		t.Fatal(err)
	}
	recorded := map[requestKey]*uuid.UUID{}
	for rows.Next() {
		var k requestKey
		var res *uuid.UUID
		if err := rows.Scan(&k.subject, &k.method, &k.requestID, &res); err != nil {
			t.Fatal(err)
		}
		recorded[k] = res
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	exists := map[string]map[uuid.UUID]string{} // table -> id -> state
	for _, table := range []string{"patients", "referrals", "sessions"} {
		exists[table] = map[uuid.UUID]string{}
		stateCol := "''"
		if table != "patients" {
			stateCol = "state"
		}
		rows, err := conn.Query(ctx, `SELECT id, `+stateCol+` FROM `+table)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var id uuid.UUID
			var state string
			if err := rows.Scan(&id, &state); err != nil {
				t.Fatal(err)
			}
			exists[table][id] = state
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
	}
	missing := 0
	for k, name := range acks {
		id, err := resourceID(name)
		if err != nil {
			t.Errorf("%s %s acknowledged with %v", k.method, k.requestID, err)
			continue
		}
		res, ok := recorded[k]
		switch {
		case !ok:
			t.Errorf("acknowledged %s %s (%s) has no request_ids row", k.method, k.requestID, name)
			missing++
		case res == nil:
			t.Errorf("acknowledged %s %s (%s): its request_ids row names no resource", k.method, k.requestID, name)
		case *res != id:
			t.Errorf("acknowledged %s %s answered %s, but request_ids names %s", k.method, k.requestID, name, res)
		}
		state, ok := exists[createdBy[k.method]][id]
		if !ok {
			t.Errorf("acknowledged %s %s: %s does not exist", k.method, k.requestID, name)
			missing++
		}
		if k.method == "SubmitReferral" && state == "DRAFT" {
			t.Errorf("acknowledged %s %s: %s is still DRAFT", k.method, k.requestID, name)
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d acknowledged writes are missing", missing, len(acks))
	}

	// No resource twice: as many resources as create requests, each
	// named by exactly one.
	for method, table := range map[string]string{"CreatePatient": "patients", "CreateReferral": "referrals", "StartSession": "sessions"} {
		var requests, distinct, resources int
		if err := conn.QueryRow(ctx, `SELECT count(*), count(DISTINCT resource_id), (SELECT count(*) FROM `+table+`)
			FROM request_ids WHERE method = $1`, method).Scan(&requests, &distinct, &resources); err != nil {
			t.Fatal(err)
		}
		if requests != distinct || requests != resources {
			t.Errorf("%s: %d requests name %d distinct resources, and %d exist: a write was applied twice or without its request",
				method, requests, distinct, resources)
		}
	}
	// Every submitted referral was submitted by exactly one request.
	var submitRequests, submitted int
	if err := conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM request_ids WHERE method = 'SubmitReferral'),
		(SELECT count(*) FROM referrals WHERE state <> 'DRAFT')`).Scan(&submitRequests, &submitted); err != nil {
		t.Fatal(err)
	}
	if submitRequests != submitted {
		t.Errorf("%d submit requests, %d referrals submitted", submitRequests, submitted)
	}
}

// checkConsistency checks that nothing is half written: every write's
// rows, event and audit record committed together or not at all.
func checkConsistency(t *testing.T, ctx context.Context, conn *pgx.Conn) {
	t.Helper()
	zero := []struct{ what, sql string }{
		{"idempotency keys claimed but never finished", `SELECT count(*) FROM request_ids WHERE resource_id IS NULL`},
		{"referrals without exactly one REFERRAL_CREATED event", `SELECT count(*) FROM referrals r
			WHERE (SELECT count(*) FROM events e WHERE e.referral_id = r.id AND e.type = 'REFERRAL_CREATED') <> 1`},
		{"submitted referrals without exactly one REFERRAL_SUBMITTED event", `SELECT count(*) FROM referrals r
			WHERE (SELECT count(*) FROM events e WHERE e.referral_id = r.id AND e.type = 'REFERRAL_SUBMITTED')
				<> CASE WHEN r.state = 'DRAFT' THEN 0 ELSE 1 END`},
		{"referrals whose history does not match their state", `SELECT count(*) FROM referrals r
			WHERE (SELECT count(*) FROM referral_transitions t WHERE t.referral_id = r.id AND t.to_state = 'SUBMITTED')
				<> CASE WHEN r.state = 'DRAFT' THEN 0 ELSE 1 END`},
		{"sessions without exactly one SESSION_STARTED event", `SELECT count(*) FROM sessions s
			WHERE (SELECT count(*) FROM events e WHERE e.resource = 'sessions/' || s.id AND e.type = 'SESSION_STARTED') <> 1`},
		{"referrals whose visit counts differ from their sessions", `SELECT count(*) FROM (
			SELECT r.id FROM referrals r LEFT JOIN sessions s ON s.referral_id = r.id
			GROUP BY r.id, r.sessions_started, r.used_visits
			HAVING r.sessions_started <> count(s.id) OR r.used_visits <> count(s.id)
				OR coalesce(max(s.visit_number), 0) <> count(s.id)) x`},
		{"events of referrals that do not exist", `SELECT count(*) FROM events e
			WHERE e.referral_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM referrals r WHERE r.id = e.referral_id)`},
		{"events of sessions that do not exist", `SELECT count(*) FROM events e
			WHERE e.resource LIKE 'sessions/%' AND NOT EXISTS (SELECT 1 FROM sessions s WHERE 'sessions/' || s.id = e.resource)`},
		{"patients without the OK audit record of their creation", `SELECT count(*) FROM patients p WHERE NOT EXISTS (
			SELECT 1 FROM ` + auditRecords + ` a WHERE a.method = '/careteam.v1.PatientService/CreatePatient'
				AND a.outcome = 'OK' AND 'patients/' || p.id = ANY(a.resources))`},
		{"referrals without the OK audit record of their creation", `SELECT count(*) FROM referrals r WHERE NOT EXISTS (
			SELECT 1 FROM ` + auditRecords + ` a WHERE a.method = '/careteam.v1.ReferralService/CreateReferral'
				AND a.outcome = 'OK' AND 'referrals/' || r.id = ANY(a.resources))`},
		{"submitted referrals without the OK audit record of their submission", `SELECT count(*) FROM referrals r
			WHERE r.state <> 'DRAFT' AND NOT EXISTS (
			SELECT 1 FROM ` + auditRecords + ` a WHERE a.method = '/careteam.v1.ReferralService/SubmitReferral'
				AND a.outcome = 'OK' AND 'referrals/' || r.id = ANY(a.resources))`},
		{"sessions without the OK audit record of their start", `SELECT count(*) FROM sessions s WHERE NOT EXISTS (
			SELECT 1 FROM ` + auditRecords + ` a WHERE a.method = '/careteam.v1.SessionService/StartSession'
				AND a.outcome = 'OK' AND 'sessions/' || s.id = ANY(a.resources))`},
		{"audit chains whose head disagrees with their records", `SELECT count(*) FROM (
			SELECT c.chain FROM audit_chains c LEFT JOIN audit_events a ON a.chain = c.chain
			GROUP BY c.chain, c.position
			HAVING c.position <> count(a.seq) OR c.position <> coalesce(max(a.position), 0)) x`},
	}
	for _, q := range zero {
		var n int
		if err := conn.QueryRow(ctx, q.sql).Scan(&n); err != nil {
			t.Fatalf("%s: %v", q.what, err)
		}
		if n != 0 {
			t.Errorf("%d %s", n, q.what)
		}
	}
	// Cursors come from a sequence, so a transaction that did not commit
	// leaves a gap; none may lie beyond what the sequence handed out.
	var beyond int64
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM events WHERE cursor > (SELECT last_value FROM event_cursors)`).Scan(&beyond); err != nil {
		t.Fatal(err)
	}
	if beyond != 0 {
		t.Errorf("%d events carry a cursor the sequence never handed out", beyond)
	}
}

// auditRecords is every committed audit record, sealed or still in the
// inbox.
const auditRecords = `(SELECT method, outcome, resources FROM audit_events
	UNION ALL SELECT method, outcome, resources FROM audit_inbox)`

// verifyAudit has an auditor recompute the audit chains through the API.
func verifyAudit(t *testing.T, ctx context.Context, auditor *client.Client, conn *pgx.Conn) {
	t.Helper()
	resp, err := auditor.Audit.VerifyAuditLog(ctx, &pb.VerifyAuditLogRequest{})
	if err != nil {
		t.Fatalf("VerifyAuditLog: %v", err)
	}
	var records int64
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM audit_events`).Scan(&records); err != nil {
		t.Fatal(err)
	}
	if !resp.GetOk() {
		t.Errorf("VerifyAuditLog: not OK: first broken record %d: %s", resp.GetFirstBrokenSequence(), resp.GetProblem())
	}
	// The verification's own record may land after it counted.
	if resp.GetChecked() < records-1 || resp.GetChecked() == 0 {
		t.Errorf("VerifyAuditLog checked %d records of %d", resp.GetChecked(), records)
	}
	t.Logf("VerifyAuditLog: ok=%v checked=%d (%d records)", resp.GetOk(), resp.GetChecked(), records)
}
