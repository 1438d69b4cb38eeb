package tap

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"roam/internal/packet"
)

// Helpers for the privileged tests. Each test makes its own namespaces and
// links, named with a prefix, the process id and a sequence number, deletes
// exactly those in t.Cleanup, and keeps its traffic inside them (192.0.2.0/24,
// 2001:db8::/32).

var privSeq atomic.Int32

// needPrivileged skips t unless it runs as root with /dev/net/tun and
// iproute2's ip.
func needPrivileged(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipped: needs root to create network namespaces, TAP/TUN devices and AF_PACKET sockets")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skipf("skipped: /dev/net/tun is missing: %v", err)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("skipped: needs ip from the Debian package iproute2")
	}
}

// uniq returns a name made of prefix, the process id and a sequence number;
// with short prefixes it fits an interface name (15 bytes).
func uniq(prefix string) string {
	return fmt.Sprintf("%s%d%c", prefix, os.Getpid(), 'a'+privSeq.Add(1)%26)
}

func ipCmd(t testing.TB, args ...string) {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// newNetns creates a namespace with lo up and deletes it on cleanup.
func newNetns(t testing.TB) string {
	t.Helper()
	ns := uniq("rtap")
	out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput()
	if err != nil {
		t.Skipf("skipped: cannot create a network namespace: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	ipCmd(t, "-n", ns, "link", "set", "lo", "up")
	return ns
}

// inNS runs fn in namespace ns; sockets it opens stay there.
func inNS(t testing.TB, ns string, fn func() error) {
	t.Helper()
	if err := InNetns(ns, fn); err != nil {
		t.Fatal(err)
	}
}

// udpListen opens a UDP socket on addr inside ns.
func udpListen(t testing.TB, ns, addr string) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	inNS(t, ns, func() error {
		a, err := net.ResolveUDPAddr("udp", addr)
		if err != nil {
			return err
		}
		c, err = net.ListenUDP("udp", a)
		return err
	})
	t.Cleanup(func() { c.Close() })
	return c
}

// udpDial opens a UDP socket inside ns connected to addr.
func udpDial(t testing.TB, ns, laddr, raddr string) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	inNS(t, ns, func() error {
		la, err := net.ResolveUDPAddr("udp", laddr)
		if err != nil {
			return err
		}
		ra, err := net.ResolveUDPAddr("udp", raddr)
		if err != nil {
			return err
		}
		c, err = net.DialUDP("udp", la, ra)
		return err
	})
	t.Cleanup(func() { c.Close() })
	return c
}

type linkInfo struct {
	Address string   `json:"address"`
	MTU     int      `json:"mtu"`
	Flags   []string `json:"flags"`
}

func showLink(t testing.TB, ns, ifname string) linkInfo {
	t.Helper()
	out, err := exec.Command("ip", "-n", ns, "-j", "link", "show", "dev", ifname).Output()
	if err != nil {
		t.Fatalf("ip link show %s in %s: %v", ifname, ns, err)
	}
	var l []linkInfo
	if err := json.Unmarshal(out, &l); err != nil || len(l) != 1 {
		t.Fatalf("ip link show: %v: %s", err, out)
	}
	return l[0]
}

// reader runs Read on p in a goroutine until the port is closed and hands
// copies of the frames (with their GSO) to a channel.
type got struct {
	b   []byte
	gso GSO
}

func startReader(t testing.TB, p Port, batch int) <-chan got {
	c := make(chan got, 4096)
	go func() {
		defer close(c)
		frames := NewFrames(batch, Headroom+MaxFrame)
		for {
			n, err := p.Read(frames)
			if err != nil {
				return
			}
			for i := 0; i < n; i++ {
				select {
				case c <- got{append([]byte(nil), frames[i].Bytes()...), frames[i].GSO}:
				default:
				}
			}
		}
	}()
	return c
}

// waitFrame returns the first frame from c that match accepts.
func waitFrame(t testing.TB, c <-chan got, what string, match func(got) bool) got {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case g, ok := <-c:
			if !ok {
				t.Fatalf("port closed while waiting for %s", what)
			}
			if match(g) {
				return g
			}
		case <-deadline:
			t.Fatalf("no %s within 5s", what)
		}
	}
}

// isUDPTo reports whether b is an IPv4 UDP frame to port dport.
func isUDPTo(b []byte, dport uint16) bool {
	_, l4, proto, _, ok := l4Info(b)
	return ok && proto == protoUDP && len(b) >= l4+8 && binary.BigEndian.Uint16(b[l4+2:]) == dport
}

func udpPayload(b []byte) []byte {
	_, l4, _, _, _ := l4Info(b)
	return b[l4+8:]
}

func mac(m [6]byte) net.HardwareAddr { return net.HardwareAddr(m[:]) }

// udpFrame builds a UDP frame macB/192.0.2.2:sport -> dstMAC/192.0.2.1:dport.
func udpFrame(dst net.HardwareAddr, sport, dport uint16, payload []byte, partial bool) Frame {
	b, g := pktSpec{proto: protoUDP, src: ip4B, dst: ip4A, sport: sport, dport: dport, id: 1, payload: payload, partial: partial}.build()
	copy(b[0:6], dst)
	f := frameOf(b, g)
	return f
}

func recvUDP(t testing.TB, c *net.UDPConn) []byte {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 65536)
	n, err := c.Read(b)
	if err != nil {
		t.Fatalf("receive in namespace: %v", err)
	}
	return b[:n]
}

