package api_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/careteam/careteam/proto/careteam/v1"
)

// canonicalNote mirrors the documented canonical content of a signed note
// (server/internal/careteam/note.go): the JSON of that struct with fields in
// that order, times in RFC 3339 with nanoseconds in UTC. It is rebuilt here
// from what the API returns so that a verifier without the server's code
// gets the same hash.
type canonicalNote struct {
	Session         string               `json:"session"`
	Referral        string               `json:"referral"`
	Patient         string               `json:"patient"`
	Therapist       string               `json:"therapist"`
	StartTime       string               `json:"start_time"`
	Subjective      string               `json:"subjective"`
	Objective       string               `json:"objective"`
	Assessment      string               `json:"assessment"`
	Plan            string               `json:"plan"`
	PainBefore      *int32               `json:"pain_before"`
	PainAfter       *int32               `json:"pain_after"`
	Oswestry        *int32               `json:"oswestry_disability_index"`
	NeckDisability  *int32               `json:"neck_disability_index"`
	RangeOfMotion   string               `json:"range_of_motion"`
	Treatments      []canonicalTreatment `json:"treatments"`
	DurationMinutes int32                `json:"duration_minutes"`
	AdverseEvent    *canonicalAdverse    `json:"adverse_event"`
	DeviationReason string               `json:"deviation_reason"`
	Signer          string               `json:"signer"`
	SignTime        string               `json:"sign_time"`
}

type canonicalTreatment struct {
	Region    string `json:"region"`
	Technique string `json:"technique"`
	Pressure  string `json:"pressure"`
}

// canonicalAdverse has no JSON tags in the server either: its keys are the
// Go field names.
type canonicalAdverse struct {
	Description string
	Severity    string
}

// domainEnum is the server's spelling of an enum value: the proto name
// without its prefix, "" when unset.
func domainEnum(name, prefix string) string {
	if strings.HasSuffix(name, "_UNSPECIFIED") {
		return ""
	}
	return strings.TrimPrefix(name, prefix)
}

func rfc3339Nano(ts *timestamppb.Timestamp) string {
	return ts.AsTime().UTC().Format(time.RFC3339Nano)
}

