package api_test

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/careteam/careteam/client"
	pb "github.com/careteam/careteam/proto/careteam/v1"
)

// world is a team that a seeded random walk has filled with referrals in
// every state, diagnoses, clearances, requests and consents, by every role.
type world struct {
	*team
	rng       *rand.Rand
	patients  []*pb.Patient
	referrals []string
	resources []string // every resource made, referrals included
	watchers  []string
}

// eventNaming is an event that only names the resource name, for
// readResource.
func eventNaming(name string) *pb.Event {
	e := &pb.Event{Resource: name}
	switch {
	case strings.HasPrefix(name, "referrals/"):
		e.ResourceState = &pb.Event_ReferralState{ReferralState: &pb.Referral{Name: name}}
	case strings.HasPrefix(name, "diagnoses/"):
		e.ResourceState = &pb.Event_DiagnosisState{DiagnosisState: &pb.Diagnosis{Name: name}}
	case strings.HasPrefix(name, "clearances/"):
		e.ResourceState = &pb.Event_ClearanceState{ClearanceState: &pb.Clearance{Name: name}}
	default:
		e.ResourceState = &pb.Event_SessionState{SessionState: &pb.Session{Name: name}}
	}
	return e
}

func newWorld(t *testing.T, seed uint64) *world {
	tm := newTeam(t)
	h := tm.harness
	hilltop := h.org("Hilltop", physicianPractice)
	h.practitioner(hilltop, pb.Role_ROLE_PHYSICIAN, "hilltop-dr")
	h.practitioner(tm.clinic, pb.Role_ROLE_PHYSICIAN, "dr3")
	w := &world{team: tm, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		watchers: []string{"dr", "other-dr", "dr3", "hilltop-dr", "lmt", "lmt2", "other-lmt", "coord", "spa-coord"}}
	// A second patient, of the same clinic, that some walks never touch.
	w.patients = []*pb.Patient{tm.patient, h.patient("other-dr", "MRN-200")}
	return w
}

func (w *world) pick(xs ...string) string { return xs[w.rng.IntN(len(xs))] }

// step takes one random action; one the rules refuse is simply not taken.
func (w *world) step() {
	ctx := w.ctx
	pt := w.patients[w.rng.IntN(len(w.patients))].GetName()
	made := func(name string, err error) {
		if err == nil && name != "" {
			w.resources = append(w.resources, name)
		}
	}
	var ref string
	if len(w.referrals) > 0 {
		ref = w.referrals[w.rng.IntN(len(w.referrals))]
	}
	c := func(who string) *client.Client { return w.as(who) }
	switch w.rng.IntN(9) {
	case 0, 1: // a referral, to a therapist or to a practice
		in := w.newReferral()
		in.Patient = pt
		switch w.rng.IntN(3) {
		case 0:
			in.TargetTherapist = w.pick(w.lmt.GetName(), w.lmt2.GetName(), w.otherLmt.GetName())
		case 1:
			in.TargetTherapist, in.TargetOrganization = "", w.pick(w.spa, w.otherSpa)
		}
		by := w.pick("dr", "coord")
		if by == "coord" {
			in.ReferringPhysician = w.dr.GetName()
		}
		r, err := c(by).Referrals.CreateReferral(ctx, &pb.CreateReferralRequest{Referral: in})
		if err == nil {
			w.referrals = append(w.referrals, r.GetReferral().GetName())
		}
		made(r.GetReferral().GetName(), err)
	case 2: // move a referral on
		if ref == "" {
			return
		}
		cs := &clientSet{name: ref}
		steps := []func() (*pb.Referral, error){cs.submit, cs.accept, cs.decline, cs.ask, cs.answer, cs.cancel}
		cs.c = c(w.pick("dr", "lmt", "lmt2", "other-lmt", "coord"))
		_, _ = steps[w.rng.IntN(len(steps))]()
	case 3: // route one
		if ref == "" {
			return
		}
		_, _ = c(w.pick("coord", "spa-coord", "dr")).Referrals.AssignReferral(ctx, &pb.AssignReferralRequest{
			Name: ref, Therapist: w.pick(w.lmt.GetName(), w.lmt2.GetName(), w.otherLmt.GetName())})
	case 4: // a diagnosis
		d, err := c(w.pick("dr", "other-dr", "dr3")).Clinical.RecordDiagnosis(ctx, &pb.RecordDiagnosisRequest{Diagnosis: &pb.Diagnosis{
			Patient: pt, Icd10Code: w.pick("M54.50", "M47.816", "G83.4"), Display: "x", Notes: "private " + fmt.Sprint(w.rng.IntN(100))}})
		made(d.GetDiagnosis().GetName(), err)
	case 5: // a clearance
		cl, err := c(w.pick("dr", "other-dr")).Clinical.IssueClearance(ctx, &pb.IssueClearanceRequest{Clearance: &pb.Clearance{
			Patient: pt, Decision: pb.ClearanceDecision_CLEARANCE_DECISION_CLEARED, Notes: "note",
			EvaluatedRedFlags: []pb.RedFlag{pb.RedFlag_RED_FLAG_CAUDA_EQUINA_SYMPTOMS}}})
		made(cl.GetClearance().GetName(), err)
	case 6: // a request for one, naming anyone
		named := w.pick("dr", "other-dr", "dr3", "hilltop-dr")
		pr, err := w.as(rootAdmin).Directory.ListPractitioners(ctx, &pb.ListPractitionersRequest{Role: pb.Role_ROLE_PHYSICIAN})
		if err != nil {
			return
		}
		for _, p := range pr.GetPractitioners() {
			if p.GetSubject() == named {
				rq, err := c(w.pick("lmt", "lmt2", "coord", "spa-coord")).Clinical.RequestClearance(ctx, &pb.RequestClearanceRequest{
					Patient: pt, Referral: ref, Physician: p.GetName(), Question: "Cleared?"})
				made(rq.GetClearance().GetName(), err)
			}
		}
	case 7: // a session, where the gate lets one start
		if ref != "" {
			s, err := c(w.pick("lmt", "lmt2")).Sessions.StartSession(ctx, &pb.StartSessionRequest{Referral: ref, Planned: swedishLumbar})
			made(s.GetSession().GetName(), err)
		}
	case 8: // consent
		_, _ = c(w.pick("lmt", "lmt2")).Clinical.RecordConsent(ctx, &pb.RecordConsentRequest{Consent: &pb.Consent{
			Patient: pt, FormVersion: "2026-01", SignedDate: w.clock.Now().Format("2006-01-02")}})
	}
}