// tapInNetns opens tap:NAME@NS with MAC mac, up, with address addr and a
// permanent neighbour entry for the other end.
func tapInNetns(t testing.TB, ns string, m [6]byte, addr string, peerIP string, peerMAC [6]byte, opts Options) (*Device, string) {
	t.Helper()
	name := uniq("rt")
	opts.MAC, opts.Up = mac(m), true
	p, err := Open("tap:"+name+"@"+ns, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	ipCmd(t, "-n", ns, "addr", "add", addr, "dev", name)
	ipCmd(t, "-n", ns, "neigh", "replace", peerIP, "lladdr", mac(peerMAC).String(), "dev", name, "nud", "permanent")
	return p.(*Device), name
}

func TestPrivilegedTAP(t *testing.T) {
	needPrivileged(t)
	ns := newNetns(t)
	d, name := tapInNetns(t, ns, macA, "192.0.2.1/24", "192.0.2.2", macB, Options{MTU: 1400})

	l := showLink(t, ns, name)
	if l.Address != mac(macA).String() || l.MTU != 1400 || !strings.Contains(strings.Join(l.Flags, ","), "UP") {
		t.Errorf("guest side: got %+v, want address %s, mtu 1400, UP", l, mac(macA))
	}
	if want := "tap:" + name + "@" + ns; d.Name() != want || d.IfName() != name || d.Netns() != ns {
		t.Errorf("got Name %q IfName %q Netns %q, want %q", d.Name(), d.IfName(), d.Netns(), want)
	}
	if !d.Operational() || !d.LinkUp() {
		t.Errorf("got Operational %v, LinkUp %v; want both true", d.Operational(), d.LinkUp())
	}
	frames := startReader(t, d, 16)

	t.Run("read", func(t *testing.T) {
		c := udpDial(t, ns, "192.0.2.1:4000", "192.0.2.2:9999")
		for i := 0; i < 3; i++ {
			c.Write([]byte(fmt.Sprintf("hello %d", i)))
		}
		for i := 0; i < 3; i++ {
			g := waitFrame(t, frames, "UDP frame from the namespace", func(g got) bool { return isUDPTo(g.b, 9999) })
			if !bytes.Equal(g.b[0:6], macB[:]) || !bytes.Equal(g.b[6:12], macA[:]) {
				t.Errorf("frame %d: got MACs %x -> %x, want %x -> %x", i, g.b[6:12], g.b[0:6], macA, macB)
			}
			if want := fmt.Sprintf("hello %d", i); string(udpPayload(g.b)) != want {
				t.Errorf("frame %d: got payload %q, want %q", i, udpPayload(g.b), want)
			}
			f := frameOf(g.b, g.gso)
			if !CompleteChecksum(&f) {
				t.Fatalf("frame %d: bad checksum offsets %+v", i, g.gso)
			}
			if err := checkFrame(f.Bytes()); err != nil {
				t.Errorf("frame %d: %v (GSO %+v)", i, err, g.gso)
			}
		}
	})

	t.Run("write", func(t *testing.T) {
		ln := udpListen(t, ns, "192.0.2.1:7777")
		full := udpFrame(mac(macA), 5555, 7777, []byte("full checksum"), false)
		partial := udpFrame(mac(macA), 5555, 7777, []byte("partial checksum"), true)
		if n, err := d.Write([]Frame{full, partial}); n != 2 || err != nil {
			t.Fatalf("Write: got %d, %v", n, err)
		}
		for _, want := range []string{"full checksum", "partial checksum"} {
			if got := recvUDP(t, ln); string(got) != want {
				t.Errorf("got %q, want %q", got, want)
			}
		}
		// No headroom: the header goes out with writev.
		f := udpFrame(mac(macA), 5555, 7777, []byte("no headroom"), false)
		f.Buf, f.Off = f.Buf[f.Off:], 0
		if _, err := d.Write([]Frame{f}); err != nil {
			t.Fatal(err)
		}
		if got := recvUDP(t, ln); string(got) != "no headroom" {
			t.Errorf("got %q, want %q", got, "no headroom")
		}
	})

	t.Run("ping", func(t *testing.T) {
		// An ICMP echo request we write is answered by the namespace.
		b := make([]byte, ethHdrLen+20+8+32)
		copy(b[0:6], macA[:])
		copy(b[6:12], macB[:])
		binary.BigEndian.PutUint16(b[12:], etherIPv4)
		ip := b[ethHdrLen:]
		ip[0], ip[8], ip[9] = 0x45, 64, 1
		binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)))
		copy(ip[12:], ip4B.AsSlice())
		copy(ip[16:], ip4A.AsSlice())
		binary.BigEndian.PutUint16(ip[10:], packet.Checksum(ip[:20], 0))
		icmp := ip[20:]
		icmp[0] = 8
		binary.BigEndian.PutUint16(icmp[4:], 0x7e57)
		binary.BigEndian.PutUint16(icmp[6:], 1)
		copy(icmp[8:], pattern(32))
		binary.BigEndian.PutUint16(icmp[2:], packet.Checksum(icmp, 0))
		if _, err := d.Write([]Frame{frameOf(b, GSO{})}); err != nil {
			t.Fatal(err)
		}
		g := waitFrame(t, frames, "echo reply", func(g got) bool {
			_, l4, proto, _, ok := l4Info(g.b)
			return ok && proto == 1 && g.b[l4] == 0 && binary.BigEndian.Uint16(g.b[l4+4:]) == 0x7e57
		})
		if !bytes.Equal(g.b[ethHdrLen+20+8:], pattern(32)) {
			t.Error("echo reply payload differs")
		}
	})

	t.Run("uso", func(t *testing.T) {
		// A socket with UDP_SEGMENT hands one super-frame to the TAP,
		// since the TAP took TUN_F_USO4.
		if !d.USO() {
			t.Skip("skipped: the kernel has no USO on TAP devices (Linux 6.2+)")
		}
		c := udpDial(t, ns, "192.0.2.1:4002", "192.0.2.2:9997")
		rc, err := c.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var serr error
		rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT, 1000) })
		if serr != nil {
			t.Skipf("skipped: UDP_SEGMENT: %v", serr)
		}
		if _, err := c.Write(pattern(4000)); err != nil {
			t.Fatal(err)
		}
		g := waitFrame(t, frames, "USO super-frame", func(g got) bool { return isUDPTo(g.b, 9997) })
		if g.gso.Type != GSOUDPL4 || g.gso.Size != 1000 {
			t.Fatalf("got GSO %+v, want GSOUDPL4 with size 1000", g.gso)
		}
		f := frameOf(g.b, g.gso)
		out := NewFrames(8, Headroom+2000)
		n := Segment(&f, out)
		if n != 4 {
			t.Fatalf("Segment: got %d datagrams, want 4", n)
		}
		for i := 0; i < n; i++ {
			if err := checkFrame(out[i].Bytes()); err != nil || !bytes.Equal(udpPayload(out[i].Bytes()), pattern(4000)[i*1000:(i+1)*1000]) {
				t.Errorf("datagram %d: %v or payload differs", i, err)
			}
		}
	})

	st := d.Stats()
	if st.RxFrames < 4 || st.TxFrames < 4 || st.RxBytes == 0 || st.TxBytes == 0 {
		t.Errorf("got stats %+v, want at least 4 frames each way", st)
	}

	t.Run("link settings", func(t *testing.T) {
		if err := d.SetMTU(1500); err != nil || showLink(t, ns, name).MTU != 1500 {
			t.Errorf("SetMTU(1500): got %v, mtu %d", err, showLink(t, ns, name).MTU)
		}
		m := net.HardwareAddr{0x02, 0, 0, 0, 0, 0xc}
		if err := d.SetMAC(m); err != nil || showLink(t, ns, name).Address != m.String() {
			t.Errorf("SetMAC(%s): got %v, address %s", m, err, showLink(t, ns, name).Address)
		}
		if err := d.SetUp(false); err != nil || d.LinkUp() {
			t.Errorf("SetUp(false): got %v, LinkUp %v; want nil, false", err, d.LinkUp())
		}
		f := udpFrame(mac(macA), 5555, 7777, []byte("to a down link"), false)
		if _, err := d.Write([]Frame{f}); err != nil || d.Stats().Drops[DropLinkDown] != 1 {
			t.Errorf("Write to a down guest: got %v and %d link_down drops, want nil and 1", err, d.Stats().Drops[DropLinkDown])
		}
		if err := d.SetUp(true); err != nil || !d.LinkUp() {
			t.Errorf("SetUp(true): got %v, LinkUp %v; want nil, true", err, d.LinkUp())
		}
	})
}

