package faults

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/careteam/careteam/server/internal/pgembed"
)

// haCluster is PostgreSQL as the README's production recipe runs it: a
// primary and a synchronous standby kept by pg_auto_failover, whose monitor
// promotes the standby when the primary dies. Each of the three (monitor,
// node1, node2) is one `pg_autoctl create ... --run` process, run as the
// postgres user on loopback, with trust authentication (loopback only, and
// the test's own throwaway cluster).
type haCluster struct {
	t       *testing.T
	autoctl string
	env     []string
	attr    func() *syscall.SysProcAttr
	base    string
	monitor *haNode
	nodes   []*haNode
}

type haNode struct {
	name   string
	killed bool
	port   int
	dir    string
	cmd    *exec.Cmd
	logs   *logBuffer
	exited chan struct{}
}

// monitorTuning makes the monitor notice a dead primary as fast as
// pg_auto_failover allows (its defaults take about 50 s): health checks
// every 0.5 s, one retry, a node unhealthy after 1 s.
var monitorTuning = map[string]string{
	"health_check_period":               "500",
	"health_check_timeout":              "500",
	"health_check_max_retries":          "1",
	"health_check_retry_delay":          "200",
	"node_considered_unhealthy_timeout": "1000",
	"primary_demote_timeout":            "500",
	"startup_grace_period":              "1",
}

