package vswitch

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/google/gopacket/layers"

	"roam/internal/packet"
)

func TestARPResponder(t *testing.T) {
	w := newWorld(t, Options{})
	cases := []struct {
		name    string
		port    string
		smac    []byte
		sip     netip.Addr
		tip     netip.Addr
		want    []byte // nil: no answer
		dropped string
	}{
		{"gateway", "vmA", macA, ipA, gw0, gwMAC, ""},
		{"record in subnet", "vmA", macA, ipA, ipB, macB, ""},
		{"record in other subnet", "vmA", macA, ipA, ipC, nil, "arp_ignored"},
		{"unowned address", "vmA", macA, ipA, netip.MustParseAddr("10.0.0.99"), nil, "arp_ignored"},
		{"spoofed sender", "vmA", macA, ipB, gw0, nil, "source_check"},
		{"gratuitous", "vmA", macA, ipA, ipA, nil, "arp_ignored"},
		{"uplink public IP", "uplink", macUp, remote, eipA, gwMAC, ""},
		{"uplink PAT address", "uplink", macUp, remote, patIP, gwMAC, ""},
		{"uplink other", "uplink", macUp, remote, netip.MustParseAddr("203.0.113.99"), nil, "arp_ignored"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := w.drops(tc.dropped)
			w.send(tc.port, arpFrame(t, tc.smac, tc.sip, tc.tip))
			if tc.want == nil {
				w.none(tc.port)
				if got := w.drops(tc.dropped); got != before+1 {
					t.Fatalf("drops[%s] = %d, want %d", tc.dropped, got, before+1)
				}
				return
			}
			pk := w.recv(tc.port)
			a, _ := pk.Layer(layers.LayerTypeARP).(*layers.ARP)
			if a == nil || a.Operation != layers.ARPReply {
				t.Fatalf("got %v, want an ARP reply", pk)
			}
			if !bytes.Equal(a.SourceHwAddress, tc.want) || !bytes.Equal(a.SourceProtAddress, tc.tip.AsSlice()) {
				t.Fatalf("reply says %v is at %v, want %v at %v", a.SourceProtAddress, a.SourceHwAddress, tc.tip, tc.want)
			}
			if !bytes.Equal(a.DstHwAddress, tc.smac) {
				t.Fatalf("reply to %v, want %v", a.DstHwAddress, tc.smac)
			}
		})
	}
}

func TestPingGateway(t *testing.T) {
	w := newWorld(t, Options{})
	w.send("vmA", echoFrame(t, macA, gwMAC, ipA, gw0, packet.ICMPEcho, 7, 1))
	pk := w.recv("vmA")
	ic := pk.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
	ip := pk.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	if ic.TypeCode.Type() != layers.ICMPv4TypeEchoReply || ic.Id != 7 || !ip.SrcIP.Equal(gw0.AsSlice()) || !ip.DstIP.Equal(ipA.AsSlice()) {
		t.Fatalf("got %v, want an echo reply from the gateway", pk)
	}
	checksumsOK(t, pk.Data())
	// The PAT address answers pings from outside too.
	w.send("uplink", echoFrame(t, macUp, gwMAC, remote, patIP, packet.ICMPEcho, 9, 1))
	pk = w.recv("uplink")
	if ic := pk.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4); ic.TypeCode.Type() != layers.ICMPv4TypeEchoReply {
		t.Fatalf("got %v, want an echo reply", pk)
	}
	checksumsOK(t, pk.Data())
}

