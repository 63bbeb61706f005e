package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/careteam/careteam/client"
	"github.com/careteam/careteam/devtoken"
	pb "github.com/careteam/careteam/proto/careteam/v1"
)

// Exit codes, so scripts can tell outcomes apart.
const (
	exitOK           = 0
	exitError        = 1 // any other error
	exitUsage        = 2 // bad command line
	exitInvalid      = 3 // the server refused the input (INVALID_ARGUMENT)
	exitNotFound     = 4
	exitExists       = 5 // ALREADY_EXISTS
	exitPrecondition = 6 // FAILED_PRECONDITION: a rule or state refused it
	exitDenied       = 7 // PERMISSION_DENIED or UNAUTHENTICATED
	exitConflict     = 8 // ABORTED: stale etag or concurrent change
	exitUnavailable  = 9 // UNAVAILABLE or DEADLINE_EXCEEDED
)

// env is what a command runs with.
type env struct {
	ctx    context.Context
	out    io.Writer
	format string
	// dataDir is careteamd's data directory as the global flag gives it;
	// empty means careteamd's default.
	dataDir string
	dial    func() (*client.Client, error)
}

// action runs a command and returns what to print (nil prints nothing).
type action func(e *env, args []string) (proto.Message, error)

// command is one CLI command: its words, a summary, and the function that
// declares its flags and returns its action.
type command struct {
	path    string
	args    string
	summary string
	setup   func(fs *flag.FlagSet) action
}

var commands []command

func register(cs ...command) { commands = append(commands, cs...) }

// errRefused reports a dry run the gate refuses, so scripts see exit code
// 6 like a refused start.
var errRefused = errors.New("the gate refuses: a session could not start")

// errBroken reports an audit trail that does not verify.
var errBroken = errors.New("the audit trail does not verify")

