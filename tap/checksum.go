package tap

import (
	"encoding/binary"
	"math/bits"
)

// csumAdd adds b to the running ones' complement sum s as a sequence of
// big-endian 16-bit words (an odd trailing byte is padded with zero). The
// sum is carried in 64 bits and folded only by csumFold.
func csumAdd(s uint64, b []byte) uint64 {
	var c uint64
	for len(b) >= 32 {
		s, c = bits.Add64(s, binary.BigEndian.Uint64(b), 0)
		s, c = bits.Add64(s, binary.BigEndian.Uint64(b[8:]), c)
		s, c = bits.Add64(s, binary.BigEndian.Uint64(b[16:]), c)
		s, c = bits.Add64(s, binary.BigEndian.Uint64(b[24:]), c)
		s += c
		b = b[32:]
	}
	for len(b) >= 8 {
		s, c = bits.Add64(s, binary.BigEndian.Uint64(b), 0)
		s += c
		b = b[8:]
	}
	if len(b) >= 4 {
		s, c = bits.Add64(s, uint64(binary.BigEndian.Uint32(b)), 0)
		s += c
		b = b[4:]
	}
	if len(b) >= 2 {
		s, c = bits.Add64(s, uint64(binary.BigEndian.Uint16(b)), 0)
		s += c
		b = b[2:]
	}
	if len(b) == 1 {
		s, c = bits.Add64(s, uint64(b[0])<<8, 0)
		s += c
	}
	return s
}

// csumFold folds a 64-bit running sum to 16 bits (not complemented).
func csumFold(s uint64) uint16 {
	s = (s >> 32) + (s & 0xffffffff)
	s = (s >> 32) + (s & 0xffffffff)
	s = (s >> 16) + (s & 0xffff)
	s = (s >> 16) + (s & 0xffff)
	s = (s >> 16) + (s & 0xffff)
	return uint16(s)
}

// Checksum returns the Internet checksum (RFC 1071) of b: the complemented
// ones' complement sum of its 16-bit words.
func Checksum(b []byte) uint16 { return ^csumFold(csumAdd(0, b)) }

// pseudoSum returns the running sum of the IPv4 or IPv6 pseudo-header for an
// L4 segment of l4len bytes of protocol proto; ip is the IP header.
func pseudoSum(ip []byte, v6 bool, proto uint8, l4len int) uint64 {
	var s uint64
	if v6 {
		s = csumAdd(0, ip[8:40])
	} else {
		s = csumAdd(0, ip[12:20])
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
	c := ^csumFold(csumAdd(0, b[start:]))
	if c == 0 {
		c = 0xffff // RFC 768: a computed zero is sent as all ones (harmless for TCP)
	}
	binary.BigEndian.PutUint16(b[at:], c)
	f.GSO = GSO{}
	return true
}