func TestVMToVM(t *testing.T) {
	w := newWorld(t, Options{})
	// Same subnet: TTL kept, sender's MAC as source.
	w.send("vmA", udpFrame(t, macA, macB, ap(ipA, 4000), ap(ipB, 53), []byte("q")))
	pk := w.recv("vmB")
	ip := pk.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	eth := pk.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	if ip.TTL != 64 || !bytes.Equal(eth.SrcMAC, macA) || !bytes.Equal(eth.DstMAC, macB) {
		t.Fatalf("same subnet: got ttl %d src %v dst %v, want 64 %v %v", ip.TTL, eth.SrcMAC, eth.DstMAC, macA, macB)
	}
	// B answers; the reply is tracked even though A's group has no rule for it.
	w.send("vmB", udpFrame(t, macB, macA, ap(ipB, 53), ap(ipA, 4000), []byte("a")))
	w.recv("vmA")
	// Across subnets: routed, TTL decremented, gateway MAC as source.
	w.send("vmB", udpFrame(t, macB, gwMAC, ap(ipB, 4001), ap(ipC, 53), []byte("q")))
	pk = w.recv("vmC")
	ip = pk.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	eth = pk.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	if ip.TTL != 63 || !bytes.Equal(eth.SrcMAC, gwMAC) || !bytes.Equal(eth.DstMAC, macC) {
		t.Fatalf("across subnets: got ttl %d src %v dst %v", ip.TTL, eth.SrcMAC, eth.DstMAC)
	}
	checksumsOK(t, pk.Data())
}

func TestSecurityGroups(t *testing.T) {
	w := newWorld(t, Options{})
	// A's group allows UDP 5000-5999 in; B's group allows only 10/8 in.
	w.send("uplink", udpFrame(t, macUp, gwMAC, ap(remote, 999), ap(eipA, 5001), []byte("in")))
	w.recv("vmA")
	w.send("uplink", udpFrame(t, macUp, gwMAC, ap(remote, 999), ap(eipA, 6001), []byte("in")))
	w.none("vmA")
	if w.drops("sg_ingress") != 1 {
		t.Fatalf("sg_ingress drops = %d, want 1", w.drops("sg_ingress"))
	}
	// C (10.0.1.30) may reach B: its address is in B's 10/8 rule.
	w.send("vmC", udpFrame(t, macC, gwMAC, ap(ipC, 1), ap(ipB, 2), nil))
	w.recv("vmB")
	// An egress-restricted record.
	w.cfg.Records[1].Groups = []string{"sg-deny"}
	w.apply()
	w.send("vmB", tcpFrame(t, macB, gwMAC, ap(ipB, 40000), ap(remote, 80), "S", 1, 0, nil))
	w.none("uplink")
	if w.drops("sg_egress") != 1 {
		t.Fatalf("sg_egress drops = %d, want 1", w.drops("sg_egress"))
	}
	w.send("vmB", tcpFrame(t, macB, gwMAC, ap(ipB, 40000), ap(remote, 443), "S", 1, 0, nil))
	w.recv("uplink")
}

func TestSourceDestCheck(t *testing.T) {
	w := newWorld(t, Options{})
	spoof := netip.MustParseAddr("10.0.0.99")
	w.send("vmA", udpFrame(t, macA, gwMAC, ap(spoof, 1), ap(remote, 2), nil))
	w.none("uplink")
	if got := w.drops("source_check"); got != 1 {
		t.Fatalf("source_check drops = %d, want 1", got)
	}
	// With the check off, and a route to B for 172.16.0.0/16, B routes for others.
	w.cfg.Records[1].SourceDestCheck = false
	w.cfg.Routes = []Route{{Prefix: netip.MustParsePrefix("172.16.0.0/16"), Record: "eni-00000014"}}
	w.apply()
	w.send("vmC", udpFrame(t, macC, gwMAC, ap(ipC, 1), ap(netip.MustParseAddr("172.16.1.1"), 2), nil))
	w.recv("vmB")
	w.send("vmB", udpFrame(t, macB, gwMAC, ap(netip.MustParseAddr("172.16.1.1"), 2), ap(ipC, 1), nil))
	w.recv("vmC")
	// With the check on, B may not receive traffic for 172.16/16.
	w.cfg.Records[1].SourceDestCheck = true
	w.apply()
	w.send("vmC", udpFrame(t, macC, gwMAC, ap(ipC, 3), ap(netip.MustParseAddr("172.16.1.1"), 2), nil))
	w.none("vmB")
	if got := w.drops("dest_check"); got != 1 {
		t.Fatalf("dest_check drops = %d, want 1", got)
	}
}

