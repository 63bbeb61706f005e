package api_test

// Tests of event delivery: several replicas over one database, concurrent
// writers, resumption, commit order, access filtering and redaction,
// pruning, slow consumers, heartbeats; and a benchmark of delivery latency
// and writer throughput.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/careteam/careteam/client"
	pb "github.com/careteam/careteam/proto/careteam/v1"
	"github.com/careteam/careteam/server/internal/store/postgres"
	"github.com/careteam/careteam/server/internal/testdb"
)

// ---------------------------------------------------------------------------
// Watchers and the events they received.

// received collects what one watcher got, across reconnects.
type received struct {
	mu     sync.Mutex
	events []*pb.Event
	beats  []*pb.Heartbeat
	err    error
	ended  chan struct{}
}

func newReceived() *received { return &received{ended: make(chan struct{})} }

func (r *received) add(e *pb.Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

func (r *received) beat(b *pb.Heartbeat) {
	r.mu.Lock()
	r.beats = append(r.beats, b)
	r.mu.Unlock()
}

func (r *received) finish(err error) {
	r.mu.Lock()
	r.err = err
	r.mu.Unlock()
	close(r.ended)
}

func (r *received) list() []*pb.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

func (r *received) heartbeats() []*pb.Heartbeat {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.beats)
}

func (r *received) last() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.events) == 0 {
		return 0
	}
	return r.events[len(r.events)-1].GetCursor()
}

func (r *received) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.events)
}

// waitUntil polls cond until it holds or d passes.
func waitUntil(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// reached waits until the watcher received an event with cursor c or
// later; false after d.
func (r *received) reached(c int64, d time.Duration) bool {
	return waitUntil(d, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, e := range r.events {
			if e.GetCursor() >= c {
				return true
			}
		}
		return c == 0
	})
}

// watch runs Client.Watch into r until ctx ends.
func watch(ctx context.Context, c *client.Client, req *pb.WatchEventsRequest, r *received) {
	go func() {
		r.finish(c.Watch(ctx, req, func(e *pb.Event) error { r.add(e); return nil }))
	}()
}

// watchStream opens the raw stream (no reconnection) and reads it into r,
// heartbeats included, until it ends.
func watchStream(ctx context.Context, c *client.Client, req *pb.WatchEventsRequest, r *received) {
	go func() {
		stream, err := c.Events.WatchEvents(ctx, req)
		if err != nil {
			r.finish(err)
			return
		}
		for {
			msg, err := stream.Recv()
			if err != nil {
				r.finish(err)
				return
			}
			if e := msg.GetEvent(); e != nil {
				r.add(e)
			}
			if b := msg.GetHeartbeat(); b != nil {
				r.beat(b)
			}
		}
	}()
}

// listAll pages through ListEvents with req.
func listAll(t *testing.T, c *client.Client, req *pb.ListEventsRequest) []*pb.Event {
	t.Helper()
	out, _ := listPages(t, c, req)
	return out
}

// listPages lists every page and returns the events and the cursor the
// last page is complete through.
func listPages(t *testing.T, c *client.Client, req *pb.ListEventsRequest) ([]*pb.Event, int64) {
	t.Helper()
	req = proto.Clone(req).(*pb.ListEventsRequest)
	if req.PageSize == 0 {
		req.PageSize = 97 // odd, so that pages split the history unevenly
	}
	var out []*pb.Event
	for {
		resp, err := c.Events.ListEvents(t.Context(), req)
		if err != nil {
			t.Fatalf("ListEvents: %v", err)
		}
		out = append(out, resp.GetEvents()...)
		if resp.GetNextPageToken() == "" {
			return out, resp.GetThroughCursor()
		}
		req.PageToken = resp.GetNextPageToken()
	}
}

// listThrough lists every event of req up to cursor at least: a list
// answered while some transaction on the cluster (another test's) was
// held open ends before it, and is asked again.
func listThrough(t *testing.T, c *client.Client, req *pb.ListEventsRequest, cursor int64) []*pb.Event {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, through := listPages(t, c, req)
		if through >= cursor {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("ListEvents answered through cursor %d for 30 s, not %d", through, cursor)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func lastCursor(es []*pb.Event) int64 {
	if len(es) == 0 {
		return 0
	}
	return es[len(es)-1].GetCursor()
}

func describe(e *pb.Event) string {
	return fmt.Sprintf("#%d %s %s", e.GetCursor(), strings.TrimPrefix(e.GetType().String(), "EVENT_TYPE_"), e.GetResource())
}

// inOrder drops what a watcher received again after a reconnect (an event
// at or below the highest cursor seen, identical to the one first seen
// then) when dupsAllowed, and reports anything else that is not in
// strictly increasing cursor order.
func inOrder(t *testing.T, who string, got []*pb.Event, dupsAllowed bool) []*pb.Event {
	t.Helper()
	seen := map[int64]string{}
	var out []*pb.Event
	var max int64
	for i, e := range got {
		if e.GetCursor() <= max {
			if id, ok := seen[e.GetCursor()]; ok && id == e.GetId() && dupsAllowed {
				continue
			}
			t.Errorf("%s: event %d (%s) after cursor %d: not in strictly increasing cursor order", who, i, describe(e), max)
			continue
		}
		seen[e.GetCursor()] = e.GetId()
		max = e.GetCursor()
		out = append(out, e)
	}
	return out
}

// sameEvents fails unless got and want are the same events (by cursor and
// id), in the same order.
func sameEvents(t *testing.T, who string, got, want []*pb.Event) {
	t.Helper()
	for i := 0; i < max(len(got), len(want)); i++ {
		switch {
		case i >= len(got):
			t.Errorf("%s: received %d events, want %d; first missing %s", who, len(got), len(want), describe(want[i]))
			return
		case i >= len(want):
			t.Errorf("%s: received %d events, want %d; first extra %s", who, len(got), len(want), describe(got[i]))
			return
		case got[i].GetCursor() != want[i].GetCursor() || got[i].GetId() != want[i].GetId():
			t.Errorf("%s: event %d is %s, want %s (%d received, %d listed)", who, i, describe(got[i]), describe(want[i]), len(got), len(want))
			return
		}
	}
}

// cutter is a TCP proxy in front of a replica whose connections the test
// can sever, as a load balancer or a network fault would.
type cutter struct {
	lis      net.Listener
	target   string
	mu       sync.Mutex
	conns    []net.Conn
	accepted int
}

func newCutter(t *testing.T, target string) *cutter {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutter{lis: lis, target: target}
	t.Cleanup(func() { lis.Close(); p.cut() })
	go func() {
		for {
			in, err := lis.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, in, out)
			p.accepted++
			p.mu.Unlock()
			go func() { _, _ = io.Copy(out, in); out.Close() }()
			go func() { _, _ = io.Copy(in, out); in.Close() }()
		}
	}()
	return p
}

func (p *cutter) addr() string { return p.lis.Addr().String() }

// cut severs every connection through the proxy.
func (p *cutter) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *cutter) connections() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted
}

