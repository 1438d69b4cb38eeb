package vswitch

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"roam/tap"
)

// A host on the uplink segment that spoofs the upstream (or any on-link
// address) must not move where roam sends its egress: roam learns a
// neighbour only from answers to its own ARP requests, and gratuitous ARP
// only moves an address already resolved, at most once a second, logged.

var (
	upstreamIP = netip.MustParseAddr("203.0.113.254")
	onlinkIP   = netip.MustParseAddr("203.0.113.9")
	macOnlink  = net.HardwareAddr{0x02, 0, 0, 0, 0xee, 0x09}
	macEvil    = net.HardwareAddr{0x02, 0, 0, 0, 0x0e, 0x01}
	macEvil2   = net.HardwareAddr{0x02, 0, 0, 0, 0x0e, 0x02}
)

// logSink keeps the messages of every record logged.
type logSink struct {
	mu   sync.Mutex
	msgs []string
}

func (l *logSink) Enabled(context.Context, slog.Level) bool { return true }
func (l *logSink) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	l.msgs = append(l.msgs, r.Message)
	l.mu.Unlock()
	return nil
}
func (l *logSink) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logSink) WithGroup(string) slog.Handler      { return l }

// count returns how many messages contain s.
func (l *logSink) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, m := range l.msgs {
		if strings.Contains(m, s) {
			n++
		}
	}
	return n
}

func arpReplyFrame(t testing.TB, smac net.HardwareAddr, sip, tip netip.Addr) []byte {
	f := arpFrame(t, smac, sip, tip)
	f[14+7] = 2
	return f
}

// spoofWorld is the test world with the upstream given by IP (resolved with
// ARP, as roamd --upstream IP does), already resolved by roam's own request.
func spoofWorld(t *testing.T) (*world, *logSink) {
	t.Helper()
	logs := &logSink{}
	w := newWorld(t, Options{Logger: slog.New(logs)})
	w.cfg.UpstreamMAC = nil
	w.cfg.Upstream = upstreamIP
	w.cfg.PublicCIDR = netip.MustParsePrefix("203.0.113.0/24")
	w.apply()
	w.wantARPRequest(upstreamIP)
	w.send("uplink", arpReplyFrame(t, macUp, upstreamIP, patIP))
	if got := w.egress(remote); !bytes.Equal(got, macUp) {
		t.Fatalf("resolved by roam's own request: egress to %v, want %v", got, macUp)
	}
	return w, logs
}

// wantARPRequest receives roam's ARP request for a from the uplink.
func (w *world) wantARPRequest(a netip.Addr) {
	w.t.Helper()
	pk := w.recv("uplink")
	arp, _ := pk.Layer(layers.LayerTypeARP).(*layers.ARP)
	if arp == nil || arp.Operation != layers.ARPRequest || !bytes.Equal(arp.DstProtAddress, a.AsSlice()) {
		w.t.Fatalf("got %v, want an ARP request for %v", pk, a)
	}
}

// egress sends a UDP datagram from record B to dst and returns the MAC it
// left the uplink for (ARP requests roam sends meanwhile are skipped).
func (w *world) egress(dst netip.Addr) net.HardwareAddr {
	w.t.Helper()
	w.send("vmB", udpFrame(w.t, macB, gwMAC, ap(ipB, 1), ap(dst, 2), nil))
	for {
		pk := w.recv("uplink")
		if pk.Layer(layers.LayerTypeARP) != nil {
			continue
		}
		return pk.Layer(layers.LayerTypeEthernet).(*layers.Ethernet).DstMAC
	}
}