// requireAutoctl finds pg_autoctl, installed by .ci/failover.sh from
// Debian's postgresql-15-auto-failover. Without it the failover test cannot
// run: it says so, and fails in CI, which installs it.
func requireAutoctl(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("pg_autoctl")
	if err != nil {
		msg := "pg_autoctl is not installed: run .ci/failover.sh (as root) for Debian's postgresql-15-auto-failover"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return path
}

func startHACluster(t *testing.T, ctx context.Context) *haCluster {
	t.Helper()
	autoctl := requireAutoctl(t)
	bin, err := pgembed.BinDir()
	if err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(testDir(t), "ha")
	xdg := []string{"config", "data", "run"}
	for _, d := range append([]string{""}, xdg...) {
		if err := os.MkdirAll(filepath.Join(base, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	c := &haCluster{t: t, autoctl: autoctl, base: base,
		attr: func() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setsid: true} },
		// pg_autoctl keeps its configuration and state under XDG
		// directories, keyed by the data directory: keep them here.
		env: []string{"HOME=" + base, "LANG=C.UTF-8", "PATH=" + bin + ":/usr/bin:/bin",
			"XDG_CONFIG_HOME=" + filepath.Join(base, "config"), "XDG_DATA_HOME=" + filepath.Join(base, "data"),
			"XDG_RUNTIME_DIR=" + filepath.Join(base, "run")},
	}
	if os.Geteuid() == 0 {
		// pg_autoctl and PostgreSQL refuse to run as root.
		uid, gid := postgresIDs(t)
		for _, d := range append([]string{""}, xdg...) {
			if err := os.Chown(filepath.Join(base, d), uid, gid); err != nil {
				t.Fatal(err)
			}
		}
		c.attr = func() *syscall.SysProcAttr {
			return &syscall.SysProcAttr{Setsid: true, Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
		}
	}
	t.Cleanup(c.stop)
	common := []string{"--hostname", "127.0.0.1", "--listen", "127.0.0.1", "--auth", "trust", "--no-ssl",
		"--pgctl", filepath.Join(bin, "pg_ctl")}
	began := time.Now()

	c.monitor = c.run("monitor", append([]string{"create", "monitor"}, common...))
	c.await(ctx, "the monitor", func() bool { return c.monitorSQL(ctx, `SELECT 1 FROM pgautofailover.formation`) == nil })
	monitorURL := (&url.URL{Scheme: "postgres", User: url.User("autoctl_node"),
		Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(c.monitor.port)), Path: "/pg_auto_failover", RawQuery: "sslmode=disable"}).String()
	node := func(name string) *haNode {
		return c.run(name, append([]string{"create", "postgres", "--name", name, "--monitor", monitorURL, "--dbname", "careteam"}, common...))
	}
	// node1 registers first, so that it is the primary.
	c.nodes = append(c.nodes, node("node1"))
	c.await(ctx, "node1 alone", func() bool { return c.state(ctx, "node1") == "single" })
	for _, n := range []*haNode{c.monitor, c.nodes[0]} {
		// pg_autoctl sizes shared_buffers for a machine of its own, from
		// its next restart: the standby starts with node1's auto.conf and
		// this size. fsync off: the test kills processes, never the
		// machine, whose page cache keeps the WAL. The checkpoint makes
		// the standby's base backup start at once.
		c.exec(ctx, n, `ALTER SYSTEM SET shared_buffers = '128MB'`, `ALTER SYSTEM SET fsync = off`, `SELECT pg_reload_conf()`, `CHECKPOINT`)
	}
	c.nodes = append(c.nodes, node("node2"))
	c.await(ctx, "a primary and a secondary", func() bool {
		return c.state(ctx, "node1") == "primary" && c.state(ctx, "node2") == "secondary"
	})
	var tune []string
	for name, value := range monitorTuning {
		tune = append(tune, fmt.Sprintf("ALTER SYSTEM SET pgautofailover.%s = %s", name, value))
	}
	c.exec(ctx, c.monitor, append(tune, `SELECT pg_reload_conf()`)...)

	var standbys, commit string
	conn := c.connect(ctx, c.nodes[0], "postgres")
	defer conn.Close(context.Background())
	if err := conn.QueryRow(ctx, `SELECT current_setting('synchronous_standby_names'), current_setting('synchronous_commit')`).Scan(&standbys, &commit); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(standbys, "ANY 1 (") || commit != "on" {
		t.Fatalf("replication is not synchronous: synchronous_standby_names %q, synchronous_commit %q", standbys, commit)
	}
	t.Logf("pg_auto_failover cluster ready in %v: synchronous_standby_names %q", time.Since(began).Round(time.Millisecond), standbys)
	return c
}

// run starts `pg_autoctl <args> --run` for a node of its own on a free port.
func (c *haCluster) run(name string, args []string) *haNode {
	c.t.Helper()
	n := &haNode{name: name, port: freePort(c.t), dir: filepath.Join(c.base, name), logs: &logBuffer{}, exited: make(chan struct{})}
	args = append(args, "--pgdata", n.dir, "--pgport", strconv.Itoa(n.port), "--run")
	n.cmd = exec.Command(c.autoctl, args...)
	n.cmd.Env, n.cmd.Dir, n.cmd.SysProcAttr = c.env, c.base, c.attr()
	n.cmd.Stdout, n.cmd.Stderr = n.logs, n.logs
	if err := n.cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	go func() {
		_ = n.cmd.Wait()
		close(n.exited)
	}()
	return n
}

func freePort(t *testing.T) int {
	t.Helper()
	_, port, _ := net.SplitHostPort(freeAddr(t))
	p, _ := strconv.Atoi(port)
	return p
}

func (c *haCluster) await(ctx context.Context, what string, cond func() bool) {
	c.t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			c.t.Fatalf("waiting for %s: %v\n%s", what, ctx.Err(), c.logs())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// nodeURL reaches database db on the node as the postgres superuser.
func nodeURL(port int, db string) string {
	return (&url.URL{Scheme: "postgres", User: url.User("postgres"), Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		Path: "/" + db, RawQuery: "sslmode=disable&connect_timeout=2"}).String()
}

// url is the multi-host URL careteamd is given: it connects to whichever
// node is the writable primary.
func (c *haCluster) url() string {
	var hosts []string
	for _, n := range c.nodes {
		hosts = append(hosts, net.JoinHostPort("127.0.0.1", strconv.Itoa(n.port)))
	}
	return "postgres://postgres@" + strings.Join(hosts, ",") + "/careteam?sslmode=disable&connect_timeout=2&target_session_attrs=read-write"
}

func (c *haCluster) connect(ctx context.Context, n *haNode, db string) *pgx.Conn {
	c.t.Helper()
	conn, err := pgx.Connect(ctx, nodeURL(n.port, db))
	if err != nil {
		c.t.Fatalf("%s: %v", n.name, err)
	}
	return conn
}

func (c *haCluster) exec(ctx context.Context, n *haNode, statements ...string) {
	c.t.Helper()
	conn := c.connect(ctx, n, "postgres")
	defer conn.Close(context.Background())
	for _, s := range statements {
		if _, err := conn.Exec(ctx, s); err != nil {
			c.t.Fatalf("%s: %s: %v", n.name, s, err)
		}
	}
}

func (c *haCluster) monitorSQL(ctx context.Context, sql string, dest ...any) error {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	conn, err := pgx.Connect(cctx, nodeURL(c.monitor.port, "pg_auto_failover"))
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	row := conn.QueryRow(cctx, sql)
	if len(dest) == 0 {
		var one int
		return row.Scan(&one)
	}
	return row.Scan(dest...)
}

// state is the node's state as it last reported it to the monitor, when
// the monitor also assigns it that state.
func (c *haCluster) state(ctx context.Context, name string) string {
	var state string
	if c.monitorSQL(ctx, `SELECT reportedstate FROM pgautofailover.node WHERE nodename = '`+name+`' AND reportedstate = goalstate`, &state) != nil {
		return ""
	}
	return state
}

// primary waits for the node the monitor has as primary, alone or with
// its standby, and returns it.
func (c *haCluster) primary(ctx context.Context) *haNode {
	c.t.Helper()
	var name string
	// A dead primary still shows the state it last reported; its goal
	// moves on (demoted).
	c.await(ctx, "a primary", func() bool {
		return c.monitorSQL(ctx, `SELECT nodename FROM pgautofailover.node
			WHERE reportedstate = goalstate AND goalstate IN ('primary', 'wait_primary', 'single')`, &name) == nil
	})
	for _, n := range c.nodes {
		if n.name == name {
			return n
		}
	}
	c.t.Fatalf("no node is named %q", name)
	return nil
}

// kill is the death of the node's machine: pg_autoctl, PostgreSQL and
// every PostgreSQL process (each backend is in a session of its own) get
// SIGKILL, the postmaster stopped first so that it forks no process the
// kill would miss. Nothing restarts or finishes anything. A node is killed
// once: its pids may belong to others afterwards.
func (c *haCluster) kill(n *haNode) {
	if n.killed {
		return
	}
	n.killed = true
	pm := postmasterPID(n.dir)
	if !pgembed.IsPostmasterOn(pm, n.dir) {
		pm = 0
	}
	if pm > 0 {
		_ = syscall.Kill(pm, syscall.SIGSTOP)
	}
	var pids []int
	select {
	case <-n.exited: // its process group may be another's by now
	default:
		pids = append(pids, -n.cmd.Process.Pid)
	}
	if pm > 0 {
		pids = append(append(pids, pm), childrenOf(pm)...)
	}
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	select {
	case <-n.exited:
	case <-time.After(10 * time.Second):
		c.t.Errorf("pg_autoctl of %s did not exit after SIGKILL", n.name)
	}
}

func (c *haCluster) stop() {
	for _, n := range append(c.nodes, c.monitor) {
		if n != nil {
			c.kill(n)
		}
	}
	if c.t.Failed() {
		c.t.Logf("pg_auto_failover's logs:\n%s", c.logs())
	}
}

func (c *haCluster) logs() string {
	var b strings.Builder
	for _, n := range append([]*haNode{c.monitor}, c.nodes...) {
		if n != nil {
			s := n.logs.String()
			if len(s) > 6000 {
				s = "...\n" + s[len(s)-6000:]
			}
			fmt.Fprintf(&b, "=== %s\n%s\n", n.name, s)
		}
	}
	return b.String()
}

// postmasterPID reads the postmaster's pid from its data directory; 0 if
// it has none.
func postmasterPID(dir string) int {
	data, err := os.ReadFile(filepath.Join(dir, "postmaster.pid"))
	if err != nil {
		return 0
	}
	first, _, _ := strings.Cut(string(data), "\n")
	pid, _ := strconv.Atoi(strings.TrimSpace(first))
	return pid
}

// childrenOf lists the processes whose parent is pid.
func childrenOf(pid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// The fields after the command's closing parenthesis: state, ppid.
		i := strings.LastIndexByte(string(stat), ')')
		if fields := strings.Fields(string(stat[i+1:])); i > 0 && len(fields) > 1 && fields[1] == strconv.Itoa(pid) {
			out = append(out, child)
		}
	}
	return out
}