func TestOneToOneNAT(t *testing.T) {
	w := newWorld(t, Options{})
	w.send("vmA", tcpFrame(t, macA, gwMAC, ap(ipA, 40000), ap(remote, 80), "S", 100, 0, nil))
	pk := w.recv("uplink")
	ip := pk.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	tc := pk.Layer(layers.LayerTypeTCP).(*layers.TCP)
	if !ip.SrcIP.Equal(eipA.AsSlice()) || tc.SrcPort != 40000 {
		t.Fatalf("outbound source %v:%d, want %v:40000", ip.SrcIP, tc.SrcPort, eipA)
	}
	checksumsOK(t, pk.Data())
	w.send("uplink", tcpFrame(t, macUp, gwMAC, ap(remote, 80), ap(eipA, 40000), "SA", 500, 101, nil))
	pk = w.recv("vmA")
	ip = pk.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	if !ip.DstIP.Equal(ipA.AsSlice()) {
		t.Fatalf("reply to %v, want %v", ip.DstIP, ipA)
	}
	checksumsOK(t, pk.Data())
	// Inbound to the public IP: DNAT to A's private IP (group allows TCP 80).
	w.send("uplink", tcpFrame(t, macUp, gwMAC, ap(remote, 33333), ap(eipA, 80), "S", 1, 0, nil))
	pk = w.recv("vmA")
	ip = pk.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	if !ip.DstIP.Equal(ipA.AsSlice()) || ip.TTL != 63 {
		t.Fatalf("inbound to %v ttl %d, want %v ttl 63", ip.DstIP, ip.TTL, ipA)
	}
	checksumsOK(t, pk.Data())
	w.send("vmA", tcpFrame(t, macA, gwMAC, ap(ipA, 80), ap(remote, 33333), "SA", 9, 2, nil))
	pk = w.recv("uplink")
	if ip := pk.Layer(layers.LayerTypeIPv4).(*layers.IPv4); !ip.SrcIP.Equal(eipA.AsSlice()) {
		t.Fatalf("reply from %v, want %v", ip.SrcIP, eipA)
	}
}

func TestPAT(t *testing.T) {
	w := newWorld(t, Options{})
	w.send("vmB", udpFrame(t, macB, gwMAC, ap(ipB, 5353), ap(remote, 53), []byte("q1")))
	pk := w.recv("uplink")
	ip := pk.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	u := pk.Layer(layers.LayerTypeUDP).(*layers.UDP)
	if !ip.SrcIP.Equal(patIP.AsSlice()) || u.SrcPort != 5353 {
		t.Fatalf("PAT source %v:%d, want %v:5353 (port preserved)", ip.SrcIP, u.SrcPort, patIP)
	}
	checksumsOK(t, pk.Data())
	// Endpoint-independent mapping: the same endpoint to another remote keeps the port.
	other := netip.MustParseAddr("192.0.2.77")
	w.send("vmB", udpFrame(t, macB, gwMAC, ap(ipB, 5353), ap(other, 53), []byte("q2")))
	pk = w.recv("uplink")
	if u := pk.Layer(layers.LayerTypeUDP).(*layers.UDP); u.SrcPort != 5353 {
		t.Fatalf("second remote got port %d, want 5353", u.SrcPort)
	}
	// C uses the same source port: it gets another public port.
	w.send("vmC", udpFrame(t, macC, gwMAC, ap(ipC, 5353), ap(remote, 53), []byte("q3")))
	pk = w.recv("uplink")
	cport := pk.Layer(layers.LayerTypeUDP).(*layers.UDP).SrcPort
	if cport == 5353 || cport%2 != 1 {
		t.Fatalf("C got public port %d, want another odd port", cport)
	}
	// Replies come back to each.
	w.send("uplink", udpFrame(t, macUp, gwMAC, ap(remote, 53), ap(patIP, 5353), []byte("a1")))
	if ip := w.recv("vmB").Layer(layers.LayerTypeIPv4).(*layers.IPv4); !ip.DstIP.Equal(ipB.AsSlice()) {
		t.Fatalf("reply to %v, want %v", ip.DstIP, ipB)
	}
	w.send("uplink", udpFrame(t, macUp, gwMAC, ap(remote, 53), ap(patIP, uint16(cport)), []byte("a3")))
	pk = w.recv("vmC")
	if u := pk.Layer(layers.LayerTypeUDP).(*layers.UDP); u.DstPort != 5353 {
		t.Fatalf("reply to port %d, want 5353", u.DstPort)
	}
	checksumsOK(t, pk.Data())
	// Unsolicited: a third remote to B's mapping is filtered (address and port dependent).
	w.send("uplink", udpFrame(t, macUp, gwMAC, ap(netip.MustParseAddr("192.0.2.99"), 53), ap(patIP, 5353), nil))
	w.none("vmB")
	if got := w.drops("unsolicited"); got != 1 {
		t.Fatalf("unsolicited drops = %d, want 1", got)
	}
	// ICMP echo through PAT: identifier mapped.
	w.send("vmB", echoFrame(t, macB, gwMAC, ipB, remote, packet.ICMPEcho, 77, 1))
	pk = w.recv("uplink")
	id := pk.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4).Id
	checksumsOK(t, pk.Data())
	w.send("uplink", echoFrame(t, macUp, gwMAC, remote, patIP, packet.ICMPEchoReply, id, 1))
	pk = w.recv("vmB")
	if ic := pk.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4); ic.Id != 77 {
		t.Fatalf("echo reply id %d, want 77", ic.Id)
	}
	checksumsOK(t, pk.Data())
}

