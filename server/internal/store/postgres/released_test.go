package postgres_test

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/careteam/careteam/server/internal/store/postgres"
	"github.com/careteam/careteam/server/internal/testdb"
)

// TestReleasedSchemasReachTheCurrentOne builds a database as each earlier
// revision's migrations built it (testdata/released holds the files that
// were edited after that revision, as they were then), migrates it with
// today's migrations, and compares its schema with that of a database
// migrated from nothing: tables, columns, constraints, indexes, triggers,
// functions and statistics must be the same.
func TestReleasedSchemasReachTheCurrentOne(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	fresh := newPool(t, testdb.NewEmptyURL(t), nil, 2)
	if _, err := postgres.Migrate(ctx, fresh, quiet); err != nil {
		t.Fatal(err)
	}
	want := schemaOf(t, fresh)

	revisions, err := os.ReadDir("testdata/released")
	if err != nil {
		t.Fatal(err)
	}
	for _, rev := range revisions {
		if !rev.IsDir() {
			continue
		}
		t.Run(rev.Name(), func(t *testing.T) {
			t.Parallel()
			dir, through := released(t, filepath.Join("testdata/released", rev.Name()))
			pool := newPool(t, testdb.NewEmptyURL(t), nil, 2)
			if err := postgres.MigrateFS(ctx, pool, dir, through); err != nil {
				t.Fatalf("as released, to version %d: %v", through, err)
			}
			if _, err := postgres.Migrate(ctx, pool, quiet); err != nil {
				t.Fatalf("from version %d as released: %v", through, err)
			}
			if diff := cmp.Diff(want, schemaOf(t, pool)); diff != "" {
				t.Errorf("migrated from version %d as released, the schema differs from a fresh one (-fresh +migrated):\n%s", through, diff)
			}
		})
	}
}

// released returns the migrations as of a revision: today's files up to
// its version, with the ones it had otherwise in their older form.
func released(t *testing.T, snapshot string) (fs.FS, int64) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(snapshot, "through"))
	if err != nil {
		t.Fatal(err)
	}
	through, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	dir := fstest.MapFS{}
	current := postgres.Migrations()
	entries, err := fs.ReadDir(current, ".")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		version, err := strconv.ParseInt(strings.SplitN(e.Name(), "_", 2)[0], 10, 64)
		if err != nil || version > through {
			continue
		}
		data, err := fs.ReadFile(current, e.Name())
		if err != nil {
			t.Fatal(err)
		}
		if old, err := os.ReadFile(filepath.Join(snapshot, e.Name())); err == nil {
			data = old
		}
		dir[e.Name()] = &fstest.MapFile{Data: data}
	}
	return dir, through
}

