package tap

import (
	"encoding/binary"

	"roam/internal/packet"
)

// Segment cuts the super-frame f into ordinary frames in out, for a
// destination that cannot take GSO, and returns how many it wrote. Each
// segment is written at out[i].Buf[out[i].Off:], gets complete checksums and
// a zero GSO:
//
//   - GSOTCPv4/GSOTCPv6: the payload is cut every GSO.Size bytes; each segment
//     gets the IP total (or payload) length, an IPv4 id incremented per
//     segment and its header checksum, the TCP sequence number advanced by the
//     payload before it, FIN and PSH only on the last segment, CWR only on the
//     first, and its TCP checksum.
//   - GSOUDPL4 (USO): the payload is cut every GSO.Size bytes into datagrams
//     with their own UDP length and checksum (and IPv4 id, as for TCP).
//   - GSOUDP (UFO, IPv4 only): the datagram, its UDP checksum completed, is cut
//     into IPv4 fragments carrying GSO.Size bytes (rounded down to a multiple
//     of 8) of IP payload each, sharing the original id.
//
// A frame without GSO is copied to out[0] with its checksum completed.
// Segment returns 0 when the frame is malformed, the type is unsupported, or
// out (count or buffer size) cannot hold every segment; nothing is partial.
// It does not allocate.
func Segment(f *Frame, out []Frame) int {
	b := f.Bytes()
	g := &f.GSO
	if g.Type == GSONone {
		if len(out) == 0 || len(out[0].Buf)-out[0].Off < len(b) {
			return 0
		}
		o := &out[0]
		o.Len = copy(o.Buf[o.Off:], b)
		o.GSO = *g
		if !CompleteChecksum(o) {
			return 0
		}
		return 1
	}
	var h packet.Headers
	ok := walkIP(b, &h)
	ip, l4, proto, v6 := h.L3, h.L4, h.Proto, h.EthType == etherIPv6
	if !ok || g.Size == 0 {
		return 0
	}
	if v6 && !ipv6LenOK(b, ip) || !v6 && !ipv4LenOK(b, ip) {
		return 0
	}
	switch g.Type {
	case GSOTCPv4, GSOTCPv6:
		if proto != protoTCP || v6 != (g.Type == GSOTCPv6) {
			return 0
		}
		return segmentL4(b, ip, l4, proto, v6, int(g.Size), out)
	case GSOUDPL4:
		if proto != protoUDP {
			return 0
		}
		return segmentL4(b, ip, l4, proto, v6, int(g.Size), out)
	case GSOUDP:
		if proto != protoUDP || v6 {
			return 0
		}
		return fragmentUDP4(b, ip, l4, int(g.Size), out)
	}
	return 0
}

// ipv4LenOK reports whether the IPv4 total length matches the frame (the
// super-frame is the whole frame; trailing Ethernet padding is not allowed on
// a super-frame).
func ipv4LenOK(b []byte, ip int) bool {
	n := int(binary.BigEndian.Uint16(b[ip+2:]))
	return n == len(b)-ip || n == 0 // TSO frames over 64 KiB may carry 0
}

func ipv6LenOK(b []byte, ip int) bool {
	n := int(binary.BigEndian.Uint16(b[ip+4:]))
	return n == len(b)-ip-ipv6HdrLen || n == 0
}

