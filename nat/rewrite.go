package nat

import (
	"encoding/binary"

	"roam/internal/packet"
)

// Rewrite changes a packet whose tuple is k into tuple to: addresses in the
// IPv4 header, ports (or the ICMP query identifier) in the L4 header, and
// every checksum they are part of, incrementally (RFC 1624). A later
// fragment (p.L4 == 0) only has its addresses rewritten: its L4 checksum
// lives in the first fragment. With partial set, the L4 checksum field holds
// the pseudo-header sum that a NIC or the kernel completes later
// (virtio-net NEEDS_CSUM), and it is updated as a sum.
func Rewrite(frame []byte, p *packet.Parsed, k, to Tuple, partial bool) {
	rewrite(frame, p, k, to, partial, false)
}

// RewriteTTL is Rewrite that also decrements the TTL, in the same
// checksum update: the data path's routed case.
func RewriteTTL(frame []byte, p *packet.Parsed, k, to Tuple, partial bool) {
	rewrite(frame, p, k, to, partial, true)
}

// delta32 is the one's-complement difference a 32-bit field change adds to
// a running (uncomplemented) checksum sum.
func delta32(old, new uint32) uint32 {
	return (^old >> 16) + (^old & 0xffff) + (new >> 16) + (new & 0xffff)
}

func fold(s uint32) uint16 {
	s = (s >> 16) + (s & 0xffff)
	s = (s >> 16) + (s & 0xffff)
	return uint16(s)
}

func rewrite(frame []byte, p *packet.Parsed, k, to Tuple, partial, ttl bool) {
	ip := packet.IPv4(frame[p.L3:])
	ipAcc := uint32(^ip.Checksum())
	var sum uint16
	var off int
	l4ok := p.L4 != 0
	if l4ok {
		off = packet.CsumOffset(p.Proto)
		if off < 0 || p.L4+off+2 > p.End {
			l4ok = false
		}
	}
	if l4ok {
		sum = binary.BigEndian.Uint16(frame[p.L4+off:])
	}
	udpNoSum := p.Proto == packet.ProtoUDP && sum == 0 && !partial
	pseudo := p.Proto == packet.ProtoTCP || p.Proto == packet.ProtoUDP
	if to.Src != k.Src {
		binary.BigEndian.PutUint32(ip[12:16], to.Src)
		ipAcc += delta32(k.Src, to.Src)
		if l4ok && pseudo {
			sum = upd32(sum, k.Src, to.Src, partial)
		}
	}
	if to.Dst != k.Dst {
		binary.BigEndian.PutUint32(ip[16:20], to.Dst)
		ipAcc += delta32(k.Dst, to.Dst)
		if l4ok && pseudo {
			sum = upd32(sum, k.Dst, to.Dst, partial)
		}
	}
	if ttl {
		old := binary.BigEndian.Uint16(ip[8:10])
		ip[8]--
		ipAcc += uint32(^old) + uint32(binary.BigEndian.Uint16(ip[8:10]))
	}
	if ttl || to.Src != k.Src || to.Dst != k.Dst {
		ip.SetChecksum(^fold(ipAcc))
	}
	if p.L4 != 0 {
		l4 := frame[p.L4:p.End]
		switch p.Proto {
		case packet.ProtoTCP, packet.ProtoUDP:
			if to.SPort != k.SPort {
				binary.BigEndian.PutUint16(l4[0:2], to.SPort)
				if l4ok && !partial {
					sum = packet.Update16(sum, k.SPort, to.SPort)
				}
			}
			if to.DPort != k.DPort {
				binary.BigEndian.PutUint16(l4[2:4], to.DPort)
				if l4ok && !partial {
					sum = packet.Update16(sum, k.DPort, to.DPort)
				}
			}
		case packet.ProtoICMP:
			if packet.IsQuery(p.ICMPType) {
				oldID, newID := k.SPort, to.SPort
				if !packet.IsQueryRequest(p.ICMPType) {
					oldID, newID = k.DPort, to.DPort
				}
				if oldID != newID {
					binary.BigEndian.PutUint16(l4[4:6], newID)
					if l4ok && !partial {
						// ICMP has no pseudo-header: a partial
						// checksum is completed over the new
						// identifier as it is.
						sum = packet.Update16(sum, oldID, newID)
					}
				}
			}
		}
	}
	if l4ok {
		if udpNoSum {
			sum = 0 // UDP without a checksum stays without one
		} else if p.Proto == packet.ProtoUDP && sum == 0 && !partial {
			sum = 0xffff
		}
		binary.BigEndian.PutUint16(frame[p.L4+off:], sum)
	}
}

