package nat

import (
	"encoding/binary"
	"math/bits"
	"time"

	"roam/internal/packet"
)

// TCP states, as Linux conntrack names them.
//
//	          SYN                 SYN-ACK (reply)           ACK
//	NONE ───────────▶ SYN_SENT ─────────────────▶ SYN_RECV ──────▶ ESTABLISHED
//	  │                  │ SYN (reply): simultaneous open            │ FIN
//	  │ ACK (pick-up)    ▼                                           ▼
//	  │              SYN_SENT2 ── SYN-ACK ──▶ SYN_RECV          FIN_WAIT ── ACK (other) ──▶ CLOSE_WAIT
//	  └──────────────────────────────▶ ESTABLISHED                │ FIN (other)                │ FIN
//	                                                              ▼                            ▼
//	any ── valid RST ──▶ CLOSE                                LAST_ACK ◀───────────────────────┘
//	TIME_WAIT/CLOSE ── SYN (orig) ──▶ reopened, same translation  │ ACK
//	                                                              ▼
//	                                                          TIME_WAIT
const (
	StateNone uint8 = iota
	StateSynSent
	StateSynRecv
	StateEstablished
	StateFinWait
	StateCloseWait
	StateLastAck
	StateTimeWait
	StateClose
	StateSynSent2
	numStates
	stateReopen = 0xff
)

var stateNames = [numStates]string{"NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT", "LAST_ACK", "TIME_WAIT", "CLOSE", "SYN_SENT2"}

// StateName names a TCP state.
func StateName(s uint8) string {
	if s < numStates {
		return stateNames[s]
	}
	return "UNKNOWN"
}

// Timeouts are idle timeouts. Zero fields take the defaults, which are no
// shorter than RFC 4787 (UDP ≥ 2 min), RFC 5382 (established ≥ 2 h 4 min,
// transitory ≥ 4 min) and RFC 5508 (ICMP query ≥ 60 s) ask.
type Timeouts struct {
	TCPEstablished time.Duration // default 2h4m
	TCPTransitory  time.Duration // SYN_SENT, SYN_RECV, FIN_WAIT, CLOSE_WAIT, LAST_ACK, TIME_WAIT; default 4m
	TCPClose       time.Duration // after a RST; default 10s
	UDP            time.Duration // one direction seen; default 2m
	UDPStream      time.Duration // both directions seen; default 5m
	ICMP           time.Duration // queries; default 60s
	Generic        time.Duration // other protocols; default 10m
}

// DefaultTimeouts returns the defaults.
func DefaultTimeouts() Timeouts { return Timeouts{}.withDefaults().public() }

type timeouts struct {
	tcp                           [numStates]uint32
	udp, udpStream, icmp, generic uint32
}

func (t Timeouts) withDefaults() timeouts {
	def := func(d, v time.Duration) uint32 {
		if d <= 0 {
			d = v
		}
		return uint32((d + time.Second - 1) / time.Second)
	}
	est := def(t.TCPEstablished, 2*time.Hour+4*time.Minute)
	tr := def(t.TCPTransitory, 4*time.Minute)
	cl := def(t.TCPClose, 10*time.Second)
	var o timeouts
	o.tcp = [numStates]uint32{StateNone: tr, StateSynSent: tr, StateSynRecv: tr, StateEstablished: est,
		StateFinWait: tr, StateCloseWait: tr, StateLastAck: tr, StateTimeWait: tr, StateClose: cl, StateSynSent2: tr}
	o.udp = def(t.UDP, 2*time.Minute)
	o.udpStream = def(t.UDPStream, 5*time.Minute)
	o.icmp = def(t.ICMP, 60*time.Second)
	o.generic = def(t.Generic, 10*time.Minute)
	return o
}

func (o timeouts) public() Timeouts {
	s := func(v uint32) time.Duration { return time.Duration(v) * time.Second }
	return Timeouts{TCPEstablished: s(o.tcp[StateEstablished]), TCPTransitory: s(o.tcp[StateSynSent]),
		TCPClose: s(o.tcp[StateClose]), UDP: s(o.udp), UDPStream: s(o.udpStream), ICMP: s(o.icmp), Generic: s(o.generic)}
}

// Seg is what TCP tracking needs of a segment.
type Seg struct {
	Flags  uint8
	WScale int8 // window scale option on a SYN, -1 when absent
	Win    uint16
	Seq    uint32
	Ack    uint32
	Len    uint32 // payload length
}

