package packet

import "encoding/binary"

// TCP is a view of a TCP header (RFC 9293).
//
//	0      2      4        8        12   13    14     16    18    20
//	|sport |dport | seq    | ack    |off |flags| win  | csum| urp |
type TCP []byte

// TCP constants.
const (
	TCPMinLen = 20
	TCPFin    = 0x01
	TCPSyn    = 0x02
	TCPRst    = 0x04
	TCPPsh    = 0x08
	TCPAck    = 0x10
	TCPUrg    = 0x20
	tcpCsum   = 16
)

// SrcPort returns the source port.
func (t TCP) SrcPort() uint16 { return binary.BigEndian.Uint16(t[0:2]) }

// DstPort returns the destination port.
func (t TCP) DstPort() uint16 { return binary.BigEndian.Uint16(t[2:4]) }

// Seq returns the sequence number.
func (t TCP) Seq() uint32 { return binary.BigEndian.Uint32(t[4:8]) }

// Ack returns the acknowledgment number.
func (t TCP) Ack() uint32 { return binary.BigEndian.Uint32(t[8:12]) }

// DataOffset returns the header length in bytes.
func (t TCP) DataOffset() int { return int(t[12]>>4) * 4 }

// Flags returns the flag bits (FIN..URG, ECE, CWR).
func (t TCP) Flags() uint8 { return t[13] }

// Window returns the window field.
func (t TCP) Window() uint16 { return binary.BigEndian.Uint16(t[14:16]) }

// UDP is a view of a UDP header (RFC 768).
//
//	0      2      4     6     8
//	|sport |dport | len | csum|
type UDP []byte

// UDP constants.
const (
	UDPLen  = 8
	udpCsum = 6
)

// SrcPort returns the source port.
func (u UDP) SrcPort() uint16 { return binary.BigEndian.Uint16(u[0:2]) }

// DstPort returns the destination port.
func (u UDP) DstPort() uint16 { return binary.BigEndian.Uint16(u[2:4]) }

// Length returns the length field.
func (u UDP) Length() int { return int(binary.BigEndian.Uint16(u[4:6])) }

// ICMP is a view of an ICMPv4 header (RFC 792).
//
//	0    1    2      4          8
//	|type|code| csum | id | seq | (echo)  or  | unused/mtu | embedded IP ...
type ICMP []byte

// ICMP constants.
const (
	ICMPLen            = 8
	ICMPEchoReply      = 0
	ICMPUnreachable    = 3
	ICMPSourceQuench   = 4
	ICMPRedirect       = 5
	ICMPEcho           = 8
	ICMPTimeExceeded   = 11
	ICMPParamProblem   = 12
	ICMPTimestamp      = 13
	ICMPTimestampReply = 14
	ICMPInfo           = 15
	ICMPInfoReply      = 16
	ICMPAddrMask       = 17
	ICMPAddrMaskReply  = 18

	ICMPCodeFragNeeded   = 4
	ICMPCodePortUnreach  = 3
	ICMPCodeAdminProhib  = 13
	ICMPCodeHostUnreach  = 1
	ICMPCodeTTLExceeded  = 0
	icmpCsum             = 2
	ICMPCodeProtoUnreach = 2
)

// Type returns the ICMP type.
func (c ICMP) Type() uint8 { return c[0] }

// Code returns the ICMP code.
func (c ICMP) Code() uint8 { return c[1] }

// ID returns the query identifier (echo, timestamp, info, mask).
func (c ICMP) ID() uint16 { return binary.BigEndian.Uint16(c[4:6]) }

// Seq returns the query sequence number.
func (c ICMP) Seq() uint16 { return binary.BigEndian.Uint16(c[6:8]) }

// IsQuery reports whether an ICMP type is a query or query reply (has an
// identifier).
func IsQuery(t uint8) bool {
	switch t {
	case ICMPEcho, ICMPEchoReply, ICMPTimestamp, ICMPTimestampReply, ICMPInfo, ICMPInfoReply, ICMPAddrMask, ICMPAddrMaskReply:
		return true
	}
	return false
}

// IsQueryRequest reports whether an ICMP query type is a request.
func IsQueryRequest(t uint8) bool {
	return t == ICMPEcho || t == ICMPTimestamp || t == ICMPInfo || t == ICMPAddrMask
}

// IsError reports whether an ICMP type is an error that embeds the offending
// datagram.
func IsError(t uint8) bool {
	switch t {
	case ICMPUnreachable, ICMPSourceQuench, ICMPRedirect, ICMPTimeExceeded, ICMPParamProblem:
		return true
	}
	return false
}

// csumOffset is the offset of the checksum field within the L4 header of
// proto, or -1 when it has none.
func csumOffset(proto uint8) int {
	switch proto {
	case ProtoTCP:
		return tcpCsum
	case ProtoUDP:
		return udpCsum
	case ProtoICMP:
		return icmpCsum
	}
	return -1
}

// CsumOffset returns the offset of the checksum field in an L4 header of
// proto, or -1.
func CsumOffset(proto uint8) int { return csumOffset(proto) }
