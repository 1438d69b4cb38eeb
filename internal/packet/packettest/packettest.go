// Package packettest builds and checks Ethernet/IPv4 frames for tests of
// roam's data path. Frames are built with gopacket's layers and checked with
// a plain RFC 1071 checksum written here, so tests of package packet's
// checksums and of nat's rewrites are verified by code that shares nothing
// with what they test.
package packettest

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// Default MACs of built frames.
var (
	SrcMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}
	DstMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x02}
)

// Spec describes one frame. Zero fields take sensible defaults: TTL 64,
// TCP window 65535, a SYN-less ACK only when Flags is set.
type Spec struct {
	Proto      uint8 // 6, 17, 1 or anything else (raw payload)
	Src, Dst   netip.AddrPort
	TTL        uint8
	ID         uint16 // IP identification
	DF         bool
	IPOptions  []layers.IPv4Option
	TCPFlags   uint8
	Seq, Ack   uint32
	Window     uint16
	TCPOptions []layers.TCPOption
	ICMPType   uint8
	ICMPCode   uint8
	ICMPID     uint16 // echo identifier (or the 16 bits at offset 4)
	ICMPSeq    uint16 // echo sequence (or the next-hop MTU of frag-needed)
	Payload    []byte
	NoUDPSum   bool // send UDP without a checksum
}

var opts = gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}

// IP returns the IPv4 datagram s describes.
func IP(s Spec) []byte {
	f := Frame(s)
	return f[14:]
}

