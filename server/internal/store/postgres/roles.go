package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// careteamd's database is used by two roles. The owner migrates the schema
// and owns everything in it; the runtime role, which careteamd serves as,
// owns nothing and holds only what GrantRuntime grants. Not being an owner
// or a superuser, it cannot turn off the append-only triggers (of the audit
// trail, of signed notes) or replication-role tricks around them, and it
// may only append to and read the audit trail.

// EnsureRoles makes, as a superuser, the owner and runtime roles of the
// database pool is connected to, and hands the database and everything in
// its public schema to the owner, including what an earlier version made
// as the superuser. Both roles log in without a password: it is for the
// embedded default, whose server admits only its own Unix socket.
func EnsureRoles(ctx context.Context, super *pgxpool.Pool, owner, runtime string) error {
	for _, role := range []string{owner, runtime} {
		var exists bool
		if err := super.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)`, role).Scan(&exists); err != nil {
			return fmt.Errorf("roles: %w", err)
		}
		if !exists {
			if _, err := super.Exec(ctx, `CREATE ROLE `+pgx.Identifier{role}.Sanitize()+` LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE`); err != nil {
				return fmt.Errorf("roles: creating %s: %w", role, err)
			}
		}
	}
	// Everything in public that the owner does not own yet, as statements.
	rows, err := super.Query(ctx, `
		SELECT format('ALTER DATABASE %I OWNER TO %I', current_database(), $1::text)
		UNION ALL SELECT format('ALTER SCHEMA public OWNER TO %I', $1::text)
		UNION ALL
		SELECT format('ALTER %s %I OWNER TO %I', CASE c.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW' ELSE 'TABLE' END, c.relname, $1::text)
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'S')
		  AND pg_get_userbyid(c.relowner) <> $1
		  -- identity and serial sequences follow their table
		  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype IN ('a', 'i'))
		UNION ALL
		SELECT format('ALTER FUNCTION %s OWNER TO %I', p.oid::regprocedure, $1::text)
		FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
		WHERE n.nspname = 'public' AND pg_get_userbyid(p.proowner) <> $1`, owner)
	if err != nil {
		return fmt.Errorf("roles: %w", err)
	}
	stmts, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("roles: %w", err)
	}
	for _, s := range stmts {
		if _, err := super.Exec(ctx, s); err != nil {
			return fmt.Errorf("roles: handing over to %s: %w", owner, err)
		}
	}
	return nil
}

// GrantRuntime grants role, as the owner after the migrations, what
// careteamd needs to serve and no more. It runs at every start, so tables
// added since are covered too.
func GrantRuntime(ctx context.Context, owner *pgxpool.Pool, role string) error {
	r := pgx.Identifier{role}.Sanitize()
	for _, s := range []string{
		`GRANT USAGE ON SCHEMA public TO ` + r,
		`GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO ` + r,
		`GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO ` + r,
		// The audit trail is appended to and read; the head checkpoints,
		// which a trigger keeps, are only read.
		`REVOKE UPDATE, DELETE, TRUNCATE ON audit_events FROM ` + r,
		`REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON audit_heads FROM ` + r,
		// The schema's version, and who may serve it, are the owner's to
		// write.
		`REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON goose_db_version FROM ` + r,
		`REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON schema_compatibility FROM ` + r,
	} {
		if _, err := owner.Exec(ctx, s); err != nil {
			return fmt.Errorf("granting the runtime role: %w", err)
		}
	}
	return nil
}
