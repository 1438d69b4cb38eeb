package vswitch

// Conformance: one case per requirement of the NAT behavioural RFCs, its
// number in the case's name, each run through the real switch (taptest
// ports, the test's clock) and its NAT. The world is helpers_test.go's:
// A (10.0.0.10) has the public IP 198.51.100.10, B (10.0.0.20) and C
// (10.0.1.30) leave by PAT through 203.0.113.1.

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"roam/internal/packet"
	"roam/nat"
)

var (
	remote2 = netip.MustParseAddr("192.0.2.77")
	remote3 = netip.MustParseAddr("192.0.2.99")
)

// udpOut sends a UDP datagram from B's or C's port out and returns the
// public source port the uplink saw.
func (w *world) udpOut(port string, src, dst netip.AddrPort) uint16 {
	w.t.Helper()
	mac := map[string][]byte{"vmA": macA, "vmB": macB, "vmC": macC}[port]
	w.send(port, udpFrame(w.t, mac, gwMAC, src, dst, []byte("out")))
	pk := w.recv("uplink")
	ip := pk.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	u := pk.Layer(layers.LayerTypeUDP).(*layers.UDP)
	if !ip.DstIP.Equal(dst.Addr().AsSlice()) || uint16(u.DstPort) != dst.Port() {
		w.t.Fatalf("out to %v:%d, want %v", ip.DstIP, u.DstPort, dst)
	}
	checksumsOK(w.t, pk.Data())
	return uint16(u.SrcPort)
}

// udpIn sends a datagram from the uplink and reports whether port got it.
func (w *world) udpIn(port string, src, dst netip.AddrPort) bool {
	w.t.Helper()
	w.send("uplink", udpFrame(w.t, macUp, gwMAC, src, dst, []byte("in")))
	if w.ports[port].Pending() == 0 {
		return false
	}
	checksumsOK(w.t, w.recv(port).Data())
	return true
}

// errFrame builds an ICMP error of type/code from src to dst that embeds
// the IP datagram emb (its first bytes are kept whole).
func errFrame(t testing.TB, smac, dmac []byte, src, dst netip.Addr, typ, code uint8, emb []byte) []byte {
	eth := &layers.Ethernet{SrcMAC: smac, DstMAC: dmac, EthernetType: layers.EthernetTypeIPv4}
	ip := ipv4(src, dst, layers.IPProtocolICMPv4)
	ip.Flags = 0
	ic := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, code)}
	return ser(t, eth, ip, ic, gopacket.Payload(emb))
}

// ipOf returns the IP datagram of an Ethernet frame.
func ipOf(t testing.TB, frame []byte) []byte {
	var p packet.Parsed
	if r := packet.Parse(frame, &p); r != packet.ReasonNone {
		t.Fatalf("parse: %v", r)
	}
	return append([]byte(nil), frame[p.L3:p.End]...)
}

// icmpOf parses an ICMP error frame and returns it, failing otherwise.
func icmpOf(t testing.TB, frame []byte) *packet.Parsed {
	t.Helper()
	p := new(packet.Parsed)
	if r := packet.Parse(frame, p); r != packet.ReasonNone || !p.IsError {
		t.Fatalf("got %v (parse %v), want an ICMP error", gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default), r)
	}
	return p
}

func flowState(w *world, proto uint8, src netip.Addr, sport uint16) (nat.FlowInfo, bool) {
	var got nat.FlowInfo
	found := false
	w.sw.Conntrack().Flows(0, uint32(w.clk.Now().Unix()), func(f nat.FlowInfo) bool {
		if f.Orig.Proto == proto && f.Orig.Src == packet.AddrFrom(src) && f.Orig.SPort == sport {
			got, found = f, true
			return false
		}
		return true
	})
	return got, found
}

