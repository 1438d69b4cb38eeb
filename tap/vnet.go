package tap

import (
	"encoding/binary"

	"roam/internal/packet"
)

// GSOUDPL4 is virtio's VIRTIO_NET_HDR_GSO_UDP_L4 (USO, Linux 6.2+): a UDP
// super-frame whose payload is cut into datagrams of GSO.Size bytes, each with
// its own UDP header. It complements the GSO* types in port.go; GSOUDP (UFO)
// is different: it cuts one datagram into IP fragments.
const GSOUDPL4 uint8 = 5

// The virtio-net header that TAP devices with IFF_VNET_HDR and AF_PACKET
// sockets with PACKET_VNET_HDR put before each frame (struct virtio_net_hdr,
// little endian, as the kernel uses on every little-endian host):
//
//	 0      1         2         4          6           8            10
//	+------+---------+---------+----------+-----------+------------+
//	|flags |gso_type | hdr_len | gso_size | csum_start| csum_offset|
//	+------+---------+---------+----------+-----------+------------+
const (
	vnetHdrLen = 10

	vnetFlagNeedsCsum = 1
	vnetFlagDataValid = 2
	vnetGSOECN        = 0x80
)

const (
	ethHdrLen  = 14
	etherIPv4  = packet.EtherTypeIPv4
	etherIPv6  = packet.EtherTypeIPv6
	etherVLAN  = packet.EtherTypeVLAN
	protoTCP   = 6
	protoUDP   = 17
	ipv6HdrLen = packet.IPv6Len
)

// walkIP walks b with packet.Walk and reports whether it is IPv4 or IPv6
// (at most one 802.1Q tag, no IPv6 extension headers) whose IP header fits:
// h.L3 is then the offset of the IP header, h.L4 of the L4 header, h.Proto
// the L4 protocol.
func walkIP(b []byte, h *packet.Headers) bool {
	// Of the TPIDs Walk knows (0x8100, 0x88a8, 0x9100) only 802.1Q's starts
	// with 0x81.
	return packet.Walk(b, 1, h) && h.L4 != 0 && (h.Tags == 0 || b[12] == etherVLAN>>8)
}

// l4HdrLen returns the length of the TCP or UDP header at b[l4:], or 0 when
// it does not fit b.
func l4HdrLen(b []byte, l4 int, proto uint8) int {
	switch proto {
	case protoTCP:
		if len(b) < l4+20 {
			return 0
		}
		n := int(b[l4+12]>>4) * 4
		if n < 20 || len(b) < l4+n {
			return 0
		}
		return n
	case protoUDP:
		if len(b) < l4+8 {
			return 0
		}
		return 8
	}
	return 0
}

// decodeVnetHdr decodes the virtio-net header h that came with frame b into g.
// It trusts neither hdr_len (the kernel reports the linear length there on
// some paths) nor the offsets: HdrLen is recomputed from the frame, and every
// offset is checked against it. It returns 0 or the reason to drop the frame.
func decodeVnetHdr(h, b []byte, g *GSO) DropReason {
	*g = GSO{}
	flags, typ := h[0], h[1]&^vnetGSOECN
	if flags&vnetFlagNeedsCsum != 0 {
		g.NeedsCsum = true
		g.CsumStart = binary.LittleEndian.Uint16(h[6:])
		g.CsumOffset = binary.LittleEndian.Uint16(h[8:])
		if int(g.CsumStart) < ethHdrLen || int(g.CsumStart)+int(g.CsumOffset)+2 > len(b) {
			*g = GSO{}
			return DropBadVnetHdr
		}
	}
	switch typ {
	case GSONone:
		return 0
	case GSOTCPv4, GSOTCPv6, GSOUDP, GSOUDPL4:
	default:
		*g = GSO{}
		return DropBadVnetHdr
	}
	g.Type = typ
	g.Size = binary.LittleEndian.Uint16(h[4:])
	var hd packet.Headers
	ok := walkIP(b, &hd)
	l4, proto, v6 := hd.L4, hd.Proto, hd.EthType == etherIPv6
	if !ok || g.Size == 0 || (v6 != (typ == GSOTCPv6) && typ != GSOUDPL4 && typ != GSOUDP) {
		*g = GSO{}
		return DropBadVnetHdr
	}
	want := uint8(protoUDP)
	if typ == GSOTCPv4 || typ == GSOTCPv6 {
		want = protoTCP
	}
	if proto != want || (g.NeedsCsum && int(g.CsumStart) != l4) {
		*g = GSO{}
		return DropBadVnetHdr
	}
	n := l4HdrLen(b, l4, proto)
	if n == 0 {
		*g = GSO{}
		return DropBadVnetHdr
	}
	g.HdrLen = uint16(l4 + n)
	if !g.NeedsCsum {
		g.CsumStart = uint16(l4)
		g.CsumOffset = csumOffset(proto)
	}
	return 0
}

func csumOffset(proto uint8) uint16 {
	if proto == protoTCP {
		return 16
	}
	return 6
}

// encodeVnetHdr writes the virtio-net header for frame b with offloads g into
// h. A super-frame must carry a partial checksum (NeedsCsum, as the kernel
// requires); the caller fixes that first with setPartial.
func encodeVnetHdr(h, b []byte, g *GSO) {
	var flags uint8
	if g.NeedsCsum {
		flags = vnetFlagNeedsCsum
	}
	typ := g.Type
	hdrLen := g.HdrLen
	if typ != GSONone {
		cs := int(g.CsumStart)
		if typ == GSOTCPv4 || typ == GSOTCPv6 {
			if cs+13 < len(b) && b[cs+13]&0x80 != 0 { // CWR set: ECN super-frame
				typ |= vnetGSOECN
			}
		}
		if hdrLen == 0 {
			hdrLen = uint16(cs + l4HdrLen(b, cs, protoOf(g.Type)))
		}
	}
	h[0] = flags
	h[1] = typ
	binary.LittleEndian.PutUint16(h[2:], hdrLen)
	binary.LittleEndian.PutUint16(h[4:], g.Size)
	binary.LittleEndian.PutUint16(h[6:], g.CsumStart)
	binary.LittleEndian.PutUint16(h[8:], g.CsumOffset)
}

func protoOf(gsoType uint8) uint8 {
	if gsoType == GSOTCPv4 || gsoType == GSOTCPv6 {
		return protoTCP
	}
	return protoUDP
}

// setPartial turns a super-frame without a partial checksum into one with it:
// it locates the L4 header, stores the pseudo-header sum (over the whole L4
// length, as the kernel's GSO expects) in the checksum field and sets
// NeedsCsum, CsumStart and CsumOffset. It returns false for a frame it cannot
// parse.
func setPartial(b []byte, g *GSO) bool {
	var h packet.Headers
	ok := walkIP(b, &h)
	ip, l4, proto, v6 := h.L3, h.L4, h.Proto, h.EthType == etherIPv6
	if !ok || (proto != protoTCP && proto != protoUDP) || l4HdrLen(b, l4, proto) == 0 {
		return false
	}
	off := csumOffset(proto)
	binary.BigEndian.PutUint16(b[l4+int(off):], packet.Fold(pseudoSum(b[ip:], v6, proto, len(b)-l4)))
	g.NeedsCsum = true
	g.CsumStart = uint16(l4)
	g.CsumOffset = off
	return true
}