// ---------------------------------------------------------------------------
// 1. Two replicas, eight writers: nothing lost, nothing reordered.

// TestEventsTwoReplicasEightWriters runs eight writers through two
// replicas of one database while watchers on both receive; one watcher's
// connection is severed mid-stream (Client.Watch resumes by itself) and
// another is cancelled and resumed from its last cursor. Every watcher
// ends with exactly the events ListEvents lists for its principal, in
// strictly increasing cursor order (a resumed watcher may see an event
// twice only across its reconnect).
func TestEventsTwoReplicasEightWriters(t *testing.T) {
	t.Parallel()
	cl := newDlvCluster(t)
	// Catch-up polling is slowed to a minute: delivery across replicas must
	// come from the notifications.
	cfg := dlvNodeConfig{catchUp: time.Minute, buffer: 1024}
	nodes := []*dlvNode{cl.node(t, cfg), cl.node(t, cfg)}
	tm := teamOn(cl.harness(t, nodes[0]))
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Second)
	defer cancel()

	principals := []string{"coord", "spa-coord", "dr", "lmt", "other-lmt"}
	type watcher struct {
		who, where string
		got        *received
		resumable  bool // may see duplicates across a reconnect
	}
	var watchers []*watcher
	for i, n := range nodes {
		for _, who := range principals {
			w := &watcher{who: who, where: fmt.Sprintf("replica %c", 'A'+i), got: newReceived()}
			watch(ctx, cl.dial(t, n.addr, who), &pb.WatchEventsRequest{}, w.got)
			watchers = append(watchers, w)
		}
	}
	// On replica B: spa-coord through a proxy that will sever its
	// connection, and dr on a stream the test cancels and resumes.
	proxy := newCutter(t, nodes[1].addr)
	severed := &watcher{who: "spa-coord", where: "replica B, connection severed", got: newReceived(), resumable: true}
	watch(ctx, cl.dial(t, proxy.addr(), "spa-coord"), &pb.WatchEventsRequest{}, severed.got)
	resumed := &watcher{who: "dr", where: "replica B, cancelled and resumed", got: newReceived(), resumable: true}
	firstCtx, cancelFirst := context.WithCancel(ctx)
	firstConn := cl.dial(t, nodes[1].addr, "dr")
	watch(firstCtx, firstConn, &pb.WatchEventsRequest{}, resumed.got)
	watchers = append(watchers, severed, resumed)
	if !waitUntil(10*time.Second, func() bool { return nodes[0].app.Watchers() == 5 && nodes[1].app.Watchers() == 7 }) {
		t.Fatalf("watchers subscribed: %d and %d, want 5 and 7", nodes[0].app.Watchers(), nodes[1].app.Watchers())
	}

	// One client per replica and subject, shared by the writers.
	subjects := []string{"dr", "other-dr", "lmt", "lmt2", "other-lmt"}
	clients := make([]map[string]*client.Client, len(nodes))
	for i, n := range nodes {
		clients[i] = map[string]*client.Client{}
		for _, s := range subjects {
			clients[i][s] = cl.dial(t, n.addr, s)
		}
	}
	therapists := map[string]*pb.Practitioner{"lmt": tm.lmt, "lmt2": tm.lmt2, "other-lmt": tm.otherLmt}
	therapistNames := []string{"lmt", "lmt2", "other-lmt"}
	const writers, cycles = 8, 30
	var done atomic.Int64
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			physician := "dr"
			if w%4 == 3 {
				physician = "other-dr"
			}
			for k := range cycles {
				th := therapistNames[(w+k)%3]
				// Each step goes through the other replica than the last.
				via := func(step int, who string) *client.Client { return clients[(w+k+step)%2][who] }
				ref := tm.newReferral()
				ref.TargetTherapist = therapists[th].GetName()
				created, err := via(0, physician).Referrals.CreateReferral(ctx, &pb.CreateReferralRequest{Referral: ref})
				if err != nil {
					t.Errorf("writer %d: CreateReferral: %v", w, err)
					return
				}
				name := created.GetReferral().GetName()
				if _, err := via(1, physician).Referrals.SubmitReferral(ctx, &pb.SubmitReferralRequest{Name: name}); err != nil {
					t.Errorf("writer %d: SubmitReferral: %v", w, err)
					return
				}
				if _, err := via(2, th).Referrals.AcceptReferral(ctx, &pb.AcceptReferralRequest{Name: name}); err != nil {
					t.Errorf("writer %d: AcceptReferral: %v", w, err)
					return
				}
				done.Add(1)
			}
		}()
	}

	// Mid-stream, sever one watcher's connection and cancel another's
	// stream, then resume that one from its last cursor.
	total := int64(writers * cycles)
	if !waitUntil(40*time.Second, func() bool { return done.Load() >= total/3 }) {
		t.Fatal("the writers made no progress")
	}
	if severed.got.count() == 0 {
		t.Fatal("the watcher to sever received nothing yet")
	}
	proxy.cut()
	if !waitUntil(40*time.Second, func() bool { return done.Load() >= 2*total/3 }) {
		t.Fatal("the writers made no progress")
	}
	cancelFirst()
	<-resumed.got.ended
	firstConn.Close()
	before := resumed.got.count()
	after := resumed.got.last()
	if before == 0 {
		t.Fatal("the watcher to cancel received nothing before it was cancelled")
	}
	again := &received{events: resumed.got.list(), ended: make(chan struct{})}
	resumed.got = again
	watch(ctx, cl.dial(t, nodes[1].addr, "dr"), &pb.WatchEventsRequest{AfterCursor: after}, again)
	wg.Wait()
	if t.Failed() {
		return
	}

	// What each principal may see, as ListEvents lists it, through either
	// replica.
	want := map[string][]*pb.Event{}
	for i, who := range principals {
		want[who] = listAll(t, cl.dial(t, nodes[i%2].addr, who), &pb.ListEventsRequest{})
	}
	count := func(es []*pb.Event, typ pb.EventType) (n int) {
		for _, e := range es {
			if e.GetType() == typ {
				n++
			}
		}
		return n
	}
	// The lists themselves hold every write: 6 writers refer as dr, 2 as
	// other-dr; therapists rotate over lmt, lmt2 and other-lmt.
	if n := count(want["coord"], pb.EventType_EVENT_TYPE_REFERRAL_ACCEPTED); n != writers*cycles {
		t.Errorf("coord lists %d acceptances, want %d", n, writers*cycles)
	}
	if n := count(want["dr"], pb.EventType_EVENT_TYPE_REFERRAL_CREATED); n != 6*cycles {
		t.Errorf("dr lists %d creations, want %d", n, 6*cycles)
	}
	if got, exp := len(want["spa-coord"])+len(want["other-lmt"]), len(want["coord"]); got != exp {
		t.Errorf("spa-coord and other-lmt list %d events together, want %d (all of coord's)", got, exp)
	}
	for _, w := range watchers {
		exp := want[w.who]
		if !w.got.reached(lastCursor(exp), 20*time.Second) {
			t.Errorf("%s on %s: received up to cursor %d of %d", w.who, w.where, w.got.last(), lastCursor(exp))
		}
	}
	cancel()
	for _, w := range watchers {
		label := w.who + " on " + w.where
		sameEvents(t, label, inOrder(t, label, w.got.list(), w.resumable), want[w.who])
	}
	if n := proxy.connections(); n < 2 {
		t.Errorf("the severed watcher connected %d times through the proxy, want a reconnection", n)
	}
}

