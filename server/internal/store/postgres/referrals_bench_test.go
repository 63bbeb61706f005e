package postgres_test

import (
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/careteam/careteam/server/internal/careteam"
	"github.com/careteam/careteam/server/internal/store/postgres"
	"github.com/careteam/careteam/server/internal/testdb"
)

// explainFlag opts in to TestExplainListReferrals, which loads a million
// referrals: far too slow for the default test run.
var explainFlag = flag.Bool("explain", false, "load 1M referrals and log EXPLAIN (ANALYZE, BUFFERS) of every ListReferrals shape")

// BenchmarkStoreListReferrals measures ListReferrals below the API (the
// store's transaction and query, no gRPC, no authentication), so its
// figures set apart what the database costs.
func BenchmarkStoreListReferrals(b *testing.B) {
	for _, n := range listSizes {
		b.Run(fmt.Sprintf("rows=%d", n), func(b *testing.B) {
			url := testdb.NewURL(b)
			pool := newPool(b, url, nil, 0)
			d := loadReferrals(b, pool, n)
			store := postgres.New(pool, slog.New(slog.NewTextHandler(io.Discard, nil)))
			var explain *explainer
			if n >= 1_000_000 {
				explain = newExplainer(b, url)
			}
			for _, c := range d.callers() {
				for _, sh := range listShapes(d, c) {
					explained := false
					b.Run(c.name+"/"+sh.name, func(b *testing.B) {
						// In the sub-benchmark, whose log is printed
						// without -v, and once, though it runs twice (b.N
						// 1, then the real b.N); before benchLatency
						// starts the timer.
						if !explained {
							explained = true
							d.logLoad(b)
							if explain != nil {
								explain.plans(b, c.name+"/"+sh.name, c.scope, sh.filter).logKey(b)
							}
						}
						list := func() int {
							var rows []*careteam.Referral
							err := store.InTx(b.Context(), func(tx careteam.Tx) (err error) {
								rows, err = tx.ListReferrals(b.Context(), c.scope, sh.filter, careteam.Page{Size: listPageSize})
								return err
							})
							if err != nil {
								b.Fatal(err)
							}
							return len(rows)
						}
						benchLatency(b, list)
					})
				}
			}
		})
	}
}

// TestExplainListReferrals logs the plan of every ListReferrals shape over
// a million referrals, without the benchmarks: go test -run
// TestExplainListReferrals -explain -v ./server/internal/store/postgres/
func TestExplainListReferrals(t *testing.T) {
	if !*explainFlag {
		t.Skip("loads 1M referrals; run with -explain")
	}
	url := testdb.NewURL(t)
	d := loadReferrals(t, newPool(t, url, nil, 0), 1_000_000)
	explain := newExplainer(t, url)
	for _, c := range d.callers() {
		for _, sh := range listShapes(d, c) {
			explain.plans(t, c.name+"/"+sh.name, c.scope, sh.filter).logAll(t)
		}
	}
}

// benchCaller is who lists: their scope as the policy would build it.
type benchCaller struct {
	name  string
	scope careteam.ReferralScope
	self  uuid.UUID // a therapist caller's own id
}

// callers are a coordinator of one massage practice out of loadSpas, who
// sees that share of the table; one of its therapists, who sees the
// referrals addressed to them or to the practice while unassigned, about
// 0.4% of the table; and a therapist of a recently joined practice, who
// sees a few dozen rows at any size of the table.
func (d *referralData) callers() []benchCaller {
	return []benchCaller{
		{name: "coordinator", scope: careteam.ReferralScope{ReferralOrg: d.spa}},
		{name: "therapist", scope: careteam.ReferralScope{Therapist: d.therapist.id, TherapistOrg: d.spa}, self: d.therapist.id},
		{name: "new-therapist", scope: careteam.ReferralScope{Therapist: d.newTherapist.id, TherapistOrg: d.newSpa}, self: d.newTherapist.id},
	}
}

type listShape struct {
	name   string
	filter careteam.ReferralFilter
}

// listShapes are the first page and the worklist filters. A coordinator
// filters by a colleague of the therapist caller; a therapist by
// themselves, as a client that always sends its own name would.
func listShapes(d *referralData, c benchCaller) []listShape {
	target := d.otherTherapist
	if c.self != uuid.Nil {
		target = c.self
	}
	return []listShape{
		{"first-page", careteam.ReferralFilter{Now: loadNow}},
		{"target-therapist", careteam.ReferralFilter{Now: loadNow, TargetTherapistID: target}},
		{"state=SUBMITTED", careteam.ReferralFilter{Now: loadNow, States: []careteam.ReferralState{careteam.ReferralSubmitted}}},
		{"overdue", careteam.ReferralFilter{Now: loadNow, Overdue: true}},
	}
}

