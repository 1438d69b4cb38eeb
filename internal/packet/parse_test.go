package packet_test

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/google/gopacket/layers"

	"roam/internal/packet"
	"roam/internal/packet/packettest"
)

var (
	apPriv   = packettest.AP("10.0.0.5:40000")
	apRemote = packettest.AP("198.51.100.7:443")
	router   = netip.MustParseAddr("203.0.113.1")
)

func tcpSpec(flags uint8, payload int) packettest.Spec {
	return packettest.Spec{Proto: 6, Src: apPriv, Dst: apRemote, TCPFlags: flags, Seq: 1000, Ack: 2000, Payload: make([]byte, payload)}
}

func udpSpec(payload int) packettest.Spec {
	return packettest.Spec{Proto: 17, Src: apPriv, Dst: apRemote, Payload: make([]byte, payload)}
}

func echoSpec(typ uint8, id uint16) packettest.Spec {
	return packettest.Spec{Proto: 1, Src: apPriv, Dst: apRemote, ICMPType: typ, ICMPID: id, ICMPSeq: 1, Payload: []byte("ping")}
}

// mutate returns a copy of b changed by f.
func mutate(b []byte, f func(b []byte)) []byte {
	c := append([]byte(nil), b...)
	f(c)
	return c
}

// fixIPSum recomputes the IPv4 header checksum of an Ethernet frame with the
// test's own RFC 1071 sum.
func fixIPSum(b []byte) {
	hl := int(b[14]&0x0f) * 4
	if hl < 20 || 14+hl > len(b) {
		return
	}
	b[24], b[25] = 0, 0
	binary.BigEndian.PutUint16(b[24:26], ^packettest.Sum(b[14:14+hl]))
}

