package packet

import "encoding/binary"

// Sum adds b to the one's-complement running sum initial and returns the
// folded 16-bit sum (not complemented). An odd trailing byte is padded with
// zero, as RFC 1071 asks.
func Sum(b []byte, initial uint32) uint16 {
	s := uint64(initial)
	for len(b) >= 8 {
		s += uint64(binary.BigEndian.Uint32(b)) + uint64(binary.BigEndian.Uint32(b[4:]))
		b = b[8:]
	}
	if len(b) >= 4 {
		s += uint64(binary.BigEndian.Uint32(b))
		b = b[4:]
	}
	if len(b) >= 2 {
		s += uint64(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint64(b[0]) << 8
	}
	for s > 0xffff {
		s = (s >> 16) + (s & 0xffff)
	}
	return uint16(s)
}

// Checksum returns the Internet checksum of b (the complement of Sum).
func Checksum(b []byte, initial uint32) uint16 { return ^Sum(b, initial) }

// PseudoSum returns the running sum of the IPv4 pseudo-header for an L4
// segment of length n.
func PseudoSum(src, dst uint32, proto uint8, n int) uint32 {
	return (src >> 16) + (src & 0xffff) + (dst >> 16) + (dst & 0xffff) + uint32(proto) + uint32(n)
}

// Update16 returns checksum cs after a 16-bit field changed from old to new
// (RFC 1624, eqn. 3: HC' = ~(~HC + ~m + m')).
func Update16(cs, old, new uint16) uint16 {
	s := uint32(^cs) + uint32(^old) + uint32(new)
	s = (s >> 16) + (s & 0xffff)
	s = (s >> 16) + (s & 0xffff)
	return ^uint16(s)
}

// Update32 returns checksum cs after a 32-bit field changed from old to new.
func Update32(cs uint16, old, new uint32) uint16 {
	s := uint32(^cs) + (^old >> 16) + (^old & 0xffff) + (new >> 16) + (new & 0xffff)
	s = (s >> 16) + (s & 0xffff)
	s = (s >> 16) + (s & 0xffff)
	return ^uint16(s)
}

// UpdatePartial32 returns a partial (pseudo-header only, not complemented)
// checksum after a 32-bit field changed from old to new: used when a frame
// carries a checksum the receiver will complete (virtio NEEDS_CSUM).
func UpdatePartial32(ps uint16, old, new uint32) uint16 {
	return ^Update32(^ps, old, new)
}

// UpdatePartial16 is UpdatePartial32 for a 16-bit field.
func UpdatePartial16(ps uint16, old, new uint16) uint16 {
	return ^Update16(^ps, old, new)
}
