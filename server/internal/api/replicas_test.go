package api_test

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/careteam/careteam/client"
	"github.com/careteam/careteam/devtoken"
	pb "github.com/careteam/careteam/proto/careteam/v1"
	"github.com/careteam/careteam/server/internal/clock"
	"github.com/careteam/careteam/server/internal/testdb"
)

// Replicas: careteamd started several times over one database (each
// through package app, as the harness starts one), with one signing key
// and one clock.

// dlvCluster is one database and what every replica over it shares.
type dlvCluster struct {
	url    string
	clock  *clock.Manual
	key    *jose.JSONWebKey
	signer *devtoken.Signer
}

// dlvNodeConfig tunes one replica.
type dlvNodeConfig struct {
	buffer    int           // --event-buffer (default 256)
	catchUp   time.Duration // how often the hub reads unprompted (default 50ms)
	heartbeat time.Duration // --heartbeat (default 1s)
	manualHub bool          // the test calls startHub itself
}

// dlvNode is one replica: careteamd on loopback with its own pool over
// the cluster's database.
type dlvNode struct {
	*harness
	startHub func()

	mu sync.Mutex
	// ended records how each WatchEvents handler labelled with the
	// x-test-watcher header ended, as the server returned it.
	ended map[string]error
}

const watcherLabel = "x-test-watcher"

func newDlvCluster(tb testing.TB) *dlvCluster {
	tb.Helper()
	key := newTestKey(tb)
	signer, err := devtoken.NewSigner(*key)
	if err != nil {
		tb.Fatal(err)
	}
	return &dlvCluster{url: testdb.NewURL(tb), clock: clock.NewManual(start), key: key, signer: signer}
}

func (c *dlvCluster) node(tb testing.TB, cfg dlvNodeConfig) *dlvNode {
	tb.Helper()
	if cfg.buffer == 0 {
		cfg.buffer = 256
	}
	if cfg.heartbeat == 0 {
		cfg.heartbeat = time.Second
	}
	pc, err := pgxpool.ParseConfig(c.url)
	if err != nil {
		tb.Fatal(err)
	}
	pc.MaxConns = 16
	pool, err := pgxpool.NewWithConfig(context.Background(), pc)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(pool.Close)
	n := &dlvNode{ended: map[string]error{}, startHub: func() {}}
	record := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		err := handler(srv, ss)
		if md, ok := metadata.FromIncomingContext(ss.Context()); ok && len(md.Get(watcherLabel)) > 0 {
			n.mu.Lock()
			n.ended[md.Get(watcherLabel)[0]] = err
			n.mu.Unlock()
		}
		return err
	}
	o := harnessOptions{pool: pool, clock: c.clock, key: c.key, hubCatchUp: cfg.catchUp,
		flags:         []string{"--event-buffer", strconv.Itoa(cfg.buffer), "--heartbeat", cfg.heartbeat.String()},
		serverOptions: []grpc.ServerOption{grpc.ChainStreamInterceptor(record)}}
	if cfg.manualHub {
		hold := make(chan struct{})
		var once sync.Once
		o.holdLoops, n.startHub = hold, func() { once.Do(func() { close(hold) }) }
	}
	n.harness = newHarnessWith(tb, o)
	return n
}

// streamEnd returns how the labelled WatchEvents handler ended, and
// whether it has.
func (n *dlvNode) streamEnd(label string) (error, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	err, ok := n.ended[label]
	return err, ok
}

// harness returns the test harness of replica n, so that the fixtures
// (newTeam's cast, tm.ready and the like) work against it, reporting to t.
func (c *dlvCluster) harness(t *testing.T, n *dlvNode) *harness {
	h := *n.harness
	h.t, h.ctx = t, t.Context()
	return &h
}

// dial connects to addr as subject, with extra client options.
func (c *dlvCluster) dial(tb testing.TB, addr, subject string, opts ...client.Option) *client.Client {
	tb.Helper()
	opts = append([]client.Option{client.WithPlaintext(), client.WithToken(func(context.Context) (string, error) {
		return c.signer.Sign(devtoken.Claims{Issuer: testIssuer, Subject: subject, Audience: devtoken.Audience, IssuedAt: c.clock.Now(), TTL: 24 * time.Hour})
	})}, opts...)
	cl, err := client.Dial(addr, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cl.Close() })
	return cl
}

// teamOn is newTeam's cast on an existing harness.
func teamOn(h *harness) *team {
	tm := &team{harness: h}
	tm.clinic = h.org("Lakeside Family Medicine", pb.OrganizationKind_ORGANIZATION_KIND_PHYSICIAN_PRACTICE)
	tm.spa = h.org("Harbor Massage", pb.OrganizationKind_ORGANIZATION_KIND_MASSAGE_PRACTICE)
	tm.otherSpa = h.org("Bay Massage", pb.OrganizationKind_ORGANIZATION_KIND_MASSAGE_PRACTICE)
	tm.dr = h.practitioner(tm.clinic, pb.Role_ROLE_PHYSICIAN, "dr")
	tm.otherDr = h.practitioner(tm.clinic, pb.Role_ROLE_PHYSICIAN, "other-dr")
	tm.lmt = h.practitioner(tm.spa, pb.Role_ROLE_MASSAGE_THERAPIST, "lmt", pb.Specialty_SPECIALTY_ARTHRITIS)
	tm.lmt2 = h.practitioner(tm.spa, pb.Role_ROLE_MASSAGE_THERAPIST, "lmt2", pb.Specialty_SPECIALTY_ARTHRITIS, pb.Specialty_SPECIALTY_ORTHOPEDIC)
	tm.otherLmt = h.practitioner(tm.otherSpa, pb.Role_ROLE_MASSAGE_THERAPIST, "other-lmt", pb.Specialty_SPECIALTY_ARTHRITIS)
	tm.coord = h.practitioner(tm.clinic, pb.Role_ROLE_COORDINATOR, "coord")
	tm.spaCoord = h.practitioner(tm.spa, pb.Role_ROLE_COORDINATOR, "spa-coord")
	tm.patient = h.patient("dr", "MRN-100")
	return tm
}
