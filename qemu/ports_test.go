package qemu

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// bootPair boots two VMs at once.
func bootPair(t *testing.T, ctx context.Context, a, b Config) (*VM, *VM) {
	t.Helper()
	needQEMU(t)
	var wg sync.WaitGroup
	var va, vb *VM
	var ea, eb error
	k, initrd := needQEMU(t)
	for _, c := range []*Config{&a, &b} {
		c.Kernel, c.Initrd = k.Kernel, initrd
	}
	wg.Add(2)
	go func() { defer wg.Done(); va, ea = Start(ctx, a) }()
	go func() { defer wg.Done(); vb, eb = Start(ctx, b) }()
	wg.Wait()
	for _, v := range []*VM{va, vb} {
		if v == nil {
			continue
		}
		t.Cleanup(func() {
			v.Poweroff(3 * time.Second)
			if t.Failed() {
				b, _ := os.ReadFile(v.Console)
				t.Logf("console of %s:\n%s", v.Name, b)
			}
		})
		t.Logf("%s booted in %v", v.Name, v.Booted.Round(time.Millisecond))
	}
	if ea != nil || eb != nil {
		t.Fatalf("boot: %v / %v", ea, eb)
	}
	return va, vb
}

// TestPrivilegedQEMUPorts boots a VM on a stream: port and one on a
// netdev: port (QEMU's own TAP, vnet_hdr on); each gets its address from
// roam by DHCP and reaches the gateway, the other VM, and the outside
// through PAT and through a public IP.
func TestPrivilegedQEMUPorts(t *testing.T) {
	e := newEnv(t, "p")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	idS, ipS, macS := e.eni()
	idN, ipN, macN := e.eni()
	sock := filepath.Join(e.dir, "vms.sock")
	tapName := fmt.Sprintf("rqt%d", os.Getpid())
	// The stream socket must listen before QEMU starts: QEMU 7.2 does not
	// retry its connection.
	e.ctl("instance", "create", "vms", "--port", "stream:"+sock)
	vmS, vmN := bootPair(t, ctx,
		Config{Name: "vms", Dir: e.dir, NICs: []NIC{{Stream: sock, MAC: macS}}},
		Config{Name: "vmn", Dir: e.dir, NICs: []NIC{{Tap: tapName, MAC: macN}}})
	// QEMU creates the TAP (script=no): bring it up, then roam attaches.
	run(t, "ip", "link", "set", tapName, "up")
	e.ctl("instance", "create", "vmn", "--port", "netdev:"+tapName)
	for _, x := range []struct {
		vm     *VM
		id, ip string
		inst   string
	}{{vmS, idS, ipS, "vms"}, {vmN, idN, ipN, "vmn"}} {
		start := time.Now()
		e.ctl("eni", "attach", x.id, "--instance", x.inst)
		got, _ := waitAddr(t, ctx, x.vm, "eth0")
		t.Logf("%s: attach to address %s by DHCP: %v", x.vm.Name, got, time.Since(start).Round(time.Millisecond))
		if got != x.ip {
			t.Fatalf("%s: DHCP gave %s, want the record's %s", x.vm.Name, got, x.ip)
		}
	}
	pubS := e.eip(idS)
	for _, c := range []struct {
		vm  *VM
		dst string
	}{{vmS, "10.0.0.1"}, {vmN, "10.0.0.1"}, {vmS, ipN}, {vmN, ipS}, {vmS, outsideIP}, {vmN, outsideIP}} {
		if _, err := c.vm.Run(ctx, "ping -c 2 -W 2 "+c.dst); err != nil {
			// The first frame to an unresolved neighbour may be dropped.
			mustRun(t, ctx, c.vm, "ping -c 2 -W 2 "+c.dst)
		}
	}
	if out, err := e.outside("ping", "-c", "2", "-W", "2", pubS); err != nil {
		t.Fatalf("outside -> public IP %s of vms: %v\n%s", pubS, err, out)
	}
	// PAT and 1:1: the outside sees the gateway's address for vmn and the
	// public IP for vms.
	mustRun(t, ctx, vmS, "guestagent udpecho 7 vms >/dev/null 2>&1 & sleep 0.5")
	mustRun(t, ctx, vmN, "guestagent udpecho 7 vmn >/dev/null 2>&1 & sleep 0.5")
	out, err := e.outside(kitAgent, "udpclient", pubS+":7", "5", "50ms")
	if err != nil || !containsAll(out, "R 4 vms "+pubS+":7 "+outsideIP+":") {
		t.Fatalf("outside -> %s:7 (vms by its public IP): %v\n%s", pubS, err, out)
	}
	// vmn reaches the outside by PAT: the outside sees the gateway's
	// public address.
	srv := exec.Command("ip", "netns", "exec", e.pubns, kitAgent, "udpecho", "9", "outside")
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
	time.Sleep(200 * time.Millisecond)
	out = mustRun(t, ctx, vmN, "guestagent udpclient "+outsideIP+":9 3 50ms")
	if !containsAll(out, "R 0 outside "+outsideIP+":9 198.51.100.1:") {
		t.Fatalf("vmn -> outside by PAT: want answers seen from 198.51.100.1, got\n%s", out)
	}
	out = mustRun(t, ctx, vmS, "guestagent udpclient "+outsideIP+":9 3 50ms")
	if !containsAll(out, "R 0 outside "+outsideIP+":9 "+pubS+":") {
		t.Fatalf("vms -> outside by its public IP: want answers seen from %s, got\n%s", pubS, out)
	}

	// Bulk TCP, offloads on: vmn (QEMU's TAP with vnet_hdr: TSO super-frames
	// through roam) sends to the outside by PAT; the outside sends to vms's
	// public IP (a stream port: roam segments super-frames in software).
	const bulk = "8388608"
	sink := exec.Command("ip", "netns", "exec", e.pubns, kitAgent, "tcpsink", "5001")
	var sinkOut strings.Builder
	sink.Stdout = &sinkOut
	if err := sink.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sink.Process.Kill(); sink.Wait() })
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	if out := mustRun(t, ctx, vmN, "guestagent tcpsend "+outsideIP+":5001 "+bulk); strings.TrimSpace(out) != bulk {
		t.Fatalf("vmn -> outside, TCP: sent %q, want %s", out, bulk)
	}
	sink.Wait()
	if got := strings.TrimSpace(sinkOut.String()); got != bulk {
		t.Fatalf("vmn -> outside, TCP: the outside received %q bytes, want %s", got, bulk)
	}
	t.Logf("TCP vmn -> outside (PAT): %s bytes in %v", bulk, time.Since(start).Round(time.Millisecond))
	mustRun(t, ctx, vmS, "guestagent tcpsink 5002 >/tmp/sink.out 2>&1 & sleep 0.5")
	start = time.Now()
	if out, err := e.outside(kitAgent, "tcpsend", pubS+":5002", bulk); err != nil || strings.TrimSpace(out) != bulk {
		t.Fatalf("outside -> vms's public IP, TCP: %v %q", err, out)
	}
	if _, err := vmS.WaitFor(ctx, "grep -qx "+bulk+" /tmp/sink.out", 100*time.Millisecond); err != nil {
		out, _ := vmS.Run(ctx, "cat /tmp/sink.out")
		t.Fatalf("outside -> vms's public IP, TCP: vms received %q, want %s bytes", out, bulk)
	}
	t.Logf("TCP outside -> vms (public IP): %s bytes in %v; vms: %s", bulk, time.Since(start).Round(time.Millisecond), mustRun(t, ctx, vmS, "grep Tcp: /proc/net/snmp | tail -1"))

	// A killed VM on a stream port: instance show says its QEMU left.
	vmS.Kill()
	for deadline := time.Now().Add(10 * time.Second); ; {
		pt := e.ctl("instance", "show", "vms")["ports"].([]any)[0].(map[string]any)
		if pt["status"] == "down" {
			t.Logf("instance show vms after the kill: %v %v (%v)", pt["spec"], pt["status"], pt["error"])
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("vms killed, but instance show says its port is %v", pt)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func containsAll(s string, subs ...string) bool {
	for _, x := range subs {
		if !strings.Contains(s, x) {
			return false
		}
	}
	return true
}
