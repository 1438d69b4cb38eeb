package packet

import "encoding/binary"

// ARP is a view of an ARP packet for IPv4 over Ethernet (RFC 826).
//
//	0    2    4  5  6    8        14       18       24       28
//	|htype|ptype|hl|pl|oper| sha    | spa    | tha    | tpa    |
type ARP []byte

// ARP constants.
const (
	ARPLen     = 28
	ARPRequest = 1
	ARPReply   = 2
)

// Valid reports whether a is an Ethernet/IPv4 ARP packet.
func (a ARP) Valid() bool {
	return len(a) >= ARPLen && binary.BigEndian.Uint16(a[0:2]) == 1 &&
		binary.BigEndian.Uint16(a[2:4]) == EtherTypeIPv4 && a[4] == 6 && a[5] == 4
}

// Op returns the operation.
func (a ARP) Op() uint16 { return binary.BigEndian.Uint16(a[6:8]) }

// SenderMAC returns the sender hardware address.
func (a ARP) SenderMAC() MAC { return MAC(a[8:14]) }

// SenderIP returns the sender protocol address.
func (a ARP) SenderIP() uint32 { return binary.BigEndian.Uint32(a[14:18]) }

// TargetMAC returns the target hardware address.
func (a ARP) TargetMAC() MAC { return MAC(a[18:24]) }

// TargetIP returns the target protocol address.
func (a ARP) TargetIP() uint32 { return binary.BigEndian.Uint32(a[24:28]) }

// PutARP writes a complete Ethernet+ARP frame into b (which must hold
// EthernetLen+ARPLen bytes) and returns its length.
func PutARP(b []byte, op uint16, srcMAC MAC, srcIP uint32, dstMAC MAC, dstIP uint32, ethDst MAC) int {
	e := Ethernet(b)
	e.SetDst(ethDst)
	e.SetSrc(srcMAC)
	e.SetType(EtherTypeARP)
	a := b[EthernetLen:]
	binary.BigEndian.PutUint16(a[0:2], 1)
	binary.BigEndian.PutUint16(a[2:4], EtherTypeIPv4)
	a[4], a[5] = 6, 4
	binary.BigEndian.PutUint16(a[6:8], op)
	copy(a[8:14], srcMAC[:])
	binary.BigEndian.PutUint32(a[14:18], srcIP)
	copy(a[18:24], dstMAC[:])
	binary.BigEndian.PutUint32(a[24:28], dstIP)
	return EthernetLen + ARPLen
}
