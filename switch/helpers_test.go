package vswitch

import (
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"roam/internal/packet"
	"roam/tap"
	"roam/tap/taptest"
)

// Test world: subnet 10.0.0.0/24 (gateway 10.0.0.1), records A (10.0.0.10,
// public 198.51.100.10) and B (10.0.0.20, PAT), subnet 10.0.1.0/24 with C
// (10.0.1.30), PAT address 203.0.113.1, and an uplink.
var (
	macA   = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0a}
	macB   = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x14}
	macC   = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x1e}
	macUp  = net.HardwareAddr{0x02, 0, 0, 0, 0xff, 0x01}
	gwMAC  = net.HardwareAddr(DefaultGatewayMAC)
	ipA    = netip.MustParseAddr("10.0.0.10")
	ipB    = netip.MustParseAddr("10.0.0.20")
	ipC    = netip.MustParseAddr("10.0.1.30")
	gw0    = netip.MustParseAddr("10.0.0.1")
	eipA   = netip.MustParseAddr("198.51.100.10")
	patIP  = netip.MustParseAddr("203.0.113.1")
	remote = netip.MustParseAddr("192.0.2.50")
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type world struct {
	t     *testing.T
	sw    *Switch
	clk   *clock
	ports map[string]*taptest.Port
	cfg   Config
}

func baseConfig() Config {
	return Config{
		PublicIP:    patIP,
		Uplink:      "uplink",
		UpstreamMAC: macUp,
		Subnets: []Subnet{
			{ID: "subnet-0", Prefix: netip.MustParsePrefix("10.0.0.0/24")},
			{ID: "subnet-1", Prefix: netip.MustParsePrefix("10.0.1.0/24")},
		},
		Groups: []Group{
			{ID: "sg-web", Ingress: []Rule{{Proto: packet.ProtoUDP, FromPort: 5000, ToPort: 5999, CIDR: netip.MustParsePrefix("0.0.0.0/0")},
				{Proto: packet.ProtoTCP, FromPort: 80, ToPort: 80, CIDR: netip.MustParsePrefix("0.0.0.0/0")}},
				Egress: []Rule{{CIDR: netip.MustParsePrefix("0.0.0.0/0")}}},
			{ID: "sg-int", Ingress: []Rule{{CIDR: netip.MustParsePrefix("10.0.0.0/8")}}, Egress: []Rule{{CIDR: netip.MustParsePrefix("0.0.0.0/0")}}},
			{ID: "sg-deny", Egress: []Rule{{Proto: packet.ProtoTCP, FromPort: 443, ToPort: 443, CIDR: netip.MustParsePrefix("0.0.0.0/0")}}},
		},
		Records: []Record{
			{ID: "eni-0000000a", Subnet: "subnet-0", IPs: []netip.Addr{ipA}, MAC: macA, SourceDestCheck: true,
				Groups: []string{"sg-web"}, PublicIPs: []Association{{Public: eipA, Private: ipA}}, Ports: []string{"vmA"}},
			{ID: "eni-00000014", Subnet: "subnet-0", IPs: []netip.Addr{ipB}, MAC: macB, SourceDestCheck: true, Groups: []string{"sg-int"}, Ports: []string{"vmB"}},
			{ID: "eni-0000001e", Subnet: "subnet-1", IPs: []netip.Addr{ipC}, MAC: macC, SourceDestCheck: true, Groups: []string{"sg-int"}, Ports: []string{"vmC"}},
		},
	}
}

func newWorld(t *testing.T, o Options) *world {
	t.Helper()
	clk := &clock{t: time.Unix(1_700_000_000, 0)}
	o.Now = clk.Now
	w := &world{t: t, sw: New(o), clk: clk, ports: map[string]*taptest.Port{}}
	for _, n := range []string{"vmA", "vmB", "vmC", "vmA2", "uplink"} {
		p := taptest.New(n, 4096)
		w.ports[n] = p
		if err := w.sw.AddPort(p); err != nil {
			t.Fatal(err)
		}
	}
	w.cfg = baseConfig()
	w.apply()
	// The first Apply announces the public IPs on the uplink; tests start
	// from quiet ports.
	for w.ports["uplink"].Pending() > 0 {
		w.ports["uplink"].Recv(0)
	}
	return w
}

func (w *world) apply() {
	w.t.Helper()
	c := w.cfg
	if err := w.sw.Apply(&c); err != nil {
		w.t.Fatalf("Apply: %v", err)
	}
}

// send runs frame through the switch as if it came from port.
func (w *world) send(port string, frame []byte) {
	fs := tap.NewFrames(1, tap.Headroom+2048)
	fs[0].Len = copy(fs[0].Buf[tap.Headroom:], frame)
	w.sw.Process(port, fs)
}

// recv returns the next frame written to port, or fails.
func (w *world) recv(port string) gopacket.Packet {
	w.t.Helper()
	f, ok := w.ports[port].Recv(time.Second)
	if !ok {
		w.t.Fatalf("no frame on %s; counters %+v", port, w.sw.Counters())
	}
	return gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
}

