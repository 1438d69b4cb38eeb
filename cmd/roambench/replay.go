package main

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime/pprof"

	"github.com/urfave/cli/v2"

	"roam/bench"
)

func replayCommand() *cli.Command {
	return &cli.Command{
		Name:      "replay",
		Usage:     "replay pcap/pcapng files through the in-process data path on the captures' clock",
		ArgsUsage: "FILE...",
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "inside", Usage: "inside `CIDR` (repeatable; default the RFC 1918 ranges)"},
			&cli.StringFlag{Name: "public-ip", Value: bench.DefaultPublicIP.String(), Usage: "the gateway's public `IP` for PAT"},
			&cli.BoolFlag{Name: "one-to-one", Usage: "give each inside host a 1:1 public IP from --eip-pool"},
			&cli.StringFlag{Name: "eip-pool", Value: bench.DefaultEIPPool.String(), Usage: "`CIDR` of the 1:1 public IPs"},
			&cli.IntFlag{Name: "loop", Value: 1, Usage: "replay each file `N` times, shifted by its duration"},
			&cli.IntFlag{Name: "batch", Value: 64, Usage: "most frames per batch"},
			&cli.IntFlag{Name: "max-flows", Usage: "conntrack limit (default the switch's)"},
			&cli.BoolFlag{Name: "strict-sg", Usage: "no security group on records (no unsolicited ingress) instead of an allow-all one"},
			&cli.BoolFlag{Name: "json", Usage: "print JSON instead of a table"},
			&cli.StringFlag{Name: "cpuprofile", Usage: "write a CPU profile of the replay to `FILE`"},
		},
		Action: func(c *cli.Context) error {
			o, err := replayOptions(c)
			if err != nil {
				return err
			}
			if c.NArg() == 0 {
				return errors.New("replay: no capture files given")
			}
			if p := c.String("cpuprofile"); p != "" {
				f, err := os.Create(p)
				if err != nil {
					return err
				}
				defer f.Close()
				if err := pprof.StartCPUProfile(f); err != nil {
					return err
				}
				defer pprof.StopCPUProfile()
			}
			var results []*bench.Result
			var errs []error
			for _, f := range c.Args().Slice() {
				cp, err := bench.ReadFile(f)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				r, err := bench.Replay(cp, o)
				if err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", f, err))
					continue
				}
				results = append(results, r)
			}
			if len(results) > 0 {
				rep := bench.NewReport(results)
				if c.Bool("json") {
					err = rep.WriteJSON(c.App.Writer)
				} else {
					err = rep.WriteTable(c.App.Writer)
				}
				if err != nil {
					return err
				}
			}
			return errors.Join(errs...)
		},
	}
}

// replayOptions turns the flags into bench.ReplayOptions.
func replayOptions(c *cli.Context) (bench.ReplayOptions, error) {
	o := bench.ReplayOptions{
		OneToOne:  c.Bool("one-to-one"),
		Loop:      c.Int("loop"),
		BatchSize: c.Int("batch"),
		MaxFlows:  c.Int("max-flows"),
		StrictSG:  c.Bool("strict-sg"),
	}
	for _, s := range c.StringSlice("inside") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return o, fmt.Errorf("--inside %q: %w", s, err)
		}
		o.Inside = append(o.Inside, p)
	}
	var err error
	if o.PublicIP, err = netip.ParseAddr(c.String("public-ip")); err != nil {
		return o, fmt.Errorf("--public-ip %q: %w", c.String("public-ip"), err)
	}
	if o.EIPPool, err = netip.ParsePrefix(c.String("eip-pool")); err != nil {
		return o, fmt.Errorf("--eip-pool %q: %w", c.String("eip-pool"), err)
	}
	if o.Loop < 1 {
		return o, fmt.Errorf("--loop %d: want at least 1", o.Loop)
	}
	if o.BatchSize < 1 {
		return o, fmt.Errorf("--batch %d: want at least 1", o.BatchSize)
	}
	return o, nil
}
