package packet

import "encoding/binary"

// Ethernet is a view of an Ethernet II header.
//
//	0      6      12   14
//	| dst  | src  |type|
type Ethernet []byte

// Ethernet sizes and EtherTypes.
const (
	EthernetLen       = 14
	VLANLen           = 4
	EtherTypeIPv4     = 0x0800
	EtherTypeARP      = 0x0806
	EtherTypeVLAN     = 0x8100
	EtherTypeQinQ     = 0x88a8
	EtherTypeVLAN9100 = 0x9100 // pre-standard double tag
	EtherTypeIPv6     = 0x86dd
)

// MAC is a hardware address as a comparable value.
type MAC [6]byte

// Broadcast is ff:ff:ff:ff:ff:ff.
var Broadcast = MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// IsMulticast reports whether the group bit is set (broadcast included).
func (m MAC) IsMulticast() bool { return m[0]&1 != 0 }

// Dst returns the destination MAC.
func (e Ethernet) Dst() MAC { return MAC(e[0:6]) }

// Src returns the source MAC.
func (e Ethernet) Src() MAC { return MAC(e[6:12]) }

// SetDst sets the destination MAC.
func (e Ethernet) SetDst(m MAC) { copy(e[0:6], m[:]) }

// SetSrc sets the source MAC.
func (e Ethernet) SetSrc(m MAC) { copy(e[6:12], m[:]) }

// Type returns the EtherType (or 802.1Q TPID).
func (e Ethernet) Type() uint16 { return binary.BigEndian.Uint16(e[12:14]) }

// SetType sets the EtherType.
func (e Ethernet) SetType(t uint16) { binary.BigEndian.PutUint16(e[12:14], t) }
