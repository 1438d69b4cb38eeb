package e2e

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// Config is one benchmark invocation.
type Config struct {
	Runs     int
	Arms     []string // of "roam", "kernel", "ovs"
	Roamd    string
	Roamctl  string
	OutDir   string // bench/results
	Self     string // this binary, for the helpers
	Durs     Durations
	Debug    bool
	KeepTmp  bool
	Label    string        // set: results are named after it and latest.* is left alone
	Hold     time.Duration // pause after each arm's setup, for debugging
	OVSNoTSO bool          // run OVS without userspace TSO, offloads off on the veths
	Log      io.Writer
}

// DefaultDurations keep RUNS=3 over three arms under about ten minutes.
var DefaultDurations = Durations{TCP: 3 * time.Second, UDP: 3 * time.Second, Conn: 3 * time.Second, Ping: 2 * time.Second, Reassign: 4 * time.Second}

// Run builds the topology once per arm and run, measures, tears it down,
// and writes the summary. Namespaces and children are removed on every
// exit path, including SIGINT and SIGTERM.
func Run(cfg Config) (*Summary, error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("bench-e2e needs root (namespaces, TAP, nftables)")
	}
	env, err := NewEnv(cfg)
	if err != nil {
		return nil, err
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	stop := make(chan struct{})
	go func() {
		select {
		case s := <-sig:
			fmt.Fprintf(cfg.Log, "bench-e2e: %v: cleaning up\n", s)
			env.Close(cfg.KeepTmp)
			os.Exit(130)
		case <-stop:
		}
	}()
	defer func() {
		close(stop)
		signal.Stop(sig)
		env.Close(cfg.KeepTmp)
	}()

	sum := &Summary{
		Date:      time.Now().UTC().Format(time.RFC3339),
		Label:     cfg.Label,
		Runs:      cfg.Runs,
		Arms:      cfg.Arms,
		Host:      hostInfo(),
		Durations: map[string]string{"tcp": cfg.Durs.TCP.String(), "udp": cfg.Durs.UDP.String(), "conn": cfg.Durs.Conn.String(), "ping": cfg.Durs.Ping.String(), "reassign": cfg.Durs.Reassign.String()},
	}
	for run := 1; run <= cfg.Runs; run++ {
		var results []*ArmResult
		for _, name := range cfg.Arms {
			fmt.Fprintf(cfg.Log, "== run %d/%d: %s\n", run, cfg.Runs, name)
			r, steps := runArm(env, cfg, name)
			results = append(results, r)
			if name == "roam" && len(steps) > 0 && r.Errors != nil {
				sum.RoamSteps = steps
			}
			for k, v := range r.Errors {
				fmt.Fprintf(cfg.Log, "  %s: %s failed: %s\n", name, k, v)
			}
		}
		sum.PerRun = append(sum.PerRun, results)
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		sum.Host["loadavg_at_end"] = strings.TrimSpace(string(b))
	}
	sum.summarize()
	return sum, nil
}

func newArm(cfg Config, name string) (Arm, error) {
	switch name {
	case "kernel":
		return kernelArm{}, nil
	case "ovs":
		return &ovsArm{TSO: !cfg.OVSNoTSO}, nil
	case "roam":
		return &roamArm{}, nil
	}
	return nil, fmt.Errorf("unknown arm %q (want roam, kernel or ovs)", name)
}

// runArm creates the namespaces, sets the arm up, measures and removes it
// all again, whatever failed.
func runArm(env *Env, cfg Config, name string) (*ArmResult, []string) {
	arm, err := newArm(cfg, name)
	r := &ArmResult{Arm: name}
	if err != nil {
		r.fail("setup", err)
		return r, nil
	}
	defer func() {
		arm.Teardown(env)
		if err := env.Reset(); err != nil {
			env.logf("cleanup: %v", err)
		}
	}()
	for _, ns := range []string{"pub", "vma", "vmb"} {
		if err := env.AddNS(ns); err != nil {
			r.fail("setup", err)
			return r, nil
		}
	}
	// The client may open many connections: widen its port range.
	env.Run("pub", "sysctl", "-qw", "net.ipv4.ip_local_port_range=1024 65000")
	if err := arm.Setup(env); err != nil {
		r.fail("setup", err)
		r.Method = arm.ReassignMethod()
		if ra, ok := arm.(*roamArm); ok {
			return r, ra.Steps
		}
		return r, nil
	}
	if cfg.Hold > 0 {
		fmt.Fprintf(cfg.Log, "  holding %s for %v (debugging); temp dir %s\n", name, cfg.Hold, env.Dir)
		time.Sleep(cfg.Hold)
	}
	r = measureArm(env, arm, cfg.Durs)
	if ra, ok := arm.(*roamArm); ok {
		r.Notes = append(ra.Notes, r.Notes...)
		if r.Errors != nil {
			// What roamd said while it ran helps whoever reads the report.
			if log := env.RoamdLog(); log != "" {
				r.Notes = append(r.Notes, "roamd log (tail): "+tail(log, 800))
			}
		}
		return r, ra.Steps
	}
	return r, nil
}

func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

func hostInfo() map[string]string {
	h := map[string]string{"cpus": fmt.Sprint(runtime.NumCPU()), "go": runtime.Version()}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		h["kernel"] = strings.TrimSpace(string(b))
	}
	if out, err := exec.Command("ovs-vswitchd", "--version").Output(); err == nil {
		h["ovs"] = strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
	}
	if out, err := exec.Command("iperf3", "--version").Output(); err == nil {
		h["iperf3"] = strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		h["loadavg_at_start"] = strings.TrimSpace(string(b))
	}
	return h
}
