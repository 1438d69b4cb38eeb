package packet

import "encoding/binary"

// Fragment kinds.
const (
	NotFragment   uint8 = 0
	FirstFragment uint8 = 1 // offset 0, MF set: carries the L4 header
	LaterFragment uint8 = 2 // offset > 0: no L4 header
)

// Inner is the header of the datagram embedded in an ICMP error.
type Inner struct {
	L3, L4       int    // offsets in the frame; L4 is 0 when the embedded datagram is a non-first fragment or too short
	Proto        uint8  // embedded protocol
	Src, Dst     uint32 // embedded addresses
	SPort, DPort uint16 // embedded ports (ICMP query: see Parsed)
	Frag         uint8  // embedded fragment kind
}

// Parsed is a decoded frame. Parse fills it in place; a zero offset means
// "not present". For ICMP queries, SPort carries the identifier of a request
// and DPort that of a reply (and the other is 0), so that reversing a tuple
// turns a request's key into its reply's.
type Parsed struct {
	EthType  uint16
	L3       int // offset of the ARP or IPv4 header
	L4       int // offset of the L4 header (0 for later fragments)
	End      int // end of the IP datagram (frame padding excluded)
	Proto    uint8
	TCPFlags uint8
	Frag     uint8
	TTL      uint8
	Src, Dst uint32
	SPort    uint16
	DPort    uint16
	ICMPType uint8
	ICMPCode uint8
	IsError  bool // an ICMP error; Inner is valid
	Inner    Inner
}

// IP returns the IPv4 header view.
func (p *Parsed) IP(frame []byte) IPv4 { return IPv4(frame[p.L3:p.End]) }

// Parse validates frame and decodes it into p. It returns ReasonNone for an
// ARP or IPv4 frame that the data path can handle, and otherwise why not.
// It never allocates.
func Parse(frame []byte, p *Parsed) Reason {
	*p = Parsed{}
	if len(frame) < EthernetLen {
		return ReasonRunt
	}
	p.EthType = binary.BigEndian.Uint16(frame[12:14])
	p.L3 = EthernetLen
	switch p.EthType {
	case EtherTypeIPv4:
	case EtherTypeARP:
		if !ARP(frame[p.L3:]).Valid() {
			return ReasonBadARP
		}
		return ReasonNone
	case EtherTypeVLAN, EtherTypeQinQ:
		return ReasonVLAN
	case EtherTypeIPv6:
		return ReasonIPv6
	default:
		return ReasonBadEtherType
	}
	ip := frame[p.L3:]
	if len(ip) < IPv4MinLen {
		return ReasonRunt
	}
	v := IPv4(ip)
	hl := v.HeaderLen()
	tl := v.TotalLen()
	if v.Version() != 4 || hl < IPv4MinLen || tl < hl {
		return ReasonBadIPHeader
	}
	if tl > len(ip) {
		return ReasonRunt
	}
	if Fold(Add(0, ip[:hl])) != 0xffff { // Sum, one call less
		return ReasonBadIPChecksum
	}
	p.End = p.L3 + tl
	p.Proto = v.Protocol()
	p.TTL = v.TTL()
	p.Src = v.Src()
	p.Dst = v.Dst()
	ff := v.FragField()
	if ff&fragOffMask != 0 {
		p.Frag = LaterFragment
		return ReasonNone
	}
	if ff&flagMF != 0 {
		p.Frag = FirstFragment
	}
	l4 := p.L3 + hl
	seg := frame[l4:p.End]
	switch p.Proto {
	case ProtoTCP:
		if len(seg) < TCPMinLen {
			return p.runtL4()
		}
		t := TCP(seg)
		if off := t.DataOffset(); off < TCPMinLen || off > len(seg) {
			if p.Frag == NotFragment || off < TCPMinLen {
				return ReasonBadL4Header
			}
		}
		p.SPort, p.DPort, p.TCPFlags = t.SrcPort(), t.DstPort(), t.Flags()
	case ProtoUDP:
		if len(seg) < UDPLen {
			return p.runtL4()
		}
		u := UDP(seg)
		if p.Frag == NotFragment && (u.Length() < UDPLen || u.Length() > len(seg)) {
			return ReasonBadL4Header
		}
		p.SPort, p.DPort = u.SrcPort(), u.DstPort()
	case ProtoICMP:
		if len(seg) < ICMPLen {
			return p.runtL4()
		}
		c := ICMP(seg)
		p.ICMPType, p.ICMPCode = c.Type(), c.Code()
		switch {
		case IsQuery(p.ICMPType):
			if IsQueryRequest(p.ICMPType) {
				p.SPort = c.ID()
			} else {
				p.DPort = c.ID()
			}
		case IsError(p.ICMPType):
			if p.Frag != NotFragment {
				return ReasonBadL4Header // an ICMP error is never fragmented in practice; refuse to guess
			}
			p.IsError = true
			if r := p.parseInner(frame, l4+ICMPLen); r != ReasonNone {
				return r
			}
		}
	default:
		// Other protocols are tracked by addresses only.
	}
	p.L4 = l4
	return ReasonNone
}

// runtL4 handles an L4 header cut short: in a first fragment the header may
// legitimately straddle fragments, which roam does not reassemble.
func (p *Parsed) runtL4() Reason {
	return ReasonBadL4Header
}

// parseInner decodes the datagram embedded in an ICMP error at off.
func (p *Parsed) parseInner(frame []byte, off int) Reason {
	in := &p.Inner
	b := frame[off:p.End]
	if len(b) < IPv4MinLen {
		return ReasonBadL4Header
	}
	v := IPv4(b)
	hl := v.HeaderLen()
	if v.Version() != 4 || hl < IPv4MinLen || hl > len(b) {
		return ReasonBadL4Header
	}
	in.L3 = off
	in.Proto = v.Protocol()
	in.Src, in.Dst = v.Src(), v.Dst()
	ff := v.FragField()
	if ff&fragOffMask != 0 {
		in.Frag = LaterFragment
		return ReasonNone
	}
	if ff&flagMF != 0 {
		in.Frag = FirstFragment
	}
	l4 := b[hl:]
	switch in.Proto {
	case ProtoTCP, ProtoUDP:
		if len(l4) < 4 {
			return ReasonBadL4Header
		}
		in.SPort = binary.BigEndian.Uint16(l4[0:2])
		in.DPort = binary.BigEndian.Uint16(l4[2:4])
	case ProtoICMP:
		if len(l4) < ICMPLen {
			return ReasonBadL4Header
		}
		c := ICMP(l4)
		if !IsQuery(c.Type()) {
			return ReasonBadL4Header // an error about an error is never sent (RFC 1122)
		}
		if IsQueryRequest(c.Type()) {
			in.SPort = c.ID()
		} else {
			in.DPort = c.ID()
		}
	}
	in.L4 = off + hl
	return ReasonNone
}