func TestRFC4787(t *testing.T) {
	cases := []struct {
		name string
		o    Options
		run  func(t *testing.T, w *world)
	}{
		{"REQ-1_endpoint_independent_mapping", Options{}, func(t *testing.T, w *world) {
			p1 := w.udpOut("vmB", ap(ipB, 5353), ap(remote, 53))
			p2 := w.udpOut("vmB", ap(ipB, 5353), ap(remote2, 53))
			p3 := w.udpOut("vmB", ap(ipB, 5353), ap(remote, 5300))
			if p1 != p2 || p1 != p3 {
				t.Fatalf("public ports %d, %d, %d for one private endpoint, want one", p1, p2, p3)
			}
		}},
		{"REQ-3_no_port_overloading", Options{}, func(t *testing.T, w *world) {
			pb := w.udpOut("vmB", ap(ipB, 6000), ap(remote, 53))
			pc := w.udpOut("vmC", ap(ipC, 6000), ap(remote, 53))
			if pb == pc {
				t.Fatalf("B and C share public port %d towards one remote", pb)
			}
			if !w.udpIn("vmB", ap(remote, 53), ap(patIP, pb)) || !w.udpIn("vmC", ap(remote, 53), ap(patIP, pc)) {
				t.Fatal("replies not demultiplexed to B and C")
			}
		}},
		{"REQ-3a_port_range_preservation", Options{}, func(t *testing.T, w *world) {
			w.udpOut("vmB", ap(ipB, 123), ap(remote, 123))
			if p := w.udpOut("vmC", ap(ipC, 123), ap(remote, 123)); p == 0 || p >= 1024 {
				t.Fatalf("source port 123 mapped to %d, want 1..1023", p)
			}
			w.udpOut("vmB", ap(ipB, 40000), ap(remote, 53))
			if p := w.udpOut("vmC", ap(ipC, 40000), ap(remote, 53)); p < 1024 {
				t.Fatalf("source port 40000 mapped to %d, want >= 1024", p)
			}
		}},
		{"REQ-4_port_parity_preservation", Options{}, func(t *testing.T, w *world) {
			for _, port := range []uint16{7000, 7001} {
				w.udpOut("vmB", ap(ipB, port), ap(remote, 53))
				if p := w.udpOut("vmC", ap(ipC, port), ap(remote, 53)); p%2 != port%2 || p == port {
					t.Fatalf("source port %d (taken) mapped to %d, want another of the same parity", port, p)
				}
			}
		}},
		{"REQ-5_udp_mapping_timer_at_least_2_min", Options{}, func(t *testing.T, w *world) {
			p := w.udpOut("vmB", ap(ipB, 5000), ap(remote, 53))
			w.clk.Advance(2*time.Minute - time.Second)
			if !w.udpIn("vmB", ap(remote, 53), ap(patIP, p)) {
				t.Fatal("mapping gone before 2 min")
			}
			// The mapping is bounded too: long after, it is gone.
			w.clk.Advance(30 * time.Minute)
			if w.udpIn("vmB", ap(remote, 53), ap(patIP, p)) {
				t.Fatal("mapping still there after 30 min idle")
			}
		}},
		{"REQ-6_outbound_refresh", Options{}, func(t *testing.T, w *world) {
			p := w.udpOut("vmB", ap(ipB, 5000), ap(remote, 53))
			for i := 0; i < 5; i++ {
				w.clk.Advance(100 * time.Second)
				if q := w.udpOut("vmB", ap(ipB, 5000), ap(remote, 53)); q != p {
					t.Fatalf("refresh %d: port %d, want %d", i, q, p)
				}
			}
			w.clk.Advance(100 * time.Second) // 600 s after the first packet
			if !w.udpIn("vmB", ap(remote, 53), ap(patIP, p)) {
				t.Fatal("outbound packets did not refresh the mapping")
			}
		}},
		{"REQ-8_filtering_address_and_port_dependent_by_default", Options{}, func(t *testing.T, w *world) {
			w.cfg.Records[1].Groups = []string{"sg-web"}
			w.apply()
			p := w.udpOut("vmB", ap(ipB, 5000), ap(remote, 53))
			if w.udpIn("vmB", ap(remote3, 53), ap(patIP, p)) || w.udpIn("vmB", ap(remote, 54), ap(patIP, p)) {
				t.Fatal("an endpoint B never sent to got through")
			}
			if w.drops("unsolicited") != 2 {
				t.Fatalf("unsolicited drops %d, want 2", w.drops("unsolicited"))
			}
			if !w.udpIn("vmB", ap(remote, 53), ap(patIP, p)) {
				t.Fatal("the endpoint B sent to was filtered")
			}
		}},
		{"REQ-8_filtering_endpoint_independent_option", Options{EndpointIndependentFiltering: true}, func(t *testing.T, w *world) {
			w.cfg.Records[1].Groups = []string{"sg-web"}
			w.apply()
			p := w.udpOut("vmB", ap(ipB, 5000), ap(remote, 53))
			if !w.udpIn("vmB", ap(remote3, 53), ap(patIP, p)) {
				t.Fatal("endpoint-independent filtering refused another remote")
			}
			// The security group still applies: UDP 7000 is not allowed in.
			p = w.udpOut("vmB", ap(ipB, 7000), ap(remote, 53))
			if w.udpIn("vmB", ap(remote3, 53), ap(patIP, p)) {
				t.Fatal("a port the group denies got through")
			}
		}},
		{"REQ-8_filtering_address_dependent_option", Options{AddressDependentFiltering: true}, func(t *testing.T, w *world) {
			w.cfg.Records[1].Groups = []string{"sg-web"}
			w.apply()
			p := w.udpOut("vmB", ap(ipB, 5000), ap(remote, 53))
			if !w.udpIn("vmB", ap(remote, 5353), ap(patIP, p)) {
				t.Fatal("another port of the remote address B sent to was filtered")
			}
			if w.udpIn("vmB", ap(remote3, 53), ap(patIP, p)) {
				t.Fatal("an address B never sent to got through")
			}
			// Once the mapping's flows are gone, so is the address.
			w.clk.Advance(10 * time.Minute)
			w.sw.Conntrack().Expire(uint32(w.clk.Now().Unix()), 1<<20)
			if w.udpIn("vmB", ap(remote, 7777), ap(patIP, p)) {
				t.Fatal("admitted after the mapping ended")
			}
			if w.drops("unsolicited") != 2 {
				t.Fatalf("unsolicited drops %d, want 2", w.drops("unsolicited"))
			}
		}},
		{"REQ-9_hairpinning_public_ip", Options{}, func(t *testing.T, w *world) {
			w.send("vmB", udpFrame(t, macB, gwMAC, ap(ipB, 7000), ap(eipA, 5000), []byte("hp")))
			pk := w.recv("vmA")
			ip := pk.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
			u := pk.Layer(layers.LayerTypeUDP).(*layers.UDP)
			// REQ-9a: the source is B's external address and port.
			if pb := w.udpOut("vmB", ap(ipB, 7000), ap(remote, 53)); !ip.SrcIP.Equal(patIP.AsSlice()) || uint16(u.SrcPort) != pb {
				t.Fatalf("hairpinned from %v:%d, want B's mapping %v:%d", ip.SrcIP, u.SrcPort, patIP, pb)
			}
			checksumsOK(t, pk.Data())
		}},
		{"REQ-9_hairpinning_pat_mapping", Options{EndpointIndependentFiltering: true}, func(t *testing.T, w *world) {
			w.cfg.Records[2].Groups = []string{"sg-web"}
			w.apply()
			pc := w.udpOut("vmC", ap(ipC, 5000), ap(remote, 53))
			pb := w.udpOut("vmB", ap(ipB, 7000), ap(remote, 53))
			w.send("vmB", udpFrame(t, macB, gwMAC, ap(ipB, 7000), ap(patIP, pc), []byte("hp")))
			pk := w.recv("vmC")
			ip := pk.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
			u := pk.Layer(layers.LayerTypeUDP).(*layers.UDP)
			if !ip.SrcIP.Equal(patIP.AsSlice()) || uint16(u.SrcPort) != pb || !ip.DstIP.Equal(ipC.AsSlice()) || u.DstPort != 5000 {
				t.Fatalf("hairpin %v:%d -> %v:%d, want %v:%d -> %v:5000", ip.SrcIP, u.SrcPort, ip.DstIP, u.DstPort, patIP, pb, ipC)
			}
			checksumsOK(t, pk.Data())
		}},
		{"REQ-12_icmp_never_destroys_mapping", Options{}, func(t *testing.T, w *world) {
			p := w.udpOut("vmB", ap(ipB, 5000), ap(remote, 53))
			sent := udpFrame(t, macUp, gwMAC, ap(patIP, p), ap(remote, 53), []byte("out"))
			for _, tc := range [][2]uint8{{3, 3}, {3, 1}, {3, 13}, {11, 0}, {12, 0}} {
				w.send("uplink", errFrame(t, macUp, gwMAC, remote, patIP, tc[0], tc[1], ipOf(t, sent)))
				icmpOf(t, w.recv("vmB").Data())
			}
			if q := w.udpOut("vmB", ap(ipB, 5000), ap(remote2, 53)); q != p {
				t.Fatalf("after ICMP errors the mapping moved from %d to %d", p, q)
			}
			if !w.udpIn("vmB", ap(remote, 53), ap(patIP, p)) {
				t.Fatal("after ICMP errors the reply is refused")
			}
		}},
		{"REQ-14_fragments_in_and_out_of_order", Options{}, func(t *testing.T, w *world) {
			for _, order := range [][]int{{0, 1, 2}, {2, 1, 0}, {1, 2, 0}} {
				sport := uint16(7700 + order[0])
				frags := fragment(t, udpFrame(t, macB, gwMAC, ap(ipB, sport), ap(remote, 53), make([]byte, 1000)), 400)
				for _, i := range order {
					w.send("vmB", frags[i])
				}
				for range frags {
					pk := w.recv("uplink")
					if ip := pk.Layer(layers.LayerTypeIPv4).(*layers.IPv4); !ip.SrcIP.Equal(patIP.AsSlice()) {
						t.Fatalf("order %v: fragment from %v, want %v", order, ip.SrcIP, patIP)
					}
				}
				// Inbound, out of order too.
				p, _ := w.sw.Conntrack().PATMapping(packet.ProtoUDP, packet.AddrFrom(patIP), packet.AddrFrom(ipB), sport)
				in := fragment(t, udpFrame(t, macUp, gwMAC, ap(remote, 53), ap(patIP, p), make([]byte, 1000)), 400)
				for _, i := range order {
					w.send("uplink", in[i])
				}
				for range in {
					pk := w.recv("vmB")
					if ip := pk.Layer(layers.LayerTypeIPv4).(*layers.IPv4); !ip.DstIP.Equal(ipB.AsSlice()) {
						t.Fatalf("order %v: inbound fragment to %v, want %v", order, ip.DstIP, ipB)
					}
				}
			}
			if c := w.sw.Counters(); c.Held != 0 {
				t.Fatalf("%d fragments still held", c.Held)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, newWorld(t, tc.o)) })
	}
}

