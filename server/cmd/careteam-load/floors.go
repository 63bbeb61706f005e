package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/careteam/careteam/proto/careteam/v1"
	"github.com/careteam/careteam/server/internal/loadfloor"
)

// The floors make the results portable: a careteam call's throughput as a
// fraction of what the same machine does, in the same run, with the least
// work of the call's kind holds on other hardware, where calls per second
// do not. No floor runs any of careteamd's code, so a change to careteamd
// moves its calls and never its floors.
type floor struct {
	key, name, what string
}

var (
	txFloor      = floor{"tx", "floor: raw transaction", "BEGIN; a clearance FOR UPDATE; UPDATE a visit counter; INSERT a session; COMMIT (pgx, rows of the floor's own)"}
	txAuditFloor = floor{"tx+audit", "floor: raw transaction + audit + event", "the raw transaction plus an audit-sized and an event-sized INSERT before COMMIT"}
	readFloor    = floor{"read", "floor: primary-key read", "SELECT of one 11-column row by primary key (pgx)"}
	readAudit    = floor{"read+audit", "floor: primary-key read + audit", "the read, then an audit-sized INSERT committed on its own"}
	grpcFloor    = floor{"grpc", "floor: bare gRPC", "GetReferral on a gRPC server in the load tool: no authentication, no database, a fixed answer"}
	// allFloors is the order of the report's columns.
	allFloors = []floor{txFloor, txAuditFloor, readFloor, readAudit, grpcFloor}
)

// floorPhase runs one floor at --concurrency; call does one call and
// returns false when it found nothing to do.
func (l *load) floorPhase(ctx context.Context, fl floor, call func(ctx context.Context, rng *rand.Rand) (bool, error),
	hooks ...func(*phase)) *phaseStats {
	w := func(ctx context.Context, ph *phaseStats, rng *rand.Rand, at time.Time) bool {
		found, err := call(ctx, rng)
		if !found {
			ph.skip(fl.name)
			return false
		}
		ph.record(fl.name, time.Since(at), err)
		return true
	}
	p := phase{name: fl.name, concurrency: l.cfg.concurrency, warmup: l.cfg.warmup, duration: l.cfg.soloDuration, choose: soloWork(w)}
	for _, h := range hooks {
		h(&p)
	}
	return l.run(ctx, p)
}

// dbFloorPhases runs the database floors of kind (read or transaction) on
// f.
func (l *load) dbFloorPhases(ctx context.Context, f *loadfloor.Floor, res *results, reads bool) {
	if reads {
		for _, fl := range []floor{readFloor, readAudit} {
			audited := fl == readAudit
			ph := l.floorPhase(ctx, fl, func(ctx context.Context, rng *rand.Rand) (bool, error) {
				return true, f.Read(ctx, rng, audited)
			})
			res.addFloor(fl, ph, nil)
		}
		return
	}
	for _, fl := range []floor{txFloor, txAuditFloor} {
		audited := fl == txAuditFloor
		var locks *lockWatch
		ph := l.floorPhase(ctx, fl, func(ctx context.Context, _ *rand.Rand) (bool, error) {
			return true, f.StartSession(ctx, audited)
		}, func(p *phase) { locks = l.watchLocks(ctx, p) })
		res.addFloor(fl, ph, locks.result())
	}
}

// floorReferrals is the bare gRPC floor's server: careteam's own service
// and messages, so the wire and the (un)marshalling are those of
// careteamd's GetReferral, and nothing else.
type floorReferrals struct {
	pb.UnimplementedReferralServiceServer
	resp *pb.GetReferralResponse
}

func (s *floorReferrals) GetReferral(context.Context, *pb.GetReferralRequest) (*pb.GetReferralResponse, error) {
	return s.resp, nil
}

// fixedReferral is what careteamd returns for the load's referrals: an
// accepted one in treatment, with its history.
func fixedReferral() *pb.Referral {
	at := timestamppb.New(time.Date(2026, 3, 2, 9, 30, 0, 0, time.UTC))
	const doc, th = "practitioners/01960f3a-2b4c-7d5e-8f60-718293a4b5c6", "practitioners/01960f3a-2b4c-7d5e-8f60-718293a4b5c7"
	change := func(from, to pb.ReferralState, actor string) *pb.StateChange {
		return &pb.StateChange{FromState: from, ToState: to, Actor: actor, Time: at}
	}
	return &pb.Referral{
		Name: "referrals/01960f3a-2b4c-7d5e-8f60-718293a4b5c8", Patient: "patients/01960f3a-2b4c-7d5e-8f60-718293a4b5c9",
		ReferringPhysician: doc, ReferringOrganization: "organizations/01960f3a-2b4c-7d5e-8f60-718293a4b5ca",
		TargetTherapist: th, TargetOrganization: "organizations/01960f3a-2b4c-7d5e-8f60-718293a4b5cb",
		ReasonCodes: []string{"M54.50"}, ClinicalNotes: "Chronic low back pain, no red flags.",
		Priority: pb.ReferralPriority_REFERRAL_PRIORITY_ROUTINE, RequestedTechniques: []pb.Technique{pb.Technique_TECHNIQUE_SWEDISH},
		AuthorizedVisits: maxVisits, UsedVisits: 3, ValidUntil: timestamppb.New(at.AsTime().AddDate(0, 0, 90)),
		State: pb.ReferralState_REFERRAL_STATE_IN_PROGRESS,
		History: []*pb.StateChange{
			change(pb.ReferralState_REFERRAL_STATE_UNSPECIFIED, pb.ReferralState_REFERRAL_STATE_DRAFT, doc),
			change(pb.ReferralState_REFERRAL_STATE_DRAFT, pb.ReferralState_REFERRAL_STATE_SUBMITTED, doc),
			change(pb.ReferralState_REFERRAL_STATE_SUBMITTED, pb.ReferralState_REFERRAL_STATE_ACCEPTED, th),
			change(pb.ReferralState_REFERRAL_STATE_ACCEPTED, pb.ReferralState_REFERRAL_STATE_IN_PROGRESS, th),
		},
		CreateTime: at, UpdateTime: at, SubmitTime: at, Etag: `W/"5"`,
	}
}

