// Package pgembed runs a private PostgreSQL server from the machine's own
// PostgreSQL binaries, for careteam's embedded default mode and for tests.
//
// It exists because the off-the-shelf launchers download their own binaries
// and refuse to run as root, while careteam is often deployed (and tested) as
// root in containers that already have Debian's PostgreSQL packages. pgembed
// initialises a cluster on first use, runs `postgres` as a child process that
// dies with us, and exposes it through a Unix socket inside the cluster
// directory, where trust authentication is safe, and on TCP only when asked,
// with TLS and a password.
//
// It is Linux-only: it relies on the parent-death signal and on /proc.
package pgembed

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

const (
	// superuser is the cluster's bootstrap role; ConnString connects as it.
	superuser = "careteam"
	// defaultPort only names the socket file when the server listens on no
	// TCP port.
	defaultPort = 5432
	// confFile holds pgembed's settings; postgresql.conf includes it.
	confFile = "careteam.conf"
	// hbaFile says who may connect how; it replaces initdb's pg_hba.conf.
	hbaFile = "careteam_hba.conf"
	// tlsCertFile and tlsKeyFile are the copies of TCP's certificate and
	// key, which PostgreSQL must own to accept the key.
	tlsCertFile = "careteam_server.crt"
	tlsKeyFile  = "careteam_server.key"
	// maxSocketPath is sizeof(sockaddr_un.sun_path) minus the terminating NUL.
	maxSocketPath = 107
	// defaultStartTimeout bounds Start when ctx has no deadline.
	defaultStartTimeout = 30 * time.Second
	// stopEscalation is how long a fast shutdown may take before Stop
	// switches to an immediate shutdown.
	stopEscalation = 20 * time.Second
	// logTail is how much of the server's stderr is kept for error reports.
	logTail = 8 << 10
)

// includeLine makes careteam.conf mandatory: with include_if_exists a lost
// file would silently bring back the default listen_addresses = 'localhost',
// exposing a trust-authenticated superuser over TCP.
var includeLine = "include = '" + confFile + "'"

// reservedSettings are the settings pgembed controls to keep the server off
// TCP (or on it with TLS only) and its socket where ConnString points.
var reservedSettings = []string{"listen_addresses", "unix_socket_directories", "port",
	"ssl", "ssl_cert_file", "ssl_key_file", "ssl_min_protocol_version", "hba_file", "archive_mode", "archive_command"}

