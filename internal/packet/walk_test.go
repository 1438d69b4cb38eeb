package packet_test

import (
	"encoding/binary"
	"testing"

	"roam/internal/packet"
	"roam/internal/packet/packettest"
)

// tagged returns frame with VLAN tags of the given TPIDs inserted after the
// MAC addresses.
func tagged(frame []byte, tpids ...uint16) []byte {
	out := append([]byte(nil), frame[:12]...)
	for i, t := range tpids {
		out = binary.BigEndian.AppendUint16(out, t)
		out = binary.BigEndian.AppendUint16(out, uint16(10+i))
	}
	return append(out, frame[12:]...)
}

func TestWalk(t *testing.T) {
	udp := packettest.Frame(udpSpec(8))
	withOpts := packettest.Frame(udpSpec(8))
	withOpts = append(withOpts[:34:34], append(make([]byte, 8), withOpts[34:]...)...)
	withOpts[14] = 0x47 // IHL 7: the walk does not check the checksum
	v6 := append(make([]byte, 14), make([]byte, 48)...)
	binary.BigEndian.PutUint16(v6[12:], packet.EtherTypeIPv6)
	v6[14], v6[14+6] = 0x60, packet.ProtoTCP
	arp := make([]byte, 42)
	packet.PutARP(arp, packet.ARPRequest, packet.MAC{2}, 1, packet.MAC{}, 2, packet.Broadcast)
	badVer := append([]byte(nil), udp...)
	badVer[14] = 0x65
	shortIHL := append([]byte(nil), udp...)
	shortIHL[14] = 0x44
	tests := []struct {
		name    string
		frame   []byte
		maxTags int
		want    packet.Headers
		ok      bool
	}{
		{"udp", udp, 0, packet.Headers{EthType: packet.EtherTypeIPv4, L3: 14, L4: 34, Proto: packet.ProtoUDP}, true},
		{"ip options", withOpts, 0, packet.Headers{EthType: packet.EtherTypeIPv4, L3: 14, L4: 42, Proto: packet.ProtoUDP}, true},
		{"ipv6", v6, 0, packet.Headers{EthType: packet.EtherTypeIPv6, L3: 14, L4: 54, Proto: packet.ProtoTCP}, true},
		{"arp", arp, 2, packet.Headers{EthType: packet.EtherTypeARP, L3: 14}, true},
		{"802.1Q", tagged(udp, packet.EtherTypeVLAN), 1, packet.Headers{EthType: packet.EtherTypeIPv4, Tags: 1, L3: 18, L4: 38, Proto: packet.ProtoUDP}, true},
		{"QinQ", tagged(udp, packet.EtherTypeQinQ, packet.EtherTypeVLAN), 2, packet.Headers{EthType: packet.EtherTypeIPv4, Tags: 2, L3: 22, L4: 42, Proto: packet.ProtoUDP}, true},
		{"0x9100", tagged(udp, packet.EtherTypeVLAN9100), 1, packet.Headers{EthType: packet.EtherTypeIPv4, Tags: 1, L3: 18, L4: 38, Proto: packet.ProtoUDP}, true},
		{"tag beyond maxTags", tagged(udp, packet.EtherTypeVLAN), 0, packet.Headers{EthType: packet.EtherTypeVLAN, L3: 14}, true},
		{"two tags, max one", tagged(udp, packet.EtherTypeQinQ, packet.EtherTypeVLAN), 1, packet.Headers{EthType: packet.EtherTypeVLAN, Tags: 1, L3: 18}, true},
		{"bad version", badVer, 0, packet.Headers{EthType: packet.EtherTypeIPv4, L3: 14}, true},
		{"IHL below 5", shortIHL, 0, packet.Headers{EthType: packet.EtherTypeIPv4, L3: 14}, true},
		{"IP header cut", udp[:30], 0, packet.Headers{EthType: packet.EtherTypeIPv4, L3: 14}, true},
		{"options cut", withOpts[:40], 0, packet.Headers{EthType: packet.EtherTypeIPv4, L3: 14}, true},
		{"ipv6 cut", v6[:50], 0, packet.Headers{EthType: packet.EtherTypeIPv6, L3: 14}, true},
		{"runt", udp[:13], 0, packet.Headers{}, false},
		{"tag cut", tagged(udp, packet.EtherTypeVLAN)[:16], 1, packet.Headers{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got packet.Headers
			ok := packet.Walk(tc.frame, tc.maxTags, &got)
			if got != tc.want || ok != tc.ok {
				t.Errorf("got %+v, %v, want %+v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestWalkNoAllocs(t *testing.T) {
	f := tagged(packettest.Frame(udpSpec(8)), packet.EtherTypeVLAN)
	var h packet.Headers
	if n := testing.AllocsPerRun(100, func() { packet.Walk(f, 2, &h) }); n != 0 {
		t.Errorf("Walk: got %v allocs per run, want 0", n)
	}
}

// FuzzWalk checks that Walk stays inside the frame, that what it reports
// holds in the bytes, and that Parse (which walks with no tags) agrees with
// it on every frame Parse accepts.
func FuzzWalk(f *testing.F) {
	for _, b := range seedFrames() {
		f.Add(b, uint8(0))
		f.Add(tagged(b, packet.EtherTypeQinQ, packet.EtherTypeVLAN), uint8(2))
	}
	f.Fuzz(func(t *testing.T, b []byte, maxTags uint8) {
		max := int(maxTags % 4)
		var h packet.Headers
		ok := packet.Walk(b, max, &h)
		if !ok {
			if h != (packet.Headers{}) {
				t.Fatalf("not ok but got %+v", h)
			}
			return
		}
		if int(h.Tags) > max || h.L3 != packet.EthernetLen+int(h.Tags)*packet.VLANLen || h.L3 > len(b) {
			t.Fatalf("got %+v for %d bytes and %d tags at most", h, len(b), max)
		}
		if et := binary.BigEndian.Uint16(b[h.L3-2:]); et != h.EthType {
			t.Fatalf("EthType %#x, the bytes before L3 say %#x", h.EthType, et)
		}
		if h.L4 != 0 {
			if h.L4 > len(b) || h.L4-h.L3 < packet.IPv4MinLen {
				t.Fatalf("L4 %d outside [%d, %d]", h.L4, h.L3+packet.IPv4MinLen, len(b))
			}
			if h.EthType == packet.EtherTypeIPv4 && (b[h.L3]>>4 != 4 || h.L4-h.L3 != packet.IPv4(b[h.L3:]).HeaderLen() || h.Proto != b[h.L3+9]) {
				t.Fatalf("IPv4 L4 %d proto %d disagree with the header % x", h.L4, h.Proto, b[h.L3:h.L3+packet.IPv4MinLen])
			}
			if h.EthType == packet.EtherTypeIPv6 && (b[h.L3]>>4 != 6 || h.L4-h.L3 != packet.IPv6Len) {
				t.Fatalf("IPv6 L4 %d disagrees with the header", h.L4)
			}
		} else if h.Proto != 0 {
			t.Fatalf("Proto %d without L4", h.Proto)
		}
		var p packet.Parsed
		if packet.Parse(b, &p) == packet.ReasonNone && p.EthType == packet.EtherTypeIPv4 {
			if h.Tags != 0 || h.L3 != p.L3 || h.Proto != p.Proto || (p.L4 != 0 && h.L4 != p.L4) {
				t.Fatalf("Walk %+v disagrees with Parse %+v", h, p)
			}
		}
	})
}

func BenchmarkWalk(b *testing.B) {
	f := packettest.Frame(tcpSpec(packet.TCPAck, 10))
	var h packet.Headers
	b.ReportAllocs()
	for b.Loop() {
		if !packet.Walk(f, 1, &h) || h.L4 == 0 {
			b.Fatal("walk failed")
		}
	}
}
