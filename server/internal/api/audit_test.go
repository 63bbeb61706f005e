package api_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	pb "github.com/careteam/careteam/proto/careteam/v1"
)

// auditRows returns the audit records of method, oldest first, read behind
// the API.
func (h *harness) auditRows(method string) []auditRow {
	h.t.Helper()
	rows, err := h.sealed().pool.Query(h.ctx, `SELECT subject, outcome, resources, patients::text[], purpose, emergency_reason
		FROM audit_events WHERE method = $1 ORDER BY seq`, method)
	if err != nil {
		h.t.Fatal(err)
	}
	defer rows.Close()
	var out []auditRow
	for rows.Next() {
		var r auditRow
		if err := rows.Scan(&r.subject, &r.outcome, &r.resources, &r.patients, &r.purpose, &r.reason); err != nil {
			h.t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

type auditRow struct {
	subject, outcome, purpose, reason string
	resources, patients               []string
}

func TestEveryCallIsAudited(t *testing.T) {
	t.Parallel()
	tm := newTeam(t)
	h := tm.harness
	const get = "/careteam.v1.PatientService/GetPatient"
	if _, err := h.as("dr").Patients.GetPatient(h.ctx, &pb.GetPatientRequest{Name: tm.patient.GetName()}); err != nil {
		t.Fatal(err)
	}
	_, err := h.as("lmt2").Patients.GetPatient(h.ctx, &pb.GetPatientRequest{Name: tm.patient.GetName()})
	wantCode(t, err, codes.PermissionDenied)
	rows := h.auditRows(get)
	patientID := strings.TrimPrefix(tm.patient.GetName(), "patients/")
	if len(rows) != 2 {
		t.Fatalf("%d records, want 2: %+v", len(rows), rows)
	}
	for i, want := range []struct{ subject, outcome string }{{"dr", "OK"}, {"lmt2", "PERMISSION_DENIED"}} {
		r := rows[i]
		if r.subject != want.subject || r.outcome != want.outcome || !slices.Equal(r.patients, []string{patientID}) ||
			!slices.Equal(r.resources, []string{tm.patient.GetName()}) || r.purpose != "TREATMENT" {
			t.Errorf("record %d: %+v, want %+v", i, r, want)
		}
	}

	t.Run("a list records every patient returned", func(t *testing.T) {
		second := h.patient("dr", "MRN-2")
		if _, err := h.as("dr").Patients.ListPatients(h.ctx, &pb.ListPatientsRequest{}); err != nil {
			t.Fatal(err)
		}
		rows := h.auditRows("/careteam.v1.PatientService/ListPatients")
		last := rows[len(rows)-1]
		if len(last.patients) != 2 || !slices.Contains(last.resources, second.GetName()) {
			t.Fatalf("list record %+v", last)
		}
	})
	t.Run("authentication failures are recorded", func(t *testing.T) {
		_, err := h.anonymous().Patients.GetPatient(h.ctx, &pb.GetPatientRequest{Name: tm.patient.GetName()})
		wantCode(t, err, codes.Unauthenticated)
		_, err = h.as("stranger").Patients.GetPatient(h.ctx, &pb.GetPatientRequest{Name: tm.patient.GetName()})
		wantCode(t, err, codes.PermissionDenied)
		rows := h.auditRows(get)
		if len(rows) != 4 || rows[2].outcome != "UNAUTHENTICATED" || rows[2].subject != "" ||
			rows[3].outcome != "PERMISSION_DENIED" || rows[3].subject != "stranger" {
			t.Fatalf("%+v", rows[2:])
		}
	})
	t.Run("a write and its record commit together", func(t *testing.T) {
		before := h.sealed().count(`SELECT count(*) FROM audit_events WHERE method = '/careteam.v1.ReferralService/CreateReferral'`)
		r := tm.create(tm.newReferral())
		rows := h.auditRows("/careteam.v1.ReferralService/CreateReferral")
		if len(rows) != before+1 || !slices.Contains(rows[len(rows)-1].resources, r.GetName()) {
			t.Fatalf("create records %+v", rows)
		}
	})
}

// TestEveryMethodAuditsDenial calls every careteam RPC, from the service
// descriptors so none is forgotten, as a caller the directory does not know,
// and finds one denied record per method.
func TestEveryMethodAuditsDenial(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	stranger := h.as("stranger")
	methods := careteamMethods(t)
	for _, m := range methods {
		wantCode(t, invoke(h.ctx, stranger, m), codes.PermissionDenied)
	}
	for _, m := range methods {
		name := "/" + string(m.Parent().FullName()) + "/" + string(m.Name())
		rows := h.auditRows(name)
		if len(rows) != 1 || rows[0].outcome != "PERMISSION_DENIED" || rows[0].subject != "stranger" {
			t.Errorf("%s: records %+v", name, rows)
		}
	}
}

func TestAuditTrailIsAppendOnlyAndTamperEvident(t *testing.T) {
	t.Parallel()
	tm := newTeam(t)
	h := tm.harness
	h.practitioner(tm.clinic, pb.Role_ROLE_AUDITOR, "auditor")
	for range 5 {
		if _, err := h.as("dr").Patients.GetPatient(h.ctx, &pb.GetPatientRequest{Name: tm.patient.GetName()}); err != nil {
			t.Fatal(err)
		}
	}
	verify := func() *pb.VerifyAuditLogResponse {
		t.Helper()
		resp, err := h.as("auditor").Audit.VerifyAuditLog(h.ctx, &pb.VerifyAuditLogRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	if v := verify(); !v.GetOk() || v.GetChecked() < 5 {
		t.Fatalf("before tampering: %v", v)
	}
	_, err := h.pool.Exec(h.ctx, `UPDATE audit_events SET outcome = 'PERMISSION_DENIED'`)
	if err == nil || !strings.Contains(err.Error(), "append-only") {
		t.Fatalf("a direct UPDATE was not refused: %v", err)
	}
	_, err = h.pool.Exec(h.ctx, `DELETE FROM audit_events`)
	if err == nil {
		t.Fatal("a direct DELETE was not refused")
	}

	// A superuser who disables the trigger can edit a row; the chain
	// shows it.
	var seq int64
	if err := h.sealed().pool.QueryRow(h.ctx, `SELECT max(seq) FROM audit_events WHERE method = '/careteam.v1.PatientService/GetPatient'`).Scan(&seq); err != nil {
		t.Fatal(err)
	}
	h.asSuperuserWithoutTriggers(`UPDATE audit_events SET subject = 'someone-else' WHERE seq = ` + strconv.FormatInt(seq, 10))
	v := verify()
	if v.GetOk() || v.GetFirstBrokenSequence() != seq || !strings.Contains(v.GetProblem(), "altered") {
		t.Fatalf("after tampering with %d: %v", seq, v)
	}

	t.Run("only auditors read the trail", func(t *testing.T) {
		for _, who := range []string{"dr", "lmt", "coord", rootAdmin} {
			_, err := h.as(who).Audit.ListAuditEvents(h.ctx, &pb.ListAuditEventsRequest{})
			wantCode(t, err, codes.PermissionDenied)
			_, err = h.as(who).Audit.VerifyAuditLog(h.ctx, &pb.VerifyAuditLogRequest{})
			wantCode(t, err, codes.PermissionDenied)
		}
	})
	t.Run("filters and pages", func(t *testing.T) {
		var got []*pb.AuditEvent
		req := &pb.ListAuditEventsRequest{Patient: tm.patient.GetName(), Subject: "dr", Outcome: "OK", PageSize: 2}
		for {
			resp, err := h.as("auditor").Audit.ListAuditEvents(h.ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, resp.GetAuditEvents()...)
			if resp.GetNextPageToken() == "" {
				break
			}
			req.PageToken = resp.GetNextPageToken()
		}
		// The patient's registration and five reads; the tampered record
		// now names someone else.
		if len(got) != 5 {
			t.Fatalf("%d records", len(got))
		}
		for i, e := range got {
			if e.GetSubject() != "dr" || !slices.Contains(e.GetPatients(), tm.patient.GetName()) || (i > 0 && e.GetSequence() <= got[i-1].GetSequence()) {
				t.Fatalf("record %d: %v", i, e)
			}
		}
	})
}

// asSuperuserWithoutTriggers runs sql as the test database's superuser
// with triggers off, as someone tampering with the trail would.
func (h *harness) asSuperuserWithoutTriggers(sql string) {
	h.t.Helper()
	conn, err := h.pool.Acquire(h.ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	defer conn.Release()
	for _, s := range []string{`SET session_replication_role = replica`, sql, `SET session_replication_role = origin`} {
		if _, err := conn.Exec(h.ctx, s); err != nil {
			h.t.Fatalf("%s: %v", s, err)
		}
	}
}

// TestTruncatedChainIsFound is the finding: deleting the last records of
// a chain (a superuser, with the append-only triggers off) left a trail
// VerifyAuditLog reported intact, since no gap remained to find. Each
// chain now ends where a head checkpoint the server's role cannot write
// says it does.
func TestTruncatedChainIsFound(t *testing.T) {
	t.Parallel()
	tm := newTeam(t)
	h := tm.harness
	h.practitioner(tm.clinic, pb.Role_ROLE_AUDITOR, "auditor")
	for range 20 {
		if _, err := h.as("dr").Patients.GetPatient(h.ctx, &pb.GetPatientRequest{Name: tm.patient.GetName()}); err != nil {
			t.Fatal(err)
		}
	}
	var chain int
	var last int64
	if err := h.sealed().pool.QueryRow(h.ctx, `SELECT chain, max(seq) FROM audit_events GROUP BY chain ORDER BY count(*) DESC LIMIT 1`).Scan(&chain, &last); err != nil {
		t.Fatal(err)
	}
	h.asSuperuserWithoutTriggers(`DELETE FROM audit_events WHERE seq = ` + strconv.FormatInt(last, 10))
	v, err := h.as("auditor").Audit.VerifyAuditLog(h.ctx, &pb.VerifyAuditLogRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if v.GetOk() || !strings.Contains(v.GetProblem(), fmt.Sprintf("chain %d ends", chain)) {
		t.Fatalf("after removing the end of chain %d: %v", chain, v)
	}
}

func TestAuditChainsDoNotForkUnderConcurrency(t *testing.T) {
	t.Parallel()
	tm := newTeam(t)
	h := tm.harness
	h.practitioner(tm.clinic, pb.Role_ROLE_AUDITOR, "auditor")
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			c := h.as("dr")
			for range 20 {
				if _, err := c.Patients.GetPatient(h.ctx, &pb.GetPatientRequest{Name: tm.patient.GetName()}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	v, err := h.as("auditor").Audit.VerifyAuditLog(h.ctx, &pb.VerifyAuditLogRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if !v.GetOk() || v.GetChecked() < 320 {
		t.Fatalf("%v", v)
	}
	// Positions are dense per chain: no two records share a place, none is
	// missing.
	if n := h.sealed().count(`SELECT count(*) FROM (SELECT chain FROM audit_events GROUP BY chain HAVING count(*) <> max(position)) x`); n != 0 {
		t.Fatalf("%d chains with gaps or duplicates", n)
	}
}

func TestEmergencyAccessIsAllowedAuditedAndFlagged(t *testing.T) {
	t.Parallel()
	tm := newTeam(t)
	h := tm.harness
	hilltop := h.org("Hilltop", pb.OrganizationKind_ORGANIZATION_KIND_PHYSICIAN_PRACTICE)
	h.practitioner(hilltop, pb.Role_ROLE_PHYSICIAN, "er-doc")
	h.practitioner(tm.clinic, pb.Role_ROLE_AUDITOR, "auditor")
	get := func(ctx context.Context) error {
		_, err := h.as("er-doc").Patients.GetPatient(ctx, &pb.GetPatientRequest{Name: tm.patient.GetName()})
		return err
	}
	wantCode(t, get(h.ctx), codes.PermissionDenied)
	emergency := metadata.AppendToOutgoingContext(h.ctx, "x-purpose-of-use", "EMERGENCY")
	if got := fieldViolations(t, get(emergency)); !slices.Equal(got, []string{"x-emergency-reason"}) {
		t.Fatalf("%v", got)
	}
	withReason := metadata.AppendToOutgoingContext(emergency, "x-emergency-reason", "Unconscious in the ER; checking for anticoagulants.")
	if err := get(withReason); err != nil {
		t.Fatalf("emergency read refused: %v", err)
	}
	// Breaking the glass reads; it does not write.
	_, err := h.as("er-doc").Clinical.RecordConsent(withReason, &pb.RecordConsentRequest{Consent: &pb.Consent{Patient: tm.patient.GetName()}})
	if err == nil {
		t.Fatal("a write succeeded under emergency access")
	}
	// Other roles cannot break the glass.
	_, err = h.as("lmt2").Patients.GetPatient(withReason, &pb.GetPatientRequest{Name: tm.patient.GetName()})
	wantCode(t, err, codes.PermissionDenied)

	resp, err := h.as("auditor").Audit.ListAuditEvents(h.ctx, &pb.ListAuditEventsRequest{EmergencyOnly: true, Outcome: "OK"})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetAuditEvents()) != 1 {
		t.Fatalf("emergency records %v", resp.GetAuditEvents())
	}
	e := resp.GetAuditEvents()[0]
	if e.GetPurposeOfUse() != pb.PurposeOfUse_PURPOSE_OF_USE_EMERGENCY || e.GetEmergencyReason() == "" || e.GetSubject() != "er-doc" ||
		!slices.Equal(e.GetPatients(), []string{tm.patient.GetName()}) {
		t.Fatalf("emergency record %v", e)
	}
	if _, err := uuid.Parse(strings.TrimPrefix(e.GetPatients()[0], "patients/")); err != nil {
		t.Fatal(err)
	}
}