// tcpOut sends a TCP segment from B and returns the public source port.
func (w *world) tcpOut(src, dst netip.AddrPort, flags string, seq, ack uint32) uint16 {
	w.t.Helper()
	w.send("vmB", tcpFrame(w.t, macB, gwMAC, src, dst, flags, seq, ack, nil))
	pk := w.recv("uplink")
	checksumsOK(w.t, pk.Data())
	return uint16(pk.Layer(layers.LayerTypeTCP).(*layers.TCP).SrcPort)
}

// tcpIn sends a segment from the uplink and reports whether B got it.
func (w *world) tcpIn(src, dst netip.AddrPort, flags string, seq, ack uint32) bool {
	w.t.Helper()
	w.send("uplink", tcpFrame(w.t, macUp, gwMAC, src, dst, flags, seq, ack, nil))
	if w.ports["vmB"].Pending() == 0 {
		return false
	}
	checksumsOK(w.t, w.recv("vmB").Data())
	return true
}

// established opens B:sport -> remote:80 with a three-way handshake and
// returns the public port.
func (w *world) established(sport uint16) uint16 {
	w.t.Helper()
	p := w.tcpOut(ap(ipB, sport), ap(remote, 80), "S", 1000, 0)
	if !w.tcpIn(ap(remote, 80), ap(patIP, p), "SA", 5000, 1001) {
		w.t.Fatal("SYN-ACK not delivered")
	}
	w.tcpOut(ap(ipB, sport), ap(remote, 80), "A", 1001, 5001)
	return p
}

