package main

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/careteam/careteam/client"
	pb "github.com/careteam/careteam/proto/careteam/v1"
)

// TestEventsResumeAcrossRestart runs careteamd on its embedded default,
// writes events, notes the latest cursor, stops it with SIGTERM and starts
// it again on the same data directory; after more writes, a watcher
// resuming from the saved cursor receives exactly the new events.
func TestEventsResumeAcrossRestart(t *testing.T) {
	t.Parallel()
	// As root, the embedded PostgreSQL runs as an unprivileged user, who
	// must reach the data directory.
	base := t.TempDir()
	for _, dir := range []string{filepath.Dir(base), base} {
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dataDir := filepath.Join(base, "data")
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()

	d := startDaemon(t, dataDir, nil, launch{})
	admin := d.client(t, dataDir, "admin")
	org := func(name string, kind pb.OrganizationKind) string {
		resp, err := admin.Directory.CreateOrganization(ctx, &pb.CreateOrganizationRequest{Organization: &pb.Organization{DisplayName: name, Kind: kind}})
		if err != nil {
			t.Fatalf("CreateOrganization: %v\n%s", err, d.logs)
		}
		return resp.GetOrganization().GetName()
	}
	person := func(org string, role pb.Role, subject string) *pb.Practitioner {
		p := &pb.Practitioner{DisplayName: subject, Role: role, Organization: org, Subject: subject}
		if role == pb.Role_ROLE_MASSAGE_THERAPIST {
			p.Licence = &pb.Licence{Number: "LMT-1", Jurisdiction: "US-WA", ExpireDate: time.Now().AddDate(1, 0, 0).Format("2006-01-02")}
			p.Specialties = []pb.Specialty{pb.Specialty_SPECIALTY_ARTHRITIS}
		}
		resp, err := admin.Directory.CreatePractitioner(ctx, &pb.CreatePractitionerRequest{Practitioner: p})
		if err != nil {
			t.Fatalf("CreatePractitioner: %v", err)
		}
		return resp.GetPractitioner()
	}
	clinic := org("Lakeside", pb.OrganizationKind_ORGANIZATION_KIND_PHYSICIAN_PRACTICE)
	spa := org("Harbor", pb.OrganizationKind_ORGANIZATION_KIND_MASSAGE_PRACTICE)
	person(clinic, pb.Role_ROLE_PHYSICIAN, "dr")
	lmt := person(spa, pb.Role_ROLE_MASSAGE_THERAPIST, "lmt")
	dr := d.client(t, dataDir, "dr")
	pt, err := dr.Patients.CreatePatient(ctx, &pb.CreatePatientRequest{Patient: &pb.Patient{GivenName: "Given", FamilyName: "Family", BirthDate: "1970-01-01"}})
	if err != nil {
		t.Fatalf("CreatePatient: %v", err)
	}
	refer := func(c *client.Client) string {
		t.Helper()
		resp, err := c.Referrals.CreateReferral(ctx, &pb.CreateReferralRequest{Referral: &pb.Referral{
			Patient: pt.GetPatient().GetName(), TargetTherapist: lmt.GetName(), ReasonCodes: []string{"M54.50"},
			Priority: pb.ReferralPriority_REFERRAL_PRIORITY_ROUTINE, AuthorizedVisits: 6,
			RequiredSpecialties: []pb.Specialty{pb.Specialty_SPECIALTY_ARTHRITIS},
			ValidUntil:          timestamppb.New(time.Now().AddDate(0, 0, 90)),
		}})
		if err != nil {
			t.Fatalf("CreateReferral: %v", err)
		}
		return resp.GetReferral().GetName()
	}
	submit := func(c *client.Client, name string) {
		t.Helper()
		if _, err := c.Referrals.SubmitReferral(ctx, &pb.SubmitReferralRequest{Name: name}); err != nil {
			t.Fatalf("SubmitReferral: %v", err)
		}
	}
	first := refer(dr)
	submit(dr, first)
	before := listEvents(t, dr)
	if len(before) != 2 {
		t.Fatalf("%d events before the restart, want 2", len(before))
	}
	saved := before[len(before)-1].GetCursor()
	d.stop(t)

	d = startDaemon(t, dataDir, nil, launch{})
	dr = d.client(t, dataDir, "dr")
	lmtClient := d.client(t, dataDir, "lmt")
	if _, err := lmtClient.Referrals.AcceptReferral(ctx, &pb.AcceptReferralRequest{Name: first}); err != nil {
		t.Fatalf("AcceptReferral: %v", err)
	}
	second := refer(dr)
	submit(dr, second)

	var mu sync.Mutex
	var got []*pb.Event
	wctx, stopWatching := context.WithCancel(ctx)
	defer stopWatching()
	go func() {
		_ = dr.Watch(wctx, &pb.WatchEventsRequest{AfterCursor: saved}, func(e *pb.Event) error {
			mu.Lock()
			got = append(got, e)
			mu.Unlock()
			return nil
		})
	}()
	received := func(n int) []*pb.Event {
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			mu.Lock()
			out := append([]*pb.Event(nil), got...)
			mu.Unlock()
			if len(out) >= n {
				return out
			}
			time.Sleep(10 * time.Millisecond)
		}
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("received %d events after cursor %d, want %d:\n%s", len(got), saved, n, d.logs)
		return nil
	}
	// The three writes since the restart, and then a fourth written while
	// watching (live): nothing else in between.
	received(3)
	third := refer(dr)
	events := received(4)
	wantTypes := []pb.EventType{
		pb.EventType_EVENT_TYPE_REFERRAL_ACCEPTED, pb.EventType_EVENT_TYPE_REFERRAL_CREATED,
		pb.EventType_EVENT_TYPE_REFERRAL_SUBMITTED, pb.EventType_EVENT_TYPE_REFERRAL_CREATED,
	}
	wantReferrals := []string{first, second, second, third}
	if len(events) != 4 {
		t.Fatalf("received %d events, want 4", len(events))
	}
	for i, e := range events {
		if e.GetType() != wantTypes[i] || e.GetReferral() != wantReferrals[i] {
			t.Errorf("event %d: %v %s, want %v %s", i, e.GetType(), e.GetReferral(), wantTypes[i], wantReferrals[i])
		}
		if e.GetCursor() <= saved || (i > 0 && e.GetCursor() <= events[i-1].GetCursor()) {
			t.Errorf("event %d has cursor %d after %d (saved %d)", i, e.GetCursor(), events[max(i-1, 0)].GetCursor(), saved)
		}
	}
	after := listEvents(t, dr)
	if len(after) != len(before)+4 {
		t.Errorf("ListEvents lists %d events, want %d", len(after), len(before)+4)
	}
	for i, e := range after[len(before):] {
		if i < len(events) && (e.GetId() != events[i].GetId() || e.GetCursor() != events[i].GetCursor()) {
			t.Errorf("listed event %d is %d %s, watched %d %s", i, e.GetCursor(), e.GetId(), events[i].GetCursor(), events[i].GetId())
		}
	}
	stopWatching()
	d.stop(t)
}

func listEvents(t *testing.T, c *client.Client) []*pb.Event {
	t.Helper()
	var out []*pb.Event
	req := &pb.ListEventsRequest{}
	for {
		resp, err := c.Events.ListEvents(t.Context(), req)
		if err != nil {
			t.Fatalf("ListEvents: %v", err)
		}
		out = append(out, resp.GetEvents()...)
		if resp.GetNextPageToken() == "" {
			return out
		}
		req.PageToken = resp.GetNextPageToken()
	}
}
