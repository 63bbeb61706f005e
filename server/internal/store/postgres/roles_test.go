package postgres_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/careteam/careteam/server/internal/audit"
	"github.com/careteam/careteam/server/internal/careteam"
	"github.com/careteam/careteam/server/internal/store/postgres"
	"github.com/careteam/careteam/server/internal/testdb"
)

// poolAs connects to the database of url as role.
func poolAs(t *testing.T, url, role string) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.User = role
	pool, err := pgxpool.NewWithConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// TestRuntimeRoleCannotRewriteHistory is the finding: careteamd's database
// role was a superuser owning its tables, so it, or anyone who took it
// over, could turn off the append-only triggers, rewrite a signed note
// with its hash, or delete the end of the audit trail. Set up as the
// embedded default does, the role careteamd serves as can do its work and
// none of that.
func TestRuntimeRoleCannotRewriteHistory(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	url := testdb.NewEmptyURL(t)
	super := newPool(t, url, nil, 2)
	suffix := strings.ReplaceAll(uuid.NewString()[:8], "-", "")
	owner, runtime := "careteam_owner_"+suffix, "careteam_runtime_"+suffix
	if err := postgres.EnsureRoles(ctx, super, owner, runtime); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		var me string
		_ = super.QueryRow(ctx, `SELECT current_user`).Scan(&me)
		for _, s := range []string{
			`ALTER DATABASE ` + pgx.Identifier{dbName(t, super)}.Sanitize() + ` OWNER TO ` + pgx.Identifier{me}.Sanitize(),
			`REASSIGN OWNED BY ` + pgx.Identifier{owner}.Sanitize() + ` TO ` + pgx.Identifier{me}.Sanitize(),
			`DROP OWNED BY ` + pgx.Identifier{owner}.Sanitize() + `, ` + pgx.Identifier{runtime}.Sanitize(),
			`DROP ROLE ` + pgx.Identifier{owner}.Sanitize(),
			`DROP ROLE ` + pgx.Identifier{runtime}.Sanitize(),
		} {
			if _, err := super.Exec(ctx, s); err != nil {
				t.Errorf("%s: %v", s, err)
			}
		}
	})
	ownerPool := poolAs(t, url, owner)
	if _, err := postgres.Migrate(ctx, ownerPool, quiet); err != nil {
		t.Fatal(err)
	}
	if err := postgres.GrantRuntime(ctx, ownerPool, runtime); err != nil {
		t.Fatal(err)
	}
	// Granting again, as every start does, changes nothing.
	if err := postgres.GrantRuntime(ctx, ownerPool, runtime); err != nil {
		t.Fatal(err)
	}
	rt := poolAs(t, url, runtime)

	// It does its work: a directory entry, an audited call, an event.
	store := postgres.New(rt, quiet)
	now := time.Now().UTC().Truncate(time.Microsecond)
	org := &careteam.Organization{ID: uuid.Must(uuid.NewV7()), DisplayName: "Clinic", Kind: careteam.PhysicianPractice, Version: 1, CreateTime: now, UpdateTime: now}
	if err := store.InTx(ctx, func(tx careteam.Tx) error {
		tx.AppendEvent(careteam.Event{ID: uuid.Must(uuid.NewV7()), Type: careteam.EventPractitionerChanged, Resource: "practitioners/x", Time: now})
		return tx.InsertOrganization(ctx, org)
	}); err != nil {
		t.Fatalf("serving as the runtime role: %v", err)
	}
	if err := store.AppendAudit(ctx, audit.Record{Time: now, Subject: "dr", Method: "/x", Outcome: "OK", Purpose: "TREATMENT", RequestID: "r1"}); err != nil {
		t.Fatalf("auditing as the runtime role: %v", err)
	}

	// And none of this.
	for _, sql := range []string{
		`SET session_replication_role = replica`,
		`ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only`,
		`ALTER TABLE sessions DISABLE TRIGGER sessions_signed_note_immutable`,
		`ALTER TABLE audit_events OWNER TO CURRENT_USER`,
		`DELETE FROM audit_events`,
		`UPDATE audit_events SET subject = 'someone-else'`,
		`TRUNCATE audit_events`,
		`UPDATE audit_heads SET position = 0`,
		`DELETE FROM goose_db_version`,
		`DELETE FROM schema_compatibility`,
		`DROP TABLE audit_events`,
		`CREATE TABLE intruder (id int)`,
	} {
		// Refused for want of the privilege, not for any other reason.
		var pgErr *pgconn.PgError
		if _, err := rt.Exec(ctx, sql); !errors.As(err, &pgErr) || pgErr.Code != "42501" {
			t.Errorf("the runtime role runs %s: %v", sql, err)
		}
	}
	var super_, owns bool
	if err := rt.QueryRow(ctx, `SELECT rolsuper, EXISTS (SELECT 1 FROM pg_class WHERE relowner = r.oid)
		FROM pg_roles r WHERE rolname = current_user`).Scan(&super_, &owns); err != nil {
		t.Fatal(err)
	}
	if super_ || owns {
		t.Errorf("the runtime role: superuser %v, owns tables %v", super_, owns)
	}
}

func dbName(t *testing.T, pool *pgxpool.Pool) string {
	var name string
	if err := pool.QueryRow(context.Background(), `SELECT current_database()`).Scan(&name); err != nil {
		t.Fatal(err)
	}
	return name
}