// forward copies frames from one port to another until src is closed and
// counts the super-frames it saw.
type forwarder struct {
	super  atomic.Int64
	frames atomic.Int64
	maxLen atomic.Int64
	wg     sync.WaitGroup
}

func (fw *forwarder) run(src, dst Port) {
	fw.wg.Add(1)
	go func() {
		defer fw.wg.Done()
		frames := NewFrames(64, Headroom+MaxFrame)
		for {
			n, err := src.Read(frames)
			if err != nil {
				return
			}
			for i := 0; i < n; i++ {
				fw.frames.Add(1)
				if frames[i].GSO.Type != GSONone {
					fw.super.Add(1)
				}
				if l := int64(frames[i].Len); l > fw.maxLen.Load() {
					fw.maxLen.Store(l)
				}
			}
			if _, err := dst.Write(frames[:n]); err != nil {
				return
			}
		}
	}()
}

// tcpTransfer sends size bytes from nsA to listenAddr in nsB and checks they
// arrive intact.
func tcpTransfer(t *testing.T, nsA, nsB, listenAddr string, size int) {
	t.Helper()
	var ln net.Listener
	inNS(t, nsB, func() (err error) {
		ln, err = net.Listen("tcp", listenAddr)
		return err
	})
	defer ln.Close()
	data := pattern(size)
	type result struct {
		b   []byte
		err error
	}
	rc := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			rc <- result{nil, err}
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		var buf bytes.Buffer
		_, err = buf.ReadFrom(c)
		rc <- result{buf.Bytes(), err}
	}()
	var c net.Conn
	inNS(t, nsA, func() (err error) {
		c, err = net.DialTimeout("tcp", listenAddr, 5*time.Second)
		return err
	})
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write(data); err != nil {
		t.Fatalf("send: %v", err)
	}
	c.Close()
	r := <-rc
	if r.err != nil {
		t.Fatalf("receive: %v", r.err)
	}
	if !bytes.Equal(r.b, data) {
		t.Fatalf("received %d bytes, want %d intact", len(r.b), len(data))
	}
}

func TestPrivilegedTAPGSO(t *testing.T) {
	needPrivileged(t)
	for _, tc := range []struct {
		name      string
		noOffload bool
		v6        bool
	}{
		{"offload both", false, false},
		{"software segmentation", true, false},
		{"offload both v6", false, true},
		{"software segmentation v6", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nsA, nsB := newNetns(t), newNetns(t)
			a, na := tapInNetns(t, nsA, macA, "192.0.2.1/24", "192.0.2.2", macB, Options{})
			b, nb := tapInNetns(t, nsB, macB, "192.0.2.2/24", "192.0.2.1", macA, Options{NoOffload: tc.noOffload})
			addr := "192.0.2.2:5001"
			if tc.v6 {
				ipCmd(t, "-n", nsA, "addr", "add", "2001:db8::1/64", "dev", na, "nodad")
				ipCmd(t, "-n", nsB, "addr", "add", "2001:db8::2/64", "dev", nb, "nodad")
				ipCmd(t, "-n", nsA, "neigh", "replace", "2001:db8::2", "lladdr", mac(macB).String(), "dev", na, "nud", "permanent")
				ipCmd(t, "-n", nsB, "neigh", "replace", "2001:db8::1", "lladdr", mac(macA).String(), "dev", nb, "nud", "permanent")
				addr = "[2001:db8::2]:5001"
			}
			var ab, ba forwarder
			ab.run(a, b)
			ba.run(b, a)
			tcpTransfer(t, nsA, nsB, addr, 8<<20)
			a.Close()
			b.Close()
			ab.wg.Wait()
			ba.wg.Wait()
			t.Logf("A->B: %d frames, %d super-frames, largest %d bytes; B out: %+v", ab.frames.Load(), ab.super.Load(), ab.maxLen.Load(), b.Stats())
			if ab.super.Load() == 0 || ab.maxLen.Load() <= 1514 {
				t.Errorf("got %d super-frames (largest %d bytes) from a namespace with TSO, want some over 1514 bytes", ab.super.Load(), ab.maxLen.Load())
			}
			if tc.noOffload {
				if st := b.Stats(); st.TxFrames <= uint64(ab.frames.Load()) {
					t.Errorf("B wrote %d frames for %d read: want more (segments)", st.TxFrames, ab.frames.Load())
				}
				if ba.super.Load() != 0 {
					t.Errorf("got %d super-frames from a TAP opened without offloads, want 0", ba.super.Load())
				}
			}
		})
	}
}