func TestUplinkSpoofedNeighbors(t *testing.T) {
	w, logs := spoofWorld(t)

	// (a) An IPv4 frame with the upstream's address (or any on-link
	// address) as source and an attacker's MAC teaches nothing.
	for _, src := range []netip.Addr{upstreamIP, onlinkIP} {
		eth := &layers.Ethernet{SrcMAC: macEvil, DstMAC: gwMAC, EthernetType: layers.EthernetTypeIPv4}
		ip := ipv4(src, patIP, layers.IPProtocolUDP)
		u := &layers.UDP{SrcPort: 53, DstPort: 40000}
		_ = u.SetNetworkLayerForChecksum(ip)
		w.send("uplink", ser(t, eth, ip, u, gopacket.Payload([]byte("spoof"))))
	}
	if got := w.egress(remote); !bytes.Equal(got, macUp) {
		t.Fatalf("after a spoofed IPv4 frame: egress to %v, want the upstream %v", got, macUp)
	}
	unresolved := w.drops("neighbor_unresolved")
	w.send("vmB", udpFrame(t, macB, gwMAC, ap(ipB, 3), ap(onlinkIP, 4), nil))
	w.wantARPRequest(onlinkIP) // not learned from the spoofed frame: roam asks
	w.none("uplink")           // and the datagram waits for the answer
	if got := w.drops("neighbor_unresolved"); got != unresolved {
		t.Fatalf("neighbor_unresolved %d, want %d (the datagram waits)", got, unresolved)
	}

	// (b) An ARP reply nobody asked for, naming the upstream's address
	// with the attacker's MAC, is refused and counted.
	w.send("uplink", arpReplyFrame(t, macEvil, upstreamIP, patIP))
	if got := w.egress(remote); !bytes.Equal(got, macUp) {
		t.Fatalf("after an unsolicited ARP reply: egress to %v, want the upstream %v", got, macUp)
	}
	if got := w.drops("arp_unsolicited"); got != 1 {
		t.Fatalf("arp_unsolicited %d, want 1", got)
	}

	// A legitimate reply to roam's own request (for onlinkIP, asked
	// above) resolves, and the datagram that waited for it goes out; a
	// second, conflicting answer to the same request is refused: the first
	// answer wins.
	w.send("uplink", arpReplyFrame(t, macOnlink, onlinkIP, patIP))
	if eth := w.recv("uplink").Layer(layers.LayerTypeEthernet).(*layers.Ethernet); !bytes.Equal(eth.DstMAC, macOnlink) {
		t.Fatalf("the datagram that waited went to %v, want %v", eth.DstMAC, macOnlink)
	}
	w.send("uplink", arpReplyFrame(t, macEvil, onlinkIP, patIP))
	if got := w.egress(onlinkIP); !bytes.Equal(got, macOnlink) {
		t.Fatalf("on-link host resolved by roam's request: egress to %v, want %v", got, macOnlink)
	}
	if got := w.drops("arp_unsolicited"); got != 2 {
		t.Fatalf("arp_unsolicited %d, want 2", got)
	}

	// (c) A gratuitous ARP for an address roam has not resolved creates
	// no entry.
	other := netip.MustParseAddr("203.0.113.77")
	w.send("uplink", arpFrame(t, macEvil, other, other))
	w.send("uplink", arpReplyFrame(t, macEvil, other, other))
	w.send("vmB", udpFrame(t, macB, gwMAC, ap(ipB, 5), ap(other, 6), nil))
	w.wantARPRequest(other)
	w.none("uplink")
	if got := w.drops("arp_unsolicited"); got != 4 {
		t.Fatalf("arp_unsolicited %d, want 4", got)
	}
	if n := logs.count("refused"); n != 1 {
		t.Fatalf("%d refusal log lines in one second, want 1 (rate-limited): %q", n, logs.msgs)
	}

	// (d) A flood of gratuitous ARPs for the resolved upstream, with MACs
	// that keep changing, moves it at most once a second, each move
	// logged; the rest are refused and counted.
	const seconds, perSecond = 3, 100
	before := w.drops("arp_unsolicited")
	for s := 0; s < seconds; s++ {
		w.clk.Advance(time.Second)
		for i := 0; i < perSecond; i++ {
			mac := macEvil
			if i%2 == 1 {
				mac = macEvil2
			}
			w.send("uplink", arpFrame(t, mac, upstreamIP, upstreamIP))
		}
	}
	if n := logs.count("moved by gratuitous ARP"); n != seconds {
		t.Fatalf("%d neighbour moves logged for %d s of flood, want %d (one a second)", n, seconds, seconds)
	}
	if got := w.drops("arp_unsolicited") - before; got < seconds*perSecond/2-seconds || got > seconds*perSecond-seconds {
		t.Fatalf("arp_unsolicited grew by %d during the flood", got)
	}
	if n := logs.count("refused"); n > 1+seconds {
		t.Fatalf("%d refusal log lines, want at most one a second", n)
	}

	// The entry still refreshes: once it is 30 s old roam asks again, and
	// the upstream's answer to that request puts it back.
	w.clk.Advance(30 * time.Second)
	w.send("vmB", udpFrame(t, macB, gwMAC, ap(ipB, 1), ap(remote, 2), nil))
	w.wantARPRequest(upstreamIP)
	w.recv("uplink") // the datagram, still to the entry it has
	w.send("uplink", arpReplyFrame(t, macUp, upstreamIP, patIP))
	if got := w.egress(remote); !bytes.Equal(got, macUp) {
		t.Fatalf("after the refresh: egress to %v, want the upstream %v", got, macUp)
	}
}

