package api_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/careteam/careteam/client"
	"github.com/careteam/careteam/devtoken"
	pb "github.com/careteam/careteam/proto/careteam/v1"
	"github.com/careteam/careteam/server/internal/api"
)

// recheckedTeam is a team whose streams check their caller every 100 ms.
func recheckedTeam(t *testing.T) *team {
	return newTeamWith(t, harnessOptions{configure: []func(*api.Config){func(c *api.Config) { c.StreamRecheck = 100 * time.Millisecond }}})
}

// asFor returns a client whose token, for subject, expires ttl after the
// harness clock's now.
func (h *harness) asFor(subject string, ttl time.Duration) *client.Client {
	h.t.Helper()
	tok, err := h.signer.Sign(devtoken.Claims{Issuer: testIssuer, Subject: subject, Audience: devtoken.Audience, IssuedAt: h.clock.Now(), TTL: ttl})
	if err != nil {
		h.t.Fatal(err)
	}
	c, err := client.Dial(h.addr, client.WithPlaintext(), client.WithToken(client.StaticToken(tok)))
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { c.Close() })
	return c
}

// streamEnd reads a stream until it ends, within limit, and returns how it
// ended and the events it delivered.
func streamEnd(t *testing.T, s pb.EventService_WatchEventsClient, limit time.Duration) (error, []*pb.Event) {
	t.Helper()
	ended := make(chan error, 1)
	var got []*pb.Event
	go func() {
		for {
			m, err := s.Recv()
			if err != nil {
				ended <- err
				return
			}
			if e := m.GetEvent(); e != nil {
				got = append(got, e)
			}
		}
	}()
	select {
	case err := <-ended:
		return err, got
	case <-time.After(limit):
		t.Fatalf("the stream was still open after %v", limit)
		return nil, nil
	}
}

// TestStreamEndsWithItsToken is the finding: a stream kept delivering
// patient data 108 s after its 5 s token expired.
func TestStreamEndsWithItsToken(t *testing.T) {
	t.Parallel()
	tm := recheckedTeam(t)
	tm.create(tm.newReferral())
	s, err := tm.asFor("lmt", 2*time.Second).Events.WatchEvents(tm.ctx, &pb.WatchEventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	err, got := streamEnd(t, s, 10*time.Second)
	wantCode(t, err, codes.Unauthenticated)
	if len(got) != 1 {
		t.Errorf("delivered %d events before the token expired, want the 1 replayed", len(got))
	}
}

// TestTokenLifetimeIsBounded: a token valid for 3,000 years was accepted;
// one with more than --max-token-lifetime (24 h) left is refused.
func TestTokenLifetimeIsBounded(t *testing.T) {
	t.Parallel()
	tm := newTeam(t)
	for _, ttl := range []time.Duration{25 * time.Hour, 290 * 365 * 24 * time.Hour} {
		_, err := tm.asFor("dr", ttl).Directory.GetCaller(tm.ctx, &pb.GetCallerRequest{})
		wantCode(t, err, codes.Unauthenticated)
	}
	if _, err := tm.asFor("dr", 23*time.Hour).Directory.GetCaller(tm.ctx, &pb.GetCallerRequest{}); err != nil {
		t.Fatalf("a token within the bound: %v", err)
	}
}

// TestStreamEndsWhenAccessEnds is the finding that a stream kept
// delivering after its practitioner was deactivated: deactivating the
// watcher ends its stream with PERMISSION_DENIED before anything written
// afterwards reaches it; losing sight of the referral it watches ends it
// at the next recheck.
func TestStreamEndsWhenAccessEnds(t *testing.T) {
	t.Parallel()
	t.Run("deactivated", func(t *testing.T) {
		t.Parallel()
		// At the default recheck interval (30 s): the deactivation itself
		// ends the stream, before anything written after it goes out.
		tm := newTeam(t)
		tm.create(tm.newReferral())
		s, err := tm.as("lmt").Events.WatchEvents(tm.ctx, &pb.WatchEventsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Recv(); err != nil {
			t.Fatal(err)
		}
		off := proto.CloneOf(tm.lmt)
		off.Active = false
		if _, err := tm.as(rootAdmin).Directory.UpdatePractitioner(tm.ctx, &pb.UpdatePractitionerRequest{Practitioner: off, UpdateMask: fieldMask("active")}); err != nil {
			t.Fatal(err)
		}
		// One the practice's therapists would see.
		unassigned := tm.newReferral()
		unassigned.TargetTherapist, unassigned.TargetOrganization = "", tm.spa
		tm.create(unassigned)
		err, got := streamEnd(t, s, 10*time.Second)
		wantCode(t, err, codes.PermissionDenied)
		for _, e := range got {
			t.Errorf("delivered after deactivation: %v", e.GetType())
		}
	})
	t.Run("the watched referral goes to another therapist", func(t *testing.T) {
		t.Parallel()
		tm := recheckedTeam(t)
		r := tm.create(tm.newReferral())
		if _, err := (&clientSet{tm.as("dr"), r.GetName()}).submit(); err != nil {
			t.Fatal(err)
		}
		s, err := tm.as("lmt").Events.WatchEvents(tm.ctx, &pb.WatchEventsRequest{Referral: r.GetName()})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tm.as("dr").Referrals.AssignReferral(tm.ctx, &pb.AssignReferralRequest{Name: r.GetName(), Therapist: tm.lmt2.GetName()}); err != nil {
			t.Fatal(err)
		}
		err, _ = streamEnd(t, s, 10*time.Second)
		wantCode(t, err, codes.PermissionDenied)
	})
	t.Run("a stream on what the caller cannot see is refused at once", func(t *testing.T) {
		t.Parallel()
		tm := recheckedTeam(t)
		r := tm.create(tm.newReferral())
		s, err := tm.as("other-lmt").Events.WatchEvents(tm.ctx, &pb.WatchEventsRequest{Referral: r.GetName()})
		if err != nil {
			t.Fatal(err)
		}
		err, _ = streamEnd(t, s, 10*time.Second)
		wantCode(t, err, codes.PermissionDenied)
	})
}

// TestStreamIsAuditedAsItDelivers: what an open stream delivered is on the
// audit trail while it is still open, not only once it ends.
func TestStreamIsAuditedAsItDelivers(t *testing.T) {
	t.Parallel()
	tm := newTeam(t)
	r := tm.create(tm.newReferral())
	ctx, cancel := context.WithCancel(tm.ctx)
	defer cancel()
	s, err := tm.as("lmt").Events.WatchEvents(ctx, &pb.WatchEventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(); err != nil {
		t.Fatal(err)
	}
	live := tm.create(tm.newReferral())
	if m, err := s.Recv(); err != nil || m.GetEvent().GetReferralState().GetName() != live.GetName() {
		t.Fatalf("live event %v, %v", m, err)
	}
	recorded := func() []string {
		var out []string
		rows, err := tm.sealed().pool.Query(tm.ctx, `SELECT unnest(resources) FROM audit_events
			WHERE subject = 'lmt' AND method = '/careteam.v1.EventService/WatchEvents'`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var r string
			if err := rows.Scan(&r); err != nil {
				t.Fatal(err)
			}
			out = append(out, r)
		}
		return out
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := recorded()
		if slices.Contains(got, r.GetName()) && slices.Contains(got, live.GetName()) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("while the stream is open the trail lists %v, want %s (replayed) and %s (live)", got, r.GetName(), live.GetName())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