func TestParse(t *testing.T) {
	u32 := packettest.Addr
	withOpts := tcpSpec(packet.TCPSyn, 0)
	withOpts.IPOptions = []layers.IPv4Option{
		{OptionType: 1}, {OptionType: 1},
		{OptionType: 0x94, OptionLength: 4, OptionData: []byte{0, 0}}, // router alert
		{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 0},
	}
	tcp := packettest.Frame(tcpSpec(packet.TCPSyn|packet.TCPAck, 10))
	udp := packettest.Frame(udpSpec(5))
	type want struct {
		reason       packet.Reason
		proto        uint8
		l4           int
		sport, dport uint16
		flags        uint8
		frag         uint8
		icmpType     uint8
		isErr        bool
	}
	tests := []struct {
		name  string
		frame []byte
		want  want
	}{
		{"tcp", tcp, want{proto: 6, l4: 34, sport: 40000, dport: 443, flags: packet.TCPSyn | packet.TCPAck}},
		{"tcp with ip options", packettest.Frame(withOpts), want{proto: 6, l4: 46, sport: 40000, dport: 443, flags: packet.TCPSyn}},
		{"udp", udp, want{proto: 17, l4: 34, sport: 40000, dport: 443}},
		{"udp padded to 60 bytes", append(packettest.Frame(udpSpec(0)), make([]byte, 60-42)...), want{proto: 17, l4: 34, sport: 40000, dport: 443}},
		{"icmp echo", packettest.Frame(echoSpec(8, 77)), want{proto: 1, l4: 34, sport: 77, icmpType: 8}},
		{"icmp echo reply", packettest.Frame(echoSpec(0, 77)), want{proto: 1, l4: 34, dport: 77}},
		{"gre by address only", packettest.Frame(packettest.Spec{Proto: 47, Src: apPriv, Dst: apRemote, Payload: []byte{1, 2, 3, 4}}), want{proto: 47, l4: 34}},
		{"ipv6", mutate(tcp, func(b []byte) { b[12], b[13] = 0x86, 0xdd }), want{reason: packet.ReasonIPv6}},
		{"vlan", mutate(tcp, func(b []byte) { b[12], b[13] = 0x81, 0x00 }), want{reason: packet.ReasonVLAN}},
		{"qinq", mutate(tcp, func(b []byte) { b[12], b[13] = 0x88, 0xa8 }), want{reason: packet.ReasonVLAN}},
		{"unknown ethertype", mutate(tcp, func(b []byte) { b[12], b[13] = 0x88, 0xcc }), want{reason: packet.ReasonBadEtherType}},
		{"runt ethernet", tcp[:13], want{reason: packet.ReasonRunt}},
		{"runt ip header", tcp[:14+19], want{reason: packet.ReasonRunt}},
		{"truncated datagram", tcp[:len(tcp)-1], want{reason: packet.ReasonRunt}},
		{"ip version 6 in ipv4 frame", mutate(tcp, func(b []byte) { b[14] = 0x65; fixIPSum(b) }), want{reason: packet.ReasonBadIPHeader}},
		{"ihl 4", mutate(tcp, func(b []byte) { b[14] = 0x44 }), want{reason: packet.ReasonBadIPHeader}},
		{"ihl beyond total length", mutate(udp, func(b []byte) { b[14] = 0x4f; fixIPSum(b) }), want{reason: packet.ReasonBadIPHeader}},
		{"total length below header", mutate(tcp, func(b []byte) { b[16], b[17] = 0, 19; fixIPSum(b) }), want{reason: packet.ReasonBadIPHeader}},
		{"total length beyond frame", mutate(tcp, func(b []byte) { b[16], b[17] = 0x05, 0xdc; fixIPSum(b) }), want{reason: packet.ReasonRunt}},
		{"bad ip checksum", mutate(tcp, func(b []byte) { b[24] ^= 0xff }), want{reason: packet.ReasonBadIPChecksum}},
		{"tcp data offset 4", mutate(tcp, func(b []byte) { b[34+12] = 0x40 }), want{reason: packet.ReasonBadL4Header}},
		{"tcp data offset beyond segment", mutate(tcp, func(b []byte) { b[34+12] = 0xf0 }), want{reason: packet.ReasonBadL4Header}},
		{"tcp segment short", mutate(tcp[:14+20+19], func(b []byte) { b[16], b[17] = 0, 39; fixIPSum(b) }), want{reason: packet.ReasonBadL4Header}},
		{"udp length beyond datagram", mutate(udp, func(b []byte) { b[34+5] = 200 }), want{reason: packet.ReasonBadL4Header}},
		{"udp length below header", mutate(udp, func(b []byte) { b[34+4], b[34+5] = 0, 7 }), want{reason: packet.ReasonBadL4Header}},
		{"icmp short", mutate(packettest.Frame(echoSpec(8, 1))[:14+20+7], func(b []byte) { b[16], b[17] = 0, 27; fixIPSum(b) }), want{reason: packet.ReasonBadL4Header}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var p packet.Parsed
			r := packet.Parse(tc.frame, &p)
			if r != tc.want.reason {
				t.Fatalf("Parse: got reason %v, want %v", r, tc.want.reason)
			}
			if r != packet.ReasonNone {
				return
			}
			got := want{proto: p.Proto, l4: p.L4, sport: p.SPort, dport: p.DPort, flags: p.TCPFlags, frag: p.Frag, icmpType: p.ICMPType, isErr: p.IsError}
			if got != tc.want {
				t.Errorf("Parse: got %+v, want %+v", got, tc.want)
			}
			if p.Src != u32("10.0.0.5") || p.Dst != u32("198.51.100.7") {
				t.Errorf("addresses: got %v -> %v, want 10.0.0.5 -> 198.51.100.7", packet.Addr(p.Src), packet.Addr(p.Dst))
			}
			if wantEnd := 14 + int(binary.BigEndian.Uint16(tc.frame[16:18])); p.End != wantEnd {
				t.Errorf("End: got %d, want %d", p.End, wantEnd)
			}
			if p.L3 != 14 || p.TTL != 64 || p.EthType != packet.EtherTypeIPv4 {
				t.Errorf("L3, TTL, EthType: got %d, %d, %#x, want 14, 64, 0x800", p.L3, p.TTL, p.EthType)
			}
		})
	}
}

func TestParseARP(t *testing.T) {
	b := make([]byte, packet.EthernetLen+packet.ARPLen)
	mac := packet.MAC{2, 0, 0, 0, 0, 9}
	n := packet.PutARP(b, packet.ARPRequest, mac, packettest.Addr("10.0.0.5"), packet.MAC{}, packettest.Addr("10.0.0.1"), packet.Broadcast)
	if n != 42 {
		t.Fatalf("PutARP: got length %d, want 42", n)
	}
	var p packet.Parsed
	if r := packet.Parse(b, &p); r != packet.ReasonNone || p.EthType != packet.EtherTypeARP || p.L3 != 14 {
		t.Fatalf("Parse ARP: got %v, type %#x, L3 %d, want none, 0x806, 14", r, p.EthType, p.L3)
	}
	bad := mutate(b, func(b []byte) { b[14+5] = 16 }) // IPv6 protocol length
	if r := packet.Parse(bad, &p); r != packet.ReasonBadARP {
		t.Errorf("Parse ARP with plen 16: got %v, want bad_arp", r)
	}
	if r := packet.Parse(b[:14+27], &p); r != packet.ReasonBadARP {
		t.Errorf("Parse short ARP: got %v, want bad_arp", r)
	}
}

