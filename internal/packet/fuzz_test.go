package packet_test

import (
	"testing"

	"roam/internal/packet"
	"roam/internal/packet/packettest"
)

// seedFrames are small valid frames of every kind Parse handles.
func seedFrames() [][]byte {
	arp := make([]byte, 42)
	packet.PutARP(arp, packet.ARPRequest, packet.MAC{2}, 1, packet.MAC{}, 2, packet.Broadcast)
	emb := packettest.IP(udpSpec(12))
	frags := packettest.Fragment(packettest.Frame(udpSpec(64)), 32)
	return [][]byte{
		arp,
		packettest.Frame(tcpSpec(packet.TCPSyn, 0)),
		packettest.Frame(tcpSpec(packet.TCPAck, 20)),
		packettest.Frame(udpSpec(8)),
		packettest.Frame(echoSpec(8, 1)),
		packettest.Frame(echoSpec(0, 1)),
		packettest.ICMPError(3, 3, router, apPriv.Addr(), emb, 0, 0),
		packettest.ICMPError(11, 0, router, apPriv.Addr(), packettest.IP(tcpSpec(packet.TCPSyn, 0)), 28, 0),
		frags[0], frags[1],
	}
}

func FuzzParse(f *testing.F) {
	for _, b := range seedFrames() {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var p packet.Parsed
		r := packet.Parse(b, &p)
		if r >= packet.NumReasons {
			t.Fatalf("reason %d out of range", r)
		}
		if r != packet.ReasonNone || p.EthType == packet.EtherTypeARP {
			return
		}
		if p.L3 != packet.EthernetLen || p.End > len(b) || p.End < p.L3+packet.IPv4MinLen {
			t.Fatalf("L3 %d End %d out of frame of %d", p.L3, p.End, len(b))
		}
		if !packet.IPv4(b[p.L3:p.End]).ChecksumValid() {
			t.Fatalf("accepted a header whose checksum does not verify")
		}
		if p.L4 != 0 {
			if p.L4 < p.L3+packet.IPv4MinLen || p.L4 > p.End {
				t.Fatalf("L4 %d outside [%d, %d]", p.L4, p.L3+20, p.End)
			}
			min := map[uint8]int{packet.ProtoTCP: packet.TCPMinLen, packet.ProtoUDP: packet.UDPLen, packet.ProtoICMP: packet.ICMPLen}[p.Proto]
			if p.End-p.L4 < min {
				t.Fatalf("L4 header of proto %d: %d bytes, want >= %d", p.Proto, p.End-p.L4, min)
			}
		} else if p.Frag != packet.LaterFragment {
			t.Fatalf("no L4 offset for a non-later fragment")
		}
		if p.IsError {
			in := p.Inner
			if in.L3 < p.L4+packet.ICMPLen || in.L3+packet.IPv4MinLen > p.End {
				t.Fatalf("inner L3 %d outside the message [%d, %d]", in.L3, p.L4+8, p.End)
			}
			need := map[uint8]int{packet.ProtoTCP: 4, packet.ProtoUDP: 4, packet.ProtoICMP: packet.ICMPLen}[in.Proto]
			if in.L4 != 0 && (in.L4 < in.L3+packet.IPv4MinLen || in.L4+need > p.End) {
				t.Fatalf("inner L4 %d (proto %d) outside [%d, %d]", in.L4, in.Proto, in.L3+20, p.End)
			}
		}
	})
}
