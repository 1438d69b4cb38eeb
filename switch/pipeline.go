package vswitch

import (
	"roam/internal/packet"
	"roam/nat"
	"roam/tap"
)

// worker holds the per-goroutine state of the pipeline: the batch's
// packets, per-destination output batches and counters. One runs per port
// reader; Process borrows one from a pool. Nothing in it is shared, and
// nothing in it is "the current packet": every stage is given the packet
// it works on (a *pkt) and the batch it belongs to (pkt.batch).
type worker struct {
	s    *Switch
	b    batch  // the batch being processed; its packets point to it
	pk   []pkt  // the batch's packets, reused from batch to batch
	sink uint64 // keeps prefetch loads alive
	// held is the storage for a fragment released from the hold pool
	// while its first fragment is processed (fragVerdict).
	held   pkt
	outs   []outQ
	bc     batchCounts
	tally  recTally
	extra  []tap.Frame // buffers for fragments released from the hold pool
	nextra int
	lastEx uint32

	// Identity output: while every frame of the batch so far goes, in
	// order, to one port, the batch itself is written at flush without
	// copying frames into a queue (the common case).
	in     []tap.Frame
	idPort *portState
	idN    int
	idOK   bool
}

// batch is what every packet of one batch shares: the snapshot it is
// processed under, the port it came in on and that port's record.
type batch struct {
	snap *Snapshot
	in   *portState
	rec  *recEntry // in's record; nil for the uplink (which has none)
	up   bool      // in is the uplink
	// draining: the batch comes from a port its record just left (drain.go).
	draining bool
	now      uint32
	nano     int64 // now in Unix ns (the ICMP error limiter)
}

// pkt is one packet in the pipeline: its frame, what parsing found, and
// what tracking decided. Stages take a *pkt instead of reading state off
// the worker.
type pkt struct {
	*batch
	f   *tap.Frame
	p   packet.Parsed
	r   packet.Reason // the parse verdict
	h   uint64        // the conntrack hash when known (prefetch), else 0
	seg nat.Seg       // the TCP segment, when seg is decoded
	v   nat.Verdict   // the flow verdict, once tracked
}

type outQ struct {
	ps     *portState
	frames []tap.Frame
}

func newWorker(s *Switch) *worker {
	return &worker{s: s, extra: tap.NewFrames(16, tap.Headroom+9216+64)}
}

// process runs one batch read from port in: every frame is parsed,
// classified, tracked, translated and queued for its destination; then
// every destination port gets its frames in one Write.
func (w *worker) process(in *portState, frames []tap.Frame) {
	snap := w.s.snap.Load()
	b := &w.b
	t := w.s.now()
	*b = batch{snap: snap, in: in, now: uint32(t.Unix()), nano: t.UnixNano()}
	w.nextra = 0
	w.in, w.idPort, w.idN, w.idOK = frames, nil, 0, true
	b.up = in == snap.uplink && in != nil
	b.rec = snap.ports.at(in)
	if b.rec == nil && !b.up && snap.draining != nil { // the uplink never has a record
		if d, ok := snap.draining[in]; ok && d.until > b.nano {
			b.rec, b.draining = d.rec, true
		}
	}
	n := len(frames)
	if cap(w.pk) < n {
		w.pk = make([]pkt, n)
	}
	pk := w.pk[:n]
	// Vectors: parse all, then (for a table too large for the caches)
	// touch every packet's index slot, then every packet's flow, so that
	// the batch's cache misses overlap; then process each packet.
	for i := range pk {
		x := &pk[i]
		x.batch, x.f, x.h = b, &frames[i], 0
		x.r = packet.Parse(x.f.Bytes(), &x.p)
	}
	ct := w.s.ct
	if ct.Len() >= prefetchAbove {
		for i := range pk {
			if x := &pk[i]; x.r == packet.ReasonNone && x.p.EthType == packet.EtherTypeIPv4 && x.p.Frag != packet.LaterFragment && !x.p.IsError {
				x.h = ct.Hash(nat.TupleOf(&x.p))
				w.sink += ct.PrefetchIndex(x.h)
			}
		}
		for i := range pk {
			if h := pk[i].h; h != 0 {
				w.sink += ct.PrefetchFlow(h)
			}
		}
	}
	for i := range pk {
		w.one(&pk[i])
	}
	// Forget the frames and the snapshot, so the worker keeps neither alive.
	for i := range pk {
		pk[i].f = nil
	}
	now := b.now
	*b = batch{}
	w.flush()
	w.tally.flush()
	w.bc.flush(&w.s.c)
	if now != w.lastEx {
		w.lastEx = now
		w.s.ct.Expire(now, 256)
		if _, dropped := w.s.frags.Expire(now); dropped > 0 {
			w.s.c.drops[nat.ReasonFragNoFlow].Add(uint64(dropped))
		}
	}
}