func TestUplinkNeighborLifetime(t *testing.T) {
	w, _ := spoofWorld(t)
	// An answer that comes after its request expired is refused.
	w.send("vmB", udpFrame(t, macB, gwMAC, ap(ipB, 3), ap(onlinkIP, 4), nil))
	w.wantARPRequest(onlinkIP)
	w.clk.Advance(5 * time.Second)
	w.send("uplink", arpReplyFrame(t, macOnlink, onlinkIP, patIP))
	if got := w.drops("arp_unsolicited"); got != 1 {
		t.Fatalf("late answer: arp_unsolicited %d, want 1", got)
	}
	// The datagram that waited for the expired request is dropped when
	// roam asks again (the late answer resolved nothing).
	unresolved := w.drops("neighbor_unresolved")
	w.send("vmB", udpFrame(t, macB, gwMAC, ap(ipB, 3), ap(onlinkIP, 4), nil))
	w.wantARPRequest(onlinkIP)
	w.none("uplink")
	if got := w.drops("neighbor_unresolved"); got != unresolved+1 {
		t.Fatalf("late answer resolved the host: neighbor_unresolved %d, want %d", got, unresolved+1)
	}
	// An on-link host that asks for roam's address while roam's request
	// for it is outstanding resolves it (as the kernel's incomplete
	// entry), and the datagram that waited goes out; asking without that
	// teaches nothing.
	w.send("uplink", arpFrame(t, macOnlink, onlinkIP, patIP))
	if eth := w.recv("uplink").Layer(layers.LayerTypeEthernet).(*layers.Ethernet); !bytes.Equal(eth.DstMAC, macOnlink) {
		t.Fatalf("the datagram that waited went to %v, want %v", eth.DstMAC, macOnlink)
	}
	w.recv("uplink") // roam's answer
	if got := w.egress(onlinkIP); !bytes.Equal(got, macOnlink) {
		t.Fatalf("egress to %v, want %v", got, macOnlink)
	}
	w.send("uplink", arpFrame(t, macEvil, onlinkIP, patIP))
	w.recv("uplink") // roam answers the question, learns nothing from it
	if got := w.egress(onlinkIP); !bytes.Equal(got, macOnlink) {
		t.Fatalf("after a request with another MAC: egress to %v, want %v", got, macOnlink)
	}

	// An upstream that stops answering: 30 s after its last answer roam
	// asks again, still sending to the MAC it has; 5 s of unanswered
	// requests later the entry is gone and egress waits for an answer.
	w.clk.Advance(31 * time.Second)
	w.send("vmB", udpFrame(t, macB, gwMAC, ap(ipB, 1), ap(remote, 2), nil))
	w.wantARPRequest(upstreamIP)
	if got := w.recv("uplink").Layer(layers.LayerTypeEthernet).(*layers.Ethernet); !bytes.Equal(got.DstMAC, macUp) {
		t.Fatalf("while probing: egress to %v, want %v", got.DstMAC, macUp)
	}
	w.clk.Advance(5 * time.Second)
	w.send("vmB", udpFrame(t, macB, gwMAC, ap(ipB, 1), ap(remote, 2), nil))
	w.wantARPRequest(upstreamIP)
	w.none("uplink") // the entry is gone: the datagram waits for an answer
	// At most holdPerAddr frames wait; the rest are dropped and counted.
	unresolved = w.drops("neighbor_unresolved")
	for i := 1; i < holdPerAddr+2; i++ {
		w.send("vmB", udpFrame(t, macB, gwMAC, ap(ipB, 1), ap(remote, 2), nil))
	}
	w.none("uplink")
	if got := w.drops("neighbor_unresolved"); got != unresolved+2 {
		t.Fatalf("unanswered upstream: neighbor_unresolved %d, want %d", got, unresolved+2)
	}
	w.send("uplink", arpReplyFrame(t, macUp, upstreamIP, patIP))
	for i := 0; i < holdPerAddr; i++ {
		if eth := w.recv("uplink").Layer(layers.LayerTypeEthernet).(*layers.Ethernet); !bytes.Equal(eth.DstMAC, macUp) {
			t.Fatalf("waiting datagram %d went to %v, want the upstream %v", i, eth.DstMAC, macUp)
		}
	}
	w.none("uplink")
	if got := w.egress(remote); !bytes.Equal(got, macUp) {
		t.Fatalf("answered again: egress to %v, want %v", got, macUp)
	}
}