func TestRFC5382(t *testing.T) {
	cases := []struct {
		name string
		o    Options
		run  func(t *testing.T, w *world)
	}{
		{"REQ-1_endpoint_independent_mapping", Options{}, func(t *testing.T, w *world) {
			p1 := w.tcpOut(ap(ipB, 40000), ap(remote, 80), "S", 1, 0)
			p2 := w.tcpOut(ap(ipB, 40000), ap(remote2, 443), "S", 1, 0)
			if p1 != p2 {
				t.Fatalf("public ports %d and %d for one private endpoint", p1, p2)
			}
		}},
		{"REQ-2_three_way_handshake_data_and_close", Options{}, func(t *testing.T, w *world) {
			p := w.established(40001)
			w.tcpOut(ap(ipB, 40001), ap(remote, 80), "PA", 1001, 5001)
			if !w.tcpIn(ap(remote, 80), ap(patIP, p), "PA", 5001, 1002) {
				t.Fatal("data not delivered")
			}
			w.tcpOut(ap(ipB, 40001), ap(remote, 80), "FA", 1002, 5002)
			if !w.tcpIn(ap(remote, 80), ap(patIP, p), "FA", 5002, 1003) {
				t.Fatal("FIN not delivered")
			}
			w.tcpOut(ap(ipB, 40001), ap(remote, 80), "A", 1003, 5003)
			if f, _ := flowState(w, packet.ProtoTCP, ipB, 40001); f.State != "TIME_WAIT" {
				t.Fatalf("state %s after close, want TIME_WAIT", f.State)
			}
			// Port reuse after close: a new SYN on the same 4-tuple opens again.
			if q := w.tcpOut(ap(ipB, 40001), ap(remote, 80), "S", 9000, 0); q != p {
				t.Fatalf("reopened on port %d, want %d", q, p)
			}
			if !w.tcpIn(ap(remote, 80), ap(patIP, p), "SA", 7000, 9001) {
				t.Fatal("SYN-ACK of the reopened connection not delivered")
			}
		}},
		{"REQ-2a_simultaneous_open", Options{}, func(t *testing.T, w *world) {
			w.cfg.Records[1].Groups = []string{"sg-web"}
			w.apply()
			// B preserves its port: the remote knows it in advance.
			p := w.tcpOut(ap(ipB, 40002), ap(remote, 9000), "S", 1000, 0)
			if !w.tcpIn(ap(remote, 9000), ap(patIP, p), "S", 5000, 0) {
				t.Fatal("the remote's SYN (simultaneous open) not delivered")
			}
			w.tcpOut(ap(ipB, 40002), ap(remote, 9000), "SA", 1000, 5001)
			if !w.tcpIn(ap(remote, 9000), ap(patIP, p), "SA", 5000, 1001) {
				t.Fatal("the remote's SYN-ACK not delivered")
			}
			w.tcpOut(ap(ipB, 40002), ap(remote, 9000), "A", 1001, 5001)
			if f, _ := flowState(w, packet.ProtoTCP, ipB, 40002); f.State != "ESTABLISHED" {
				t.Fatalf("state %s, want ESTABLISHED", f.State)
			}
		}},
		{"REQ-4_unsolicited_inbound_syn_silently_dropped", Options{}, func(t *testing.T, w *world) {
			// No answer at all (REQ-4: none within 6 s; roam never answers),
			// and the outbound SYN that follows opens the connection.
			if w.tcpIn(ap(remote, 9000), ap(patIP, 40003), "S", 5000, 0) {
				t.Fatal("an unsolicited SYN was delivered")
			}
			w.none("uplink")
			if w.drops("unsolicited") != 1 {
				t.Fatalf("unsolicited drops %d, want 1", w.drops("unsolicited"))
			}
			w.cfg.Records[1].Groups = []string{"sg-web"}
			w.apply()
			p := w.tcpOut(ap(ipB, 40003), ap(remote, 9000), "S", 1000, 0)
			if !w.tcpIn(ap(remote, 9000), ap(patIP, p), "S", 5000, 0) {
				t.Fatal("the SYN after B's own was not delivered")
			}
		}},
		{"REQ-5_established_idle_timeout_at_least_2h4m", Options{}, func(t *testing.T, w *world) {
			p := w.established(40004)
			w.clk.Advance(2*time.Hour + 4*time.Minute - time.Second)
			if !w.tcpIn(ap(remote, 80), ap(patIP, p), "PA", 5001, 1001) {
				t.Fatal("established connection gone before 2 h 4 min")
			}
		}},
		{"REQ-5_transitory_idle_timeout_at_least_4m", Options{}, func(t *testing.T, w *world) {
			p := w.tcpOut(ap(ipB, 40005), ap(remote, 80), "S", 1000, 0)
			w.clk.Advance(4*time.Minute - time.Second)
			if !w.tcpIn(ap(remote, 80), ap(patIP, p), "SA", 5000, 1001) {
				t.Fatal("half-open connection gone before 4 min")
			}
			// Closing states are transitory too.
			q := w.established(40006)
			w.tcpOut(ap(ipB, 40006), ap(remote, 80), "FA", 1001, 5001)
			w.clk.Advance(4*time.Minute - time.Second)
			if !w.tcpIn(ap(remote, 80), ap(patIP, q), "FA", 5001, 1002) {
				t.Fatal("closing connection gone before 4 min")
			}
		}},
		{"REQ-7_hairpinning", Options{}, func(t *testing.T, w *world) {
			w.send("vmB", tcpFrame(t, macB, gwMAC, ap(ipB, 40007), ap(eipA, 80), "S", 1, 0, nil))
			pk := w.recv("vmA")
			ip := pk.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
			tc := pk.Layer(layers.LayerTypeTCP).(*layers.TCP)
			if !ip.SrcIP.Equal(patIP.AsSlice()) || !ip.DstIP.Equal(ipA.AsSlice()) {
				t.Fatalf("hairpin %v -> %v, want %v -> %v", ip.SrcIP, ip.DstIP, patIP, ipA)
			}
			w.send("vmA", tcpFrame(t, macA, gwMAC, ap(ipA, 80), ap(patIP, uint16(tc.SrcPort)), "SA", 9, 2, nil))
			pk = w.recv("vmB")
			if ip := pk.Layer(layers.LayerTypeIPv4).(*layers.IPv4); !ip.SrcIP.Equal(eipA.AsSlice()) {
				t.Fatalf("hairpin reply from %v, want %v", ip.SrcIP, eipA)
			}
			checksumsOK(t, pk.Data())
		}},
		{"REQ-8_icmp_errors_translated", Options{}, func(t *testing.T, w *world) {
			p := w.established(40008)
			seg := tcpFrame(t, macUp, gwMAC, ap(patIP, p), ap(remote, 80), "PA", 1001, 5001, []byte("data"))
			w.send("uplink", errFrame(t, macUp, gwMAC, remote2, patIP, 3, 4, ipOf(t, seg)))
			q := icmpOf(t, w.recv("vmB").Data())
			if q.Dst != packet.AddrFrom(ipB) || q.Inner.Src != packet.AddrFrom(ipB) || q.Inner.SPort != 40008 || q.ICMPType != 3 || q.ICMPCode != 4 {
				t.Fatalf("error to %v about %v:%d type %d/%d, want to %v about %v:40008, 3/4",
					packet.Addr(q.Dst), packet.Addr(q.Inner.Src), q.Inner.SPort, q.ICMPType, q.ICMPCode, ipB, ipB)
			}
		}},
		{"REQ-9_icmp_never_ends_connection", Options{}, func(t *testing.T, w *world) {
			p := w.established(40009)
			seg := tcpFrame(t, macUp, gwMAC, ap(patIP, p), ap(remote, 80), "A", 1001, 5001, nil)
			for _, code := range []uint8{0, 1, 3, 13} {
				w.send("uplink", errFrame(t, macUp, gwMAC, remote, patIP, 3, code, ipOf(t, seg)))
				w.recv("vmB")
			}
			if f, ok := flowState(w, packet.ProtoTCP, ipB, 40009); !ok || f.State != "ESTABLISHED" {
				t.Fatalf("after ICMP errors: found %v state %s, want ESTABLISHED", ok, f.State)
			}
			if !w.tcpIn(ap(remote, 80), ap(patIP, p), "PA", 5001, 1001) {
				t.Fatal("connection refused after ICMP errors")
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, newWorld(t, tc.o)) })
	}
}