func (w *worker) dropAll(n int) {
	w.s.c.packets.Add(uint64(n))
	w.s.c.drops[ReasonNoPort].Add(uint64(n))
}

func (w *worker) drop(r packet.Reason, rec *recEntry) {
	w.bc.drops[r]++
	w.bc.dropped = true
	if rec != nil {
		rec.st.c.drops[r].Add(1)
	}
}

func (w *worker) one(x *pkt) {
	frame := x.f.Bytes()
	p := &x.p
	w.bc.packets++
	if x.r != packet.ReasonNone {
		w.drop(x.r, x.rec)
		return
	}
	if !x.up {
		if x.rec == nil {
			w.drop(ReasonNoRecord, nil)
			return
		}
		x.in.learn(packet.Ethernet(frame).Src())
	}
	if x.draining && (p.EthType != packet.EtherTypeIPv4 || p.IsError || p.Frag == packet.LaterFragment) {
		w.drop(ReasonNoRecord, nil) // a draining port only finishes established flows
		return
	}
	if p.EthType == packet.EtherTypeARP {
		w.arp(x)
		return
	}
	if x.up {
		w.fromUplink(x)
	} else {
		w.fromRecord(x)
	}
}

// hash returns the conntrack hash of x's key k.
func (w *worker) hash(x *pkt, k nat.Tuple) uint64 {
	if x.h != 0 {
		return x.h
	}
	return w.s.ct.Hash(k)
}

// prefetchAbove is the table size from which batches prefetch: below it,
// the table stays in the caches and prefetching only costs.
const prefetchAbove = 1 << 16

// segment decodes the TCP segment of x into x.seg, or returns nil.
func segment(x *pkt) *nat.Seg {
	if nat.SegOf(&x.p, x.f.Bytes(), &x.seg) {
		return &x.seg
	}
	return nil
}

func (w *worker) fromRecord(x *pkt) {
	p, rec := &x.p, x.rec
	if isDHCP(p) {
		if !x.in.dhcpWin.allow(x.now, w.s.o.DHCPRate) {
			w.drop(ReasonDHCPRate, rec)
			return
		}
		w.dhcp(x)
		return
	}
	if rec.sdc && !rec.hasIP(p.Src) {
		w.drop(ReasonSourceCheck, rec)
		return
	}
	if p.Dst == rec.subnet.gateway {
		w.toGateway(x)
		return
	}
	if p.Dst == 0xffffffff || p.Dst>>28 == 0xe || p.Dst == rec.subnet.net|^rec.subnet.mask {
		w.drop(ReasonNotForUs, rec) // roam never floods
		return
	}
	if p.Frag == packet.LaterFragment {
		w.laterFragment(x)
		return
	}
	if p.IsError {
		w.icmpError(x)
		return
	}
	k := nat.TupleOf(p)
	seg := segment(x)
	v := &x.v
	w.s.ct.TrackHashed(k, w.hash(x, k), seg, x.now, v)
	if x.draining && (!v.Found || v.New) {
		w.drop(ReasonNoRecord, nil) // no new flow from a port the record left
		return
	}
	if !v.Found && v.Reason == packet.ReasonNone {
		*v = w.newFromRecord(x, k, seg)
	} else if v.New {
		// A revived flow is admitted again by the rules in force.
		if r := admitFromRecord(x, k); r != packet.ReasonNone {
			v.Reason = r
		}
	}
	if v.Reason != packet.ReasonNone {
		w.drop(v.Reason, rec)
		w.fragVerdict(x, v)
		w.refused(x, v.Reason)
		return
	}
	w.tally.switchTo(rec.st)
	w.tally.pout++
	w.tally.bout += uint64(x.f.Len)
	w.forward(x, k)
}

