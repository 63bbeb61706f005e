package api_test

import (
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/careteam/careteam/proto/careteam/v1"
)

// startAt starts a session under r as lmt, with a scheduled start time the
// caller chose.
func (tm *team) startAt(r *pb.Referral, at time.Time) (*pb.Session, error) {
	resp, err := tm.as("lmt").Sessions.StartSession(tm.ctx, &pb.StartSessionRequest{
		Referral: r.GetName(), Planned: swedishLumbar, ScheduledStartTime: timestamppb.New(at)})
	return resp.GetSession(), err
}

// diagnose records a diagnosis of the team's patient by dr and returns
// its name.
func (tm *team) diagnose(d *pb.Diagnosis) string {
	tm.t.Helper()
	d.Patient = tm.patient.GetName()
	resp, err := tm.as("dr").Clinical.RecordDiagnosis(tm.ctx, &pb.RecordDiagnosisRequest{Diagnosis: d})
	if err != nil {
		tm.t.Fatalf("RecordDiagnosis: %v", err)
	}
	return resp.GetDiagnosis().GetName()
}

// uuidOf is the id in a resource name.
func uuidOf(t *testing.T, name string) uuid.UUID {
	t.Helper()
	id, err := uuid.Parse(name[strings.LastIndexByte(name, '/')+1:])
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// preconditionSubjects returns the subjects of err's violations of type
// typ, sorted.
func preconditionSubjects(t *testing.T, err error, typ string) []string {
	t.Helper()
	st := wantCode(t, err, codes.FailedPrecondition)
	var out []string
	for _, d := range st.Details() {
		if pf, ok := d.(*errdetails.PreconditionFailure); ok {
			for _, v := range pf.GetViolations() {
				if v.GetType() == typ {
					out = append(out, v.GetSubject())
				}
			}
		}
	}
	slices.Sort(out)
	return out
}

func (tm *team) clearance(c *pb.Clearance) *pb.Clearance {
	tm.t.Helper()
	got, err := tm.as("dr").Clinical.GetClearance(tm.ctx, &pb.GetClearanceRequest{Name: c.GetName()})
	if err != nil {
		tm.t.Fatal(err)
	}
	return got.GetClearance()
}

// TestStartIsJudgedAtTheServerClock: a scheduled_start_time the caller
// chooses never moves what the gate judges, and a session never starts
// ahead of time.
func TestStartIsJudgedAtTheServerClock(t *testing.T) {
	t.Parallel()

	t.Run("a past time does not revive an expired clearance", func(t *testing.T) {
		t.Parallel()
		tm := newTeam(t)
		r := tm.referralIn(pb.ReferralState_REFERRAL_STATE_ACCEPTED)
		tm.consent()
		now := tm.clock.Now()
		c := tm.clear(&pb.Clearance{ValidUntil: timestamppb.New(now.Add(2 * time.Hour))})
		tm.clock.Advance(3 * time.Hour)
		// Three hours ago, within the charting bound, the clearance was in
		// force.
		_, err := tm.startAt(r, now.Add(time.Hour))
		if got := preconditionTypes(t, err); !slices.Equal(got, []string{"CLEARANCE_EXPIRED"}) {
			t.Fatalf("violations %v", got)
		}
		if n := tm.count(`SELECT count(*) FROM sessions WHERE clearance_id = $1`, uuidOf(t, c.GetName())); n != 0 {
			t.Fatalf("%d sessions under the expired clearance", n)
		}
	})

	t.Run("a past time does not revive a lapsed licence", func(t *testing.T) {
		t.Parallel()
		tm := newTeam(t)
		r, _ := tm.ready()
		lmt := proto.CloneOf(tm.lmt)
		lmt.Licence = &pb.Licence{Number: "LMT-lmt", Jurisdiction: "US-WA", ExpireDate: tm.clock.Now().Format("2006-01-02")}
		if _, err := tm.as(rootAdmin).Directory.UpdatePractitioner(tm.ctx, &pb.UpdatePractitionerRequest{
			Practitioner: lmt, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"licence"}}}); err != nil {
			t.Fatal(err)
		}
		// 09:00 on the last day of the licence, then 00:30 the next day;
		// the session claims to have been scheduled for 23:00 the day before.
		lastDay := tm.clock.Now()
		tm.clock.Advance(15*time.Hour + 30*time.Minute)
		_, err := tm.startAt(r, lastDay.Add(14*time.Hour))
		if got := preconditionTypes(t, err); !slices.Equal(got, []string{"LICENCE_EXPIRED"}) {
			t.Fatalf("violations %v", got)
		}
	})

	t.Run("a time outside the charting bounds is refused and uses no visit", func(t *testing.T) {
		t.Parallel()
		tm := newTeam(t)
		r, _ := tm.ready()
		now := tm.clock.Now()
		for _, at := range []time.Time{now.Add(6 * time.Minute), now.AddDate(0, 1, 0), now.Add(-12*time.Hour - time.Minute), now.AddDate(-1, 0, 0)} {
			_, err := tm.startAt(r, at)
			if got := fieldViolations(t, err); !slices.Equal(got, []string{"scheduled_start_time"}) {
				t.Errorf("%s: violations %v", at, got)
			}
		}
		if got := tm.referral(r.GetName()); got.GetUsedVisits() != 0 || got.GetState() != pb.ReferralState_REFERRAL_STATE_ACCEPTED {
			t.Fatalf("refused starts changed the referral: %v", got)
		}
		_, err := tm.as("lmt").Clinical.CheckClearance(tm.ctx, &pb.CheckClearanceRequest{
			Referral: r.GetName(), Planned: swedishLumbar, SessionTime: timestamppb.New(now.AddDate(0, 0, -30))})
		if got := fieldViolations(t, err); !slices.Equal(got, []string{"session_time"}) {
			t.Errorf("check at a chosen time: violations %v", got)
		}
	})

	t.Run("a time within the bounds is charted; the start is the server's", func(t *testing.T) {
		t.Parallel()
		tm := newTeam(t)
		r, _ := tm.ready()
		now := tm.clock.Now()
		for _, at := range []time.Time{now.Add(5 * time.Minute), now.Add(-11 * time.Hour)} {
			s, err := tm.startAt(r, at)
			if err != nil {
				t.Fatalf("%s: %v", at, err)
			}
			if !s.GetStartTime().AsTime().Equal(now) || !s.GetScheduledStartTime().AsTime().Equal(at) {
				t.Errorf("start %s, scheduled %s; want %s and %s", s.GetStartTime().AsTime(), s.GetScheduledStartTime().AsTime(), now, at)
			}
		}
	})

	t.Run("a revocation stops a session that would have started later", func(t *testing.T) {
		t.Parallel()
		tm := newTeam(t)
		r, c := tm.ready()
		// Asking to start an hour from now fails at once: it cannot take a
		// visit ahead of a revocation that comes in between.
		if _, err := tm.startAt(r, tm.clock.Now().Add(time.Hour)); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("future start: %v", err)
		}
		if _, err := tm.as("dr").Clinical.RevokeClearance(tm.ctx, &pb.RevokeClearanceRequest{Name: c.GetName(), Reason: "New imaging."}); err != nil {
			t.Fatal(err)
		}
		tm.clock.Advance(time.Hour)
		_, err := tm.startAt(r, tm.clock.Now())
		if got := preconditionTypes(t, err); !slices.Equal(got, []string{"CLEARANCE_REVOKED"}) {
			t.Fatalf("violations %v", got)
		}
	})
}