// none asserts nothing was written to port.
func (w *world) none(port string) {
	w.t.Helper()
	if n := w.ports[port].Pending(); n != 0 {
		f, _ := w.ports[port].Recv(0)
		w.t.Fatalf("%d unexpected frames on %s, first: %v", n, port, gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default))
	}
}

func (w *world) drops(reason string) uint64 { return w.sw.Counters().Drops[reason] }

func ser(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

func ipv4(src, dst netip.Addr, proto layers.IPProtocol) *layers.IPv4 {
	return &layers.IPv4{Version: 4, TTL: 64, Protocol: proto, SrcIP: src.AsSlice(), DstIP: dst.AsSlice(), Flags: layers.IPv4DontFragment}
}

func udpFrame(t testing.TB, smac, dmac net.HardwareAddr, src, dst netip.AddrPort, payload []byte) []byte {
	eth := &layers.Ethernet{SrcMAC: smac, DstMAC: dmac, EthernetType: layers.EthernetTypeIPv4}
	ip := ipv4(src.Addr(), dst.Addr(), layers.IPProtocolUDP)
	u := &layers.UDP{SrcPort: layers.UDPPort(src.Port()), DstPort: layers.UDPPort(dst.Port())}
	u.SetNetworkLayerForChecksum(ip)
	return ser(t, eth, ip, u, gopacket.Payload(payload))
}

func tcpFrame(t testing.TB, smac, dmac net.HardwareAddr, src, dst netip.AddrPort, flags string, seq, ack uint32, payload []byte) []byte {
	eth := &layers.Ethernet{SrcMAC: smac, DstMAC: dmac, EthernetType: layers.EthernetTypeIPv4}
	ip := ipv4(src.Addr(), dst.Addr(), layers.IPProtocolTCP)
	tc := &layers.TCP{SrcPort: layers.TCPPort(src.Port()), DstPort: layers.TCPPort(dst.Port()), Seq: seq, Ack: ack, Window: 65535}
	for _, c := range flags {
		switch c {
		case 'S':
			tc.SYN = true
		case 'A':
			tc.ACK = true
		case 'F':
			tc.FIN = true
		case 'R':
			tc.RST = true
		case 'P':
			tc.PSH = true
		}
	}
	if tc.SYN {
		tc.Options = []layers.TCPOption{{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{0x05, 0xb4}}}
	}
	tc.SetNetworkLayerForChecksum(ip)
	return ser(t, eth, ip, tc, gopacket.Payload(payload))
}

func echoFrame(t testing.TB, smac, dmac net.HardwareAddr, src, dst netip.Addr, typ uint8, id, seq uint16) []byte {
	eth := &layers.Ethernet{SrcMAC: smac, DstMAC: dmac, EthernetType: layers.EthernetTypeIPv4}
	ip := ipv4(src, dst, layers.IPProtocolICMPv4)
	ic := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, 0), Id: id, Seq: seq}
	return ser(t, eth, ip, ic, gopacket.Payload([]byte("ping-payload")))
}

func arpFrame(t testing.TB, smac net.HardwareAddr, sip, tip netip.Addr) []byte {
	eth := &layers.Ethernet{SrcMAC: smac, DstMAC: net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, EthernetType: layers.EthernetTypeARP}
	a := &layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
		Operation: layers.ARPRequest, SourceHwAddress: smac, SourceProtAddress: sip.AsSlice(),
		DstHwAddress: make([]byte, 6), DstProtAddress: tip.AsSlice()}
	return ser(t, eth, a)
}

// checksumsOK verifies the IPv4 header and L4 checksums of an Ethernet
// frame with an independent full computation.
func checksumsOK(t testing.TB, frame []byte) {
	t.Helper()
	var p packet.Parsed
	if r := packet.Parse(frame, &p); r != packet.ReasonNone {
		t.Fatalf("parse: %v", r)
	}
	if p.L4 == 0 {
		return
	}
	seg := frame[p.L4:p.End]
	switch p.Proto {
	case packet.ProtoTCP, packet.ProtoUDP:
		if p.Proto == packet.ProtoUDP && seg[6] == 0 && seg[7] == 0 {
			return
		}
		if s := packet.Sum(seg, packet.PseudoSum(p.Src, p.Dst, p.Proto, len(seg))); s != 0xffff {
			t.Fatalf("L4 checksum does not verify (sum %#x)", s)
		}
	case packet.ProtoICMP:
		if s := packet.Sum(seg, 0); s != 0xffff {
			t.Fatalf("ICMP checksum does not verify (sum %#x)", s)
		}
	}
}

func ap(a netip.Addr, port uint16) netip.AddrPort { return netip.AddrPortFrom(a, port) }

func gopacket_Payload(b []byte) gopacket.Payload { return gopacket.Payload(b) }

func newNullPort(name string) *taptest.Sink { return taptest.NewSink(name) }
