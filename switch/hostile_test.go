package vswitch

// A hostile VM: it spoofs another's IP or MAC, answers ARP for addresses
// it does not hold, floods DHCP, sends where its groups deny, or sends
// overlapping fragments. It gets nothing through, every attempt is counted
// (on the switch and on its record), and no other VM notices: B's traffic
// and DHCP go on and B receives nothing it did not ask for.

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/gopacket/layers"
	"github.com/insomniacslk/dhcp/dhcpv4"

	"roam/internal/packet"
	"roam/tap"
)

func TestHostileVM(t *testing.T) {
	w := newWorld(t, Options{})
	attacker := "eni-0000000a" // A, on port vmA
	// B talks to the outside the whole time; its flow must be unaffected.
	bFlow := func() {
		t.Helper()
		p := w.udpOut("vmB", ap(ipB, 5353), ap(remote, 53))
		if !w.udpIn("vmB", ap(remote, 53), ap(patIP, p)) {
			t.Fatal("B's reply lost")
		}
	}
	bFlow()
	cases := []struct {
		name   string
		frames func() [][]byte
		reason string
	}{
		{"spoofs B's IP", func() [][]byte {
			return [][]byte{
				udpFrame(t, macA, gwMAC, ap(ipB, 5353), ap(remote, 53), []byte("spoof")),
				udpFrame(t, macA, macC, ap(ipB, 1), ap(ipC, 2), nil),
				tcpFrame(t, macA, gwMAC, ap(ipB, 40000), ap(remote, 80), "S", 1, 0, nil),
			}
		}, "source_check"},
		{"spoofs B's IP and MAC", func() [][]byte {
			return [][]byte{udpFrame(t, macB, gwMAC, ap(ipB, 5353), ap(remote, 53), []byte("spoof"))}
		}, "source_check"},
		{"ARP request with B's IP as sender", func() [][]byte { return [][]byte{arpFrame(t, macA, ipB, gw0)} }, "source_check"},
		{"ARP replies for B's IP and the gateway", func() [][]byte {
			var out [][]byte
			for _, ip := range []netip.Addr{ipB, gw0} {
				f := arpFrame(t, macA, ip, ipB)
				f[14+7] = byte(packet.ARPReply) // op: reply
				out = append(out, f)
			}
			return out
		}, "arp_ignored"},
		{"sends where its groups deny", func() [][]byte {
			return [][]byte{tcpFrame(t, macA, gwMAC, ap(ipA, 40000), ap(remote, 25), "S", 1, 0, nil)}
		}, "sg_egress"},
		{"sends to an address no record holds", func() [][]byte {
			return [][]byte{udpFrame(t, macA, gwMAC, ap(ipA, 1), ap(netip.MustParseAddr("10.0.0.99"), 2), nil)}
		}, "no_route"},
		{"overlapping fragment", func() [][]byte {
			big := udpFrame(t, macA, gwMAC, ap(ipA, 7777), ap(remote, 53), make([]byte, 1000))
			frags := fragment(t, big, 400)
			// A second fragment claiming offset 8: it would rewrite the
			// UDP header the first fragment was judged on.
			evil := append([]byte(nil), frags[1]...)
			ip := packet.IPv4(evil[14:])
			evil[14+6], evil[14+7] = 0, 1 // offset 1 (8 bytes), MF clear
			ip.ComputeChecksum()
			return [][]byte{frags[0], evil}
		}, "frag_overlap"},
	}
	w.cfg.Groups = append(w.cfg.Groups, Group{ID: "sg-no25", Egress: []Rule{{Proto: packet.ProtoTCP, FromPort: 1, ToPort: 24, CIDR: netip.MustParsePrefix("0.0.0.0/0")},
		{Proto: packet.ProtoUDP, CIDR: netip.MustParsePrefix("0.0.0.0/0")}}})
	w.cfg.Records[0].Groups = []string{"sg-no25"}
	w.apply()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := w.sw.RecordCounters(attacker).Drops[tc.reason]
			frames := tc.frames()
			for _, f := range frames {
				w.send("vmA", f)
			}
			// Only what A may send left: the first fragment of its own
			// datagram; nothing for B or C, and B's flow goes on.
			for w.ports["uplink"].Pending() > 0 {
				pk := w.recv("uplink")
				if ip, ok := pk.Layer(layers.LayerTypeIPv4).(*layers.IPv4); !ok || !ip.SrcIP.Equal(eipA.AsSlice()) {
					t.Fatalf("the uplink got %v", pk)
				}
			}
			w.none("vmB")
			w.none("vmC")
			for w.ports["vmA"].Pending() > 0 { // ICMP errors back to A are fine
				w.recv("vmA")
			}
			after := w.sw.RecordCounters(attacker).Drops[tc.reason]
			want := uint64(len(frames))
			if tc.reason == "frag_overlap" {
				want = 1
			}
			if after-before != want {
				t.Fatalf("A's %s drops went %d -> %d, want +%d", tc.reason, before, after, want)
			}
			bFlow()
		})
	}
	t.Run("floods DHCP", func(t *testing.T) {
		disc, err := dhcpv4.NewDiscovery(macA)
		if err != nil {
			t.Fatal(err)
		}
		f := dhcpFrame(t, macA, disc)
		var frames [][]byte
		for i := 0; i < 1000; i++ {
			frames = append(frames, f)
		}
		w.batch("vmA", frames)
		answered := len(w.drain("vmA"))
		limited := w.sw.RecordCounters(attacker).Drops["dhcp_rate_limited"]
		if answered != DefaultDHCPRate || limited != 1000-DefaultDHCPRate {
			t.Fatalf("answered %d, rate-limited %d; want %d and %d", answered, limited, DefaultDHCPRate, 1000-DefaultDHCPRate)
		}
		// B's DHCP is answered in the same second: the limit is per port.
		discB, _ := dhcpv4.NewDiscovery(macB)
		w.send("vmB", dhcpFrame(t, macB, discB))
		if m := w.dhcpReply("vmB"); m.MessageType() != dhcpv4.MessageTypeOffer || !m.YourIPAddr.Equal(ipB.AsSlice()) {
			t.Fatalf("B got %s of %v", m.MessageType(), m.YourIPAddr)
		}
		// The next second, A is answered again.
		w.clk.Advance(time.Second)
		w.send("vmA", f)
		w.dhcpReply("vmA")
		bFlow()
	})
}