// newPool opens a pool on url; maxConns 0 keeps pgx's default.
func newPool(tb testing.TB, url string, tracer pgx.QueryTracer, maxConns int32) *pgxpool.Pool {
	tb.Helper()
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		tb.Fatal(err)
	}
	cfg.ConnConfig.Tracer = tracer
	if maxConns > 0 {
		cfg.MaxConns = maxConns
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(pool.Close)
	return pool
}

// explainer runs a ListReferrals through the store on a pool of its own
// whose tracer keeps the query's text and arguments, then runs EXPLAIN of
// exactly that text, so the plan shown is the plan of the store's SQL
// rather than of a copy that could drift from it.
type explainer struct {
	store  *postgres.Store
	pool   *pgxpool.Pool
	tracer *captureTracer
}

func newExplainer(tb testing.TB, url string) *explainer {
	tr := &captureTracer{}
	// One connection: the plan cache whose choice is reported is the one
	// the store's runs went through.
	pool := newPool(tb, url, tr, 1)
	return &explainer{store: postgres.New(pool, slog.New(slog.NewTextHandler(io.Discard, nil))), pool: pool, tracer: tr}
}

// plans are a ListReferrals query as the store ran it and two plans of it:
// the custom plan, made for these values, which EXPLAIN shows; and the
// generic plan, made for any values, which pgx's cached statement runs
// once PostgreSQL's plan cache prefers it (from the sixth run on, if its
// estimated cost is below the custom plans' average). Which of the two the
// store's runs got is read from pg_prepared_statements.
type plans struct {
	name, where     string
	args            pgx.NamedArgs
	generic, custom int64 // runs of the store's statement with each
	customPlan      []string
	genericPlan     []string
}

func (e *explainer) plans(tb testing.TB, name string, scope careteam.ReferralScope, f careteam.ReferralFilter) *plans {
	tb.Helper()
	ctx := context.Background()
	e.tracer.reset()
	for range 10 {
		err := e.store.InTx(ctx, func(tx careteam.Tx) error {
			_, err := tx.ListReferrals(ctx, scope, f, careteam.Page{Size: listPageSize})
			return err
		})
		if err != nil {
			tb.Fatal(err)
		}
	}
	sql, args := e.tracer.captured()
	if sql == "" || len(args) != 1 {
		tb.Fatalf("the tracer saw no ListReferrals query with named arguments: %q %v", sql, args)
	}
	named, ok := args[0].(pgx.NamedArgs)
	if !ok {
		tb.Fatalf("ListReferrals passed %T, not pgx.NamedArgs", args[0])
	}
	conn, err := e.pool.Acquire(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Release()
	c := conn.Conn()
	positional, values, err := named.RewriteQuery(ctx, c, sql, nil)
	if err != nil {
		tb.Fatal(err)
	}
	p := &plans{name: name, where: strings.Join(strings.Fields(sql[strings.Index(sql, "FROM referrals r"):]), " "), args: named}
	if err := c.QueryRow(ctx, `SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement = $1`, positional).Scan(&p.generic, &p.custom); err != nil {
		tb.Fatalf("the store's statement is not prepared on the connection: %v", err)
	}
	p.customPlan = explain(tb, c, "EXPLAIN (ANALYZE, BUFFERS) "+sql, named)

	// EXPLAIN EXECUTE of a statement prepared for any values shows the
	// generic plan; its parameters are given as literals.
	sd, err := c.Prepare(ctx, "explain_generic", positional)
	if err != nil {
		tb.Fatal(err)
	}
	literals := make([]string, len(values))
	for i, v := range values {
		text, err := c.TypeMap().Encode(sd.ParamOIDs[i], pgtype.TextFormatCode, v, nil)
		if err != nil {
			tb.Fatal(err)
		}
		literals[i] = "'" + strings.ReplaceAll(string(text), "'", "''") + "'"
	}
	if _, err := c.Exec(ctx, `SET plan_cache_mode = force_generic_plan`); err != nil {
		tb.Fatal(err)
	}
	p.genericPlan = explain(tb, c, "EXPLAIN (ANALYZE, BUFFERS) EXECUTE explain_generic("+strings.Join(literals, ", ")+")")
	if _, err := c.Exec(ctx, `RESET plan_cache_mode`); err != nil {
		tb.Fatal(err)
	}
	// Through pgx, which would otherwise hand the next query of the same
	// text a statement the server no longer has.
	if err := c.Deallocate(ctx, "explain_generic"); err != nil {
		tb.Fatal(err)
	}
	return p
}

func (p *plans) header() string {
	return fmt.Sprintf("ListReferrals %s: ... %s\nwith %v\nthe store's statement ran %d times with the generic plan, %d with custom plans",
		p.name, p.where, p.args, p.generic, p.custom)
}

// logAll logs the query and both plans in full.
func (p *plans) logAll(t *testing.T) {
	t.Logf("%s\n-- custom plan, EXPLAIN (ANALYZE, BUFFERS):\n%s\n-- generic plan, EXPLAIN (ANALYZE, BUFFERS) EXECUTE under force_generic_plan:\n%s",
		p.header(), strings.Join(p.customPlan, "\n"), strings.Join(p.genericPlan, "\n"))
}

// logKey logs the access path of the plan the store's statement ran with:
// a benchmark's log is cut after ten lines, too few for a whole plan
// (TestExplainListReferrals logs them whole).
func (p *plans) logKey(b *testing.B) {
	plan, which := p.customPlan, "custom"
	if p.generic > 0 {
		plan, which = p.genericPlan, "generic"
	}
	var key []string
	for _, l := range plan {
		subplan := strings.Contains(l, "referral_transitions") || strings.Contains(l, "referral_questions")
		if (strings.Contains(l, "Scan") && !subplan) || strings.Contains(l, "Rows Removed by Filter") || strings.Contains(l, "Execution Time") {
			key = append(key, l)
		}
	}
	b.Logf("%s: %s plan (%d generic, %d custom runs)\n%s", p.name, which, p.generic, p.custom, strings.Join(key[:min(len(key), 7)], "\n"))
}

func explain(tb testing.TB, c *pgx.Conn, sql string, args ...any) []string {
	tb.Helper()
	rows, err := c.Query(context.Background(), sql, args...)
	if err != nil {
		tb.Fatal(err)
	}
	plan, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		tb.Fatal(err)
	}
	return plan
}

