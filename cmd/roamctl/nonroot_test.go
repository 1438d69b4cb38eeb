package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"roam/api"
)

// TestPrivilegedNonRootDaemon (issue 10, point 11): roamd --ports memory
// started by a user without root is administered by that user: its
// roamctl creates subnets and groups. Root still administers it, and
// another uid that may connect (through the socket's group) does not.
func TestPrivilegedNonRootDaemon(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run roamd and roamctl under other uids")
	}
	const user, group, other = 65534, 65534, 65533 // nobody, nogroup, a stranger
	dir, err := os.MkdirTemp("", "roamd-nonroot-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	if err := os.Chown(dir, user, group); err != nil {
		t.Fatal(err)
	}
	d := &daemon{t: t, dir: dir, socket: filepath.Join(dir, "run", "roamd.sock"), log: &bytes.Buffer{}}
	d.args = []string{"--state-dir", filepath.Join(dir, "state"), "--socket", d.socket, "--socket-group", "", "--ports", "memory",
		"--public-cidr", "198.51.100.0/24", "--public-ip", "198.51.100.1", "--uplink", "tap:uplink0"}
	d.client = api.NewClient(d.socket)
	d.cmd = exec.Command(filepath.Join(bin, "roamd"), d.args...)
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: user, Gid: group}}
	d.cmd.Stderr = d.log
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.kill)
	if err := d.client.WaitReady(t.Context(), 10*time.Second); err != nil {
		t.Fatalf("roamd as uid %d not ready: %v\n%s", user, err, d.log)
	}
	run := func(uid uint32, args ...string) (map[string]any, result) {
		t.Helper()
		r := d.ctl(uid, args...)
		var out map[string]any
		json.Unmarshal([]byte(r.stdout), &out)
		return out, r
	}
	sub, r := run(user, "subnet", "create", "10.3.0.0/24")
	if r.code != 0 {
		t.Fatalf("subnet create as uid %d (roamd's own): exit %d %s%s", user, r.code, r.stdout, r.stderr)
	}
	if _, r := run(user, "sg", "create", "--name", "web"); r.code != 0 {
		t.Errorf("sg create as uid %d: exit %d %s", user, r.code, r.stdout)
	}
	if _, r := run(user, "instance", "create", "vm1", "--port", "tap:a"); r.code != 0 {
		t.Errorf("instance create as uid %d: exit %d %s", user, r.code, r.stdout)
	}
	// Another uid in the socket's group (roamd's own group: the socket is
	// roamd's, mode 0660) may connect but does not administer.
	r = runAs(t, d, other, group, "subnet", "create", "10.4.0.0/24")
	var out map[string]any
	json.Unmarshal([]byte(r.stdout), &out)
	if r.code == 0 || field(out, "error", "code") != api.CodeUnauthorized {
		t.Errorf("subnet create as uid %d: exit %d %s, want Unauthorized", other, r.code, r.stdout)
	}
	if _, r := run(0, "subnet", "delete", sub["id"].(string)); r.code != 0 {
		t.Errorf("subnet delete as root: exit %d %s", r.code, r.stdout)
	}
	evs := d.list("events")
	var uids []float64
	for _, e := range evs {
		if e["operation"] == "CreateSubnet" && e["result"] == "ok" {
			uids = append(uids, e["uid"].(float64))
		}
	}
	if len(uids) != 1 || uids[0] != user {
		t.Errorf("ok CreateSubnet events by uids %v, want one by %d (the audit log names the real uid)", uids, user)
	}
	d.kill() // the log is read once roamd is gone
	if !strings.Contains(d.log.String(), "admin_uid=65534") {
		t.Errorf("roamd's log does not name its administrator uid:\n%s", d.log)
	}
}

// runAs runs roamctl against d as uid:gid.
func runAs(t *testing.T, d *daemon, uid, gid uint32, args ...string) result {
	t.Helper()
	cmd := exec.Command(filepath.Join(bin, "roamctl"), append([]string{"--socket", d.socket, "--output", "json"}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}}
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	r := result{stdout: o.String(), stderr: e.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("roamctl %v: %v", args, err)
	}
	return r
}
