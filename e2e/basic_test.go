package e2e

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"roam/internal/netlab"
)

// lan is a world of three VMs: vma and vmb in subnet A, vmc in subnet B,
// each with its own record; vmb's and vmc's records are in the group
// "allow" (TCP 8080, UDP 9000 and ICMP from 10.0.0.0/8); vma's has no
// group (all egress, no ingress).
type lan struct {
	w     *netlab.Lab
	sub   map[string]string // "A", "B" -> subnet id
	allow string            // group id
	eni   map[string]string // vm -> record id
	ip    map[string]string // vm -> private IP
}

func newLAN(t *testing.T) *lan {
	t.Helper()
	w := newLab(t)
	must(t, w.StartPublic())
	l := &lan{w: w, sub: map[string]string{}, eni: map[string]string{},
		ip: map[string]string{"vma": "10.0.0.10", "vmb": "10.0.0.11", "vmc": "10.1.0.12"}}
	var err error
	for name, cidr := range map[string]string{"A": netlab.SubnetA, "B": netlab.SubnetB} {
		l.sub[name], err = w.CtlID("subnet", "create", cidr)
		must(t, err)
	}
	l.allow, err = w.CtlID("sg", "create", "--name", "allow")
	must(t, err)
	for _, r := range [][]string{{"--protocol", "tcp", "--port", "8080"}, {"--protocol", "udp", "--port", "9000"}, {"--protocol", "icmp"}} {
		_, err := w.Ctl(append([]string{"sg", "rule", "add", l.allow, "--cidr", "10.0.0.0/8"}, r...)...)
		must(t, err)
	}
	for _, vm := range []string{"vma", "vmb", "vmc"} {
		must(t, w.AddVM(vm))
		sub, gw := l.sub["A"], netlab.GatewayA
		if vm == "vmc" {
			sub, gw = l.sub["B"], netlab.GatewayB
		}
		args := []string{"eni", "create", "--subnet", sub, "--private-ip", l.ip[vm]}
		if vm != "vma" {
			args = append(args, "--sg", l.allow)
		}
		l.eni[vm], err = w.CtlID(args...)
		must(t, err)
		_, err = w.Ctl("eni", "attach", l.eni[vm], "--instance", vm)
		must(t, err)
		must(t, w.ConfigureGuest(vm, l.ip[vm]+"/24", gw))
	}
	return l
}

// echoTCP starts a TCP echo on vm's IP and port, closed with t.
func (l *lan) echoTCP(t *testing.T, vm string, port int) *netlab.TCPEcho {
	t.Helper()
	ln, err := l.w.ListenTCP(vm, fmt.Sprintf("%s:%d", l.ip[vm], port))
	must(t, err)
	e := netlab.ServeTCPEcho(ln)
	t.Cleanup(e.Close)
	return e
}