func TestEndpointIndependentFiltering(t *testing.T) {
	w := newWorld(t, Options{EndpointIndependentFiltering: true})
	w.cfg.Records[1].Groups = []string{"sg-web"}
	w.apply()
	w.send("vmB", udpFrame(t, macB, gwMAC, ap(ipB, 5000), ap(remote, 53), nil))
	w.recv("uplink")
	w.send("uplink", udpFrame(t, macUp, gwMAC, ap(netip.MustParseAddr("192.0.2.99"), 7), ap(patIP, 5000), nil))
	pk := w.recv("vmB")
	if u := pk.Layer(layers.LayerTypeUDP).(*layers.UDP); u.DstPort != 5000 {
		t.Fatalf("got port %d, want 5000", u.DstPort)
	}
}

func TestHairpin(t *testing.T) {
	w := newWorld(t, Options{})
	// B (PAT) reaches A through A's public IP; A sees B's public address.
	w.send("vmB", udpFrame(t, macB, gwMAC, ap(ipB, 7000), ap(eipA, 5000), []byte("hp")))
	pk := w.recv("vmA")
	ip := pk.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	u := pk.Layer(layers.LayerTypeUDP).(*layers.UDP)
	if !ip.SrcIP.Equal(patIP.AsSlice()) || !ip.DstIP.Equal(ipA.AsSlice()) || u.DstPort != 5000 {
		t.Fatalf("hairpin: %v:%d -> %v:%d, want %v -> %v:5000", ip.SrcIP, u.SrcPort, ip.DstIP, u.DstPort, patIP, ipA)
	}
	checksumsOK(t, pk.Data())
	w.send("vmA", udpFrame(t, macA, gwMAC, ap(ipA, 5000), ap(patIP, uint16(u.SrcPort)), []byte("back")))
	pk = w.recv("vmB")
	ip = pk.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	if !ip.SrcIP.Equal(eipA.AsSlice()) || !ip.DstIP.Equal(ipB.AsSlice()) {
		t.Fatalf("hairpin reply: %v -> %v, want %v -> %v", ip.SrcIP, ip.DstIP, eipA, ipB)
	}
	checksumsOK(t, pk.Data())
}

