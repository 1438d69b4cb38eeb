package vswitch

import (
	"sync/atomic"

	"roam/internal/packet"
	"roam/nat"
)

// Defaults of the rate limits (Options.ICMPErrorRate, ICMPSourceRate,
// DHCPRate).
const (
	// DefaultICMPErrorRate is the global cap on the ICMP errors roam
	// originates, per second (as Linux's icmp_msgs_per_sec), a last
	// resort behind the per-source limit.
	DefaultICMPErrorRate = 1000
	// DefaultICMPSourceRate is the ICMP errors one record, or one source
	// address on the uplink, may cause per second, in bursts of twice as
	// many; fragmentation-needed counts apart from the other errors.
	DefaultICMPSourceRate = 10
	DefaultDHCPRate       = 10 // DHCP messages answered per second per port
	exhaustedLogEvery     = 10 // seconds between two "PAT ports exhausted" log lines
)

// window is a fixed one-second window rate limiter that never allocates and
// takes no lock: the current second in the high 32 bits, the count in the
// low 32.
type window struct{ v atomic.Uint64 }

// allow reports whether one more event fits in second now under limit.
func (w *window) allow(now uint32, limit int) bool {
	if limit <= 0 {
		return false
	}
	for {
		cur := w.v.Load()
		sec, n := uint32(cur>>32), uint32(cur)
		if sec != now {
			if w.v.CompareAndSwap(cur, uint64(now)<<32|1) {
				return true
			}
			continue
		}
		if n >= uint32(limit) {
			return false
		}
		if w.v.CompareAndSwap(cur, cur+1) {
			return true
		}
	}
}

// refusable reports whether a first packet refused for r is answered with
// ICMP destination unreachable, code 13 (RFC 5508 REQ-8: no session could
// be made, for want of resources or by administrative restriction).
func refusable(r packet.Reason) bool {
	switch r {
	case ReasonSGEgress, ReasonSGIngress, nat.ReasonNoPort4NAT,
		nat.ReasonTableFull, nat.ReasonBudget, nat.ReasonNATConflict:
		return true
	}
	return false
}

// refused answers a record's first packet that no session could be made
// for: ICMP type 3 code 13 back to the sender (rate-limited, never about an
// ICMP error), and for PAT port exhaustion a rate-limited log line. The
// packet itself is already counted as dropped; f is reused for the answer.
func (w *worker) refused(x *pkt, r packet.Reason) {
	if r == nat.ReasonNoPort4NAT {
		w.s.logExhausted(x.snap, x.now)
	}
	p := &x.p
	if !refusable(r) || p.Frag == packet.LaterFragment {
		return
	}
	switch p.Proto {
	case packet.ProtoTCP, packet.ProtoUDP:
	case packet.ProtoICMP:
		if !packet.IsQueryRequest(p.ICMPType) {
			return
		}
	default:
		return
	}
	w.icmpErrorReply(x, packet.ICMPUnreachable, packet.ICMPCodeAdminProhib, 0)
}

// logExhausted logs that PAT ran out of ports, at most once every
// exhaustedLogEvery seconds, with the refusals counted since the last line.
func (s *Switch) logExhausted(snap *Snapshot, now uint32) {
	s.exhausted.Add(1)
	last := s.exhaustedLog.Load()
	if last != 0 && now-last < exhaustedLogEvery {
		return
	}
	if !s.exhaustedLog.CompareAndSwap(last, now) {
		return
	}
	n := s.exhausted.Swap(0)
	s.log.Warn("PAT ports exhausted: new flows refused", "public_ip", packet.Addr(snap.publicIP), "refused", n,
		"counter", nat.ReasonNoPort4NAT.String())
}
