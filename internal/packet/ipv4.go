package packet

import (
	"encoding/binary"
	"net/netip"
)

// IPv4 is a view of an IPv4 header (RFC 791).
//
//	0       1       2       3
//	|ver|ihl| tos  |  total length  |
//	|  identification  |flg| frag  |
//	|  ttl  | proto |   checksum     |
//	|        source address          |
//	|      destination address       |
//	|        options (ihl > 5)       |
type IPv4 []byte

// IPv4 constants.
const (
	IPv4MinLen   = 20
	ProtoICMP    = 1
	ProtoTCP     = 6
	ProtoUDP     = 17
	flagMF       = 0x2000
	flagDF       = 0x4000
	fragOffMask  = 0x1fff
	ipv4Checksum = 10
)

// HeaderLen returns the header length in bytes (IHL*4).
func (ip IPv4) HeaderLen() int { return int(ip[0]&0x0f) * 4 }

// Version returns the version field.
func (ip IPv4) Version() uint8 { return ip[0] >> 4 }

// TotalLen returns the total length field.
func (ip IPv4) TotalLen() int { return int(binary.BigEndian.Uint16(ip[2:4])) }

// SetTotalLen sets the total length field (the checksum is not updated).
func (ip IPv4) SetTotalLen(n int) { binary.BigEndian.PutUint16(ip[2:4], uint16(n)) }

// ID returns the identification field.
func (ip IPv4) ID() uint16 { return binary.BigEndian.Uint16(ip[4:6]) }

// FragField returns the flags and fragment offset field.
func (ip IPv4) FragField() uint16 { return binary.BigEndian.Uint16(ip[6:8]) }

// DF reports the don't-fragment flag.
func (ip IPv4) DF() bool { return ip.FragField()&flagDF != 0 }

// MF reports the more-fragments flag.
func (ip IPv4) MF() bool { return ip.FragField()&flagMF != 0 }

// FragOffset returns the fragment offset in bytes.
func (ip IPv4) FragOffset() int { return int(ip.FragField()&fragOffMask) * 8 }

// IsFragment reports whether the packet is a fragment (MF or offset set).
func (ip IPv4) IsFragment() bool { return ip.FragField()&(flagMF|fragOffMask) != 0 }

// TTL returns the time to live.
func (ip IPv4) TTL() uint8 { return ip[8] }

// Protocol returns the protocol field.
func (ip IPv4) Protocol() uint8 { return ip[9] }

// Checksum returns the header checksum field.
func (ip IPv4) Checksum() uint16 { return binary.BigEndian.Uint16(ip[10:12]) }

// SetChecksum sets the header checksum field.
func (ip IPv4) SetChecksum(c uint16) { binary.BigEndian.PutUint16(ip[10:12], c) }

// Src returns the source address.
func (ip IPv4) Src() uint32 { return binary.BigEndian.Uint32(ip[12:16]) }

// Dst returns the destination address.
func (ip IPv4) Dst() uint32 { return binary.BigEndian.Uint32(ip[16:20]) }

// SetSrc rewrites the source address and updates the header checksum.
func (ip IPv4) SetSrc(a uint32) {
	old := ip.Src()
	binary.BigEndian.PutUint32(ip[12:16], a)
	ip.SetChecksum(Update32(ip.Checksum(), old, a))
}

// SetDst rewrites the destination address and updates the header checksum.
func (ip IPv4) SetDst(a uint32) {
	old := ip.Dst()
	binary.BigEndian.PutUint32(ip[16:20], a)
	ip.SetChecksum(Update32(ip.Checksum(), old, a))
}

// DecTTL decrements the TTL and updates the header checksum.
func (ip IPv4) DecTTL() {
	old := binary.BigEndian.Uint16(ip[8:10])
	ip[8]--
	ip.SetChecksum(Update16(ip.Checksum(), old, binary.BigEndian.Uint16(ip[8:10])))
}

// ChecksumValid reports whether the header checksum verifies.
func (ip IPv4) ChecksumValid() bool { return Fold(Add(0, ip[:ip.HeaderLen()])) == 0xffff }

// ComputeChecksum recomputes the header checksum from scratch.
func (ip IPv4) ComputeChecksum() {
	ip.SetChecksum(0)
	ip.SetChecksum(Checksum(ip[:ip.HeaderLen()], 0))
}

// PutIPv4 writes a 20-byte IPv4 header into b with a valid checksum.
func PutIPv4(b []byte, proto uint8, src, dst uint32, totalLen int, id uint16, ttl uint8, df bool) {
	b[0] = 0x45
	b[1] = 0
	binary.BigEndian.PutUint16(b[2:4], uint16(totalLen))
	binary.BigEndian.PutUint16(b[4:6], id)
	var ff uint16
	if df {
		ff = flagDF
	}
	binary.BigEndian.PutUint16(b[6:8], ff)
	b[8] = ttl
	b[9] = proto
	binary.BigEndian.PutUint32(b[12:16], src)
	binary.BigEndian.PutUint32(b[16:20], dst)
	IPv4(b).ComputeChecksum()
}

// Addr converts an address to netip.Addr.
func Addr(a uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)})
}

// AddrFrom converts an IPv4 (or IPv4-mapped) netip.Addr to uint32; it
// returns 0 for anything else.
func AddrFrom(a netip.Addr) uint32 {
	a = a.Unmap()
	if !a.Is4() {
		return 0
	}
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}