type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	global := flag.NewFlagSet("careteam", flag.ContinueOnError)
	global.SetOutput(io.Discard)
	addr := global.String("addr", envOr(getenv, "CARETEAM_ADDR", "127.0.0.1:50051"), "careteamd address (CARETEAM_ADDR)")
	ca := global.String("ca", getenv("CARETEAM_CA"), "speak TLS, trusting the CA certificates in this PEM file instead of the system's (CARETEAM_CA)")
	cert := global.String("cert", getenv("CARETEAM_CERT"), "speak TLS with this PEM client certificate (mutual TLS); without a token, calls are made as its subject (CARETEAM_CERT)")
	key := global.String("key", getenv("CARETEAM_KEY"), "the client certificate's PEM private key (CARETEAM_KEY)")
	token := global.String("token", getenv("CARETEAM_TOKEN"), "bearer token (CARETEAM_TOKEN)")
	as := global.String("as", getenv("CARETEAM_AS"), "dev mode: mint a token for this subject from the data directory's dev key (CARETEAM_AS)")
	dataDir := global.String("data-dir", getenv("CARETEAM_DATA_DIR"), "careteamd's data directory, for dev tokens (CARETEAM_DATA_DIR; default as careteamd's)")
	purpose := global.String("purpose", getenv("CARETEAM_PURPOSE"), "purpose of use: TREATMENT (default), PAYMENT, OPERATIONS or EMERGENCY (CARETEAM_PURPOSE)")
	reason := global.String("emergency-reason", "", "why this is an emergency, required with --purpose EMERGENCY: a physician reads outside their care team, never writes, and the audit trail flags it")
	output := global.String("o", "text", "output: text or json")
	timeout := global.Duration("timeout", 30*time.Second, "deadline of each call")
	if err := global.Parse(args); err != nil || global.NArg() == 0 {
		printUsage(stderr, global)
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if *output != "text" && *output != "json" {
		fmt.Fprintln(stderr, "careteam: -o must be text or json")
		return exitUsage
	}
	cmd, rest := findCommand(global.Args())
	if cmd == nil {
		fmt.Fprintf(stderr, "careteam: unknown command %q\n\n", strings.Join(global.Args(), " "))
		printUsage(stderr, global)
		return exitUsage
	}
	fs := flag.NewFlagSet("careteam "+cmd.path, flag.ContinueOnError)
	fs.SetOutput(stderr)
	act := cmd.setup(fs)
	own := map[string]bool{}
	fs.VisitAll(func(f *flag.Flag) { own[f.Name] = true })
	// Global flags may follow the command too ("careteam org list -o
	// json"); a command's own flag of the same name wins after it.
	global.VisitAll(func(f *flag.Flag) {
		if !own[f.Name] {
			fs.Var(f.Value, f.Name, f.Usage)
		}
	})
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: careteam %s [flags] %s\n\n%s\n\n", cmd.path, cmd.args, cmd.summary)
		printFlags(stderr, fs, func(name string) bool { return own[name] })
		fmt.Fprintf(stderr, "\nGlobal flags (run 'careteam -h') may be given before or after the command.\n")
	}
	positional, err := parseInterspersed(fs, rest)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if len(positional) > 0 && cmd.args == "" {
		fmt.Fprintf(stderr, "careteam %s: unexpected arguments %q\n", cmd.path, positional)
		return exitUsage
	}
	var conn *client.Client
	e := &env{ctx: ctx, out: stdout, format: *output, dataDir: *dataDir, dial: func() (*client.Client, error) {
		if conn != nil {
			return conn, nil
		}
		if (*cert == "") != (*key == "") {
			return nil, usagef("give --cert and --key together")
		}
		tok, err := resolveToken(*token, *as, *dataDir)
		if err != nil {
			return nil, err
		}
		transport := client.WithPlaintext()
		if *ca != "" || *cert != "" {
			cfg, err := client.TLSFromFiles(*ca, *cert, *key)
			if err != nil {
				return nil, err
			}
			transport = client.WithTLS(cfg)
		}
		opts := []client.Option{transport, client.WithTimeout(*timeout)}
		if *purpose != "" || *reason != "" {
			opts = append(opts, client.WithPurpose(strings.ToUpper(*purpose), *reason))
		}
		if tok != "" {
			opts = append(opts, client.WithToken(client.StaticToken(tok)))
		}
		conn, err = client.Dial(*addr, opts...)
		if errors.Is(err, client.ErrPlaintextNotLoopback) {
			return nil, fmt.Errorf("%w; give --ca (and --cert and --key for mutual TLS) to speak TLS", err)
		}
		return conn, err
	}}
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	msg, err := act(e, positional)
	if err == nil && msg != nil {
		err = printMessage(e, msg)
	}
	if err != nil {
		return reportError(stderr, cmd.path, err)
	}
	return exitOK
}

// parseInterspersed parses flags given before or after positional
// arguments ("referral submit referrals/ID --etag 3"), which the flag
// package alone stops at.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return positional, nil
		}
		positional = append(positional, args[0])
		args = args[1:]
	}
}

// printFlags prints the flags of fs that show selects, as
// flag.PrintDefaults does.
func printFlags(w io.Writer, fs *flag.FlagSet, show func(string) bool) {
	fs.VisitAll(func(f *flag.Flag) {
		if !show(f.Name) {
			return
		}
		name, usage := flag.UnquoteUsage(f)
		fmt.Fprintf(w, "  -%s", f.Name)
		if name != "" {
			fmt.Fprintf(w, " %s", name)
		}
		fmt.Fprintf(w, "\n    \t%s", strings.ReplaceAll(usage, "\n", "\n    \t"))
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
			fmt.Fprintf(w, " (default %q)", f.DefValue)
		}
		fmt.Fprintln(w)
	})
}

func envOr(getenv func(string) string, key, def string) string {
	if v := getenv(key); v != "" {
		return v
	}
	return def
}

// resolveToken returns the explicit token, or mints a dev token for --as.
func resolveToken(token, as, dataDir string) (string, error) {
	if token != "" || as == "" {
		return token, nil
	}
	return mintDevToken(dataDir, as, time.Hour)
}

// mintDevToken signs a token with the dev key in careteamd's data
// directory (its default when dataDir is empty).
func mintDevToken(dataDir, subject string, ttl time.Duration) (string, error) {
	if dataDir == "" {
		d, err := devtoken.DefaultDataDir()
		if err != nil {
			return "", err
		}
		dataDir = d
	}
	return devtoken.Mint(dataDir, subject, ttl)
}