func TestParseFragments(t *testing.T) {
	for _, tc := range []struct {
		name  string
		spec  packettest.Spec
		sport uint16
	}{
		{"udp", udpSpec(100), 40000},
		{"tcp", tcpSpec(packet.TCPAck, 100), 40000},
		{"icmp echo", packettest.Spec{Proto: 1, Src: apPriv, Dst: apRemote, ICMPType: 8, ICMPID: 9, Payload: make([]byte, 100)}, 9},
	} {
		t.Run(tc.name, func(t *testing.T) {
			frags := packettest.Fragment(packettest.Frame(tc.spec), 48)
			if len(frags) < 3 {
				t.Fatalf("got %d fragments, want >= 3", len(frags))
			}
			for i, f := range frags {
				var p packet.Parsed
				if r := packet.Parse(f, &p); r != packet.ReasonNone {
					t.Fatalf("fragment %d: got %v, want none", i, r)
				}
				if i == 0 {
					if p.Frag != packet.FirstFragment || p.L4 != 34 || p.SPort != tc.sport {
						t.Errorf("first fragment: got frag %d L4 %d sport %d, want %d 34 %d", p.Frag, p.L4, p.SPort, packet.FirstFragment, tc.sport)
					}
					continue
				}
				if p.Frag != packet.LaterFragment || p.L4 != 0 || p.SPort != 0 || p.DPort != 0 {
					t.Errorf("fragment %d: got frag %d L4 %d ports %d/%d, want %d 0 0/0", i, p.Frag, p.L4, p.SPort, p.DPort, packet.LaterFragment)
				}
				if wantEnd := 14 + int(binary.BigEndian.Uint16(f[16:18])); p.End != wantEnd || p.Proto != tc.spec.Proto {
					t.Errorf("fragment %d: End %d proto %d, want %d %d", i, p.End, p.Proto, wantEnd, tc.spec.Proto)
				}
			}
		})
	}
	t.Run("tiny first tcp fragment", func(t *testing.T) {
		frags := packettest.Fragment(packettest.Frame(tcpSpec(packet.TCPAck, 100)), 8)
		var p packet.Parsed
		if r := packet.Parse(frags[0], &p); r != packet.ReasonBadL4Header {
			t.Errorf("got %v, want bad_l4_header (RFC 1858 tiny fragment)", r)
		}
	})
	t.Run("icmp error fragment", func(t *testing.T) {
		emb := packettest.IP(udpSpec(200))
		f := packettest.Fragment(packettest.ICMPError(3, 3, router, apPriv.Addr(), emb, 0, 0), 64)
		var p packet.Parsed
		if r := packet.Parse(f[0], &p); r != packet.ReasonBadL4Header {
			t.Errorf("first fragment of an ICMP error: got %v, want bad_l4_header", r)
		}
	})
}