func TestRFC5508(t *testing.T) {
	cases := []struct {
		name string
		o    Options
		run  func(t *testing.T, w *world)
	}{
		{"REQ-1_query_identifier_translated", Options{}, func(t *testing.T, w *world) {
			ids := map[string]uint16{}
			for _, port := range []string{"vmB", "vmC"} {
				src, mac := ipB, macB
				if port == "vmC" {
					src, mac = ipC, macC
				}
				w.send(port, echoFrame(t, mac, gwMAC, src, remote, packet.ICMPEcho, 77, 1))
				pk := w.recv("uplink")
				checksumsOK(t, pk.Data())
				ids[port] = pk.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4).Id
			}
			if ids["vmB"] == ids["vmC"] {
				t.Fatalf("B and C share identifier %d", ids["vmB"])
			}
			for port, id := range ids {
				w.send("uplink", echoFrame(t, macUp, gwMAC, remote, patIP, packet.ICMPEchoReply, id, 1))
				if ic := w.recv(port).Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4); ic.Id != 77 {
					t.Fatalf("%s: reply id %d, want 77", port, ic.Id)
				}
			}
		}},
		{"REQ-2_query_timer_at_least_60s", Options{}, func(t *testing.T, w *world) {
			w.send("vmB", echoFrame(t, macB, gwMAC, ipB, remote, packet.ICMPEcho, 78, 1))
			id := w.recv("uplink").Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4).Id
			w.clk.Advance(60 * time.Second)
			w.send("uplink", echoFrame(t, macUp, gwMAC, remote, patIP, packet.ICMPEchoReply, id, 1))
			w.recv("vmB")
		}},
		{"REQ-3_bad_icmp_checksum_dropped", Options{}, func(t *testing.T, w *world) {
			p := w.udpOut("vmB", ap(ipB, 6000), ap(remote, 53))
			f := errFrame(t, macUp, gwMAC, remote, patIP, 3, 3, ipOf(t, udpFrame(t, macUp, gwMAC, ap(patIP, p), ap(remote, 53), []byte("out"))))
			f[14+20+2] ^= 0x55
			w.send("uplink", f)
			w.none("vmB")
			if w.drops("bad_checksum") != 1 {
				t.Fatalf("bad_checksum drops %d, want 1", w.drops("bad_checksum"))
			}
		}},
		{"REQ-3c_bad_embedded_ip_checksum_dropped", Options{}, func(t *testing.T, w *world) {
			p := w.udpOut("vmB", ap(ipB, 6000), ap(remote, 53))
			emb := ipOf(t, udpFrame(t, macUp, gwMAC, ap(patIP, p), ap(remote, 53), []byte("out")))
			emb[10] ^= 0x55 // the embedded IP header checksum; the ICMP checksum covers it and verifies
			w.send("uplink", errFrame(t, macUp, gwMAC, remote, patIP, 3, 3, emb))
			w.none("vmB")
			if w.drops("bad_checksum") != 1 {
				t.Fatalf("bad_checksum drops %d, want 1", w.drops("bad_checksum"))
			}
		}},
		{"REQ-4_inbound_error_embedded_reverted_outer_destination_rewritten", Options{}, func(t *testing.T, w *world) {
			p := w.udpOut("vmB", ap(ipB, 6000), ap(remote, 53))
			sent := udpFrame(t, macUp, gwMAC, ap(patIP, p), ap(remote, 53), []byte("out"))
			w.send("uplink", errFrame(t, macUp, gwMAC, remote2, patIP, 3, 3, ipOf(t, sent)))
			pk := w.recv("vmB")
			checksumsOK(t, pk.Data())
			q := icmpOf(t, pk.Data())
			if q.Src != packet.AddrFrom(remote2) || q.Dst != packet.AddrFrom(ipB) {
				t.Fatalf("outer %v -> %v, want %v -> %v", packet.Addr(q.Src), packet.Addr(q.Dst), remote2, ipB)
			}
			if q.Inner.Src != packet.AddrFrom(ipB) || q.Inner.SPort != 6000 || q.Inner.Dst != packet.AddrFrom(remote) || q.Inner.DPort != 53 {
				t.Fatalf("embedded %v:%d -> %v:%d, want %v:6000 -> %v:53", packet.Addr(q.Inner.Src), q.Inner.SPort, packet.Addr(q.Inner.Dst), q.Inner.DPort, ipB, remote)
			}
			if !packet.IPv4(pk.Data()[q.Inner.L3:]).ChecksumValid() {
				t.Fatal("embedded IP checksum does not verify")
			}
		}},
		{"REQ-5_outbound_error_embedded_reverted_outer_source_rewritten", Options{}, func(t *testing.T, w *world) {
			for _, tc := range []struct {
				port     string
				mac      []byte
				priv     netip.Addr
				pub      netip.Addr
				privPort uint16
			}{{"vmA", macA, ipA, eipA, 5000}, {"vmB", macB, ipB, patIP, 6000}} {
				pub := tc.privPort
				if tc.port == "vmB" {
					pub = w.udpOut("vmB", ap(ipB, 6000), ap(remote, 53))
				}
				// The remote's datagram comes in; the guest answers with an error about it.
				if !w.udpIn(tc.port, ap(remote, 53), ap(tc.pub, pub)) {
					t.Fatalf("%s: datagram not delivered", tc.port)
				}
				got := udpFrame(t, macUp, gwMAC, ap(remote, 53), ap(tc.priv, tc.privPort), []byte("in"))
				w.send(tc.port, errFrame(t, tc.mac, gwMAC, tc.priv, remote, 3, 3, ipOf(t, got)))
				pk := w.recv("uplink")
				checksumsOK(t, pk.Data())
				q := icmpOf(t, pk.Data())
				if q.Src != packet.AddrFrom(tc.pub) || q.Dst != packet.AddrFrom(remote) {
					t.Fatalf("%s: outer %v -> %v, want %v -> %v", tc.port, packet.Addr(q.Src), packet.Addr(q.Dst), tc.pub, remote)
				}
				if q.Inner.Dst != packet.AddrFrom(tc.pub) || q.Inner.DPort != pub || q.Inner.Src != packet.AddrFrom(remote) {
					t.Fatalf("%s: embedded to %v:%d, want %v:%d", tc.port, packet.Addr(q.Inner.Dst), q.Inner.DPort, tc.pub, pub)
				}
				if !packet.IPv4(pk.Data()[q.Inner.L3:]).ChecksumValid() {
					t.Fatal("embedded IP checksum does not verify")
				}
			}
		}},
		{"REQ-6_errors_never_refresh_or_delete_session", Options{}, func(t *testing.T, w *world) {
			p := w.udpOut("vmB", ap(ipB, 6000), ap(remote, 53))
			emb := ipOf(t, udpFrame(t, macUp, gwMAC, ap(patIP, p), ap(remote, 53), []byte("out")))
			w.clk.Advance(10 * time.Second)
			w.send("uplink", errFrame(t, macUp, gwMAC, remote, patIP, 3, 3, emb))
			w.recv("vmB")
			if !w.udpIn("vmB", ap(remote, 53), ap(patIP, p)) { // not deleted
				t.Fatal("the error deleted the session")
			}
			// A new one-way session: errors at 100 s must not carry it past 120 s.
			q := w.udpOut("vmB", ap(ipB, 6001), ap(remote, 53))
			emb = ipOf(t, udpFrame(t, macUp, gwMAC, ap(patIP, q), ap(remote, 53), []byte("out")))
			w.clk.Advance(100 * time.Second)
			w.send("uplink", errFrame(t, macUp, gwMAC, remote, patIP, 3, 3, emb))
			w.recv("vmB")
			w.clk.Advance(25 * time.Second)
			if w.udpIn("vmB", ap(remote, 53), ap(patIP, q)) {
				t.Fatal("the error refreshed the session")
			}
		}},
		{"REQ-7_hairpinned_errors", Options{}, func(t *testing.T, w *world) {
			w.send("vmB", udpFrame(t, macB, gwMAC, ap(ipB, 7000), ap(eipA, 5000), []byte("hp")))
			got := w.recv("vmA")
			sport := uint16(got.Layer(layers.LayerTypeUDP).(*layers.UDP).SrcPort)
			// A answers port unreachable about what it got.
			w.send("vmA", errFrame(t, macA, gwMAC, ipA, patIP, 3, 3, ipOf(t, got.Data())))
			pk := w.recv("vmB")
			checksumsOK(t, pk.Data())
			q := icmpOf(t, pk.Data())
			if q.Src != packet.AddrFrom(eipA) || q.Dst != packet.AddrFrom(ipB) {
				t.Fatalf("outer %v -> %v, want %v -> %v", packet.Addr(q.Src), packet.Addr(q.Dst), eipA, ipB)
			}
			if q.Inner.Src != packet.AddrFrom(ipB) || q.Inner.SPort != 7000 || q.Inner.Dst != packet.AddrFrom(eipA) || q.Inner.DPort != 5000 {
				t.Fatalf("embedded %v:%d -> %v:%d, want %v:7000 -> %v:5000 (public port %d)", packet.Addr(q.Inner.Src), q.Inner.SPort,
					packet.Addr(q.Inner.Dst), q.Inner.DPort, ipB, eipA, sport)
			}
		}},
		{"REQ-8_code_13_on_security_group_refusal", Options{}, func(t *testing.T, w *world) {
			w.cfg.Records[1].Groups = []string{"sg-deny"}
			w.apply()
			w.send("vmB", tcpFrame(t, macB, gwMAC, ap(ipB, 40000), ap(remote, 80), "S", 1, 0, nil))
			w.none("uplink")
			checkAdminProhibited(t, w, "vmB", ipB, 40000)
		}},
		{"REQ-8_code_13_on_port_exhaustion", Options{PAT: nat.PATOptions{PortMin: 2000, PortMax: 2001}}, func(t *testing.T, w *world) {
			w.udpOut("vmB", ap(ipB, 2000), ap(remote, 53))
			w.udpOut("vmB", ap(ipB, 2001), ap(remote, 53))
			w.send("vmB", udpFrame(t, macB, gwMAC, ap(ipB, 3000), ap(remote, 53), nil))
			w.none("uplink")
			checkAdminProhibited(t, w, "vmB", ipB, 3000)
			if w.drops("nat_ports_exhausted") != 1 {
				t.Fatalf("nat_ports_exhausted %d, want 1", w.drops("nat_ports_exhausted"))
			}
		}},
		{"REQ-8_code_13_rate_limited", Options{ICMPErrorRate: 3, PAT: nat.PATOptions{PortMin: 2000, PortMax: 2001}}, func(t *testing.T, w *world) {
			w.udpOut("vmB", ap(ipB, 2000), ap(remote, 53))
			w.udpOut("vmB", ap(ipB, 2001), ap(remote, 53))
			for i := 0; i < 10; i++ {
				w.send("vmB", udpFrame(t, macB, gwMAC, ap(ipB, uint16(3000+i)), ap(remote, 53), nil))
			}
			if n := w.ports["vmB"].Pending(); n != 3 {
				t.Fatalf("%d errors in one second, want 3", n)
			}
			if c := w.sw.Counters(); c.ICMPSent != 3 || c.ICMPLimited != 7 {
				t.Fatalf("sent %d limited %d, want 3 and 7", c.ICMPSent, c.ICMPLimited)
			}
			for w.ports["vmB"].Pending() > 0 {
				w.recv("vmB")
			}
			w.clk.Advance(time.Second)
			w.send("vmB", udpFrame(t, macB, gwMAC, ap(ipB, 4000), ap(remote, 53), nil))
			checkAdminProhibited(t, w, "vmB", ipB, 4000)
		}},
		{"REQ-9_df_too_big_answered_with_type_3_code_4", Options{}, func(t *testing.T, w *world) {
			w.send("vmB", udpFrame(t, macB, gwMAC, ap(ipB, 1), ap(remote, 2), make([]byte, 1600)))
			w.none("uplink")
			pk := w.recv("vmB")
			checksumsOK(t, pk.Data())
			ic := pk.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
			if ic.TypeCode != layers.CreateICMPv4TypeCode(3, 4) || ic.Seq != 1500 {
				t.Fatalf("got %v mtu %d, want 3/4 with mtu 1500", ic.TypeCode, ic.Seq)
			}
		}},
		{"REQ-10_ttl_expiry_answered_with_type_11", Options{}, func(t *testing.T, w *world) {
			f := udpFrame(t, macB, gwMAC, ap(ipB, 1), ap(remote, 2), nil)
			f[14+8] = 1
			packet.IPv4(f[14:]).ComputeChecksum()
			w.send("vmB", f)
			w.none("uplink")
			pk := w.recv("vmB")
			checksumsOK(t, pk.Data())
			if ic := pk.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4); ic.TypeCode.Type() != layers.ICMPv4TypeTimeExceeded {
				t.Fatalf("got %v, want time exceeded", ic.TypeCode)
			}
			// From outside, through the public IP, too.
			f = udpFrame(t, macUp, gwMAC, ap(remote, 2), ap(eipA, 5000), nil)
			f[14+8] = 1
			packet.IPv4(f[14:]).ComputeChecksum()
			w.send("uplink", f)
			w.none("vmA")
			q := icmpOf(t, w.recv("uplink").Data())
			if q.ICMPType != 11 || q.Src != packet.AddrFrom(eipA) {
				t.Fatalf("got type %d from %v, want 11 from %v", q.ICMPType, packet.Addr(q.Src), eipA)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, newWorld(t, tc.o)) })
	}
}

