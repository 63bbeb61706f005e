package main

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"

	"github.com/careteam/careteam/client"
)

// actor is one caller: a practitioner (or the bootstrap administrator)
// with their token.
type actor struct {
	subject string
	token   string
	name    string // "practitioners/{id}"; empty for the administrator
	org     string // "organizations/{id}"
}

type actorKey struct{}

// as returns ctx carrying a's identity: every call made with it is made
// as a, over whichever shared connection it goes.
func as(ctx context.Context, a *actor) context.Context { return context.WithValue(ctx, actorKey{}, a) }

// actorToken is the connections' token source: the token of the actor the
// call's context carries.
func actorToken(ctx context.Context) (string, error) {
	a, _ := ctx.Value(actorKey{}).(*actor)
	if a == nil {
		return "", errNoActor
	}
	return a.token, nil
}

var errNoActor = errors.New("a call without an actor (a bug in careteam-load)")

type physician struct {
	actor
	patients []*patient
}

type therapist struct {
	actor
	spa int
}

// patient is registered by its physician and treated by one therapist,
// whose practice holds the consent once the first referral reaches it.
type patient struct {
	name      string
	physician *physician
	therapist *therapist
	consented atomic.Bool
}

// referral is a referral the load made, as far as it has come.
type referral struct {
	name    string
	etag    string
	patient *patient
	// left is the visits still unused, for sessions.
	left int32
}

// session is a started session waiting for its note.
type session struct {
	name      string
	etag      string
	therapist *therapist
}

// world is everything the load set up and the work in flight: the
// queues carry each referral and session from one step of its life to the
// next, so every call of the mix has something real to act on.
type world struct {
	admin        actor
	clinics      []string
	spas         []string
	physicians   []*physician
	therapists   []*therapist
	coordinators []*actor // of clinics then of spas
	spaCoords    []*actor
	// watchOnly are coordinators that only hold WatchEvents streams, as
	// many as --watchers needs beyond the others (watch.go).
	watchOnly []*actor
	patients  []*patient

	drafts, submitted queue[*referral]
	started, noted    queue[*session]
	startable         pool
	// known are accepted referrals, for reads.
	known ring[*referral]
}

// queue is a FIFO of work for the next step.
type queue[T any] struct {
	mu    sync.Mutex
	items []T
}

func (q *queue[T]) push(v T) {
	q.mu.Lock()
	q.items = append(q.items, v)
	q.mu.Unlock()
}

func (q *queue[T]) pop() (T, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var zero T
	if len(q.items) == 0 {
		return zero, false
	}
	v := q.items[0]
	q.items[0] = zero
	q.items = q.items[1:]
	return v, true
}

func (q *queue[T]) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}

// pool holds accepted referrals with visits left. A referral is taken
// for one session start at a time, so concurrent starts never queue on one
// referral's lock (two starts under one referral in the same instant are
// rare in a practice); taking at random spreads them.
type pool struct {
	mu     sync.Mutex
	free   []*referral
	visits int64 // unused visits of the referrals free or taken
}

func (p *pool) add(r *referral) {
	p.mu.Lock()
	p.free = append(p.free, r)
	p.visits += int64(r.left)
	p.mu.Unlock()
}

func (p *pool) take(rng *rand.Rand) *referral {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.free) == 0 {
		return nil
	}
	i := rng.IntN(len(p.free))
	r := p.free[i]
	p.free[i] = p.free[len(p.free)-1]
	p.free = p.free[:len(p.free)-1]
	return r
}

// give returns a referral after a start; used says whether it used a
// visit. One with no visit left is dropped.
func (p *pool) give(r *referral, used bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if used {
		r.left--
		p.visits--
	}
	if r.left > 0 {
		p.free = append(p.free, r)
	}
}

// peek returns a free referral without taking it, for reads.
func (p *pool) peek(rng *rand.Rand) *referral {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.free) == 0 {
		return nil
	}
	return p.free[rng.IntN(len(p.free))]
}

func (p *pool) size() (free int, visits int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.free), p.visits
}

// ring keeps the last few thousand items for random reads.
type ring[T any] struct {
	mu    sync.Mutex
	items []T
	next  int
}

const ringSize = 4096

func (r *ring[T]) add(v T) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.items) < ringSize {
		r.items = append(r.items, v)
		return
	}
	r.items[r.next] = v
	r.next = (r.next + 1) % ringSize
}

func (r *ring[T]) random(rng *rand.Rand) (T, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var zero T
	if len(r.items) == 0 {
		return zero, false
	}
	return r.items[rng.IntN(len(r.items))], true
}

// conns spreads calls over several connections (each balanced over every
// target): one HTTP/2 connection is one ordered byte stream, which a few
// hundred concurrent calls can make the bottleneck.
type conns struct {
	list []*client.Client
	next atomic.Uint64
}

func (c *conns) pick() *client.Client {
	return c.list[int(c.next.Add(1)%uint64(len(c.list)))]
}

func (c *conns) close() {
	for _, cl := range c.list {
		cl.Close()
	}
}
