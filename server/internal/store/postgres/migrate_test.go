package postgres_test

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/careteam/careteam/server/internal/careteam"
	"github.com/careteam/careteam/server/internal/store/postgres"
	"github.com/careteam/careteam/server/internal/testdb"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// TestMigrationsForwardFromEveryVersion: a database at any released
// version migrates to the latest at start-up.
func TestMigrationsForwardFromEveryVersion(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	versions, err := postgres.MigrationVersions(newPool(t, testdb.NewEmptyURL(t), nil, 2))
	if err != nil {
		t.Fatal(err)
	}
	latest := versions[len(versions)-1]
	for _, from := range append([]int64{0}, versions[:len(versions)-1]...) {
		pool := newPool(t, testdb.NewEmptyURL(t), nil, 2)
		if from > 0 { // 0: an empty database, the first start
			if err := postgres.MigrateTo(ctx, pool, from); err != nil {
				t.Fatalf("to %d: %v", from, err)
			}
		}
		if got, err := postgres.Migrate(ctx, pool, quiet); err != nil || got != latest {
			t.Fatalf("from %d: version %d, %v", from, got, err)
		}
	}
}

// TestMigration9 loads data as version 8 stored it and checks what version
// 9 makes of it: coded red flags on old diagnoses, the red flags standing
// on each record with the clearances that evaluated them, renewals put in
// force early by version 8 scheduled again, and clinical roles outside
// their kind of practice deactivated.
func TestMigration9(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := newPool(t, testdb.NewEmptyURL(t), nil, 2)
	if err := postgres.MigrateTo(ctx, pool, 8); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	id := func() uuid.UUID { return uuid.Must(uuid.NewV7()) }
	clinic, spa := id(), id()
	dr, fakeDr, lmt := id(), id(), id()
	pt, pt2 := id(), id()
	cauda, resolved := id(), id()
	old, early, suspended := id(), id(), id()
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := pool.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	exec(`INSERT INTO organizations (id, display_name, kind, version, create_time, update_time) VALUES
		($1, 'Clinic', 'PHYSICIAN_PRACTICE', 1, $3, $3), ($2, 'Spa', 'MASSAGE_PRACTICE', 1, $3, $3)`, clinic, spa, now)
	exec(`INSERT INTO practitioners (id, organization_id, display_name, role, subject, licence_expire_date, active, version, create_time, update_time) VALUES
		($1, $4, 'Dr', 'PHYSICIAN', 'dr', NULL, true, 1, $6, $6),
		($2, $5, 'Fake', 'PHYSICIAN', 'fake', NULL, true, 1, $6, $6),
		($3, $5, 'LMT', 'MASSAGE_THERAPIST', 'lmt', '2030-01-01', true, 1, $6, $6)`, dr, fakeDr, lmt, clinic, spa, now)
	exec(`INSERT INTO patients (id, organization_id, registered_by, given_name, family_name, birth_date, gender, version, create_time, update_time) VALUES
		($1, $3, $4, 'A', 'B', '1970-01-01', 'UNKNOWN', 1, $5, $5), ($2, $3, $4, 'C', 'D', '1970-01-01', 'UNKNOWN', 1, $5, $5)`, pt, pt2, clinic, dr, now)
	recorded := now.Add(-48 * time.Hour)
	exec(`INSERT INTO diagnoses (id, patient_id, physician_id, icd10_code, display, clinical_status, red_flags, version, create_time, update_time) VALUES
		($1, $3, $4, 'G83.4', 'x', 'ACTIVE', '{}', 1, $5, $5),
		($2, $3, $4, 'M54.50', 'x', 'RESOLVED', '{SIGNIFICANT_TRAUMA}', 1, $5, $5)`, cauda, resolved, pt, dr, recorded)
	// old was in force; version 8 let early, whose window opens in a week,
	// supersede it at once.
	exec(`INSERT INTO clearances (id, patient_id, physician_id, decision, status, valid_from, valid_until, evaluated_red_flags,
			issue_time, superseded_by, version, create_time, update_time) VALUES
		($1, $3, $4, 'CLEARED', 'SUPERSEDED', $5, $6, '{CAUDA_EQUINA_SYMPTOMS}', $5, $2, 2, $5, $7),
		($2, $3, $4, 'CLEARED', 'ACTIVE', $8, $9, '{}', $7, NULL, 1, $7, $7)`,
		old, early, pt, dr, now.Add(-24*time.Hour), now.AddDate(0, 1, 0), now.Add(-time.Hour), now.AddDate(0, 0, 7), now.AddDate(0, 2, 0))
	exec(`INSERT INTO clearances (id, patient_id, physician_id, decision, status, valid_from, valid_until, issue_time,
			suspended_by, suspension_red_flag, suspension_observation, suspend_time, version, create_time, update_time) VALUES
		($1, $2, $3, 'CLEARED', 'SUSPENDED', $5, $6, $5, $4, 'INFECTION_SIGNS', 'Fever.', $7, 2, $5, $7)`,
		suspended, pt2, dr, lmt, now.Add(-24*time.Hour), now.AddDate(0, 1, 0), now.Add(-time.Hour))

	if v, err := postgres.Migrate(ctx, pool, quiet); err != nil || v < 9 {
		t.Fatalf("version %d: %v", v, err)
	}

	var flags []string
	if err := pool.QueryRow(ctx, `SELECT red_flags FROM diagnoses WHERE id = $1`, cauda).Scan(&flags); err != nil || !slices.Equal(flags, []string{"CAUDA_EQUINA_SYMPTOMS"}) {
		t.Errorf("G83.4 carries %v (%v)", flags, err)
	}
	store := postgres.New(pool, quiet)
	findings := func(patient uuid.UUID) []*careteam.RedFlagFinding {
		var fs []*careteam.RedFlagFinding
		if err := store.InTx(ctx, func(tx careteam.Tx) (err error) {
			fs, err = tx.OpenRedFlagFindings(ctx, patient)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return fs
	}
	// The old clearance evaluated the cauda equina flag, being issued after
	// the diagnosis and listing it; the resolved diagnosis stands no more.
	if fs := findings(pt); len(fs) != 1 || fs[0].Flag != "CAUDA_EQUINA_SYMPTOMS" || fs[0].DiagnosisID != cauda ||
		!slices.Equal(fs[0].EvaluatedBy, []uuid.UUID{old}) || !fs[0].RecordTime.Equal(recorded) {
		t.Errorf("patient's findings %+v", fs)
	}
	if fs := findings(pt2); len(fs) != 1 || fs[0].Flag != "INFECTION_SIGNS" || fs[0].ClearanceID != suspended || len(fs[0].EvaluatedBy) != 0 {
		t.Errorf("the therapist's report %+v", fs)
	}

	var oldStatus, earlyStatus string
	var supersedeTime time.Time
	if err := pool.QueryRow(ctx, `SELECT o.status, o.supersede_time, e.status FROM clearances o, clearances e WHERE o.id = $1 AND e.id = $2`,
		old, early).Scan(&oldStatus, &supersedeTime, &earlyStatus); err != nil {
		t.Fatal(err)
	}
	if oldStatus != "ACTIVE" || earlyStatus != "SCHEDULED" || !supersedeTime.Equal(now.AddDate(0, 0, 7)) {
		t.Errorf("old %s until %s, early %s", oldStatus, supersedeTime, earlyStatus)
	}

	var active []string
	rows, err := pool.Query(ctx, `SELECT subject FROM practitioners WHERE active ORDER BY subject`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		active = append(active, s)
	}
	if !slices.Equal(active, []string{"dr", "lmt"}) {
		t.Errorf("active practitioners %v: a physician of a massage practice no longer acts", active)
	}
}

// TestMigration11 loads events as version 10 addressed them and checks
// that version 11 readdresses those of diagnoses and clearances as the
// read policy reads them, and leaves the others alone.
func TestMigration11(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := newPool(t, testdb.NewEmptyURL(t), nil, 2)
	if err := postgres.MigrateTo(ctx, pool, 10); err != nil {
		t.Fatal(err)
	}
	id := func() uuid.UUID { return uuid.Must(uuid.NewV7()) }
	clinic, spa, dr, asker, patient := id(), id(), id(), id(), id()
	tok := func(kind string, id uuid.UUID) string { return kind + ":" + id.String() }
	old := []string{tok("o", clinic), tok("t", spa), tok("p", dr), tok("c", spa), tok("p", asker)}
	insert := func(cursor int, typ, payload string) {
		t.Helper()
		if _, err := pool.Exec(ctx, `INSERT INTO events (cursor, id, type, resource, patient_id, time, audience, payload)
			VALUES ($1, $2, $3, 'x/1', $4, now(), $5, $6)`, cursor, id(), typ, patient, old, payload); err != nil {
			t.Fatal(err)
		}
	}
	insert(1, "DIAGNOSIS_RECORDED", `{}`)
	insert(2, "CLEARANCE_ISSUED", `{"Clearance": {"PhysicianID": "`+dr.String()+`", "RequestedBy": "`+asker.String()+`"}}`)
	insert(3, "CONSENT_RECORDED", `{}`)
	if _, err := postgres.Migrate(ctx, pool, quiet); err != nil {
		t.Fatal(err)
	}
	audience := func(cursor int) []string {
		var a []string
		if err := pool.QueryRow(ctx, `SELECT audience FROM events WHERE cursor = $1`, cursor).Scan(&a); err != nil {
			t.Fatal(err)
		}
		slices.Sort(a)
		return a
	}
	sorted := func(a ...string) []string { slices.Sort(a); return a }
	if got, want := audience(1), sorted(tok("s", clinic), tok("p", dr), tok("c", spa), tok("p", asker)); !slices.Equal(got, want) {
		t.Errorf("diagnosis event addressed to %v, want %v", got, want)
	}
	if got, want := audience(2), sorted(tok("s", clinic), tok("p", dr), tok("c", spa)); !slices.Equal(got, want) {
		t.Errorf("clearance event addressed to %v, want %v", got, want)
	}
	if got := audience(3); !slices.Equal(got, sorted(old...)) {
		t.Errorf("consent event readdressed to %v", got)
	}
}

// TestMigration13 moves event numbering from the cursor row to a
// sequence: the next cursor follows the last one handed out before.
func TestMigration13(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := newPool(t, testdb.NewEmptyURL(t), nil, 2)
	if err := postgres.MigrateTo(ctx, pool, 12); err != nil {
		t.Fatal(err)
	}
	// Cursor 3 was taken by a transaction that did not commit its event.
	for _, c := range []int{1, 2} {
		if _, err := pool.Exec(ctx, `INSERT INTO events (cursor, id, type, resource, time, audience, payload)
			VALUES ($1, $2, 'CONSENT_RECORDED', 'x/1', now(), '{}', '{}')`, c, uuid.New()); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := pool.Exec(ctx, `UPDATE event_cursor SET last_cursor = 3`); err != nil {
		t.Fatal(err)
	}
	if _, err := postgres.Migrate(ctx, pool, quiet); err != nil {
		t.Fatal(err)
	}
	var next int64
	if err := pool.QueryRow(ctx, `SELECT nextval('event_cursors')`).Scan(&next); err != nil {
		t.Fatal(err)
	}
	if next != 4 {
		t.Errorf("the first cursor after the migration is %d, want 4", next)
	}
}

// TestRefusesANewerSchema: a careteamd rolled back to an older version
// refuses a database a newer one migrated, saying so, and changes nothing.
func TestRefusesANewerSchema(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := newPool(t, testdb.NewEmptyURL(t), nil, 2)
	latest, err := postgres.Migrate(ctx, pool, quiet)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO goose_db_version (version_id, is_applied) VALUES ($1, true)`, latest+1); err != nil {
		t.Fatal(err)
	}
	_, err = postgres.Migrate(ctx, pool, quiet)
	if !errors.Is(err, postgres.ErrSchemaTooNew) || !strings.Contains(err.Error(), fmt.Sprintf("version %d", latest+1)) {
		t.Fatalf("a newer schema: %v", err)
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM goose_db_version WHERE version_id = $1`, latest+1).Scan(&n); err != nil || n != 1 {
		t.Errorf("the newer version's row: %d (%v)", n, err)
	}
}

// TestSchemaCompatibilityAcrossReleases migrates databases through
// releases made of the embedded migrations and later ones: each careteamd
// that migrates records which releases may still serve the result. The
// release that served the database until then may serve a schema that
// only expanded, or took away only what the release before it used
// ("-- contract:"); an older one is refused.
func TestSchemaCompatibilityAcrossReleases(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	embedded := fstest.MapFS{}
	files, err := fs.Glob(os.DirFS("migrations"), "*.sql")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		data, err := os.ReadFile(filepath.Join("migrations", f))
		if err != nil {
			t.Fatal(err)
		}
		embedded[f] = &fstest.MapFile{Data: data}
	}
	latest := postgres.Known()
	release := func(later ...string) fstest.MapFS {
		r := maps.Clone(embedded)
		for i, sql := range later {
			r[fmt.Sprintf("%05d_later.sql", latest+int64(i)+1)] = &fstest.MapFile{Data: []byte("-- +goose Up\n" + sql + "\n")}
		}
		return r
	}
	expand := "ALTER TABLE patients ADD COLUMN nickname text;"
	contract := "-- contract: nothing reads nickname since the previous release\nALTER TABLE patients DROP COLUMN nickname;"
	a, b, c, d := release(), release(expand), release(expand, contract), release(expand, contract, "CREATE TABLE later (id int);")

	type step struct {
		name    string
		release fstest.MapFS
		refused bool
	}
	run := func(t *testing.T, pool *pgxpool.Pool, steps []step) {
		t.Helper()
		for _, s := range steps {
			_, err := postgres.MigrateDir(ctx, pool, s.release, quiet)
			if s.refused != errors.Is(err, postgres.ErrSchemaTooNew) || (!s.refused && err != nil) {
				t.Fatalf("release %s: %v, refused: want %v", s.name, err, s.refused)
			}
		}
	}
	servesFrom := func(pool *pgxpool.Pool, version int64) int64 {
		t.Helper()
		var from int64
		if err := pool.QueryRow(ctx, `SELECT serves_from FROM schema_compatibility WHERE version = $1`, version).Scan(&from); err != nil {
			t.Fatalf("schema_compatibility at %d: %v", version, err)
		}
		return from
	}

	t.Run("release by release", func(t *testing.T) {
		pool := newPool(t, testdb.NewEmptyURL(t), nil, 2)
		run(t, pool, []step{{"a", a, false}})
		if from := servesFrom(pool, latest); from != 19 {
			t.Errorf("a fresh database at %d is served from %d, want 19 (the last migration before the rule)", latest, from)
		}
		run(t, pool, []step{{"b", b, false}, {"a, the previous release, restarting", a, false}})
		if from := servesFrom(pool, latest+1); from != latest {
			t.Errorf("after an expanding migration: served from %d, want %d", from, latest)
		}
		// c's contract takes away only what a used.
		run(t, pool, []step{{"c", c, false}, {"b, the previous release", b, false}, {"a, two releases back", a, true}})
		run(t, pool, []step{{"d", d, false}, {"c, the previous release", c, false}, {"b, two releases back", b, true}})
	})
	t.Run("a release skipped", func(t *testing.T) {
		pool := newPool(t, testdb.NewEmptyURL(t), nil, 2)
		// From a straight to c: c's contract took away what a used.
		run(t, pool, []step{{"a", a, false}, {"c", c, false}, {"a, the release that served it", a, true}, {"b", b, false}})
		if from := servesFrom(pool, latest+2); from != latest+1 {
			t.Errorf("served from %d, want %d", from, latest+1)
		}
	})
	t.Run("a mark that is not a line of its own", func(t *testing.T) {
		pool := newPool(t, testdb.NewEmptyURL(t), nil, 2)
		inline := release(expand, "CREATE TABLE later (id int); -- contract: not a line of its own")
		run(t, pool, []step{{"a", a, false}, {"with an inline mark", inline, false}})
		if from := servesFrom(pool, latest+2); from != latest {
			t.Errorf("served from %d, want %d: an inline mark is no contract (CI holds such a file to the expand rule)", from, latest)
		}
	})
	t.Run("a record lost", func(t *testing.T) {
		pool := newPool(t, testdb.NewEmptyURL(t), nil, 2)
		run(t, pool, []step{{"a", a, false}, {"b", b, false}})
		// As if the careteamd that migrated died before recording: the
		// next start records that only b may serve.
		if _, err := pool.Exec(ctx, `DELETE FROM schema_compatibility WHERE version = $1`, latest+1); err != nil {
			t.Fatal(err)
		}
		run(t, pool, []step{{"b again", b, false}, {"a", a, true}})
		if from := servesFrom(pool, latest+1); from != latest+1 {
			t.Errorf("served from %d after a lost record, want %d", from, latest+1)
		}
	})
}