// captureTracer keeps the last ListReferrals query its pool ran. It sees
// the text before pgx rewrites named arguments, so EXPLAIN gets the same
// named arguments and pgx binds them the same way.
type captureTracer struct {
	mu   sync.Mutex
	sql  string
	args []any
}

func (c *captureTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	if strings.HasPrefix(d.SQL, "SELECT ") && strings.Contains(d.SQL, "FROM referrals r WHERE") && strings.Contains(d.SQL, "ORDER BY r.id DESC") {
		c.mu.Lock()
		c.sql, c.args = d.SQL, d.Args
		c.mu.Unlock()
	}
	return ctx
}

func (c *captureTracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (c *captureTracer) reset() {
	c.mu.Lock()
	c.sql, c.args = "", nil
	c.mu.Unlock()
}

func (c *captureTracer) captured() (string, []any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sql, c.args
}

// loadNow is the instant the data is generated back from and the lists are
// judged at: the API tests' clock, a Wednesday morning.
var loadNow = time.Date(2026, 3, 4, 9, 0, 0, 0, time.UTC)

// Everything below is the same in server/internal/api/referral_bench_test.go
// and server/internal/store/postgres/referrals_bench_test.go, so that the
// API's and the store's figures are over the same data: test files cannot
// be imported from another package. Keep the two equal.

// listSizes are the table sizes the list benchmarks compare: a young
// deployment and a mature one. A query that scales with the table rather
// than with its page shows as a p99 that grows between them.
var listSizes = []int{10_000, 1_000_000}

// listPageSize is the API's default page.
const listPageSize = 50

// benchLatency runs list b.N times and reports the per-call p50 and p99,
// which ns/op (a mean) hides, and the rows a call returned.
func benchLatency(b *testing.B, list func() int) {
	// Each pooled connection prepares the statement on first use and the
	// plan cache may switch to a generic plan after five runs: warm up past
	// both so the figures are the steady state.
	for range 20 {
		list()
	}
	durations := make([]time.Duration, 0, b.N)
	rows := 0
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		rows = list()
		durations = append(durations, time.Since(t0))
	}
	b.StopTimer()
	reportPercentiles(b, durations)
	b.ReportMetric(float64(rows), "rows/op")
}

func reportPercentiles(b *testing.B, d []time.Duration) {
	slices.Sort(d)
	at := func(p float64) float64 {
		return float64(d[max(int(math.Ceil(p*float64(len(d))))-1, 0)].Nanoseconds())
	}
	b.ReportMetric(at(0.50), "p50-ns")
	b.ReportMetric(at(0.99), "p99-ns")
}

