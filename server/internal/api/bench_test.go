package api_test

import (
	"sort"
	"sync"
	"testing"
	"time"

	pb "github.com/careteam/careteam/proto/careteam/v1"
)

// benchReferrals makes n accepted referrals with clearance and consent, each
// authorizing 52 visits, so that a benchmark can start many sessions.
func benchReferrals(tm *team, n int) []*pb.Referral {
	var out []*pb.Referral
	for range n {
		in := tm.newReferral()
		in.AuthorizedVisits = 52
		r := tm.create(in)
		if _, err := (&clientSet{tm.as("dr"), r.GetName()}).submit(); err != nil {
			tm.t.Fatal(err)
		}
		if _, err := (&clientSet{tm.as("lmt"), r.GetName()}).accept(); err != nil {
			tm.t.Fatal(err)
		}
		out = append(out, r)
	}
	// The practice sees the patient once a referral has reached it.
	tm.consent()
	tm.clear(&pb.Clearance{})
	return out
}

// parallelCalls runs ops calls of call on workers goroutines and reports
// calls per second and the p99 latency.
func parallelCalls(b *testing.B, workers int, call func(worker, i int) error) {
	b.Helper()
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	next := make(chan int)
	b.ResetTimer()
	startAll := time.Now()
	for w := range workers {
		wg.Go(func() {
			var mine []time.Duration
			for i := range next {
				t0 := time.Now()
				if err := call(w, i); err != nil {
					b.Error(err)
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		})
	}
	for i := range b.N {
		next <- i
	}
	close(next)
	wg.Wait()
	elapsed := time.Since(startAll)
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "calls/s")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}

// BenchmarkStartSession starts sessions through gRPC against the real
// database with 8 concurrent therapists' calls.
func BenchmarkStartSession(b *testing.B) {
	benchStartSession(b, harnessOptions{})
}

// BenchmarkStartSessionUnaudited is the same without the audit trail: the
// ratio of the two is the trail's cost.
func BenchmarkStartSessionUnaudited(b *testing.B) {
	benchStartSession(b, harnessOptions{unaudited: true})
}

func benchStartSession(b *testing.B, o harnessOptions) {
	tm := newTeamWith(b, o)
	refs := benchReferrals(tm, b.N/52+1)
	lmt := tm.as("lmt")
	parallelCalls(b, 8, func(_, i int) error {
		_, err := lmt.Sessions.StartSession(tm.ctx, &pb.StartSessionRequest{Referral: refs[i/52].GetName(), Planned: swedishLumbar})
		return err
	})
}

// BenchmarkCheckClearance asks the gate through gRPC with 8 concurrent
// callers.
func BenchmarkCheckClearance(b *testing.B) {
	tm := newTeam(b)
	refs := benchReferrals(tm, 1)
	lmt := tm.as("lmt")
	parallelCalls(b, 8, func(_, _ int) error {
		_, err := lmt.Clinical.CheckClearance(tm.ctx, &pb.CheckClearanceRequest{Referral: refs[0].GetName(), Planned: swedishLumbar})
		return err
	})
}