// TestRedFlagAfterClearance: a red flag recorded after a clearance was
// issued makes it insufficient at once, until a physician clears again
// attesting it.
func TestRedFlagAfterClearance(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// record records the red flag and returns the diagnosis' name;
		// earlier is a diagnosis without one, recorded before the clearance.
		record func(tm *team, earlier string) string
		flag   pb.RedFlag
	}{
		{"a new diagnosis with a red flag", func(tm *team, _ string) string {
			return tm.diagnose(&pb.Diagnosis{Icd10Code: "M54.50", Display: "Low back pain", RedFlags: []pb.RedFlag{pb.RedFlag_RED_FLAG_SUSPECTED_FRACTURE}})
		}, pb.RedFlag_RED_FLAG_SUSPECTED_FRACTURE},
		{"a new diagnosis whose code carries one", func(tm *team, _ string) string {
			return tm.diagnose(&pb.Diagnosis{Icd10Code: "G83.4", Display: "Cauda equina syndrome"})
		}, pb.RedFlag_RED_FLAG_CAUDA_EQUINA_SYMPTOMS},
		{"a diagnosis updated to carry one", func(tm *team, name string) string {
			resp, err := tm.as("dr").Clinical.GetDiagnosis(tm.ctx, &pb.GetDiagnosisRequest{Name: name})
			if err != nil {
				tm.t.Fatal(err)
			}
			d := resp.GetDiagnosis()
			d.RedFlags = []pb.RedFlag{pb.RedFlag_RED_FLAG_INFECTION_SIGNS}
			if _, err := tm.as("dr").Clinical.UpdateDiagnosis(tm.ctx, &pb.UpdateDiagnosisRequest{Diagnosis: d,
				UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"red_flags"}}}); err != nil {
				tm.t.Fatal(err)
			}
			return name
		}, pb.RedFlag_RED_FLAG_INFECTION_SIGNS},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tm := newTeam(t)
			earlier := tm.diagnose(&pb.Diagnosis{Icd10Code: "M54.50", Display: "Low back pain"})
			r, c := tm.ready()
			if _, err := tm.start("lmt", r, swedishLumbar); err != nil {
				t.Fatal(err)
			}
			tm.clock.Advance(time.Hour)
			diagnosis := tc.record(tm, earlier)

			// The gate refuses, naming the diagnosis.
			_, err := tm.start("lmt", r, swedishLumbar)
			st := wantCode(t, err, codes.FailedPrecondition)
			if got := preconditionSubjects(t, err, "RED_FLAG_NOT_EVALUATED"); !slices.Equal(got, []string{diagnosis}) {
				t.Fatalf("RED_FLAG_NOT_EVALUATED subjects %v: %s", got, st.Message())
			}
			// The referral is held for the physician, who is told.
			if got := tm.referral(r.GetName()); got.GetState() != pb.ReferralState_REFERRAL_STATE_ON_HOLD || !got.GetAttentionRequired() {
				t.Fatalf("referral %v, attention %v", got.GetState(), got.GetAttentionRequired())
			}
			var alerts int
			for _, e := range listAll(t, tm.as("dr"), &pb.ListEventsRequest{}) {
				if e.GetType() == pb.EventType_EVENT_TYPE_CLEARANCE_INSUFFICIENT && e.GetResource() == c.GetName() {
					alerts++
				}
			}
			if alerts != 1 {
				t.Fatalf("the physician sees %d CLEARANCE_INSUFFICIENT events", alerts)
			}
			// Clearing again must attest it; then the referral resumes.
			_, err = tm.as("dr").Clinical.IssueClearance(tm.ctx, &pb.IssueClearanceRequest{Clearance: &pb.Clearance{
				Patient: tm.patient.GetName(), Decision: pb.ClearanceDecision_CLEARANCE_DECISION_CLEARED}})
			if got := preconditionSubjects(t, err, "RED_FLAG_NOT_EVALUATED"); !slices.Equal(got, []string{diagnosis}) {
				t.Fatalf("re-clearing without the attestation: %v", got)
			}
			tm.clear(&pb.Clearance{EvaluatedRedFlags: []pb.RedFlag{tc.flag}})
			if got := tm.referral(r.GetName()); got.GetState() != pb.ReferralState_REFERRAL_STATE_IN_PROGRESS {
				t.Fatalf("referral after re-clearance: %v", got.GetState())
			}
			if _, err := tm.start("lmt", r, swedishLumbar); err != nil {
				t.Fatal(err)
			}
		})
	}

	t.Run("the code's red flag is recorded whatever the physician ticked", func(t *testing.T) {
		t.Parallel()
		tm := newTeam(t)
		resp, err := tm.as("dr").Clinical.RecordDiagnosis(tm.ctx, &pb.RecordDiagnosisRequest{Diagnosis: &pb.Diagnosis{
			Patient: tm.patient.GetName(), Icd10Code: "G834", Display: "Cauda equina syndrome"}})
		if err != nil {
			t.Fatal(err)
		}
		if got := resp.GetDiagnosis().GetRedFlags(); !slices.Equal(got, []pb.RedFlag{pb.RedFlag_RED_FLAG_CAUDA_EQUINA_SYMPTOMS}) {
			t.Fatalf("red flags %v", got)
		}
	})

	t.Run("a resolved diagnosis no longer stands", func(t *testing.T) {
		t.Parallel()
		tm := newTeam(t)
		r, _ := tm.ready()
		name := tm.diagnose(&pb.Diagnosis{Icd10Code: "M54.50", Display: "Low back pain", RedFlags: []pb.RedFlag{pb.RedFlag_RED_FLAG_SIGNIFICANT_TRAUMA}})
		resp, err := tm.as("dr").Clinical.GetDiagnosis(tm.ctx, &pb.GetDiagnosisRequest{Name: name})
		if err != nil {
			t.Fatal(err)
		}
		d := resp.GetDiagnosis()
		d.ClinicalStatus = pb.ClinicalStatus_CLINICAL_STATUS_RESOLVED
		if _, err := tm.as("dr").Clinical.UpdateDiagnosis(tm.ctx, &pb.UpdateDiagnosisRequest{Diagnosis: d,
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"clinical_status"}}}); err != nil {
			t.Fatal(err)
		}
		// The hold stays until a physician looks, but the next clearance
		// need not attest a flag that no longer stands.
		tm.clear(&pb.Clearance{})
		if _, err := tm.start("lmt", r, swedishLumbar); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("NOT_CLEARED needs no attestation", func(t *testing.T) {
		t.Parallel()
		tm := newTeam(t)
		tm.diagnose(&pb.Diagnosis{Icd10Code: "G83.4", Display: "Cauda equina syndrome"})
		c := tm.clear(&pb.Clearance{Decision: pb.ClearanceDecision_CLEARANCE_DECISION_NOT_CLEARED})
		if c.GetStatus() != pb.ClearanceStatus_CLEARANCE_STATUS_ACTIVE {
			t.Fatalf("status %v", c.GetStatus())
		}
	})

	t.Run("a red flag racing starts: no session starts after it", func(t *testing.T) {
		t.Parallel()
		tm := newTeam(t)
		r, _ := tm.ready()
		var wg sync.WaitGroup
		starts := make([]error, 5)
		for i := range starts {
			wg.Go(func() { _, starts[i] = tm.start("lmt", r, swedishLumbar) })
		}
		wg.Go(func() {
			tm.diagnose(&pb.Diagnosis{Icd10Code: "M80.08XA", Display: "Osteoporosis with fracture"})
		})
		wg.Wait()
		var started int
		for _, err := range starts {
			switch {
			case err == nil:
				started++
			case !slices.Contains(preconditionTypes(t, err), "RED_FLAG_NOT_EVALUATED"):
				t.Errorf("start refused for another reason: %v", err)
			}
		}
		// Events are numbered in commit order: every session that started
		// committed before the red flag.
		if n := tm.count(`SELECT count(*) FROM events s JOIN events i ON i.patient_id = s.patient_id
			WHERE s.type = 'SESSION_STARTED' AND i.type = 'CLEARANCE_INSUFFICIENT' AND s.cursor > i.cursor`); n != 0 {
			t.Fatalf("%d sessions started after the red flag was recorded", n)
		}
		if n := tm.count(`SELECT count(*) FROM sessions WHERE referral_id = $1`, uuidOf(t, r.GetName())); n != started {
			t.Fatalf("%d sessions, %d starts succeeded", n, started)
		}
	})
}