func upd32(sum uint16, old, new uint32, partial bool) uint16 {
	if partial {
		return packet.UpdatePartial32(sum, old, new)
	}
	return packet.Update32(sum, old, new)
}

// ErrorKey returns the key under which the flow of an ICMP error's
// embedded datagram is tracked: the embedded datagram went the other way, so
// its tuple reversed is the tuple a packet in the error's direction has.
func ErrorKey(p *packet.Parsed) Tuple {
	in := &p.Inner
	return Tuple{Src: in.Dst, Dst: in.Src, SPort: in.DPort, DPort: in.SPort, Proto: in.Proto}
}

// ICMPChecksumValid reports whether the ICMP message of p verifies.
func ICMPChecksumValid(frame []byte, p *packet.Parsed) bool {
	return packet.Sum(frame[p.L4:p.End], 0) == 0xffff
}

// RewriteError translates an ICMP error (RFC 5508) whose embedded
// datagram's flow was found with key ek and rewrites ek into to: the
// embedded datagram becomes to.Reverse() (as it was before, or after, the
// other direction's translation), the outer destination becomes the
// embedded source, and the outer source becomes the embedded destination's
// translation when the error comes from the private side (from the flow's
// own end or from a router there). The embedded IP and L4 checksums are
// updated incrementally where their bytes are present, and the ICMP checksum
// is recomputed over the whole message.
func RewriteError(frame []byte, p *packet.Parsed, ek, to Tuple) {
	in := &p.Inner
	emb, nemb := ek.Reverse(), to.Reverse()
	iip := packet.IPv4(frame[in.L3:])
	if nemb.Src != emb.Src {
		binary.BigEndian.PutUint32(iip[12:16], nemb.Src)
		iip.SetChecksum(packet.Update32(iip.Checksum(), emb.Src, nemb.Src))
	}
	if nemb.Dst != emb.Dst {
		binary.BigEndian.PutUint32(iip[16:20], nemb.Dst)
		iip.SetChecksum(packet.Update32(iip.Checksum(), emb.Dst, nemb.Dst))
	}
	if in.L4 != 0 {
		l4 := frame[in.L4:p.End]
		csOff := packet.CsumOffset(in.Proto)
		haveSum := csOff >= 0 && len(l4) >= csOff+2
		var sum uint16
		if haveSum {
			sum = binary.BigEndian.Uint16(l4[csOff:])
		}
		noSum := in.Proto == packet.ProtoUDP && sum == 0
		pseudo := in.Proto == packet.ProtoTCP || in.Proto == packet.ProtoUDP
		if haveSum && pseudo {
			sum = packet.Update32(sum, emb.Src, nemb.Src)
			sum = packet.Update32(sum, emb.Dst, nemb.Dst)
		}
		switch in.Proto {
		case packet.ProtoTCP, packet.ProtoUDP:
			binary.BigEndian.PutUint16(l4[0:2], nemb.SPort)
			binary.BigEndian.PutUint16(l4[2:4], nemb.DPort)
			if haveSum {
				sum = packet.Update16(sum, emb.SPort, nemb.SPort)
				sum = packet.Update16(sum, emb.DPort, nemb.DPort)
			}
		case packet.ProtoICMP:
			oldID, newID := emb.SPort, nemb.SPort
			if !packet.IsQueryRequest(packet.ICMP(l4).Type()) {
				oldID, newID = emb.DPort, nemb.DPort
			}
			binary.BigEndian.PutUint16(l4[4:6], newID)
			if haveSum {
				sum = packet.Update16(sum, oldID, newID)
			}
		}
		if haveSum && !noSum {
			if in.Proto == packet.ProtoUDP && sum == 0 {
				sum = 0xffff
			}
			binary.BigEndian.PutUint16(l4[csOff:], sum)
		}
	}
	// Outer header: the error goes back to the embedded datagram's source.
	// When the embedded destination is translated back, the datagram had
	// been translated on its way in: the error comes from the inside (the
	// flow's own end or a router on the private side) and must not carry
	// a private source out; it takes the address the peer knows (RFC 5508,
	// section 4.2).
	ip := packet.IPv4(frame[p.L3:])
	if nemb.Dst != emb.Dst && ip.Src() != nemb.Dst {
		ip.SetSrc(nemb.Dst)
	}
	if ip.Dst() != nemb.Src {
		ip.SetDst(nemb.Src)
	}
	icmp := frame[p.L4:p.End]
	binary.BigEndian.PutUint16(icmp[2:4], 0)
	binary.BigEndian.PutUint16(icmp[2:4], packet.Checksum(icmp, 0))
}