const (
	loadClinics          = 20
	loadSpas             = 20
	physiciansPerClinic  = 25
	therapistsPerSpa     = 25
	referralsPerPatient  = 4
	loadHistory          = 3 * 365 * 24 * time.Hour
	loadValidity         = 90 * 24 * time.Hour
	loadAckWindow        = 48 * time.Hour
	loadFreshAge         = 7 * 24 * time.Hour
	loadCoordinatorSubj  = "bench-coord-spa-0"
	loadTherapistSubj    = "bench-lmt-0-0"
	loadOtherTherapistID = 1 // index in spa 0 of the coordinator's target-therapist filter
	// A practice that joined recently has received the same few referrals
	// whatever the size of the table: its therapists see few rows.
	loadNewPracticeAge       = 60 * 24 * time.Hour
	loadNewPracticeReferrals = 30
	loadNewTherapists        = 2
	loadNewTherapistSubj     = "bench-lmt-new-0"
)

// referralData is what a list benchmark needs to know of a load.
type referralData struct {
	summary        string // how long the load took
	summarized     sync.Once
	spa            uuid.UUID // the coordinator's and therapist's practice
	coordinator    loadedPractitioner
	therapist      loadedPractitioner
	otherTherapist uuid.UUID // a colleague of therapist
	newSpa         uuid.UUID // the recently joined practice
	newTherapist   loadedPractitioner
}

type loadedPractitioner struct {
	id      uuid.UUID
	subject string
}

// stateMix is a weighted choice of states.
type stateMix []struct {
	state  careteam.ReferralState
	weight int
}

func (m stateMix) pick(rng *rand.Rand) careteam.ReferralState {
	total := 0
	for _, s := range m {
		total += s.weight
	}
	n := rng.IntN(total)
	for _, s := range m {
		if n < s.weight {
			return s.state
		}
		n -= s.weight
	}
	panic("unreachable")
}

// The state of a referral depends on its age, as in a running practice
// network: the last week is mostly open work, the last validity period
// mostly treatment, and older history mostly completed, with a residue of
// referrals nobody acknowledged that stay SUBMITTED after they expired
// (they sit in the overdue index though the overdue filter drops them).
var (
	freshMix = stateMix{
		{careteam.ReferralDraft, 5}, {careteam.ReferralSubmitted, 25}, {careteam.ReferralAwaitingInfo, 5},
		{careteam.ReferralAccepted, 25}, {careteam.ReferralInProgress, 30}, {careteam.ReferralOnHold, 3},
		{careteam.ReferralDeclined, 4}, {careteam.ReferralCancelled, 3},
	}
	activeMix = stateMix{
		{careteam.ReferralSubmitted, 2}, {careteam.ReferralAwaitingInfo, 1}, {careteam.ReferralAccepted, 5},
		{careteam.ReferralInProgress, 45}, {careteam.ReferralOnHold, 3}, {careteam.ReferralCompleted, 35},
		{careteam.ReferralDeclined, 4}, {careteam.ReferralCancelled, 5},
	}
	historyMix = stateMix{
		{careteam.ReferralCompleted, 880}, {careteam.ReferralCancelled, 50}, {careteam.ReferralDeclined, 40},
		{careteam.ReferralSubmitted, 5}, {careteam.ReferralAccepted, 10}, {careteam.ReferralInProgress, 15},
	}
)

// stateChains are the transitions that lead to each state, as history.
var stateChains = map[careteam.ReferralState][]careteam.ReferralState{
	careteam.ReferralDraft:        {careteam.ReferralDraft},
	careteam.ReferralSubmitted:    {careteam.ReferralDraft, careteam.ReferralSubmitted},
	careteam.ReferralAwaitingInfo: {careteam.ReferralDraft, careteam.ReferralSubmitted, careteam.ReferralAwaitingInfo},
	careteam.ReferralAccepted:     {careteam.ReferralDraft, careteam.ReferralSubmitted, careteam.ReferralAccepted},
	careteam.ReferralDeclined:     {careteam.ReferralDraft, careteam.ReferralSubmitted, careteam.ReferralDeclined},
	careteam.ReferralInProgress:   {careteam.ReferralDraft, careteam.ReferralSubmitted, careteam.ReferralAccepted, careteam.ReferralInProgress},
	careteam.ReferralOnHold: {careteam.ReferralDraft, careteam.ReferralSubmitted, careteam.ReferralAccepted,
		careteam.ReferralInProgress, careteam.ReferralOnHold},
	careteam.ReferralCompleted: {careteam.ReferralDraft, careteam.ReferralSubmitted, careteam.ReferralAccepted,
		careteam.ReferralInProgress, careteam.ReferralCompleted},
	careteam.ReferralCancelled: {careteam.ReferralDraft, careteam.ReferralSubmitted, careteam.ReferralCancelled},
}

