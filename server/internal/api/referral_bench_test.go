package api_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/careteam/careteam/client"
	pb "github.com/careteam/careteam/proto/careteam/v1"
	"github.com/careteam/careteam/server/internal/careteam"
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

// BenchmarkListReferrals measures ListReferrals through gRPC over n loaded
// referrals, per caller and filter: authentication, the query, and the
// conversion to protos, as a client sees it. The store's share is in
// server/internal/store/postgres's BenchmarkStoreListReferrals, and the
// query plans in its log.
func BenchmarkListReferrals(b *testing.B) {
	for _, n := range listSizes {
		b.Run(fmt.Sprintf("rows=%d", n), func(b *testing.B) {
			h := newHarness(b)
			d := loadReferrals(b, h.pool, n)
			callers := []struct {
				name   string
				c      *client.Client
				target uuid.UUID // whom the target-therapist filter names
			}{
				{"coordinator", h.as(d.coordinator.subject), d.otherTherapist},
				{"therapist", h.as(d.therapist.subject), d.therapist.id},
				{"new-therapist", h.as(d.newTherapist.subject), d.newTherapist.id},
			}
			for _, c := range callers {
				for _, sh := range []struct {
					name string
					req  *pb.ListReferralsRequest
				}{
					{"first-page", &pb.ListReferralsRequest{PageSize: listPageSize}},
					{"target-therapist", &pb.ListReferralsRequest{PageSize: listPageSize, TargetTherapist: careteam.Practitioners.Name(c.target)}},
					{"state=SUBMITTED", &pb.ListReferralsRequest{PageSize: listPageSize, States: []pb.ReferralState{pb.ReferralState_REFERRAL_STATE_SUBMITTED}}},
					{"overdue", &pb.ListReferralsRequest{PageSize: listPageSize, Overdue: true}},
				} {
					b.Run(c.name+"/"+sh.name, func(b *testing.B) {
						d.logLoad(b)
						benchLatency(b, func() int {
							resp, err := c.c.Referrals.ListReferrals(b.Context(), sh.req)
							if err != nil {
								b.Fatal(err)
							}
							return len(resp.GetReferrals())
						})
					})
				}
			}
		})
	}
}

// loadNow is the instant the data is generated back from: the harness
// clock, at which the lists judge expiry and overdue.
var loadNow = start

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