// dial connects from vm to addr and checks an echo round trip.
func dialEcho(w *netlab.Lab, vm, addr string) (net.Addr, error) {
	c, err := w.DialTCP(vm, addr, 3*time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.LocalAddr(), netlab.RoundTrip(c, "hello from "+vm)
}

// TestPrivilegedGatewayAndVMToVM: every guest pings its gateway; vmA
// reaches vmB in its subnet and vmC across subnets (ping and TCP), and
// each sees vmA's own address: inside, roam routes without NAT.
func TestPrivilegedGatewayAndVMToVM(t *testing.T) {
	l := newLAN(t)
	for vm, gw := range map[string]string{"vma": netlab.GatewayA, "vmb": netlab.GatewayA, "vmc": netlab.GatewayB} {
		if err := l.w.Ping(vm, gw); err != nil {
			t.Errorf("%s pings its gateway %s: %v", vm, gw, err)
		}
	}
	for _, dst := range []string{"vmb", "vmc"} {
		e := l.echoTCP(t, dst, 8080)
		if err := l.w.Ping("vma", l.ip[dst]); err != nil {
			t.Errorf("vma pings %s (%s): %v", dst, l.ip[dst], err)
		}
		local, err := dialEcho(l.w, "vma", fmt.Sprintf("%s:8080", l.ip[dst]))
		if err != nil {
			t.Errorf("vma -> %s TCP 8080: %v", dst, err)
			continue
		}
		if p := e.Peers(); len(p) != 1 || p[0] != local.String() {
			t.Errorf("%s saw peers %v, want vma's own %v", dst, p, local)
		}
	}
}

// TestPrivilegedSecurityGroups: a group that allows TCP 8080 lets vmA in;
// a port it does not name is blocked (vmB's listener never sees the SYN,
// roam counts sg_ingress and tells vmA with an ICMP error, so that the
// connect fails at once); once the record's group is replaced by one
// that admits only 192.0.2.0/24, a new connection to 8080 is blocked too.
func TestPrivilegedSecurityGroups(t *testing.T) {
	l := newLAN(t)
	w := l.w
	allowed := l.echoTCP(t, "vmb", 8080)
	other := l.echoTCP(t, "vmb", 8081)
	if _, err := dialEcho(w, "vma", l.ip["vmb"]+":8080"); err != nil {
		t.Fatalf("group allow: vma -> vmb:8080: %v", err)
	}
	before, err := w.Stats("")
	must(t, err)
	if _, err := dialEcho(w, "vma", l.ip["vmb"]+":8081"); err == nil {
		t.Errorf("group allow: vma -> vmb:8081 (no rule) connected")
	} else {
		t.Logf("group allow: vma -> vmb:8081 (no rule): %v", err)
	}
	block, err := w.CtlID("sg", "create", "--name", "block")
	must(t, err)
	_, err = w.Ctl("sg", "rule", "add", block, "--protocol", "tcp", "--port", "8080", "--cidr", "192.0.2.0/24")
	must(t, err)
	_, err = w.Ctl("eni", "modify", l.eni["vmb"], "--sg", block)
	must(t, err)
	if _, err := dialEcho(w, "vma", l.ip["vmb"]+":8080"); err == nil {
		t.Errorf("group block: vma -> vmb:8080 connected")
	} else {
		t.Logf("group block: vma -> vmb:8080: %v", err)
	}
	after, err := w.Stats("")
	must(t, err)
	if n := other.Accepted(); n != 0 {
		t.Errorf("vmb:8081 accepted %d connections, want 0", n)
	}
	if n := allowed.Accepted(); n != 1 {
		t.Errorf("vmb:8080 accepted %d connections, want 1 (before the group changed)", n)
	}
	if after.Drops["sg_ingress"] <= before.Drops["sg_ingress"] {
		t.Errorf("roam's sg_ingress drops: %d then %d, want more", before.Drops["sg_ingress"], after.Drops["sg_ingress"])
	}
}

// TestPrivilegedSourceDestCheck: vmA sends from an address that is not
// its record's: roam drops it (source_check) and vmB sees nothing; the
// same datagram from vmA's own address arrives; with the check turned
// off (eni modify --source-dest-check=false) the spoofed one arrives too.
func TestPrivilegedSourceDestCheck(t *testing.T) {
	l := newLAN(t)
	w := l.w
	const spoofed = "10.0.0.99"
	_, err := w.Run("vma", "ip", "addr", "add", spoofed+"/32", "dev", netlab.Dev)
	must(t, err)
	c, err := w.ListenUDP("vmb", l.ip["vmb"]+":9000")
	must(t, err)
	got := make(chan string, 16)
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := c.ReadFromUDP(buf)
			if err != nil {
				close(got)
				return
			}
			got <- from.IP.String() + " " + string(buf[:n])
		}
	}()
	t.Cleanup(func() { c.Close() })
	send := func(src, msg string) {
		t.Helper()
		s, err := w.ListenUDP("vma", src+":0")
		must(t, err)
		defer s.Close()
		_, err = s.WriteToUDP([]byte(msg), &net.UDPAddr{IP: net.ParseIP(l.ip["vmb"]), Port: 9000})
		must(t, err)
	}
	expect := func(want string) {
		t.Helper()
		select {
		case g := <-got:
			if g != want {
				t.Errorf("vmb got %q, want %q", g, want)
			}
		case <-time.After(3 * time.Second):
			t.Errorf("vmb got nothing, want %q", want)
		}
	}
	before, err := w.Stats("")
	must(t, err)
	send(spoofed, "spoofed")
	send(l.ip["vma"], "genuine") // arrives after the spoofed one would have
	expect(l.ip["vma"] + " genuine")
	after, err := w.Stats("")
	must(t, err)
	if after.Drops["source_check"] <= before.Drops["source_check"] {
		t.Errorf("roam's source_check drops: %d then %d, want more", before.Drops["source_check"], after.Drops["source_check"])
	}
	_, err = w.Ctl("eni", "modify", l.eni["vma"], "--source-dest-check=false")
	must(t, err)
	send(spoofed, "spoofed, check off")
	expect(spoofed + " spoofed, check off")
}