// admitFromRecord applies the security groups to a flow from x's record.
func admitFromRecord(x *pkt, k nat.Tuple) packet.Reason {
	if !allows(x.snap, x.rec.egress, &x.p, k.Dst) {
		return ReasonSGEgress
	}
	if d := x.snap.private.at(k.Dst); d != nil && !allows(x.snap, d.ingress, &x.p, k.Src) {
		return ReasonSGIngress
	}
	return packet.ReasonNone
}

// newFromRecord decides and creates the flow of a first packet from x's
// record.
func (w *worker) newFromRecord(x *pkt, k nat.Tuple, seg *nat.Seg) nat.Verdict {
	p, snap, rec := &x.p, x.snap, x.rec
	if p.Proto == packet.ProtoICMP && !packet.IsQueryRequest(p.ICMPType) {
		return nat.Verdict{Reason: ReasonICMPNoFlow}
	}
	sp := nat.Spec{Orig: k, To: k, Owner: rec.slot, Budget: rec.budget}
	if !allows(snap, rec.egress, p, k.Dst) {
		return nat.Verdict{Reason: ReasonSGEgress}
	}
	var d *recEntry
	switch {
	case snap.private.at(k.Dst) != nil:
		d = snap.private.at(k.Dst)
	case snap.route(k.Dst) != nil:
		d = snap.route(k.Dst)
	case snap.subnetOf(k.Dst) != nil:
		return nat.Verdict{Reason: ReasonNoRoute}
	case snap.isPublic(k.Dst):
		// Hairpin: to a public address of this gateway.
		if pe, ok := snap.public.get(k.Dst); ok {
			sp.To.Dst, d = pe.private, pe.rec
		} else {
			if !w.s.ct.HairpinPAT(&sp, k) {
				return nat.Verdict{Reason: nat.ReasonUnsolicited}
			}
			d = snap.private.at(sp.To.Dst)
		}
		if r := w.snat(x, &sp); r != packet.ReasonNone {
			return nat.Verdict{Reason: r}
		}
	default:
		if snap.uplink == nil {
			return nat.Verdict{Reason: ReasonNoRoute}
		}
		if r := w.snat(x, &sp); r != packet.ReasonNone {
			return nat.Verdict{Reason: r}
		}
	}
	if d != nil && !allows(snap, d.ingress, p, sp.To.Src) {
		return nat.Verdict{Reason: ReasonSGIngress}
	}
	return w.s.ct.Create(&sp, seg, x.now)
}

// snat sets the source translation of a flow leaving through the gateway:
// the record's 1:1 public IP, or PAT to the gateway's address.
func (w *worker) snat(x *pkt, sp *nat.Spec) packet.Reason {
	if pub, ok := x.rec.publicFor(sp.Orig.Src); ok {
		sp.To.Src = pub
		return packet.ReasonNone
	}
	return w.s.ct.OutboundPAT(sp, x.snap.publicIP)
}

