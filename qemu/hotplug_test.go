package qemu

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

// TestPrivilegedQEMUHotplug boots two VMs without a NIC, each with a QMP
// monitor that their instances name (--qmp). Attaching a record hot-plugs a
// NIC with the record's MAC into the running VM, which configures it by
// DHCP; a reassign moves the NIC itself to the other VM; a detach removes
// it.
func TestPrivilegedQEMUHotplug(t *testing.T) {
	e := newEnv(t, "h")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	h1, h2 := bootPair(t, ctx, Config{Name: "h1", Dir: e.dir, QMP: true}, Config{Name: "h2", Dir: e.dir, QMP: true})
	e.ctl("instance", "create", "h1", "--qmp", h1.QMPPath)
	e.ctl("instance", "create", "h2", "--qmp", h2.QMPPath)
	id, ip, mac := e.eni()

	start := time.Now()
	e.ctl("eni", "attach", id, "--instance", "h1")
	attached := time.Since(start)
	got, _ := waitAddr(t, ctx, h1, "eth0")
	t.Logf("h1: eni attach (hot-plug) took %v; address %s by DHCP %v after the attach began",
		attached.Round(time.Millisecond), got, time.Since(start).Round(time.Millisecond))
	if got != ip {
		t.Fatalf("h1: DHCP gave %s, want %s", got, ip)
	}
	if m := mustRun(t, ctx, h1, "cat /sys/class/net/eth0/address"); m[:17] != mac {
		t.Fatalf("h1: hot-plugged NIC has MAC %q, want the record's %s", m, mac)
	}
	mustRun(t, ctx, h1, "ping -c 1 -W 2 10.0.0.1 || ping -c 1 -W 2 10.0.0.1")
	show := e.ctl("instance", "show", "h1")
	pt := show["ports"].([]any)[0].(map[string]any)
	if pt["hotplug"] != true || pt["status"] != "up" || pt["eni_id"] != id {
		t.Fatalf("instance show h1: port %v, want a hot-plug port, up, with %s", pt, id)
	}
	if want := "stream:" + filepath.Join(e.dir, "roam-h1-0.sock"); pt["spec"] != want {
		t.Fatalf("instance show h1: port spec %v, want %s", pt["spec"], want)
	}

	start = time.Now()
	e.ctl("eni", "reassign", id, "--instance", "h2")
	moved := time.Since(start)
	got, _ = waitAddr(t, ctx, h2, "eth0")
	t.Logf("reassign h1 -> h2 (hot-plug into h2, unplug from h1) took %v; h2 has %s %v after it began",
		moved.Round(time.Millisecond), got, time.Since(start).Round(time.Millisecond))
	if got != ip {
		t.Fatalf("h2: DHCP gave %s, want %s", got, ip)
	}
	if _, err := h1.WaitFor(ctx, "! test -e /sys/class/net/eth0", 100*time.Millisecond); err != nil {
		t.Fatalf("h1 still has its NIC after the reassign: %v", err)
	}
	mustRun(t, ctx, h2, "ping -c 1 -W 2 10.0.0.1 || ping -c 1 -W 2 10.0.0.1")
	if ports := e.ctl("instance", "show", "h1")["ports"].([]any); len(ports) != 0 {
		t.Fatalf("instance show h1 after the reassign: ports %v, want none", ports)
	}

	// QEMU 7.2's stream netdev does not reconnect: after a restart roamd
	// replaces the hot-plugged NIC, and the guest configures it again.
	start = time.Now()
	e.restart()
	if _, err := h2.WaitFor(ctx, "test $(grep -c 'bound eth0' /run/events) -ge 2", 100*time.Millisecond); err != nil {
		t.Fatalf("h2 after a roamd restart: the NIC was not re-plugged and configured again: %v", err)
	}
	t.Logf("roamd restart: h2's NIC re-plugged and configured by DHCP %v after the restart began", time.Since(start).Round(time.Millisecond))
	mustRun(t, ctx, h2, "ping -c 1 -W 2 10.0.0.1 || ping -c 1 -W 2 10.0.0.1")

	start = time.Now()
	e.ctl("eni", "detach", id)
	t.Logf("detach (hot-unplug from h2) took %v", time.Since(start).Round(time.Millisecond))
	if _, err := h2.WaitFor(ctx, "! test -e /sys/class/net/eth0", 100*time.Millisecond); err != nil {
		t.Fatalf("h2 still has its NIC after the detach: %v", err)
	}
	if m := e.ctl("eni", "show", id); m["status"] != "available" {
		t.Fatalf("record after detach: status %v, want available", m["status"])
	}
	ev := mustRun(t, ctx, h2, "cat /run/events")
	t.Logf("h2 events:\n%s", ev)
}
