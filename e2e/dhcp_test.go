package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"roam/internal/netlab"
)

// udhcpcScript is what busybox udhcpc runs at each event: it records the
// variables of the lease and configures the interface as a guest's
// default script would.
const udhcpcScript = `#!/bin/sh
echo "$1 ip=$ip subnet=$subnet router=$router mtu=$mtu dns=$dns serverid=$serverid lease=$lease" >> %s
case "$1" in
deconfig) ip addr flush dev "$interface"; ip link set "$interface" up ;;
bound|renew)
  ip addr add "$ip/$subnet" dev "$interface"
  [ -n "$mtu" ] && ip link set "$interface" mtu "$mtu"
  [ -n "$router" ] && ip route replace default via "$router"
  ;;
esac
exit 0
`

// udhcpc returns the busybox binary that provides udhcpc, or skips t.
func udhcpc(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"busybox", "udhcpc"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("busybox (udhcpc) is missing: scripts/deps.sh installs busybox-static")
	return ""
}

// runUDHCPC runs udhcpc on eth0 of namespace short until it holds a lease
// (or gives up after tries discovers a second apart) and returns the
// events its script saw and how long it took.
func runUDHCPC(t *testing.T, w *netlab.Lab, bb, short string, tries int) (events []string, took time.Duration, err error) {
	t.Helper()
	out := filepath.Join(w.Dir, short+"-udhcpc.events")
	script := filepath.Join(w.Dir, short+"-udhcpc.sh")
	must(t, os.WriteFile(script, []byte(fmt.Sprintf(udhcpcScript, out)), 0o755))
	argv := []string{"udhcpc", "-f", "-q", "-n", "-i", netlab.Dev, "-t", fmt.Sprint(tries), "-T", "1", "-A", "1", "-O", "mtu", "-O", "dns", "-s", script}
	if !strings.HasSuffix(bb, "busybox") {
		argv = argv[1:]
	}
	start := time.Now()
	_, err = w.Run(short, bb, argv...)
	took = time.Since(start)
	b, _ := os.ReadFile(out)
	return strings.Split(strings.TrimSpace(string(b)), "\n"), took, err
}

// TestPrivilegedDHCPLease: a guest configures itself with busybox udhcpc:
// it is offered the attached record's IP, the mask, the gateway, the
// subnet's MTU and DNS server, and then reaches the gateway with ping. A
// guest with no record attached gets no offer.
func TestPrivilegedDHCPLease(t *testing.T) {
	bb := udhcpc(t)
	w := newLab(t)
	must(t, w.StartPublic())
	subnet, err := w.CtlID("subnet", "create", netlab.SubnetA, "--mtu", "1400", "--dns", "192.0.2.53")
	must(t, err)
	must(t, w.AddVM("vma"))
	must(t, w.AddVM("bare")) // a port with no record attached
	var eni netlab.ENI
	must(t, w.CtlInto(&eni, "eni", "create", "--subnet", subnet))
	_, err = w.Ctl("eni", "attach", eni.ID, "--instance", "vma")
	must(t, err)

	events, took, err := runUDHCPC(t, w, bb, "vma", 5)
	if err != nil {
		t.Fatalf("udhcpc in vma: %v (events %q)", err, events)
	}
	t.Logf("DHCP lease in %v: %q", took.Round(time.Millisecond), events)
	bound := ""
	for _, e := range events {
		if strings.HasPrefix(e, "bound ") {
			bound = e
		}
	}
	if bound == "" {
		t.Fatalf("udhcpc got no lease: events %q", events)
	}
	for _, want := range []string{"ip=" + eni.PrivateIP + " ", "subnet=255.255.255.0 ", "router=" + netlab.GatewayA + " ",
		"mtu=1400 ", "dns=192.0.2.53 ", "serverid=" + netlab.GatewayA + " ", "lease=3600"} {
		if !strings.Contains(bound+" ", want) {
			t.Errorf("lease %q: want %q", bound, want)
		}
	}
	addrs, err := w.Run("vma", "ip", "-4", "-o", "addr", "show", "dev", netlab.Dev)
	must(t, err)
	if !strings.Contains(addrs, eni.PrivateIP+"/24") {
		t.Errorf("vma's eth0 after the lease: %q, want %s/24", addrs, eni.PrivateIP)
	}
	// Ping to the gateway, with the address the guest got by itself.
	if err := w.Ping("vma", netlab.GatewayA); err != nil {
		t.Errorf("ping the gateway from the DHCP-configured guest: %v", err)
	}

	events, _, err = runUDHCPC(t, w, bb, "bare", 2)
	if err == nil {
		t.Errorf("udhcpc on a port with no record attached got a lease: events %q", events)
	}
	for _, e := range events {
		if strings.HasPrefix(e, "bound") {
			t.Errorf("port with no record: udhcpc event %q, want none bound", e)
		}
	}
}
