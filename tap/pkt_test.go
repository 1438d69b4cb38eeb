package tap

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"roam/internal/packet"
)

// Test frame builders: Ethernet + IPv4/IPv6 + TCP/UDP with valid checksums,
// or with a partial (pseudo-header) checksum and GSO metadata for
// super-frames.

var (
	macA = [6]byte{0x02, 0, 0, 0, 0, 0xa}
	macB = [6]byte{0x02, 0, 0, 0, 0, 0xb}
	ip4A = netip.MustParseAddr("192.0.2.1")
	ip4B = netip.MustParseAddr("192.0.2.2")
	ip6A = netip.MustParseAddr("2001:db8::1")
	ip6B = netip.MustParseAddr("2001:db8::2")
)

type pktSpec struct {
	v6       bool
	proto    uint8
	src, dst netip.Addr
	sport    uint16
	dport    uint16
	seq      uint32
	flags    byte // TCP flags
	tcpOpts  int  // bytes of TCP options (multiple of 4)
	id       uint16
	payload  []byte
	partial  bool // leave the L4 checksum partial (pseudo-header sum)
}

// build returns the frame and, when partial, the GSO fields for its checksum.
func (p pktSpec) build() ([]byte, GSO) {
	et := uint16(etherIPv4)
	iphl := 20
	if p.v6 {
		et, iphl = etherIPv6, ipv6HdrLen
	}
	l4hl := 8
	if p.proto == protoTCP {
		l4hl = 20 + p.tcpOpts
	}
	l4len := l4hl + len(p.payload)
	b := make([]byte, ethHdrLen+iphl+l4len)
	copy(b[0:6], macB[:])
	copy(b[6:12], macA[:])
	binary.BigEndian.PutUint16(b[12:], et)
	ip := b[ethHdrLen:]
	if p.v6 {
		ip[0] = 0x60
		binary.BigEndian.PutUint16(ip[4:], uint16(l4len))
		ip[6] = p.proto
		ip[7] = 64
		s, d := p.src.As16(), p.dst.As16()
		copy(ip[8:], s[:])
		copy(ip[24:], d[:])
	} else {
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(iphl+l4len))
		binary.BigEndian.PutUint16(ip[4:], p.id)
		ip[6] = 0x40 // DF
		ip[8] = 64
		ip[9] = p.proto
		s, d := p.src.As4(), p.dst.As4()
		copy(ip[12:], s[:])
		copy(ip[16:], d[:])
		binary.BigEndian.PutUint16(ip[10:], packet.Checksum(ip[:20], 0))
	}
	l4 := ethHdrLen + iphl
	binary.BigEndian.PutUint16(b[l4:], p.sport)
	binary.BigEndian.PutUint16(b[l4+2:], p.dport)
	var at int
	if p.proto == protoTCP {
		binary.BigEndian.PutUint32(b[l4+4:], p.seq)
		binary.BigEndian.PutUint32(b[l4+8:], 1000)
		b[l4+12] = byte(l4hl/4) << 4
		b[l4+13] = p.flags
		binary.BigEndian.PutUint16(b[l4+14:], 65535)
		for i := 0; i < p.tcpOpts; i++ {
			b[l4+20+i] = 1 // NOP
		}
		at = l4 + 16
	} else {
		binary.BigEndian.PutUint16(b[l4+4:], uint16(l4len))
		at = l4 + 6
	}
	copy(b[l4+l4hl:], p.payload)
	ps := pseudoSum(b[ethHdrLen:], p.v6, p.proto, l4len)
	var g GSO
	if p.partial {
		binary.BigEndian.PutUint16(b[at:], packet.Fold(ps))
		g = GSO{NeedsCsum: true, CsumStart: uint16(l4), CsumOffset: uint16(at - l4)}
	} else {
		c := ^packet.Fold(packet.Add(ps, b[l4:]))
		if c == 0 && p.proto == protoUDP {
			c = 0xffff
		}
		binary.BigEndian.PutUint16(b[at:], c)
	}
	return b, g
}

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}

// checkFrame verifies the IPv4 header checksum and the L4 checksum of a plain
// frame, and that the IP length covers the frame.
func checkFrame(b []byte) error {
	ip, l4, proto, v6, ok := l4Info(b)
	if !ok {
		return fmt.Errorf("not an IP frame")
	}
	if v6 {
		if n := int(binary.BigEndian.Uint16(b[ip+4:])); n != len(b)-l4 {
			return fmt.Errorf("IPv6 payload length %d, want %d", n, len(b)-l4)
		}
	} else {
		if c := packet.Checksum(b[ip:l4], 0); c != 0 {
			return fmt.Errorf("IPv4 header checksum does not verify (%#04x)", c)
		}
		if n := int(binary.BigEndian.Uint16(b[ip+2:])); n != len(b)-ip {
			return fmt.Errorf("IPv4 total length %d, want %d", n, len(b)-ip)
		}
		if binary.BigEndian.Uint16(b[ip+6:])&0x3fff != 0 {
			return nil // a fragment: the L4 checksum spans fragments
		}
	}
	if proto != protoTCP && proto != protoUDP {
		return nil
	}
	if proto == protoUDP {
		if n := int(binary.BigEndian.Uint16(b[l4+4:])); n != len(b)-l4 {
			return fmt.Errorf("UDP length %d, want %d", n, len(b)-l4)
		}
	}
	if c := ^packet.Fold(packet.Add(pseudoSum(b[ip:], v6, proto, len(b)-l4), b[l4:])); c != 0 {
		return fmt.Errorf("L4 checksum does not verify (%#04x)", c)
	}
	return nil
}

func frameOf(b []byte, g GSO) Frame {
	buf := make([]byte, Headroom+len(b))
	copy(buf[Headroom:], b)
	return Frame{Buf: buf, Off: Headroom, Len: len(b), GSO: g}
}

// l4Info is walkIP for tests: the offsets of the IP and L4 headers, the L4
// protocol, whether it is IPv6 and whether walkIP accepted the frame.
func l4Info(b []byte) (ip, l4 int, proto uint8, v6, ok bool) {
	var h packet.Headers
	if !walkIP(b, &h) {
		return 0, 0, 0, false, false
	}
	return h.L3, h.L4, h.Proto, h.EthType == etherIPv6, true
}