// FuzzDHCP feeds arbitrary DHCP payloads (and the UDP/IP around them) from
// a record's port: the server must not panic, answers only from the
// gateway to the asker, and every frame gets one verdict.
func FuzzDHCP(f *testing.F) {
	for _, typ := range []dhcpv4.MessageType{dhcpv4.MessageTypeDiscover, dhcpv4.MessageTypeRequest, dhcpv4.MessageTypeInform, dhcpv4.MessageTypeRelease} {
		m, err := dhcpv4.NewDiscovery(macB, dhcpv4.WithMessageType(typ), dhcpv4.WithRequestedOptions(dhcpv4.OptionRouter, dhcpv4.OptionDomainNameServer))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(m.ToBytes())
	}
	f.Add([]byte{1, 1, 6, 0})
	f.Fuzz(func(t *testing.T, payload []byte) {
		w := newWorld(t, Options{})
		eth := &layers.Ethernet{SrcMAC: macB, DstMAC: []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, EthernetType: layers.EthernetTypeIPv4}
		ip := ipv4(netip.IPv4Unspecified(), netip.MustParseAddr("255.255.255.255"), layers.IPProtocolUDP)
		u := &layers.UDP{SrcPort: 68, DstPort: 67}
		u.SetNetworkLayerForChecksum(ip)
		frame := ser(t, eth, ip, u, gopacket_Payload(payload))
		fs := tap.NewFrames(1, tap.Headroom+len(frame)+2048)
		fs[0].Len = copy(fs[0].Buf[tap.Headroom:], frame)
		w.sw.Process("vmB", fs)
		c := w.sw.Counters()
		if c.Forwarded+c.Local+c.Dropped+uint64(c.Held) != c.Packets || c.Packets != 1 {
			t.Fatalf("verdicts do not add up: %+v", c)
		}
		w.none("uplink")
		w.none("vmA")
		if w.ports["vmB"].Pending() > 0 {
			pk := w.recv("vmB")
			checksumsOK(t, pk.Data())
			ipl := pk.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
			if !ipl.SrcIP.Equal(gw0.AsSlice()) {
				t.Fatalf("answer from %v, want the gateway", ipl.SrcIP)
			}
		}
	})
}