// genReferral is one generated referral, compact: the referrals and their
// transitions are copied from it by two connections at once.
type genReferral struct {
	id        uuid.UUID
	created   time.Time
	state     careteam.ReferralState
	patient   int32
	physician int32
	spa       int16
	therapist int16 // within spa; -1 while unassigned
	urgent    bool
}

// loadReferrals fills the database behind pool with a practice network and
// n referrals, with COPY, and vacuums and analyzes it so that the planner
// and the visibility map see a settled table.
func loadReferrals(tb testing.TB, pool *pgxpool.Pool, n int) *referralData {
	tb.Helper()
	began := time.Now()
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, uint64(n)))
	orgTime := loadNow.Add(-loadHistory - 365*24*time.Hour)

	// spas[loadSpas] is the recently joined practice.
	clinics, spas := make([]uuid.UUID, loadClinics), make([]uuid.UUID, loadSpas+1)
	var orgRows, practitionerRows [][]any
	for i := range clinics {
		clinics[i] = idAt(orgTime, rng)
		orgRows = append(orgRows, []any{clinics[i], fmt.Sprintf("Clinic %d", i), "PHYSICIAN_PRACTICE", int64(1), orgTime, orgTime})
	}
	for i := range spas {
		joined := orgTime
		if i == loadSpas {
			joined = loadNow.Add(-loadNewPracticeAge)
		}
		spas[i] = idAt(joined, rng)
		orgRows = append(orgRows, []any{spas[i], fmt.Sprintf("Massage practice %d", i), "MASSAGE_PRACTICE", int64(1), joined, joined})
	}
	practitioner := func(org uuid.UUID, role, subject string) uuid.UUID {
		id := idAt(orgTime, rng)
		var number, jurisdiction *string
		var expires *time.Time
		specialties := []string{}
		if role == "MASSAGE_THERAPIST" {
			num, jur, exp := "LMT-"+subject, "US-WA", loadNow.AddDate(1, 0, 0)
			number, jurisdiction, expires = &num, &jur, &exp
			specialties = []string{"ARTHRITIS", "ORTHOPEDIC"}
		}
		practitionerRows = append(practitionerRows, []any{id, org, subject, role, subject, number, jurisdiction, expires,
			specialties, true, int64(1), orgTime, orgTime})
		return id
	}
	physicians := make([]uuid.UUID, loadClinics*physiciansPerClinic)
	for c := range loadClinics {
		for k := range physiciansPerClinic {
			physicians[c*physiciansPerClinic+k] = practitioner(clinics[c], "PHYSICIAN", fmt.Sprintf("bench-dr-%d-%d", c, k))
		}
		practitioner(clinics[c], "COORDINATOR", fmt.Sprintf("bench-coord-clinic-%d", c))
	}
	therapists := make([][]uuid.UUID, len(spas)) // by practice
	d := &referralData{spa: spas[0], newSpa: spas[loadSpas]}
	for s := range spas {
		name, staff := fmt.Sprint(s), therapistsPerSpa
		if s == loadSpas {
			name, staff = "new", loadNewTherapists
		}
		for k := range staff {
			therapists[s] = append(therapists[s], practitioner(spas[s], "MASSAGE_THERAPIST", fmt.Sprintf("bench-lmt-%s-%d", name, k)))
		}
		id := practitioner(spas[s], "COORDINATOR", "bench-coord-spa-"+name)
		if s == 0 {
			d.coordinator = loadedPractitioner{id, loadCoordinatorSubj}
		}
	}
	d.therapist = loadedPractitioner{therapists[0][0], loadTherapistSubj}
	d.otherTherapist = therapists[0][loadOtherTherapistID]
	d.newTherapist = loadedPractitioner{therapists[loadSpas][0], loadNewTherapistSubj}

	// Patients belong to a clinic (patient i to clinic i mod loadClinics)
	// and are referred by its physicians.
	patients := make([]uuid.UUID, max(n/referralsPerPatient, loadClinics))
	patientRows := make([][]any, len(patients))
	for i := range patients {
		patients[i] = idAt(orgTime.Add(time.Duration(i)*time.Millisecond), rng)
		clinic := i % loadClinics
		gender := [...]string{"FEMALE", "MALE"}[rng.IntN(2)]
		patientRows[i] = []any{patients[i], clinics[clinic], physicians[clinic*physiciansPerClinic+rng.IntN(physiciansPerClinic)],
			fmt.Sprintf("Given%d", i), fmt.Sprintf("Family%d", i%5000), time.Date(1940+rng.IntN(65), time.Month(1+rng.IntN(12)), 1+rng.IntN(28), 0, 0, 0, 0, time.UTC),
			gender, int64(1), orgTime, orgTime}
	}

	refs := make([]genReferral, n)
	// Every newPracticeEvery-th referral since the new practice joined goes
	// to it, so that it has loadNewPracticeReferrals at any n.
	newPracticeEvery := max(int(float64(n)*float64(loadNewPracticeAge)/float64(loadHistory))/loadNewPracticeReferrals, 1)
	sinceJoined, toNewPractice := 0, 0
	for i := range refs {
		created := loadNow.Add(-loadHistory + time.Duration(float64(loadHistory)*(float64(i)+0.5)/float64(n)))
		var state careteam.ReferralState
		switch age := loadNow.Sub(created); {
		case age < loadFreshAge:
			state = freshMix.pick(rng)
		case age < loadValidity:
			state = activeMix.pick(rng)
		default:
			state = historyMix.pick(rng)
		}
		p := rng.IntN(len(patients))
		r := genReferral{
			id: idAt(created, rng), created: created, state: state, patient: int32(p),
			physician: int32((p%loadClinics)*physiciansPerClinic + rng.IntN(physiciansPerClinic)),
			spa:       int16(rng.IntN(loadSpas)), therapist: int16(rng.IntN(therapistsPerSpa)), urgent: rng.IntN(100) < 15,
		}
		if loadNow.Sub(created) < loadNewPracticeAge {
			if sinceJoined%newPracticeEvery == 0 && toNewPractice < loadNewPracticeReferrals {
				r.spa, r.therapist = loadSpas, int16(rng.IntN(loadNewTherapists))
				toNewPractice++
			}
			sinceJoined++
		}
		// A referral addressed to a practice gets its therapist when one
		// accepts it, so only referrals never accepted can be unassigned.
		if !slices.Contains(stateChains[state], careteam.ReferralAccepted) && rng.IntN(100) < 30 {
			r.therapist = -1
		}
		refs[i] = r
	}
	therapistOf := func(r *genReferral) *uuid.UUID {
		if r.therapist < 0 {
			return nil
		}
		return &therapists[r.spa][r.therapist]
	}
	// actorOf is who made the transition to state: the therapist side for
	// their actions (a practice colleague for an unassigned referral).
	actorOf := func(r *genReferral, state careteam.ReferralState) uuid.UUID {
		switch state {
		case careteam.ReferralDraft, careteam.ReferralSubmitted, careteam.ReferralCancelled:
			return physicians[r.physician]
		}
		if t := therapistOf(r); t != nil {
			return *t
		}
		return therapists[r.spa][0]
	}
	// stepTime spaces a referral's transitions over its age, a week apart
	// at most.
	stepTime := func(r *genReferral, step int) time.Time {
		if step == 0 {
			return r.created
		}
		gap := min(loadNow.Sub(r.created)/time.Duration(len(stateChains[r.state])+1), 7*24*time.Hour)
		if step == 1 {
			gap = min(gap, time.Hour) // submitted soon after it was written
		} else {
			gap *= time.Duration(step)
		}
		return r.created.Add(gap)
	}

	referralRow := func(r *genReferral) []any {
		chain := stateChains[r.state]
		var submit, ackDue *time.Time
		var ackElapsed time.Duration
		if len(chain) > 1 {
			s := stepTime(r, 1)
			submit = &s
			if r.state == careteam.ReferralSubmitted {
				due := addWeekdayTime(s, loadAckWindow)
				ackDue = &due
			} else {
				ackElapsed = min(stepTime(r, 2).Sub(s), loadAckWindow)
			}
		}
		priority := "ROUTINE"
		if r.urgent {
			priority = "URGENT"
		}
		used, held, declineReason, declineText, cancelReason, discharge := 0, "", "", "", "", ""
		switch r.state {
		case careteam.ReferralInProgress, careteam.ReferralOnHold:
			used = 1 + int(r.patient%5)
			if r.state == careteam.ReferralOnHold {
				held = string(careteam.ReferralInProgress)
			}
		case careteam.ReferralCompleted:
			used = 6
			discharge = "Goals met: pain reduced, range of motion restored.\n\nVisits: 6 of 6 used. Pain (0-10) before treatment: first 7, latest 2 (-5)."
		case careteam.ReferralDeclined:
			declineReason, declineText = "NO_CAPACITY", "Fully booked until next month."
		case careteam.ReferralCancelled:
			cancelReason = "Patient moved away."
		}
		updated := stepTime(r, len(chain)-1)
		return []any{r.id, patients[r.patient], physicians[r.physician], clinics[int(r.patient)%loadClinics], therapistOf(r), spas[r.spa],
			[]string{"M54.5"}, "Chronic low back pain, no red flags. Gentle work around the lumbar spine.", priority,
			[]string{"SWEDISH"}, 6, used, r.created.Add(loadValidity), []string{"ARTHRITIS"}, string(r.state), held,
			declineReason, declineText, cancelReason, discharge, submit, ackElapsed, ackDue, int64(len(chain)), r.created, updated}
	}

	// Foreign keys are checked per row by triggers, which would make the
	// load several times slower. A superuser (as the embedded test server's
	// role is) may skip every trigger in replica mode: the generator keeps
	// the keys valid, and the loaded tables have no other triggers (one
	// added later would be skipped too).
	checked := false
	connect := func() *pgx.Conn {
		conn, err := pgx.ConnectConfig(ctx, pool.Config().ConnConfig.Copy())
		if err != nil {
			tb.Fatal(err)
		}
		if _, err := conn.Exec(ctx, `SET session_replication_role = replica`); err != nil {
			checked = true
		}
		return conn
	}
	conns := []*pgx.Conn{connect(), connect()}
	defer func() {
		for _, c := range conns {
			c.Close(ctx)
		}
	}()
	if checked {
		tb.Log("loading with foreign keys checked (not a superuser): slower")
	}
	copyRows := func(conn *pgx.Conn, table string, columns []string, src pgx.CopyFromSource) error {
		_, err := conn.CopyFrom(ctx, pgx.Identifier{table}, columns, binaryIDs{src})
		if err != nil {
			return fmt.Errorf("copying %s: %w", table, err)
		}
		return nil
	}
	// Parents first, in case the foreign keys are checked.
	for _, step := range []struct {
		table   string
		columns []string
		rows    [][]any
	}{
		{"organizations", []string{"id", "display_name", "kind", "version", "create_time", "update_time"}, orgRows},
		{"practitioners", []string{"id", "organization_id", "display_name", "role", "subject", "licence_number",
			"licence_jurisdiction", "licence_expire_date", "specialties", "active", "version", "create_time", "update_time"}, practitionerRows},
		{"patients", []string{"id", "organization_id", "registered_by", "given_name", "family_name", "birth_date",
			"gender", "version", "create_time", "update_time"}, patientRows},
	} {
		if err := copyRows(conns[0], step.table, step.columns, pgx.CopyFromRows(step.rows)); err != nil {
			tb.Fatal(err)
		}
	}

	// The referrals' secondary indexes would make their copy the slowest
	// by far, one random insertion each per row: they are dropped and built
	// again afterwards from their own definitions, so the schema is the
	// migrated one. The transitions, five per referral, are copied
	// meanwhile on another connection.
	var indexes []string
	rows, err := conns[0].Query(ctx, `SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() AND tablename = 'referrals'
		AND indexname NOT IN (SELECT conname FROM pg_constraint WHERE conrelid = 'referrals'::regclass)`)
	if err != nil {
		tb.Fatal(err)
	}
	for rows.Next() {
		var name, def string
		if err := rows.Scan(&name, &def); err != nil {
			tb.Fatal(err)
		}
		if _, err := conns[1].Exec(ctx, `DROP INDEX `+pgx.Identifier{name}.Sanitize()); err != nil {
			tb.Fatal(err)
		}
		indexes = append(indexes, def)
	}
	if err := rows.Err(); err != nil {
		tb.Fatal(err)
	}
	copyReferrals := func(conn *pgx.Conn) error {
		i := 0
		err := copyRows(conn, "referrals", []string{"id", "patient_id", "referring_physician_id", "referring_org_id",
			"target_therapist_id", "target_org_id", "reason_codes", "clinical_notes", "priority", "requested_techniques",
			"authorized_visits", "used_visits", "valid_until", "required_specialties", "state", "held_from", "decline_reason",
			"decline_text", "cancel_reason", "discharge_summary", "submit_time", "ack_elapsed", "ack_due", "version",
			"create_time", "update_time"},
			pgx.CopyFromFunc(func() ([]any, error) {
				if i == len(refs) {
					return nil, nil
				}
				i++
				return referralRow(&refs[i-1]), nil
			}))
		if err != nil {
			return err
		}
		for _, def := range indexes {
			if _, err := conn.Exec(ctx, def); err != nil {
				return err
			}
		}
		return nil
	}
	copyTransitions := func(conn *pgx.Conn) error {
		i, step := 0, 0
		err := copyRows(conn, "referral_transitions", []string{"referral_id", "seq", "from_state", "to_state", "actor_id", "time", "reason"},
			pgx.CopyFromFunc(func() ([]any, error) {
				for i < len(refs) && step == len(stateChains[refs[i].state]) {
					i, step = i+1, 0
				}
				if i == len(refs) {
					return nil, nil
				}
				r := &refs[i]
				chain := stateChains[r.state]
				from, reason := "", ""
				if step > 0 {
					from = string(chain[step-1])
				}
				switch chain[step] {
				case careteam.ReferralDeclined:
					reason = "NO_CAPACITY: Fully booked until next month."
				case careteam.ReferralCancelled:
					reason = "Patient moved away."
				}
				row := []any{r.id, int32(step), from, string(chain[step]), actorOf(r, chain[step]), stepTime(r, step), reason}
				step++
				return row, nil
			}))
		if err != nil {
			return err
		}
		var questions [][]any
		for i := range refs {
			if r := &refs[i]; r.state == careteam.ReferralAwaitingInfo {
				questions = append(questions, []any{r.id, int32(0), "Any recent imaging?",
					actorOf(r, careteam.ReferralAwaitingInfo), stepTime(r, 2)})
			}
		}
		return copyRows(conn, "referral_questions", []string{"referral_id", "seq", "question", "asked_by", "ask_time"},
			pgx.CopyFromRows(questions))
	}
	errs := make([]error, 2)
	var referrals, all sync.WaitGroup
	referrals.Go(func() { errs[0] = copyReferrals(conns[0]) })
	all.Go(func() {
		if checked {
			referrals.Wait()
		}
		errs[1] = copyTransitions(conns[1])
	})
	referrals.Wait()
	all.Wait()
	for _, err := range errs {
		if err != nil {
			tb.Fatal(err)
		}
	}
	copied := time.Since(began)
	if _, err := pool.Exec(ctx, `VACUUM (ANALYZE) organizations, practitioners, patients, referrals, referral_transitions, referral_questions`); err != nil {
		tb.Fatal(err)
	}
	d.summary = fmt.Sprintf("loaded %d referrals in %v (copy and index %v, vacuum and analyze %v)", n, time.Since(began).Round(time.Millisecond),
		copied.Round(time.Millisecond), (time.Since(began) - copied).Round(time.Millisecond))
	tb.Log(d.summary)
	return d
}

