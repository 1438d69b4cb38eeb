package vswitch

import (
	"sync/atomic"

	"roam/internal/packet"
)

// Counters is a snapshot of packet and drop counts, for the switch as a
// whole or for one record.
type Counters struct {
	Packets      uint64            `json:"packets"`     // frames received (switch) — for a record, PacketsOut+PacketsIn
	PacketsIn    uint64            `json:"packets_in"`  // frames delivered to the record (record only)
	PacketsOut   uint64            `json:"packets_out"` // frames the record sent that were forwarded (record only)
	BytesIn      uint64            `json:"bytes_in"`    //
	BytesOut     uint64            `json:"bytes_out"`   //
	Forwarded    uint64            `json:"forwarded"`   // frames delivered to a port
	Translated   uint64            `json:"translated"`  // forwarded frames whose addresses or ports NAT rewrote
	Local        uint64            `json:"local"`       // frames roam answered itself (ARP, ICMP echo, DHCP)
	Dropped      uint64            `json:"dropped"`     // sum of Drops
	Drops        map[string]uint64 `json:"drops"`       // by reason
	Flows        int               `json:"flows"`       // conntrack entries (switch) or charged to the record
	FlowsCreated uint64            `json:"flows_created"`
	FlowLimit    int               `json:"flow_limit"`
	Held         int               `json:"held"`                          // fragments waiting for their first fragment (no verdict yet)
	ICMPSent     uint64            `json:"icmp_errors_sent,omitempty"`    // ICMP errors roam originated (for a record: about its packets)
	ICMPLimited  uint64            `json:"icmp_errors_limited,omitempty"` // ICMP errors suppressed by Options.ICMPSourceRate or ICMPErrorRate
}

// counterSet is the live, atomically updated form of Counters.
type counterSet struct {
	packets, packetsIn, packetsOut atomic.Uint64
	bytesIn, bytesOut              atomic.Uint64
	forwarded, translated, local   atomic.Uint64
	icmpSent, icmpLimited          atomic.Uint64
	drops                          [packet.NumReasons]atomic.Uint64
}

func (c *counterSet) snapshot() Counters {
	out := Counters{
		Packets:     c.packets.Load(),
		PacketsIn:   c.packetsIn.Load(),
		PacketsOut:  c.packetsOut.Load(),
		BytesIn:     c.bytesIn.Load(),
		BytesOut:    c.bytesOut.Load(),
		Forwarded:   c.forwarded.Load(),
		Translated:  c.translated.Load(),
		Local:       c.local.Load(),
		ICMPSent:    c.icmpSent.Load(),
		ICMPLimited: c.icmpLimited.Load(),
		Drops:       map[string]uint64{},
	}
	for r := range c.drops {
		if n := c.drops[r].Load(); n != 0 {
			out.Drops[packet.Reason(r).String()] = n
			out.Dropped += n
		}
	}
	return out
}

// batchCounts accumulates one batch's counts so that the hot path adds to
// the shared atomics once per batch, not once per packet.
type batchCounts struct {
	packets, forwarded, translated, local uint64
	drops                                 [packet.NumReasons]uint32
	dropped                               bool
}

func (b *batchCounts) flush(c *counterSet) {
	c.packets.Add(b.packets)
	if b.forwarded != 0 {
		c.forwarded.Add(b.forwarded)
	}
	if b.translated != 0 {
		c.translated.Add(b.translated)
	}
	if b.local != 0 {
		c.local.Add(b.local)
	}
	if b.dropped {
		for r, n := range b.drops {
			if n != 0 {
				c.drops[r].Add(uint64(n))
				b.drops[r] = 0
			}
		}
		b.dropped = false
	}
	b.packets, b.forwarded, b.translated, b.local = 0, 0, 0, 0
}

// recTally accumulates a run of packets for one record before it is added
// to that record's atomics.
type recTally struct {
	st                   *recordState
	pin, pout, bin, bout uint64
}

func (t *recTally) switchTo(st *recordState) {
	if t.st == st {
		return
	}
	t.flush()
	t.st = st
}

func (t *recTally) flush() {
	if t.st == nil {
		return
	}
	c := &t.st.c
	if t.pin != 0 {
		c.packetsIn.Add(t.pin)
		c.bytesIn.Add(t.bin)
	}
	if t.pout != 0 {
		c.packetsOut.Add(t.pout)
		c.bytesOut.Add(t.bout)
	}
	t.pin, t.pout, t.bin, t.bout = 0, 0, 0, 0
	t.st = nil
}
