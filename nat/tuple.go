package nat

import (
	"fmt"
	"math/bits"
	"net/netip"

	"roam/internal/packet"
)

// Tuple identifies one direction of a flow: addresses, ports and protocol
// as they appear in a packet. It is 16 bytes, comparable and pointer-free,
// so tables of tuples cost the garbage collector nothing. For ICMP queries
// the identifier stands in SPort for requests and in DPort for replies (see
// packet.Parsed), so Reverse maps a request's key to its reply's.
type Tuple struct {
	Src, Dst     uint32
	SPort, DPort uint16
	Proto        uint8
	_            [3]byte
}

// TupleOf returns the tuple of a parsed packet.
func TupleOf(p *packet.Parsed) Tuple {
	return Tuple{Src: p.Src, Dst: p.Dst, SPort: p.SPort, DPort: p.DPort, Proto: p.Proto}
}

// Reverse returns the tuple of a packet going the other way.
func (t Tuple) Reverse() Tuple {
	return Tuple{Src: t.Dst, Dst: t.Src, SPort: t.DPort, DPort: t.SPort, Proto: t.Proto}
}

// String formats the tuple as "proto src:sport->dst:dport".
func (t Tuple) String() string {
	return fmt.Sprintf("%s %s->%s", ProtoName(t.Proto), netip.AddrPortFrom(packet.Addr(t.Src), t.SPort), netip.AddrPortFrom(packet.Addr(t.Dst), t.DPort))
}

// SrcAddrPort returns the source as a netip.AddrPort.
func (t Tuple) SrcAddrPort() netip.AddrPort { return netip.AddrPortFrom(packet.Addr(t.Src), t.SPort) }

// DstAddrPort returns the destination as a netip.AddrPort.
func (t Tuple) DstAddrPort() netip.AddrPort { return netip.AddrPortFrom(packet.Addr(t.Dst), t.DPort) }

// ProtoName names an IP protocol.
func ProtoName(p uint8) string {
	switch p {
	case packet.ProtoTCP:
		return "tcp"
	case packet.ProtoUDP:
		return "udp"
	case packet.ProtoICMP:
		return "icmp"
	}
	return fmt.Sprintf("proto-%d", p)
}

// hash mixes the tuple with seed (a 64-bit finalizer in the style of
// wyhash/splitmix). The seed is random per table so that remote peers cannot
// aim collisions at the table.
func (t Tuple) hash(seed uint64) uint64 {
	a := uint64(t.Src)<<32 | uint64(t.Dst)
	b := uint64(t.SPort)<<24 | uint64(t.DPort)<<8 | uint64(t.Proto)
	// One 64x64->128 multiply folded (wyhash's "mum"): every bit of the
	// result depends on every bit of both seeded operands.
	hi, lo := bits.Mul64(a^seed^0xa0761d6478bd642f, b^bits.RotateLeft64(seed, 32)^0xe7037ed1a0b428db)
	return hi ^ lo
}
