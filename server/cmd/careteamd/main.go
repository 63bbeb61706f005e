// Command careteamd is the careteam gRPC server. Run without a database URL
// it starts its own PostgreSQL in its data directory; without an identity
// provider it makes a development signing key (local use only).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/careteam/careteam/devtoken"
	"github.com/careteam/careteam/server/internal/app"
	"github.com/careteam/careteam/server/internal/config"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := realMain(ctx); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "careteamd:", err)
		os.Exit(1)
	}
}

func realMain(ctx context.Context) error {
	defaultDataDir, err := devtoken.DefaultDataDir()
	if err != nil {
		return err
	}
	args, prune := os.Args[1:], false
	if len(args) > 0 && args[0] == "prune-events" {
		args, prune = args[1:], true
	}
	cfg, err := config.Parse(args, os.Getenv, defaultDataDir, os.Stderr)
	if err != nil {
		return err
	}
	log, err := newLogger(cfg)
	if err != nil {
		return err
	}
	slog.SetDefault(log)
	if prune {
		return app.PruneEvents(ctx, cfg, log)
	}
	a, err := app.New(ctx, cfg, log, app.Options{})
	if err != nil {
		return err
	}
	return a.Run(ctx)
}

func newLogger(cfg *config.Config) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
}