// segmentL4 cuts a TCP or USO super-frame.
func segmentL4(b []byte, ip, l4 int, proto uint8, v6 bool, mss int, out []Frame) int {
	hl := l4HdrLen(b, l4, proto)
	if hl == 0 {
		return 0
	}
	hdr := l4 + hl
	payload := len(b) - hdr
	n := (payload + mss - 1) / mss
	if n == 0 {
		n = 1
	}
	if n > len(out) {
		return 0
	}
	for i := 0; i < n; i++ {
		seg := min(mss, payload-i*mss)
		if len(out[i].Buf)-out[i].Off < hdr+seg {
			return 0
		}
	}
	var id uint16
	if !v6 {
		id = binary.BigEndian.Uint16(b[ip+4:])
	}
	var seq uint32
	var flags byte
	if proto == protoTCP {
		seq = binary.BigEndian.Uint32(b[l4+4:])
		flags = b[l4+13]
	}
	for i := 0; i < n; i++ {
		seg := max(0, min(mss, payload-i*mss))
		o := &out[i]
		s := o.Buf[o.Off : o.Off+hdr+seg]
		copy(s, b[:hdr])
		copy(s[hdr:], b[hdr+i*mss:hdr+i*mss+seg])
		o.Len = hdr + seg
		o.GSO = GSO{}
		if v6 {
			binary.BigEndian.PutUint16(s[ip+4:], uint16(len(s)-ip-ipv6HdrLen))
		} else {
			binary.BigEndian.PutUint16(s[ip+2:], uint16(len(s)-ip))
			binary.BigEndian.PutUint16(s[ip+4:], id+uint16(i))
			s[ip+10], s[ip+11] = 0, 0
			binary.BigEndian.PutUint16(s[ip+10:], packet.Checksum(s[ip:l4], 0))
		}
		var at int
		if proto == protoTCP {
			binary.BigEndian.PutUint32(s[l4+4:], seq+uint32(i*mss))
			fl := flags
			if i != n-1 {
				fl &^= 0x01 | 0x08 // FIN, PSH
			}
			if i != 0 {
				fl &^= 0x80 // CWR
			}
			s[l4+13] = fl
			at = l4 + 16
		} else {
			binary.BigEndian.PutUint16(s[l4+4:], uint16(hl+seg))
			at = l4 + 6
		}
		s[at], s[at+1] = 0, 0
		c := ^packet.Fold(packet.Add(pseudoSum(s[ip:], v6, proto, len(s)-l4), s[l4:]))
		if c == 0 && proto == protoUDP {
			c = 0xffff
		}
		binary.BigEndian.PutUint16(s[at:], c)
	}
	return n
}

// fragmentUDP4 cuts a UFO datagram into IPv4 fragments.
func fragmentUDP4(b []byte, ip, l4 int, size int, out []Frame) int {
	if len(b) < l4+8 {
		return 0
	}
	frag := size &^ 7
	if frag == 0 {
		return 0
	}
	if binary.BigEndian.Uint16(b[ip+6:])&0x3fff != 0 {
		return 0 // already a fragment
	}
	pl := len(b) - l4
	n := (pl + frag - 1) / frag
	if n > len(out) {
		return 0
	}
	for i := 0; i < n; i++ {
		if len(out[i].Buf)-out[i].Off < l4+min(frag, pl-i*frag) {
			return 0
		}
	}
	// The UDP checksum covers the whole datagram; it goes into the first
	// fragment, and f is left as it was.
	s := pseudoSum(b[ip:], false, protoUDP, pl)
	s = packet.Add(s, b[l4:l4+4])
	s += uint64(pl)
	s = packet.Add(s, b[l4+8:])
	c := ^packet.Fold(s)
	if c == 0 {
		c = 0xffff
	}
	for i := 0; i < n; i++ {
		seg := min(frag, pl-i*frag)
		o := &out[i]
		s := o.Buf[o.Off : o.Off+l4+seg]
		copy(s, b[:l4])
		copy(s[l4:], b[l4+i*frag:l4+i*frag+seg])
		o.Len = l4 + seg
		o.GSO = GSO{}
		binary.BigEndian.PutUint16(s[ip+2:], uint16(len(s)-ip))
		fo := uint16(i * frag / 8)
		if i != n-1 {
			fo |= 0x2000 // MF
		}
		binary.BigEndian.PutUint16(s[ip+6:], fo)
		if i == 0 {
			binary.BigEndian.PutUint16(s[l4+4:], uint16(pl))
			binary.BigEndian.PutUint16(s[l4+6:], c)
		}
		s[ip+10], s[ip+11] = 0, 0
		binary.BigEndian.PutUint16(s[ip+10:], packet.Checksum(s[ip:l4], 0))
	}
	return n
}
