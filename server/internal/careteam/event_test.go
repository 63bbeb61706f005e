package careteam

import (
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/google/uuid"
)

// TestViewDependsOnTheViewClassAlone: the event hub shares one view of an
// event among every watcher of a view class, so two readers of one class,
// whatever else tells them apart, must see every event alike; and a view
// leaves the shared original as it was.
func TestViewDependsOnTheViewClassAlone(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	id := func() uuid.UUID { return uuid.UUID(randomBytes(rng)) }
	text := func(what string) string { return what + " " + uuid.UUID(randomBytes(rng)).String() }
	events := []*Event{
		{ID: id(), Type: "REFERRAL_DECLINED", Referral: &Referral{
			ID: id(), ClinicalNotes: text("notes"), DischargeSummary: text("summary"), DeclineText: text("decline"),
			CancelReason:        text("cancel"),
			InformationRequests: []InformationRequest{{Question: text("question"), Answer: text("answer")}},
			History:             []StateChange{{To: ReferralDeclined, Reason: "NO_CAPACITY: " + text("words")}, {To: ReferralCancelled, Reason: text("why")}},
		}},
		{ID: id(), Type: "DIAGNOSIS_RECORDED", Diagnosis: &Diagnosis{ID: id(), Notes: text("diagnosis notes")}},
		{ID: id(), Type: "DIAGNOSIS_RECORDED", Diagnosis: &Diagnosis{ID: id(), Notes: text("shared notes"), NotesShareable: true}},
		{ID: id(), Type: "CLEARANCE_SUSPENDED", Clearance: &Clearance{
			ID: id(), Notes: text("clearance notes"), Question: text("asked"),
			Suspension: &Suspension{Observation: text("observed")}, Revocation: &Revocation{Reason: text("revoked")},
		}},
		{ID: id(), Type: "NOTE_SIGNED", Session: &Session{ID: id(), Note: Note{Status: "SIGNED", Subjective: text("subjective"), Plan: text("plan")}}},
	}
	for _, role := range []Role{RolePhysician, RoleTherapist, RoleCoordinator} {
		for _, e := range events {
			before := cloneEvent(e)
			var first *Event
			for range 5 {
				sub := &Subscriber{Principal: Principal{Subject: text("subject"), PractitionerID: id(), OrganizationID: id(), Role: role,
					Purpose: []string{"TREATMENT", "OPERATIONS"}[rng.IntN(2)]}}
				if sub.ViewClass() != role {
					t.Fatalf("a %s's view class is %v", role, sub.ViewClass())
				}
				v := sub.View(e)
				if first == nil {
					first = v
				} else if !reflect.DeepEqual(first, v) {
					t.Errorf("two %s readers see %s differently:\n%+v\n%+v", role, e.Type, first, v)
				}
			}
			if !reflect.DeepEqual(before, e) {
				t.Errorf("a %s's view of %s changed the shared event", role, e.Type)
			}
		}
	}
}

func randomBytes(rng *rand.Rand) (b [16]byte) {
	for i := range b {
		b[i] = byte(rng.UintN(256))
	}
	return b
}