func (w *worker) fromUplink(x *pkt) {
	p, snap := &x.p, x.snap
	if !snap.isPublic(p.Dst) {
		w.drop(ReasonNotForUs, nil)
		return
	}
	if p.Dst == snap.publicIP && p.Proto == packet.ProtoICMP && p.ICMPType == packet.ICMPEcho && p.Frag == packet.NotFragment {
		w.echoReply(x)
		return
	}
	if p.Frag == packet.LaterFragment {
		w.laterFragment(x)
		return
	}
	if p.IsError {
		w.icmpError(x)
		return
	}
	k := nat.TupleOf(p)
	seg := segment(x)
	v := &x.v
	w.s.ct.TrackHashed(k, w.hash(x, k), seg, x.now, v)
	var d *recEntry
	if !v.Found && v.Reason == packet.ReasonNone {
		*v, d = w.newFromUplink(x, k, seg)
	} else if v.New {
		if d = snap.private.at(v.To.Dst); d != nil && !allows(snap, d.ingress, p, k.Src) {
			v.Reason = ReasonSGIngress
		}
	}
	if v.Reason != packet.ReasonNone {
		w.drop(v.Reason, d)
		w.fragVerdict(x, v)
		return
	}
	w.forward(x, k)
}

func (w *worker) newFromUplink(x *pkt, k nat.Tuple, seg *nat.Seg) (nat.Verdict, *recEntry) {
	p, snap := &x.p, x.snap
	if p.Proto == packet.ProtoICMP && !packet.IsQueryRequest(p.ICMPType) {
		return nat.Verdict{Reason: ReasonICMPNoFlow}, nil
	}
	sp := nat.Spec{Orig: k, To: k}
	var d *recEntry
	if pe, ok := snap.public.get(k.Dst); ok {
		d = pe.rec
		sp.To.Dst = pe.private
	} else {
		if !w.s.ct.InboundPAT(&sp, k) {
			return nat.Verdict{Reason: nat.ReasonUnsolicited}, nil
		}
		d = snap.private.at(sp.To.Dst)
	}
	if d == nil {
		return nat.Verdict{Reason: ReasonNoRoute}, nil
	}
	if !allows(snap, d.ingress, p, k.Src) {
		return nat.Verdict{Reason: ReasonSGIngress}, d
	}
	sp.Owner, sp.Budget = d.slot, d.budget
	return w.s.ct.Create(&sp, seg, x.now), d
}

// icmpError forwards an ICMP error by the flow of the datagram it embeds
// (RFC 5508): the checksum must verify, the flow must exist, and the flow is
// neither refreshed nor changed.
func (w *worker) icmpError(x *pkt) {
	p, rec, f := &x.p, x.rec, x.f
	frame := f.Bytes()
	if !nat.ICMPChecksumValid(frame, p) || !packet.IPv4(frame[p.Inner.L3:p.End]).ChecksumValid() {
		// RFC 5508 REQ-3: a bad ICMP checksum, or a bad checksum of the
		// embedded IP header, and the error is dropped.
		w.drop(ReasonBadChecksum, rec)
		return
	}
	if p.Inner.L4 == 0 && nat.HasPorts(p.Inner.Proto) {
		w.drop(ReasonICMPNoFlow, rec)
		return
	}
	ek := nat.ErrorKey(p)
	v := w.s.ct.Peek(ek, x.now)
	if !v.Found {
		w.drop(ReasonICMPNoFlow, rec)
		return
	}
	ps, d, r := resolve(x.snap, v.To.Dst)
	if r != packet.ReasonNone {
		w.drop(r, rec)
		return
	}
	if rec != nil {
		w.tally.switchTo(rec.st)
		w.tally.pout++
		w.tally.bout += uint64(f.Len)
	}
	crossing := rec == nil || d == nil || d.subnet != rec.subnet
	if crossing && p.TTL <= 1 {
		w.drop(ReasonTTL, rec)
		return
	}
	if ek != v.To {
		nat.RewriteError(frame, p, ek, v.To)
		w.bc.translated++
	}
	if crossing {
		packet.IPv4(frame[p.L3:]).DecTTL()
	}
	w.deliver(x, ps, d, v.To.Dst, true)
}