func TestICMPErrorTranslation(t *testing.T) {
	w := newWorld(t, Options{})
	out := udpFrame(t, macB, gwMAC, ap(ipB, 6000), ap(remote, 9999), []byte("x"))
	w.send("vmB", out)
	sent := w.recv("uplink").Data()
	// The remote answers port unreachable about the translated datagram.
	var p packet.Parsed
	packet.Parse(sent, &p)
	eth := &layers.Ethernet{SrcMAC: macUp, DstMAC: gwMAC, EthernetType: layers.EthernetTypeIPv4}
	ip := ipv4(remote, patIP, layers.IPProtocolICMPv4)
	ic := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(3, 3)}
	errFrame := ser(t, eth, ip, ic, gopacket_Payload(sent[p.L3:p.End]))
	w.send("uplink", errFrame)
	pk := w.recv("vmB")
	checksumsOK(t, pk.Data())
	oip := pk.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	if !oip.DstIP.Equal(ipB.AsSlice()) || !oip.SrcIP.Equal(remote.AsSlice()) {
		t.Fatalf("outer %v -> %v, want %v -> %v", oip.SrcIP, oip.DstIP, remote, ipB)
	}
	var q packet.Parsed
	if r := packet.Parse(pk.Data(), &q); r != packet.ReasonNone || !q.IsError {
		t.Fatalf("parse error frame: %v", r)
	}
	if q.Inner.Src != packet.AddrFrom(ipB) || q.Inner.SPort != 6000 || q.Inner.Dst != packet.AddrFrom(remote) {
		t.Fatalf("embedded %v:%d -> %v, want %v:6000 -> %v", packet.Addr(q.Inner.Src), q.Inner.SPort, packet.Addr(q.Inner.Dst), ipB, remote)
	}
	inner := packet.IPv4(pk.Data()[q.Inner.L3:])
	if !inner.ChecksumValid() {
		t.Fatal("embedded IP checksum does not verify")
	}
	// The embedded UDP checksum still verifies over the original datagram.
	emb := pk.Data()[q.Inner.L4:q.End]
	if s := packet.Sum(emb, packet.PseudoSum(q.Inner.Src, q.Inner.Dst, packet.ProtoUDP, len(emb))); s != 0xffff {
		t.Fatalf("embedded UDP checksum does not verify (%#x)", s)
	}
	// An error for no flow is dropped.
	w.send("uplink", ser(t, eth, ipv4(remote, patIP, layers.IPProtocolICMPv4), &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(3, 3)},
		gopacket_Payload(udpFrame(t, macA, macB, ap(patIP, 1), ap(remote, 2), nil)[14:])))
	w.none("vmB")
	if got := w.drops("icmp_no_flow"); got != 1 {
		t.Fatalf("icmp_no_flow drops = %d, want 1", got)
	}
}

func TestTTLExpiry(t *testing.T) {
	w := newWorld(t, Options{})
	f := udpFrame(t, macB, gwMAC, ap(ipB, 1), ap(remote, 2), nil)
	f[14+8] = 1 // TTL 1
	packet.IPv4(f[14:]).ComputeChecksum()
	packet.IPv4(f[14:]).ComputeChecksum()
	fixUDP(f)
	w.send("vmB", f)
	w.none("uplink")
	pk := w.recv("vmB")
	ic := pk.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
	if ic.TypeCode.Type() != layers.ICMPv4TypeTimeExceeded {
		t.Fatalf("got %v, want time exceeded", ic.TypeCode)
	}
	checksumsOK(t, pk.Data())
}

func TestFragNeeded(t *testing.T) {
	w := newWorld(t, Options{})
	big := udpFrame(t, macB, gwMAC, ap(ipB, 1), ap(remote, 2), make([]byte, 1600))
	w.send("vmB", big)
	w.none("uplink")
	pk := w.recv("vmB")
	ic := pk.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
	if ic.TypeCode != layers.CreateICMPv4TypeCode(3, 4) || ic.Seq != 1500 {
		t.Fatalf("got %v mtu %d, want fragmentation needed with mtu 1500", ic.TypeCode, ic.Seq)
	}
	checksumsOK(t, pk.Data())
}

func fixUDP(f []byte) {
	var p packet.Parsed
	packet.Parse(f, &p)
	seg := f[p.L4:p.End]
	seg[6], seg[7] = 0, 0
	cs := packet.Checksum(seg, packet.PseudoSum(p.Src, p.Dst, packet.ProtoUDP, len(seg)))
	seg[6], seg[7] = byte(cs>>8), byte(cs)
}