// The table of roam's outstanding requests is bounded; expired requests
// make room again.
func TestUplinkPendingBounded(t *testing.T) {
	var n neighbors
	const now = 1_700_000_000
	asked := 0
	for i := uint32(0); i < 3*maxPending; i++ {
		if ok, _ := n.ask(0xcb007100+i, now); ok {
			asked++
		}
	}
	if asked != maxPending || len(n.pending) > maxPending {
		t.Fatalf("asked %d (table %d), want %d", asked, len(n.pending), maxPending)
	}
	if ok, _ := n.ask(0x0a000001, now+askTTL+1); !ok {
		t.Fatal("the table did not make room once its requests expired")
	}
	if len(n.pending) > maxPending {
		t.Fatalf("table %d entries, want at most %d", len(n.pending), maxPending)
	}
}

// Refusing spoofed ARP allocates nothing per frame.
func TestUplinkSpoofNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	w, _ := spoofWorld(t)
	tmpl := [][]byte{
		arpReplyFrame(t, macEvil, upstreamIP, patIP),
		arpFrame(t, macEvil, upstreamIP, upstreamIP),
		arpReplyFrame(t, macEvil2, upstreamIP, upstreamIP),
		arpFrame(t, macEvil, onlinkIP, onlinkIP),
	}
	fs := tap.NewFrames(64, tap.Headroom+128)
	fill := func() {
		for i := range fs {
			fs[i].Off = tap.Headroom
			fs[i].Len = copy(fs[i].Buf[tap.Headroom:], tmpl[i%len(tmpl)])
		}
	}
	fill()
	w.sw.Process("uplink", fs) // the first refusal is logged
	allocs := testing.AllocsPerRun(100, func() {
		fill()
		w.sw.Process("uplink", fs)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per batch of 64 spoofed ARPs, want 0", allocs)
	}
	if got := w.egress(remote); !bytes.Equal(got, macUp) {
		t.Fatalf("egress to %v, want %v", got, macUp)
	}
}