// resolve finds where a packet to dst goes: a record's port, or the uplink.
func resolve(snap *Snapshot, dst uint32) (*portState, *recEntry, packet.Reason) {
	inside := snap.subnetOf(dst) != nil
	var d *recEntry
	if inside {
		d = snap.private.at(dst)
	}
	if d == nil && len(snap.routes) != 0 {
		if d = snap.route(dst); d != nil && d.sdc {
			return nil, d, ReasonDestCheck
		}
	}
	if d != nil {
		switch len(d.ports) {
		case 0:
			return nil, d, ReasonNoAttachment
		case 1:
			return d.ports[0], d, packet.ReasonNone
		}
		return nil, d, packet.ReasonNone // picked per flow in forward
	}
	if inside || snap.uplink == nil {
		return nil, nil, ReasonNoRoute
	}
	return snap.uplink, nil, packet.ReasonNone
}

// pick spreads flows over a record's attachments by rendezvous hashing of
// the flow's reference: a flow stays on its attachment while that
// attachment exists, whatever others come and go.
func pick(ports []*portState, ref uint32) *portState {
	var best *portState
	var bestScore uint64
	for _, ps := range ports {
		x := (uint64(ref) ^ ps.id) * 0x9e3779b97f4a7c15
		x ^= x >> 31
		x *= 0xbf58476d1ce4e5b9
		x ^= x >> 29
		if best == nil || x > bestScore {
			best, bestScore = ps, x
		}
	}
	return best
}

// forward sends a tracked packet on by its verdict x.v: resolve its
// destination by the translated address, apply TTL and MTU rules, rewrite
// it, and queue it.
func (w *worker) forward(x *pkt, k nat.Tuple) {
	p, from, f, v := &x.p, x.rec, x.f, &x.v
	frame := f.Bytes()
	to := v.To
	ps, d, r := resolve(x.snap, to.Dst)
	if r == packet.ReasonNone && ps == nil {
		ps = pick(d.ports, v.Ref)
	}
	if r != packet.ReasonNone {
		w.drop(r, from)
		w.fragVerdict(x, &nat.Verdict{Reason: r})
		return
	}
	crossing := from == nil || d == nil || d.subnet != from.subnet
	if crossing && p.TTL <= 1 {
		w.drop(ReasonTTL, from)
		w.icmpErrorReply(x, packet.ICMPTimeExceeded, packet.ICMPCodeTTLExceeded, 0)
		return
	}
	if mtu := mtu(x.snap, d); f.GSO.Type == tap.GSONone && p.End-p.L3 > mtu && packet.IPv4(frame[p.L3:]).DF() {
		w.drop(ReasonFragNeeded, from)
		w.icmpErrorReply(x, packet.ICMPUnreachable, packet.ICMPCodeFragNeeded, mtu)
		return
	}
	switch {
	case to != k && crossing:
		nat.RewriteTTL(frame, p, k, to, f.GSO.NeedsCsum)
		w.bc.translated++
	case to != k:
		nat.Rewrite(frame, p, k, to, f.GSO.NeedsCsum)
		w.bc.translated++
	case crossing:
		packet.IPv4(frame[p.L3:]).DecTTL()
	}
	if w.s.o.MSS != 0 && p.TCPFlags&packet.TCPSyn != 0 && p.L4 != 0 && p.Proto == packet.ProtoTCP {
		nat.ClampMSS(packet.TCP(frame[p.L4:p.End]), w.s.o.MSS, f.GSO.NeedsCsum)
	}
	if p.Frag == packet.FirstFragment {
		w.fragVerdict(x, v)
	}
	w.deliver(x, ps, d, to.Dst, to != k)
}

func mtu(snap *Snapshot, d *recEntry) int {
	if d != nil {
		return d.subnet.mtu
	}
	return snap.uplinkMTU
}