// checkAdminProhibited expects ICMP 3/13 from the gateway on port about a
// datagram from src:sport.
func checkAdminProhibited(t *testing.T, w *world, port string, src netip.Addr, sport uint16) {
	t.Helper()
	pk := w.recv(port)
	checksumsOK(t, pk.Data())
	q := icmpOf(t, pk.Data())
	gw := src.As4()
	gw[3] = 1 // the subnet's gateway (the test world's subnets are /24s)
	if q.ICMPType != 3 || q.ICMPCode != 13 || q.Dst != packet.AddrFrom(src) || q.Src != packet.AddrFrom(netip.AddrFrom4(gw)) {
		t.Fatalf("got %d/%d %v -> %v, want 3/13 from %v to %v", q.ICMPType, q.ICMPCode, packet.Addr(q.Src), packet.Addr(q.Dst), netip.AddrFrom4(gw), src)
	}
	if q.Inner.Src != packet.AddrFrom(src) || q.Inner.SPort != sport {
		t.Fatalf("about %v:%d, want %v:%d", packet.Addr(q.Inner.Src), q.Inner.SPort, src, sport)
	}
}

func TestRFC6888(t *testing.T) {
	t.Run("REQ-8_freed_port_held_120s", func(t *testing.T) {
		// One even port: B takes it, its flow ends, and C (who would
		// preserve the same port) is refused until 120 s have passed.
		w := newWorld(t, Options{PAT: nat.PATOptions{PortMin: 2000, PortMax: 2001}})
		if p := w.udpOut("vmB", ap(ipB, 2000), ap(remote, 53)); p != 2000 {
			t.Fatalf("port %d, want 2000 (preserved)", p)
		}
		// The mapping ends when its flow expires, 120 s after its last
		// packet; the port is held from then on, however late the sweep.
		freed := w.clk.Now().Add(2 * time.Minute)
		w.clk.Advance(3 * time.Minute)
		w.sw.Conntrack().Expire(uint32(w.clk.Now().Unix()), 1<<20)
		if n := w.sw.Conntrack().Len(); n != 0 {
			t.Fatalf("%d flows left, want 0", n)
		}
		for i, at := range []time.Duration{time.Minute, 90 * time.Second, 119 * time.Second} {
			w.clk.t = freed.Add(at)
			w.send("vmC", udpFrame(t, macC, gwMAC, ap(ipC, 2000), ap(remote, uint16(100+i)), nil))
			w.none("uplink")
			checkAdminProhibited(t, w, "vmC", ipC, 2000)
		}
		if got := w.drops("nat_ports_exhausted"); got != 3 {
			t.Fatalf("nat_ports_exhausted %d, want 3", got)
		}
		w.clk.t = freed.Add(121 * time.Second)
		if q := w.udpOut("vmC", ap(ipC, 2000), ap(remote, 53)); q != 2000 {
			t.Fatalf("after 121 s got port %d, want 2000 again", q)
		}
	})
}
