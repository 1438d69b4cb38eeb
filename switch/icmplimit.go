package vswitch

import (
	"sync"
	"sync/atomic"
)

// The ICMP error limiter. Every ICMP error roam originates is charged to
// whoever sent the packet it is about: a record (its own buckets, in its
// recordState), or, for a packet from the uplink, its source address (a
// bucket in srcLimiter). An error within that share is then checked
// against the global cap (Options.ICMPErrorRate), the last resort that
// bounds what the gateway emits in all. Fragmentation-needed has buckets
// of its own, so that a sender's burst of other errors does not cost it
// its path MTU discovery; a record within its fragmentation-needed share
// is not subject to the global cap at all (records are few and made by
// the control plane), while fragmentation-needed to uplink sources (as
// many as can be spoofed) has a global cap of its own. No path-MTU black
// hole can then be made by another record or by an outside host.
//
// Buckets are GCRA token buckets (one theoretical arrival time each), in
// nanoseconds of the switch's clock, read once per batch: nothing is
// allocated, and records' and the global buckets take no lock.

// Kinds of ICMP error, each with buckets of its own.
const (
	icmpOther = iota // time exceeded, destination unreachable but 3/4
	icmpPMTU         // fragmentation needed (3/4)
	icmpKinds
)

// bucket is a token bucket kept as the time (Unix ns) at which it would
// be full again with every event so far spent at its rate: the generic
// cell rate algorithm (ITU-T I.371). The zero bucket is full.
type bucket struct{ tat atomic.Int64 }

// allow reports whether one more event fits at now (Unix ns) in the
// bucket at rate r, and takes it.
func (b *bucket) allow(now int64, r rate) bool {
	for {
		tat := b.tat.Load()
		t := max(tat, now)
		if t-now > r.slack {
			return false
		}
		if b.tat.CompareAndSwap(tat, t+r.interval) {
			return true
		}
	}
}

// rate is a token bucket's refill interval and how far ahead of now its
// arrival time may run (burst-1 intervals).
type rate struct{ interval, slack int64 }

// newRate returns the rate of perSecond events a second with bursts of
// burst events; perSecond must be positive.
func newRate(perSecond, burst int) rate {
	iv := int64(1e9) / int64(perSecond)
	return rate{interval: iv, slack: int64(max(burst, 1)-1) * iv}
}

// srcLimiter is the uplink's per-source buckets: a bounded, set-associative
// table keyed by source address under a random seed (so an outside host
// cannot aim at another's set). A source not in its set takes the way that
// has been idle longest, with that way's arrival times: a way idle for a
// full refill is a fresh bucket, and a source that finds every way of its
// set busy shares the debt of the one it displaces instead of starting
// with a full burst, so that cycling spoofed sources through a set gains
// nothing. Each set has its own lock.
type srcLimiter struct {
	seed uint64
	sets [srcSets]srcSet
}

const (
	srcSetBits = 8
	srcSets    = 1 << srcSetBits // 256 sets of srcWays: 1024 sources
	srcWays    = 4
)

type srcSet struct {
	mu   sync.Mutex
	ways [srcWays]srcBucket
}

type srcBucket struct {
	addr uint32
	tat  [icmpKinds]int64
}

// allow reports whether source addr may cause one more error of kind k
// at now, and takes it.
func (l *srcLimiter) allow(addr uint32, k int, now int64, r rate) bool {
	set := &l.sets[((uint64(addr)^l.seed)*0x9e3779b97f4a7c15)>>(64-srcSetBits)]
	set.mu.Lock()
	defer set.mu.Unlock()
	b := &set.ways[0]
	for i := range set.ways {
		w := &set.ways[i]
		if w.addr == addr {
			b = w
			break
		}
		if max(w.tat[0], w.tat[1]) < max(b.tat[0], b.tat[1]) {
			b = w
		}
	}
	b.addr = addr
	t := max(b.tat[k], now)
	if t-now > r.slack {
		return false
	}
	b.tat[k] = t + r.interval
	return true
}

// icmpLimits are the switch's ICMP error limiter: the rates and the
// global and uplink buckets.
type icmpLimits struct {
	off    bool // Options.ICMPErrorRate < 0: no error is sent
	each   rate // per record and per uplink source (Options.ICMPSourceRate)
	noEach bool // Options.ICMPSourceRate < 0: only the global cap
	all    rate // the global cap (Options.ICMPErrorRate)
	global [icmpKinds]bucket
	src    srcLimiter
}

func (l *icmpLimits) init(o *Options, seed uint64) {
	l.off, l.noEach = o.ICMPErrorRate < 0, o.ICMPSourceRate < 0
	if !l.off {
		l.all = newRate(o.ICMPErrorRate, o.ICMPErrorRate)
	}
	if !l.noEach {
		l.each = newRate(o.ICMPSourceRate, 2*o.ICMPSourceRate)
	}
	l.src.seed = seed
}

// allow reports whether x may be answered with an ICMP error of kind k at
// now: within the share of x's record (or, from the uplink, of x's source
// address), and then within the global cap, which fragmentation-needed to
// a record does not need.
func (l *icmpLimits) allow(x *pkt, k int) bool {
	if l.off {
		return false
	}
	now := x.nano
	if !l.noEach {
		switch {
		case x.rec != nil:
			if !x.rec.st.icmp[k].allow(now, l.each) {
				return false
			}
			if k == icmpPMTU {
				return true
			}
		case x.up:
			if !l.src.allow(x.p.Src, k, now, l.each) {
				return false
			}
		}
	}
	return l.global[k].allow(now, l.all)
}

// errorAllowed reports whether roam may originate an ICMP error of kind k
// about x now, counting it, or its suppression, for the switch and for
// x's record.
func (s *Switch) errorAllowed(x *pkt, k int) bool {
	ok := s.icmp.allow(x, k)
	s.c.icmpError(ok)
	if x.rec != nil {
		x.rec.st.c.icmpError(ok)
	}
	return ok
}

// icmpError counts an ICMP error sent, or suppressed by the limiter.
func (c *counterSet) icmpError(sent bool) {
	if sent {
		c.icmpSent.Add(1)
	} else {
		c.icmpLimited.Add(1)
	}
}