var settingName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.]*$`)

// Config describes the cluster to run.
type Config struct {
	// Dir is the cluster directory (PGDATA). It is created with mode 0700 and
	// initialised with initdb if it holds no PG_VERSION.
	Dir string
	// BinDir holds initdb and postgres. If empty, the directory of postgres
	// on PATH is used when initdb sits next to it, else the highest version
	// under /usr/lib/postgresql/*/bin.
	BinDir string
	// Database is created if missing; ConnString connects to it. Default
	// "careteam".
	Database string
	// Logger receives progress lines. Default slog.Default().
	Logger *slog.Logger
	// Settings are extra postgresql.conf settings, rewritten on every Start
	// so that a restart with different values applies them.
	// The settings pgembed controls are reserved: listen_addresses,
	// unix_socket_directories, port, hba_file, ssl and its files and
	// minimum protocol, archive_mode and archive_command.
	Settings map[string]string
	// TCP, when set, also serves clients over TCP, with TLS and password
	// authentication only. Without it the server listens on no TCP port.
	TCP *TCP
	// WALArchive, when set, is the directory every completed WAL segment is
	// copied to (created if missing), at least once a minute: with a base
	// backup, it restores the cluster to any point in time since.
	WALArchive string
}

// TCP is a TCP listener for clients that reach the server over a network.
type TCP struct {
	// Addr is the host:port to listen on.
	Addr string
	// CertFile and KeyFile hold the server's certificate (chain) and key in
	// PEM; Start copies them into the cluster directory for PostgreSQL.
	CertFile, KeyFile string
	// Password becomes the superuser's password, checked with SCRAM.
	Password string
}

// Server is a running PostgreSQL child process.
type Server struct {
	dir     string
	port    int
	connStr string
	log     *slog.Logger
	cmd     *exec.Cmd
	stderr  *tailBuffer
	lock    *os.File // flock on dir, held until the child has exited

	done    chan struct{} // closed once the child has exited and waitErr is set
	waitErr error

	mu       sync.Mutex
	stopSent time.Time // when SIGINT was sent; zero before Stop

	escalateOnce sync.Once
	finishOnce   sync.Once
	finishErr    error
}

// account is the OS user PostgreSQL runs as.
type account struct {
	cred *syscall.Credential // nil: run as ourselves
	uid  int
	gid  int
	name string
	home string
}

// Start initialises the cluster if needed, starts PostgreSQL, waits until it
// accepts connections and creates cfg.Database if missing. Without a deadline
// on ctx, it gives up after 30 seconds, except while the cluster recovers
// from an archive, which takes as long as the WAL it replays. Only one
// Server may run per Dir; a
// second Start on the same Dir fails until the first is stopped.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	began := time.Now()
	if cfg.Dir == "" {
		return nil, errors.New("pgembed: Config.Dir is required")
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("pgembed: %w", err)
	}
	port, err := cfg.port()
	if err != nil {
		return nil, err
	}
	if sock := socketPath(dir, port); len(sock) > maxSocketPath {
		return nil, fmt.Errorf("pgembed: socket path %s is %d bytes, longer than the %d-byte Unix socket limit; use a shorter Dir",
			sock, len(sock), maxSocketPath)
	}
	archive := ""
	if cfg.WALArchive != "" {
		if archive, err = filepath.Abs(cfg.WALArchive); err != nil {
			return nil, fmt.Errorf("pgembed: %w", err)
		}
	}
	conf, err := renderConf(dir, port, cfg.Settings, cfg.TCP, archive)
	if err != nil {
		return nil, err
	}
	db := cfg.Database
	if db == "" {
		db = "careteam"
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	parent, cancelTimeout := ctx, context.CancelFunc(func() {})
	if _, ok := ctx.Deadline(); !ok {
		ctx, cancelTimeout = context.WithTimeout(ctx, defaultStartTimeout)
	}
	defer cancelTimeout()

	binDir := cfg.BinDir
	if binDir == "" {
		binDir, err = findBinDir()
	} else {
		// Children run in Dir, where a relative path would mean something else.
		binDir, err = filepath.Abs(binDir)
	}
	if err != nil {
		return nil, fmt.Errorf("pgembed: %w", err)
	}
	acct, err := currentAccount()
	if err != nil {
		return nil, err
	}
	lock, err := prepareDir(dir, acct)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			lock.Close()
		}
	}()

	version, err := postgresVersion(ctx, binDir)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(dir, "PG_VERSION")); errors.Is(err, os.ErrNotExist) {
		log.Info("initialising PostgreSQL cluster", "dir", dir, "bin_dir", binDir, "version", version)
		if err := initdb(ctx, binDir, dir, acct, cfg.Settings["fsync"] == "off"); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, fmt.Errorf("pgembed: %w", err)
	}
	if err := writeConf(dir, conf, acct); err != nil {
		return nil, err
	}
	if err := writeAccess(dir, cfg.TCP, acct); err != nil {
		return nil, err
	}
	if archive != "" {
		if err := prepareArchive(archive, acct); err != nil {
			return nil, err
		}
	}
	// Recovery from an archive takes as long as the WAL it replays, so it is
	// bounded only by the caller's deadline.
	if _, err := os.Stat(filepath.Join(dir, "recovery.signal")); err == nil {
		log.Info("PostgreSQL will recover from its archive before it serves", "dir", dir)
		cancelTimeout()
		ctx = parent
	}
	if err := stopOrphan(ctx, dir, log); err != nil {
		return nil, err
	}
	// The socket's lock file is stale once no postmaster runs on dir, but
	// PostgreSQL trusts it while its pid is alive: a base backup copies it,
	// and on the machine it is restored on that pid may be anyone's.
	if stale, _ := filepath.Glob(filepath.Join(dir, ".s.PGSQL.*.lock")); len(stale) > 0 {
		for _, f := range stale {
			if err := os.Remove(f); err != nil {
				return nil, fmt.Errorf("pgembed: %w", err)
			}
		}
	}

	log.Info("starting PostgreSQL", "dir", dir, "version", version)
	s := &Server{
		dir:     dir,
		port:    port,
		connStr: connString(dir, port, db),
		log:     log,
		stderr:  &tailBuffer{},
		lock:    lock,
		done:    make(chan struct{}),
	}
	s.cmd = command(filepath.Join(binDir, "postgres"), acct, dir, "-D", dir)
	s.cmd.Stderr = s.stderr
	s.cmd.SysProcAttr.Pdeathsig = syscall.SIGINT
	if err := startPinned(s.cmd, func(err error) {
		s.waitErr = err
		close(s.done)
	}); err != nil {
		return nil, fmt.Errorf("pgembed: starting postgres: %w", err)
	}
	ok = true

	if err := s.awaitReady(ctx, db, cfg.TCP); err != nil {
		select {
		case <-s.done:
			_ = s.finish()
		default:
			stopCtx, cancel := context.WithTimeout(context.Background(), stopEscalation+10*time.Second)
			defer cancel()
			_ = s.Stop(stopCtx)
		}
		return nil, err
	}
	log.Info("PostgreSQL ready", "dir", dir, "startup", time.Since(began).Round(time.Millisecond))
	if archive != "" {
		go s.watchArchive(archiveCheckEvery)
	}
	return s, nil
}

// ConnString returns a pgx (and libpq) connection URL that reaches the
// configured database as the cluster's superuser over the Unix socket.
func (s *Server) ConnString() string {
	return s.connStr
}

// Stop asks PostgreSQL for a fast shutdown and waits for it to exit,
// escalating to an immediate shutdown after 20 seconds. If ctx ends first,
// Stop returns its error and the server keeps shutting down; Stop may be
// called again. Once the server has exited, Stop releases Dir and further
// calls return the same result.
func (s *Server) Stop(ctx context.Context) error {
	s.mu.Lock()
	if s.stopSent.IsZero() {
		s.stopSent = time.Now()
		s.log.Info("stopping PostgreSQL", "dir", s.dir)
		s.signal(syscall.SIGINT)
	}
	escalate := time.NewTimer(time.Until(s.stopSent.Add(stopEscalation)))
	s.mu.Unlock()
	defer escalate.Stop()

	for {
		select {
		case <-s.done:
			return s.finish()
		case <-escalate.C:
			s.escalateOnce.Do(func() {
				s.log.Warn("PostgreSQL did not stop in time; requesting immediate shutdown", "dir", s.dir, "after", stopEscalation)
				s.signal(syscall.SIGQUIT)
			})
		case <-ctx.Done():
			return fmt.Errorf("pgembed: waiting for PostgreSQL to stop: %w", ctx.Err())
		}
	}
}

func (s *Server) signal(sig os.Signal) {
	// The only possible failure is that the child has already exited, which
	// is what Stop waits for anyway.
	_ = s.cmd.Process.Signal(sig)
}

func (s *Server) finish() error {
	s.finishOnce.Do(func() {
		s.lock.Close()
		if s.waitErr != nil {
			// No log tail here: after startup the log may quote client
			// statements and their data.
			s.finishErr = fmt.Errorf("pgembed: PostgreSQL exited abnormally: %w", s.waitErr)
		}
		if !s.stopSent.IsZero() {
			s.log.Info("PostgreSQL stopped", "dir", s.dir, "shutdown", time.Since(s.stopSent).Round(time.Millisecond))
		}
	})
	return s.finishErr
}

// awaitReady polls until the server accepts a connection, then creates db
// and sets the superuser's password for TCP clients.
func (s *Server) awaitReady(ctx context.Context, db string, tcp *TCP) error {
	var lastErr error
	for {
		select {
		case <-s.done:
			return fmt.Errorf("pgembed: postgres exited during startup (%v); log tail:\n%s", s.waitErr, s.stderr)
		default:
		}
		conn, err := pgx.Connect(ctx, connString(s.dir, s.port, "postgres"))
		if err == nil {
			err = s.awaitPrimary(ctx, conn)
			if err == nil {
				err = ensureDatabase(ctx, conn, db)
			}
			if err == nil && tcp != nil {
				err = setPassword(ctx, conn, tcp.Password)
			}
			conn.Close(context.WithoutCancel(ctx))
			return err
		}
		lastErr = err
		select {
		case <-s.done:
		case <-ctx.Done():
			return fmt.Errorf("pgembed: PostgreSQL not ready: %w (last attempt: %v); log tail:\n%s", ctx.Err(), lastErr, s.stderr)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// archiveCheckEvery is how often a cluster with a WAL archive checks that
// archiving works.
var archiveCheckEvery = 30 * time.Second

// watchArchive warns while WAL archiving fails: PostgreSQL says so only in
// its own log, and meanwhile the segments pile up in pg_wal until the disk
// is full, and the archive no longer restores to the present.
func (s *Server) watchArchive(every time.Duration) {
	var warnedFailures int64
	for {
		select {
		case <-s.done:
			return
		case <-time.After(every):
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		var failures int64
		var failing bool
		var lastFailed *string
		conn, err := pgx.Connect(ctx, connString(s.dir, s.port, "postgres"))
		if err == nil {
			err = conn.QueryRow(ctx, `SELECT failed_count, last_failed_wal,
				last_failed_time IS NOT NULL AND (last_archived_time IS NULL OR last_failed_time > last_archived_time)
				FROM pg_stat_archiver`).Scan(&failures, &lastFailed, &failing)
			conn.Close(ctx)
		}
		cancel()
		switch {
		case err != nil:
			// The server is stopping or down; its owner hears of that.
		case failing && failures > warnedFailures:
			s.log.Warn("WAL archiving is failing: segments wait in pg_wal, which grows, and the archive cannot restore past them",
				"dir", s.dir, "failed_attempts", failures, "segment", lastFailed)
			warnedFailures = failures
		case !failing && warnedFailures > 0:
			s.log.Info("WAL archiving works again", "dir", s.dir)
			warnedFailures = 0
		}
	}
}

// awaitPrimary waits while the server recovers from an archive (it accepts
// read-only connections once consistent), reporting progress, until it has
// reached its recovery target and promoted itself.
func (s *Server) awaitPrimary(ctx context.Context, conn *pgx.Conn) error {
	var reported time.Time
	for {
		var recovering bool
		var replayed, replayTime *string
		if err := conn.QueryRow(ctx, `SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text,
			pg_last_xact_replay_timestamp()::text`).Scan(&recovering, &replayed, &replayTime); err != nil {
			return fmt.Errorf("pgembed: waiting for recovery: %w", err)
		}
		if !recovering {
			return nil
		}
		var paused bool
		if err := conn.QueryRow(ctx, `SELECT pg_get_wal_replay_pause_state() = 'paused'`).Scan(&paused); err != nil {
			return fmt.Errorf("pgembed: waiting for recovery: %w", err)
		}
		if paused {
			return errors.New("pgembed: recovery paused at its target instead of promoting: set recovery_target_action = 'promote' beside the target")
		}
		if time.Since(reported) > 5*time.Second {
			s.log.Info("PostgreSQL is recovering", "dir", s.dir, "replayed_lsn", replayed, "replayed_commit_time", replayTime)
			reported = time.Now()
		}
		select {
		case <-s.done:
			return fmt.Errorf("pgembed: postgres exited during recovery (%v); log tail:\n%s", s.waitErr, s.stderr)
		case <-ctx.Done():
			return fmt.Errorf("pgembed: still recovering: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func ensureDatabase(ctx context.Context, conn *pgx.Conn, db string) error {
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", db).Scan(&exists); err != nil {
		return fmt.Errorf("pgembed: checking for database %q: %w", db, err)
	}
	if exists {
		return nil
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{db}.Sanitize()); err != nil {
		return fmt.Errorf("pgembed: creating database %q: %w", db, err)
	}
	return nil
}

// setPassword sets the superuser's password. ALTER ROLE takes no
// parameters, so the server quotes the password into the statement itself.
func setPassword(ctx context.Context, conn *pgx.Conn, password string) error {
	var stmt string
	err := conn.QueryRow(ctx, `SELECT format('ALTER ROLE %I PASSWORD %L', $1::text, $2::text)`, superuser, password).Scan(&stmt)
	if err == nil {
		_, err = conn.Exec(ctx, stmt)
	}
	if err != nil {
		return fmt.Errorf("pgembed: setting the superuser's password: %w", err)
	}
	return nil
}

// port is the server's port: the TCP one when it listens on TCP, else the
// one that names its socket file.
func (cfg Config) port() (int, error) {
	if cfg.TCP == nil {
		return defaultPort, nil
	}
	t := cfg.TCP
	host, p, err := net.SplitHostPort(t.Addr)
	port, perr := strconv.Atoi(p)
	switch {
	case err != nil || perr != nil || host == "" || port <= 0 || port > 65535:
		return 0, fmt.Errorf("pgembed: TCP address %q is not host:port", t.Addr)
	case t.CertFile == "" || t.KeyFile == "":
		return 0, errors.New("pgembed: TCP needs a certificate and key: it serves TLS only")
	case t.Password == "":
		return 0, errors.New("pgembed: TCP needs the superuser's password")
	}
	return port, nil
}

func socketPath(dir string, port int) string {
	return filepath.Join(dir, ".s.PGSQL."+strconv.Itoa(port))
}

// ConnString is the URL of database db of the cluster in dir, over its
// socket: what careteamd's embedded database answers on, for tools run as
// the same user (or root) beside it. For a cluster that also listens on
// TCP, use Server.ConnString, whose socket is named by the TCP port.
func ConnString(dir, db string) string {
	return connString(dir, defaultPort, db)
}

func connString(dir string, port int, db string) string {
	u := url.URL{
		Scheme: "postgres",
		User:   url.User(superuser),
		Path:   "/" + db,
		// An explicit port keeps a caller's PGPORT from changing the socket
		// file name the client looks for.
		RawQuery: url.Values{"host": {dir}, "port": {strconv.Itoa(port)}}.Encode(),
	}
	return u.String()
}

// renderConf produces careteam.conf. Values are always quoted: PostgreSQL
// accepts quoted strings for every setting type, and quoting keeps a value
// from smuggling in further settings.
func renderConf(dir string, port int, settings map[string]string, tcp *TCP, archive string) (string, error) {
	var b strings.Builder
	b.WriteString("# Written by pgembed on every start; edits here are overwritten.\n")
	listen := ""
	if tcp != nil {
		listen, _, _ = net.SplitHostPort(tcp.Addr)
		fmt.Fprintf(&b, "ssl = on\nssl_cert_file = %s\nssl_key_file = %s\nssl_min_protocol_version = 'TLSv1.2'\n",
			confQuote(tlsCertFile), confQuote(tlsKeyFile))
	}
	fmt.Fprintf(&b, "listen_addresses = %s\nunix_socket_directories = %s\nport = %d\nhba_file = %s\n",
		confQuote(listen), confQuote(dir), port, confQuote(filepath.Join(dir, hbaFile)))
	if archive != "" {
		command, err := archiveCommand(archive)
		if err != nil {
			return "", err
		}
		// archive_timeout: a quiet cluster still archives its last writes
		// within a minute (Settings may change it).
		fmt.Fprintf(&b, "archive_mode = on\narchive_command = %s\narchive_timeout = '60s'\n", confQuote(command))
	}
	names := make([]string, 0, len(settings))
	for name := range settings {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		value := settings[name]
		if !settingName.MatchString(name) {
			return "", fmt.Errorf("pgembed: invalid setting name %q", name)
		}
		if slices.Contains(reservedSettings, strings.ToLower(name)) {
			return "", fmt.Errorf("pgembed: setting %q is managed by pgembed", name)
		}
		if strings.ContainsAny(value, "\x00\r\n") {
			return "", fmt.Errorf("pgembed: setting %q: value contains a line break or NUL", name)
		}
		fmt.Fprintf(&b, "%s = %s\n", name, confQuote(value))
	}
	return b.String(), nil
}

func confQuote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `''`).Replace(s) + "'"
}

// writeConf writes careteam.conf and makes sure postgresql.conf includes it.
func writeConf(dir, conf string, acct account) error {
	if err := writeOwned(dir, confFile, []byte(conf), acct); err != nil {
		return err
	}

	main := filepath.Join(dir, "postgresql.conf")
	current, err := os.ReadFile(main)
	if err != nil {
		return fmt.Errorf("pgembed: %w", err)
	}
	if slices.Contains(strings.Split(string(current), "\n"), includeLine) {
		return nil
	}
	f, err := os.OpenFile(main, os.O_WRONLY|os.O_APPEND|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return fmt.Errorf("pgembed: %w", err)
	}
	_, err = fmt.Fprintf(f, "\n# Added by pgembed; the included file overrides the settings above.\n%s\n", includeLine)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("pgembed: %w", err)
	}
	return nil
}

// archiveCommand copies a segment into dir durably and under its final name
// only once complete. A segment already there with the same bytes (copied
// before a crash kept PostgreSQL from recording it) counts as archived; one
// with other bytes is refused, so a second cluster cannot overwrite it.
func archiveCommand(dir string) (string, error) {
	if strings.ContainsAny(dir, "'%\x00\r\n") {
		return "", fmt.Errorf("pgembed: WAL archive path %q may not hold a quote, a percent sign or a line break", dir)
	}
	seg, part := "'"+dir+"/%f'", "'"+dir+"/%f.part'"
	// The directory is synced too, or a crash could lose the rename of a
	// segment PostgreSQL already counts as archived.
	return fmt.Sprintf("if [ -f %[1]s ]; then cmp -s %%p %[1]s; else cp %%p %[2]s && sync %[2]s && mv %[2]s %[1]s && sync '%[3]s'; fi",
		seg, part, dir), nil
}

// prepareArchive creates the WAL archive directory for acct, which runs
// the archive command. One that others may write to is refused: what they
// put there, a restore would replay into the database.
func prepareArchive(dir string, acct account) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return fmt.Errorf("pgembed: WAL archive: %w", err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("pgembed: WAL archive: %w", err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("pgembed: WAL archive: %w", err)
	}
	if !fi.IsDir() || fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("pgembed: WAL archive %s must be a directory that only its owner may write to (it is %v)", dir, fi.Mode())
	}
	if acct.cred != nil {
		if err := checkTraversable(filepath.Dir(dir), acct); err != nil {
			return err
		}
		if err := os.Chown(dir, acct.uid, acct.gid); err != nil {
			return fmt.Errorf("pgembed: WAL archive: %w", err)
		}
	}
	return nil
}

// writeAccess writes the client authentication file, rewritten on every
// start like careteam.conf, and puts TCP's certificate and key where
// PostgreSQL reads them. The socket, inside the 0700 cluster directory,
// trusts whoever reaches it; TCP takes only TLS with a SCRAM password.
func writeAccess(dir string, tcp *TCP, acct account) error {
	hba := "# Written by pgembed on every start; edits here are overwritten.\n" +
		"local all all trust\nlocal replication all trust\n"
	if tcp != nil {
		hba += "hostssl all all all scram-sha-256\nhostssl replication all all scram-sha-256\n"
		for _, f := range []struct{ from, to string }{{tcp.CertFile, tlsCertFile}, {tcp.KeyFile, tlsKeyFile}} {
			data, err := os.ReadFile(f.from)
			if err != nil {
				return fmt.Errorf("pgembed: %w", err)
			}
			if err := writeOwned(dir, f.to, data, acct); err != nil {
				return err
			}
		}
	}
	return writeOwned(dir, hbaFile, []byte(hba), acct)
}

// writeOwned replaces dir/name with data, owned by acct with mode 0600. The
// directory belongs to the user PostgreSQL runs as, who could have put a
// symbolic link there to a file of root's: the data goes to a new file
// (created exclusively, so never through a link) renamed over the name,
// which replaces a link instead of writing through it.
func writeOwned(dir, name string, data []byte, acct account) error {
	f, err := os.CreateTemp(dir, "."+name+".*")
	if err != nil {
		return fmt.Errorf("pgembed: %w", err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chown(acct.uid, acct.gid)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), filepath.Join(dir, name))
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return fmt.Errorf("pgembed: %w", err)
	}
	return nil
}

// BinDir is where Start finds PostgreSQL's programs when Config.BinDir is
// empty, for running the ones beside them (pg_basebackup) on its clusters.
func BinDir() (string, error) { return findBinDir() }

// findBinDir locates a directory holding both initdb and postgres.
func findBinDir() (string, error) {
	if p, err := exec.LookPath("postgres"); err == nil {
		// PATH often holds symlinks (Debian's /usr/local/bin shims); report
		// and use the real installation directory.
		if real, err := filepath.EvalSymlinks(p); err == nil {
			dir := filepath.Dir(real)
			if isExecutable(filepath.Join(dir, "initdb")) {
				return dir, nil
			}
		}
	}
	candidates, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	best, bestVersion := "", []int(nil)
	for _, dir := range candidates {
		v, ok := parseVersion(filepath.Base(filepath.Dir(dir)))
		if !ok || !isExecutable(filepath.Join(dir, "postgres")) || !isExecutable(filepath.Join(dir, "initdb")) {
			continue
		}
		if best == "" || slices.Compare(v, bestVersion) > 0 {
			best, bestVersion = dir, v
		}
	}
	if best == "" {
		return "", errors.New("no PostgreSQL binaries found (initdb and postgres neither on PATH nor under /usr/lib/postgresql/*/bin); install PostgreSQL or set Config.BinDir")
	}
	return best, nil
}

func parseVersion(s string) ([]int, bool) {
	var v []int
	for part := range strings.SplitSeq(s, ".") {
		n, err := strconv.Atoi(part)
		if err != nil {
			return nil, false
		}
		v = append(v, n)
	}
	return v, true
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

func postgresVersion(ctx context.Context, binDir string) (string, error) {
	out, err := exec.CommandContext(ctx, filepath.Join(binDir, "postgres"), "--version").Output()
	if err != nil {
		return "", fmt.Errorf("pgembed: running %s --version: %w", filepath.Join(binDir, "postgres"), err)
	}
	return strings.TrimSpace(string(out)), nil
}

// currentAccount picks the user PostgreSQL runs as: initdb and postgres
// refuse to run as root, so root hands them to the postgres user.
func currentAccount() (account, error) {
	if os.Geteuid() != 0 {
		a := account{uid: os.Getuid(), gid: os.Getgid()}
		if u, err := user.Current(); err == nil {
			a.name, a.home = u.Username, u.HomeDir
		}
		return a, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return account{}, fmt.Errorf("pgembed: running as root needs an unprivileged \"postgres\" user for PostgreSQL: %w", err)
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return account{}, fmt.Errorf("pgembed: postgres uid %q: %w", u.Uid, err)
	}
	gid, err := strconv.Atoi(u.Gid)
	if err != nil {
		return account{}, fmt.Errorf("pgembed: postgres gid %q: %w", u.Gid, err)
	}
	return account{
		cred: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)},
		uid:  uid,
		gid:  gid,
		name: u.Username,
		home: u.HomeDir,
	}, nil
}

// prepareDir creates dir, locks it against concurrent Servers and, for a
// directory not yet initialised, hands it to acct with mode 0700.
func prepareDir(dir string, acct account) (*os.File, error) {
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, fmt.Errorf("pgembed: %w", err)
	}
	if acct.cred != nil {
		if err := checkTraversable(parent, acct); err != nil {
			return nil, err
		}
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("pgembed: %w", err)
	}

	// flock on the directory itself: initdb needs the directory empty, so
	// there is no room for a lock file, and the kernel drops the lock if we
	// die, so a crash never leaves Dir locked.
	lock, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("pgembed: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("pgembed: %s is already in use by another running pgembed server", dir)
		}
		return nil, fmt.Errorf("pgembed: locking %s: %w", dir, err)
	}

	if _, err := os.Stat(filepath.Join(dir, "PG_VERSION")); err == nil {
		return lock, nil
	}
	// Refuse to take over a directory holding something else: chown and
	// initdb would otherwise act on whatever the caller pointed us at.
	_, err = lock.ReadDir(1)
	switch {
	case err == nil:
		err = fmt.Errorf("%s is not empty and holds no PostgreSQL cluster (no PG_VERSION)", dir)
	case errors.Is(err, io.EOF):
		err = nil
	}
	if err == nil {
		err = os.Chown(dir, acct.uid, acct.gid)
	}
	if err == nil {
		err = os.Chmod(dir, 0o700)
	}
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("pgembed: %w", err)
	}
	return lock, nil
}

// checkTraversable reports the first directory from dir up to / that acct
// cannot search. The child gets no supplementary groups, so only the owner,
// primary group and other bits count.
func checkTraversable(dir string, acct account) error {
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return fmt.Errorf("pgembed: %w", err)
	}
	for p := real; ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("pgembed: %w", err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		var bit os.FileMode
		switch {
		case int(st.Uid) == acct.uid:
			bit = 0o100
		case int(st.Gid) == acct.gid:
			bit = 0o010
		default:
			bit = 0o001
		}
		if fi.Mode().Perm()&bit == 0 {
			return fmt.Errorf("pgembed: directory %s (mode %v) is not traversable by user %q, which PostgreSQL runs as; grant it search permission (e.g. chmod o+x) or choose another Dir",
				p, fi.Mode().Perm(), acct.name)
		}
		if p == "/" {
			return nil
		}
	}
}

func initdb(ctx context.Context, binDir, dir string, acct account, noSync bool) error {
	args := []string{"-D", dir, "-U", superuser, "--no-locale", "-E", "UTF8",
		// Local trust is safe because the socket sits inside the 0700 data
		// directory; TCP is rejected in pg_hba.conf as well as unlistened.
		"--auth-local=trust", "--auth-host=reject"}
	if noSync {
		// The caller already gave up durability with fsync=off.
		args = append(args, "--no-sync")
	}
	cmd := command(filepath.Join(binDir, "initdb"), acct, dir, args...)
	out := &tailBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	// SIGTERM rather than SIGKILL, on cancellation and on our death, lets
	// initdb empty the directory, so the next Start initialises afresh
	// instead of finding a half-built cluster.
	cmd.SysProcAttr.Pdeathsig = syscall.SIGTERM
	exited := make(chan error, 1)
	if err := startPinned(cmd, func(err error) { exited <- err }); err != nil {
		return fmt.Errorf("pgembed: starting initdb: %w", err)
	}
	select {
	case err := <-exited:
		if err != nil {
			return fmt.Errorf("pgembed: initdb failed: %w; output:\n%s", err, out)
		}
		return nil
	case <-ctx.Done():
		_ = cmd.Process.Signal(syscall.SIGTERM)
		<-exited
		return fmt.Errorf("pgembed: initdb interrupted: %w", ctx.Err())
	}
}

// command prepares a PostgreSQL program to run as acct with a minimal
// environment: PG* variables from our environment (PGPORT, PGDATA, ...)
// would otherwise change how the server is set up.
func command(path string, acct account, dir string, args ...string) *exec.Cmd {
	cmd := exec.Command(path, args...)
	home := acct.home
	if home == "" {
		home = dir
	}
	cmd.Env = []string{"HOME=" + home, "LC_ALL=C", "PATH=/usr/bin:/bin"}
	if acct.name != "" {
		cmd.Env = append(cmd.Env, "USER="+acct.name)
	}
	if tz, ok := os.LookupEnv("TZ"); ok {
		cmd.Env = append(cmd.Env, "TZ="+tz)
	}
	// Our working directory may be unreadable by the postgres user.
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: acct.cred,
		// A terminal's Ctrl-C goes to the whole foreground process group;
		// PostgreSQL must instead stay up until we have drained our own
		// clients and call Stop.
		Setpgid: true,
	}
	return cmd
}

// startPinned starts cmd from a goroutine locked to its OS thread and keeps
// that goroutine blocked in Wait for the child's lifetime, then calls onExit.
// Linux delivers the parent-death signal when the forking thread exits, not
// the process, and the Go runtime may retire an idle thread at any time.
func startPinned(cmd *exec.Cmd, onExit func(error)) error {
	started := make(chan error, 1)
	go func() {
		// Never unlocked: the thread is discarded when this goroutine ends,
		// by which time the child is gone.
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		onExit(cmd.Wait())
	}()
	return <-started
}

// stopOrphan stops a postmaster still running on dir without a pgembed owner,
// such as one left by an older build that lacked the parent-death signal. We
// hold the directory lock, so no live Server owns it. A stale postmaster.pid
// naming a dead or unrelated process is left for PostgreSQL to handle.
func stopOrphan(ctx context.Context, dir string, log *slog.Logger) error {
	data, err := os.ReadFile(filepath.Join(dir, "postmaster.pid"))
	if err != nil {
		return nil
	}
	first, _, _ := strings.Cut(string(data), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid <= 0 {
		return nil
	}
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return fmt.Errorf("pgembed: %w", err)
	}
	if !IsPostmasterOn(pid, real) {
		return nil
	}
	log.Warn("stopping orphaned PostgreSQL left running on the cluster directory", "dir", dir, "pid", pid)
	if err := syscall.Kill(pid, syscall.SIGINT); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("pgembed: stopping orphaned postgres (pid %d): %w", pid, err)
	}
	escalate := time.After(stopEscalation)
	for IsPostmasterOn(pid, real) {
		select {
		case <-escalate:
			_ = syscall.Kill(pid, syscall.SIGQUIT)
		case <-ctx.Done():
			return fmt.Errorf("pgembed: waiting for orphaned postgres (pid %d) to stop: %w", pid, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// IsPostmasterOn reports whether pid is a live postgres process working in
// dir. The postmaster chdirs into its data directory, which guards against
// the pid having been reused by an unrelated process. A zombie has no cwd.
func IsPostmasterOn(pid int, dir string) bool {
	proc := "/proc/" + strconv.Itoa(pid)
	exe, err := os.Readlink(proc + "/exe")
	if err != nil || !strings.HasPrefix(filepath.Base(exe), "postgres") {
		return false
	}
	cwd, err := os.Readlink(proc + "/cwd")
	return err == nil && cwd == dir
}

// tailBuffer keeps the last logTail bytes written to it, for error reports.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - logTail; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.buf))
}
