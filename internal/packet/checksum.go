package packet

import (
	"encoding/binary"
	"math/bits"
)

// Sum adds b to the one's-complement running sum initial and returns the
// folded 16-bit sum (not complemented). An odd trailing byte is padded with
// zero, as RFC 1071 asks.
func Sum(b []byte, initial uint32) uint16 { return Fold(Add(uint64(initial), b)) }

// Add adds b to the running one's-complement sum s as a sequence of
// big-endian 16-bit words (an odd trailing byte is padded with zero) and
// returns the new running sum, carried in 64 bits and folded only by Fold.
// Every b but the last given to one running sum must have an even length,
// and s must be below 2^62: 0, a PseudoSum, or what Add returned plus a few
// 16-bit additions.
// It is roam's one RFC 1071 loop: 32 bytes per round with add-with-carry.
func Add(s uint64, b []byte) uint64 {
	if len(b) >= 32 {
		var c uint64
		for len(b) >= 32 {
			s, c = bits.Add64(s, binary.BigEndian.Uint64(b), 0)
			s, c = bits.Add64(s, binary.BigEndian.Uint64(b[8:]), c)
			s, c = bits.Add64(s, binary.BigEndian.Uint64(b[16:]), c)
			s, c = bits.Add64(s, binary.BigEndian.Uint64(b[24:]), c)
			s += c
			b = b[32:]
		}
		// Fold s to 33 bits, so that the at most seven 32-bit words below
		// add without carries out of 64 bits (2^32-1 is a multiple of
		// 0xffff: the fold keeps the sum).
		s = (s >> 32) + (s & 0xffffffff)
	}
	// Under 32 bytes (a header, a tail) are added without carries: s is
	// below 2^62, as every sum Add returns is.
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
	return s
}

// Fold folds a 64-bit running sum to 16 bits (not complemented).
func Fold(s uint64) uint16 {
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
