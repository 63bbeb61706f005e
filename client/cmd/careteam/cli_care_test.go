package main

import (
	"strings"
	"testing"

	pb "github.com/careteam/careteam/proto/careteam/v1"
)

// TestCareFlow walks a referral from draft to a signed session through the
// CLI: it is refused with readable reasons before clearance and consent,
// and the progress report prints as a table.
func TestCareFlow(t *testing.T) {
	t.Parallel()
	tm := newTeam(t)
	dr, lmt := tm.drSubject, tm.lmtSubject
	patient := jsonAs[pb.Patient](t, dr, "patient", "create", "--given", "Jo", "--family", "Smith", "--birth-date", "1968-04-12",
		"--identifier", "urn:test:mrn|"+unique("MRN")).GetName()
	ref := jsonAs[pb.Referral](t, dr, "referral", "create", "--patient", patient, "--therapist", tm.therapist,
		"--reason-code", "M47.816", "--visits", "6", "--technique", "swedish", "--notes", "Lumbar spondylosis.")
	if ref.GetState() != pb.ReferralState_REFERRAL_STATE_DRAFT {
		t.Fatalf("created %v", ref.GetState())
	}
	name := ref.GetName()
	jsonAs[pb.Referral](t, dr, "referral", "submit", name, "--etag", ref.GetEtag())
	asked := jsonAs[pb.Referral](t, lmt, "referral", "ask", name, "--question", "Recent imaging?")
	if asked.GetState() != pb.ReferralState_REFERRAL_STATE_AWAITING_INFO {
		t.Fatalf("after asking: %v", asked.GetState())
	}
	jsonAs[pb.Referral](t, dr, "referral", "answer", name, "--answer", "X-ray: degenerative changes only.")
	accepted := jsonAs[pb.Referral](t, lmt, "referral", "accept", name)
	if accepted.GetState() != pb.ReferralState_REFERRAL_STATE_ACCEPTED {
		t.Fatalf("after accepting: %v", accepted.GetState())
	}
	if r := as(t, lmt, "referral", "get", name); r.code != exitOK || !strings.Contains(r.stdout, "state: ACCEPTED") || !strings.Contains(r.stdout, "history[4]") {
		t.Fatalf("referral get: %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// Before clearance and consent the gate refuses, saying why.
	check := as(t, lmt, "clearance", "check", name, "--treatment", "swedish@lumbar/medium")
	if check.code != exitPrecondition || !strings.Contains(check.stdout, "CLEARANCE_MISSING") || !strings.Contains(check.stdout, "CONSENT_MISSING") {
		t.Fatalf("check: %d\n%s%s", check.code, check.stdout, check.stderr)
	}
	start := as(t, lmt, "session", "start", name, "--treatment", "swedish@lumbar/medium")
	if start.code != exitPrecondition || !strings.Contains(start.stderr, "CLEARANCE_MISSING (patients/") {
		t.Fatalf("start: %d\n%s", start.code, start.stderr)
	}

	jsonAs[pb.Consent](t, lmt, "consent", "record", "--patient", patient, "--form-version", "2026-01", "--signed", date(0))
	if list := jsonAs[pb.ListConsentsResponse](t, lmt, "consent", "list", "--patient", patient); len(list.GetConsents()) != 1 {
		t.Fatalf("consent list: %v", list)
	}
	dx := jsonAs[pb.Diagnosis](t, dr, "diagnosis", "record", "--patient", patient, "--code", "M47.816",
		"--display", "Spondylosis, lumbar region", "--notes", "No radiculopathy.")
	if got := jsonAs[pb.Diagnosis](t, lmt, "diagnosis", "get", dx.GetName()); got.GetIcd10Code() != "M47.816" || got.GetNotes() != "" {
		t.Fatalf("the therapist's view of the diagnosis: %v", got)
	}
	upd := jsonAs[pb.Diagnosis](t, dr, "diagnosis", "update", dx.GetName(), "--status", "remission", "--etag", dx.GetEtag())
	if upd.GetClinicalStatus() != pb.ClinicalStatus_CLINICAL_STATUS_REMISSION || upd.GetNotes() != "No radiculopathy." {
		t.Fatalf("after the update: %v", upd)
	}
	if me := jsonAs[pb.GetCallerResponse](t, lmt, "whoami"); me.GetRole() != pb.Role_ROLE_MASSAGE_THERAPIST || me.GetPractitioner() == "" {
		t.Fatalf("whoami: %v", me)
	}
	jsonAs[pb.Clearance](t, dr, "clearance", "issue", "--patient", patient, "--decision", "cleared-with-precautions",
		"--avoid", "deep-tissue@lumbar", "--limit", "*@cervical/light", "--contraindicated", "hot-stone")
	risky := as(t, lmt, "session", "start", name, "--treatment", "deep-tissue@lumbar/firm")
	if risky.code != exitPrecondition || !strings.Contains(risky.stderr, "PRECAUTION_VIOLATED") {
		t.Fatalf("risky start: %d\n%s", risky.code, risky.stderr)
	}
	ss := jsonAs[pb.Session](t, lmt, "session", "start", name, "--treatment", "swedish@lumbar/medium")
	noted := jsonAs[pb.Session](t, lmt, "session", "note", ss.GetName(), "--etag", ss.GetEtag(),
		"--subjective", "Stiffness after sitting.", "--assessment", "Improving.", "--plan", "Heat and stretches at home.",
		"--pain-before", "6", "--pain-after", "3", "--odi", "32", "--minutes", "50", "--treatment", "swedish@lumbar/medium")
	sig := jsonAs[pb.Signature](t, lmt, "session", "sign", ss.GetName(), "--etag", noted.GetEtag())
	if len(sig.GetContentSha256()) != 64 {
		t.Fatalf("signature %v", sig)
	}
	if r := as(t, lmt, "session", "note", ss.GetName(), "--etag", "99", "--plan", "x"); r.code != exitConflict {
		t.Fatalf("note after signing with a stale etag: %d %s", r.code, r.stderr)
	}

	report := as(t, dr, "referral", "progress", name)
	for _, want := range []string{"Visits: 1 of 6 used, 5 left", "Pain (NRS 0-10, before treatment): 6 -> 6", "DATE", "swedish@lumbar/medium", "Latest plan: Heat and stretches at home."} {
		if !strings.Contains(report.stdout, want) {
			t.Errorf("progress lacks %q:\n%s", want, report.stdout)
		}
	}
	if p := jsonAs[pb.ReferralProgress](t, dr, "referral", "progress", name); p.GetUsedVisits() != 1 || len(p.GetSessions()) != 1 {
		t.Fatalf("progress json %v", p)
	}
}