func TestPrivilegedTAPMultiqueue(t *testing.T) {
	needPrivileged(t)
	ns := newNetns(t)
	d, _ := tapInNetns(t, ns, macA, "192.0.2.1/24", "192.0.2.2", macB, Options{Queues: 2})
	qs := d.Queues()
	if len(qs) != 2 {
		t.Fatalf("got %d queues, want 2", len(qs))
	}
	if want := d.Name() + "#1"; qs[1].Name() != want || !qs[1].(Operationaler).Operational() {
		t.Errorf("queue 1: got name %q, want %q, and operational", qs[1].Name(), want)
	}
	var per [2]atomic.Int64
	var total atomic.Int64
	for i, q := range qs {
		c := startReader(t, q, 16)
		go func() {
			for g := range c {
				if isUDPTo(g.b, 9999) {
					per[i].Add(1)
					total.Add(1)
				}
			}
		}()
	}
	const flows = 64
	for i := 0; i < flows; i++ {
		c := udpDial(t, ns, fmt.Sprintf("192.0.2.1:%d", 20000+i), "192.0.2.2:9999")
		c.Write([]byte("x"))
	}
	waitFor(t, "all flows", func() bool { return total.Load() == flows })
	t.Logf("queue 0: %d flows, queue 1: %d flows", per[0].Load(), per[1].Load())
	if per[0].Load() == 0 || per[1].Load() == 0 {
		t.Errorf("got %d and %d flows on the two queues, want both used", per[0].Load(), per[1].Load())
	}
	// Any queue can send.
	ln := udpListen(t, ns, "192.0.2.1:7777")
	if _, err := qs[1].Write([]Frame{udpFrame(mac(macA), 1, 7777, []byte("via queue 1"), false)}); err != nil {
		t.Fatal(err)
	}
	if got := recvUDP(t, ln); string(got) != "via queue 1" {
		t.Errorf("got %q, want %q", got, "via queue 1")
	}
}