// bareGRPC is the floor's server, on loopback in this process, and plain
// connections to it, as many as the careteam calls go over.
type bareGRPC struct {
	srv    *grpc.Server
	conns  []*grpc.ClientConn
	stubs  []pb.ReferralServiceClient
	next   atomic.Uint64
	answer *pb.Referral
}

func startBareGRPC(conns int) (*bareGRPC, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("bare gRPC floor: %w", err)
	}
	b := &bareGRPC{srv: grpc.NewServer(), answer: fixedReferral()}
	pb.RegisterReferralServiceServer(b.srv, &floorReferrals{resp: &pb.GetReferralResponse{Referral: b.answer}})
	go func() { _ = b.srv.Serve(lis) }() // it returns when stopped
	for range conns {
		cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.close()
			return nil, fmt.Errorf("bare gRPC floor: %w", err)
		}
		b.conns, b.stubs = append(b.conns, cc), append(b.stubs, pb.NewReferralServiceClient(cc))
	}
	return b, nil
}

func (b *bareGRPC) close() {
	for _, cc := range b.conns {
		cc.Close()
	}
	b.srv.Stop()
}

func (b *bareGRPC) getReferral(ctx context.Context, req *pb.GetReferralRequest) error {
	_, err := b.stubs[b.next.Add(1)%uint64(len(b.stubs))].GetReferral(ctx, req)
	return err
}

// grpcFloorPhase runs the bare gRPC floor with the requests the load
// sends careteamd's GetReferral, after checking that its fixed answer is
// of the size of careteamd's.
func (l *load) grpcFloorPhase(ctx context.Context, res *results) error {
	b, err := startBareGRPC(l.cfg.conns)
	if err != nil {
		return err
	}
	defer b.close()
	if r, ok := l.w.known.random(rand.New(rand.NewPCG(1, 1))); ok {
		theirs, err := l.calls.pick().Referrals.GetReferral(as(ctx, &r.patient.physician.actor), &pb.GetReferralRequest{Name: r.name})
		if err == nil {
			l.prog.note("%s: its answer is %d bytes; careteamd's GetReferral answered %d", grpcFloor.name,
				proto.Size(b.answer), proto.Size(theirs.GetReferral()))
		}
	}
	ph := l.floorPhase(ctx, grpcFloor, func(ctx context.Context, rng *rand.Rand) (bool, error) {
		r, ok := l.w.known.random(rng)
		if !ok {
			return false, nil
		}
		ctx, cancel := context.WithTimeout(ctx, l.cfg.timeout)
		defer cancel()
		return true, b.getReferral(ctx, &pb.GetReferralRequest{Name: r.name})
	})
	res.addFloor(grpcFloor, ph, nil)
	return nil
}

// lockWatch samples careteamd's database's lock waits over a phase's
// recorded interval.
type lockWatch struct {
	s    *loadfloor.Sampler
	got  loadfloor.LockWaits
	err  error
	done bool
}

// watchLocks hooks a sampler onto p's start and stop.
func (l *load) watchLocks(ctx context.Context, p *phase) *lockWatch {
	w := &lockWatch{}
	started, stopped := p.started, p.stopped
	p.started = func(ph *phaseStats) {
		if started != nil {
			started(ph)
		}
		w.s, w.err = loadfloor.SampleLocks(ctx, l.cfg.databaseURL, 50*time.Millisecond)
	}
	p.stopped = func(ph *phaseStats) {
		if w.s != nil {
			w.got, w.err = w.s.Stop()
			w.done = true
		}
		if w.err != nil {
			l.prog.note("warning: %s: %v", p.name, w.err)
		} else if w.done {
			l.prog.note("%s: lock waits in %d of %d samples, at most %d waiters", p.name, w.got.Waiting, w.got.Samples, w.got.MaxWaiters)
		}
		if stopped != nil {
			stopped(ph)
		}
	}
	return w
}

// result is what the sampler saw, nil if it never ran.
func (w *lockWatch) result() *lockReport {
	if w == nil || (!w.done && w.err == nil) {
		return nil
	}
	r := &lockReport{LockWaits: w.got}
	if w.err != nil {
		r.Error = w.err.Error()
	}
	return r
}
