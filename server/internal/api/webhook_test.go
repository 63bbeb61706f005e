package api_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	pb "github.com/careteam/careteam/proto/careteam/v1"
	"github.com/careteam/careteam/server/internal/webhook"
)

// receiver is an integration's webhook endpoint on loopback: it checks
// every delivery's signature, answers as its plan says (a status, or
// hang: no answer before careteamd gives up), and keeps the events of
// the deliveries it took.
type receiver struct {
	t      *testing.T
	srv    *httptest.Server
	addr   string
	secret []byte

	mu       sync.Mutex
	plan     []int
	attempts int
	bodies   [][]byte
	cursors  []int64
	seen     map[string]bool
}

const hang = -1

func newReceiver(t *testing.T, plan ...int) *receiver {
	r := &receiver{t: t, plan: plan, seen: map[string]bool{}}
	r.start("127.0.0.1:0")
	return r
}

// start serves on addr (the same address again after stop).
func (r *receiver) start(addr string) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		r.t.Fatal(err)
	}
	r.srv = httptest.NewUnstartedServer(http.HandlerFunc(r.serve))
	r.srv.Listener.Close()
	r.srv.Listener = lis
	r.srv.Start()
	r.addr = lis.Addr().String()
	r.t.Cleanup(r.srv.Close)
}

func (r *receiver) stop() { r.srv.CloseClientConnections(); r.srv.Close() }

func (r *receiver) url() string { return "http://" + r.addr + "/careteam-events" }

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	r.attempts++
	answer := http.StatusOK
	if len(r.plan) > 0 {
		answer, r.plan = r.plan[0], r.plan[1:]
	}
	secret := r.secret
	r.mu.Unlock()
	sig := req.Header.Get(webhook.HeaderSignature)
	t, _, _ := strings.Cut(strings.TrimPrefix(sig, "t="), ",")
	unix, _ := strconv.ParseInt(t, 10, 64)
	if secret == nil || sig != webhook.Sign(secret, unix, body) {
		r.t.Errorf("a delivery whose signature %q does not verify", sig)
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	if answer == hang {
		time.Sleep(time.Second)
		return
	}
	if answer != http.StatusOK {
		http.Error(w, "not now", answer)
		return
	}
	var d struct {
		Events []struct {
			Cursor string `json:"cursor"`
		} `json:"events"`
	}
	if err := json.Unmarshal(body, &d); err != nil {
		r.t.Errorf("a delivery that is not JSON: %v", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	// At least once: a delivery taken before is dropped by its name.
	if name := req.Header.Get(webhook.HeaderDelivery); !r.seen[name] {
		r.seen[name] = true
		r.bodies = append(r.bodies, body)
		for _, e := range d.Events {
			c, _ := strconv.ParseInt(e.Cursor, 10, 64)
			r.cursors = append(r.cursors, c)
		}
	}
}

func (r *receiver) taken() ([]int64, []byte, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]int64(nil), r.cursors...), bytes.Join(r.bodies, nil), r.attempts
}

// webhookFlags let webhooks reach the receivers on loopback, every 20 ms,
// giving up on one after 300 ms.
var webhookFlags = []string{"--webhook-allow-http", "--webhook-interval", "20ms", "--webhook-timeout", "300ms"}

// register creates a webhook of subject to r and gives r its secret.
func (tm *team) register(subject string, r *receiver) *pb.Webhook {
	tm.t.Helper()
	resp, err := tm.as(subject).Webhooks.CreateWebhook(tm.ctx, &pb.CreateWebhookRequest{Url: r.url()})
	if err != nil {
		tm.t.Fatalf("CreateWebhook as %s: %v", subject, err)
	}
	r.keep(resp.GetSigningSecret())
	return resp.GetWebhook()
}

// keep takes the webhook's signing secret, as its integration would.
func (r *receiver) keep(hexSecret string) {
	secret, err := hex.DecodeString(hexSecret)
	if err != nil || len(secret) != 32 {
		r.t.Fatalf("signing secret %q", hexSecret)
	}
	r.mu.Lock()
	r.secret = secret
	r.mu.Unlock()
}

// watched lists the cursors subject could watch after cursor.
func (tm *team) watched(subject string, after int64) []int64 {
	tm.t.Helper()
	var out []int64
	for {
		resp, err := tm.as(subject).Events.ListEvents(tm.ctx, &pb.ListEventsRequest{AfterCursor: after, PageSize: 1000})
		if err != nil {
			tm.t.Fatal(err)
		}
		for _, e := range resp.GetEvents() {
			out = append(out, e.GetCursor())
			after = e.GetCursor()
		}
		if resp.GetNextPageToken() == "" {
			return out
		}
	}
}

// until moves the clock a minute at a time (retries wait on it) until
// ok holds, for at most ten real seconds.
func (tm *team) until(what string, ok func() bool) {
	tm.t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !ok(); time.Sleep(30 * time.Millisecond) {
		if time.Now().After(deadline) {
			tm.t.Fatalf("waited 10 s for %s", what)
		}
		tm.clock.Advance(time.Minute)
	}
}