// contentSHA256 recomputes a signed note's hash from the session as the API
// returns it.
func contentSHA256(t *testing.T, ss *pb.Session) string {
	t.Helper()
	n := ss.GetNote()
	c := canonicalNote{
		Session: ss.GetName(), Referral: ss.GetReferral(), Patient: ss.GetPatient(), Therapist: ss.GetTherapist(),
		StartTime:  rfc3339Nano(ss.GetStartTime()),
		Subjective: n.GetSubjective(), Objective: n.GetObjective(), Assessment: n.GetAssessment(), Plan: n.GetPlan(),
		PainBefore: n.PainBefore, PainAfter: n.PainAfter, Oswestry: n.OswestryDisabilityIndex, NeckDisability: n.NeckDisabilityIndex,
		RangeOfMotion: n.GetRangeOfMotion(), Treatments: []canonicalTreatment{}, DurationMinutes: n.GetDurationMinutes(),
		DeviationReason: n.GetDeviationReason(),
		Signer:          n.GetSignature().GetSigner(), SignTime: rfc3339Nano(n.GetSignature().GetSignTime()),
	}
	for _, tr := range n.GetTreatments() {
		c.Treatments = append(c.Treatments, canonicalTreatment{
			Region:    domainEnum(tr.GetRegion().String(), "BODY_REGION_"),
			Technique: domainEnum(tr.GetTechnique().String(), "TECHNIQUE_"),
			Pressure:  domainEnum(tr.GetPressure().String(), "PRESSURE_"),
		})
	}
	if a := n.GetAdverseEvent(); a != nil {
		c.AdverseEvent = &canonicalAdverse{Description: a.GetDescription(), Severity: domainEnum(a.GetSeverity().String(), "SEVERITY_")}
	}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func wantContentHash(t *testing.T, ss *pb.Session) {
	t.Helper()
	got := ss.GetNote().GetSignature().GetContentSha256()
	if want := contentSHA256(t, ss); got != want {
		t.Fatalf("content_sha256 %s, recomputed %s", got, want)
	}
}

func TestNoteLifecycle(t *testing.T) {
	t.Parallel()
	tm := newTeam(t)
	r, _ := tm.ready()
	ss := tm.begin(r)
	if ss.GetNote().GetStatus() != pb.NoteStatus_NOTE_STATUS_DRAFT || ss.GetEtag() == "" {
		t.Fatalf("new session %v", ss)
	}
	started := ss

	// The mask decides, not the message: assessment is sent but not named.
	tm.clock.Advance(10 * time.Minute)
	ss = tm.mustEdit(ss, &pb.SessionNote{
		Subjective: "Low back ache after gardening.", Objective: "Paraspinal tightness L3-L5.", PainBefore: i32(6),
		Assessment: "not in the mask",
	}, "subjective", "objective", "pain_before")
	n := ss.GetNote()
	if n.GetSubjective() != "Low back ache after gardening." || n.GetObjective() != "Paraspinal tightness L3-L5." ||
		n.GetPainBefore() != 6 || n.GetAssessment() != "" || ss.GetEtag() == started.GetEtag() {
		t.Fatalf("after the first update: %v", ss)
	}
	first := ss

	tm.clock.Advance(40 * time.Minute)
	ss = tm.mustEdit(ss, &pb.SessionNote{
		Assessment: "Muscular strain, improving.", Plan: "Weekly; cat-cow stretch daily; heat 15 min.",
		PainAfter: i32(3), OswestryDisabilityIndex: i32(32), NeckDisabilityIndex: i32(12),
		RangeOfMotion: "Flexion 70 degrees", Treatments: swedishLumbar, DurationMinutes: 50,
	}, "assessment", "plan", "pain_after", "oswestry_disability_index", "neck_disability_index", "range_of_motion", "treatments", "duration_minutes")
	// An unset optional value under the mask clears the field.
	ss = tm.mustEdit(ss, &pb.SessionNote{Subjective: "Low back ache after gardening; eased by walking."}, "subjective", "neck_disability_index")
	n = ss.GetNote()
	if n.GetSubjective() != "Low back ache after gardening; eased by walking." || n.GetObjective() != "Paraspinal tightness L3-L5." ||
		n.NeckDisabilityIndex != nil || n.GetOswestryDisabilityIndex() != 32 || n.GetPainAfter() != 3 || n.GetDurationMinutes() != 50 ||
		!proto.Equal(&pb.SessionNote{Treatments: n.GetTreatments()}, &pb.SessionNote{Treatments: swedishLumbar}) {
		t.Fatalf("after three updates: %v", n)
	}

	// Someone who read an older version must not overwrite the newer one.
	_, err := tm.edit("lmt", first, &pb.SessionNote{Subjective: "stale"}, "subjective")
	wantCode(t, err, codes.Aborted)
	if got := tm.getSession("lmt", ss.GetName()); !proto.Equal(got, ss) {
		t.Fatalf("a stale update changed the session: %v", got)
	}
	_, err = tm.edit("lmt", &pb.Session{Name: ss.GetName()}, &pb.SessionNote{Subjective: "no etag"}, "subjective")
	if f := fieldViolations(t, err); !slices.Contains(f, "etag") {
		t.Fatalf("no etag: violations %v", f)
	}
	for _, path := range []string{"deviation_reason", "signature", "status", "amendments", "note.subjective", "etag"} {
		_, err := tm.edit("lmt", ss, &pb.SessionNote{DeviationReason: "x"}, path)
		if f := fieldViolations(t, err); !slices.Contains(f, "update_mask") {
			t.Fatalf("path %q: violations %v", path, f)
		}
	}

	tm.clock.Advance(5*time.Minute + 250*time.Microsecond)
	signTime := tm.clock.Now()
	resp, err := tm.sign("lmt", ss, "")
	if err != nil {
		t.Fatalf("SignSessionNote: %v", err)
	}
	sig := resp.GetSignature()
	if sig.GetSigner() != tm.lmt.GetName() || !sig.GetSignTime().AsTime().Equal(signTime) || len(sig.GetContentSha256()) != 64 {
		t.Fatalf("signature %v", sig)
	}
	signed := resp.GetSession()
	if !proto.Equal(signed.GetNote().GetSignature(), sig) || signed.GetNote().GetStatus() != pb.NoteStatus_NOTE_STATUS_SIGNED ||
		signed.GetState() != pb.SessionState_SESSION_STATE_COMPLETED {
		t.Fatalf("signed session %v", signed)
	}
	wantContentHash(t, signed)

	// Amendments are appended in order; the note and its signature stay.
	var want []*pb.Amendment
	var last *pb.Session
	for i, a := range []struct{ reason, text string }{
		{"Late entry", "Patient phoned: soreness resolved within 24 h."},
		{"Correction", "Heat was advised for 15 min, not 20."},
	} {
		tm.clock.Advance(time.Duration(i+1) * time.Hour)
		at := tm.clock.Now()
		resp, err := tm.amend("lmt", signed, a.reason, a.text)
		if err != nil {
			t.Fatalf("AmendSessionNote %d: %v", i, err)
		}
		got := resp.GetAmendment()
		if got.GetAuthor() != tm.lmt.GetName() || !got.GetTime().AsTime().Equal(at) || got.GetReason() != a.reason || got.GetText() != a.text {
			t.Fatalf("amendment %d: %v", i, got)
		}
		want = append(want, got)
		note := resp.GetSession().GetNote()
		if len(note.GetAmendments()) != len(want) {
			t.Fatalf("after amendment %d: %d amendments", i, len(note.GetAmendments()))
		}
		for j := range want {
			if !proto.Equal(note.GetAmendments()[j], want[j]) {
				t.Fatalf("after amendment %d: amendment %d is %v, want %v", i, j, note.GetAmendments()[j], want[j])
			}
		}
		if !proto.Equal(withoutAmendments(note), signed.GetNote()) {
			t.Fatalf("amendment %d changed the note: %v", i, note)
		}
		last = resp.GetSession()
	}
	if n := tm.count(`SELECT count(*) FROM session_amendments WHERE session_id = $1`, sessionID(t, signed)); n != 2 {
		t.Fatalf("%d amendment rows, want 2", n)
	}
	for _, as := range []string{"lmt", "dr"} {
		if d := diff(last, tm.getSession(as, last.GetName())); d != "" {
			t.Errorf("GetSession as %s (-want +got):\n%s", as, d)
		}
	}
	wantContentHash(t, tm.getSession("dr", signed.GetName()))
}

func withoutAmendments(n *pb.SessionNote) *pb.SessionNote {
	c := proto.Clone(n).(*pb.SessionNote)
	c.Amendments = nil
	return c
}

func TestNoteContentHashIsRecomputable(t *testing.T) {
	t.Parallel()
	tm := newTeam(t)
	r, _ := tm.ready()

	// A full note: text that JSON must escape (Go's encoding escapes <, >
	// and & too, which the canonical form inherits), optional values, more
	// than one treatment, an adverse event; and times with a fraction of a
	// second, which RFC 3339 with nanoseconds must carry.
	tm.clock.Advance(1500*time.Millisecond + 7*time.Microsecond)
	full := tm.begin(r)
	full = tm.mustEdit(full, &pb.SessionNote{
		Subjective: "Pain \"7/10\" <worse> on sitting & standing;\nnew: tingling — none.", Objective: "Guarding L4-L5.",
		Assessment: "Strain.", Plan: "Review in 1 week.", PainBefore: i32(0), PainAfter: i32(10),
		OswestryDisabilityIndex: i32(100), NeckDisabilityIndex: i32(0), RangeOfMotion: "Full",
		Treatments: []*pb.Treatment{
			treatment(pb.BodyRegion_BODY_REGION_LUMBAR, pb.Technique_TECHNIQUE_SWEDISH, pb.Pressure_PRESSURE_MEDIUM),
			treatment(pb.BodyRegion_BODY_REGION_THORACIC, pb.Technique_TECHNIQUE_MYOFASCIAL_RELEASE, pb.Pressure_PRESSURE_LIGHT),
		},
		DurationMinutes: 55,
		AdverseEvent:    &pb.AdverseEvent{Description: "Light-headed on standing; settled in 5 min.", Severity: pb.Severity_SEVERITY_MILD},
	}, "subjective", "objective", "assessment", "plan", "pain_before", "pain_after", "oswestry_disability_index",
		"neck_disability_index", "range_of_motion", "treatments", "duration_minutes", "adverse_event")
	tm.clock.Advance(time.Hour + 123456*time.Microsecond)
	signed := tm.mustSign(full)
	if signed.GetNote().GetSignature().GetSignTime().AsTime().Nanosecond() == 0 {
		t.Fatal("the sign time lost its fraction")
	}
	wantContentHash(t, signed)
	wantContentHash(t, tm.getSession("dr", signed.GetName()))

	// A minimal note: absent values are null, not zero.
	minimal := tm.begin(r)
	minimal = tm.mustEdit(minimal, &pb.SessionNote{Treatments: swedishLumbar}, "treatments")
	signedMinimal := tm.mustSign(minimal)
	wantContentHash(t, signedMinimal)
	if signedMinimal.GetNote().GetSignature().GetContentSha256() == signed.GetNote().GetSignature().GetContentSha256() {
		t.Fatal("two different notes have one hash")
	}

	// Amendments are outside the signed content.
	resp, err := tm.amend("lmt", signed, "Late entry", "Follow-up call: fine.")
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(resp.GetSession().GetNote().GetSignature(), signed.GetNote().GetSignature()) {
		t.Fatal("an amendment changed the signature")
	}
	wantContentHash(t, resp.GetSession())
}

func TestNoteRefusals(t *testing.T) {
	t.Parallel()
	tm := newTeam(t)
	r, _ := tm.ready()
	draft := tm.mustEdit(tm.begin(r), &pb.SessionNote{Subjective: "Stiff.", Treatments: swedishLumbar}, "subjective", "treatments")
	signed := tm.mustSign(tm.mustEdit(tm.begin(r), &pb.SessionNote{Treatments: swedishLumbar}, "treatments"))

	// Only the session's therapist writes: another therapist of the same
	// practice does not even see the session; coordinators and the
	// physician see it but may not write.
	for _, as := range []string{"lmt2", "coord", "spa-coord", "dr"} {
		_, err := tm.edit(as, draft, &pb.SessionNote{Subjective: "by " + as}, "subjective")
		wantCode(t, err, codes.PermissionDenied)
		_, err = tm.sign(as, draft, "")
		wantCode(t, err, codes.PermissionDenied)
		_, err = tm.amend(as, signed, "by "+as, "text")
		wantCode(t, err, codes.PermissionDenied)
	}
	if got := tm.getSession("lmt", draft.GetName()); !proto.Equal(got, draft) {
		t.Fatalf("refused writes changed the draft: %v", got)
	}
	if got := tm.getSession("lmt", signed.GetName()); !proto.Equal(got, signed) {
		t.Fatalf("refused amendments changed the signed note: %v", got)
	}

	// A signed note never changes, nor is it cancelled.
	_, err := tm.edit("lmt", signed, &pb.SessionNote{Subjective: "after the fact"}, "subjective")
	if types := preconditionTypes(t, err); !slices.Equal(types, []string{"NOTE_SIGNED"}) {
		t.Fatalf("update after signing: %v", types)
	}
	_, err = tm.cancelSession("lmt", signed, pb.CancelReason_CANCEL_REASON_ENTERED_IN_ERROR)
	wantCode(t, err, codes.FailedPrecondition)
	_, err = tm.sign("lmt", signed, "")
	wantCode(t, err, codes.FailedPrecondition)
	// A draft is edited, not amended.
	_, err = tm.amend("lmt", draft, "Late entry", "text")
	if types := preconditionTypes(t, err); !slices.Equal(types, []string{"NOTE_NOT_SIGNED"}) {
		t.Fatalf("amending a draft: %v", types)
	}
	if got := tm.getSession("lmt", signed.GetName()); !proto.Equal(got, signed) {
		t.Fatalf("refused changes changed the signed note: %v", got)
	}

	// Nothing recorded, nothing to sign.
	empty := tm.begin(r)
	_, err = tm.sign("lmt", empty, "")
	if f := fieldViolations(t, err); !slices.Equal(f, []string{"note.treatments"}) {
		t.Fatalf("signing an empty note: %v", f)
	}
}

func TestNoteSigningChecksTheClearanceAgain(t *testing.T) {
	t.Parallel()
	tm := newTeam(t)
	r, _ := tm.ready()
	ss := tm.begin(r)

	// The physician restricts treatment while the session runs; the
	// therapist records what was done anyway.
	tm.clock.Advance(10 * time.Minute)
	tm.clear(&pb.Clearance{
		Decision: pb.ClearanceDecision_CLEARANCE_DECISION_CLEARED_WITH_PRECAUTIONS,
		Precautions: []*pb.Precaution{{Region: pb.BodyRegion_BODY_REGION_LUMBAR, Technique: pb.Technique_TECHNIQUE_DEEP_TISSUE,
			Action: pb.PrecautionAction_PRECAUTION_ACTION_AVOID}},
	})
	deep := []*pb.Treatment{treatment(pb.BodyRegion_BODY_REGION_LUMBAR, pb.Technique_TECHNIQUE_DEEP_TISSUE, pb.Pressure_PRESSURE_FIRM)}
	ss = tm.mustEdit(ss, &pb.SessionNote{Treatments: deep, PainBefore: i32(5), PainAfter: i32(4)}, "treatments", "pain_before", "pain_after")
	if tm.referral(r.GetName()).GetAttentionRequired() {
		t.Fatal("attention required before any deviation")
	}

	_, err := tm.sign("lmt", ss, "")
	if types := preconditionTypes(t, err); !slices.Equal(types, []string{"PRECAUTION_VIOLATED"}) {
		t.Fatalf("signing a treatment the clearance forbids: %v", types)
	}
	if got := tm.getSession("lmt", ss.GetName()); got.GetNote().GetStatus() != pb.NoteStatus_NOTE_STATUS_DRAFT || got.GetEtag() != ss.GetEtag() {
		t.Fatalf("a refused signature changed the session: %v", got)
	}

	const reason = "Patient requested deeper work; tolerated well, no radicular signs."
	tm.clock.Advance(time.Minute)
	resp, err := tm.sign("lmt", ss, reason)
	if err != nil {
		t.Fatalf("signing with a documented deviation: %v", err)
	}
	signed := resp.GetSession()
	if signed.GetNote().GetDeviationReason() != reason || signed.GetNote().GetStatus() != pb.NoteStatus_NOTE_STATUS_SIGNED {
		t.Fatalf("signed with deviation: %v", signed.GetNote())
	}
	wantContentHash(t, signed)
	if !tm.referral(r.GetName()).GetAttentionRequired() {
		t.Fatal("a deviation did not flag the referral for the physician")
	}
	pr := tm.progress("dr", r.GetName())
	want := &pb.DeviationSummary{Session: signed.GetName(), Reason: reason, SignTime: signed.GetNote().GetSignature().GetSignTime()}
	if len(pr.GetDeviations()) != 1 || !proto.Equal(pr.GetDeviations()[0], want) {
		t.Fatalf("deviations %v, want %v", pr.GetDeviations(), want)
	}
	if len(pr.GetSessions()) != 1 || !pr.GetSessions()[0].GetDeviation() {
		t.Fatalf("sessions %v", pr.GetSessions())
	}
	// Coordinators learn that there was a deviation, not the clinical why.
	for _, as := range []string{"coord", "spa-coord"} {
		d := tm.progress(as, r.GetName()).GetDeviations()
		if len(d) != 1 || d[0].GetReason() != "" || d[0].GetSession() != signed.GetName() {
			t.Fatalf("deviations as %s: %v", as, d)
		}
	}
}

// sessionID is the database id of a session.
func sessionID(t *testing.T, ss *pb.Session) uuid.UUID {
	t.Helper()
	id, err := uuid.Parse(strings.TrimPrefix(ss.GetName(), "sessions/"))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestDatabaseRefusesChangesToSignedNotes(t *testing.T) {
	t.Parallel()
	tm := newTeam(t)
	r, _ := tm.ready()
	ss := tm.mustEdit(tm.begin(r), &pb.SessionNote{Subjective: "Signed words.", PainBefore: i32(4), Treatments: swedishLumbar},
		"subjective", "pain_before", "treatments")
	signed := tm.mustSign(ss)
	if _, err := tm.amend("lmt", signed, "Late entry", "First amendment."); err != nil {
		t.Fatal(err)
	}
	id := sessionID(t, signed)
	row := func() string {
		var s string
		if err := tm.pool.QueryRow(tm.ctx, `SELECT to_jsonb(s)::text FROM sessions s WHERE id = $1`, id).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	amendments := func() string {
		var s string
		if err := tm.pool.QueryRow(tm.ctx, `SELECT coalesce(jsonb_agg(to_jsonb(a) ORDER BY seq), '[]')::text FROM session_amendments a WHERE session_id = $1`, id).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	before, beforeAmendments := row(), amendments()

	// The superuser connection bypasses the application entirely: only the
	// database's own trigger stands between it and the record.
	for _, sql := range []string{
		`UPDATE sessions SET subjective = 'x' WHERE id = $1`,
		`UPDATE sessions SET pain_before = 9 WHERE id = $1`,
		`UPDATE sessions SET treatments = '[]' WHERE id = $1`,
		`UPDATE sessions SET note_status = 'DRAFT' WHERE id = $1`,
		`UPDATE sessions SET state = 'CANCELLED' WHERE id = $1`,
		`UPDATE sessions SET content_sha256 = repeat('0', 64) WHERE id = $1`,
		`UPDATE sessions SET sign_time = sign_time + interval '1 second' WHERE id = $1`,
		`DELETE FROM sessions WHERE id = $1`,
		`UPDATE session_amendments SET text = 'rewritten' WHERE session_id = $1`,
		`DELETE FROM session_amendments WHERE session_id = $1`,
	} {
		_, err := tm.pool.Exec(tm.ctx, sql, id)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "23000" {
			t.Errorf("%s: got %v, want integrity_constraint_violation", sql, err)
		}
	}
	if after := row(); after != before {
		t.Fatalf("the row changed:\n%s\n%s", before, after)
	}
	if after := amendments(); after != beforeAmendments {
		t.Fatalf("the amendments changed:\n%s\n%s", beforeAmendments, after)
	}
	if n := tm.count(`SELECT count(*) FROM session_amendments WHERE session_id = $1`, id); n != 1 {
		t.Fatalf("%d amendments", n)
	}
	wantContentHash(t, tm.getSession("lmt", signed.GetName()))
}

func TestCancelSession(t *testing.T) {
	t.Parallel()
	tm := newTeam(t)
	tm.ready()
	one := tm.acceptedReferral("lmt", func(r *pb.Referral) { r.AuthorizedVisits = 1 })

	s1 := tm.begin(one)
	_, err := tm.start("lmt", one, swedishLumbar)
	if types := preconditionTypes(t, err); !slices.Contains(types, "VISITS_EXHAUSTED") {
		t.Fatalf("a second start on one visit: %v", types)
	}
	cancelled, err := tm.cancelSession("lmt", s1, pb.CancelReason_CANCEL_REASON_PATIENT_CANCELLED)
	if err != nil {
		t.Fatalf("CancelSession: %v", err)
	}
	if cancelled.GetState() != pb.SessionState_SESSION_STATE_CANCELLED || cancelled.GetCancelReason() != pb.CancelReason_CANCEL_REASON_PATIENT_CANCELLED {
		t.Fatalf("cancelled %v", cancelled)
	}
	if got := tm.referral(one.GetName()); got.GetUsedVisits() != 0 {
		t.Fatalf("used visits after a cancellation: %d", got.GetUsedVisits())
	}
	// Cancelling again must not return the visit twice, nor may the note
	// of a cancelled session be written.
	_, err = tm.cancelSession("lmt", cancelled, pb.CancelReason_CANCEL_REASON_PATIENT_CANCELLED)
	wantCode(t, err, codes.FailedPrecondition)
	_, err = tm.edit("lmt", cancelled, &pb.SessionNote{Subjective: "x"}, "subjective")
	wantCode(t, err, codes.FailedPrecondition)
	if got := tm.referral(one.GetName()); got.GetUsedVisits() != 0 {
		t.Fatalf("used visits after a second cancellation: %d", got.GetUsedVisits())
	}

	// The returned visit is usable again; a no-show keeps it.
	s2 := tm.begin(one)
	noShow, err := tm.cancelSession("lmt", s2, pb.CancelReason_CANCEL_REASON_NO_SHOW)
	if err != nil {
		t.Fatalf("no-show: %v", err)
	}
	if noShow.GetState() != pb.SessionState_SESSION_STATE_NO_SHOW || noShow.GetCancelReason() != pb.CancelReason_CANCEL_REASON_NO_SHOW {
		t.Fatalf("no-show %v", noShow)
	}
	if got := tm.referral(one.GetName()); got.GetUsedVisits() != 1 {
		t.Fatalf("used visits after a no-show: %d", got.GetUsedVisits())
	}
	_, err = tm.start("lmt", one, swedishLumbar)
	if types := preconditionTypes(t, err); !slices.Contains(types, "VISITS_EXHAUSTED") {
		t.Fatalf("a start after a no-show on one visit: %v", types)
	}

	// Who may cancel: not a therapist other than the session's, whether of
	// the same practice or another, nor the referring side; the treating
	// practice's front desk may.
	r := tm.acceptedReferral("lmt", func(*pb.Referral) {})
	s3 := tm.begin(r)
	etag := s3.GetEtag()
	for _, as := range []string{"lmt2", "other-lmt", "dr", "coord"} {
		_, err := tm.cancelSession(as, s3, pb.CancelReason_CANCEL_REASON_THERAPIST_CANCELLED)
		wantCode(t, err, codes.PermissionDenied)
	}
	if got := tm.getSession("lmt", s3.GetName()); got.GetEtag() != etag || got.GetState() != pb.SessionState_SESSION_STATE_STARTED {
		t.Fatalf("refused cancellations changed the session: %v", got)
	}
	byDesk, err := tm.cancelSession("spa-coord", s3, pb.CancelReason_CANCEL_REASON_PATIENT_CANCELLED)
	if err != nil {
		t.Fatalf("CancelSession by the practice's coordinator: %v", err)
	}
	if byDesk.GetState() != pb.SessionState_SESSION_STATE_CANCELLED || tm.referral(r.GetName()).GetUsedVisits() != 0 {
		t.Fatalf("cancelled by the desk: %v", byDesk)
	}
}

// TestSessionCancelByCoordinatorKeepsTheDraft: a coordinator reads sessions without
// the note's contents; cancelling must not write that blank view back over
// what the therapist wrote.
func TestSessionCancelByCoordinatorKeepsTheDraft(t *testing.T) {
	t.Parallel()
	tm := newTeam(t)
	r, _ := tm.ready()
	draft := tm.mustEdit(tm.begin(r), &pb.SessionNote{
		Subjective: "Arrived, then felt unwell before treatment.", PainBefore: i32(6), Treatments: swedishLumbar,
		AdverseEvent: &pb.AdverseEvent{Description: "Dizzy in the waiting room.", Severity: pb.Severity_SEVERITY_MILD},
	}, "subjective", "pain_before", "treatments", "adverse_event")
	if _, err := tm.cancelSession("spa-coord", draft, pb.CancelReason_CANCEL_REASON_PATIENT_CANCELLED); err != nil {
		t.Fatalf("CancelSession: %v", err)
	}
	got := tm.getSession("lmt", draft.GetName()).GetNote()
	if d := diff(draft.GetNote(), got); d != "" {
		t.Fatalf("the coordinator's cancellation changed the therapist's draft (-want +got):\n%s", d)
	}
}

// TestSessionVisitNumbersStayDistinct: a returned visit is used again, but two
// sessions that took place must not both claim to be the same visit.
func TestSessionVisitNumbersStayDistinct(t *testing.T) {
	t.Parallel()
	tm := newTeam(t)
	r, _ := tm.ready()
	s1, s2 := tm.begin(r), tm.begin(r)
	if _, err := tm.cancelSession("lmt", s1, pb.CancelReason_CANCEL_REASON_PATIENT_CANCELLED); err != nil {
		t.Fatal(err)
	}
	s3 := tm.begin(r)
	if s2.GetVisitNumber() == s3.GetVisitNumber() {
		t.Fatalf("sessions %s and %s are both visit %d", s2.GetName(), s3.GetName(), s3.GetVisitNumber())
	}
}

func TestNoteAdverseEventAlertsFromADraft(t *testing.T) {
	t.Parallel()
	tm := newTeam(t)
	r, _ := tm.ready()
	ss := tm.begin(r)
	if tm.referral(r.GetName()).GetAttentionRequired() {
		t.Fatal("attention required before any event")
	}
	event := &pb.AdverseEvent{Description: "Bruising over L4 next morning.", Severity: pb.Severity_SEVERITY_MODERATE}
	ss = tm.mustEdit(ss, &pb.SessionNote{AdverseEvent: event}, "adverse_event")
	if !proto.Equal(ss.GetNote().GetAdverseEvent(), event) || ss.GetNote().GetStatus() != pb.NoteStatus_NOTE_STATUS_DRAFT {
		t.Fatalf("note %v", ss.GetNote())
	}
	if !tm.referral(r.GetName()).GetAttentionRequired() {
		t.Fatal("an adverse event did not flag the referral")
	}
	want := &pb.AdverseEventSummary{Session: ss.GetName(), Severity: event.GetSeverity(), Description: event.GetDescription(), SessionTime: ss.GetStartTime()}
	pr := tm.progress("dr", r.GetName())
	if len(pr.GetAdverseEvents()) != 1 || !proto.Equal(pr.GetAdverseEvents()[0], want) {
		t.Fatalf("adverse events %v, want %v", pr.GetAdverseEvents(), want)
	}
	if s := pr.GetSessions(); len(s) != 1 || !s[0].GetAdverseEvent() || s[0].GetSigned() {
		t.Fatalf("sessions %v", s)
	}
	// Coordinators see that it happened and how severe, not the account.
	want.Description = ""
	if got := tm.progress("spa-coord", r.GetName()).GetAdverseEvents(); len(got) != 1 || !proto.Equal(got[0], want) {
		t.Fatalf("adverse events as a coordinator: %v", got)
	}
}

func TestProgressReport(t *testing.T) {
	t.Parallel()
	tm := newTeam(t)
	r, _ := tm.ready() // 6 visits authorized
	type visit struct {
		painBefore, painAfter, odi, ndi *int32
		assessment, plan                string
		duration                        int32
		end                             string // sign, draft, cancel or no-show
	}
	const latestAssessment, latestPlan = "Lumbar mobility improved; tolerates medium pressure.", "Continue weekly; cat-cow daily; heat 15 min."
	visits := []visit{
		{i32(7), i32(4), i32(40), nil, "Acute strain.", "Weekly.", 50, "sign"},
		{i32(10), i32(10), i32(90), i32(90), "cancelled", "cancelled", 0, "cancel"},
		{i32(6), nil, i32(34), i32(26), "Improving.", "Add stretches.", 45, "sign"},
		{i32(9), i32(9), i32(80), i32(80), "no-show", "no-show", 0, "no-show"},
		{i32(4), i32(2), i32(28), i32(22), latestAssessment, latestPlan, 60, "sign"},
		{i32(9), i32(8), i32(60), i32(50), "DRAFT assessment", "DRAFT plan", 55, "draft"},
	}
	var held []*pb.Session // sessions that took place, oldest first
	for _, v := range visits {
		ss := tm.mustEdit(tm.begin(r), &pb.SessionNote{
			PainBefore: v.painBefore, PainAfter: v.painAfter, OswestryDisabilityIndex: v.odi, NeckDisabilityIndex: v.ndi,
			Assessment: v.assessment, Plan: v.plan, DurationMinutes: v.duration, Treatments: swedishLumbar,
		}, "pain_before", "pain_after", "oswestry_disability_index", "neck_disability_index", "assessment", "plan", "duration_minutes", "treatments")
		var err error
		switch v.end {
		case "sign":
			ss = tm.mustSign(ss)
		case "cancel":
			_, err = tm.cancelSession("lmt", ss, pb.CancelReason_CANCEL_REASON_PATIENT_CANCELLED)
		case "no-show":
			_, err = tm.cancelSession("lmt", ss, pb.CancelReason_CANCEL_REASON_NO_SHOW)
		}
		if err != nil {
			t.Fatal(err)
		}
		if v.end == "sign" || v.end == "draft" {
			held = append(held, ss)
		}
	}

	// By hand, from the signed notes (visits 1, 3 and 5):
	// pain before 7, 6, 4; relief where both were recorded: 7-4, 4-2;
	// ODI 40, 34, 28; NDI recorded from visit 3: 26, 22.
	// Visits used: 5 of 6 (the cancellation returned one, the no-show not).
	check := func(who string, pr *pb.ReferralProgress, clinicalText bool) {
		t.Helper()
		if pr.GetReferral() != r.GetName() || pr.GetAuthorizedVisits() != 6 || pr.GetUsedVisits() != 5 || pr.GetRemainingVisits() != 1 {
			t.Fatalf("%s: visits %d/%d/%d", who, pr.GetAuthorizedVisits(), pr.GetUsedVisits(), pr.GetRemainingVisits())
		}
		for _, c := range []struct {
			name      string
			got, want *pb.MeasureTrend
		}{
			{"pain", pr.GetPain(), &pb.MeasureTrend{First: 7, Latest: 4, Change: -3, MeanChangePerSession: -1.5, Sessions: 3}},
			{"ODI", pr.GetOswestryDisabilityIndex(), &pb.MeasureTrend{First: 40, Latest: 28, Change: -12, MeanChangePerSession: -6, Sessions: 3}},
			{"NDI", pr.GetNeckDisabilityIndex(), &pb.MeasureTrend{First: 26, Latest: 22, Change: -4, MeanChangePerSession: -4, Sessions: 2}},
		} {
			if d := diff(c.want, c.got); d != "" {
				t.Errorf("%s: %s trend (-want +got):\n%s", who, c.name, d)
			}
		}
		if got := pr.GetMeanSessionPainRelief(); got != 2.5 {
			t.Errorf("%s: mean in-session relief %v, want 2.5", who, got)
		}
		if len(pr.GetSessions()) != len(held) {
			t.Fatalf("%s: %d sessions listed, want %d", who, len(pr.GetSessions()), len(held))
		}
		for i, ss := range held {
			n := ss.GetNote()
			want := &pb.SessionSummary{
				Session: ss.GetName(), StartTime: ss.GetStartTime(), DurationMinutes: n.GetDurationMinutes(), Treatments: swedishLumbar,
				PainBefore: n.PainBefore, PainAfter: n.PainAfter, OswestryDisabilityIndex: n.OswestryDisabilityIndex,
				NeckDisabilityIndex: n.NeckDisabilityIndex, Signed: n.GetStatus() == pb.NoteStatus_NOTE_STATUS_SIGNED,
			}
			if d := diff(want, pr.GetSessions()[i]); d != "" {
				t.Errorf("%s: session %d (-want +got):\n%s", who, i, d)
			}
		}
		wantAssessment, wantPlan := latestAssessment, latestPlan
		if !clinicalText {
			wantAssessment, wantPlan = "", ""
		}
		if pr.GetLatestAssessment() != wantAssessment || pr.GetLatestPlan() != wantPlan {
			t.Errorf("%s: latest assessment %q, plan %q", who, pr.GetLatestAssessment(), pr.GetLatestPlan())
		}
		if len(pr.GetAdverseEvents()) != 0 || len(pr.GetDeviations()) != 0 {
			t.Errorf("%s: adverse events %v, deviations %v", who, pr.GetAdverseEvents(), pr.GetDeviations())
		}
	}
	check("dr before completion", tm.progress("dr", r.GetName()), true)

	const dischargeNote = "Goals met: walking 30 min without pain."
	tm.clock.Advance(time.Hour)
	done, err := tm.as("lmt").Referrals.CompleteReferral(tm.ctx, &pb.CompleteReferralRequest{Name: r.GetName(), DischargeNote: dischargeNote})
	if err != nil {
		t.Fatalf("CompleteReferral: %v", err)
	}
	if done.GetReferral().GetState() != pb.ReferralState_REFERRAL_STATE_COMPLETED || done.GetProgress().GetState() != pb.ReferralState_REFERRAL_STATE_COMPLETED {
		t.Fatalf("completed %v / %v", done.GetReferral().GetState(), done.GetProgress().GetState())
	}
	check("CompleteReferral", done.GetProgress(), true)
	summary := done.GetReferral().GetDischargeSummary()
	for _, want := range []string{dischargeNote, "5 of 6", "first 7, latest 4 (-3)", "40 -> 28", "26 -> 22", latestPlan} {
		if !strings.Contains(summary, want) {
			t.Errorf("discharge summary lacks %q:\n%s", want, summary)
		}
	}
	if strings.Contains(summary, "DRAFT") {
		t.Errorf("discharge summary quotes an unsigned note:\n%s", summary)
	}
	for _, as := range []string{"lmt", "dr"} {
		if d := diff(done.GetProgress(), tm.progress(as, r.GetName())); d != "" {
			t.Errorf("progress as %s differs from the one completion returned (-returned +read):\n%s", as, d)
		}
	}
	for _, as := range []string{"coord", "spa-coord"} {
		got := tm.progress(as, r.GetName())
		check(as, got, false)
		want := proto.Clone(done.GetProgress()).(*pb.ReferralProgress)
		want.LatestAssessment, want.LatestPlan = "", ""
		if d := diff(want, got); d != "" {
			t.Errorf("progress as %s (-want +got):\n%s", as, d)
		}
	}
}

func TestSessionAccess(t *testing.T) {
	t.Parallel()
	tm := newTeam(t)
	r1, _ := tm.ready()
	p2 := tm.harness.patient("dr", "MRN-200")
	r2 := tm.acceptedReferral("lmt", func(r *pb.Referral) { r.Patient = p2.GetName() })
	tm.consentOf(p2.GetName()) // the practice sees the patient through r2 only
	tm.clear(&pb.Clearance{Patient: p2.GetName()})
	r3 := tm.acceptedReferral("lmt2", func(r *pb.Referral) { r.TargetTherapist = tm.lmt2.GetName() })

	s1 := tm.mustSign(tm.mustEdit(tm.begin(r1), &pb.SessionNote{Subjective: "Clinical words.", PainBefore: i32(5), Treatments: swedishLumbar},
		"subjective", "pain_before", "treatments"))
	s2 := tm.mustEdit(tm.begin(r1), &pb.SessionNote{Subjective: "Draft words."}, "subjective")
	s3 := tm.begin(r2)
	s3, err := tm.cancelSession("lmt", s3, pb.CancelReason_CANCEL_REASON_THERAPIST_CANCELLED)
	if err != nil {
		t.Fatal(err)
	}
	tm.clock.Advance(24 * time.Hour)
	s4, err := tm.start("lmt2", r3, swedishLumbar)
	if err != nil {
		t.Fatal(err)
	}
	// Read back, so that each is compared as stored.
	s1, s2, s3, s4 = tm.getSession("lmt", s1.GetName()), tm.getSession("lmt", s2.GetName()), tm.getSession("lmt", s3.GetName()), tm.getSession("lmt2", s4.GetName())

	// The referring physician reads everything; coordinators of either
	// side read the metadata, the note's status and signature only.
	redacted := func(ss *pb.Session) *pb.Session {
		c := proto.Clone(ss).(*pb.Session)
		c.Note = &pb.SessionNote{Status: ss.GetNote().GetStatus(), Signature: ss.GetNote().GetSignature()}
		return c
	}
	for _, ss := range []*pb.Session{s1, s2} {
		if d := diff(ss, tm.getSession("dr", ss.GetName())); d != "" {
			t.Errorf("dr reads (-want +got):\n%s", d)
		}
		for _, as := range []string{"coord", "spa-coord"} {
			if d := diff(redacted(ss), tm.getSession(as, ss.GetName())); d != "" {
				t.Errorf("%s reads (-want +got):\n%s", as, d)
			}
		}
	}
	if s1.GetNote().GetSignature() == nil || s1.GetNote().GetSubjective() == "" {
		t.Fatalf("s1 %v", s1)
	}
	for _, as := range []string{"lmt2", "other-lmt", "other-dr"} {
		for _, ss := range []*pb.Session{s1, s2, s3} {
			_, err := tm.as(as).Sessions.GetSession(tm.ctx, &pb.GetSessionRequest{Name: ss.GetName()})
			wantCode(t, err, codes.PermissionDenied)
		}
	}

	list := func(as string, req *pb.ListSessionsRequest) []*pb.Session {
		t.Helper()
		resp, err := tm.as(as).Sessions.ListSessions(tm.ctx, req)
		if err != nil {
			t.Fatalf("ListSessions as %s (%v): %v", as, req, err)
		}
		if resp.GetNextPageToken() != "" {
			t.Fatalf("ListSessions as %s (%v): unexpected next page", as, req)
		}
		return resp.GetSessions()
	}
	wantList := func(what string, got []*pb.Session, want ...*pb.Session) {
		t.Helper()
		if len(got) != len(want) {
			t.Errorf("%s: %d sessions, want %d", what, len(got), len(want))
			return
		}
		for i := range want {
			if d := diff(want[i], got[i]); d != "" {
				t.Errorf("%s: session %d (-want +got):\n%s", what, i, d)
			}
		}
	}
	// Newest first.
	all := []*pb.Session{s4, s3, s2, s1}
	wantList("dr", list("dr", &pb.ListSessionsRequest{}), all...)
	for _, as := range []string{"coord", "spa-coord"} {
		var want []*pb.Session
		for _, ss := range all {
			want = append(want, redacted(ss))
		}
		wantList(as, list(as, &pb.ListSessionsRequest{}), want...)
	}
	wantList("lmt", list("lmt", &pb.ListSessionsRequest{}), s3, s2, s1)
	wantList("lmt2", list("lmt2", &pb.ListSessionsRequest{}), s4)
	wantList("lmt2 filtering on lmt's referral", list("lmt2", &pb.ListSessionsRequest{Referral: r1.GetName()}))
	wantList("other-lmt", list("other-lmt", &pb.ListSessionsRequest{}))
	wantList("other-dr", list("other-dr", &pb.ListSessionsRequest{}))

	for _, c := range []struct {
		what string
		req  *pb.ListSessionsRequest
		want []*pb.Session
	}{
		{"referral", &pb.ListSessionsRequest{Referral: r1.GetName()}, []*pb.Session{s2, s1}},
		{"patient", &pb.ListSessionsRequest{Patient: p2.GetName()}, []*pb.Session{s3}},
		{"therapist", &pb.ListSessionsRequest{Therapist: tm.lmt2.GetName()}, []*pb.Session{s4}},
		// From inclusive, to exclusive.
		{"start time", &pb.ListSessionsRequest{StartTimeFrom: s2.GetStartTime(), StartTimeTo: s4.GetStartTime()}, []*pb.Session{s3, s2}},
		{"start time from", &pb.ListSessionsRequest{StartTimeFrom: s3.GetStartTime()}, []*pb.Session{s4, s3}},
		{"completed", &pb.ListSessionsRequest{State: pb.SessionState_SESSION_STATE_COMPLETED}, []*pb.Session{s1}},
		{"started", &pb.ListSessionsRequest{State: pb.SessionState_SESSION_STATE_STARTED}, []*pb.Session{s4, s2}},
		{"cancelled", &pb.ListSessionsRequest{State: pb.SessionState_SESSION_STATE_CANCELLED}, []*pb.Session{s3}},
		{"patient and state", &pb.ListSessionsRequest{Patient: tm.patient.GetName(), State: pb.SessionState_SESSION_STATE_STARTED}, []*pb.Session{s4, s2}},
	} {
		wantList("filter "+c.what, list("dr", c.req), c.want...)
	}

	// Keyset pagination, one at a time over lmt's three sessions.
	var paged []*pb.Session
	token := ""
	for page := 0; ; page++ {
		if page > 3 {
			t.Fatal("pagination does not end")
		}
		resp, err := tm.as("lmt").Sessions.ListSessions(tm.ctx, &pb.ListSessionsRequest{PageSize: 1, PageToken: token})
		if err != nil {
			t.Fatalf("page %d: %v", page, err)
		}
		if len(resp.GetSessions()) != 1 {
			t.Fatalf("page %d: %d sessions", page, len(resp.GetSessions()))
		}
		paged = append(paged, resp.GetSessions()...)
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
		if page == 0 {
			// A token is bound to the filters it was issued for.
			_, err := tm.as("lmt").Sessions.ListSessions(tm.ctx, &pb.ListSessionsRequest{PageSize: 1, PageToken: token, Referral: r1.GetName()})
			if f := fieldViolations(t, err); !slices.Contains(f, "page_token") {
				t.Fatalf("a token with other filters: %v", f)
			}
		}
	}
	wantList("pages", paged, s3, s2, s1)
}

// BenchmarkSessionCycle measures a therapist's whole visit through the API
// and the database: start under the gate, write the note, sign it.
func BenchmarkSessionCycle(b *testing.B) {
	tm := newTeam(b)
	ctx := tm.ctx
	lmt := tm.as("lmt")
	refs := benchReferrals(tm, b.N/52+1)
	note := &pb.SessionNote{
		Subjective: "Low back ache, better than last week.", Assessment: "Improving.", Plan: "Continue weekly.",
		PainBefore: i32(5), PainAfter: i32(3), Treatments: swedishLumbar, DurationMinutes: 50,
	}
	mask := fieldMask("subjective", "assessment", "plan", "pain_before", "pain_after", "treatments", "duration_minutes")
	must := func(err error) {
		b.Helper()
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		started, err := lmt.Sessions.StartSession(ctx, &pb.StartSessionRequest{Referral: refs[i/52].GetName(), Planned: swedishLumbar})
		must(err)
		updated, err := lmt.Sessions.UpdateSessionNote(ctx, &pb.UpdateSessionNoteRequest{
			Name: started.GetSession().GetName(), Note: note, UpdateMask: mask, Etag: started.GetSession().GetEtag(),
		})
		must(err)
		_, err = lmt.Sessions.SignSessionNote(ctx, &pb.SignSessionNoteRequest{Name: updated.GetSession().GetName(), Etag: updated.GetSession().GetEtag()})
		must(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "cycles/s")
}