// ---------------------------------------------------------------------------
// 2. Cursors follow commit order.

// TestEventCursorsFollowCommitOrder has a reader poll for events after the
// highest cursor it has seen while many writers commit through two
// replicas: if a cursor ever became visible after a higher one, the reader
// would have skipped it, and the final history would hold a cursor the
// reader never saw.
func TestEventCursorsFollowCommitOrder(t *testing.T) {
	t.Parallel()
	cl := newDlvCluster(t)
	nodes := []*dlvNode{cl.node(t, dlvNodeConfig{}), cl.node(t, dlvNodeConfig{})}
	tm := teamOn(cl.harness(t, nodes[0]))
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Second)
	defer cancel()

	type poller struct {
		name string
		seen map[int64]bool
		max  int64
		err  error
		poll func(after int64) ([]int64, error)
	}
	// Through the API, as the clinic's coordinator (who sees every
	// referral of these writers), and through the service the hub reads
	// with, unfiltered.
	coord := cl.dial(t, nodes[1].addr, "coord")
	pollers := []*poller{
		{name: "ListEvents as coord", poll: func(after int64) ([]int64, error) {
			resp, err := coord.Events.ListEvents(ctx, &pb.ListEventsRequest{AfterCursor: after, PageSize: 1000})
			var out []int64
			for _, e := range resp.GetEvents() {
				out = append(out, e.GetCursor())
			}
			return out, err
		}},
		{name: "Service.EventsAfter", poll: func(after int64) ([]int64, error) {
			es, err := nodes[0].app.Service().EventsAfter(ctx, after, 1000)
			var out []int64
			for _, e := range es {
				out = append(out, e.Cursor)
			}
			return out, err
		}},
	}
	pass := func(p *poller) {
		for {
			cs, err := p.poll(p.max)
			if err != nil {
				p.err = err
				return
			}
			for _, c := range cs {
				if c <= p.max {
					t.Errorf("%s: cursor %d listed after %d", p.name, c, p.max)
				}
				p.seen[c], p.max = true, c
			}
			if len(cs) < 1000 {
				return
			}
		}
	}
	writing := make(chan struct{})
	var pollWG sync.WaitGroup
	polls := make([]int, len(pollers))
	for i, p := range pollers {
		p.seen = map[int64]bool{}
		pollWG.Add(1)
		go func() {
			defer pollWG.Done()
			for {
				select {
				case <-writing:
					return
				default:
				}
				if pass(p); p.err != nil {
					return
				}
				polls[i]++
			}
		}()
	}

	const writers, cycles = 10, 12
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := nodes[w%2]
			dr, lmt := cl.dial(t, n.addr, "dr"), cl.dial(t, n.addr, "lmt")
			for k := range cycles {
				// A diagnosis now and then: a longer transaction that reads
				// every referral of the patient before writing its event.
				if k%4 == w%4 {
					if _, err := dr.Clinical.RecordDiagnosis(ctx, &pb.RecordDiagnosisRequest{Diagnosis: &pb.Diagnosis{
						Patient: tm.patient.GetName(), Icd10Code: "M54.50", Display: "Low back pain",
					}}); err != nil {
						t.Errorf("RecordDiagnosis: %v", err)
						return
					}
				}
				created, err := dr.Referrals.CreateReferral(ctx, &pb.CreateReferralRequest{Referral: tm.newReferral()})
				if err != nil {
					t.Errorf("CreateReferral: %v", err)
					return
				}
				name := created.GetReferral().GetName()
				if _, err := dr.Referrals.SubmitReferral(ctx, &pb.SubmitReferralRequest{Name: name}); err != nil {
					t.Errorf("SubmitReferral: %v", err)
					return
				}
				if _, err := lmt.Referrals.AcceptReferral(ctx, &pb.AcceptReferralRequest{Name: name}); err != nil {
					t.Errorf("AcceptReferral: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(writing)
	pollWG.Wait()
	for _, p := range pollers {
		if p.err != nil {
			t.Fatalf("%s: %v", p.name, p.err)
		}
		pass(p) // everything committed since its last poll
		if p.err != nil {
			t.Fatalf("%s: %v", p.name, p.err)
		}
	}
	final, err := nodes[1].app.Service().EventsAfter(ctx, 0, 100000)
	if err != nil {
		t.Fatal(err)
	}
	if len(final) < writers*cycles*3 {
		t.Fatalf("%d events, want at least %d", len(final), writers*cycles*3)
	}
	for i, p := range pollers {
		var skipped []int64
		for _, e := range final {
			if !p.seen[e.Cursor] {
				skipped = append(skipped, e.Cursor)
			}
		}
		if len(skipped) > 0 {
			t.Errorf("%s (%d polls) skipped cursors %v: they became visible after a higher cursor", p.name, polls[i], skipped)
		}
		if polls[i] < 10 {
			t.Errorf("%s polled only %d times while the writers ran", p.name, polls[i])
		}
	}
	for i := 1; i < len(final); i++ {
		if final[i].Cursor != final[i-1].Cursor+1 {
			t.Errorf("cursor %d follows %d: a gap in the outbox", final[i].Cursor, final[i-1].Cursor)
		}
	}
}

// ---------------------------------------------------------------------------
// 3. Who receives what.

// TestEventAccessAndRedaction checks, for live streams, replays and
// ListEvents alike, that each role receives only what it may read: a
// therapist only their own patients' events; a coordinator of an
// unrelated organization nothing; coordinators sessions without note
// contents and diagnoses, clearances and referrals without the physician's
// notes; administrators and auditors are refused.
func TestEventAccessAndRedaction(t *testing.T) {
	t.Parallel()
	cl := newDlvCluster(t)
	n := cl.node(t, dlvNodeConfig{})
	h := cl.harness(t, n)
	tm := teamOn(h)
	far := h.org("Hilltop Wellness", pb.OrganizationKind_ORGANIZATION_KIND_MASSAGE_PRACTICE)
	h.practitioner(far, pb.Role_ROLE_COORDINATOR, "far-coord")
	h.practitioner(tm.clinic, pb.Role_ROLE_ADMIN, "clinic-admin")
	h.practitioner(tm.clinic, pb.Role_ROLE_AUDITOR, "auditor")
	p1 := tm.patient
	p2 := h.patient("dr", "MRN-200")
	ctx, cancel := context.WithTimeout(t.Context(), 40*time.Second)
	defer cancel()

	principals := []string{"dr", "other-dr", "coord", "spa-coord", "lmt", "lmt2", "other-lmt", "far-coord"}
	live := map[string]*received{}
	for _, who := range principals {
		live[who] = newReceived()
		watchStream(ctx, cl.dial(t, n.addr, who), &pb.WatchEventsRequest{}, live[who])
	}
	if !waitUntil(10*time.Second, func() bool { return n.app.Watchers() == len(principals) }) {
		t.Fatalf("%d watchers subscribed, want %d", n.app.Watchers(), len(principals))
	}

	// Patient 1 is lmt's (through r1), patient 2 other-lmt's (through r2):
	// referrals, consent, a diagnosis with private notes, a clearance with
	// notes, a session whose signed note has contents, for each.
	const dxNotes, clNotes, noteText = "DEXA T-score -2.7; private.", "Cleared; avoid deep pressure. Private.", "Clinical words."
	diagnose := func(patient string) {
		if _, err := tm.as("dr").Clinical.RecordDiagnosis(ctx, &pb.RecordDiagnosisRequest{Diagnosis: &pb.Diagnosis{
			Patient: patient, Icd10Code: "M47.816", Display: "Spondylosis, lumbar", Notes: dxNotes,
		}}); err != nil {
			t.Fatalf("RecordDiagnosis: %v", err)
		}
	}
	session := func(as string, r *pb.Referral) {
		tm.clock.Advance(24 * time.Hour)
		ss, err := tm.start(as, r, swedishLumbar)
		if err != nil {
			t.Fatalf("StartSession as %s: %v", as, err)
		}
		ss, err = tm.edit(as, ss, &pb.SessionNote{Subjective: noteText, Assessment: noteText, PainBefore: i32(5), Treatments: swedishLumbar},
			"subjective", "assessment", "pain_before", "treatments")
		if err != nil {
			t.Fatalf("UpdateSessionNote as %s: %v", as, err)
		}
		if _, err := tm.sign(as, ss, ""); err != nil {
			t.Fatalf("SignSessionNote as %s: %v", as, err)
		}
	}
	r1 := tm.acceptedReferral("lmt", func(*pb.Referral) {})
	tm.consent()
	diagnose(p1.GetName())
	tm.clear(&pb.Clearance{Notes: clNotes})
	session("lmt", r1)

	r2 := tm.acceptedReferral("other-lmt", func(r *pb.Referral) {
		r.Patient, r.TargetTherapist = p2.GetName(), tm.otherLmt.GetName()
	})
	if _, err := tm.as("other-lmt").Clinical.RecordConsent(ctx, &pb.RecordConsentRequest{Consent: &pb.Consent{
		Patient: p2.GetName(), FormVersion: "2026-01", SignedDate: tm.clock.Now().Format("2006-01-02"), Signer: pb.ConsentSigner_CONSENT_SIGNER_PATIENT,
	}}); err != nil {
		t.Fatalf("RecordConsent: %v", err)
	}
	diagnose(p2.GetName())
	tm.clear(&pb.Clearance{Patient: p2.GetName(), Notes: clNotes})
	session("other-lmt", r2)

	// Each principal's history three ways: ListEvents, the live stream, and
	// a stream replaying from cursor 0.
	lists, replays := map[string][]*pb.Event{}, map[string]*received{}
	for _, who := range principals {
		c := cl.dial(t, n.addr, who)
		lists[who] = listAll(t, c, &pb.ListEventsRequest{})
		replays[who] = newReceived()
		watchStream(ctx, c, &pb.WatchEventsRequest{}, replays[who])
	}
	for _, who := range principals {
		last := lastCursor(lists[who])
		for name, r := range map[string]*received{"live": live[who], "replay": replays[who]} {
			if !r.reached(last, 10*time.Second) {
				t.Errorf("%s %s: received up to cursor %d of %d", who, name, r.last(), last)
			}
		}
	}
	cancel()
	views := func(who string) map[string][]*pb.Event {
		return map[string][]*pb.Event{"ListEvents": lists[who], "live": live[who].list(), "replay": replays[who].list()}
	}
	for _, who := range principals {
		sameEvents(t, who+" live", inOrder(t, who+" live", live[who].list(), false), lists[who])
		sameEvents(t, who+" replay", inOrder(t, who+" replay", replays[who].list(), false), lists[who])
	}

	t.Run("a therapist receives only their own patients' events", func(t *testing.T) {
		for who, foreign := range map[string]string{"lmt": p2.GetName(), "other-lmt": p1.GetName()} {
			if len(lists[who]) == 0 {
				t.Errorf("%s received nothing", who)
			}
			for how, es := range views(who) {
				for _, e := range es {
					if e.GetPatient() == foreign {
						t.Errorf("%s (%s) received %s about another therapist's patient", who, how, describe(e))
					}
				}
			}
		}
	})
	t.Run("every event received is about a patient the receiver may read", func(t *testing.T) {
		for _, who := range principals {
			c := cl.dial(t, n.addr, who)
			checked := map[string]bool{}
			for how, es := range views(who) {
				for _, e := range es {
					if e.GetPatient() == "" || checked[e.GetPatient()+how] {
						continue
					}
					checked[e.GetPatient()+how] = true
					if _, err := c.Patients.GetPatient(t.Context(), &pb.GetPatientRequest{Name: e.GetPatient()}); err != nil {
						t.Errorf("%s (%s) received %s about %s, whom it may not read (GetPatient: %v)", who, how, describe(e), e.GetPatient(), status.Code(err))
					}
				}
			}
		}
	})
	t.Run("a coordinator of an unrelated organization receives nothing", func(t *testing.T) {
		for how, es := range views("far-coord") {
			if len(es) > 0 {
				t.Errorf("far-coord (%s) received %d events, first %s", how, len(es), describe(es[0]))
			}
		}
	})
	t.Run("coordinators receive no clinical contents", func(t *testing.T) {
		for _, who := range []string{"coord", "spa-coord"} {
			for how, es := range views(who) {
				types := map[pb.EventType]bool{}
				for _, e := range es {
					types[e.GetType()] = true
					if r := e.GetReferralState(); r.GetClinicalNotes() != "" || r.GetDischargeSummary() != "" {
						t.Errorf("%s (%s): %s carries the referral's clinical notes", who, how, describe(e))
					}
					if e.GetDiagnosisState().GetNotes() != "" {
						t.Errorf("%s (%s): %s carries the diagnosis notes %q", who, how, describe(e), e.GetDiagnosisState().GetNotes())
					}
					if e.GetClearanceState().GetNotes() != "" {
						t.Errorf("%s (%s): %s carries the clearance notes", who, how, describe(e))
					}
					if ss := e.GetSessionState(); ss != nil {
						n := ss.GetNote()
						if !proto.Equal(n, &pb.SessionNote{Status: n.GetStatus(), Signature: n.GetSignature()}) {
							t.Errorf("%s (%s): %s carries the note's contents (subjective %q)", who, how, describe(e), n.GetSubjective())
						}
					}
				}
				for _, typ := range []pb.EventType{pb.EventType_EVENT_TYPE_SESSION_STARTED, pb.EventType_EVENT_TYPE_NOTE_SIGNED,
					pb.EventType_EVENT_TYPE_DIAGNOSIS_RECORDED, pb.EventType_EVENT_TYPE_CLEARANCE_ISSUED, pb.EventType_EVENT_TYPE_REFERRAL_ACCEPTED} {
					if !types[typ] {
						t.Errorf("%s (%s) received no %v", who, how, typ)
					}
				}
			}
		}
	})
	t.Run("a therapist receives diagnoses without private notes, the physician with them", func(t *testing.T) {
		for who, want := range map[string]string{"lmt": "", "other-lmt": "", "dr": dxNotes} {
			for how, es := range views(who) {
				seen := false
				for _, e := range es {
					if d := e.GetDiagnosisState(); d != nil {
						seen = true
						if d.GetNotes() != want {
							t.Errorf("%s (%s): %s has notes %q, want %q", who, how, describe(e), d.GetNotes(), want)
						}
					}
				}
				if !seen {
					t.Errorf("%s (%s) received no diagnosis", who, how)
				}
			}
		}
		for how, es := range views("dr") {
			if !slices.ContainsFunc(es, func(e *pb.Event) bool { return e.GetSessionState().GetNote().GetSubjective() == noteText }) {
				t.Errorf("dr (%s) received no signed note with its contents", how)
			}
		}
	})
	t.Run("administrators and auditors are refused", func(t *testing.T) {
		for _, who := range []string{rootAdmin, "clinic-admin", "auditor"} {
			c := cl.dial(t, n.addr, who)
			_, err := c.Events.ListEvents(t.Context(), &pb.ListEventsRequest{})
			if status.Code(err) != codes.PermissionDenied {
				t.Errorf("%s: ListEvents: %v, want PERMISSION_DENIED", who, err)
			}
			stream, err := c.Events.WatchEvents(t.Context(), &pb.WatchEventsRequest{})
			if err == nil {
				_, err = stream.Recv()
			}
			if status.Code(err) != codes.PermissionDenied {
				t.Errorf("%s: WatchEvents: %v, want PERMISSION_DENIED", who, err)
			}
		}
	})
}

// ---------------------------------------------------------------------------
// 4. A pruned cursor is OUT_OF_RANGE.

// resumeCursor returns the cursor an ended stream says to resume after,
// or a pruned cursor's error says to watch from, as its ErrorInfo gives
// it; reason is the ErrorInfo's reason it must have.
func resumeCursor(t *testing.T, err error, reason pb.ErrorReason) int64 {
	t.Helper()
	if got := client.Reason(err); got != reason {
		t.Fatalf("%v: reason %v, want %v", err, got, reason)
	}
	c, ok := client.ResumeAfter(err)
	if !ok {
		c, ok = client.OldestCursor(err)
	}
	if !ok {
		t.Fatalf("%v names no cursor to resume after", err)
	}
	return c
}

func TestEventsPrunedCursorIsOutOfRange(t *testing.T) {
	t.Parallel()
	cl := newDlvCluster(t)
	n := cl.node(t, dlvNodeConfig{})
	tm := teamOn(cl.harness(t, n))
	svc := n.app.Service()
	dr := tm.as("dr")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	tm.referralIn(pb.ReferralState_REFERRAL_STATE_SUBMITTED)
	old := listAll(t, dr, &pb.ListEventsRequest{})
	if len(old) != 2 {
		t.Fatalf("%d events before pruning, want 2", len(old))
	}
	firstPage, err := dr.Events.ListEvents(ctx, &pb.ListEventsRequest{PageSize: 1})
	if err != nil || firstPage.GetNextPageToken() == "" {
		t.Fatalf("ListEvents: %v, token %q", err, firstPage.GetNextPageToken())
	}
	// A watcher that is current when the history is pruned keeps going.
	current := newReceived()
	watch(ctx, dr, &pb.WatchEventsRequest{}, current)
	if !current.reached(lastCursor(old), 10*time.Second) {
		t.Fatal("the current watcher did not catch up")
	}

	tm.clock.Advance(2 * time.Hour)
	tm.referralIn(pb.ReferralState_REFERRAL_STATE_SUBMITTED)
	deleted, err := svc.PruneEvents(ctx, start.Add(time.Hour))
	if err != nil || deleted != 2 {
		t.Fatalf("PruneEvents: %d, %v; want 2 deleted", deleted, err)
	}
	retained := listAll(t, dr, &pb.ListEventsRequest{})
	if len(retained) != 2 || retained[0].GetCursor() <= lastCursor(old) {
		t.Fatalf("after pruning, %d events listed from cursor 0, want the 2 newer ones", len(retained))
	}
	prunedThrough := lastCursor(old)

	t.Run("ListEvents after a pruned cursor", func(t *testing.T) {
		_, err := dr.Events.ListEvents(ctx, &pb.ListEventsRequest{AfterCursor: old[0].GetCursor()})
		wantCode(t, err, codes.OutOfRange)
		if c := resumeCursor(t, err, pb.ErrorReason_ERROR_REASON_CURSOR_PRUNED); c != prunedThrough {
			t.Errorf("resume after %d, want %d", c, prunedThrough)
		}
		_, err = dr.Events.ListEvents(ctx, &pb.ListEventsRequest{PageSize: 1, PageToken: firstPage.GetNextPageToken()})
		wantCode(t, err, codes.OutOfRange)
		sameEvents(t, "ListEvents after the cursor named", listAll(t, dr, &pb.ListEventsRequest{AfterCursor: prunedThrough}), retained)
	})
	t.Run("WatchEvents after a pruned cursor", func(t *testing.T) {
		stream, err := dr.Events.WatchEvents(ctx, &pb.WatchEventsRequest{AfterCursor: old[0].GetCursor()})
		if err == nil {
			_, err = stream.Recv()
		}
		wantCode(t, err, codes.OutOfRange)
		if c := resumeCursor(t, err, pb.ErrorReason_ERROR_REASON_CURSOR_PRUNED); c != prunedThrough {
			t.Errorf("resume after %d, want %d", c, prunedThrough)
		}
		// Client.Watch gives up rather than retrying forever.
		wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
		defer wcancel()
		err = dr.Watch(wctx, &pb.WatchEventsRequest{AfterCursor: old[0].GetCursor()}, func(e *pb.Event) error {
			return fmt.Errorf("delivered %s", describe(e))
		})
		wantCode(t, err, codes.OutOfRange)
	})
	t.Run("WatchEvents from 0 and from the cursor named", func(t *testing.T) {
		for _, after := range []int64{0, prunedThrough} {
			got := newReceived()
			watchStream(ctx, dr, &pb.WatchEventsRequest{AfterCursor: after}, got)
			if !got.reached(lastCursor(retained), 10*time.Second) {
				t.Fatalf("after %d: received up to %d", after, got.last())
			}
			sameEvents(t, fmt.Sprintf("after %d", after), got.list(), retained)
		}
	})
	t.Run("a current watcher is unaffected", func(t *testing.T) {
		if !current.reached(lastCursor(retained), 10*time.Second) {
			t.Fatalf("received up to %d", current.last())
		}
		sameEvents(t, "current watcher", current.list(), append(slices.Clone(old), retained...))
	})
}

// ---------------------------------------------------------------------------
// 5. A slow consumer is cut off without slowing anyone else.

// TestEventsSlowConsumerIsCutOff opens a stream that never reads, on a
// replica whose watchers may have 4 events waiting, while another watcher
// reads. Once the slow one's buffer overflows, the hub drops it and the
// server ends its stream with RESOURCE_EXHAUSTED, naming the cursor to
// resume after, without waiting for it to read; the other watcher, and the
// writers, carry on.
func TestEventsSlowConsumerIsCutOff(t *testing.T) {
	t.Parallel()
	cl := newDlvCluster(t)
	n := cl.node(t, dlvNodeConfig{buffer: 4})
	tm := teamOn(cl.harness(t, n))
	ctx, cancel := context.WithTimeout(t.Context(), 40*time.Second)
	defer cancel()

	// The slow watcher's connection keeps gRPC's static 64 KiB windows, so
	// that the transport cannot absorb what the watcher does not read.
	slowConn := cl.dial(t, n.addr, "dr", client.WithDialOptions(grpc.WithInitialWindowSize(1<<16), grpc.WithInitialConnWindowSize(1<<16)))
	slow, err := slowConn.Events.WatchEvents(metadata.AppendToOutgoingContext(ctx, watcherLabel, "slow"), &pb.WatchEventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	fast := newReceived()
	watch(ctx, cl.dial(t, n.addr, "coord"), &pb.WatchEventsRequest{}, fast)
	if !waitUntil(10*time.Second, func() bool { return n.app.Watchers() == 2 }) {
		t.Fatalf("%d watchers subscribed, want 2", n.app.Watchers())
	}

	// Referrals with long clinical notes (which the physician receives) fill
	// the slow stream's transport and then its buffer.
	dr := cl.dial(t, n.addr, "dr")
	write := func() {
		t.Helper()
		ref := tm.newReferral()
		ref.ClinicalNotes = strings.Repeat("Lumbar spondylosis; no radiculopathy. ", 300)[:10000]
		if _, err := dr.Referrals.CreateReferral(ctx, &pb.CreateReferralRequest{Referral: ref}); err != nil {
			t.Fatalf("CreateReferral: %v", err)
		}
	}
	writes := 0
	for ; writes < 300 && n.app.Watchers() == 2; writes++ {
		write()
	}
	if !waitUntil(5*time.Second, func() bool { return n.app.Watchers() == 1 }) {
		t.Fatalf("after %d writes the slow watcher is still subscribed", writes)
	}
	t.Logf("the slow watcher overflowed after %d writes", writes)
	// The writers and the other watcher are unaffected.
	for range 5 {
		write()
	}
	coordList := listAll(t, cl.dial(t, n.addr, "coord"), &pb.ListEventsRequest{})
	if !fast.reached(lastCursor(coordList), 10*time.Second) {
		t.Fatalf("the other watcher received up to %d of %d", fast.last(), lastCursor(coordList))
	}
	sameEvents(t, "the other watcher", inOrder(t, "the other watcher", fast.list(), false), coordList)

	// The server ends the slow stream on its own: it must not hold a
	// handler, its goroutine and its stream open for a client that does not
	// read.
	if !waitUntil(5*time.Second, func() bool { _, ok := n.streamEnd("slow"); return ok }) {
		t.Errorf("the slow watcher's stream was dropped by the hub but the server did not end it: " +
			"its handler is still running (blocked sending to a client that does not read)")
	} else if err, _ := n.streamEnd("slow"); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("the slow stream ended with %v, want RESOURCE_EXHAUSTED", err)
	}

	// When it finally reads: what it was sent, in order and without a gap,
	// then RESOURCE_EXHAUSTED naming the last cursor it received.
	drList := listAll(t, dr, &pb.ListEventsRequest{})
	var got []*pb.Event
	for {
		msg, err := slow.Recv()
		if err != nil {
			wantCode(t, err, codes.ResourceExhausted)
			// The cursor named is the last one the server knows went out;
			// a message in flight when the stream was cut may still arrive.
			// Resuming after it can repeat that one event, never skip one.
			c, before := resumeCursor(t, err, pb.ErrorReason_ERROR_REASON_WATCHER_TOO_SLOW), int64(0)
			if len(got) > 1 {
				before = got[len(got)-2].GetCursor()
			}
			if c != lastCursor(got) && c != before {
				t.Errorf("RESOURCE_EXHAUSTED says resume after %d; the last events received were %d and %d", c, before, lastCursor(got))
			}
			break
		}
		if e := msg.GetEvent(); e != nil {
			got = append(got, e)
		}
	}
	// How much went out before the cut depends on scheduling; what matters
	// is that it is a prefix, and the error names where it ends.
	if len(got) >= len(drList) {
		t.Fatalf("the slow watcher received %d of %d events before it was cut off", len(got), len(drList))
	}
	sameEvents(t, "the slow watcher", got, drList[:len(got)])
	// It resumes where the error said and receives the rest.
	rest := newReceived()
	watch(ctx, dr, &pb.WatchEventsRequest{AfterCursor: lastCursor(got)}, rest)
	if !rest.reached(lastCursor(drList), 10*time.Second) {
		t.Fatalf("the resumed watcher received up to %d of %d", rest.last(), lastCursor(drList))
	}
	sameEvents(t, "the resumed watcher", rest.list(), drList[len(got):])
}

// ---------------------------------------------------------------------------
// 7. Heartbeats.

func TestWatchEventsHeartbeatsWhileIdle(t *testing.T) {
	t.Parallel()
	cl := newDlvCluster(t)
	tm := teamOn(cl.harness(t, cl.node(t, dlvNodeConfig{heartbeat: time.Second})))
	r := tm.create(tm.newReferral())
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	got := newReceived()
	watchStream(ctx, tm.as("dr"), &pb.WatchEventsRequest{}, got)
	if !waitUntil(4*time.Second, func() bool { return len(got.heartbeats()) >= 2 }) {
		t.Fatalf("%d heartbeats in 4s on an idle stream, want 2 (one a second)", len(got.heartbeats()))
	}
	es := got.list()
	if len(es) != 1 || es[0].GetReferralState().GetName() != r.GetName() {
		t.Fatalf("events %v", es)
	}
	for _, b := range got.heartbeats() {
		if b.GetCursor() != es[0].GetCursor() {
			t.Errorf("heartbeat cursor %d, want %d (the last event sent)", b.GetCursor(), es[0].GetCursor())
		}
		if !b.GetTime().AsTime().Equal(tm.clock.Now()) {
			t.Errorf("heartbeat time %v, want the server's %v", b.GetTime().AsTime(), tm.clock.Now())
		}
	}
}

// TestWatchEventsHeartbeatCursorCoversEventsExamined: the heartbeat's
// cursor is "the newest cursor the server has examined for this stream;
// safe to resume after" (event.proto), so a watcher who is shown nothing
// of a busy history still learns how far the server has looked, and does
// not resume from (and replay, or be OUT_OF_RANGE at) a cursor far behind.
func TestWatchEventsHeartbeatCursorCoversEventsExamined(t *testing.T) {
	t.Parallel()
	cl := newDlvCluster(t)
	tm := teamOn(cl.harness(t, cl.node(t, dlvNodeConfig{heartbeat: time.Second})))
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	got := newReceived()
	watchStream(ctx, tm.as("lmt2"), &pb.WatchEventsRequest{}, got)
	if !waitUntil(3*time.Second, func() bool { return len(got.heartbeats()) >= 1 }) {
		t.Fatal("no heartbeat")
	}
	// lmt's referral is not lmt2's to see.
	tm.referralIn(pb.ReferralState_REFERRAL_STATE_ACCEPTED)
	newest := lastCursor(listAll(t, tm.as("dr"), &pb.ListEventsRequest{}))
	ok := waitUntil(4*time.Second, func() bool {
		bs := got.heartbeats()
		return bs[len(bs)-1].GetCursor() >= newest
	})
	if len(got.list()) != 0 {
		t.Fatalf("lmt2 received %v", got.list())
	}
	if !ok {
		bs := got.heartbeats()
		t.Errorf("heartbeat cursor stays %d after the server examined events up to %d for this stream", bs[len(bs)-1].GetCursor(), newest)
	}
}

// ---------------------------------------------------------------------------
// The listener's connection.

// TestEventListenerLeavesThePoolUsable stops Store.Listen (as a replica does
// when its hub stops) on a pool of one connection, then uses the pool: the
// connection that was in LISTEN mode must not come back to the pool, let
// alone closed underneath it, so the next query gets a working
// connection.
func TestEventListenerLeavesThePoolUsable(t *testing.T) {
	t.Parallel()
	pc, err := pgxpool.ParseConfig(testdb.NewURL(t))
	if err != nil {
		t.Fatal(err)
	}
	pc.MaxConns = 1
	pool, err := pgxpool.NewWithConfig(t.Context(), pc)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	store := postgres.New(pool, slog.New(slog.NewTextHandler(io.Discard, nil)))
	lctx, stop := context.WithCancel(t.Context())
	stopped := make(chan struct{})
	go func() { store.Listen(lctx, func() {}); close(stopped) }()
	if !waitUntil(5*time.Second, func() bool {
		var n int
		err := pool.QueryRow(t.Context(), `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%'`).Scan(&n)
		return err == nil && n == 1
	}) {
		t.Fatal("Listen did not take a connection")
	}
	time.Sleep(50 * time.Millisecond) // into WaitForNotification
	stop()
	<-stopped
	var listening int
	if err := pool.QueryRow(t.Context(), `SELECT count(*) FROM pg_listening_channels()`).Scan(&listening); err != nil {
		t.Fatalf("the first query after Listen stopped: %v (the listener's connection went back to the pool and was then closed)", err)
	}
	if listening != 0 {
		t.Errorf("the pool handed out a connection still listening on %d channels", listening)
	}
}

// ---------------------------------------------------------------------------
// Start-up: a watcher may connect before the hub has started (careteamd
// serves before it migrates and starts the hub).

// TestWatchersConnectedBeforeTheHubStartsMissNothing connects a watcher to
// a replica whose hub has not started yet, as careteamd allows between
// Serve and hub.Run, commits an event, then starts the hub: the event must
// reach the watcher.
func TestWatchersConnectedBeforeTheHubStartsMissNothing(t *testing.T) {
	t.Parallel()
	cl := newDlvCluster(t)
	n := cl.node(t, dlvNodeConfig{manualHub: true, heartbeat: 100 * time.Millisecond})
	tm := teamOn(cl.harness(t, n))
	r := tm.create(tm.newReferral())
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	got := newReceived()
	watchStream(ctx, tm.as("dr"), &pb.WatchEventsRequest{}, got)
	// The stream has replayed and waits for the hub.
	if !waitUntil(5*time.Second, func() bool { return got.count() == 1 }) {
		t.Fatalf("received %d events", got.count())
	}
	if _, err := (&clientSet{tm.as("dr"), r.GetName()}).submit(); err != nil {
		t.Fatal(err)
	}
	want := listAll(t, tm.as("dr"), &pb.ListEventsRequest{})
	n.startHub()
	if !got.reached(lastCursor(want), 5*time.Second) {
		t.Errorf("the event committed before the hub started (cursor %d) never reached a watcher connected before it", lastCursor(want))
	}
}

// ---------------------------------------------------------------------------
// 8. Benchmark: delivery latency and writer throughput.

// BenchmarkEventDelivery measures, on one replica, the latency from a
// write's response reaching the writer to its event reaching every watcher
// (p50 and p99 over all watchers and writes; negative when a watcher
// received it first, counted as 0), with 1, 100 and 1000 watchers
// connected; and the throughput of 8 concurrent writers with 0 and 1000
// watchers connected.
func BenchmarkEventDelivery(b *testing.B) {
	cl := newDlvCluster(b)
	n := cl.node(b, dlvNodeConfig{buffer: 1024, heartbeat: time.Minute})
	ctx := b.Context()
	root := cl.dial(b, n.addr, rootAdmin)
	must := func(err error) {
		b.Helper()
		if err != nil {
			b.Fatal(err)
		}
	}
	org := func(name string, kind pb.OrganizationKind) string {
		resp, err := root.Directory.CreateOrganization(ctx, &pb.CreateOrganizationRequest{Organization: &pb.Organization{DisplayName: name, Kind: kind}})
		must(err)
		return resp.GetOrganization().GetName()
	}
	person := func(org string, role pb.Role, subject string) *pb.Practitioner {
		p := &pb.Practitioner{DisplayName: subject, Role: role, Organization: org, Subject: subject}
		if role == pb.Role_ROLE_MASSAGE_THERAPIST {
			p.Licence = &pb.Licence{Number: "LMT-1", Jurisdiction: "US-WA", ExpireDate: cl.clock.Now().AddDate(1, 0, 0).Format("2006-01-02")}
		}
		resp, err := root.Directory.CreatePractitioner(ctx, &pb.CreatePractitionerRequest{Practitioner: p})
		must(err)
		return resp.GetPractitioner()
	}
	clinic := org("Clinic", pb.OrganizationKind_ORGANIZATION_KIND_PHYSICIAN_PRACTICE)
	spa := org("Spa", pb.OrganizationKind_ORGANIZATION_KIND_MASSAGE_PRACTICE)
	person(clinic, pb.Role_ROLE_PHYSICIAN, "dr")
	person(spa, pb.Role_ROLE_COORDINATOR, "spa-coord")
	lmt := person(spa, pb.Role_ROLE_MASSAGE_THERAPIST, "lmt")
	dr := cl.dial(b, n.addr, "dr")
	pt, err := dr.Patients.CreatePatient(ctx, &pb.CreatePatientRequest{Patient: &pb.Patient{GivenName: "Given", FamilyName: "Family", BirthDate: "1970-01-01"}})
	must(err)
	refer := func(c *client.Client) string {
		resp, err := c.Referrals.CreateReferral(ctx, &pb.CreateReferralRequest{Referral: &pb.Referral{
			Patient: pt.GetPatient().GetName(), TargetTherapist: lmt.GetName(), ReasonCodes: []string{"M54.50"},
			Priority: pb.ReferralPriority_REFERRAL_PRIORITY_ROUTINE, AuthorizedVisits: 6,
			ValidUntil: timestamppb.New(cl.clock.Now().AddDate(0, 0, 90)),
		}})
		must(err)
		return resp.GetReferral().GetName()
	}

	// arrivals records when each watcher received each referral's creation.
	type arrivals struct {
		mu    sync.Mutex
		at    map[string][]time.Time
		total int
	}
	// connect opens k streams as the spa's coordinator (who receives every
	// referral to the spa), over up to 10 connections, and waits until
	// the hub has subscribed them all.
	connect := func(b *testing.B, k int) (*arrivals, func()) {
		arr := &arrivals{at: map[string][]time.Time{}}
		wctx, cancel := context.WithCancel(ctx)
		conns := make([]*client.Client, min(k, 10))
		for i := range conns {
			conns[i] = cl.dial(b, n.addr, "spa-coord")
		}
		latest := lastCursorOf(b, n)
		req := &pb.WatchEventsRequest{AfterCursor: latest, Types: []pb.EventType{pb.EventType_EVENT_TYPE_REFERRAL_CREATED}}
		var wg sync.WaitGroup
		for i := range k {
			wg.Add(1)
			go func() {
				defer wg.Done()
				stream, err := conns[i%len(conns)].Events.WatchEvents(wctx, req)
				if err != nil {
					return
				}
				for {
					msg, err := stream.Recv()
					if err != nil {
						return
					}
					if e := msg.GetEvent(); e != nil {
						now := time.Now()
						arr.mu.Lock()
						arr.at[e.GetReferral()] = append(arr.at[e.GetReferral()], now)
						arr.total++
						arr.mu.Unlock()
					}
				}
			}()
		}
		if !waitUntil(60*time.Second, func() bool { return n.app.Watchers() == k }) {
			b.Fatalf("%d of %d watchers subscribed", n.app.Watchers(), k)
		}
		return arr, func() {
			cancel()
			wg.Wait()
			waitUntil(10*time.Second, func() bool { return n.app.Watchers() == 0 })
		}
	}

	for _, k := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("latency/watchers=%d", k), func(b *testing.B) {
			arr, disconnect := connect(b, k)
			defer disconnect()
			var lat []time.Duration
			b.ResetTimer()
			for range b.N {
				name := refer(dr)
				responded := time.Now()
				if !waitUntil(30*time.Second, func() bool {
					arr.mu.Lock()
					defer arr.mu.Unlock()
					return len(arr.at[name]) == k
				}) {
					b.Fatalf("%s reached %d of %d watchers", name, len(arr.at[name]), k)
				}
				arr.mu.Lock()
				for _, at := range arr.at[name] {
					lat = append(lat, max(at.Sub(responded), 0))
				}
				arr.mu.Unlock()
			}
			b.StopTimer()
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
	for _, k := range []int{0, 1000} {
		b.Run(fmt.Sprintf("throughput/watchers=%d", k), func(b *testing.B) {
			arr, disconnect := connect(b, k)
			defer disconnect()
			const writers = 8
			conns := make([]*client.Client, writers)
			for i := range conns {
				conns[i] = cl.dial(b, n.addr, "dr")
			}
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			for w := range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for next.Add(1) <= int64(b.N) {
						refer(conns[w])
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
			// Every watcher received every write before the next round.
			if !waitUntil(60*time.Second, func() bool {
				arr.mu.Lock()
				defer arr.mu.Unlock()
				return arr.total == b.N*k
			}) {
				b.Fatalf("%d of %d deliveries", arr.total, b.N*k)
			}
		})
	}
}

// lastCursorOf is the newest cursor committed on n's database.
func lastCursorOf(tb testing.TB, n *dlvNode) int64 {
	c, err := n.app.Service().LatestEventCursor(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	return c
}
