package pgembed

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// fastSettings trade durability for speed; tests never need to survive a
// machine crash.
var fastSettings = map[string]string{
	"fsync":              "off",
	"synchronous_commit": "off",
	"full_page_writes":   "off",
}

// testDir returns a not-yet-existing cluster directory under a fresh temp
// directory that the postgres user can traverse when the test runs as root.
func testDir(t *testing.T) string {
	t.Helper()
	tmp := t.TempDir()
	if os.Geteuid() == 0 {
		// t.TempDir nests in a 0700 root-owned directory.
		for _, d := range []string{filepath.Dir(tmp), tmp} {
			if err := os.Chmod(d, 0o711); err != nil {
				t.Fatal(err)
			}
		}
	}
	return filepath.Join(tmp, "pgdata")
}

func testConfig(t *testing.T, dir string) Config {
	return Config{
		Dir:      dir,
		Logger:   slog.New(slog.NewTextHandler(t.Output(), nil)),
		Settings: fastSettings,
	}
}

func start(t *testing.T, cfg Config) *Server {
	t.Helper()
	s, err := Start(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return s
}

func connect(t *testing.T, s *Server) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), s.ConnString())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func stop(t *testing.T, s *Server) {
	t.Helper()
	if err := s.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
}

func TestDataSurvivesRestart(t *testing.T) {
	ctx := t.Context()
	dir := testDir(t)
	cfg := testConfig(t, dir)

	s := start(t, cfg)
	conn := connect(t, s)
	var db, user string
	if err := conn.QueryRow(ctx, "SELECT current_database(), current_user").Scan(&db, &user); err != nil {
		t.Fatal(err)
	}
	if db != "careteam" || user != "careteam" {
		t.Errorf("connected to database %q as %q, want careteam as careteam", db, user)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE notes (body text); INSERT INTO notes VALUES ('kept')"); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)

	if _, err := Start(ctx, cfg); err == nil || !strings.Contains(err.Error(), "already in use") {
		t.Fatalf("second Start on a running Dir: got %v, want an already-in-use error", err)
	}
	if err := ping(t, s); err != nil {
		t.Fatalf("first server broken by the second Start: %v", err)
	}

	stop(t, s)
	stop(t, s)

	cfg.Settings = map[string]string{"fsync": "off", "max_connections": "many"}
	if _, err := Start(ctx, cfg); err == nil || !strings.Contains(err.Error(), `invalid value for parameter "max_connections"`) {
		t.Fatalf("Start with a bad setting: got %v, want an error quoting the server log", err)
	}

	cfg.Settings = map[string]string{"fsync": "off", "work_mem": "7MB"}
	s = start(t, cfg)
	conn = connect(t, s)
	var body, workMem string
	if err := conn.QueryRow(ctx, "SELECT body FROM notes").Scan(&body); err != nil {
		t.Fatal(err)
	}
	if body != "kept" {
		t.Errorf("row after restart = %q, want %q", body, "kept")
	}
	if err := conn.QueryRow(ctx, "SHOW work_mem").Scan(&workMem); err != nil {
		t.Fatal(err)
	}
	if workMem != "7MB" {
		t.Errorf("work_mem after restart with new Settings = %q, want 7MB", workMem)
	}
}

func ping(t *testing.T, s *Server) error {
	conn, err := pgx.Connect(t.Context(), s.ConnString())
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	return conn.Ping(t.Context())
}

func TestSocketPathTooLong(t *testing.T) {
	dir := filepath.Join(t.TempDir(), strings.Repeat("x", 120))
	_, err := Start(t.Context(), testConfig(t, dir))
	if err == nil || !strings.Contains(err.Error(), "socket path") {
		t.Fatalf("got %v, want a socket path error", err)
	}
	if _, statErr := os.Stat(dir); !os.IsNotExist(statErr) {
		t.Errorf("Dir was created despite the error (stat: %v)", statErr)
	}
}

func TestUntraversableParent(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only root hands the cluster to another user")
	}
	parent := t.TempDir() // 0700, owned by root
	_, err := Start(t.Context(), testConfig(t, filepath.Join(parent, "pgdata")))
	if err == nil || !strings.Contains(err.Error(), "not traversable") {
		t.Fatalf("got %v, want a not-traversable error", err)
	}
}