// deliver sets x's MACs for its destination port ps (of record d, nil for
// the uplink) and queues it; dst is its destination address, translated
// whether its tuple was rewritten.
func (w *worker) deliver(x *pkt, ps *portState, d *recEntry, dst uint32, translated bool) {
	f, from, snap := x.f, x.rec, x.snap
	if !ps.up.Load() {
		w.drop(ReasonPortDown, d)
		return
	}
	eth := packet.Ethernet(f.Bytes())
	if d != nil {
		dst, ok := ps.guestMAC()
		if !ok {
			dst = d.mac
		}
		eth.SetDst(dst)
		if from != nil && from.subnet == d.subnet && !translated {
			eth.SetSrc(from.mac)
		} else {
			eth.SetSrc(snap.gwMAC)
		}
		w.tally.switchTo(d.st)
		w.tally.pin++
		w.tally.bin += uint64(f.Len)
	} else {
		mac, ok := w.nextHop(snap, dst)
		if !ok {
			w.unresolved(snap, dst, f)
			return
		}
		eth.SetDst(mac)
		eth.SetSrc(snap.gwMAC)
	}
	w.bc.forwarded++
	w.enqueue(ps, f)
}

func (w *worker) enqueue(ps *portState, f *tap.Frame) {
	if w.idOK {
		if w.idN < len(w.in) && f == &w.in[w.idN] && (w.idPort == nil || w.idPort == ps) {
			w.idPort = ps
			w.idN++
			return
		}
		// The batch no longer goes whole to one port: queue what it sent.
		w.idOK = false
		if w.idN > 0 {
			q := w.queue(w.idPort)
			q.frames = append(q.frames, w.in[:w.idN]...)
		}
	}
	w.enqueueQueued(ps, f)
}

// queue returns the output queue of ps, adding one if needed.
func (w *worker) queue(ps *portState) *outQ {
	for i := range w.outs {
		if w.outs[i].ps == ps {
			return &w.outs[i]
		}
	}
	w.outs = append(w.outs, outQ{ps: ps})
	return &w.outs[len(w.outs)-1]
}

func (w *worker) enqueueQueued(ps *portState, f *tap.Frame) {
	q := w.queue(ps)
	q.frames = append(q.frames, *f)
}

// flush writes every queued batch to its port. A port's writes are
// serialized by its own lock; there is no global lock.
func (w *worker) flush() {
	if w.idOK && w.idN > 0 {
		ps := w.idPort
		ps.wmu.Lock()
		n, err := ps.p.Write(w.in[:w.idN])
		ps.wmu.Unlock()
		ps.c.forwarded.Add(uint64(n))
		if err != nil || n < w.idN {
			ps.c.drops[ReasonPortDown].Add(uint64(w.idN - n))
		}
	}
	w.in, w.idPort, w.idN, w.idOK = nil, nil, 0, false
	for i := range w.outs {
		q := &w.outs[i]
		if len(q.frames) == 0 {
			continue
		}
		q.ps.wmu.Lock()
		n, err := q.ps.p.Write(q.frames)
		q.ps.wmu.Unlock()
		q.ps.c.forwarded.Add(uint64(n))
		if err != nil || n < len(q.frames) {
			q.ps.c.drops[ReasonPortDown].Add(uint64(len(q.frames) - n))
		}
		clear(q.frames)
		q.frames = q.frames[:0]
	}
	// Keep the queues (and their capacity) for the next batch; forget
	// those of ports that went down, so a removed port is not kept alive.
	j := 0
	for i := range w.outs {
		if w.outs[i].ps != nil && w.outs[i].ps.up.Load() {
			w.outs[j] = w.outs[i]
			j++
		}
	}
	for i := j; i < len(w.outs); i++ {
		w.outs[i] = outQ{}
	}
	w.outs = w.outs[:j]
}

