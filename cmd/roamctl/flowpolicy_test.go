package main

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"roam/api"
	roamd "roam/internal/daemon"
	"roam/internal/packet/packettest"
	vswitch "roam/switch"
	"roam/tap/taptest"
)

// TestFlowPolicyCLI sets each flow policy with "roamctl eni modify
// --flow-policy", establishes a UDP and a TCP flow in through the record's
// public IP, then moves the record to a group that allows only TCP 80 in:
// keep leaves both flows, reevaluate removes the UDP one, reset removes
// both and resets the TCP connection at both ends. The policy survives a
// restart of roamd.
func TestFlowPolicyCLI(t *testing.T) {
	tests := []struct {
		policy     string // "" leaves the default
		flows      int
		rstGuest   bool
		rstOutside bool
	}{
		{"", 2, false, false},
		{"keep", 2, false, false},
		{"reevaluate", 1, false, false},
		{"reset", 0, true, true},
	}
	for _, tc := range tests {
		name := tc.policy
		if name == "" {
			name = "default"
		}
		t.Run(name, func(t *testing.T) {
			dir, err := os.MkdirTemp("", "roamd-policy-")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(dir) })
			ports := &portSet{ports: map[string]*taptest.Port{}}
			cfg := roamd.DefaultConfig()
			cfg.StateDir, cfg.Socket, cfg.SocketGroup = filepath.Join(dir, "state"), filepath.Join(dir, "roamd.sock"), ""
			cfg.PublicCIDR, cfg.PublicIP, cfg.Uplink, cfg.Upstream = "198.51.100.0/24", "198.51.100.1", "tap:uplink0", "02:ee:00:00:00:01"
			dmn, err := roamd.Start(cfg, roamd.Options{Ports: ports})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { dmn.Shutdown(t.Context()) })
			d := &daemon{t: t, socket: cfg.Socket, client: api.NewClient(cfg.Socket)}
			sub := d.ok("subnet", "create", "10.0.0.0/24")["id"].(string)
			web := d.ok("sg", "create", "--name", "web")["id"].(string)
			d.ok("sg", "rule", "add", web, "--protocol", "udp", "--port", "5000")
			d.ok("sg", "rule", "add", web, "--protocol", "tcp", "--port", "80")
			only80 := d.ok("sg", "create", "--name", "only80")["id"].(string)
			d.ok("sg", "rule", "add", only80, "--protocol", "tcp", "--port", "80")
			d.ok("instance", "create", "vm1", "--port", "tap:a1")
			e := d.ok("eni", "create", "--subnet", sub, "--private-ip", "10.0.0.10", "--sg", web)
			id := e["id"].(string)
			d.ok("eni", "attach", id, "--instance", "vm1")
			eip := d.ok("eip", "allocate")
			d.ok("eip", "associate", eip["id"].(string), "--eni", id)
			if r := d.ctl(0, "eni", "modify", id, "--flow-policy", "sometimes"); r.code == 0 || !strings.Contains(r.stdout+r.stderr, "flow_policy") {
				t.Fatalf("eni modify --flow-policy sometimes: exit %d %s%s; want an error naming flow_policy", r.code, r.stdout, r.stderr)
			}
			if tc.policy != "" {
				m := d.ok("eni", "modify", id, "--flow-policy", tc.policy)
				if m["flow_policy"] != tc.policy {
					t.Fatalf("eni modify --flow-policy %s: got flow_policy %v", tc.policy, m["flow_policy"])
				}
			}
			mac, _ := net.ParseMAC(e["mac"].(string))
			gw := net.HardwareAddr(vswitch.DefaultGatewayMAC)
			up := net.HardwareAddr{2, 0xee, 0, 0, 0, 1}
			pub := netip.MustParseAddr(eip["public_ip"].(string))
			priv := netip.MustParseAddr("10.0.0.10")
			server := netip.MustParseAddr("203.0.113.9")
			frame := func(s packettest.Spec, src, dst net.HardwareAddr) []byte {
				f := packettest.Frame(s)
				copy(f[0:6], dst)
				copy(f[6:12], src)
				return f
			}
			guest, uplink := ports.get("tap:a1"), ports.get("tap:uplink0")
			pass := func(from, to *taptest.Port, f []byte) bool {
				t.Helper()
				from.Inject(f)
				_, ok := recvIP(to, time.Second)
				return ok
			}
			// UDP in to 5000, answered; TCP in to 80, established.
			if !pass(uplink, guest, frame(packettest.Spec{Proto: 17, Src: netip.AddrPortFrom(server, 6000), Dst: netip.AddrPortFrom(pub, 5000), Payload: []byte("q")}, up, gw)) ||
				!pass(guest, uplink, frame(packettest.Spec{Proto: 17, Src: netip.AddrPortFrom(priv, 5000), Dst: netip.AddrPortFrom(server, 6000), Payload: []byte("r")}, mac, gw)) ||
				!pass(uplink, guest, frame(packettest.Spec{Proto: 6, Src: netip.AddrPortFrom(server, 7000), Dst: netip.AddrPortFrom(pub, 80), TCPFlags: 0x02, Seq: 100}, up, gw)) ||
				!pass(guest, uplink, frame(packettest.Spec{Proto: 6, Src: netip.AddrPortFrom(priv, 80), Dst: netip.AddrPortFrom(server, 7000), TCPFlags: 0x12, Seq: 900, Ack: 101, Window: 1000}, mac, gw)) ||
				!pass(uplink, guest, frame(packettest.Spec{Proto: 6, Src: netip.AddrPortFrom(server, 7000), Dst: netip.AddrPortFrom(pub, 80), TCPFlags: 0x10, Seq: 101, Ack: 901, Window: 1000}, up, gw)) {
				t.Fatalf("setup: flows not established; drops %v", dmn.Switch.Counters().Drops)
			}
			if n := len(d.list("conntrack", "list", "--eni", id)); n != 2 {
				t.Fatalf("setup: %d flows, want 2", n)
			}
			d.ok("eni", "modify", id, "--sg", only80)
			if n := len(d.list("conntrack", "list", "--eni", id)); n != tc.flows {
				t.Errorf("after the group change: %d flows, want %d", n, tc.flows)
			}
			rst := func(p *taptest.Port) bool {
				f, ok := recvIP(p, 200*time.Millisecond)
				return ok && f[23] == 6 && f[14+20+13]&0x04 != 0
			}
			if got := rst(guest); got != tc.rstGuest {
				t.Errorf("RST to the guest: %v, want %v", got, tc.rstGuest)
			}
			if got := rst(uplink); got != tc.rstOutside {
				t.Errorf("RST to the outside: %v, want %v", got, tc.rstOutside)
			}
			// The policy is persisted: a new roamd shows it.
			dmn.Shutdown(t.Context())
			d.client.Close()
			dmn, err = roamd.Start(cfg, roamd.Options{Ports: &portSet{ports: map[string]*taptest.Port{}}})
			if err != nil {
				t.Fatal(err)
			}
			d.client = api.NewClient(cfg.Socket)
			want := tc.policy
			if got, _ := d.ok("eni", "show", id)["flow_policy"].(string); got != want {
				t.Errorf("after a restart: flow_policy %q, want %q", got, want)
			}
		})
	}
}
