package loadfloor

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// LockWaits is what a Sampler saw of the sessions of its database waiting
// for a lock: where a write path serializes, whatever code runs it.
type LockWaits struct {
	Samples int `json:"samples"`
	// Waiting counts the samples in which any session waited.
	Waiting    int `json:"samples_with_lock_waits"`
	MaxWaiters int `json:"max_waiters"`
	// Kinds are the locks waited on, most often first.
	Kinds []LockKind `json:"waited_on,omitempty"`
}

// LockKind is one lock type on one relation (none for a transactionid
// lock, which is how a wait for another transaction's row lock shows).
type LockKind struct {
	LockType   string `json:"locktype"`
	Relation   string `json:"relation,omitempty"`
	Samples    int    `json:"samples"`
	MaxWaiters int    `json:"max_waiters"`
}

// Sampler samples lock waits on a connection of its own until stopped.
type Sampler struct {
	stop chan struct{}
	done chan struct{}
	mu   sync.Mutex
	got  LockWaits // but for Kinds, which Stop makes of kinds
	// kinds is by lock type and relation.
	kinds map[[2]string]*LockKind
	err   error
}

// The waiters, and what they wait on, in the sampler's database only;
// pg_stat_activity sees other roles' waits only as a superuser or a
// member of pg_read_all_stats.
const (
	countWaiters = `SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()`
	waitedOn     = `SELECT l.locktype, coalesce(l.relation::regclass::text, ''), count(*)
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE NOT l.granted AND a.datname = current_database()
GROUP BY l.locktype, l.relation`
)

// SampleLocks connects to databaseURL and samples it every interval.
func SampleLocks(ctx context.Context, databaseURL string, every time.Duration) (*Sampler, error) {
	conn, err := pgx.Connect(ctx, databaseURL)
	if err != nil {
		return nil, fmt.Errorf("loadfloor: lock sampler: %w", err)
	}
	s := &Sampler{stop: make(chan struct{}), done: make(chan struct{}), kinds: map[[2]string]*LockKind{}}
	go func() {
		defer close(s.done)
		defer conn.Close(context.WithoutCancel(ctx))
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if err := s.sample(ctx, conn); err != nil {
				s.mu.Lock()
				s.err = err
				s.mu.Unlock()
				return
			}
		}
	}()
	return s, nil
}

// sample takes one sample: both queries in one round trip.
func (s *Sampler) sample(ctx context.Context, conn *pgx.Conn) error {
	b := &pgx.Batch{}
	var waiters int
	b.Queue(countWaiters).QueryRow(func(r pgx.Row) error { return r.Scan(&waiters) })
	var now []LockKind // MaxWaiters: the waiters now
	b.Queue(waitedOn).Query(func(rows pgx.Rows) error {
		var k LockKind
		_, err := pgx.ForEachRow(rows, []any{&k.LockType, &k.Relation, &k.MaxWaiters}, func() error {
			now = append(now, k)
			return nil
		})
		return err
	})
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("loadfloor: lock sampler: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got.Samples++
	if waiters > 0 {
		s.got.Waiting++
	}
	s.got.MaxWaiters = max(s.got.MaxWaiters, waiters)
	for _, k := range now {
		key := [2]string{k.LockType, k.Relation}
		agg := s.kinds[key]
		if agg == nil {
			agg = &LockKind{LockType: k.LockType, Relation: k.Relation}
			s.kinds[key] = agg
		}
		agg.Samples++
		agg.MaxWaiters = max(agg.MaxWaiters, k.MaxWaiters)
	}
	return nil
}

// Stop ends the sampling and returns what it saw, and the error that
// ended it early, if one did.
func (s *Sampler) Stop() (LockWaits, error) {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	got := s.got
	for _, k := range s.kinds {
		got.Kinds = append(got.Kinds, *k)
	}
	slices.SortFunc(got.Kinds, func(a, b LockKind) int {
		return cmp.Or(cmp.Compare(b.Samples, a.Samples), cmp.Compare(b.MaxWaiters, a.MaxWaiters),
			cmp.Compare(a.LockType, b.LockType), cmp.Compare(a.Relation, b.Relation))
	})
	return got, s.err
}
