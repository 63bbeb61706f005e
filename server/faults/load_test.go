package faults

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/careteam/careteam/client"
	pb "github.com/careteam/careteam/proto/careteam/v1"
)

// ledger is what the callers were told: every write acknowledged OK, by
// its idempotency key, with the resource it returned, and the code of
// every failed attempt.
type ledger struct {
	mu         sync.Mutex
	acks       map[requestKey]string // key -> resource name returned
	codes      map[codes.Code]int
	unexpected []string
	acked      atomic.Int64
	retried    atomic.Int64 // writes acknowledged after a failed attempt
	// okAt and failedAt are when attempts were answered, for outage().
	okAt, failedAt []time.Time
}

// requestKey is how careteamd keys idempotent writes (the request_ids
// table): who, which method, which request_id.
type requestKey struct {
	subject, method, requestID string
}

func newLedger() *ledger {
	return &ledger{acks: map[requestKey]string{}, codes: map[codes.Code]int{}}
}

// ack records an OK answer. Every OK answer to one request_id must name
// the same resource: a retry replays the first result.
func (l *ledger) ack(k requestKey, resource string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if prev, ok := l.acks[k]; ok && prev != resource {
		l.unexpected = append(l.unexpected, fmt.Sprintf("%s %s: answered %s, and %s before", k.method, k.requestID, resource, prev))
		return
	}
	if _, ok := l.acks[k]; !ok {
		l.acked.Add(1)
	}
	l.acks[k] = resource
	l.okAt = append(l.okAt, time.Now())
}

func (l *ledger) failed(code codes.Code) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.codes[code]++
	l.failedAt = append(l.failedAt, time.Now())
}

// outage is what callers saw of a fault at since: from the first attempt
// that failed after it to the first that succeeded after that; ok is false
// if none failed, or none has succeeded since.
func (l *ledger) outage(since time.Time) (first, back time.Time, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	i, _ := slices.BinarySearchFunc(l.failedAt, since, time.Time.Compare)
	if i == len(l.failedAt) {
		return time.Time{}, time.Time{}, false
	}
	first = l.failedAt[i]
	j, _ := slices.BinarySearchFunc(l.okAt, first, time.Time.Compare)
	if j == len(l.okAt) {
		return first, time.Time{}, false
	}
	return first, l.okAt[j], true
}

func (l *ledger) fail(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.unexpected = append(l.unexpected, fmt.Sprintf(format, args...))
}

// snapshot returns a copy of the acknowledged writes and the failure codes.
func (l *ledger) snapshot() (map[requestKey]string, map[codes.Code]int, []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.acks), maps.Clone(l.codes), slices.Clone(l.unexpected)
}

func (l *ledger) failures() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, c := range l.codes {
		n += c
	}
	return n
}

// summary is the failure codes, for the test log.
func (l *ledger) summary() string {
	acks, cs, _ := l.snapshot()
	var parts []string
	for c, n := range cs {
		parts = append(parts, fmt.Sprintf("%v=%d", c, n))
	}
	sort.Strings(parts)
	return fmt.Sprintf("%d writes acknowledged, %d of them after a retry; failed attempts: %s",
		len(acks), l.retried.Load(), strings.Join(parts, " "))
}

// checkCodes fails the test if an attempt failed with a code outside
// allowed, or the ledger holds anything unexpected.
func (l *ledger) checkCodes(t *testing.T, allowed ...codes.Code) {
	t.Helper()
	_, cs, unexpected := l.snapshot()
	for c, n := range cs {
		if !slices.Contains(allowed, c) {
			t.Errorf("%d attempts failed with %v; only %v are acceptable here", n, c, allowed)
		}
	}
	for _, u := range unexpected {
		t.Error(u)
	}
}

// load drives writes at careteamd from several workers and keeps the
// ledger. A worker retries a failed write with the same request and
// request_id, as a careful client does, until it is acknowledged: the
// write is safe to retry because careteamd deduplicates request ids.
type load struct {
	t      *testing.T
	ledger *ledger
	// stopping: start no new write, but finish (retry) the one under way.
	stopping chan struct{}
	// hard bounds every retry; when it ends, the test has failed.
	hard    context.Context
	attempt time.Duration // each attempt's deadline
	wg      sync.WaitGroup
	once    sync.Once
}

func newLoad(t *testing.T, hard context.Context) *load {
	l := &load{t: t, ledger: newLedger(), stopping: make(chan struct{}), hard: hard, attempt: 5 * time.Second}
	// A test that ends early leaves no worker behind: hard ends with the
	// test's context, before cleanups run.
	t.Cleanup(func() {
		l.once.Do(func() { close(l.stopping) })
		l.wg.Wait()
	})
	return l
}

func (l *load) stopped() bool {
	select {
	case <-l.stopping:
		return true
	default:
		return false
	}
}

// stop has the workers finish the writes they have under way and waits
// for them.
func (l *load) stop() {
	l.once.Do(func() { close(l.stopping) })
	done := make(chan struct{})
	go func() { l.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-l.hard.Done():
		l.t.Fatalf("the load did not finish its writes: %s", l.ledger.summary())
	}
}

// waitAcked waits until n more writes than now have been acknowledged.
func (l *load) waitAcked(n int64, timeout time.Duration) {
	l.t.Helper()
	want := l.ledger.acked.Load() + n
	if !waitUntil(timeout, func() bool { return l.ledger.acked.Load() >= want }) {
		l.t.Fatalf("no progress: %d of %d writes acknowledged after %v; %s", l.ledger.acked.Load(), want, timeout, l.ledger.summary())
	}
}

