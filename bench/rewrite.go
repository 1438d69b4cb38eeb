package bench

import (
	"encoding/binary"

	"roam/internal/packet"
)

// This file holds the harness's own header handling: finding the IPv4
// header of a frame, and rewriting the destination of inbound frames
// captured behind the NAT (private destination) to the public address and
// port the NAT gave the flow, with incremental checksum updates (RFC 1624).

// IP protocols.
const (
	protoICMP = 1
	protoTCP  = 6
	protoUDP  = 17
)

// ipv4Off returns the offset of the IPv4 header in frame (looking through up
// to two VLAN tags) and whether the frame holds a plausible IPv4 header.
func ipv4Off(frame []byte) (int, bool) {
	var h packet.Headers
	if !packet.Walk(frame, 2, &h) || h.EthType != packet.EtherTypeIPv4 || h.L4 == 0 {
		return 0, false
	}
	return h.L3, true
}

func be32(a [4]byte) uint32 { return binary.BigEndian.Uint32(a[:]) }

// l4Key is what PAT maps: (protocol, private address, private port or ICMP
// identifier). PAT mapping is endpoint-independent, so the remote is not
// part of it.
type l4Key struct {
	proto uint8
	addr  uint32
	port  uint16
}

// inboundKey returns the key of the private endpoint an inbound IPv4 packet
// (ip) is addressed to: its destination port, the identifier of an ICMP
// echo reply, or the source of the packet embedded in an ICMP error.
func inboundKey(ip []byte) (l4Key, bool) {
	hl := int(ip[0]&0x0f) * 4
	if binary.BigEndian.Uint16(ip[6:])&0x1fff != 0 {
		return l4Key{}, false // a later fragment has no L4 header
	}
	l4 := ip[hl:]
	dst := binary.BigEndian.Uint32(ip[16:])
	switch ip[9] {
	case protoTCP, protoUDP:
		if len(l4) < 4 {
			return l4Key{}, false
		}
		return l4Key{ip[9], dst, binary.BigEndian.Uint16(l4[2:])}, true
	case protoICMP:
		if len(l4) < 8 {
			return l4Key{}, false
		}
		switch l4[0] {
		case 0, 14: // echo reply, timestamp reply
			return l4Key{protoICMP, dst, binary.BigEndian.Uint16(l4[4:])}, true
		case 3, 4, 5, 11, 12: // errors
			in := l4[8:]
			if len(in) < 20 || in[0]>>4 != 4 {
				return l4Key{}, false
			}
			ihl := int(in[0]&0x0f) * 4
			if ihl < 20 || len(in) < ihl+8 {
				return l4Key{}, false
			}
			src := binary.BigEndian.Uint32(in[12:])
			switch in[9] {
			case protoTCP, protoUDP:
				return l4Key{in[9], src, binary.BigEndian.Uint16(in[ihl:])}, true
			case protoICMP:
				return l4Key{protoICMP, src, binary.BigEndian.Uint16(in[ihl+4:])}, true
			}
		}
	}
	return l4Key{}, false
}

// outboundKey returns the key of the private endpoint an outbound IPv4
// packet comes from, and the offset in ip of the port (or identifier) that
// PAT rewrites.
func outboundKey(ip []byte) (l4Key, int, bool) {
	hl := int(ip[0]&0x0f) * 4
	if binary.BigEndian.Uint16(ip[6:])&0x1fff != 0 {
		return l4Key{}, 0, false
	}
	src := binary.BigEndian.Uint32(ip[12:])
	l4 := ip[hl:]
	switch ip[9] {
	case protoTCP, protoUDP:
		if len(l4) < 4 {
			return l4Key{}, 0, false
		}
		return l4Key{ip[9], src, binary.BigEndian.Uint16(l4)}, hl, true
	case protoICMP:
		if len(l4) < 8 || (l4[0] != 8 && l4[0] != 13) { // echo, timestamp
			return l4Key{}, 0, false
		}
		return l4Key{protoICMP, src, binary.BigEndian.Uint16(l4[4:])}, hl + 4, true
	}
	return l4Key{}, 0, false
}

