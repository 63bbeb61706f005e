package main

import (
	"io"
	"math/rand/v2"
	"testing"
	"time"
)

func TestParseMix(t *testing.T) {
	m, err := parseMix("StartSession=3, GetReferral=1,ListSessions=0")
	if err != nil {
		t.Fatal(err)
	}
	if m.total != 4 || len(m.names) != 2 {
		t.Fatalf("got %+v, want StartSession=3,GetReferral=1 (a zero weight drops the entry)", m)
	}
	counts := map[string]int{}
	for n := range m.total {
		counts[m.pick(n)]++
	}
	if counts["StartSession"] != 3 || counts["GetReferral"] != 1 {
		t.Fatalf("picks %v do not follow the weights", counts)
	}
	for _, bad := range []string{"", "StartSession", "StartSession=x", "Nope=1", "StartSession=-1", "StartSession=0"} {
		if _, err := parseMix(bad); err == nil {
			t.Errorf("parseMix(%q) accepted", bad)
		}
	}
}

func TestParseConfigDefaults(t *testing.T) {
	c, err := parseConfig([]string{"--data-dir", "/nonexistent"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.targets) != 1 || c.concurrency != 32 || c.prefixGiven || c.databaseURL == "" || !c.runs("mix") || !c.runs("solo") {
		t.Fatalf("unexpected defaults: %+v", c)
	}
	if _, err := parseConfig([]string{"--target", "a:1", "--target", "b:2", "--metrics", "http://a"}, io.Discard); err == nil {
		t.Error("one --metrics for two targets was accepted")
	}
}

// The pool hands a referral to one start at a time and drops it when its
// visits are used.
func TestPool(t *testing.T) {
	var p pool
	rng := rand.New(rand.NewPCG(1, 2))
	p.add(&referral{name: "referrals/a", left: 2})
	r := p.take(rng)
	if r == nil || p.take(rng) != nil {
		t.Fatal("a taken referral was handed out twice")
	}
	p.give(r, true)
	if free, visits := p.size(); free != 1 || visits != 1 {
		t.Fatalf("after one start: %d free, %d visits; want 1, 1", free, visits)
	}
	p.give(p.take(rng), false)
	p.give(p.take(rng), true)
	if free, visits := p.size(); free != 0 || visits != 0 {
		t.Fatalf("after the last visit: %d free, %d visits; want 0, 0", free, visits)
	}
}

func TestPhaseStatsRecordsAfterWarmup(t *testing.T) {
	ph := newPhaseStats("x", true)
	ph.record("GetReferral", time.Millisecond, nil) // during the warm-up: ignored
	ph.start()
	ph.record("GetReferral", 2*time.Millisecond, nil)
	ph.detail("GetReferral (shape)", 2*time.Millisecond, nil)
	ph.stop()
	r := ph.result("GetReferral")
	if r.Count != 1 || r.P50 < 1.9 || r.P50 > 2.1 {
		t.Fatalf("got %+v, want one call of 2ms", r)
	}
	if ph.calls.Load() != 1 {
		t.Fatalf("a detail row counted as a call")
	}
}
