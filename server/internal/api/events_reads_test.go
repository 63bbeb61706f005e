package api_test

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	"github.com/careteam/careteam/client"
	pb "github.com/careteam/careteam/proto/careteam/v1"
)

// readResource reads, as c, the resource an event carries; ok is false
// when the read is refused.
func readResource(t *testing.T, c *client.Client, e *pb.Event) (proto.Message, bool) {
	t.Helper()
	ctx := t.Context()
	var got proto.Message
	var err error
	switch s := e.GetResourceState().(type) {
	case *pb.Event_ReferralState:
		var r *pb.GetReferralResponse
		r, err = c.Referrals.GetReferral(ctx, &pb.GetReferralRequest{Name: s.ReferralState.GetName()})
		got = r.GetReferral()
	case *pb.Event_DiagnosisState:
		var r *pb.GetDiagnosisResponse
		r, err = c.Clinical.GetDiagnosis(ctx, &pb.GetDiagnosisRequest{Name: s.DiagnosisState.GetName()})
		got = r.GetDiagnosis()
	case *pb.Event_ClearanceState:
		var r *pb.GetClearanceResponse
		r, err = c.Clinical.GetClearance(ctx, &pb.GetClearanceRequest{Name: s.ClearanceState.GetName()})
		got = r.GetClearance()
	case *pb.Event_SessionState:
		var r *pb.GetSessionResponse
		r, err = c.Sessions.GetSession(ctx, &pb.GetSessionRequest{Name: s.SessionState.GetName()})
		got = r.GetSession()
	default:
		return nil, true // consents have no read of their own
	}
	switch status.Code(err) {
	case codes.OK:
		return got, true
	case codes.PermissionDenied, codes.NotFound:
		return nil, false
	}
	t.Fatalf("reading %s: %v", e.GetResource(), err)
	return nil, false
}

func eventState(e *pb.Event) proto.Message {
	switch s := e.GetResourceState().(type) {
	case *pb.Event_ReferralState:
		return s.ReferralState
	case *pb.Event_DiagnosisState:
		return s.DiagnosisState
	case *pb.Event_ClearanceState:
		return s.ClearanceState
	case *pb.Event_SessionState:
		return s.SessionState
	}
	return nil
}

// assertEventsMatchReads checks, for each watcher, that every event they
// receive is of a resource they may read, and that the latest one of each
// resource shows it exactly as the read does, redacted the same way.
func assertEventsMatchReads(t *testing.T, tm *team, watchers ...string) {
	t.Helper()
	for _, who := range watchers {
		c := tm.as(who)
		latest := map[string]*pb.Event{}
		for _, e := range listAll(t, c, &pb.ListEventsRequest{}) {
			latest[e.GetResource()] = e
		}
		for name, e := range latest {
			read, ok := readResource(t, c, e)
			if !ok {
				t.Errorf("%s received %v of %s, which they may not read", who, e.GetType(), name)
				continue
			}
			if state := eventState(e); read != nil && state != nil {
				if d := diff(read, state); d != "" {
					t.Errorf("%s: %v of %s differs from the read (-read +event):\n%s", who, e.GetType(), name, d)
				}
			}
		}
	}
}

// TestEventsDeliverWhatReadsShow is the finding: a therapist of the
// practice, with no referral assigned, could not read the patient's
// diagnoses or clearances, yet received them (codes, display, the
// physician's clearance notes) through ListEvents and WatchEvents; and a
// coordinator received clinical free text verbatim.
func TestEventsDeliverWhatReadsShow(t *testing.T) {
	t.Parallel()
	tm := newTeam(t)
	// An unassigned referral to the practice shows its therapists the
	// patient, not the patient's clinical record.
	open := tm.newReferral()
	open.TargetTherapist, open.TargetOrganization = "", tm.spa
	r := tm.create(open)
	if _, err := (&clientSet{tm.as("dr"), r.GetName()}).submit(); err != nil {
		t.Fatal(err)
	}
	tm.diagnose(&pb.Diagnosis{Icd10Code: "M54.50", Display: "Low back pain", Notes: "Worse after lifting."})
	tm.clear(&pb.Clearance{Notes: "Avoid deep pressure over L4-L5."})
	// One assigned to lmt, whose therapist reads it all.
	tm.referralIn(pb.ReferralState_REFERRAL_STATE_ACCEPTED)

	assertEventsMatchReads(t, tm, "dr", "other-dr", "lmt", "lmt2", "other-lmt", "coord", "spa-coord")
}

