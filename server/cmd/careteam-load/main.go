// Command careteam-load measures careteamd under a realistic load through
// the Go client, and measures floors that run none of careteamd's code in
// the same run, so that each result is also a ratio that holds on any
// machine: raw pgx transactions and primary-key reads of the shapes of
// careteamd's calls on careteamd's database (server/internal/loadfloor), and a
// bare gRPC call to a server in the load tool itself.
//
// It sets itself up on an empty server in dev mode (practices, people
// with dev tokens, patients, consents, clearances, referrals), runs the
// mix (open or closed loop) with WatchEvents streams open, then each hot
// RPC alone beside the floors (sampling the database's lock waits during
// StartSession's), and prints a table per phase with
// HdrHistogram latencies; --json writes the same for machines. --scale,
// --watchers and --soak add the large-table, many-streams and long-run
// measurements. See the README's Performance section.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "careteam-load:", err)
		os.Exit(1)
	}
}