const helperEnv = "PGEMBED_TEST_HELPER_DIR"

// TestHelperProcess is the body of the child process that
// TestServerDiesWithOwner kills.
func TestHelperProcess(t *testing.T) {
	dir := os.Getenv(helperEnv)
	if dir == "" {
		t.Skip("helper process for TestServerDiesWithOwner")
	}
	cfg := Config{Dir: dir, Settings: fastSettings, Logger: slog.New(slog.DiscardHandler)}
	s, err := Start(context.Background(), cfg)
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	fmt.Println("PID", s.cmd.Process.Pid)
	select {}
}

// TestServerDiesWithOwner kills the owning process with SIGKILL, which it
// cannot intercept, and expects PostgreSQL to shut down and the Dir to be
// usable again.
func TestServerDiesWithOwner(t *testing.T) {
	dir := testDir(t)
	helper := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	helper.Env = append(os.Environ(), helperEnv+"="+dir)
	helper.Stderr = os.Stderr
	out, err := helper.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		helper.Process.Kill()
		t.Fatal(err)
	}
	pidText, ok := strings.CutPrefix(strings.TrimSpace(line), "PID ")
	pid, err := strconv.Atoi(pidText)
	if !ok || err != nil {
		helper.Process.Kill()
		t.Fatalf("helper said %q", line)
	}
	if err := helper.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	helper.Wait()

	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for IsPostmasterOn(pid, real) {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGQUIT)
			t.Fatal("postmaster survived its owner")
		}
		time.Sleep(20 * time.Millisecond)
	}

	if err := ping(t, start(t, testConfig(t, dir))); err != nil {
		t.Fatal(err)
	}
}

// TestOrphanIsStopped plays an older careteam that died without taking its
// postmaster down: Start must stop it rather than fail or run alongside it.
func TestOrphanIsStopped(t *testing.T) {
	dir := testDir(t)
	cfg := testConfig(t, dir)
	stop(t, start(t, cfg))

	acct, err := currentAccount()
	if err != nil {
		t.Fatal(err)
	}
	binDir, err := findBinDir()
	if err != nil {
		t.Fatal(err)
	}
	orphan := command(filepath.Join(binDir, "postgres"), acct, dir, "-D", dir)
	if err := orphan.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		orphan.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		orphan.Process.Signal(syscall.SIGQUIT)
		<-exited
	})
	pidFile := filepath.Join(dir, "postmaster.pid")
	for deadline := time.Now().Add(10 * time.Second); ; {
		data, _ := os.ReadFile(pidFile)
		if strings.HasPrefix(string(data), strconv.Itoa(orphan.Process.Pid)+"\n") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("orphan postmaster did not write its pid file")
		}
		time.Sleep(20 * time.Millisecond)
	}

	s := start(t, cfg)
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		t.Fatal("the orphan postmaster still runs")
	}
	if err := ping(t, s); err != nil {
		t.Fatal(err)
	}
}

func TestTCPNeedsTLSAndAPassword(t *testing.T) {
	t.Parallel()
	for name, tcp := range map[string]*TCP{
		"no address":     {Addr: "127.0.0.1", CertFile: "c", KeyFile: "k", Password: "p"},
		"no host":        {Addr: ":6543", CertFile: "c", KeyFile: "k", Password: "p"},
		"no certificate": {Addr: "127.0.0.1:6543", KeyFile: "k", Password: "p"},
		"no password":    {Addr: "127.0.0.1:6543", CertFile: "c", KeyFile: "k"},
	} {
		cfg := testConfig(t, testDir(t))
		cfg.TCP = tcp
		if _, err := Start(t.Context(), cfg); err == nil {
			t.Errorf("%s: started", name)
		}
	}
	cfg := testConfig(t, testDir(t))
	cfg.Settings = map[string]string{"ssl": "off"}
	if _, err := Start(t.Context(), cfg); err == nil || !strings.Contains(err.Error(), "managed by pgembed") {
		t.Errorf("ssl set by the caller: %v", err)
	}
}

