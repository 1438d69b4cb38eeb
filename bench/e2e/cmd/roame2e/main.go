// Command roame2e runs roam's side-by-side end-to-end benchmark (see package
// e2e and bench/e2e/README.md): `roame2e run [flags]`. `roame2e report
// FILE.json [DIR]` renders a saved summary again. `roame2e helper NAME` is
// the traffic helper that the benchmark starts inside namespaces.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"roam/bench/e2e"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "helper" {
		if err := e2e.Helper(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "roame2e helper:", err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) > 2 && os.Args[1] == "report" {
		// roame2e report FILE.json [OUTDIR]: render a summary again (after
		// a change to the table or the picture).
		if err := report(os.Args[2], os.Args[3:]); err != nil {
			fmt.Fprintln(os.Stderr, "roame2e report:", err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "run" {
		os.Args = append(os.Args[:1], os.Args[2:]...)
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "roame2e:", err)
		os.Exit(1)
	}
}

func run() error {
	d := e2e.DefaultDurations
	runs := flag.Int("runs", 3, "runs; the report gives medians")
	arms := flag.String("arms", "roam,kernel,ovs", "arms to measure, in order")
	roamd := flag.String("roamd", "bin/roamd", "roamd binary")
	roamctl := flag.String("roamctl", "bin/roamctl", "roamctl binary")
	out := flag.String("out", "bench/results", "directory for the JSON, Markdown and PNG results")
	flag.DurationVar(&d.TCP, "tcp-dur", d.TCP, "each iperf3 run")
	flag.DurationVar(&d.UDP, "udp-dur", d.UDP, "the 64-byte UDP blast")
	flag.DurationVar(&d.Conn, "conn-dur", d.Conn, "the new-connections test")
	flag.DurationVar(&d.Ping, "ping-dur", d.Ping, "ping under load")
	flag.DurationVar(&d.Reassign, "reassign-dur", d.Reassign, "the sequenced stream around a reassign")
	debug := flag.Bool("debug", false, "print every command")
	noTSO := flag.Bool("ovs-no-tso", false, "run OVS without userspace TSO (offloads off on its veths)")
	label := flag.String("label", "", "what differs from a plain run (e.g. a patched roamd): named in the report and the file names; latest.* is left alone")
	hold := flag.Duration("hold", 0, "pause this long after each arm's setup (debugging)")
	keep := flag.Bool("keep-tmp", false, "keep the temp dir (daemon logs)")
	flag.Parse()
	self, err := os.Executable()
	if err != nil {
		return err
	}
	abs := func(p string) string {
		a, err := filepath.Abs(p)
		if err != nil {
			return p
		}
		return a
	}
	cfg := e2e.Config{Runs: *runs, Arms: strings.Split(*arms, ","), Roamd: abs(*roamd), Roamctl: abs(*roamctl),
		OutDir: *out, Self: self, Durs: d, Debug: *debug, KeepTmp: *keep, Hold: *hold, Label: *label, OVSNoTSO: *noTSO, Log: os.Stderr}
	sum, err := e2e.Run(cfg)
	if err != nil {
		return err
	}
	return write(sum, cfg.OutDir)
}

func report(in string, rest []string) error {
	sum, err := e2e.ReadSummary(in)
	if err != nil {
		return err
	}
	dir := filepath.Dir(in)
	if len(rest) > 0 {
		dir = rest[0]
	}
	return write(sum, dir)
}

// write writes the summary's JSON and Markdown to dir, and the picture of
// its reassigns with roame2e-plot (its own module: gonum stays out of
// roam's), found beside this binary or in PATH.
func write(sum *e2e.Summary, dir string) error {
	plotter, perr := findPlotter()
	if perr == nil && len(e2e.PictureArms(sum)) > 0 {
		sum.Pictures = sum.PictureNames()[:1]
	}
	files, err := sum.Write(dir)
	fmt.Print(sum.Table())
	for _, f := range files {
		fmt.Println("wrote", f)
	}
	if err != nil {
		return err
	}
	if perr != nil {
		fmt.Fprintln(os.Stderr, "roame2e: picture:", perr)
		return nil
	}
	if len(sum.Pictures) > 0 && len(files) > 0 {
		out, err := exec.Command(plotter, files[0], dir).Output()
		for _, f := range strings.Fields(string(out)) {
			fmt.Println("wrote", f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "roame2e: picture:", err)
		}
	}
	return nil
}

// findPlotter finds roame2e-plot beside this binary, then in PATH.
func findPlotter() (string, error) {
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), "roame2e-plot")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath("roame2e-plot"); err == nil {
		return p, nil
	}
	return "", errors.New("roame2e-plot not found beside roame2e or in PATH (make bench-e2e builds it from bench/e2e/plot): no picture")
}
