package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/careteam/careteam/devtoken"
	"github.com/careteam/careteam/server/internal/loadfloor"
)

// config is the command line.
type config struct {
	targets     []string
	dataDir     string
	databaseURL string
	ca          string
	metrics     []string

	concurrency  int
	rate         float64
	duration     time.Duration
	soloDuration time.Duration
	warmup       time.Duration
	timeout      time.Duration
	maxInflight  int
	conns        int

	mix    mix
	solo   []string
	phases []string

	watchers   int
	watchConns int
	scale      int
	soak       time.Duration
	soakRate   float64
	jsonPath   string

	clinics, spas, physicians, therapists, patients int
	prefix                                          string
	// prefixGiven: take up the earlier run's people if they exist.
	prefixGiven bool
}

// defaultMix is a working day's proportions: reads and session work
// dominate, a referral's life (create, submit, accept) is a few percent,
// and each step's weight keeps its queue fed by the step before.
const defaultMix = "CreateReferral=4,SubmitReferral=3,AcceptReferral=3,IssueClearance=1," +
	"StartSession=12,UpdateSessionNote=11,SignSessionNote=10," +
	"GetReferral=16,CheckClearance=12,GetReferralProgress=4,ListReferrals=12,ListSessions=10"

// defaultSolo are the hot RPCs measured alone against the floors.
const defaultSolo = "StartSession,GetReferral,CheckClearance,ListReferrals,ListSessions"

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func parseConfig(args []string, stderr io.Writer) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("careteam-load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var targets, metrics stringList
	fs.Var(&targets, "target", "careteamd address, host:port (repeatable: two or more are balanced round robin; default 127.0.0.1:50051)")
	fs.Var(&metrics, "metrics", "careteamd's Prometheus endpoint, such as http://127.0.0.1:9464/metrics (repeatable, one per target): resident memory, goroutines and the server-side view of StartSession")
	fs.StringVar(&c.dataDir, "data-dir", "", "careteamd's data directory, whose dev key mints the tokens (default as careteamd's)")
	fs.StringVar(&c.databaseURL, "database-url", "", "the database careteamd uses, for the database floors (in a schema of their own, careteam_floor), the lock-wait sampler and --scale (default: the embedded one in --data-dir)")
	fs.StringVar(&c.ca, "ca", "", "speak TLS, trusting the CA certificates in this PEM file (default: plaintext to loopback)")
	fs.IntVar(&c.concurrency, "concurrency", 32, "callers in a closed loop (each waits for its answer), and of every solo and floor phase")
	fs.Float64Var(&c.rate, "rate", 0, "open loop: calls started per second in the mix whatever the answers' speed (0: closed loop at --concurrency)")
	fs.DurationVar(&c.duration, "duration", 30*time.Second, "how long the mix runs (after --warmup)")
	fs.DurationVar(&c.soloDuration, "solo-duration", 15*time.Second, "how long each solo and floor phase runs (after --warmup)")
	fs.DurationVar(&c.warmup, "warmup", 3*time.Second, "unrecorded lead-in of every phase")
	fs.DurationVar(&c.timeout, "timeout", 30*time.Second, "deadline of each call")
	fs.IntVar(&c.maxInflight, "max-inflight", 10000, "open loop: calls in flight at most; later arrivals wait, and their wait counts in their latency")
	fs.IntVar(&c.conns, "conns", 4, "gRPC connections the calls are spread over (each balanced over every target)")
	mixSpec := fs.String("mix", defaultMix, "the mix: RPC=weight,... from "+strings.Join(mixNames(), ", "))
	solo := fs.String("solo", defaultSolo, "hot RPCs measured alone at --concurrency and compared with the floors")
	phases := fs.String("phases", "mix,solo", "phases to run: mix (the realistic mix), solo (each --solo RPC alone, and the floors)")
	fs.IntVar(&c.watchers, "watchers", 8, "WatchEvents streams open during the mix, as integrations keep them")
	fs.IntVar(&c.watchConns, "watch-conns", 4, "connections the watchers' streams are spread over")
	fs.IntVar(&c.scale, "scale", 0, "before the run, bulk-load this many referrals with their sessions (COPY, through the database URL) into the load's practices")
	fs.DurationVar(&c.soak, "soak", 0, "after the other phases, run the mix at half the measured maximum rate for this long and report goroutines and resident memory at its start and end (needs --metrics)")
	fs.Float64Var(&c.soakRate, "soak-rate", 0, "the soak's rate in calls per second (default: half the closed-loop mix's throughput)")
	fs.StringVar(&c.jsonPath, "json", "", "also write the results as JSON to this file")
	fs.IntVar(&c.clinics, "clinics", 2, "physician practices to set up")
	fs.IntVar(&c.spas, "spas", 2, "massage practices to set up")
	fs.IntVar(&c.physicians, "physicians", 4, "physicians per clinic")
	fs.IntVar(&c.therapists, "therapists", 8, "therapists per massage practice")
	fs.IntVar(&c.patients, "patients", 16, "patients per physician")
	fs.StringVar(&c.prefix, "prefix", "", "prefix of the token subjects the run creates (default: load-<time>, new every run); an earlier run's prefix (and counts) takes up its people and patients, such as those a --scale seed made history for")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: careteam-load [flags]\n\n"+
			"Drives a realistic mix of careteam calls through the Go client against running careteamd replicas,\n"+
			"then each hot RPC alone beside floors that run none of careteamd's code (raw pgx transactions and\n"+
			"primary-key reads on careteamd's database, a bare gRPC call in this process), and prints per-RPC\n"+
			"latency and throughput, their ratios to each floor, the targets, and StartSession's lock waits.\n"+
			"careteamd must run in dev mode (its data directory's key mints the tokens) and with --rate-limit 0.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	c.targets, c.metrics = targets, metrics
	if len(c.targets) == 0 {
		c.targets = []string{"127.0.0.1:50051"}
	}
	if c.dataDir == "" {
		d, err := devtoken.DefaultDataDir()
		if err != nil {
			return nil, err
		}
		c.dataDir = d
	}
	if c.databaseURL == "" {
		c.databaseURL = loadfloor.EmbeddedURL(c.dataDir)
	}
	c.prefixGiven = c.prefix != ""
	if !c.prefixGiven {
		c.prefix = "load-" + strconv.FormatInt(time.Now().Unix(), 36)
	}
	var err error
	if c.mix, err = parseMix(*mixSpec); err != nil {
		return nil, err
	}
	c.solo = splitList(*solo)
	for _, s := range c.solo {
		if _, ok := ops[s]; !ok {
			return nil, fmt.Errorf("--solo: unknown RPC %q; choose from %s", s, strings.Join(mixNames(), ", "))
		}
	}
	c.phases = splitList(*phases)
	for _, p := range c.phases {
		if p != "mix" && p != "solo" {
			return nil, fmt.Errorf("--phases: unknown phase %q; choose from mix, solo", p)
		}
	}
	var errs []error
	positive := func(name string, v int) {
		if v <= 0 {
			errs = append(errs, fmt.Errorf("--%s must be positive", name))
		}
	}
	positive("concurrency", c.concurrency)
	positive("conns", c.conns)
	positive("watch-conns", c.watchConns)
	positive("max-inflight", c.maxInflight)
	positive("clinics", c.clinics)
	positive("spas", c.spas)
	positive("physicians", c.physicians)
	positive("therapists", c.therapists)
	positive("patients", c.patients)
	if c.rate < 0 || c.soakRate < 0 || c.watchers < 0 || c.scale < 0 || c.soak < 0 {
		errs = append(errs, errors.New("--rate, --soak-rate, --watchers, --scale and --soak may not be negative"))
	}
	if c.duration <= 0 || c.soloDuration <= 0 || c.warmup < 0 {
		errs = append(errs, errors.New("--duration and --solo-duration must be positive, --warmup not negative"))
	}
	if len(c.metrics) > 0 && len(c.metrics) != len(c.targets) {
		errs = append(errs, errors.New("give one --metrics per --target, in the same order"))
	}
	return c, errors.Join(errs...)
}

