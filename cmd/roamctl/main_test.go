package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"roam/api"
	"roam/internal/netlab"
)

// bin holds roamd and roamctl, built once for the package's tests, in a
// directory every uid can read.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "roamctl-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Chmod(dir, 0o755)
	bin = dir
	if _, _, err := netlab.Build(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// daemon is a roamd process.
type daemon struct {
	t      testing.TB
	dir    string
	socket string
	args   []string
	cmd    *exec.Cmd
	log    *bytes.Buffer
	client *api.Client
}

func newDaemon(t testing.TB, extra ...string) *daemon {
	t.Helper()
	dir, err := os.MkdirTemp("", "roamd-test-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	d := &daemon{t: t, dir: dir, socket: filepath.Join(dir, "run", "roamd.sock")}
	d.args = append([]string{"--state-dir", filepath.Join(dir, "state"), "--socket", d.socket,
		"--public-cidr", "198.51.100.0/24", "--public-ip", "198.51.100.1", "--uplink", "tap:uplink0", "--socket-group", "", "--ports", "memory"}, extra...)
	d.client = api.NewClient(d.socket)
	t.Cleanup(func() {
		d.kill()
		d.client.Close()
		os.RemoveAll(dir)
	})
	d.start()
	return d
}

func (d *daemon) start() {
	d.t.Helper()
	d.log = &bytes.Buffer{}
	d.cmd = exec.Command(filepath.Join(bin, "roamd"), d.args...)
	d.cmd.Stderr = d.log
	if err := d.cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.client.WaitReady(ctx, 10*time.Second); err != nil {
		d.t.Fatalf("roamd not ready: %v\n%s", err, d.log)
	}
}

// kill sends SIGKILL and waits.
func (d *daemon) kill() {
	if d.cmd != nil && d.cmd.Process != nil && d.cmd.ProcessState == nil {
		d.cmd.Process.Kill()
		d.cmd.Wait()
	}
	d.client.Close()
}

// stop sends SIGTERM and waits for a clean exit.
func (d *daemon) stop() error {
	d.cmd.Process.Signal(syscall.SIGTERM)
	err := d.cmd.Wait()
	d.client.Close()
	return err
}

type result struct {
	code   int
	stdout string
	stderr string
}

// ctl runs roamctl against d with --output json (unless table is asked),
// as uid when uid > 0.
func (d *daemon) ctl(uid uint32, args ...string) result {
	d.t.Helper()
	full := append([]string{"--socket", d.socket, "--output", "json"}, args...)
	if len(args) > 0 && args[0] == "--output" {
		full = append([]string{"--socket", d.socket}, args...)
	}
	cmd := exec.Command(filepath.Join(bin, "roamctl"), full...)
	if uid > 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		d.t.Fatalf("roamctl %v: %v", args, err)
	}
	return r
}

// ok runs roamctl and decodes its JSON answer into a map.
func (d *daemon) ok(args ...string) map[string]any {
	d.t.Helper()
	r := d.ctl(0, args...)
	if r.code != 0 {
		d.t.Fatalf("roamctl %s: exit %d: %s%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &m); err != nil {
		d.t.Fatalf("roamctl %s: output is not a JSON object: %v\n%s", strings.Join(args, " "), err, r.stdout)
	}
	return m
}

func (d *daemon) list(args ...string) []map[string]any {
	d.t.Helper()
	r := d.ctl(0, args...)
	if r.code != 0 {
		d.t.Fatalf("roamctl %s: exit %d: %s%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	var l []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &l); err != nil {
		d.t.Fatalf("roamctl %s: output is not a JSON list: %v\n%s", strings.Join(args, " "), err, r.stdout)
	}
	return l
}
