package main

import (
	"context"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	pb "github.com/careteam/careteam/proto/careteam/v1"
)

// The bare gRPC floor answers careteam's GetReferral, over each of its
// connections, with its fixed referral.
func TestBareGRPCAnswers(t *testing.T) {
	b, err := startBareGRPC(2)
	if err != nil {
		t.Fatal(err)
	}
	defer b.close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range 2 {
		resp, err := b.stubs[b.next.Add(1)%2].GetReferral(ctx, &pb.GetReferralRequest{Name: "referrals/x"})
		if err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(resp.GetReferral(), b.answer) || len(resp.GetReferral().GetHistory()) != 4 {
			t.Fatalf("got %v, want the fixed referral", resp.GetReferral())
		}
	}
	if _, err := pb.NewReferralServiceClient(b.conns[0]).ListReferrals(ctx, &pb.ListReferralsRequest{}); err == nil {
		t.Error("ListReferrals answered; the floor implements GetReferral only")
	}
}

func TestRatiosAndTargets(t *testing.T) {
	r := &results{}
	phase := func(name string, throughput, p99 float64) {
		r.Phases = append(r.Phases, phaseOut{Name: name, RPCs: []rpcResult{{RPC: name, Count: 100, Throughput: throughput, P99: p99}}})
	}
	for _, f := range []struct {
		fl              floor
		throughput, p99 float64
	}{{txFloor, 400, 40}, {readFloor, 2000, 10}, {readAudit, 800, 20}} {
		phase(f.fl.name, f.throughput, f.p99)
		r.Floors = append(r.Floors, floorResult{Key: f.fl.key, rpcResult: r.Phases[len(r.Phases)-1].RPCs[0]})
	}
	phase("StartSession", 200, 130)  // 0.5 of tx, but p99 3.25x: missed
	phase("GetReferral", 900, 30)    // 0.45 of read, 1.125 of read+audit: both met
	phase("CheckClearance", 700, 30) // 0.35 of read: missed; 0.875 of read+audit: missed
	phase("mix", 1, 1)
	r.ratios()

	type key struct{ rpc, floor string }
	got := map[key]bool{}
	for _, q := range r.Ratios {
		if len(q.Floors) != 3 {
			t.Errorf("%s: against %d floors, want 3 (the bare gRPC floor did not run)", q.RPC, len(q.Floors))
		}
		for _, tg := range q.Targets {
			if tg.Met == nil {
				t.Fatalf("%s against %s: not evaluated", q.RPC, tg.Floor)
			}
			got[key{q.RPC, tg.Floor}] = *tg.Met
		}
	}
	want := map[key]bool{
		{"StartSession", "tx"}: false, {"GetReferral", "read"}: true, {"GetReferral", "read+audit"}: true,
		{"CheckClearance", "read"}: false, {"CheckClearance", "read+audit"}: false,
	}
	if len(r.Ratios) != 3 || len(got) != len(want) {
		t.Fatalf("got ratios %+v, want StartSession, GetReferral and CheckClearance with %d targets", r.Ratios, len(want))
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s against %s: met %v, want %v", k.rpc, k.floor, got[k], w)
		}
	}
	if q := r.Ratios[1]; q.Floors[0].Floor != "tx" || q.Floors[0].Throughput != 900.0/400 || q.Floors[0].P99 != 30.0/40 {
		t.Errorf("GetReferral against tx: %+v, want 2.25 / 0.75x", q.Floors[0])
	}
}
