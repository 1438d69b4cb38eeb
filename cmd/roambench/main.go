// Command roambench replays captures through roam's in-process data path and
// generates deterministic captures for it. See DESIGN.md, "Surfaces".
package main

import (
	"fmt"
	"io"
	"net/netip"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"roam/bench"
)

func main() {
	if err := newApp(os.Stdout, os.Stderr).Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "roambench:", err)
		os.Exit(1)
	}
}

// newApp wires the commands to package bench.
func newApp(stdout, stderr io.Writer) *cli.App {
	return &cli.App{
		Name:      "roambench",
		Usage:     "replay captures through roam's data path; generate captures",
		Writer:    stdout,
		ErrWriter: stderr,
		Commands:  []*cli.Command{replayCommand(), genCommand(), e2eCommand()},
		// Errors are printed once, by main.
		ExitErrHandler: func(*cli.Context, error) {},
	}
}

func genCommand() *cli.Command {
	return &cli.Command{
		Name:  "gen",
		Usage: "write a deterministic capture (IMIX sizes, many flows, new-flow storms)",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "pcap file to write (- for stdout)"},
			&cli.StringFlag{Name: "testdata", Usage: "instead of one capture, regenerate the captures kept in this testdata `DIR`"},
			&cli.Uint64Flag{Name: "seed", Value: 1, Usage: "PRNG seed"},
			&cli.IntFlag{Name: "flows", Value: 1000, Usage: "number of flows"},
			&cli.StringFlag{Name: "inside", Value: "10.0.0.0/16", Usage: "`CIDR` of the inside hosts"},
			&cli.IntFlag{Name: "hosts", Usage: "number of inside hosts (default min(flows, 256))"},
			&cli.IntFlag{Name: "endpoints", Usage: "distinct inside (address, port) endpoints (default min(flows, 16384))"},
			&cli.StringFlag{Name: "proto", Value: "mix", Usage: "tcp, udp or mix"},
			&cli.IntFlag{Name: "rounds", Value: 1, Usage: "data exchanges per flow after setup"},
			&cli.BoolFlag{Name: "storm", Usage: "new-flow storm: one SYN or first datagram per flow"},
			&cli.IntFlag{Name: "size", Usage: "fixed frame size on the wire, FCS included (default IMIX 7:4:1 of 64/594/1518)"},
			&cli.IntFlag{Name: "burst", Value: 64, Usage: "consecutive frames per direction"},
			&cli.DurationFlag{Name: "gap", Value: time.Microsecond, Usage: "time between frames"},
		},
		Action: func(c *cli.Context) error {
			if dir := c.String("testdata"); dir != "" {
				return bench.WriteTestdata(dir)
			}
			if c.NArg() > 0 {
				return fmt.Errorf("unexpected argument %q (the output file is given with --output)", c.Args().First())
			}
			inside, err := netip.ParsePrefix(c.String("inside"))
			if err != nil {
				return fmt.Errorf("--inside: %w", err)
			}
			o := bench.GenOptions{
				Seed:      c.Uint64("seed"),
				Flows:     c.Int("flows"),
				Inside:    inside,
				Hosts:     c.Int("hosts"),
				Endpoints: c.Int("endpoints"),
				Proto:     c.String("proto"),
				Rounds:    c.Int("rounds"),
				Storm:     c.Bool("storm"),
				Size:      c.Int("size"),
				Burst:     c.Int("burst"),
				Gap:       c.Duration("gap"),
			}
			if o.Rounds == 0 {
				o.Rounds = -1
			}
			out := c.String("output")
			if out == "" {
				return fmt.Errorf("--output is required (- for stdout)")
			}
			if out == "-" {
				return bench.WritePcap(c.App.Writer, o)
			}
			f, err := os.Create(out)
			if err != nil {
				return err
			}
			if err := bench.WritePcap(f, o); err != nil {
				f.Close()
				os.Remove(out)
				return err
			}
			return f.Close()
		},
	}
}