// TestWebhookDeliversInOrderAtLeastOnce: a therapist's webhook receives
// exactly the events the therapist could watch, in cursor order and
// signed, through a receiver that fails, times out, goes down and comes
// back; each delivery is on the audit trail, and the webhook says how its
// deliveries went.
func TestWebhookDeliversInOrderAtLeastOnce(t *testing.T) {
	t.Parallel()
	tm := newTeamWith(t, harnessOptions{flags: webhookFlags})
	rcv := newReceiver(t, http.StatusServiceUnavailable, http.StatusInternalServerError, hang)
	hook := tm.register("lmt", rcv)
	lmt := tm.as("lmt")

	r := tm.referralIn(pb.ReferralState_REFERRAL_STATE_ACCEPTED)
	want := tm.watched("lmt", hook.GetDeliveredCursor())
	if len(want) < 3 {
		t.Fatalf("the therapist watches only %d events", len(want))
	}
	delivered := func() bool {
		got, _, _ := rcv.taken()
		return len(got) >= len(want)
	}
	tm.until("the first deliveries", delivered)
	got, bodies, attempts := rcv.taken()
	if attempts < 4 {
		t.Errorf("%d attempts: the receiver's two errors and its timeout were not retried", attempts)
	}
	if !equalCursors(got, want) {
		t.Fatalf("delivered %v, the therapist watches %v", got, want)
	}
	if !bytes.Contains(bodies, []byte(r.GetName())) {
		t.Error("the deliveries do not name the referral")
	}

	// Down for a while: the failures are visible, and nothing is lost.
	rcv.stop()
	if _, err := tm.as("dr").Referrals.CancelReferral(tm.ctx, &pb.CancelReferralRequest{Name: r.GetName(), Reason: "Patient moved."}); err != nil {
		t.Fatal(err)
	}
	tm.until("a failed attempt", func() bool {
		w, err := lmt.Webhooks.GetWebhook(tm.ctx, &pb.GetWebhookRequest{Name: hook.GetName()})
		return err == nil && w.GetWebhook().GetConsecutiveFailures() > 0 && w.GetWebhook().GetLastError() != ""
	})
	rcv.start(rcv.addr)
	want = tm.watched("lmt", hook.GetDeliveredCursor())
	tm.until("the deliveries after the receiver came back", delivered)
	if got, _, _ = rcv.taken(); !equalCursors(got, want) {
		t.Errorf("after the outage: delivered %v, the therapist watches %v", got, want)
	}
	// careteamd records what the receiver took once its answer is in.
	var state *pb.Webhook
	tm.until("the webhook to record the deliveries", func() bool {
		w, err := lmt.Webhooks.GetWebhook(tm.ctx, &pb.GetWebhookRequest{Name: hook.GetName()})
		state = w.GetWebhook()
		return err == nil && state.GetDeliveredCursor() == want[len(want)-1]
	})
	if state.GetConsecutiveFailures() != 0 || state.GetLastError() != "" || state.GetLastDeliveryTime() == nil {
		t.Errorf("the webhook says %v", state)
	}
	if n := tm.count(`SELECT (SELECT count(*) FROM audit_inbox WHERE method = 'WebhookDelivery' AND subject = 'lmt' AND $1 = ANY(resources))
		+ (SELECT count(*) FROM audit_events WHERE method = 'WebhookDelivery' AND subject = 'lmt' AND $1 = ANY(resources))`, r.GetName()); n == 0 {
		t.Error("no delivery of the referral's events is on the audit trail")
	}
}

