package qemu

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"roam/internal/netlab"
)

// env is a real roamd (a process built from this tree, real port
// drivers) with its uplink in an outside namespace that holds
// 198.51.100.254/24, one subnet 10.0.0.0/24, driven by roamctl: a
// netlab.Lab.
type env struct {
	t      *testing.T
	lab    *netlab.Lab
	dir    string
	pubns  string
	subnet string
	sg     string
	flags  []string
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

// bins are roamd and roamctl, built once for the package's tests.
var (
	binOnce              sync.Once
	binRoamd, binRoamctl string
	binErr               error
)

func newEnv(t *testing.T, tag string) *env {
	t.Helper()
	needQEMU(t)
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "roamqemu-bin-")
		if err != nil {
			binErr = err
			return
		}
		binRoamd, binRoamctl, binErr = netlab.Build(dir)
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	// Short paths: unix socket paths have at most 107 bytes.
	lab, err := netlab.New(netlab.Config{Roamd: binRoamd, Roamctl: binRoamctl, Prefix: netlab.UniquePrefix("rq" + tag), TempPattern: "rq"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("roamd log:\n%s", lab.RoamdLog())
		}
		if err := lab.Close(false); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	if err := lab.AddNS("pub"); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, lab: lab, dir: lab.Dir, pubns: lab.NS("pub")}
	// On SIGTERM roamd shuts down (no handover): restart starts afresh
	// from the store.
	e.flags = []string{"--uplink", "tap:up0@" + e.pubns, "--public-cidr", "198.51.100.0/24", "--public-ip", "198.51.100.1", "--keep-flows=false"}
	if err := lab.StartRoamd(e.flags...); err != nil {
		t.Fatalf("roamd: %v", err)
	}
	run(t, "ip", "-n", e.pubns, "addr", "add", outsideIP+"/24", "dev", "up0")
	run(t, "ip", "-n", e.pubns, "link", "set", "up0", "up")
	e.subnet = e.ctl("subnet", "create", "10.0.0.0/24")["id"].(string)
	// A new group admits no ingress: this one admits everything.
	e.sg = e.ctl("sg", "create", "--name", "open")["id"].(string)
	e.ctl("sg", "rule", "add", e.sg)
	return e
}

// restart stops roamd and starts it again on the same state.
func (e *env) restart() {
	e.t.Helper()
	if err := e.lab.Roamd().Stop(); err != nil {
		e.t.Fatalf("roamd shutdown: %v", err)
	}
	if err := e.lab.StartRoamd(e.flags...); err != nil {
		e.t.Fatalf("roamd restart: %v", err)
	}
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
	var m map[string]any
	err := e.lab.CtlInto(&m, args...)
	return m, err
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
	return e.lab.Run("pub", args[0], args[1:]...)
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