// checkSince checks the events written after cursor (one step's), as each
// watcher lists them right after: a resource's newest event of the step
// is delivered to a watcher if and only if they may read the resource
// then, and shows it as that read does. Listing and the live feed filter
// and redact with the same audience tokens and RedactEvent (see
// events_delivery_test.go for the live path). It returns the newest cursor.
func (w *world) checkSince(t *testing.T, cursor int64) int64 {
	t.Helper()
	rows, err := w.pool.Query(w.ctx, `SELECT cursor, resource FROM events WHERE cursor > $1 AND type <> 'PRACTITIONER_CHANGED' ORDER BY cursor`, cursor)
	if err != nil {
		t.Fatal(err)
	}
	written := map[string]int64{} // resource -> its newest event
	newest := cursor
	for rows.Next() {
		var c int64
		var resource string
		if err := rows.Scan(&c, &resource); err != nil {
			t.Fatal(err)
		}
		written[resource], newest = c, c
	}
	rows.Close()
	for _, who := range w.watchers {
		c := w.as(who)
		delivered := map[string]*pb.Event{}
		for _, e := range listThrough(t, c, &pb.ListEventsRequest{AfterCursor: cursor}, newest) {
			delivered[e.GetResource()] = e
		}
		for resource := range written {
			e, got := delivered[resource]
			if e == nil {
				e = eventNaming(resource)
			}
			read, may := readResource(t, c, e)
			switch {
			case got && !may:
				t.Errorf("%s received %v of %s, which they may not read", who, e.GetType(), resource)
			case !got && may && !strings.HasPrefix(resource, "consents/"):
				t.Errorf("%s may read %s but received no event of it", who, resource)
			case got && read != nil:
				if d := diff(read, eventState(e)); d != "" {
					t.Errorf("%s: %v of %s differs from the read (-read +event):\n%s", who, e.GetType(), resource, d)
				}
			}
		}
	}
	return newest
}

// TestGeneratedWorlds: after every step of a random walk, for every
// watcher and every resource the step wrote an event of, its newest event
// is delivered if and only if a read of the resource is allowed, and shows
// the resource as that read does.
func TestGeneratedWorlds(t *testing.T) {
	t.Parallel()
	for seed := range uint64(4) {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, seed)
			var cursor int64
			for range 60 {
				w.step()
				cursor = w.checkSince(t, cursor)
			}
		})
	}
}