func TestParseICMPError(t *testing.T) {
	emb := func(s packettest.Spec) []byte { s.Src, s.Dst = apRemote, apPriv; return packettest.IP(s) }
	embUDP := emb(udpSpec(20))
	embTCP := emb(tcpSpec(packet.TCPSyn, 0))
	embEcho := packettest.IP(packettest.Spec{Proto: 1, Src: apRemote, Dst: apPriv, ICMPType: 8, ICMPID: 4242, Payload: []byte("x")})
	embReply := packettest.IP(packettest.Spec{Proto: 1, Src: apRemote, Dst: apPriv, ICMPType: 0, ICMPID: 4242})
	bigUDP := emb(udpSpec(300))
	firstFrag := packettest.Fragment(packettest.Frame(packettest.Spec{Proto: 17, Src: apRemote, Dst: apPriv, Payload: make([]byte, 300)}), 128)
	type want struct {
		reason       packet.Reason
		proto        uint8
		sport, dport uint16
		frag         uint8
		l4           int
	}
	tests := []struct {
		name     string
		typ      uint8
		code     uint8
		embedded []byte
		quote    int
		want     want
	}{
		{"port unreachable udp", 3, 3, embUDP, 0, want{proto: 17, sport: 443, dport: 40000, l4: 62}},
		{"frag needed tcp quoted 8 bytes", 3, 4, embTCP, 28, want{proto: 6, sport: 443, dport: 40000, l4: 62}},
		{"ttl exceeded tcp", 11, 0, embTCP, 0, want{proto: 6, sport: 443, dport: 40000, l4: 62}},
		{"embedded echo request", 11, 0, embEcho, 0, want{proto: 1, sport: 4242, l4: 62}},
		{"embedded echo reply", 3, 1, embReply, 0, want{proto: 1, dport: 4242, l4: 62}},
		{"embedded first fragment", 3, 4, firstFrag[0][14:], 0, want{proto: 17, sport: 443, dport: 40000, frag: packet.FirstFragment, l4: 62}},
		{"embedded later fragment", 3, 4, firstFrag[1][14:], 0, want{proto: 17, frag: packet.LaterFragment}},
		{"truncated embedded large udp", 3, 3, bigUDP, 64, want{proto: 17, sport: 443, dport: 40000, l4: 62}},
		{"embedded header short", 3, 3, embUDP, 19, want{reason: packet.ReasonBadL4Header}},
		{"embedded ports missing", 3, 3, embUDP, 23, want{reason: packet.ReasonBadL4Header}},
		{"embedded icmp short", 11, 0, embEcho, 27, want{reason: packet.ReasonBadL4Header}},
		{"error about an error", 3, 3, packettest.IP(packettest.Spec{Proto: 1, Src: apRemote, Dst: apPriv, ICMPType: 3, Payload: embUDP}), 0, want{reason: packet.ReasonBadL4Header}},
		{"embedded ipv6", 3, 3, mutate(embUDP, func(b []byte) { b[0] = 0x65 }), 0, want{reason: packet.ReasonBadL4Header}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := packettest.ICMPError(tc.typ, tc.code, router, apRemote.Addr(), tc.embedded, tc.quote, 1400)
			var p packet.Parsed
			r := packet.Parse(f, &p)
			if r != tc.want.reason {
				t.Fatalf("Parse: got %v, want %v", r, tc.want.reason)
			}
			if r != packet.ReasonNone {
				return
			}
			if !p.IsError || p.ICMPType != tc.typ || p.ICMPCode != tc.code || p.L4 != 34 {
				t.Errorf("outer: got error %v type %d code %d L4 %d, want true %d %d 34", p.IsError, p.ICMPType, p.ICMPCode, p.L4, tc.typ, tc.code)
			}
			in := p.Inner
			got := want{proto: in.Proto, sport: in.SPort, dport: in.DPort, frag: in.Frag, l4: in.L4}
			if got != tc.want {
				t.Errorf("inner: got %+v, want %+v", got, tc.want)
			}
			if in.L3 != 42 || in.Src != packettest.Addr("198.51.100.7") || in.Dst != packettest.Addr("10.0.0.5") {
				t.Errorf("inner: L3 %d %v -> %v, want 42 198.51.100.7 -> 10.0.0.5", in.L3, packet.Addr(in.Src), packet.Addr(in.Dst))
			}
		})
	}
}

func TestPutIPv4(t *testing.T) {
	for _, df := range []bool{false, true} {
		b := make([]byte, 20+8)
		packet.PutIPv4(b, packet.ProtoUDP, packettest.Addr("10.0.0.1"), packettest.Addr("10.0.0.2"), 28, 0x1234, 63, df)
		if s := packettest.Sum(b[:20]); s != 0xffff {
			t.Errorf("df=%v: header sum %#x, want 0xffff", df, s)
		}
		var ip layers.IPv4
		if err := ip.DecodeFromBytes(b, nil); err != nil {
			t.Fatalf("gopacket decode: %v", err)
		}
		if ip.Version != 4 || ip.IHL != 5 || ip.Length != 28 || ip.Id != 0x1234 || ip.TTL != 63 || ip.Protocol != layers.IPProtocolUDP ||
			ip.SrcIP.String() != "10.0.0.1" || ip.DstIP.String() != "10.0.0.2" || (ip.Flags&layers.IPv4DontFragment != 0) != df {
			t.Errorf("df=%v: got %+v", df, ip)
		}
		v := packet.IPv4(b)
		if v.DF() != df || v.MF() || v.IsFragment() || v.FragOffset() != 0 || !v.ChecksumValid() {
			t.Errorf("df=%v: view DF %v MF %v frag %v valid %v", df, v.DF(), v.MF(), v.IsFragment(), v.ChecksumValid())
		}
	}
}