// Frame returns the Ethernet frame s describes.
func Frame(s Spec) []byte {
	ttl := s.TTL
	if ttl == 0 {
		ttl = 64
	}
	eth := &layers.Ethernet{SrcMAC: SrcMAC, DstMAC: DstMAC, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{
		Version: 4, TTL: ttl, Id: s.ID, Protocol: layers.IPProtocol(s.Proto),
		SrcIP: s.Src.Addr().AsSlice(), DstIP: s.Dst.Addr().AsSlice(), Options: s.IPOptions,
	}
	if s.DF {
		ip.Flags = layers.IPv4DontFragment
	}
	ls := []gopacket.SerializableLayer{eth, ip}
	switch s.Proto {
	case 6:
		win := s.Window
		if win == 0 {
			win = 65535
		}
		t := &layers.TCP{
			SrcPort: layers.TCPPort(s.Src.Port()), DstPort: layers.TCPPort(s.Dst.Port()),
			Seq: s.Seq, Ack: s.Ack, Window: win, Options: s.TCPOptions,
			FIN: s.TCPFlags&0x01 != 0, SYN: s.TCPFlags&0x02 != 0, RST: s.TCPFlags&0x04 != 0,
			PSH: s.TCPFlags&0x08 != 0, ACK: s.TCPFlags&0x10 != 0, URG: s.TCPFlags&0x20 != 0,
			ECE: s.TCPFlags&0x40 != 0, CWR: s.TCPFlags&0x80 != 0,
		}
		must(t.SetNetworkLayerForChecksum(ip))
		ls = append(ls, t)
	case 17:
		u := &layers.UDP{SrcPort: layers.UDPPort(s.Src.Port()), DstPort: layers.UDPPort(s.Dst.Port())}
		must(u.SetNetworkLayerForChecksum(ip))
		ls = append(ls, u)
	case 1:
		ls = append(ls, &layers.ICMPv4{
			TypeCode: layers.CreateICMPv4TypeCode(s.ICMPType, s.ICMPCode),
			Id:       s.ICMPID, Seq: s.ICMPSeq,
		})
	}
	ls = append(ls, gopacket.Payload(s.Payload))
	buf := gopacket.NewSerializeBuffer()
	must(gopacket.SerializeLayers(buf, opts, ls...))
	b := append([]byte(nil), buf.Bytes()...)
	if s.Proto == 17 && s.NoUDPSum {
		hl := int(b[14]&0x0f) * 4
		b[14+hl+6], b[14+hl+7] = 0, 0
	}
	return b
}

// Fragment splits the datagram in frame into fragments carrying at most
// size bytes of payload each (size is rounded down to a multiple of 8). The
// IP headers are rebuilt with gopacket. Options are copied into every
// fragment, which is enough for tests.
func Fragment(frame []byte, size int) [][]byte {
	size &^= 7
	pkt := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
	ip, ok := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	if !ok {
		panic("packettest: not IPv4")
	}
	payload := ip.Payload
	var out [][]byte
	for off := 0; off < len(payload); off += size {
		end := min(off+size, len(payload))
		h := *ip
		h.Flags &^= layers.IPv4MoreFragments
		if end < len(payload) {
			h.Flags |= layers.IPv4MoreFragments
		}
		h.FragOffset = uint16(off / 8)
		eth := &layers.Ethernet{SrcMAC: SrcMAC, DstMAC: DstMAC, EthernetType: layers.EthernetTypeIPv4}
		buf := gopacket.NewSerializeBuffer()
		must(gopacket.SerializeLayers(buf, opts, eth, &h, gopacket.Payload(payload[off:end])))
		out = append(out, append([]byte(nil), buf.Bytes()...))
	}
	return out
}

// ICMPError returns the frame of an ICMP error from src to dst about the
// datagram embedded (an IP datagram, as from IP), of which at most maxEmbed
// bytes are quoted (0: all). rest is the 32-bit field after the checksum
// (the next-hop MTU of a frag-needed in its low 16 bits).
func ICMPError(typ, code uint8, src, dst netip.Addr, embedded []byte, maxEmbed int, rest uint32) []byte {
	if maxEmbed > 0 && len(embedded) > maxEmbed {
		embedded = embedded[:maxEmbed]
	}
	return Frame(Spec{
		Proto: 1, Src: netip.AddrPortFrom(src, 0), Dst: netip.AddrPortFrom(dst, 0),
		ICMPType: typ, ICMPCode: code, ICMPID: uint16(rest >> 16), ICMPSeq: uint16(rest),
		Payload: embedded,
	})
}

// Sum is a plain RFC 1071 sum: 16-bit big-endian words, carries folded at
// the end. It shares no code with package packet.
func Sum(bs ...[]byte) uint16 {
	var s uint32
	for _, b := range bs {
		for i := 0; i+1 < len(b); i += 2 {
			s += uint32(b[i])<<8 | uint32(b[i+1])
		}
		if len(b)%2 == 1 {
			s += uint32(b[len(b)-1]) << 8
		}
	}
	for s>>16 != 0 {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}

// Pseudo returns the IPv4 pseudo-header of an L4 segment of length n.
func Pseudo(src, dst []byte, proto uint8, n int) []byte {
	p := make([]byte, 12)
	copy(p[0:4], src)
	copy(p[4:8], dst)
	p[9] = proto
	binary.BigEndian.PutUint16(p[10:12], uint16(n))
	return p
}

// Verify checks every checksum of the frame that can be checked: the IPv4
// header; the TCP, UDP or ICMP checksum of a complete datagram (UDP 0
// means none); and, for an ICMP error, the embedded IPv4 header and the
// embedded TCP/UDP/ICMP checksum when the embedded datagram is quoted
// whole.
func Verify(frame []byte) error {
	if len(frame) < 14+20 {
		return fmt.Errorf("frame of %d bytes is too short", len(frame))
	}
	ip := frame[14:]
	tl := int(binary.BigEndian.Uint16(ip[2:4]))
	if tl > len(ip) {
		return fmt.Errorf("total length %d > %d bytes", tl, len(ip))
	}
	return verifyIP(ip[:tl], "")
}

func verifyIP(ip []byte, where string) error {
	hl := int(ip[0]&0x0f) * 4
	if hl < 20 || hl > len(ip) {
		return fmt.Errorf("%sIHL %d", where, hl)
	}
	if s := Sum(ip[:hl]); s != 0xffff {
		return fmt.Errorf("%sIPv4 header checksum: sum %#04x, want 0xffff", where, s)
	}
	ff := binary.BigEndian.Uint16(ip[6:8])
	if ff&0x3fff != 0 {
		return nil // a fragment: the L4 checksum spans fragments
	}
	tl := int(binary.BigEndian.Uint16(ip[2:4]))
	if tl < hl {
		if where != "" {
			return nil // a garbled quote: its header checksum is all there is to check
		}
		return fmt.Errorf("total length %d < header length %d", tl, hl)
	}
	if tl > len(ip) {
		return nil // truncated (embedded in an ICMP error): nothing more to check
	}
	seg := ip[hl:tl]
	switch ip[9] {
	case 6:
		if len(seg) < 20 {
			return fmt.Errorf("%sTCP segment of %d bytes", where, len(seg))
		}
		if s := Sum(Pseudo(ip[12:16], ip[16:20], 6, len(seg)), seg); s != 0xffff {
			return fmt.Errorf("%sTCP checksum: sum %#04x, want 0xffff", where, s)
		}
	case 17:
		if len(seg) < 8 {
			return fmt.Errorf("%sUDP datagram of %d bytes", where, len(seg))
		}
		if seg[6] == 0 && seg[7] == 0 {
			return nil
		}
		if s := Sum(Pseudo(ip[12:16], ip[16:20], 17, len(seg)), seg); s != 0xffff {
			return fmt.Errorf("%sUDP checksum: sum %#04x, want 0xffff", where, s)
		}
	case 1:
		if len(seg) < 8 {
			return fmt.Errorf("%sICMP message of %d bytes", where, len(seg))
		}
		if s := Sum(seg); s != 0xffff {
			return fmt.Errorf("%sICMP checksum: sum %#04x, want 0xffff", where, s)
		}
		switch seg[0] {
		case 3, 4, 5, 11, 12:
			if where == "" && len(seg) >= 8+20 {
				return verifyIP(seg[8:], "embedded ")
			}
		}
	}
	return nil
}

// Addr parses an IPv4 address and returns it in host order, as package
// packet keeps addresses.
func Addr(s string) uint32 {
	a := netip.MustParseAddr(s).As4()
	return binary.BigEndian.Uint32(a[:])
}

// AP parses "a.b.c.d:port".
func AP(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func must(err error) {
	if err != nil {
		panic("packettest: " + err.Error())
	}
}
