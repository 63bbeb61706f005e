// Command careteam is the careteam CLI, built on package client: it covers
// the demo flow and every RPC the server offers, prints readable text by
// default and JSON with -o json, and exits with a code that tells usage
// errors, not-found, refused preconditions and permission errors apart.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}