// schemaOf describes the public schema as sorted lines, column order
// aside (a column added later comes last, where a fresh table lists it in
// place; the store names its columns).
func schemaOf(t *testing.T, pool *pgxpool.Pool) []string {
	t.Helper()
	rows, err := pool.Query(context.Background(), `
		SELECT format('column %s.%s %s%s default %s', c.relname, a.attname, format_type(a.atttypid, a.atttypmod),
		              CASE WHEN a.attnotnull THEN ' not null' ELSE '' END, coalesce(pg_get_expr(d.adbin, d.adrelid), 'none'))
		FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
		WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
		UNION ALL
		SELECT format('constraint %s.%s %s', c.relname, k.conname, pg_get_constraintdef(k.oid))
		FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = 'public'
		UNION ALL
		SELECT format('index %s', indexdef) FROM pg_indexes WHERE schemaname = 'public'
		UNION ALL
		SELECT format('trigger %s', pg_get_triggerdef(g.oid))
		FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = 'public' AND NOT g.tgisinternal
		UNION ALL
		SELECT format('function %s', pg_get_functiondef(p.oid))
		FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public'
		UNION ALL
		SELECT format('statistics %s', pg_get_statisticsobjdef(s.oid))
		FROM pg_statistic_ext s JOIN pg_namespace n ON n.oid = s.stxnamespace WHERE n.nspname = 'public'
		UNION ALL
		SELECT format('sequence %s', c.relname)
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind = 'S'
		ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatal(err)
		}
		out = append(out, line)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestMigration15 loads data as the first released form of migrations
// 00002-00004 stored it (version 4, revision 518056b: sessions numbered
// without a unique visit number, without their referral's parties, and
// referrals without a count of sessions started), migrates, and checks
// what version 15 made of it: visits numbered in the order they started,
// the count, the parties, and a signed note's visit number now as
// unchangeable as the rest of it.
func TestMigration15(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := newPool(t, testdb.NewEmptyURL(t), nil, 2)
	dir, through := released(t, "testdata/released/518056b")
	if err := postgres.MigrateFS(ctx, pool, dir, through); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	id := func() uuid.UUID { return uuid.Must(uuid.NewV7()) }
	clinic, spa, dr, lmt, pt, ref, cl := id(), id(), id(), id(), id(), id(), id()
	first, second, third := id(), id(), id()
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := pool.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	exec(`INSERT INTO organizations (id, display_name, kind, version, create_time, update_time) VALUES
		($1, 'Clinic', 'PHYSICIAN_PRACTICE', 1, $3, $3), ($2, 'Spa', 'MASSAGE_PRACTICE', 1, $3, $3)`, clinic, spa, now)
	exec(`INSERT INTO practitioners (id, organization_id, display_name, role, subject, licence_expire_date, active, version, create_time, update_time) VALUES
		($1, $3, 'Dr', 'PHYSICIAN', 'dr', NULL, true, 1, $5, $5),
		($2, $4, 'LMT', 'MASSAGE_THERAPIST', 'lmt', '2030-01-01', true, 1, $5, $5)`, dr, lmt, clinic, spa, now)
	exec(`INSERT INTO patients (id, organization_id, registered_by, given_name, family_name, birth_date, gender, version, create_time, update_time)
		VALUES ($1, $2, $3, 'A', 'B', '1970-01-01', 'UNKNOWN', 1, $4, $4)`, pt, clinic, dr, now)
	exec(`INSERT INTO referrals (id, patient_id, referring_physician_id, referring_org_id, target_therapist_id, target_org_id, priority,
		authorized_visits, used_visits, valid_until, state, version, create_time, update_time)
		VALUES ($1, $2, $3, $4, $5, $6, 'ROUTINE', 6, 3, $7, 'IN_PROGRESS', 4, $8, $8)`, ref, pt, dr, clinic, lmt, spa, now.AddDate(0, 3, 0), now)
	exec(`INSERT INTO clearances (id, patient_id, physician_id, decision, status, valid_from, valid_until, issue_time, version, create_time, update_time)
		VALUES ($1, $2, $3, 'CLEARED', 'ACTIVE', $4, $5, $4, 1, $4, $4)`, cl, pt, dr, now.Add(-time.Hour), now.AddDate(0, 1, 0))
	// Two sessions took visit 1 (the first form had no unique visit
	// number); the one that started first is signed.
	exec(`INSERT INTO sessions (id, referral_id, patient_id, therapist_id, clearance_id, state, planned, scheduled_start_time, start_time,
		visit_number, note_status, signed_by, sign_time, content_sha256, version, create_time, update_time) VALUES
		($1, $4, $5, $6, $7, 'COMPLETED', '[]', $8, $8, 1, 'SIGNED', $6, $9, 'abc', 2, $8, $9),
		($2, $4, $5, $6, $7, 'STARTED', '[]', $9, $9, 1, 'DRAFT', NULL, NULL, '', 1, $9, $9),
		($3, $4, $5, $6, $7, 'STARTED', '[]', $10, $10, 2, 'DRAFT', NULL, NULL, '', 1, $10, $10)`,
		first, second, third, ref, pt, lmt, cl, now.Add(-3*time.Hour), now.Add(-2*time.Hour), now.Add(-time.Hour))

	if v, err := postgres.Migrate(ctx, pool, quiet); err != nil || v < 15 {
		t.Fatalf("version %d: %v", v, err)
	}
	for s, want := range map[uuid.UUID]int{first: 1, second: 2, third: 3} {
		var visit int
		var physician, referring, target uuid.UUID
		if err := pool.QueryRow(ctx, `SELECT visit_number, referring_physician_id, referring_org_id, target_org_id FROM sessions WHERE id = $1`, s).
			Scan(&visit, &physician, &referring, &target); err != nil {
			t.Fatal(err)
		}
		if visit != want || physician != dr || referring != clinic || target != spa {
			t.Errorf("session %d: visit %d, parties %v %v %v", want, visit, physician, referring, target)
		}
	}
	var started int
	if err := pool.QueryRow(ctx, `SELECT sessions_started FROM referrals WHERE id = $1`, ref).Scan(&started); err != nil {
		t.Fatal(err)
	}
	if started != 3 {
		t.Errorf("sessions started: %d, want 3", started)
	}
	if _, err := pool.Exec(ctx, `UPDATE sessions SET visit_number = 9 WHERE id = $1`, first); err == nil {
		t.Error("a signed note's visit number changed")
	}
}