// SegOf decodes the TCP segment of a parsed packet. It returns false when
// the packet has no TCP header to read.
func SegOf(p *packet.Parsed, frame []byte, s *Seg) bool {
	if p.Proto != packet.ProtoTCP || p.L4 == 0 {
		return false
	}
	t := packet.TCP(frame[p.L4:p.End])
	off := t.DataOffset()
	if off > len(t) {
		off = len(t)
	}
	s.Flags = t.Flags()
	s.Seq, s.Ack, s.Win = t.Seq(), t.Ack(), t.Window()
	s.Len = uint32(len(t) - off)
	if p.Frag == packet.FirstFragment {
		s.Len = 0 // unknown: the rest is in later fragments
	}
	s.WScale = -1
	if s.Flags&packet.TCPSyn != 0 {
		s.WScale = wscaleOption(t[packet.TCPMinLen:off])
	}
	return true
}

func wscaleOption(opt []byte) int8 {
	for len(opt) > 0 {
		switch opt[0] {
		case 0:
			return -1
		case 1:
			opt = opt[1:]
			continue
		}
		if len(opt) < 2 || opt[1] < 2 || int(opt[1]) > len(opt) {
			return -1
		}
		if opt[0] == 3 && opt[1] == 3 {
			w := opt[2]
			if w > 14 {
				w = 14
			}
			return int8(w)
		}
		opt = opt[opt[1]:]
	}
	return -1
}

// tcpCanCreate reports whether a segment may start a flow: a SYN, or (for
// picking up a connection already under way) a bare ACK.
func tcpCanCreate(flags uint8) bool {
	f := flags & (packet.TCPSyn | packet.TCPAck | packet.TCPFin | packet.TCPRst)
	return f == packet.TCPSyn || f == packet.TCPAck
}

func seqAfter(a, b uint32) bool { return int32(a-b) > 0 }

// tcpLocked advances f's TCP state for one segment from dir. It returns
// stateReopen when a SYN reopens a closed connection, and a drop reason for
// an invalid segment (which changes nothing).
func (t *Table) tcpLocked(f *flow, dir Dir, s *Seg) (uint8, packet.Reason) {
	d := dir
	fl := s.Flags
	st := f.state
	switch {
	case fl&packet.TCPRst != 0:
		if !f.rstInWindow(d, s) {
			return st, ReasonInvalidState
		}
		f.state = StateClose
		return f.state, packet.ReasonNone
	case fl&packet.TCPSyn != 0 && fl&packet.TCPAck == 0:
		switch {
		case dir == Orig && (st == StateTimeWait || st == StateClose):
			return stateReopen, packet.ReasonNone
		case st == StateNone && dir == Orig:
			f.state = StateSynSent
		case st == StateSynSent && dir == Reply:
			f.state = StateSynSent2 // simultaneous open
		}
		f.window(d, s)
	case fl&packet.TCPSyn != 0: // SYN-ACK
		switch {
		case (st == StateSynSent || st == StateSynSent2 || st == StateSynRecv) && dir == Reply:
			f.state = StateSynRecv
		case st == StateSynSent2 && dir == Orig:
			f.state = StateSynRecv
		case dir == Orig && (st == StateTimeWait || st == StateClose):
			return st, ReasonInvalidState
		}
		f.window(d, s)
	case fl&packet.TCPFin != 0:
		f.window(d, s)
		if d == Orig {
			f.flags |= flagFinOrig
		} else {
			f.flags |= flagFinReply
		}
		switch st {
		case StateNone, StateSynSent, StateSynSent2, StateTimeWait, StateClose:
			// A FIN before the handshake completed, or after close: ignore.
		default:
			if f.flags&(flagFinOrig|flagFinReply) == flagFinOrig|flagFinReply {
				f.state = StateLastAck
			} else if st == StateSynRecv || st == StateEstablished {
				// The first FIN. A retransmitted one (in FIN_WAIT
				// or CLOSE_WAIT) changes nothing.
				f.state = StateFinWait
			}
		}
	case fl&packet.TCPAck != 0:
		f.window(d, s)
		switch st {
		case StateNone:
			f.state = StateEstablished // mid-stream pick-up
			f.flags |= flagAssured
		case StateSynRecv:
			if dir == Orig || f.flags&flagReplied != 0 {
				f.state = StateEstablished
				f.flags |= flagAssured
			}
		case StateFinWait:
			finO := f.flags&flagFinOrig != 0
			if (d == Reply && finO) || (d == Orig && !finO) {
				f.state = StateCloseWait
			}
		case StateLastAck:
			f.state = StateTimeWait
		}
	}
	if dir == Reply {
		f.flags |= flagReplied
	}
	return f.state, packet.ReasonNone
}