func TestPutARP(t *testing.T) {
	b := make([]byte, 42)
	src := packet.MAC{2, 1, 2, 3, 4, 5}
	dst := packet.MAC{2, 9, 8, 7, 6, 5}
	packet.PutARP(b, packet.ARPReply, src, packettest.Addr("10.0.0.1"), dst, packettest.Addr("10.0.0.5"), dst)
	var eth layers.Ethernet
	var arp layers.ARP
	if err := eth.DecodeFromBytes(b, nil); err != nil {
		t.Fatal(err)
	}
	if err := arp.DecodeFromBytes(eth.Payload, nil); err != nil {
		t.Fatal(err)
	}
	if eth.EthernetType != layers.EthernetTypeARP || eth.DstMAC.String() != "02:09:08:07:06:05" || eth.SrcMAC.String() != "02:01:02:03:04:05" {
		t.Errorf("ethernet: got %v %v -> %v", eth.EthernetType, eth.SrcMAC, eth.DstMAC)
	}
	if arp.Operation != 2 || arp.AddrType != layers.LinkTypeEthernet || arp.Protocol != layers.EthernetTypeIPv4 ||
		netip.AddrFrom4([4]byte(arp.SourceProtAddress)).String() != "10.0.0.1" ||
		netip.AddrFrom4([4]byte(arp.DstProtAddress)).String() != "10.0.0.5" {
		t.Errorf("arp: got %+v", arp)
	}
	a := packet.ARP(b[14:])
	if !a.Valid() || a.Op() != 2 || a.SenderMAC() != src || a.TargetMAC() != dst || a.SenderIP() != packettest.Addr("10.0.0.1") || a.TargetIP() != packettest.Addr("10.0.0.5") {
		t.Errorf("view: got valid %v op %d %v %v", a.Valid(), a.Op(), a.SenderMAC(), a.TargetMAC())
	}
}

func TestAddr(t *testing.T) {
	for _, s := range []string{"0.0.0.0", "10.0.0.1", "255.255.255.255", "192.168.1.254"} {
		a := netip.MustParseAddr(s)
		u := packet.AddrFrom(a)
		if u != packettest.Addr(s) || packet.Addr(u) != a {
			t.Errorf("%s: AddrFrom %#x, Addr back %v", s, u, packet.Addr(u))
		}
	}
	if got := packet.AddrFrom(netip.MustParseAddr("::ffff:10.0.0.1")); got != 0x0a000001 {
		t.Errorf("mapped: got %#x, want 0x0a000001", got)
	}
	if got := packet.AddrFrom(netip.MustParseAddr("2001:db8::1")); got != 0 {
		t.Errorf("IPv6: got %#x, want 0", got)
	}
}

func TestReasonString(t *testing.T) {
	seen := map[string]bool{}
	for r := packet.ReasonNone; r <= packet.ReasonBadARP; r++ {
		s := r.String()
		if s == "" || s == "unknown" || seen[s] {
			t.Errorf("reason %d: name %q empty or duplicate", r, s)
		}
		seen[s] = true
	}
	if got := packet.Reason(packet.NumReasons).String(); got != "unknown" {
		t.Errorf("NumReasons: got %q, want unknown", got)
	}
}

func TestIPv4View(t *testing.T) {
	f := packettest.Frame(tcpSpec(packet.TCPSyn, 0))
	ip := packet.IPv4(f[14:])
	ip.DecTTL()
	if ip.TTL() != 63 || packettest.Sum(f[14:34]) != 0xffff {
		t.Errorf("DecTTL: TTL %d, sum %#x, want 63, 0xffff", ip.TTL(), packettest.Sum(f[14:34]))
	}
	ip.SetSrc(packettest.Addr("1.2.3.4"))
	ip.SetDst(packettest.Addr("250.251.252.253"))
	if packettest.Sum(f[14:34]) != 0xffff || !ip.ChecksumValid() {
		t.Errorf("SetSrc/SetDst: header sum %#x, want 0xffff", packettest.Sum(f[14:34]))
	}
	old := ip.Checksum()
	ip.ComputeChecksum()
	if ip.Checksum() != old && !(old == 0 && ip.Checksum() == 0xffff) {
		t.Errorf("ComputeChecksum: got %#x, incremental gave %#x", ip.Checksum(), old)
	}
}