// TestPrivilegedInboundOneToOne: the outside connects to a record's
// public IP (1:1 NAT): vmA sees the client's own address; vmA's outbound
// connections leave from its public IP.
func TestPrivilegedInboundOneToOne(t *testing.T) {
	w := newLab(t)
	p, err := w.SetupPair(netlab.PairOptions{})
	must(t, err)
	ln, err := w.ListenTCP("vma", p.IP+":8080")
	must(t, err)
	e := netlab.ServeTCPEcho(ln)
	defer e.Close()
	local, err := dialEcho(w, "pub", netlab.EIPAddr(8080))
	must(t, err)
	if peers := e.Peers(); len(peers) != 1 || peers[0] != local.String() {
		t.Errorf("vmA saw %v, want the client %v", peers, local)
	}
	out, err := w.ListenTCP("pub", netlab.PubIP+":8081")
	must(t, err)
	pe := netlab.ServeTCPEcho(out)
	defer pe.Close()
	_, err = dialEcho(w, "vma", netlab.PubIP+":8081")
	must(t, err)
	if peers := pe.Peers(); len(peers) != 1 || !strings.HasPrefix(peers[0], netlab.EIP+":") {
		t.Errorf("the outside saw vmA as %v, want its public IP %s", peers, netlab.EIP)
	}
}

// TestPrivilegedOutboundPATAndHairpin: a record without a public IP (vmB's
// own, 10.0.0.3) reaches the outside through PAT: the outside sees roam's
// public address; ping works through the ICMP identifier mapping; vmB
// reaches vmA's public IP from inside (hairpin).
func TestPrivilegedOutboundPATAndHairpin(t *testing.T) {
	w := newLab(t)
	p, err := w.SetupPair(netlab.PairOptions{})
	must(t, err)
	// vmB gets a record of its own, with no public IP.
	var own netlab.ENI
	must(t, w.CtlInto(&own, "eni", "create", "--subnet", p.Subnet))
	_, err = w.Ctl("eni", "attach", own.ID, "--instance", "vmb")
	must(t, err)
	_, err = w.Run("vmb", "ip", "addr", "flush", "dev", netlab.Dev)
	must(t, err)
	must(t, w.ConfigureGuest("vmb", own.PrivateIP+"/24", netlab.GatewayA))

	out, err := w.ListenTCP("pub", netlab.PubIP+":8081")
	must(t, err)
	pe := netlab.ServeTCPEcho(out)
	defer pe.Close()
	_, err = dialEcho(w, "vmb", netlab.PubIP+":8081")
	must(t, err)
	if peers := pe.Peers(); len(peers) != 1 || !strings.HasPrefix(peers[0], netlab.PublicGW+":") {
		t.Errorf("the outside saw vmB as %v, want roam's address %s (PAT)", peers, netlab.PublicGW)
	}
	if err := w.Ping("vmb", netlab.PubIP); err != nil {
		t.Errorf("ping through PAT: %v", err)
	}
	flows, err := w.Flows(own.ID)
	must(t, err)
	if len(flows) == 0 {
		t.Errorf("conntrack list --eni %s: no flows after vmB's traffic", own.ID)
	}

	// Hairpin: vmB to vmA's public IP.
	ln, err := w.ListenTCP("vma", p.IP+":8080")
	must(t, err)
	e := netlab.ServeTCPEcho(ln)
	defer e.Close()
	if _, err := dialEcho(w, "vmb", netlab.EIPAddr(8080)); err != nil {
		t.Fatalf("hairpin: vmB -> %s: %v", netlab.EIPAddr(8080), err)
	}
	t.Logf("hairpin: vmA saw vmB as %v", e.Peers())
}

