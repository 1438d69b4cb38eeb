package tap

import (
	"encoding/binary"

	"roam/internal/packet"
)

// pseudoSum returns the running sum of the IPv4 or IPv6 pseudo-header for an
// L4 segment of l4len bytes of protocol proto; ip is the IP header.
func pseudoSum(ip []byte, v6 bool, proto uint8, l4len int) uint64 {
	var s uint64
	if v6 {
		s = packet.Add(0, ip[8:40])
	} else {
		s = packet.Add(0, ip[12:20])
	}
	return s + uint64(proto) + uint64(l4len)
}

// CompleteChecksum finishes the L4 checksum of a frame whose GSO.NeedsCsum is
// set (the field at CsumStart+CsumOffset holds the pseudo-header sum, as the
// kernel hands over CHECKSUM_PARTIAL frames) and clears NeedsCsum. Use it
// before writing such a frame to a port that cannot take partial checksums.
// It returns false, changing nothing, for a super-frame (GSO.Type set: use
// Segment) or when the offsets do not fit the frame. A frame without
// NeedsCsum is left alone and reported true.
func CompleteChecksum(f *Frame) bool {
	if !f.GSO.NeedsCsum {
		return true
	}
	if f.GSO.Type != GSONone {
		return false
	}
	b := f.Bytes()
	start, at := int(f.GSO.CsumStart), int(f.GSO.CsumStart)+int(f.GSO.CsumOffset)
	if start < ethHdrLen || at+2 > len(b) {
		return false
	}
	c := ^packet.Fold(packet.Add(0, b[start:]))
	if c == 0 {
		c = 0xffff // RFC 768: a computed zero is sent as all ones (harmless for TCP)
	}
	binary.BigEndian.PutUint16(b[at:], c)
	f.GSO = GSO{}
	return true
}