// logLoad logs the load's summary in the first sub-benchmark that asks: a
// benchmark with sub-benchmarks prints its own log only under -v.
func (d *referralData) logLoad(b *testing.B) {
	d.summarized.Do(func() { b.Log(d.summary) })
}

// binaryIDs hands pgx each uuid.UUID as [16]byte, which it encodes
// directly: a uuid.UUID goes through its driver.Valuer, a text detour
// that formats an error on the way and took most of the load's time.
type binaryIDs struct{ pgx.CopyFromSource }

func (s binaryIDs) Values() ([]any, error) {
	row, err := s.CopyFromSource.Values()
	for i, v := range row {
		switch v := v.(type) {
		case uuid.UUID:
			row[i] = [16]byte(v)
		case *uuid.UUID:
			row[i] = nil
			if v != nil {
				row[i] = [16]byte(*v)
			}
		}
	}
	return row, err
}

// idAt is a UUIDv7, as the server's ids are, for the instant t, so that
// newest-first by id is newest-first by creation as it is in production.
func idAt(t time.Time, rng *rand.Rand) uuid.UUID {
	var u uuid.UUID
	binary.BigEndian.PutUint64(u[0:8], uint64(t.UnixMilli())<<16|rng.Uint64()&0x0fff)
	binary.BigEndian.PutUint64(u[8:16], rng.Uint64())
	u[6] = 0x70 | u[6]&0x0f
	u[8] = 0x80 | u[8]&0x3f
	return u
}

// addWeekdayTime adds d of Monday-to-Friday time (UTC) to t, as the server
// computes an acknowledgement deadline.
func addWeekdayTime(t time.Time, d time.Duration) time.Time {
	for d > 0 {
		next := time.Date(t.Year(), t.Month(), t.Day()+1, 0, 0, 0, 0, time.UTC)
		if wd := t.Weekday(); wd != time.Saturday && wd != time.Sunday {
			if left := next.Sub(t); d <= left {
				return t.Add(d)
			} else {
				d -= left
			}
		}
		t = next
	}
	return t
}