func (c *config) runs(phase string) bool { return slices.Contains(c.phases, phase) }

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// mix is the weighted choice of RPCs of the mix phase.
type mix struct {
	names   []string
	weights []int
	total   int
}

func parseMix(spec string) (mix, error) {
	var m mix
	for _, f := range splitList(spec) {
		name, w, ok := strings.Cut(f, "=")
		weight, err := strconv.Atoi(w)
		if !ok || err != nil || weight < 0 {
			return m, fmt.Errorf("--mix: %q is not RPC=weight", f)
		}
		if _, ok := ops[name]; !ok {
			return m, fmt.Errorf("--mix: unknown RPC %q; choose from %s", name, strings.Join(mixNames(), ", "))
		}
		if weight > 0 {
			m.names, m.weights, m.total = append(m.names, name), append(m.weights, weight), m.total+weight
		}
	}
	if m.total == 0 {
		return m, errors.New("--mix: give at least one RPC a positive weight")
	}
	return m, nil
}

func (m mix) pick(n int) string {
	for i, w := range m.weights {
		if n < w {
			return m.names[i]
		}
		n -= w
	}
	return m.names[len(m.names)-1]
}

// share is the fraction of the mix's calls that go to name.
func (m mix) share(name string) float64 {
	for i, n := range m.names {
		if n == name {
			return float64(m.weights[i]) / float64(m.total)
		}
	}
	return 0
}

func (m mix) String() string {
	parts := make([]string, len(m.names))
	for i := range m.names {
		parts[i] = fmt.Sprintf("%s=%d", m.names[i], m.weights[i])
	}
	return strings.Join(parts, ",")
}