// rewriteInbound rewrites an inbound IPv4 packet addressed to a private
// endpoint so that it is addressed to pub and, when port >= 0, to that port
// (or ICMP identifier); for an ICMP error, the embedded packet's source is
// rewritten the same way. All checksums are updated incrementally; a UDP
// checksum of zero (none) stays zero.
func rewriteInbound(ip []byte, pub [4]byte, port int) {
	hl := int(ip[0]&0x0f) * 4
	oldDst := binary.BigEndian.Uint32(ip[16:])
	newDst := be32(pub)
	copy(ip[16:20], pub[:])
	binary.BigEndian.PutUint16(ip[10:], packet.Update32(binary.BigEndian.Uint16(ip[10:]), oldDst, newDst))
	if binary.BigEndian.Uint16(ip[6:])&0x1fff != 0 {
		return
	}
	l4 := ip[hl:]
	switch ip[9] {
	case protoTCP, protoUDP:
		rewriteL4(ip[9], l4, 2, oldDst, newDst, port)
	case protoICMP:
		if len(l4) < 8 {
			return
		}
		switch l4[0] {
		case 0, 14:
			if port >= 0 {
				old := binary.BigEndian.Uint16(l4[4:])
				binary.BigEndian.PutUint16(l4[4:], uint16(port))
				binary.BigEndian.PutUint16(l4[2:], packet.Update16(binary.BigEndian.Uint16(l4[2:]), old, uint16(port)))
			}
		case 3, 4, 5, 11, 12:
			rewriteEmbedded(l4, oldDst, newDst, port)
		}
	}
}

// rewriteL4 updates a TCP or UDP header (l4, possibly cut short) for an
// address change old->new in its pseudo-header and sets the port at
// portOff when port >= 0. It returns the 16-bit words it changed as
// (offset, old, new) for callers that keep an outer checksum.
func rewriteL4(proto uint8, l4 []byte, portOff int, old, new uint32, port int) (changed [2][3]int, n int) {
	csOff := 16
	if proto == protoUDP {
		csOff = 6
	}
	hasCS := len(l4) >= csOff+2
	var cs uint16
	if hasCS {
		cs = binary.BigEndian.Uint16(l4[csOff:])
	}
	noCS := proto == protoUDP && cs == 0
	ncs := packet.Update32(cs, old, new)
	if port >= 0 && len(l4) >= portOff+2 {
		op := binary.BigEndian.Uint16(l4[portOff:])
		binary.BigEndian.PutUint16(l4[portOff:], uint16(port))
		changed[n] = [3]int{portOff, int(op), port}
		n++
		ncs = packet.Update16(ncs, op, uint16(port))
	}
	if hasCS && !noCS {
		if proto == protoUDP && ncs == 0 {
			ncs = 0xffff
		}
		binary.BigEndian.PutUint16(l4[csOff:], ncs)
		changed[n] = [3]int{csOff, int(cs), int(ncs)}
		n++
	}
	return changed, n
}

// rewriteEmbedded rewrites the packet embedded in an ICMP error (icmp is
// the ICMP message): its source old->new and its source port (or echo
// identifier) to port, then the ICMP checksum.
func rewriteEmbedded(icmp []byte, old, new uint32, port int) {
	in := icmp[8:]
	if len(in) < 20 || in[0]>>4 != 4 {
		return
	}
	ihl := int(in[0]&0x0f) * 4
	if ihl < 20 || len(in) < ihl {
		return
	}
	if binary.BigEndian.Uint32(in[12:]) != old {
		return
	}
	cs := binary.BigEndian.Uint16(icmp[2:])
	// Every field below lies at an even offset from the ICMP header, so
	// 16-bit incremental updates of the ICMP checksum are exact.
	binary.BigEndian.PutUint32(in[12:], new)
	cs = packet.Update32(cs, old, new)
	oic := binary.BigEndian.Uint16(in[10:])
	nic := packet.Update32(oic, old, new)
	binary.BigEndian.PutUint16(in[10:], nic)
	cs = packet.Update16(cs, oic, nic)
	l4 := in[ihl:]
	switch in[9] {
	case protoTCP, protoUDP:
		changed, n := rewriteL4(in[9], l4, 0, old, new, port)
		for _, c := range changed[:n] {
			cs = packet.Update16(cs, uint16(c[1]), uint16(c[2]))
		}
	case protoICMP:
		if port >= 0 && len(l4) >= 8 {
			op := binary.BigEndian.Uint16(l4[4:])
			binary.BigEndian.PutUint16(l4[4:], uint16(port))
			cs = packet.Update16(cs, op, uint16(port))
			ocs := binary.BigEndian.Uint16(l4[2:])
			ncs := packet.Update16(ocs, op, uint16(port))
			binary.BigEndian.PutUint16(l4[2:], ncs)
			cs = packet.Update16(cs, ocs, ncs)
		}
	}
	binary.BigEndian.PutUint16(icmp[2:], cs)
}

