package tap_test

// Hostile input through every port kind's input path: every capture of
// ../shared/pcaps (malformed, truncated, fuzzed, bad checksums, VLAN
// stacks, fragment sprays, odd link types) goes into a switch through the
// stream socket's length-prefixed framing (a real unix socket and the
// real driver), the virtio-net header decode of the TAP and AF_PACKET
// drivers (with a plain header, and with a hostile one claiming GSO and
// checksum offload), and the TUN driver's wrap. No panic, every frame
// counted under a verdict (by the driver or by the switch), no goroutine
// or memory left behind; files the reader cannot parse are rejected with
// an error naming them.

import (
	"encoding/binary"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"roam/bench"
	vswitch "roam/switch"
	"roam/tap"
	"roam/tap/taptest"
)

const sharedPcaps = "../../shared/pcaps"

// loadCaptures returns every frame of every readable capture, and checks
// that the unreadable ones are refused with an error naming the file.
func loadCaptures(t *testing.T) [][]byte {
	t.Helper()
	var files []string
	filepath.WalkDir(sharedPcaps, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && (strings.HasSuffix(p, ".pcap") || strings.HasSuffix(p, ".pcapng") || strings.Contains(p, "badfile")) {
			files = append(files, p)
		}
		return nil
	})
	if len(files) == 0 {
		t.Skipf("no captures under %s (../shared is absent)", sharedPcaps)
	}
	var frames [][]byte
	bad := 0
	for _, p := range files {
		c, err := bench.ReadFile(p)
		if strings.Contains(p, "/badfile/") {
			if err == nil || !strings.Contains(err.Error(), p) {
				t.Errorf("%s: got error %v, want one naming the file", p, err)
			}
			bad++
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		for _, pk := range c.Packets {
			frames = append(frames, pk.Data)
		}
	}
	if bad == 0 {
		t.Error("no unreadable capture was tried")
	}
	t.Logf("%d captures (%d refused as unreadable), %d frames", len(files), bad, len(frames))
	return frames
}

// hostileSwitch returns a switch whose record (source/dest check off, so
// that any source passes) owns 10.0.0.0/8's 10.0.0.2 on port guest, leaves
// by PAT through an in-memory uplink, and the uplink port.
func hostileSwitch(t *testing.T, guestPort tap.Port) *vswitch.Switch {
	guest := guestPort.Name()
	now := time.Unix(1_700_000_000, 0)
	sw := vswitch.New(vswitch.Options{Now: func() time.Time { return now }, MaxFlows: 1 << 16})
	up := taptest.NewSink("uplink")
	if err := sw.AddPort(up); err != nil {
		t.Fatal(err)
	}
	cfg := &vswitch.Config{
		PublicIP:    netip.MustParseAddr("203.0.113.1"),
		Uplink:      "uplink",
		UpstreamMAC: []byte{2, 0, 0, 0, 0xff, 1},
		Subnets:     []vswitch.Subnet{{ID: "subnet-0", Prefix: netip.MustParsePrefix("10.0.0.0/8")}},
		Groups: []vswitch.Group{{ID: "sg-open", Ingress: []vswitch.Rule{{CIDR: netip.MustParsePrefix("0.0.0.0/0")}},
			Egress: []vswitch.Rule{{CIDR: netip.MustParsePrefix("0.0.0.0/0")}}}},
		Records: []vswitch.Record{{ID: "eni-00000002", Subnet: "subnet-0", IPs: []netip.Addr{netip.MustParseAddr("10.0.0.2")},
			MAC: []byte{2, 0, 0, 0, 0, 2}, Groups: []string{"sg-open"}, Ports: []string{guest},
			PublicIPs: []vswitch.Association{{Public: netip.MustParseAddr("203.0.113.2"), Private: netip.MustParseAddr("10.0.0.2")}}}},
	}
	if err := sw.AddPort(guestPort); err != nil {
		t.Fatal(err)
	}
	if err := sw.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	return sw
}

// verdicts checks that every frame the switch took has one verdict.
func verdicts(t *testing.T, sw *vswitch.Switch, want uint64) {
	t.Helper()
	c := sw.Counters()
	if c.Packets != want {
		t.Fatalf("switch counted %d frames, want %d", c.Packets, want)
	}
	if c.Forwarded+c.Local+c.Dropped+uint64(c.Held) < c.Packets {
		t.Fatalf("verdicts do not cover the frames: %+v", c)
	}
}

func baseline() (goroutines int, heap uint64) {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return runtime.NumGoroutine(), m.HeapInuse
}

