package main

import (
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	pb "github.com/careteam/careteam/proto/careteam/v1"
	"github.com/careteam/careteam/server/internal/pgembed"
	"github.com/careteam/careteam/server/internal/store/postgres"
)

// TestServesANewerSchemaItWasDeclaredFor makes the embedded database look
// migrated by the next release (one migration more, recorded as
// servable by this one, and a table of its own that the serving role may
// only read): careteamd starts, says so, serves, and leaves the newer
// release's grants alone. Recorded as not servable, it refuses to start.
func TestServesANewerSchemaItWasDeclaredFor(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dataDir := newDataDir(t)
	d := startDaemon(t, dataDir, nil, launch{})
	d.stop(t)

	pg, err := pgembed.Start(ctx, pgembed.Config{Dir: filepath.Join(dataDir, "postgres"), Database: "careteam"})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, pg.ConnString())
	if err != nil {
		t.Fatal(err)
	}
	next := postgres.Known() + 1
	for _, sql := range []string{
		`SET ROLE careteam_owner`,
		`CREATE TABLE next_release (id int)`,
		`GRANT SELECT ON next_release TO careteam_runtime`,
		`RESET ROLE`,
		`INSERT INTO goose_db_version (version_id, is_applied) VALUES (` + itoa(next) + `, true)`,
		`INSERT INTO schema_compatibility (version, serves_from) VALUES (` + itoa(next) + `, ` + itoa(next-1) + `)`,
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	conn.Close(ctx)
	if err := pg.Stop(ctx); err != nil {
		t.Fatal(err)
	}

	d = startDaemon(t, dataDir, nil, launch{})
	if _, err := d.client(t, dataDir, "admin").Directory.ListOrganizations(ctx, &pb.ListOrganizationsRequest{}); err != nil {
		t.Fatalf("serving the newer schema: %v", err)
	}
	d.stop(t)
	if !strings.Contains(d.logs.String(), "declared this one able to serve it") {
		t.Errorf("careteamd did not say it serves a newer schema:\n%s", d.logs)
	}
	pg, err = pgembed.Start(ctx, pgembed.Config{Dir: filepath.Join(dataDir, "postgres"), Database: "careteam"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = pg.Stop(ctx) }()
	conn, err = pgx.Connect(ctx, pg.ConnString())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var canInsert bool
	if err := conn.QueryRow(ctx, `SELECT has_table_privilege('careteam_runtime', 'next_release', 'INSERT')`).Scan(&canInsert); err != nil {
		t.Fatal(err)
	}
	if canInsert {
		t.Error("careteamd granted the serving role a write on the newer release's table")
	}

	// Recorded as servable only by the next release: refused.
	if _, err := conn.Exec(ctx, `UPDATE schema_compatibility SET serves_from = `+itoa(next)+` WHERE version = `+itoa(next)); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	if err := pg.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(binary, "--data-dir", dataDir, "--listen", freeAddr(t)).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "knows versions up to") {
		t.Fatalf("careteamd started on a schema not declared for it (%v):\n%s", err, out)
	}
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }
