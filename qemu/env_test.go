package qemu

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"roam/internal/daemon"
)

// env is roamd (in process, real port drivers) with its uplink in an
// outside namespace that holds 198.51.100.254/24, one subnet 10.0.0.0/24,
// and roamctl built from this tree.
type env struct {
	t       *testing.T
	dir     string
	sock    string
	pubns   string
	roamctl string
	subnet  string
	sg      string
	cfg     daemon.Config
	d       *daemon.Daemon
}

const outsideIP = "198.51.100.254"

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func newEnv(t *testing.T, tag string) *env {
	t.Helper()
	needQEMU(t)
	// Short paths: unix socket paths have at most 107 bytes.
	dir, err := os.MkdirTemp("", "rq")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	e := &env{t: t, dir: dir, sock: filepath.Join(dir, "s.sock"), pubns: fmt.Sprintf("rq%s%d", tag, os.Getpid())}
	run(t, "ip", "netns", "add", e.pubns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", e.pubns).Run() })
	e.roamctl = filepath.Join(dir, "roamctl")
	run(t, "go", "build", "-o", e.roamctl, "roam/cmd/roamctl")
	cfg := daemon.DefaultConfig()
	cfg.StateDir, cfg.Socket, cfg.SocketGroup, cfg.NoSync = filepath.Join(dir, "state"), e.sock, "", true
	cfg.Uplink, cfg.PublicCIDR, cfg.PublicIP = "tap:up0@"+e.pubns, "198.51.100.0/24", "198.51.100.1"
	os.MkdirAll(cfg.StateDir, 0o700)
	d, err := daemon.Start(cfg, daemon.Options{})
	if err != nil {
		t.Fatalf("roamd: %v", err)
	}
	e.d, e.cfg = d, cfg
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		e.d.Shutdown(ctx)
	})
	run(t, "ip", "-n", e.pubns, "addr", "add", outsideIP+"/24", "dev", "up0")
	run(t, "ip", "-n", e.pubns, "link", "set", "up0", "up")
	run(t, "ip", "-n", e.pubns, "link", "set", "lo", "up")
	e.subnet = e.ctl("subnet", "create", "10.0.0.0/24")["id"].(string)
	// A new group admits no ingress: this one admits everything.
	e.sg = e.ctl("sg", "create", "--name", "open")["id"].(string)
	e.ctl("sg", "rule", "add", e.sg)
	return e
}

// restart stops roamd and starts it again on the same state.
func (e *env) restart() {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.d.Shutdown(ctx); err != nil {
		e.t.Fatalf("roamd shutdown: %v", err)
	}
	d, err := daemon.Start(e.cfg, daemon.Options{})
	if err != nil {
		e.t.Fatalf("roamd restart: %v", err)
	}
	e.d = d
}

// ctl runs roamctl --output json and returns the object it printed.
func (e *env) ctl(args ...string) map[string]any {
	e.t.Helper()
	m, err := e.try(args...)
	if err != nil {
		e.t.Fatal(err)
	}
	return m
}

func (e *env) try(args ...string) (map[string]any, error) {
	cmd := exec.Command(e.roamctl, append([]string{"--socket", e.sock, "--output", "json"}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("roamctl %s: %v: %s%s", strings.Join(args, " "), err, out.String(), errb.String())
	}
	var m map[string]any
	if err := json.Unmarshal(out.Bytes(), &m); err != nil {
		return nil, fmt.Errorf("roamctl %s: %v: %s", strings.Join(args, " "), err, out.String())
	}
	return m, nil
}

// eni creates a record and returns its id, primary IP and MAC.
func (e *env) eni() (id, ip, mac string) {
	m := e.ctl("eni", "create", "--subnet", e.subnet, "--sg", e.sg)
	return m["id"].(string), m["private_ip"].(string), m["mac"].(string)
}

// eip allocates a public IP and associates it with the record.
func (e *env) eip(eni string) string {
	a := e.ctl("eip", "allocate")
	e.ctl("eip", "associate", a["id"].(string), "--eni", eni)
	return a["public_ip"].(string)
}

// outside runs a command in the outside namespace.
func (e *env) outside(args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", e.pubns}, args...)...).CombinedOutput()
	return string(out), err
}

// waitAddr polls the guest until dev has an IPv4 address and returns it
// with the time it took.
func waitAddr(t *testing.T, ctx context.Context, vm *VM, dev string) (string, time.Duration) {
	t.Helper()
	start := time.Now()
	for {
		if a := vm.Addr(ctx, dev); a != "" {
			return a, time.Since(start)
		}
		select {
		case <-ctx.Done():
			ev, _ := vm.Run(context.Background(), "cat /run/events; ip addr")
			t.Fatalf("%s: no address on %s: %v\n%s", vm.Name, dev, ctx.Err(), ev)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func mustRun(t *testing.T, ctx context.Context, vm *VM, cmd string) string {
	t.Helper()
	out, err := vm.Run(ctx, cmd)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
