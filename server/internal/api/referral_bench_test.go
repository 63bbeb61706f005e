package api_test

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/careteam/careteam/client"
	pb "github.com/careteam/careteam/proto/careteam/v1"
)

// cycleCast is a physician with a patient and a therapist: the parties of
// one referral cycle.
type cycleCast struct {
	dr, lmt  *client.Client
	referral *pb.Referral // what the physician sends, patient and therapist set
}

// newCycleCasts adds n casts to the team's clinic and massage practice,
// each its own physician, patient and therapist, so that parallel callers
// act for different people as they would in production.
func newCycleCasts(tm *team, n int) []cycleCast {
	casts := make([]cycleCast, n)
	for i := range casts {
		dr, lmt := fmt.Sprintf("cycle-dr-%d", i), fmt.Sprintf("cycle-lmt-%d", i)
		tm.practitioner(tm.clinic, pb.Role_ROLE_PHYSICIAN, dr)
		th := tm.practitioner(tm.spa, pb.Role_ROLE_MASSAGE_THERAPIST, lmt, pb.Specialty_SPECIALTY_ARTHRITIS)
		r := tm.newReferral()
		r.Patient, r.TargetTherapist = tm.harness.patient(dr, "").GetName(), th.GetName()
		casts[i] = cycleCast{dr: tm.as(dr), lmt: tm.as(lmt), referral: r}
	}
	return casts
}

// cycle creates a referral as the physician, submits it, and has the
// therapist accept it: the three calls of a referral reaching treatment.
func (c *cycleCast) cycle(ctx context.Context) error {
	created, err := c.dr.Referrals.CreateReferral(ctx, &pb.CreateReferralRequest{Referral: c.referral})
	if err != nil {
		return fmt.Errorf("CreateReferral: %w", err)
	}
	name := created.GetReferral().GetName()
	if _, err := c.dr.Referrals.SubmitReferral(ctx, &pb.SubmitReferralRequest{Name: name}); err != nil {
		return fmt.Errorf("SubmitReferral: %w", err)
	}
	accepted, err := c.lmt.Referrals.AcceptReferral(ctx, &pb.AcceptReferralRequest{Name: name})
	if err != nil {
		return fmt.Errorf("AcceptReferral: %w", err)
	}
	if st := accepted.GetReferral().GetState(); st != pb.ReferralState_REFERRAL_STATE_ACCEPTED {
		return fmt.Errorf("accepted referral is %v", st)
	}
	return nil
}

// BenchmarkReferralCycle measures CreateReferral+SubmitReferral+
// AcceptReferral, one op being the three calls, through gRPC into the
// database: serially, for the latency of one cycle, and from parallel
// callers, for the throughput the server sustains.
func BenchmarkReferralCycle(b *testing.B) {
	tm := newTeam(b)
	const parallelism = 8 // callers per GOMAXPROCS: each spends most of a cycle waiting on the network and the database
	casts := newCycleCasts(tm, parallelism*runtime.GOMAXPROCS(0))
	// One cycle per cast, all at once, before timing: opening the pool's
	// connections and preparing the statements on each are costs a server
	// in steady state no longer pays.
	var warm sync.WaitGroup
	for i := range casts {
		warm.Go(func() {
			if err := casts[i].cycle(tm.ctx); err != nil {
				b.Error(err)
			}
		})
	}
	warm.Wait()

	b.Run("serial", func(b *testing.B) {
		c := &casts[0]
		durations := make([]time.Duration, 0, b.N)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			t0 := time.Now()
			if err := c.cycle(b.Context()); err != nil {
				b.Fatal(err)
			}
			durations = append(durations, time.Since(t0))
		}
		b.StopTimer()
		reportCycles(b, durations)
	})

	b.Run(fmt.Sprintf("parallel/callers=%d", len(casts)), func(b *testing.B) {
		var next atomic.Int64
		var mu sync.Mutex
		var durations []time.Duration
		b.SetParallelism(parallelism)
		b.ResetTimer()
		b.RunParallel(func(p *testing.PB) {
			c := &casts[int(next.Add(1)-1)%len(casts)]
			var mine []time.Duration
			for p.Next() {
				t0 := time.Now()
				if err := c.cycle(b.Context()); err != nil {
					b.Error(err)
					return
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			durations = append(durations, mine...)
			mu.Unlock()
		})
		b.StopTimer()
		reportCycles(b, durations)
	})
}

// reportCycles reports throughput as cycles/s and the latency of one
// cycle as p50/p99 (under parallel callers, queueing included).
func reportCycles(b *testing.B, durations []time.Duration) {
	if len(durations) == 0 {
		return
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "cycles/s")
	reportPercentiles(b, durations)
}

func reportPercentiles(b *testing.B, d []time.Duration) {
	slices.Sort(d)
	at := func(p float64) float64 {
		return float64(d[max(int(math.Ceil(p*float64(len(d))))-1, 0)].Nanoseconds())
	}
	b.ReportMetric(at(0.50), "p50-ns")
	b.ReportMetric(at(0.99), "p99-ns")
}