// settle waits (bounded) for the goroutines to come back to n and checks
// the heap came back near heap.
func settle(t *testing.T, n int, heap uint64) {
	t.Helper()
	var g int
	var h uint64
	for i := 0; i < 100; i++ {
		if g, h = baseline(); g <= n {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if g > n {
		buf := make([]byte, 1<<16)
		t.Fatalf("%d goroutines left, baseline %d:\n%s", g, n, buf[:runtime.Stack(buf, true)])
	}
	if h > heap+32<<20 {
		t.Fatalf("heap %d MiB after, %d MiB before", h>>20, heap>>20)
	}
	t.Logf("goroutines %d (baseline %d), heap %d KiB (baseline %d KiB)", g, n, h>>10, heap>>10)
}

func TestHostileCapturesStream(t *testing.T) {
	frames := loadCaptures(t)
	g0, h0 := baseline()
	func() {
		path := filepath.Join(t.TempDir(), "s.sock")
		st, err := tap.OpenStream(path)
		if err != nil {
			t.Fatal(err)
		}
		sw := hostileSwitch(t, st)
		sw.Start()
		defer sw.Close()
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// Read (and discard) what roam sends back, so its writes never
		// back up; roam never waits for a slow peer anyway.
		go func() {
			buf := make([]byte, 64<<10)
			for {
				if _, err := c.Read(buf); err != nil {
					return
				}
			}
		}()
		var sent, runts, big uint64
		var out []byte
		for _, f := range frames {
			if len(f) > tap.MaxFrame {
				big++ // a length over MaxFrame is a framing error: tried below
				continue
			}
			if len(f) < 14 {
				runts++
			}
			out = binary.BigEndian.AppendUint32(out, uint32(len(f)))
			out = append(out, f...)
			sent++
			if len(out) > 1<<20 {
				if _, err := c.Write(out); err != nil {
					t.Fatal(err)
				}
				out = out[:0]
			}
		}
		if _, err := c.Write(out); err != nil {
			t.Fatal(err)
		}
		want := sent - runts
		deadline := time.Now().Add(30 * time.Second)
		for sw.Counters().Packets < want && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		s := st.Stats()
		verdicts(t, sw, want)
		if s.Drops[tap.DropRunt] != runts || s.RxFrames != want {
			t.Fatalf("driver: rx %d, runts %d; want %d and %d", s.RxFrames, s.Drops[tap.DropRunt], want, runts)
		}
		// A length over MaxFrame: the peer is dropped (counted), and the
		// next peer is served.
		c2, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		c2.Write(binary.BigEndian.AppendUint32(nil, tap.MaxFrame+1))
		deadline = time.Now().Add(10 * time.Second)
		for st.Stats().Drops[tap.DropPeerError] == 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		c2.Close()
		if st.Stats().Drops[tap.DropPeerError] != 1 {
			t.Fatalf("peer_error %d, want 1", st.Stats().Drops[tap.DropPeerError])
		}
		t.Logf("stream: %d frames sent, %d runts dropped by the driver, %d over MaxFrame not sent; switch verdicts %+v", sent, runts, big, sw.Counters().Drops)
	}()
	settle(t, g0, h0)
	runtime.KeepAlive(frames)
}

func TestHostileCapturesVnetHdr(t *testing.T) {
	frames := loadCaptures(t)
	g0, h0 := baseline()
	func() {
		sw := hostileSwitch(t, taptest.NewSink("tap0"))
		defer sw.Close()
		fs := tap.NewFrames(64, tap.Headroom+tap.MaxFrame)
		plain := make([]byte, tap.VnetHdrLen)
		// A hostile header: checksum offload at the TCP checksum and TSO,
		// whatever the frame is.
		hostile := []byte{1, 1, 0, 0, 0xa8, 0x05, 34, 0, 16, 0}
		var in, rejected uint64
		for _, h := range [][]byte{plain, hostile} {
			n := 0
			flush := func() {
				sw.Process("tap0", fs[:n])
				n = 0
			}
			for _, f := range frames {
				if len(f) > tap.MaxFrame || len(f) < 14 {
					rejected++ // the drivers drop these before decoding (oversize, runt)
					continue
				}
				fr := &fs[n]
				fr.Off = tap.Headroom
				fr.Len = copy(fr.Buf[tap.Headroom:], f)
				if r := tap.DecodeVnetHdr(h, fr.Bytes(), &fr.GSO); r != 0 {
					rejected++
					continue
				}
				in++
				n++
				if n == len(fs) {
					flush()
				}
			}
			flush()
		}
		verdicts(t, sw, in)
		t.Logf("vnet: %d frames in, %d rejected by the header decode or size; drops %v", in, rejected, sw.Counters().Drops)
	}()
	settle(t, g0, h0)
	runtime.KeepAlive(frames)
}

func TestHostileCapturesTUN(t *testing.T) {
	frames := loadCaptures(t)
	g0, h0 := baseline()
	func() {
		sw := hostileSwitch(t, taptest.NewSink("guest"))
		defer sw.Close()
		fs := tap.NewFrames(64, tap.Headroom+tap.MaxFrame)
		var in, notIP uint64
		n := 0
		for _, f := range frames {
			if len(f) < 14 || len(f) > tap.MaxFrame {
				continue
			}
			pkt := f[14:] // what a TUN device reads: the IP packet
			fr := &fs[n]
			copy(fr.Buf[tap.Headroom+tap.TUNOffset:], pkt)
			if !tap.WrapTUN(fr, len(pkt)) {
				notIP++
				continue
			}
			in++
			n++
			if n == len(fs) {
				sw.Process("uplink", fs[:n])
				n = 0
			}
		}
		sw.Process("uplink", fs[:n])
		verdicts(t, sw, in)
		c := sw.Counters()
		t.Logf("tun: %d packets in (as the uplink), %d not IP; drops %v", in, notIP, c.Drops)
		if notIP == 0 {
			t.Error("no capture had a non-IP frame: the not_ip path was not tried")
		}
	}()
	settle(t, g0, h0)
	runtime.KeepAlive(frames)
}

// TestPrivilegedHostileCapturesTAP writes every capture's frames into the
// kernel side of a real TAP device (an AF_PACKET socket on the link, in
// the root namespace; the link is named with the test's PID and deleted
// after) and lets the switch read them through the TAP driver (vnet
// header and all): no panic, every frame the kernel took counted by the
// driver or the switch, no goroutine left.
func TestPrivilegedHostileCapturesTAP(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates a TAP device and an AF_PACKET socket")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs ip (iproute2)")
	}
	frames := loadCaptures(t)
	g0, h0 := baseline()
	name := fmt.Sprintf("rh%d", os.Getpid()%100000)
	func() {
		p, err := tap.Open("tap:"+name, tap.Options{MTU: 9000})
		if err != nil {
			t.Fatal(err)
		}
		defer exec.Command("ip", "link", "del", name).Run()
		// No IPv6 (the kernel's own router solicitations would add frames).
		os.WriteFile("/proc/sys/net/ipv6/conf/"+name+"/disable_ipv6", []byte("1"), 0o644)
		if out, err := exec.Command("ip", "link", "set", name, "up").CombinedOutput(); err != nil {
			p.Close()
			t.Fatalf("ip link set up: %v: %s", err, out)
		}
		sw := hostileSwitch(t, p)
		sw.Start()
		defer sw.Close()
		ifi, err := net.InterfaceByName(name)
		if err != nil {
			t.Fatal(err)
		}
		fd, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_RAW, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer syscall.Close(fd)
		sa := &syscall.SockaddrLinklayer{Ifindex: ifi.Index, Halen: 6}
		var sent, refused uint64
		for i, f := range frames {
			if err := syscall.Sendto(fd, f, 0, sa); err != nil {
				refused++ // the kernel refuses some (EMSGSIZE, EINVAL): they never reach roam
				continue
			}
			sent++
			if i%256 == 255 { // let the reader keep up; the TAP queue is bounded
				for j := 0; j < 200 && sw.Counters().Packets+tapDrops(p) < sent; j++ {
					time.Sleep(time.Millisecond)
				}
			}
		}
		deadline := time.Now().Add(30 * time.Second)
		for sw.Counters().Packets+tapDrops(p) < sent && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		c := sw.Counters()
		st := p.(tap.Stater).Stats()
		t.Logf("tap: %d frames sent by the kernel (%d refused by it); driver rx %d, drops %v; switch %d frames, drops %v",
			sent, refused, st.RxFrames, st.Drops, c.Packets, c.Drops)
		if c.Packets != st.RxFrames {
			t.Fatalf("switch counted %d frames, the driver read %d", c.Packets, st.RxFrames)
		}
		// The kernel may drop frames on a full TAP queue (counted by the
		// link's tx_dropped); none was lost between the driver and the
		// switch, and every frame read has a verdict.
		if c.Forwarded+c.Local+c.Dropped+uint64(c.Held) < c.Packets {
			t.Fatalf("verdicts do not cover the frames: %+v", c)
		}
		if c.Packets+tapDrops(p) == 0 {
			t.Fatal("nothing arrived")
		}
	}()
	settle(t, g0, h0)
	runtime.KeepAlive(frames)
}

func tapDrops(p tap.Port) uint64 { return p.(tap.Stater).Stats().Dropped() }