// window records what a segment tells about its sender's sequence space and
// its receive window, for RST validation.
func (f *flow) window(d Dir, s *Seg) {
	end := s.Seq + s.Len
	if s.Flags&(packet.TCPSyn|packet.TCPFin) != 0 {
		end++
	}
	bit := flagWinOrig
	shift := uint(0)
	if d == Reply {
		bit, shift = flagWinReply, 4
	}
	if s.Flags&packet.TCPSyn != 0 && s.WScale >= 0 {
		f.wscale = f.wscale&^(0xf<<shift) | uint8(s.WScale)<<shift
	}
	// A SYN during the handshake (re)starts its sender's sequence
	// space: a client that retries with a new ISN is answered (and
	// reset) by the new one, whichever way it moved.
	restart := s.Flags&packet.TCPSyn != 0 && f.state <= StateSynRecv
	if f.flags&bit == 0 || restart || seqAfter(end, f.end[d]) {
		f.end[d] = end
	}
	win := uint32(s.Win)
	if s.Flags&packet.TCPSyn == 0 {
		win <<= (f.wscale >> shift) & 0xf
	}
	if win > f.maxwin[d] {
		f.maxwin[d] = win
	}
	f.flags |= bit
}

// rstInWindow reports whether a RST from d falls in the window the other
// side would accept: its sequence number within the receiver's largest
// window around the next byte d would send. When the flow has not seen d
// send yet (mid-stream pick-up), any RST is accepted, as Linux does.
func (f *flow) rstInWindow(d Dir, s *Seg) bool {
	bit, other := flagWinOrig, flagWinReply
	if d == Reply {
		bit, other = other, bit
	}
	if f.flags&bit == 0 {
		// d never sent: a RST answering the other side's SYN must
		// acknowledge it; otherwise accept (mid-stream pick-up).
		if s.Flags&packet.TCPAck != 0 && f.flags&other != 0 {
			return s.Ack == f.end[1-d]
		}
		return true
	}
	win := f.maxwin[1-d]
	if win < 65535 {
		win = 65535
	}
	diff := int64(int32(s.Seq - f.end[d]))
	return diff >= -int64(win) && diff <= int64(win)
}

// mssOption returns the offset of the MSS option value within a TCP header,
// or 0 when there is none.
func mssOption(t packet.TCP) int {
	off := t.DataOffset()
	if off > len(t) {
		return 0
	}
	for i := packet.TCPMinLen; i < off; {
		switch t[i] {
		case 0:
			return 0
		case 1:
			i++
			continue
		}
		if i+1 >= off || t[i+1] < 2 || i+int(t[i+1]) > off {
			return 0
		}
		if t[i] == 2 && t[i+1] == 4 {
			return i + 2
		}
		i += int(t[i+1])
	}
	return 0
}

// ClampMSS lowers the MSS option of a SYN to mss, fixing the checksum (or
// the partial checksum when partial is set). It reports whether it changed
// the segment. Segments without SYN are left alone: only a SYN may carry
// the option (RFC 9293, 3.7.1).
func ClampMSS(t packet.TCP, mss uint16, partial bool) bool {
	if len(t) < packet.TCPMinLen || t.Flags()&packet.TCPSyn == 0 {
		return false
	}
	i := mssOption(t)
	if i == 0 {
		return false
	}
	old := binary.BigEndian.Uint16(t[i:])
	if old <= mss {
		return false
	}
	binary.BigEndian.PutUint16(t[i:], mss)
	cs := binary.BigEndian.Uint16(t[16:18])
	if partial {
		return true // the checksum is completed later over the new bytes
	}
	// The option need not be 16-bit aligned (after a single NOP, say):
	// then its bytes fall in the checksum's words the other way round.
	o, n := old, mss
	if i&1 != 0 {
		o, n = bits.ReverseBytes16(o), bits.ReverseBytes16(n)
	}
	binary.BigEndian.PutUint16(t[16:18], packet.Update16(cs, o, n))
	return true
}