// TestArchiveCommand runs the archive command the way PostgreSQL does: a
// new segment is copied, the same segment again succeeds, a different one
// under the same name is refused and leaves the archived copy alone.
func TestArchiveCommand(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	archive := filepath.Join(dir, "archive dir")
	if err := os.Mkdir(archive, 0o700); err != nil {
		t.Fatal(err)
	}
	command, err := archiveCommand(archive)
	if err != nil {
		t.Fatal(err)
	}
	run := func(content string) error {
		seg := filepath.Join(dir, "pg_wal_000000010000000000000001")
		if err := os.WriteFile(seg, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		sh := strings.NewReplacer("%p", seg, "%f", "000000010000000000000001").Replace(command)
		return exec.Command("sh", "-c", sh).Run()
	}
	if err := run("first"); err != nil {
		t.Fatalf("archiving a new segment: %v", err)
	}
	if err := run("first"); err != nil {
		t.Fatalf("archiving the same segment again: %v", err)
	}
	if err := run("other"); err == nil {
		t.Fatal("a different segment under an archived name was accepted")
	}
	got, err := os.ReadFile(filepath.Join(archive, "000000010000000000000001"))
	if err != nil || string(got) != "first" {
		t.Fatalf("the archived segment: %q, %v", got, err)
	}
	if _, err := archiveCommand("/tmp/it's"); err == nil {
		t.Error("a quote in the archive path was accepted")
	}
}

// TestStaleSocketLockIsIgnored starts a cluster whose socket lock file, as a
// base backup copies it, names a live process of the user PostgreSQL runs
// as that is not PostgreSQL: PostgreSQL alone would refuse to start.
func TestStaleSocketLockIsIgnored(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, testDir(t))
	stop(t, start(t, cfg))
	fi, err := os.Stat(cfg.Dir)
	if err != nil {
		t.Fatal(err)
	}
	owner := fi.Sys().(*syscall.Stat_t)
	other := exec.Command("sleep", "60")
	if os.Geteuid() == 0 {
		other.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: owner.Uid, Gid: owner.Gid}}
	}
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = other.Process.Kill(); _ = other.Wait() }()
	lock := filepath.Join(cfg.Dir, ".s.PGSQL.5432.lock")
	if err := os.WriteFile(lock, fmt.Appendf(nil, "%d\n%s\n", other.Process.Pid, cfg.Dir), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(lock, int(owner.Uid), int(owner.Gid)); err != nil {
		t.Fatal(err)
	}
	if err := ping(t, start(t, cfg)); err != nil {
		t.Fatal(err)
	}
}

// TestArchiveFailureIsReported makes the WAL archive unwritable: the
// failing archive command, which PostgreSQL reports only in its own log,
// must reach the Server's logger.
func TestArchiveFailureIsReported(t *testing.T) {
	defer func(every time.Duration) { archiveCheckEvery = every }(archiveCheckEvery)
	archiveCheckEvery = 100 * time.Millisecond
	dir := testDir(t)
	logs := &syncBuffer{}
	cfg := testConfig(t, dir)
	cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	cfg.WALArchive = filepath.Join(filepath.Dir(dir), "archive")
	s := start(t, cfg)
	if err := os.Chmod(cfg.WALArchive, 0o500); err != nil {
		t.Fatal(err)
	}
	conn := connect(t, s)
	if _, err := conn.Exec(t.Context(), `CREATE TABLE t (x int); SELECT pg_switch_wal()`); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(logs.String(), "WAL archiving is failing") {
		if time.Now().After(deadline) {
			t.Fatalf("no warning in 20s of a failing archive:\n%s", logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := os.Chmod(cfg.WALArchive, 0o700); err != nil {
		t.Fatal(err)
	}
	for !strings.Contains(logs.String(), "WAL archiving works again") {
		if time.Now().After(deadline.Add(40 * time.Second)) {
			t.Fatalf("no word in 60s that archiving works again:\n%s", logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestArchiveMustBeOwnersAlone refuses a WAL archive others may write to.
func TestArchiveMustBeOwnersAlone(t *testing.T) {
	t.Parallel()
	dir := testDir(t)
	cfg := testConfig(t, dir)
	cfg.WALArchive = filepath.Join(filepath.Dir(dir), "archive")
	if err := os.Mkdir(cfg.WALArchive, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(cfg.WALArchive, 0o777); err != nil {
		t.Fatal(err)
	}
	if _, err := Start(t.Context(), cfg); err == nil || !strings.Contains(err.Error(), "only its owner may write") {
		t.Fatalf("a world-writable archive: %v", err)
	}
}

type syncBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