// laterFragment forwards a non-first fragment by its datagram's first
// fragment's verdict, or holds it until that arrives.
func (w *worker) laterFragment(x *pkt) {
	p, rec := &x.p, x.rec
	frame := x.f.Bytes()
	fk := nat.FragKeyOf(p, frame)
	r, nsrc, ndst, ok := w.s.frags.LookupAt(fk, fragOffset(frame, p), x.now)
	if !ok {
		if !w.s.frags.Hold(fk, frame, x.now) {
			w.drop(nat.ReasonFragLimit, rec)
		}
		return
	}
	if r != packet.ReasonNone {
		w.drop(r, rec)
		return
	}
	w.forwardFragment(x, nsrc, ndst)
}

// forwardFragment sends a non-first fragment x on, translated to nsrc and
// ndst by its first fragment's verdict.
func (w *worker) forwardFragment(x *pkt, nsrc, ndst uint32) {
	p, rec, f := &x.p, x.rec, x.f
	frame := f.Bytes()
	ps, d, r := resolve(x.snap, ndst)
	if r == packet.ReasonNone && ps == nil {
		ps = pick(d.ports, nsrc^ndst)
	}
	if r != packet.ReasonNone {
		w.drop(r, rec)
		return
	}
	crossing := rec == nil || d == nil || d.subnet != rec.subnet
	if crossing && p.TTL <= 1 {
		w.drop(ReasonTTL, rec)
		return
	}
	k := nat.Tuple{Src: p.Src, Dst: p.Dst, Proto: p.Proto}
	to := nat.Tuple{Src: nsrc, Dst: ndst, Proto: p.Proto}
	if k != to {
		nat.Rewrite(frame, p, k, to, false)
		w.bc.translated++
	}
	if crossing {
		packet.IPv4(frame[p.L3:]).DecTTL()
	}
	if rec != nil {
		w.tally.switchTo(rec.st)
		w.tally.pout++
		w.tally.bout += uint64(f.Len)
	}
	w.deliver(x, ps, d, ndst, k != to)
}

// fragOffset returns where a fragment's data starts in its datagram's IP
// payload, in bytes.
func fragOffset(frame []byte, p *packet.Parsed) int {
	return int(packet.IPv4(frame[p.L3:]).FragField()&0x1fff) * 8
}

// fragVerdict records the verdict v of a first fragment x for the rest of
// its datagram and releases the fragments held for it, each as a packet of
// x's batch of its own (w.held). It is a no-op for packets that are not
// first fragments.
func (w *worker) fragVerdict(x *pkt, v *nat.Verdict) {
	p := &x.p
	if p.Frag != packet.FirstFragment {
		return
	}
	frame := x.f.Bytes()
	fk := nat.FragKeyOf(p, frame)
	firstEnd := p.End - p.L4 // the first fragment's data, from the start of the IP payload
	w.s.frags.LearnFirst(fk, v.Reason, v.To.Src, v.To.Dst, firstEnd, x.now)
	rec := x.rec
	w.s.frags.Drain(fk, func(held []byte) {
		if v.Reason != packet.ReasonNone || w.nextra == len(w.extra) {
			r := v.Reason
			if r == packet.ReasonNone {
				r = nat.ReasonFragLimit
			}
			w.drop(r, rec)
			return
		}
		f := &w.extra[w.nextra]
		w.nextra++
		f.Off = tap.Headroom
		f.Len = copy(f.Buf[f.Off:], held)
		f.GSO = tap.GSO{}
		h := &w.held
		h.batch, h.f, h.h = x.batch, f, 0
		if h.r = packet.Parse(f.Bytes(), &h.p); h.r != packet.ReasonNone {
			w.drop(packet.ReasonBadIPHeader, rec)
			return
		}
		if fragOffset(f.Bytes(), &h.p) < firstEnd {
			w.drop(nat.ReasonFragOverlap, rec)
			return
		}
		w.forwardFragment(h, v.To.Src, v.To.Dst)
	})
	w.held.batch, w.held.f = nil, nil
}