// TestScheduledClearance: a renewal whose window opens later leaves the
// clearance in force until then, and takes over at that moment.
func TestScheduledClearance(t *testing.T) {
	t.Parallel()
	tm := newTeam(t)
	r, current := tm.ready()
	opens := tm.clock.Now().AddDate(0, 0, 30)
	renewal := tm.clear(&pb.Clearance{ValidFrom: timestamppb.New(opens), ValidUntil: timestamppb.New(opens.AddDate(0, 0, 90))})
	if renewal.GetStatus() != pb.ClearanceStatus_CLEARANCE_STATUS_SCHEDULED {
		t.Fatalf("renewal %v", renewal.GetStatus())
	}
	if got := tm.clearance(current); got.GetStatus() != pb.ClearanceStatus_CLEARANCE_STATUS_ACTIVE ||
		got.GetSupersededBy() != renewal.GetName() || !got.GetSupersedeTime().AsTime().Equal(opens) {
		t.Fatalf("current clearance %v, superseded by %q at %v", got.GetStatus(), got.GetSupersededBy(), got.GetSupersedeTime())
	}
	listed := func(st pb.ClearanceStatus) []string {
		resp, err := tm.as("dr").Clinical.ListClearances(tm.ctx, &pb.ListClearancesRequest{Patient: tm.patient.GetName(), Status: st})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, c := range resp.GetClearances() {
			names = append(names, c.GetName())
		}
		return names
	}
	if got := listed(pb.ClearanceStatus_CLEARANCE_STATUS_ACTIVE); !slices.Equal(got, []string{current.GetName()}) {
		t.Errorf("active %v", got)
	}
	if got := listed(pb.ClearanceStatus_CLEARANCE_STATUS_SCHEDULED); !slices.Equal(got, []string{renewal.GetName()}) {
		t.Errorf("scheduled %v", got)
	}
	s, err := tm.start("lmt", r, swedishLumbar)
	if err != nil || s.GetClearance() != current.GetName() {
		t.Fatalf("session before the window opens: %v under %s", err, s.GetClearance())
	}

	t.Run("revoking a second renewal leaves the first scheduled", func(t *testing.T) {
		other := tm.clear(&pb.Clearance{ValidFrom: timestamppb.New(opens.Add(time.Hour)), ValidUntil: timestamppb.New(opens.AddDate(0, 0, 60))})
		if got := tm.clearance(renewal); got.GetStatus() != pb.ClearanceStatus_CLEARANCE_STATUS_SUPERSEDED {
			t.Fatalf("the first renewal is %v once another is scheduled", got.GetStatus())
		}
		if _, err := tm.as("dr").Clinical.RevokeClearance(tm.ctx, &pb.RevokeClearanceRequest{Name: other.GetName(), Reason: "Entered twice."}); err != nil {
			t.Fatal(err)
		}
		if got := tm.clearance(current); got.GetStatus() != pb.ClearanceStatus_CLEARANCE_STATUS_ACTIVE || got.GetSupersededBy() != "" {
			t.Fatalf("current clearance %v, superseded by %q", got.GetStatus(), got.GetSupersededBy())
		}
		// Schedule the renewal again, as the physician would.
		renewal = tm.clear(&pb.Clearance{ValidFrom: timestamppb.New(opens), ValidUntil: timestamppb.New(opens.AddDate(0, 0, 90))})
	})

	t.Run("the renewal governs from the moment its window opens", func(t *testing.T) {
		tm.clock.Set(opens)
		// No sweep has run: the gate judges the windows itself.
		s, err := tm.start("lmt", r, swedishLumbar)
		if err != nil || s.GetClearance() != renewal.GetName() {
			t.Fatalf("session when the window opens: %v under %s", err, s.GetClearance())
		}
		if got := tm.clearance(current); got.GetStatus() != pb.ClearanceStatus_CLEARANCE_STATUS_SUPERSEDED {
			t.Errorf("the replaced clearance reads %v", got.GetStatus())
		}
		if got := tm.clearance(renewal); got.GetStatus() != pb.ClearanceStatus_CLEARANCE_STATUS_ACTIVE {
			t.Errorf("the renewal reads %v", got.GetStatus())
		}
		n, err := tm.app.Service().SettleScheduledClearances(tm.ctx, 10)
		if err != nil || n != 1 {
			t.Fatalf("settled %d patients: %v", n, err)
		}
		if n := tm.count(`SELECT count(*) FROM clearances WHERE id = $1 AND status = 'ACTIVE'`, uuidOf(t, renewal.GetName())); n != 1 {
			t.Error("the renewal is not stored ACTIVE after the sweep")
		}
		if n := tm.count(`SELECT count(*) FROM events WHERE type = 'CLEARANCE_IN_FORCE' AND resource = $1`, renewal.GetName()); n != 1 {
			t.Errorf("%d CLEARANCE_IN_FORCE events", n)
		}
		if n, err := tm.app.Service().SettleScheduledClearances(tm.ctx, 10); err != nil || n != 0 {
			t.Errorf("a second sweep settled %d: %v", n, err)
		}
	})
}