// findCommand matches the longest command path at the start of words.
func findCommand(words []string) (*command, []string) {
	var best *command
	n := 0
	for i := range commands {
		parts := strings.Fields(commands[i].path)
		if len(parts) > len(words) || len(parts) <= n {
			continue
		}
		match := true
		for j, p := range parts {
			if words[j] != p {
				match = false
				break
			}
		}
		if match {
			best, n = &commands[i], len(parts)
		}
	}
	if best == nil {
		return nil, nil
	}
	return best, words[n:]
}

func printUsage(w io.Writer, global *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: careteam [global flags] COMMAND [flags]\n\nGlobal flags:\n")
	global.SetOutput(w)
	global.PrintDefaults()
	fmt.Fprintf(w, "\nCommands:\n")
	sorted := append([]command(nil), commands...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].path < sorted[j].path })
	for _, c := range sorted {
		fmt.Fprintf(w, "  %-28s %s\n", c.path, c.summary)
	}
	fmt.Fprintf(w, "\nRun 'careteam COMMAND -h' for a command's flags.\n")
}

// reportError prints an error readably, with the status details that tell
// the user what to fix, and returns the exit code.
func reportError(w io.Writer, cmd string, err error) int {
	var u usageError
	if errors.As(err, &u) {
		fmt.Fprintf(w, "careteam %s: %s\n", cmd, u.msg)
		return exitUsage
	}
	if errors.Is(err, errRefused) {
		fmt.Fprintf(w, "careteam %s: %v\n", cmd, err)
		return exitPrecondition
	}
	if errors.Is(err, errBroken) {
		fmt.Fprintf(w, "careteam %s: %v\n", cmd, err)
		return exitError
	}
	st, ok := status.FromError(err)
	if !ok {
		fmt.Fprintf(w, "careteam %s: %v\n", cmd, err)
		return exitError
	}
	// Violations listed in the details say it better than the message.
	msg := st.Message()
	for _, d := range st.Details() {
		switch d.(type) {
		case *errdetails.BadRequest:
			msg = "invalid request"
		case *errdetails.PreconditionFailure:
			msg = "failed precondition"
		}
	}
	code := st.Code().String()
	if r := client.Reason(err); r != pb.ErrorReason_ERROR_REASON_UNSPECIFIED {
		code += " (" + strings.TrimPrefix(r.String(), "ERROR_REASON_") + ")"
	}
	fmt.Fprintf(w, "careteam %s: %s: %s\n", cmd, code, msg)
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				fmt.Fprintf(w, "  field %s: %s\n", v.GetField(), v.GetDescription())
			}
		case *errdetails.PreconditionFailure:
			for _, v := range d.GetViolations() {
				fmt.Fprintf(w, "  %s (%s): %s\n", v.GetType(), v.GetSubject(), v.GetDescription())
			}
		}
	}
	switch st.Code() {
	case codes.InvalidArgument, codes.OutOfRange:
		return exitInvalid
	case codes.NotFound:
		return exitNotFound
	case codes.AlreadyExists:
		return exitExists
	case codes.FailedPrecondition:
		return exitPrecondition
	case codes.PermissionDenied, codes.Unauthenticated:
		return exitDenied
	case codes.Aborted:
		return exitConflict
	case codes.Unavailable, codes.DeadlineExceeded:
		return exitUnavailable
	}
	return exitError
}

// updateMask is the update mask of the flags given: each flag names the
// field it changes in pathOf; at least one must be given.
func updateMask(fs *flag.FlagSet, pathOf map[string]string) ([]string, error) {
	var paths []string
	fs.Visit(func(f *flag.Flag) {
		if p, ok := pathOf[f.Name]; ok && !slices.Contains(paths, p) {
			paths = append(paths, p)
		}
	})
	if len(paths) == 0 {
		return nil, usagef("nothing to update")
	}
	return paths, nil
}

// optionalBool parses the value of a true-or-false flag; empty is false.
func optionalBool(name, value string) (bool, error) {
	if value == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(value)
	if err != nil {
		return false, usagef("--%s: want true or false", name)
	}
	return b, nil
}
