package faults

import (
	"context"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/stats"

	pb "github.com/careteam/careteam/proto/careteam/v1"
)

// TestConnectionsCutMidLoad puts a TCP proxy between the clients and
// careteamd that cuts connections at random. A client.Watch through it
// must resume after every cut without a gap: it receives every event
// ListEvents lists, in cursor order, none twice. Writes through it,
// retried with the same request_id until acknowledged and then sent once
// more, must each create one resource, the same one every time.
func TestConnectionsCutMidLoad(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 55*time.Second)
	defer cancel()
	pg := startCluster(t)
	// Frequent heartbeats: a stream that delivers anything is healthy, so
	// the watcher's reconnect backoff starts over after each cut.
	s := startServer(t, pg.url(), "--heartbeat", "200ms")
	tm := newTeam(t, ctx, s)
	p := startProxy(t, s.addr)

	var watches atomic.Int64
	countWatches := grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		if method == pb.EventService_WatchEvents_FullMethodName {
			watches.Add(1)
		}
		return streamer(ctx, desc, cc, method, opts...)
	})
	w := watchEvents(t, ctx, s.clientAt(t, p.addr(), "dr", countWatches))

	// Every attempt of a write, the client's transparent retries included:
	// more attempts than calls means cuts hit writes in flight, which
	// gRPC then sent again, with the same request_id.
	attempts := &attemptCounter{}
	stopCutting := p.cutAtRandom(30*time.Millisecond, 200*time.Millisecond)
	l := newLoad(t, ctx)
	// Each write is sent again after its acknowledgement: the second
	// answer must name the same resource (the ledger checks), and must not
	// be refused as a second submit.
	send := func(k requestKey, call func(context.Context) (string, error)) (string, error) {
		if _, err := l.do(k, call, nil); err != nil {
			return "", err
		}
		return l.do(k, call, nil)
	}
	for range 3 {
		c := s.clientAt(t, p.addr(), "dr", attempts.options()...)
		l.run(func() {
			create := &pb.CreateReferralRequest{RequestId: uuid.NewString(), Referral: tm.newReferral(6)}
			name, err := send(requestKey{"dr", "CreateReferral", create.RequestId}, func(ctx context.Context) (string, error) {
				resp, err := c.Referrals.CreateReferral(ctx, create)
				return resp.GetReferral().GetName(), err
			})
			if err != nil {
				return
			}
			submit := &pb.SubmitReferralRequest{Name: name, RequestId: uuid.NewString()}
			_, _ = send(requestKey{"dr", "SubmitReferral", submit.RequestId}, func(ctx context.Context) (string, error) {
				resp, err := c.Referrals.SubmitReferral(ctx, submit)
				return resp.GetReferral().GetName(), err
			})
		})
	}
	// Run until the watcher has been cut off and resumed many times and
	// writes in flight have been cut and sent again.
	progress := func() bool {
		return watches.Load() >= 10 && p.cuts.Load() >= 40 && attempts.retries() >= 3 && l.ledger.acked.Load() >= 60
	}
	if !waitUntil(30*time.Second, progress) {
		t.Fatalf("after 30s: %d watch streams, %d connections cut, %d write attempts sent again; %s",
			watches.Load(), p.cuts.Load(), attempts.retries(), l.ledger.summary())
	}
	l.stop()
	stopCutting()
	t.Logf("%s; %d connections cut, %d watch streams opened, %d write attempts sent again by gRPC",
		l.ledger.summary(), p.cuts.Load(), watches.Load(), attempts.retries())

	w.check(t, ctx, s.client(t, "dr"))

	l.ledger.checkCodes(t, retryable...)
	conn := connect(t, ctx, pg)
	checkLedger(t, ctx, conn, l.ledger)
	checkConsistency(t, ctx, conn)
	if t.Failed() {
		t.Logf("careteamd's failed calls:\n%s", s.failedCalls())
	}
}

// attemptCounter counts the attempts of unary calls, and the calls.
type attemptCounter struct {
	calls, attempts atomic.Int64
}

func (a *attemptCounter) retries() int64 { return a.attempts.Load() - a.calls.Load() }

func (a *attemptCounter) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }

func (a *attemptCounter) HandleRPC(_ context.Context, s stats.RPCStats) {
	if b, ok := s.(*stats.Begin); ok && b.IsClient() && !b.IsClientStream && !b.IsServerStream {
		a.attempts.Add(1)
		if b.IsTransparentRetryAttempt {
			// Sent again before the server saw it: not a retry of a write.
			a.attempts.Add(-1)
		}
	}
}

// options counts with a stats handler and a unary interceptor.
func (a *attemptCounter) options() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithStatsHandler(a), grpc.WithChainUnaryInterceptor(
		func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			a.calls.Add(1)
			return invoker(ctx, method, req, reply, cc, opts...)
		})}
}

func (a *attemptCounter) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}

func (a *attemptCounter) HandleConn(context.Context, stats.ConnStats) {}

// proxy relays TCP connections to a target and cuts them on demand.
type proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	pipes  map[*pipe]struct{}
	closed bool
	cuts   atomic.Int64
}

// pipe is one relayed connection: the client's and careteamd's ends.
type pipe struct {
	a, b net.Conn
	once sync.Once
}

func (p *pipe) close() {
	p.once.Do(func() {
		p.a.Close()
		p.b.Close()
	})
}

func startProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, pipes: map[*pipe]struct{}{}}
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.relay(c)
	}
}

func (p *proxy) relay(c net.Conn) {
	d, err := net.DialTimeout("tcp", p.target, 2*time.Second)
	if err != nil {
		c.Close()
		return
	}
	pp := &pipe{a: c, b: d}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		pp.close()
		return
	}
	p.pipes[pp] = struct{}{}
	p.mu.Unlock()
	var wg sync.WaitGroup
	wg.Add(2)
	copyThenClose := func(dst, src net.Conn) {
		defer wg.Done()
		_, _ = io.Copy(dst, src)
		pp.close()
	}
	go copyThenClose(d, c)
	go copyThenClose(c, d)
	wg.Wait()
	p.mu.Lock()
	delete(p.pipes, pp)
	p.mu.Unlock()
}

// cutOne closes one relayed connection, chosen at random, at both ends.
func (p *proxy) cutOne() {
	p.mu.Lock()
	var victim *pipe
	i, n := 0, rand.IntN(max(len(p.pipes), 1))
	for pp := range p.pipes {
		if i == n {
			victim = pp
			break
		}
		i++
	}
	p.mu.Unlock()
	if victim != nil {
		victim.close()
		p.cuts.Add(1)
	}
}

// cutAtRandom cuts a connection after every random interval between lo
// and hi until the returned function is called.
func (p *proxy) cutAtRandom(lo, hi time.Duration) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for {
			select {
			case <-done:
				return
			case <-time.After(lo + rand.N(hi-lo)):
				p.cutOne()
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() { close(done) })
		<-finished
	}
}

func (p *proxy) close() {
	p.mu.Lock()
	p.closed = true
	pipes := make([]*pipe, 0, len(p.pipes))
	for pp := range p.pipes {
		pipes = append(pipes, pp)
	}
	p.mu.Unlock()
	p.ln.Close()
	for _, pp := range pipes {
		pp.close()
	}
}