// retryable are the codes after which a write with a request_id is safe
// and worth retrying. DEADLINE_EXCEEDED comes from the attempt deadlines
// the load sets itself (a write may be waiting for a connection when the
// fault hits); careteamd maps a context deadline to it, never to INTERNAL.
var retryable = []codes.Code{codes.Unavailable, codes.DeadlineExceeded}

// do performs one write until it is acknowledged: call is sent again,
// unchanged (same request_id), after every retryable failure. It returns
// the resource name, or the error that ended it: an error that expected
// accepts (a refusal the worker anticipates), else one recorded as
// unexpected.
func (l *load) do(k requestKey, call func(ctx context.Context) (string, error), expected func(error) bool) (string, error) {
	backoff := 20 * time.Millisecond
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(l.hard, l.attempt)
		name, err := call(ctx)
		cancel()
		if err == nil {
			if attempt > 1 {
				l.ledger.retried.Add(1)
			}
			l.ledger.ack(k, name)
			return name, nil
		}
		if l.hard.Err() != nil {
			l.ledger.fail("%s %s: still failing when the test ended: %v", k.method, k.requestID, err)
			return "", err
		}
		code := status.Code(err)
		if expected != nil && expected(err) {
			return "", err
		}
		l.ledger.failed(code)
		if !slices.Contains(retryable, code) {
			l.ledger.fail("%s %s: %v (%s)", k.method, k.requestID, err, details(err))
			return "", err
		}
		select {
		case <-l.hard.Done():
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 500*time.Millisecond)
	}
}

func details(err error) string {
	st, _ := status.FromError(err)
	var out []string
	for _, d := range st.Details() {
		out = append(out, fmt.Sprint(d))
	}
	return strings.Join(out, "; ")
}

// go runs worker until the load stops.
func (l *load) run(worker func()) {
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		for !l.stopped() && l.hard.Err() == nil {
			worker()
		}
	}()
}

// patients creates patients as subject, each with a medical record number
// of its own, so that a write applied twice would also collide on it.
func (l *load) patients(c *client.Client, subject string) {
	l.run(func() {
		id := uuid.NewString()
		req := &pb.CreatePatientRequest{RequestId: id, Patient: &pb.Patient{
			GivenName: "Load", FamilyName: "Patient", BirthDate: "1980-01-01",
			Identifiers: []*pb.Identifier{{System: "urn:careteam:faults:mrn", Value: id}},
		}}
		_, _ = l.do(requestKey{subject, "CreatePatient", id}, func(ctx context.Context) (string, error) {
			resp, err := c.Patients.CreatePatient(ctx, req)
			return resp.GetPatient().GetName(), err
		}, nil)
	})
}

// referrals creates and submits referrals as subject (a physician).
func (l *load) referrals(c *client.Client, subject string, tm *team) {
	l.run(func() {
		create := &pb.CreateReferralRequest{RequestId: uuid.NewString(), Referral: tm.newReferral(6)}
		name, err := l.do(requestKey{subject, "CreateReferral", create.RequestId}, func(ctx context.Context) (string, error) {
			resp, err := c.Referrals.CreateReferral(ctx, create)
			return resp.GetReferral().GetName(), err
		}, nil)
		if err != nil {
			return
		}
		// A submit applied twice would be refused the second time
		// (FAILED_PRECONDITION: already submitted) unless the retry is
		// recognised by its request_id.
		submit := &pb.SubmitReferralRequest{Name: name, RequestId: uuid.NewString()}
		_, _ = l.do(requestKey{subject, "SubmitReferral", submit.RequestId}, func(ctx context.Context) (string, error) {
			resp, err := c.Referrals.SubmitReferral(ctx, submit)
			return resp.GetReferral().GetName(), err
		}, nil)
	})
}

// sessions starts sessions as subject (the therapist) under the ready
// referrals, moving to the next when one's visits are used up.
func (l *load) sessions(c *client.Client, subject string, referrals []string) {
	var mu sync.Mutex
	next := 0
	l.run(func() {
		mu.Lock()
		i := next
		mu.Unlock()
		if i >= len(referrals) {
			select {
			case <-l.stopping:
			case <-l.hard.Done():
			}
			return
		}
		req := &pb.StartSessionRequest{Referral: referrals[i], Planned: swedishLumbar, RequestId: uuid.NewString()}
		_, err := l.do(requestKey{subject, "StartSession", req.RequestId}, func(ctx context.Context) (string, error) {
			resp, err := c.Sessions.StartSession(ctx, req)
			return resp.GetSession().GetName(), err
		}, visitsExhausted)
		if err != nil && visitsExhausted(err) {
			mu.Lock()
			next = max(next, i+1)
			mu.Unlock()
		}
	})
}

// visitsExhausted reports the gate's refusal of a session because every
// authorized visit of the referral is used.
func visitsExhausted(err error) bool {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.FailedPrecondition {
		return false
	}
	for _, d := range st.Details() {
		if pf, ok := d.(*errdetails.PreconditionFailure); ok {
			for _, v := range pf.GetViolations() {
				if v.GetType() == "VISITS_EXHAUSTED" {
					return true
				}
			}
		}
	}
	return false
}

var errNoName = errors.New("no resource name")

// resourceID is the id in a resource name such as "referrals/{id}".
func resourceID(name string) (uuid.UUID, error) {
	_, id, ok := strings.Cut(name, "/")
	if !ok {
		return uuid.Nil, fmt.Errorf("%w: %q", errNoName, name)
	}
	return uuid.Parse(id)
}
