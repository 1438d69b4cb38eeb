package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/urfave/cli/v2"
)

// e2eCommand is `roambench e2e`: the side-by-side end-to-end benchmark of
// bench/e2e (roam, the kernel with nftables, Open vSwitch). It builds to
// bin/roame2e, with its plotter bin/roame2e-plot (a module of its own, to
// keep gonum out of roam's go.mod), by `make bench-e2e`; the benchmark
// starts its traffic helpers as `roame2e helper ...` inside namespaces, so
// this command runs that binary with the arguments given, e.g.
// `roambench e2e run --runs 3 --roamd bin/roamd --roamctl bin/roamctl --out bench/results`.
func e2eCommand() *cli.Command {
	return &cli.Command{
		Name:            "e2e",
		Usage:           "run the side-by-side end-to-end benchmark (bench/e2e; needs root): roam vs the kernel vs Open vSwitch",
		ArgsUsage:       "[roame2e arguments...]",
		SkipFlagParsing: true,
		Action: func(c *cli.Context) error {
			bin, err := findE2E()
			if err != nil {
				return err
			}
			cmd := exec.Command(bin, c.Args().Slice()...)
			cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, c.App.Writer, c.App.ErrWriter
			return cmd.Run()
		},
	}
}

// findE2E finds roame2e beside roambench, then in PATH.
func findE2E() (string, error) {
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), "roame2e")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath("roame2e"); err == nil {
		return p, nil
	}
	return "", errors.New(fmt.Sprint("roame2e not found beside roambench or in PATH: build it with `make bench-e2e` ",
		"(or `go build -o bin/ ./bench/e2e/cmd/roame2e`)"))
}