func equalCursors(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestWebhookShowsOnlyWhatItsSubjectMaySee: a webhook is its subject's:
// nobody else reads or deletes it; another practice's therapist's webhook
// receives nothing of the referral; a coordinator's carries no clinical
// text; a webhook whose subject is deactivated delivers nothing more and
// says why; URLs that would send events in the clear, or carry
// credentials, are refused.
func TestWebhookShowsOnlyWhatItsSubjectMaySee(t *testing.T) {
	t.Parallel()
	tm := newTeamWith(t, harnessOptions{flags: webhookFlags})
	mine, theirs, coord, gone := newReceiver(t), newReceiver(t), newReceiver(t), newReceiver(t)
	hook := tm.register("lmt", mine)
	tm.register("other-lmt", theirs)
	tm.register("coord", coord)
	goneHook := tm.register("lmt2", gone)

	// One that takes only submissions.
	submissions := newReceiver(t)
	only := []pb.EventType{pb.EventType_EVENT_TYPE_REFERRAL_SUBMITTED}
	resp, err := tm.as("spa-coord").Webhooks.CreateWebhook(tm.ctx, &pb.CreateWebhookRequest{Url: submissions.url(), Types: only})
	if err != nil {
		t.Fatal(err)
	}
	submissions.keep(resp.GetSigningSecret())
	if got, err := tm.as("spa-coord").Webhooks.GetWebhook(tm.ctx, &pb.GetWebhookRequest{Name: resp.GetWebhook().GetName()}); err != nil ||
		len(got.GetWebhook().GetTypes()) != 1 || got.GetWebhook().GetTypes()[0] != only[0] {
		t.Fatalf("the webhook reads back as %v (%v)", got.GetWebhook(), err)
	}

	dr := tm.as("dr")
	if _, err := dr.Webhooks.GetWebhook(tm.ctx, &pb.GetWebhookRequest{Name: hook.GetName()}); err != nil {
		wantCode(t, err, codes.PermissionDenied)
	} else {
		t.Error("another caller read the webhook")
	}
	if _, err := dr.Webhooks.DeleteWebhook(tm.ctx, &pb.DeleteWebhookRequest{Name: hook.GetName()}); err != nil {
		wantCode(t, err, codes.PermissionDenied)
	} else {
		t.Error("another caller deleted the webhook")
	}
	if l, err := dr.Webhooks.ListWebhooks(tm.ctx, &pb.ListWebhooksRequest{}); err != nil || len(l.GetWebhooks()) != 0 {
		t.Errorf("another caller lists %v (%v)", l.GetWebhooks(), err)
	}
	// At most ten per caller.
	for i := range 10 {
		_, err := tm.as("spa-coord").Webhooks.CreateWebhook(tm.ctx, &pb.CreateWebhookRequest{Url: fmt.Sprintf("https://practice.example/%d", i)})
		if i < 9 && err != nil {
			t.Fatalf("webhook %d: %v", i+2, err)
		}
		if i == 9 {
			wantCode(t, err, codes.FailedPrecondition)
		}
	}
	for _, bad := range []string{"http://10.1.2.3/hook", "https://user:secret@ehr.example/hook", "ftp://ehr.example/hook",
		"https://ehr.example/hook#frag", "/relative/hook"} {
		_, err := dr.Webhooks.CreateWebhook(tm.ctx, &pb.CreateWebhookRequest{Url: bad})
		if st := wantCode(t, err, codes.InvalidArgument); st != nil && !strings.Contains(strings.Join(fieldViolations(t, err), " "), "url") {
			t.Errorf("%s refused without naming url: %v", bad, st)
		}
	}

	// lmt2 leaves; the webhook must not go on as them.
	lmt2 := proto.CloneOf(tm.lmt2)
	lmt2.Active = false
	if _, err := tm.as(rootAdmin).Directory.UpdatePractitioner(tm.ctx, &pb.UpdatePractitionerRequest{Practitioner: lmt2,
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"active"}}}); err != nil {
		t.Fatal(err)
	}
	referral := tm.newReferral()
	referral.TargetTherapist, referral.TargetOrganization = "", tm.spa // lmt2 would see it, at the practice
	r := tm.create(referral)
	if _, err := dr.Referrals.SubmitReferral(tm.ctx, &pb.SubmitReferralRequest{Name: r.GetName()}); err != nil {
		t.Fatal(err)
	}
	want := tm.watched("lmt", hook.GetDeliveredCursor())
	tm.until("the deliveries", func() bool {
		got, _, _ := mine.taken()
		c, _, _ := coord.taken()
		s, _, _ := submissions.taken()
		return len(got) >= len(want) && len(c) > 0 && len(s) > 0
	})
	if _, b, _ := submissions.taken(); !bytes.Contains(b, []byte("EVENT_TYPE_REFERRAL_SUBMITTED")) || bytes.Contains(b, []byte("EVENT_TYPE_REFERRAL_CREATED")) {
		t.Errorf("the submissions-only webhook received %s", b)
	}
	_, mineBodies, _ := mine.taken()
	_, theirBodies, _ := theirs.taken()
	_, coordBodies, _ := coord.taken()
	note := []byte(referral.GetClinicalNotes())
	if !bytes.Contains(mineBodies, note) {
		t.Error("the therapist's deliveries lack the order's note: the checks below prove nothing")
	}
	if bytes.Contains(theirBodies, []byte(r.GetName())) {
		t.Error("another practice's therapist was told of the referral")
	}
	if !bytes.Contains(coordBodies, []byte(r.GetName())) || bytes.Contains(coordBodies, note) {
		t.Errorf("the coordinator's deliveries: name the referral %v, carry its note %v",
			bytes.Contains(coordBodies, []byte(r.GetName())), bytes.Contains(coordBodies, note))
	}
	tm.until("the departed subject's webhook to say why", func() bool {
		return tm.count(`SELECT count(*) FROM webhooks WHERE id::text = $1 AND last_error LIKE '%no longer%'`,
			strings.TrimPrefix(goneHook.GetName(), "webhooks/")) == 1
	})
	if _, goneBodies, _ := gone.taken(); bytes.Contains(goneBodies, []byte(r.GetName())) {
		t.Error("a deactivated subject's webhook delivered the referral")
	}
}