func TestPrivilegedTAPGone(t *testing.T) {
	needPrivileged(t)
	// Deleting the namespace's name (ip netns del) is not a way to lose the
	// device: the queue's socket holds the namespace alive.
	for _, how := range []string{"link deleted"} {
		t.Run(how, func(t *testing.T) {
			ns := newNetns(t)
			d, name := tapInNetns(t, ns, macA, "192.0.2.1/24", "192.0.2.2", macB, Options{})
			errc := make(chan error, 1)
			go func() {
				fr := NewFrames(8, Headroom+MaxFrame)
				for {
					if _, err := d.Read(fr); err != nil {
						errc <- err
						return
					}
				}
			}()
			ipCmd(t, "-n", ns, "link", "del", name)
			select {
			case err := <-errc:
				if !errorsIs(err, ErrDeviceGone) {
					t.Errorf("Read: got %v, want ErrDeviceGone", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Read still blocked 5s after the device went away")
			}
			if d.Operational() {
				t.Error("Operational: got true, want false")
			}
			f := udpFrame(mac(macA), 1, 2, []byte("x"), false)
			if _, err := d.Write([]Frame{f}); !errorsIs(err, ErrDeviceGone) {
				t.Errorf("Write: got %v, want ErrDeviceGone", err)
			}
		})
	}
}

func TestPrivilegedTAPSmallBuffers(t *testing.T) {
	needPrivileged(t)
	ns := newNetns(t)
	d, _ := tapInNetns(t, ns, macA, "192.0.2.1/24", "192.0.2.2", macB, Options{})
	c := udpDial(t, ns, "192.0.2.1:4003", "192.0.2.2:9996")
	c.Write(pattern(1000))
	c.Write([]byte("short"))
	// A frame longer than the caller's buffer is dropped and counted,
	// never handed over cut.
	small := NewFrames(4, Headroom+200)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		n, err := d.Read(small)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < n; i++ {
			b := small[i].Bytes()
			if isUDPTo(b, 9996) {
				if string(udpPayload(b)) != "short" {
					t.Fatalf("got a %d-byte payload, want only the short datagram", len(udpPayload(b)))
				}
				if got := d.Stats().Drops[DropTruncated]; got != 1 {
					t.Errorf("got %d truncated drops, want 1", got)
				}
				return
			}
		}
	}
	t.Fatal("the short datagram did not arrive")
}

func TestPrivilegedClose(t *testing.T) {
	needPrivileged(t)
	open := map[string]func(t *testing.T) Port{
		"tap": func(t *testing.T) Port {
			d, _ := tapInNetns(t, newNetns(t), macA, "192.0.2.1/24", "192.0.2.2", macB, Options{})
			return d
		},
		"tap queue": func(t *testing.T) Port {
			d, _ := tapInNetns(t, newNetns(t), macA, "192.0.2.1/24", "192.0.2.2", macB, Options{Queues: 3})
			return d.Queues()[2]
		},
		"netdev": func(t *testing.T) Port {
			ns := newNetns(t)
			va, _ := vethPair(t, ns, newNetns(t))
			p, err := OpenNetdev(va, ns, Options{})
			if err != nil {
				t.Fatal(err)
			}
			return p
		},
		"tun": func(t *testing.T) Port {
			p, err := OpenTUN(uniq("rtu"), newNetns(t), Options{Up: true})
			if err != nil {
				t.Fatal(err)
			}
			return p
		},
	}
	for name, fn := range open {
		t.Run(name, func(t *testing.T) {
			p := fn(t)
			errc := make(chan error, 1)
			go func() {
				fr := NewFrames(64, Headroom+MaxFrame)
				for {
					if _, err := p.Read(fr); err != nil {
						errc <- err
						return
					}
				}
			}()
			time.Sleep(50 * time.Millisecond)
			p.Close()
			select {
			case err := <-errc:
				if !errorsIs(err, ErrClosed) {
					t.Errorf("Read: got %v, want ErrClosed", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Close did not unblock Read")
			}
			if _, err := p.Write(smallFrames(1)); !errorsIs(err, ErrClosed) {
				t.Errorf("Write after Close: got %v, want ErrClosed", err)
			}
			if o, ok := p.(Operationaler); !ok || o.Operational() {
				t.Error("Operational after Close: got true, want false")
			}
		})
	}
}

// vethPair creates a veth pair with one end in each namespace.
func vethPair(t testing.TB, nsA, nsB string) (a, b string) {
	t.Helper()
	a, b = uniq("rva"), uniq("rvb")
	ipCmd(t, "link", "add", a, "netns", nsA, "type", "veth", "peer", "name", b, "netns", nsB)
	ipCmd(t, "-n", nsA, "link", "set", a, "address", mac(macA).String(), "up")
	ipCmd(t, "-n", nsB, "link", "set", b, "address", mac(macB).String(), "up")
	return a, b
}

func TestPrivilegedNetdev(t *testing.T) {
	needPrivileged(t)
	nsA, nsB := newNetns(t), newNetns(t)
	va, vb := vethPair(t, nsA, nsB)
	ipCmd(t, "-n", nsB, "addr", "add", "192.0.2.2/24", "dev", vb)
	ipCmd(t, "-n", nsB, "neigh", "replace", "192.0.2.1", "lladdr", mac(macA).String(), "dev", vb, "nud", "permanent")
	p, err := Open("netdev:"+va+"@"+nsA, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	nd := p.(*Netdev)
	if want := "netdev:" + va + "@" + nsA; p.Name() != want {
		t.Errorf("Name: got %q, want %q", p.Name(), want)
	}
	waitFor(t, "link running", nd.Operational)
	frames := startReader(t, p, 16)

	t.Run("read", func(t *testing.T) {
		c := udpDial(t, nsB, "192.0.2.2:4000", "192.0.2.1:9999")
		c.Write([]byte("over veth"))
		g := waitFrame(t, frames, "UDP frame", func(g got) bool { return isUDPTo(g.b, 9999) })
		if string(udpPayload(g.b)) != "over veth" || !bytes.Equal(g.b[6:12], macB[:]) {
			t.Errorf("got %x, want the datagram from %s", g.b, mac(macB))
		}
	})

	t.Run("write", func(t *testing.T) {
		ln := udpListen(t, nsB, "192.0.2.2:7777")
		b, g := pktSpec{proto: protoUDP, src: ip4A, dst: ip4B, sport: 5555, dport: 7777, payload: []byte("from roam"), partial: true}.build()
		f := frameOf(b, g) // macA -> macB
		if _, err := p.Write([]Frame{f}); err != nil {
			t.Fatal(err)
		}
		if got := recvUDP(t, ln); string(got) != "from roam" {
			t.Errorf("got %q, want %q", got, "from roam")
		}
		// Our own frame must not come back (PACKET_IGNORE_OUTGOING).
		deadline := time.After(200 * time.Millisecond)
		for {
			select {
			case g := <-frames:
				if isUDPTo(g.b, 7777) {
					t.Fatal("read back a frame we wrote")
				}
				continue
			case <-deadline:
			}
			break
		}
		// Without offloads the port segments and completes checksums itself.
		plain, err := OpenNetdev(va, nsA, Options{NoOffload: true})
		if err != nil {
			t.Fatal(err)
		}
		defer plain.Close()
		pb, pg := pktSpec{proto: protoUDP, src: ip4A, dst: ip4B, sport: 5555, dport: 7777, payload: []byte("partial, no offload"), partial: true}.build()
		soft := superFrame(pktSpec{proto: protoUDP, src: ip4A, dst: ip4B, sport: 5555, dport: 7777, payload: pattern(2500)}, GSOUDPL4, 1000)
		if _, err := plain.Write([]Frame{frameOf(pb, pg), soft}); err != nil {
			t.Fatal(err)
		}
		if got := recvUDP(t, ln); string(got) != "partial, no offload" {
			t.Errorf("got %q, want %q", got, "partial, no offload")
		}
		for i := 0; i < 3; i++ {
			want := pattern(2500)[i*1000 : min(2500, (i+1)*1000)]
			if got := recvUDP(t, ln); !bytes.Equal(got, want) {
				t.Errorf("software segment %d: got %d bytes, want %d", i, len(got), len(want))
			}
		}
		if st := plain.Stats(); st.TxFrames != 4 {
			t.Errorf("got %d frames out without offload, want 4 (1 + 3 segments)", st.TxFrames)
		}
		// A USO super-frame leaves whole and arrives as datagrams.
		us := superFrame(pktSpec{proto: protoUDP, src: ip4A, dst: ip4B, sport: 5555, dport: 7777, payload: pattern(4000)}, GSOUDPL4, 1000)
		if _, err := p.Write([]Frame{us}); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 4; i++ {
			if got := recvUDP(t, ln); !bytes.Equal(got, pattern(4000)[i*1000:(i+1)*1000]) {
				t.Errorf("datagram %d: got %d bytes, want bytes %d..%d of the super-frame", i, len(got), i*1000, (i+1)*1000)
			}
		}
	})

	t.Run("gso", func(t *testing.T) {
		// With an address on our end too, a TCP transfer from B is seen
		// on A's side as super-frames.
		ipCmd(t, "-n", nsA, "addr", "add", "192.0.2.1/24", "dev", va)
		for len(frames) > 0 {
			<-frames
		}
		tcpTransfer(t, nsB, nsA, "192.0.2.1:5002", 4<<20)
		super, biggest := 0, 0
		for len(frames) > 0 {
			g := <-frames
			if g.gso.Type != GSONone {
				super++
				biggest = max(biggest, len(g.b))
			}
		}
		if super == 0 || biggest <= 1514 {
			t.Errorf("got %d super-frames (largest %d bytes), want some over 1514 bytes", super, biggest)
		}
	})

	st := p.(Stater).Stats()
	if st.RxFrames == 0 || st.TxFrames != 2 {
		t.Errorf("got stats %+v, want frames in and 2 out", st)
	}

	t.Run("down and up", func(t *testing.T) {
		ipCmd(t, "-n", nsA, "link", "set", va, "down")
		waitFor(t, "not operational", func() bool { return !nd.Operational() })
		time.Sleep(100 * time.Millisecond)
		select {
		case _, ok := <-frames:
			if !ok {
				t.Fatal("Read failed on a link that went down; want it to wait")
			}
		default:
		}
		f := udpFrame(mac(macB), 1, 7777, []byte("x"), false)
		if _, err := p.Write([]Frame{f}); err != nil {
			t.Errorf("Write on a down link: got %v, want a counted drop", err)
		}
		if d := nd.Stats().Drops[DropLinkDown]; d != 1 {
			t.Errorf("got %d link_down drops, want 1", d)
		}
		ipCmd(t, "-n", nsA, "link", "set", va, "up")
		waitFor(t, "operational", nd.Operational)
		c := udpDial(t, nsB, "192.0.2.2:4001", "192.0.2.1:9998")
		c.Write([]byte("back up"))
		waitFrame(t, frames, "frame after link up", func(g got) bool { return isUDPTo(g.b, 9998) })
	})

	t.Run("gone", func(t *testing.T) {
		ipCmd(t, "-n", nsA, "link", "set", va, "down")
		time.Sleep(100 * time.Millisecond) // the reader sees ENETDOWN with the link still there
		ipCmd(t, "-n", nsA, "link", "del", va)
		waitFor(t, "reader to stop", func() bool {
			select {
			case _, ok := <-frames:
				return !ok
			default:
				return false
			}
		})
		_, err := p.Read(NewFrames(1, Headroom+MaxFrame))
		if !errorsIs(err, ErrDeviceGone) {
			t.Errorf("Read: got %v, want ErrDeviceGone", err)
		}
		if nd.Operational() {
			t.Error("Operational: got true, want false")
		}
	})
}

func TestPrivilegedTUN(t *testing.T) {
	needPrivileged(t)
	ns := newNetns(t)
	name := uniq("rtu")
	p, err := Open("tun:"+name+"@"+ns, Options{Up: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	tn := p.(*TUN)
	if want := "tun:" + name + "@" + ns; p.Name() != want || tn.BatchSize() < 1 {
		t.Errorf("got Name %q, BatchSize %d; want %q and at least 1", p.Name(), tn.BatchSize(), want)
	}
	ipCmd(t, "-n", ns, "addr", "add", "192.0.2.1/24", "dev", name)
	waitFor(t, "TUN up", tn.Operational)
	frames := startReader(t, p, 128)

	c := udpDial(t, ns, "192.0.2.1:4000", "192.0.2.2:9999")
	c.Write([]byte("up the tun"))
	g := waitFrame(t, frames, "UDP frame", func(g got) bool { return isUDPTo(g.b, 9999) })
	if !bytes.Equal(g.b[0:6], TUNLocalMAC) || !bytes.Equal(g.b[6:12], TUNPeerMAC) || binary.BigEndian.Uint16(g.b[12:]) != etherIPv4 {
		t.Errorf("synthetic Ethernet header: got % x", g.b[:14])
	}
	if string(udpPayload(g.b)) != "up the tun" {
		t.Errorf("got payload %q", udpPayload(g.b))
	}

	ln := udpListen(t, ns, "192.0.2.1:7777")
	f := udpFrame(TUNPeerMAC, 5555, 7777, []byte("down the tun"), true)
	arp := frameOf(make([]byte, 42), GSO{})
	binary.BigEndian.PutUint16(arp.Buf[arp.Off+12:], 0x0806)
	us := superFrame(pktSpec{proto: protoUDP, src: ip4B, dst: ip4A, sport: 5555, dport: 7777, payload: pattern(3000)}, GSOUDPL4, 1000)
	if _, err := p.Write([]Frame{f, arp, us}); err != nil {
		t.Fatal(err)
	}
	if got := recvUDP(t, ln); string(got) != "down the tun" {
		t.Errorf("got %q, want %q", got, "down the tun")
	}
	for i := 0; i < 3; i++ {
		if got := recvUDP(t, ln); !bytes.Equal(got, pattern(3000)[i*1000:(i+1)*1000]) {
			t.Errorf("segment %d: got %d bytes", i, len(got))
		}
	}
	if !bytes.Equal(f.Buf[f.Off:f.Off+6], TUNPeerMAC) {
		t.Error("Write did not restore the caller's Ethernet header")
	}
	if st := tn.Stats(); st.Drops[DropNotIP] != 1 {
		t.Errorf("got %d not_ip drops, want 1 (the ARP frame)", st.Drops[DropNotIP])
	}

	ipCmd(t, "-n", ns, "link", "del", name)
	waitFor(t, "reader to stop", func() bool {
		select {
		case _, ok := <-frames:
			return !ok
		default:
			return false
		}
	})
	if _, err := p.Read(NewFrames(128, Headroom+MaxFrame)); !errorsIs(err, ErrDeviceGone) {
		t.Errorf("Read after delete: got %v, want ErrDeviceGone", err)
	}
}

func errorsIs(err, target error) bool { return err != nil && errorsIsStd(err, target) }

var errorsIsStd = errors.Is

// blast sends 60-byte UDP datagrams from a socket in ns to raddr until stop
// is closed or max datagrams went out.
func blast(t testing.TB, ns, laddr, raddr string, stop <-chan struct{}, max int) {
	c := udpDial(t, ns, laddr, raddr)
	go func() {
		msg := make([]byte, 18)
		for i := 0; i < max; i++ {
			select {
			case <-stop:
				return
			default:
			}
			c.Write(msg)
		}
	}()
}

func BenchmarkPrivilegedTAPWrite(b *testing.B) {
	needPrivileged(b)
	ns := newNetns(b)
	d, _ := tapInNetns(b, ns, macA, "192.0.2.1/24", "192.0.2.2", macB, Options{})
	frames := smallFrames(64)
	for i := range frames {
		copy(frames[i].Buf[Headroom:], macB[:]) // not the guest's MAC: the kernel drops it early
	}
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		k, err := d.Write(frames)
		if err != nil {
			b.Fatal(err)
		}
		n += k
	}
	reportPPS(b, n)
}

func BenchmarkPrivilegedTAPRead(b *testing.B) {
	needPrivileged(b)
	ns := newNetns(b)
	d, _ := tapInNetns(b, ns, macA, "192.0.2.1/24", "192.0.2.2", macB, Options{})
	stop := make(chan struct{})
	defer close(stop)
	for i := 0; i < 2; i++ {
		blast(b, ns, fmt.Sprintf("192.0.2.1:%d", 4000+i), "192.0.2.2:9", stop, 1<<30)
	}
	frames := NewFrames(64, Headroom+MaxFrame)
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		k, err := d.Read(frames)
		if err != nil {
			b.Fatal(err)
		}
		n += k
	}
	reportPPS(b, n)
}

// BenchmarkPrivilegedTAPForwardTCP moves a TCP stream between two namespaces
// through two TAPs and a userspace forwarder, with offloads on both TAPs.
func BenchmarkPrivilegedTAPForwardTCP(b *testing.B) {
	needPrivileged(b)
	nsA, nsB := newNetns(b), newNetns(b)
	a, _ := tapInNetns(b, nsA, macA, "192.0.2.1/24", "192.0.2.2", macB, Options{})
	d, _ := tapInNetns(b, nsB, macB, "192.0.2.2/24", "192.0.2.1", macA, Options{})
	var ab, ba forwarder
	ab.run(a, d)
	ba.run(d, a)
	var ln net.Listener
	inNS(b, nsB, func() (err error) {
		ln, err = net.Listen("tcp", "192.0.2.2:5003")
		return err
	})
	defer ln.Close()
	recvd := make(chan int64, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			recvd <- 0
			return
		}
		n, _ := io.CopyBuffer(io.Discard, c, make([]byte, 1<<20))
		c.Close()
		recvd <- n
	}()
	var c net.Conn
	inNS(b, nsA, func() (err error) {
		c, err = net.DialTimeout("tcp", "192.0.2.2:5003", 5*time.Second)
		return err
	})
	chunk := pattern(1 << 20)
	b.SetBytes(int64(len(chunk)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
	c.Close()
	if n := <-recvd; n != int64(b.N)*int64(len(chunk)) {
		b.Errorf("received %d bytes, want %d", n, int64(b.N)*int64(len(chunk)))
	}
	reportPPS(b, int(ab.frames.Load()+ba.frames.Load()))
	a.Close()
	d.Close()
}

func BenchmarkPrivilegedNetdevWrite(b *testing.B) {
	needPrivileged(b)
	nsA, nsB := newNetns(b), newNetns(b)
	va, _ := vethPair(b, nsA, nsB)
	p, err := OpenNetdev(va, nsA, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	frames := smallFrames(64) // to macB, no address there: dropped by B's stack
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		k, err := p.Write(frames)
		if err != nil {
			b.Fatal(err)
		}
		n += k
	}
	reportPPS(b, n)
}

func BenchmarkPrivilegedNetdevRead(b *testing.B) {
	needPrivileged(b)
	nsA, nsB := newNetns(b), newNetns(b)
	va, vb := vethPair(b, nsA, nsB)
	ipCmd(b, "-n", nsB, "addr", "add", "192.0.2.2/24", "dev", vb)
	ipCmd(b, "-n", nsB, "neigh", "replace", "192.0.2.1", "lladdr", mac(macA).String(), "dev", vb, "nud", "permanent")
	p, err := OpenNetdev(va, nsA, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	stop := make(chan struct{})
	defer close(stop)
	for i := 0; i < 2; i++ {
		blast(b, nsB, fmt.Sprintf("192.0.2.2:%d", 4000+i), "192.0.2.1:9", stop, 1<<30)
	}
	frames := NewFrames(64, Headroom+MaxFrame)
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		k, err := p.Read(frames)
		if err != nil {
			b.Fatal(err)
		}
		n += k
	}
	reportPPS(b, n)
}

func TestPrivilegedNoAllocs(t *testing.T) {
	needPrivileged(t)
	nsA, nsB := newNetns(t), newNetns(t)
	d, _ := tapInNetns(t, nsA, macA, "192.0.2.1/24", "192.0.2.2", macB, Options{})
	ns2 := newNetns(t)
	va, vb := vethPair(t, ns2, nsB)
	ipCmd(t, "-n", nsB, "addr", "add", "192.0.2.2/24", "dev", vb)
	ipCmd(t, "-n", nsB, "neigh", "replace", "192.0.2.1", "lladdr", mac(macA).String(), "dev", vb, "nud", "permanent")
	nd, err := OpenNetdev(va, ns2, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer nd.Close()
	tn, err := OpenTUN(uniq("rtu"), nsA, Options{Up: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tn.Close()

	stop := make(chan struct{})
	defer close(stop)
	blast(t, nsA, "192.0.2.1:4000", "192.0.2.2:9", stop, 1<<20)
	blast(t, nsB, "192.0.2.2:4000", "192.0.2.1:9", stop, 1<<20)
	frames := smallFrames(16)
	for i := range frames {
		copy(frames[i].Buf[Headroom:], macB[:])
	}
	rframes := NewFrames(16, Headroom+MaxFrame)
	tunFrames := smallFrames(16)
	tests := []struct {
		name string
		fn   func()
	}{
		{"TAP Write", func() { d.Write(frames) }},
		{"TAP Read", func() { d.Read(rframes) }},
		{"Netdev Write", func() { nd.Write(frames) }},
		{"Netdev Read", func() { nd.Read(rframes) }},
		{"TUN Write", func() { tn.Write(tunFrames) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn()
			if n := testing.AllocsPerRun(50, tc.fn); n != 0 {
				t.Errorf("got %v allocations per run, want 0", n)
			}
		})
	}
}

func TestPrivilegedNetdevSmallBuffers(t *testing.T) {
	needPrivileged(t)
	nsA, nsB := newNetns(t), newNetns(t)
	va, vb := vethPair(t, nsA, nsB)
	ipCmd(t, "-n", nsB, "addr", "add", "192.0.2.2/24", "dev", vb)
	ipCmd(t, "-n", nsB, "neigh", "replace", "192.0.2.1", "lladdr", mac(macA).String(), "dev", vb, "nud", "permanent")
	p, err := OpenNetdev(va, nsA, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c := udpDial(t, nsB, "192.0.2.2:4003", "192.0.2.1:9996")
	c.Write(pattern(1000))
	c.Write([]byte("short"))
	small := NewFrames(4, Headroom+200)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		n, err := p.Read(small)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < n; i++ {
			b := small[i].Bytes()
			if isUDPTo(b, 9996) {
				if string(udpPayload(b)) != "short" {
					t.Fatalf("got a %d-byte payload, want only the short datagram", len(udpPayload(b)))
				}
				if got := p.Stats().Drops[DropTruncated]; got != 1 {
					t.Errorf("got %d truncated drops, want 1", got)
				}
				return
			}
		}
	}
	t.Fatal("the short datagram did not arrive")
}

func TestPrivilegedOpenErrors(t *testing.T) {
	needPrivileged(t)
	ns := newNetns(t)
	d, name := tapInNetns(t, ns, macA, "192.0.2.1/24", "192.0.2.2", macB, Options{})
	_ = d
	va, _ := vethPair(t, ns, newNetns(t))
	tests := []struct {
		spec string
		want string
	}{
		{"tap:x@" + uniq("nonexist"), "netns"},
		{"tap:" + name + "@" + ns, "TUNSETIFF"}, // held by the first Device
		{"tap:" + va + "@" + ns, "TUNSETIFF"},   // a veth, not a TAP
		{"netdev:" + uniq("nolink") + "@" + ns, "find link"},
		{"tun:" + va + "@" + ns, "create tun"},
	}
	for _, tc := range tests {
		t.Run(tc.spec, func(t *testing.T) {
			p, err := Open(tc.spec, Options{})
			if err == nil {
				p.Close()
				t.Fatal("got no error")
			}
			if !strings.Contains(err.Error(), tc.spec) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %q, want an error naming the spec and saying %q", err, tc.want)
			}
		})
	}
	// Closing the port frees the name: the same spec opens again.
	d.Close()
	p, err := Open("tap:"+name+"@"+ns, Options{})
	if err != nil {
		t.Fatalf("reopening after Close: %v", err)
	}
	p.Close()
}

// TestPrivilegedNetdevOnTAP attaches a netdev port to a TAP held by another
// process, as roam does with QEMU's -netdev tap: a Device plays QEMU.
func TestPrivilegedNetdevOnTAP(t *testing.T) {
	needPrivileged(t)
	ns := newNetns(t)
	qemu, name := tapInNetns(t, ns, macA, "192.0.2.1/24", "192.0.2.2", macB, Options{})
	nd, err := OpenNetdev(name, ns, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer nd.Close()
	fromGuest := startReader(t, nd, 16)
	toGuest := startReader(t, qemu, 16)
	// Frames between two MACs that are not the TAP's: the namespace's
	// stack ignores them.
	spec := pktSpec{proto: protoTCP, src: netip.MustParseAddr("192.0.2.10"), dst: netip.MustParseAddr("192.0.2.20"), sport: 1000, dport: 2000, seq: 5, flags: 0x18, payload: pattern(30000)}
	isOurs := func(g got) bool {
		_, l4, proto, _, ok := l4Info(g.b)
		return ok && proto == protoTCP && binary.BigEndian.Uint16(g.b[l4+2:]) == 2000
	}
	for _, dir := range []struct {
		name string
		src  Port
		dst  <-chan got
	}{
		{"guest to roam", qemu, fromGuest},
		{"roam to guest", nd, toGuest},
	} {
		t.Run(dir.name, func(t *testing.T) {
			f := superFrame(spec, GSOTCPv4, 1448)
			copy(f.Buf[f.Off:], []byte{0x02, 0, 0, 0, 0, 0x20, 0x02, 0, 0, 0, 0, 0x10})
			want := append([]byte(nil), f.Bytes()...)
			if _, err := dir.src.Write([]Frame{f}); err != nil {
				t.Fatal(err)
			}
			g := waitFrame(t, dir.dst, "the super-frame", isOurs)
			if g.gso.Type != GSOTCPv4 || g.gso.Size != 1448 || !g.gso.NeedsCsum {
				t.Errorf("got GSO %+v, want a TCPv4 super-frame of 1448-byte segments with a partial checksum", g.gso)
			}
			if !bytes.Equal(g.b, want) {
				t.Errorf("got %d bytes, want the %d-byte super-frame unchanged", len(g.b), len(want))
			}
		})
	}
}