// TestCoordinatorsReadNoClinicalFreeText is the finding: a coordinator
// received the therapist's questions and the physician's answers ("X-ray
// shows ..."), decline texts and cancel reasons verbatim, through
// GetReferral, ListReferrals and events. They read states, dates and coded
// reasons.
func TestCoordinatorsReadNoClinicalFreeText(t *testing.T) {
	t.Parallel()
	tm := newTeam(t)
	words := []string{"Any recent imaging?", "X-ray 2026-02", "Fully booked", "Patient moved away", "Lumbar spondylosis"}
	asked := tm.create(tm.newReferral())
	for _, step := range []func(*clientSet) (*pb.Referral, error){
		func(c *clientSet) (*pb.Referral, error) { c.c = tm.as("dr"); return c.submit() },
		func(c *clientSet) (*pb.Referral, error) { c.c = tm.as("lmt"); return c.ask() },
		func(c *clientSet) (*pb.Referral, error) { c.c = tm.as("dr"); return c.answer() },
		func(c *clientSet) (*pb.Referral, error) { c.c = tm.as("lmt"); return c.decline() },
	} {
		if _, err := step(&clientSet{name: asked.GetName()}); err != nil {
			t.Fatal(err)
		}
	}
	cancelled := tm.create(tm.newReferral())
	if _, err := (&clientSet{tm.as("dr"), cancelled.GetName()}).cancel(); err != nil {
		t.Fatal(err)
	}
	// A clearance asked for, suspended with an observation, and one revoked
	// with a reason: the clinicians' words.
	words = append(words, "Cleared for deep tissue?", "Bruising over the lumbar area", "Anticoagulants started")
	accepted := tm.referralIn(pb.ReferralState_REFERRAL_STATE_ACCEPTED)
	if _, err := tm.as("lmt").Clinical.RequestClearance(t.Context(), &pb.RequestClearanceRequest{Patient: tm.patient.GetName(),
		Referral: accepted.GetName(), Physician: tm.dr.GetName(), Question: "Cleared for deep tissue?"}); err != nil {
		t.Fatal(err)
	}
	suspended := tm.clear(&pb.Clearance{})
	if _, err := tm.as("lmt").Clinical.SuspendClearance(t.Context(), &pb.SuspendClearanceRequest{Name: suspended.GetName(),
		RedFlag: pb.RedFlag_RED_FLAG_INFECTION_SIGNS, Observation: "Bruising over the lumbar area"}); err != nil {
		t.Fatal(err)
	}
	revoked := tm.clear(&pb.Clearance{Referral: accepted.GetName(), EvaluatedRedFlags: []pb.RedFlag{pb.RedFlag_RED_FLAG_INFECTION_SIGNS}})
	if _, err := tm.as("dr").Clinical.RevokeClearance(t.Context(), &pb.RevokeClearanceRequest{Name: revoked.GetName(), Reason: "Anticoagulants started"}); err != nil {
		t.Fatal(err)
	}
	leaks := func(where string, m proto.Message) {
		t.Helper()
		text := prototext.Format(m)
		for _, w := range words {
			if strings.Contains(text, w) {
				t.Errorf("%s shows a coordinator %q", where, w)
			}
		}
	}
	for _, coord := range []string{"coord", "spa-coord"} {
		c := tm.as(coord)
		for _, r := range []*pb.Referral{asked, cancelled} {
			got, err := c.Referrals.GetReferral(t.Context(), &pb.GetReferralRequest{Name: r.GetName()})
			if err != nil {
				t.Fatal(err)
			}
			leaks("GetReferral", got)
		}
		list, err := c.Referrals.ListReferrals(t.Context(), &pb.ListReferralsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		leaks("ListReferrals", list)
		clearances, err := c.Clinical.ListClearances(t.Context(), &pb.ListClearancesRequest{Patient: tm.patient.GetName()})
		if err != nil {
			t.Fatal(err)
		}
		leaks("ListClearances", clearances)
		for _, e := range listAll(t, c, &pb.ListEventsRequest{}) {
			leaks("ListEvents", e)
		}
		got, _ := c.Referrals.GetReferral(t.Context(), &pb.GetReferralRequest{Name: asked.GetName()})
		h := got.GetReferral().GetHistory()
		if last := h[len(h)-1]; last.GetReason() != "NO_CAPACITY" || got.GetReferral().GetDeclineReason() != pb.DeclineReason_DECLINE_REASON_NO_CAPACITY {
			t.Errorf("%s lost the coded decline reason: %v", coord, last)
		}
	}
	// The clinicians read every word.
	got, err := tm.as("dr").Referrals.GetReferral(t.Context(), &pb.GetReferralRequest{Name: asked.GetName()})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range words[:3] {
		if !strings.Contains(prototext.Format(got), w) {
			t.Errorf("the physician does not read %q", w)
		}
	}
	assertEventsMatchReads(t, tm, "coord", "spa-coord", "dr", "lmt")
}

// TestClearanceRequestGivesOnlyWhatAnswersIt is the finding: a clearance
// request let a therapist or coordinator name any physician, who then
// gained lasting read access to the patient, other physicians' notes
// included. The named physician reads the patient's demographics and the
// request, and the record only once they take the patient on.
func TestClearanceRequestGivesOnlyWhatAnswersIt(t *testing.T) {
	t.Parallel()
	tm := newTeam(t)
	h := tm.harness
	r := tm.referralIn(pb.ReferralState_REFERRAL_STATE_ACCEPTED)
	diagnosis := tm.diagnose(&pb.Diagnosis{Icd10Code: "M54.50", Display: "Low back pain", Notes: "Private note of the referring physician."})
	hilltop := h.org("Hilltop", physicianPractice)
	namedDr := h.practitioner(hilltop, pb.Role_ROLE_PHYSICIAN, "named-dr")
	named := tm.as("named-dr")
	ctx := t.Context()

	req, err := tm.as("lmt").Clinical.RequestClearance(ctx, &pb.RequestClearanceRequest{Patient: tm.patient.GetName(), Referral: r.GetName(),
		Physician: namedDr.GetName(), Question: "Cleared for deep tissue?"})
	if err != nil {
		t.Fatal(err)
	}
	request := req.GetClearance().GetName()

	if _, err := named.Patients.GetPatient(ctx, &pb.GetPatientRequest{Name: tm.patient.GetName()}); err != nil {
		t.Fatalf("the named physician reads the demographics: %v", err)
	}
	if _, err := named.Clinical.GetClearance(ctx, &pb.GetClearanceRequest{Name: request}); err != nil {
		t.Fatalf("the named physician reads the request: %v", err)
	}
	_, err = named.Clinical.GetDiagnosis(ctx, &pb.GetDiagnosisRequest{Name: diagnosis})
	wantCode(t, err, codes.PermissionDenied)
	if got, err := named.Clinical.ListDiagnoses(ctx, &pb.ListDiagnosesRequest{Patient: tm.patient.GetName()}); err == nil && len(got.GetDiagnoses()) > 0 {
		t.Errorf("the named physician lists %d diagnoses", len(got.GetDiagnoses()))
	}
	got, err := named.Clinical.ListClearances(ctx, &pb.ListClearancesRequest{Patient: tm.patient.GetName()})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range got.GetClearances() {
		if c.GetName() != request {
			t.Errorf("the named physician lists another physician's clearance %s", c.GetName())
		}
	}
	_, err = named.Referrals.GetReferral(ctx, &pb.GetReferralRequest{Name: r.GetName()})
	wantCode(t, err, codes.PermissionDenied)
	assertEventsMatchReads(t, tm, "named-dr")
	// Nor can they write their way in, and so to the record, by anything
	// but the answer.
	_, err = named.Clinical.RecordDiagnosis(ctx, &pb.RecordDiagnosisRequest{Diagnosis: &pb.Diagnosis{
		Patient: tm.patient.GetName(), Icd10Code: "M54.50", Display: "x"}})
	wantCode(t, err, codes.PermissionDenied)
	in := tm.newReferral()
	in.ReferringPhysician = namedDr.GetName()
	_, err = named.Referrals.CreateReferral(ctx, &pb.CreateReferralRequest{Referral: in})
	wantCode(t, err, codes.PermissionDenied)
	_, err = named.Clinical.IssueClearance(ctx, &pb.IssueClearanceRequest{Clearance: &pb.Clearance{
		Patient: tm.patient.GetName(), Decision: pb.ClearanceDecision_CLEARANCE_DECISION_NOT_CLEARED}})
	wantCode(t, err, codes.PermissionDenied)
	_, err = named.Clinical.GetDiagnosis(ctx, &pb.GetDiagnosisRequest{Name: diagnosis})
	wantCode(t, err, codes.PermissionDenied)

	// Answering takes the patient on: now the record is theirs to read.
	if _, err := named.Clinical.IssueClearance(ctx, &pb.IssueClearanceRequest{RequestedClearance: request, Clearance: &pb.Clearance{
		Patient: tm.patient.GetName(), Decision: pb.ClearanceDecision_CLEARANCE_DECISION_CLEARED}}); err != nil {
		t.Fatal(err)
	}
	if _, err := named.Clinical.GetDiagnosis(ctx, &pb.GetDiagnosisRequest{Name: diagnosis}); err != nil {
		t.Fatalf("after answering: %v", err)
	}
}