// TestPrivilegedICMPErrors: ICMP errors from the outside are translated
// back to the inside host whose datagram caused them. Two hosts behind
// PAT send from the same port: each gets the port unreachable of its own
// datagram, and a third that talks to an open port gets none. A router
// beyond the uplink with a 1280-byte link answers a 1400-byte DF datagram
// with fragmentation needed: the sender learns the path MTU, the other
// host does not.
func TestPrivilegedICMPErrors(t *testing.T) {
	l := newLAN(t)
	w := l.w
	// The outside: pub routes to far (192.0.2.2) over a 1280-byte link,
	// and answers every error at once.
	must(t, w.AddNS("far"))
	// The veth pair is born in the root namespace: should the move fail,
	// delete it there (once moved, it goes with the namespaces).
	t.Cleanup(func() { w.Run("", "ip", "link", "del", w.Prefix()+"x") })
	must(t, w.Sh("", fmt.Sprintf(`
ip link add %[1]sx type veth peer name %[1]sy
ip link set %[1]sx netns %[2]s name far0
ip link set %[1]sy netns %[3]s name eth0
`, w.Prefix(), w.NS("pub"), w.NS("far"))))
	must(t, w.Sh("pub", `
sysctl -qw net.ipv4.ip_forward=1 net.ipv4.icmp_ratelimit=0
ip addr add 192.0.2.1/24 dev far0
ip link set far0 mtu 1280 up`))
	must(t, w.Sh("far", `
ip addr add 192.0.2.2/24 dev eth0
ip link set eth0 mtu 1280 up
ip route add default via 192.0.2.1`))
	open, err := w.ListenUDP("pub", netlab.PubIP+":7001")
	must(t, err)
	echo := netlab.ServeUDPEcho(open, 'P')
	defer echo.Close()

	// Port unreachable.
	dial := func(vm, dst string, port int) *net.UDPConn {
		t.Helper()
		var c *net.UDPConn
		must(t, w.InNS(vm, func() error {
			var err error
			c, err = net.DialUDP("udp4", &net.UDPAddr{IP: net.ParseIP(l.ip[vm]), Port: port}, mustUDPAddr(dst))
			return err
		}))
		t.Cleanup(func() { c.Close() })
		return c
	}
	read := func(c *net.UDPConn) error {
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		_, err := c.Read(make([]byte, 100))
		return err
	}
	closedA, closedC := dial("vma", netlab.PubIP+":7", 40000), dial("vmc", netlab.PubIP+":7", 40000)
	openB := dial("vmb", netlab.PubIP+":7001", 40000)
	for _, c := range []*net.UDPConn{closedA, closedC, openB} {
		_, err := c.Write(make([]byte, 9))
		must(t, err)
	}
	for vm, c := range map[string]*net.UDPConn{"vma": closedA, "vmc": closedC} {
		if err := read(c); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("%s -> closed port: %v, want connection refused (the port unreachable translated back)", vm, err)
		}
	}
	if err := read(openB); err != nil {
		t.Errorf("vmb -> open port: %v, want its echo", err)
	}

	// Fragmentation needed.
	big, small := dial("vma", "192.0.2.2:9", 40001), dial("vmc", "192.0.2.2:9", 40001)
	for _, c := range []*net.UDPConn{big, small} {
		raw, err := c.SyscallConn()
		must(t, err)
		raw.Control(func(fd uintptr) {
			syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, syscall.IP_MTU_DISCOVER, syscall.IP_PMTUDISC_DO)
		})
	}
	mtu := func(c *net.UDPConn) int {
		raw, _ := c.SyscallConn()
		v := 0
		raw.Control(func(fd uintptr) { v, _ = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_IP, syscall.IP_MTU) })
		return v
	}
	small.Write(make([]byte, 100))
	deadline := time.Now().Add(5 * time.Second)
	for mtu(big) != 1280 && time.Now().Before(deadline) {
		big.Write(make([]byte, 1400)) // EMSGSIZE once the error came back
		time.Sleep(100 * time.Millisecond)
	}
	if got := mtu(big); got != 1280 {
		t.Errorf("vma's path MTU to 192.0.2.2 after a 1400-byte DF datagram: %d, want 1280 (fragmentation needed translated back)", got)
	}
	if got := mtu(small); got != 1500 {
		t.Errorf("vmc's path MTU to 192.0.2.2: %d, want 1500 (the error was not its own)", got)
	}
}

func mustUDPAddr(s string) *net.UDPAddr {
	a, err := net.ResolveUDPAddr("udp4", s)
	if err != nil {
		panic(err)
	}
	return a
}
