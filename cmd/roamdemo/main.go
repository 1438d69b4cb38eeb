package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"roam/internal/netlab"
)

func main() {
	if err := run(); err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "roamdemo:", err)
		os.Exit(1)
	}
}

func run() error {
	dir := "bin"
	if exe, err := os.Executable(); err == nil {
		dir = filepath.Dir(exe)
	}
	var cfg netlab.DemoConfig
	fs := flag.NewFlagSet("roamdemo", flag.ContinueOnError)
	fs.StringVar(&cfg.Roamd, "roamd", filepath.Join(dir, "roamd"), "roamd binary")
	fs.StringVar(&cfg.Roamctl, "roamctl", filepath.Join(dir, "roamctl"), "roamctl binary")
	fs.IntVar(&cfg.Rate, "rate", 1000, "UDP datagrams per second")
	fs.DurationVar(&cfg.Before, "before", 0, "traffic before the reassign (default 4s)")
	fs.DurationVar(&cfg.After, "after", 0, "traffic after the reassign (default 4s)")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return netlab.Demo(ctx, os.Stdout, cfg)
}