// remapIPv4 rewrites the source and destination addresses of an IPv4
// packet through m (old address -> new), and those of the packet embedded
// in an ICMP error, updating every checksum incrementally.
func remapIPv4(ip []byte, m map[uint32]uint32) {
	hl := int(ip[0]&0x0f) * 4
	first := binary.BigEndian.Uint16(ip[6:])&0x1fff == 0
	var l4 []byte
	if tl := int(binary.BigEndian.Uint16(ip[2:])); tl >= hl && tl <= len(ip) {
		l4 = ip[hl:tl]
	} else {
		l4 = ip[hl:]
	}
	for _, off := range [2]int{12, 16} {
		old := binary.BigEndian.Uint32(ip[off:])
		new, ok := m[old]
		if !ok {
			continue
		}
		binary.BigEndian.PutUint32(ip[off:], new)
		binary.BigEndian.PutUint16(ip[10:], packet.Update32(binary.BigEndian.Uint16(ip[10:]), old, new))
		if first {
			updateL4Sum(ip[9], l4, old, new)
		}
	}
	if !first || ip[9] != protoICMP || len(l4) < 8 {
		return
	}
	switch l4[0] {
	case 3, 4, 5, 11, 12:
	default:
		return
	}
	in := l4[8:]
	if len(in) < 20 || in[0]>>4 != 4 {
		return
	}
	ihl := int(in[0]&0x0f) * 4
	if ihl < 20 || len(in) < ihl {
		return
	}
	// Every field changed lies at an even offset from the ICMP header, so
	// 16-bit incremental updates of the ICMP checksum are exact.
	cs := binary.BigEndian.Uint16(l4[2:])
	inFirst := binary.BigEndian.Uint16(in[6:])&0x1fff == 0
	for _, off := range [2]int{12, 16} {
		old := binary.BigEndian.Uint32(in[off:])
		new, ok := m[old]
		if !ok {
			continue
		}
		binary.BigEndian.PutUint32(in[off:], new)
		cs = packet.Update32(cs, old, new)
		oic := binary.BigEndian.Uint16(in[10:])
		nic := packet.Update32(oic, old, new)
		binary.BigEndian.PutUint16(in[10:], nic)
		cs = packet.Update16(cs, oic, nic)
		if inFirst {
			if o, n, ok := updateL4Sum(in[9], in[ihl:], old, new); ok {
				cs = packet.Update16(cs, o, n)
			}
		}
	}
	binary.BigEndian.PutUint16(l4[2:], cs)
}

// updateL4Sum updates the TCP or UDP checksum in l4 (possibly cut short) for
// a pseudo-header address change and returns the old and new checksum.
func updateL4Sum(proto uint8, l4 []byte, old, new uint32) (uint16, uint16, bool) {
	off := 16
	switch proto {
	case protoTCP:
	case protoUDP:
		off = 6
	default:
		return 0, 0, false
	}
	if len(l4) < off+2 {
		return 0, 0, false
	}
	cs := binary.BigEndian.Uint16(l4[off:])
	if proto == protoUDP && cs == 0 {
		return 0, 0, false
	}
	ncs := packet.Update32(cs, old, new)
	if proto == protoUDP && ncs == 0 {
		ncs = 0xffff
	}
	binary.BigEndian.PutUint16(l4[off:], ncs)
	return cs, ncs, true
}

// remapARP rewrites the sender and target IPv4 addresses of an untagged
// Ethernet/IPv4 ARP frame through m.
func remapARP(frame []byte, m map[uint32]uint32) {
	var h packet.Headers
	if !packet.Walk(frame, 0, &h) || h.EthType != packet.EtherTypeARP || len(frame) < h.L3+packet.ARPLen {
		return
	}
	for _, off := range [2]int{14 + 14, 14 + 24} {
		if new, ok := m[binary.BigEndian.Uint32(frame[off:])]; ok {
			binary.BigEndian.PutUint32(frame[off:], new)
		}
	}
}
