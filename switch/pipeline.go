package vswitch

import (
	"roam/internal/packet"
	"roam/nat"
	"roam/tap"
)

// worker holds the per-goroutine state of the pipeline: the decoded packet,
// per-destination output batches and counters. One runs per port reader;
// Process borrows one from a pool. Nothing in it is shared.
type worker struct {
	s       *Switch
	p       *packet.Parsed // the packet being processed (in pp, or scratch)
	h       uint64         // its conntrack hash when known, else 0
	pp      []packet.Parsed
	pr      []packet.Reason
	ph      []uint64
	sink    uint64 // keeps prefetch loads alive
	scratch packet.Parsed
	seg     nat.Seg
	outs    []outQ
	bc      batchCounts
	tally   recTally
	extra   []tap.Frame // buffers for fragments released from the hold pool
	nextra  int
	lastEx  uint32
	v       nat.Verdict
	// draining: the batch comes from a port its record just left (drain.go).
	draining bool

	// Identity output: while every frame of the batch so far goes, in
	// order, to one port, the batch itself is written at flush without
	// copying frames into a queue (the common case).
	in     []tap.Frame
	idPort *portState
	idN    int
	idOK   bool
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
	now := uint32(w.s.now().Unix())
	w.nextra = 0
	w.in, w.idPort, w.idN, w.idOK = frames, nil, 0, true
	rec := snap.ports[in]
	w.draining = false
	if rec == nil && snap.draining != nil {
		if d, ok := snap.draining[in]; ok && d.until > w.s.now().UnixNano() {
			rec, w.draining = d.rec, true
		}
	}
	up := in == snap.uplink && in != nil
	n := len(frames)
	if cap(w.pp) < n {
		w.pp, w.pr, w.ph = make([]packet.Parsed, n), make([]packet.Reason, n), make([]uint64, n)
	}
	pp, pr, ph := w.pp[:n], w.pr[:n], w.ph[:n]
	// Vectors: parse all, then (for a table too large for the caches)
	// touch every packet's index slot, then every packet's flow, so that
	// the batch's cache misses overlap; then process each packet.
	for i := range frames {
		pr[i] = packet.Parse(frames[i].Bytes(), &pp[i])
	}
	ct := w.s.ct
	if ct.Len() >= prefetchAbove {
		for i := range pp {
			ph[i] = 0
			if p := &pp[i]; pr[i] == packet.ReasonNone && p.EthType == packet.EtherTypeIPv4 && p.Frag != packet.LaterFragment && !p.IsError {
				ph[i] = ct.Hash(nat.TupleOf(p))
				w.sink += ct.PrefetchIndex(ph[i])
			}
		}
		for _, h := range ph {
			if h != 0 {
				w.sink += ct.PrefetchFlow(h)
			}
		}
	} else {
		clear(ph)
	}
	for i := range frames {
		w.p, w.h = &pp[i], ph[i]
		w.one(snap, in, rec, up, &frames[i], now, pr[i])
	}
	w.flush()
	w.tally.flush()
	w.bc.flush(&w.s.c)
	if now != w.lastEx {
		w.lastEx = now
		w.s.ct.Expire(now, 256)
		if _, dropped := w.s.frags.Expire(now); dropped > 0 {
			w.s.c.drops[packet.ReasonFragNoFlow].Add(uint64(dropped))
		}
	}
}

func (w *worker) dropAll(n int) {
	w.s.c.packets.Add(uint64(n))
	w.s.c.drops[packet.ReasonNoPort].Add(uint64(n))
}

func (w *worker) drop(r packet.Reason, rec *recEntry) {
	w.bc.drops[r]++
	w.bc.dropped = true
	if rec != nil {
		rec.st.c.drops[r].Add(1)
	}
}

func (w *worker) one(snap *Snapshot, in *portState, rec *recEntry, up bool, f *tap.Frame, now uint32, r packet.Reason) {
	frame := f.Bytes()
	p := w.p
	w.bc.packets++
	if r != packet.ReasonNone {
		w.drop(r, rec)
		return
	}
	if !up {
		if rec == nil {
			w.drop(packet.ReasonNoRecord, nil)
			return
		}
		in.learn(packet.Ethernet(frame).Src())
	} else {
		w.s.nb.learnFrame(snap, p, packet.Ethernet(frame).Src())
	}
	if w.draining && (p.EthType != packet.EtherTypeIPv4 || p.IsError || p.Frag == packet.LaterFragment) {
		w.drop(packet.ReasonNoRecord, nil) // a draining port only finishes established flows
		return
	}
	if p.EthType == packet.EtherTypeARP {
		w.arp(snap, in, rec, up, f)
		return
	}
	if up {
		w.fromUplink(snap, in, f, now)
	} else {
		w.fromRecord(snap, in, rec, f, now)
	}
}

// hash returns the conntrack hash of the current packet's key k.
func (w *worker) hash(k nat.Tuple) uint64 {
	if w.h != 0 {
		return w.h
	}
	return w.s.ct.Hash(k)
}

// prefetchAbove is the table size from which batches prefetch: below it,
// the table stays in the caches and prefetching only costs.
const prefetchAbove = 1 << 16

// seg decodes the TCP segment of the current packet, or returns nil.
func (w *worker) segment(frame []byte) *nat.Seg {
	if nat.SegOf(w.p, frame, &w.seg) {
		return &w.seg
	}
	return nil
}

func (w *worker) fromRecord(snap *Snapshot, in *portState, rec *recEntry, f *tap.Frame, now uint32) {
	p := w.p
	frame := f.Bytes()
	if w.isDHCP() {
		if !in.dhcpWin.allow(now, w.s.o.DHCPRate) {
			w.drop(packet.ReasonDHCPRate, rec)
			return
		}
		w.dhcp(snap, in, rec, f)
		return
	}
	if rec.sdc && !rec.hasIP(p.Src) {
		w.drop(packet.ReasonSourceCheck, rec)
		return
	}
	if p.Dst == rec.subnet.gateway {
		w.toGateway(snap, in, rec, f)
		return
	}
	if p.Dst == 0xffffffff || p.Dst>>28 == 0xe || p.Dst == rec.subnet.net|^rec.subnet.mask {
		w.drop(packet.ReasonNotForUs, rec) // roam never floods
		return
	}
	if p.Frag == packet.LaterFragment {
		w.laterFragment(snap, in, rec, f, now)
		return
	}
	if p.IsError {
		w.icmpError(snap, in, rec, f, now)
		return
	}
	k := nat.TupleOf(p)
	seg := w.segment(frame)
	v := &w.v
	w.s.ct.TrackHashed(k, w.hash(k), seg, now, v)
	if w.draining && (!v.Found || v.New) {
		w.drop(packet.ReasonNoRecord, nil) // no new flow from a port the record left
		return
	}
	if !v.Found && v.Reason == packet.ReasonNone {
		*v = w.newFromRecord(snap, rec, k, seg, now)
	} else if v.New {
		// A revived flow is admitted again by the rules in force.
		if r := w.admitFromRecord(snap, rec, k); r != packet.ReasonNone {
			v.Reason = r
		}
	}
	if v.Reason != packet.ReasonNone {
		w.drop(v.Reason, rec)
		w.fragVerdict(snap, in, rec, f, v, now)
		w.refused(snap, in, rec, f, v.Reason, now)
		return
	}
	w.tally.switchTo(rec.st)
	w.tally.pout++
	w.tally.bout += uint64(f.Len)
	w.forward(snap, in, rec, f, k, v, now)
}

// admitFromRecord applies the security groups to a flow from rec.
func (w *worker) admitFromRecord(snap *Snapshot, rec *recEntry, k nat.Tuple) packet.Reason {
	p := w.p
	if !allows(snap, rec.egress, p, k.Dst) {
		return packet.ReasonSGEgress
	}
	if d := snap.private[k.Dst]; d != nil && !allows(snap, d.ingress, p, k.Src) {
		return packet.ReasonSGIngress
	}
	return packet.ReasonNone
}

// newFromRecord decides and creates the flow of a first packet from rec.
func (w *worker) newFromRecord(snap *Snapshot, rec *recEntry, k nat.Tuple, seg *nat.Seg, now uint32) nat.Verdict {
	p := w.p
	if p.Proto == packet.ProtoICMP && !packet.IsQueryRequest(p.ICMPType) {
		return nat.Verdict{Reason: packet.ReasonICMPNoFlow}
	}
	sp := nat.Spec{Orig: k, To: k, Owner: rec.slot, Budget: rec.budget}
	if !allows(snap, rec.egress, p, k.Dst) {
		return nat.Verdict{Reason: packet.ReasonSGEgress}
	}
	var d *recEntry
	switch {
	case snap.private[k.Dst] != nil:
		d = snap.private[k.Dst]
	case snap.route(k.Dst) != nil:
		d = snap.route(k.Dst)
	case snap.subnetOf(k.Dst) != nil:
		return nat.Verdict{Reason: packet.ReasonNoRoute}
	case snap.isPublic(k.Dst):
		// Hairpin: to a public address of this gateway.
		if pe, ok := snap.public[k.Dst]; ok {
			sp.To.Dst, d = pe.private, pe.rec
		} else {
			if !w.s.o.EndpointIndependentFiltering || !natPorts(p.Proto) {
				return nat.Verdict{Reason: packet.ReasonUnsolicited}
			}
			priv, port, ok := w.s.ct.PAT.Lookup(p.Proto, k.Dst, k.DPort)
			if !ok {
				return nat.Verdict{Reason: packet.ReasonUnsolicited}
			}
			sp.To.Dst, sp.To.DPort, sp.PATIn = priv, port, true
			d = snap.private[priv]
		}
		if r := w.snat(snap, rec, &sp); r != packet.ReasonNone {
			return nat.Verdict{Reason: r}
		}
	default:
		if snap.uplink == nil {
			return nat.Verdict{Reason: packet.ReasonNoRoute}
		}
		if r := w.snat(snap, rec, &sp); r != packet.ReasonNone {
			return nat.Verdict{Reason: r}
		}
	}
	if d != nil && !allows(snap, d.ingress, p, sp.To.Src) {
		return nat.Verdict{Reason: packet.ReasonSGIngress}
	}
	return w.s.ct.Create(&sp, seg, now)
}

// admitPAT reports whether filtering lets a first packet k (from a remote
// endpoint that no flow of the mapping on k.Dst:k.DPort has) through:
// always with endpoint-independent filtering, when the mapping has a flow
// with k's remote address with address-dependent filtering, never with
// address-and-port-dependent filtering (the default).
func (w *worker) admitPAT(k nat.Tuple) bool {
	o := &w.s.o
	switch {
	case !natPorts(k.Proto):
		return false
	case o.EndpointIndependentFiltering:
		return true
	case o.AddressDependentFiltering:
		return w.s.ct.PAT.PeerSeen(k.Proto, k.Dst, k.DPort, k.Src)
	}
	return false
}

func natPorts(proto uint8) bool {
	return proto == packet.ProtoTCP || proto == packet.ProtoUDP || proto == packet.ProtoICMP
}

// snat sets the source translation of a flow leaving through the gateway:
// the record's 1:1 public IP, or PAT to the gateway's address.
func (w *worker) snat(snap *Snapshot, rec *recEntry, sp *nat.Spec) packet.Reason {
	if pub, ok := rec.publicFor(sp.Orig.Src); ok {
		sp.To.Src = pub
		return packet.ReasonNone
	}
	if snap.publicIP == 0 {
		return packet.ReasonNoPublicIP
	}
	if !natPorts(sp.Orig.Proto) {
		return packet.ReasonUnsupportedL4
	}
	sp.To.Src, sp.PATOut = snap.publicIP, true
	return packet.ReasonNone
}

func (w *worker) fromUplink(snap *Snapshot, in *portState, f *tap.Frame, now uint32) {
	p := w.p
	frame := f.Bytes()
	if !snap.isPublic(p.Dst) {
		w.drop(packet.ReasonNotForUs, nil)
		return
	}
	if p.Dst == snap.publicIP && p.Proto == packet.ProtoICMP && p.ICMPType == packet.ICMPEcho && p.Frag == packet.NotFragment {
		w.echoReply(in, f)
		return
	}
	if p.Frag == packet.LaterFragment {
		w.laterFragment(snap, in, nil, f, now)
		return
	}
	if p.IsError {
		w.icmpError(snap, in, nil, f, now)
		return
	}
	k := nat.TupleOf(p)
	seg := w.segment(frame)
	v := &w.v
	w.s.ct.TrackHashed(k, w.hash(k), seg, now, v)
	var d *recEntry
	if !v.Found && v.Reason == packet.ReasonNone {
		*v, d = w.newFromUplink(snap, k, seg, now)
	} else if v.New {
		if d = snap.private[v.To.Dst]; d != nil && !allows(snap, d.ingress, p, k.Src) {
			v.Reason = packet.ReasonSGIngress
		}
	}
	if v.Reason != packet.ReasonNone {
		w.drop(v.Reason, d)
		w.fragVerdict(snap, in, nil, f, v, now)
		return
	}
	w.forward(snap, in, nil, f, k, v, now)
}

func (w *worker) newFromUplink(snap *Snapshot, k nat.Tuple, seg *nat.Seg, now uint32) (nat.Verdict, *recEntry) {
	p := w.p
	if p.Proto == packet.ProtoICMP && !packet.IsQueryRequest(p.ICMPType) {
		return nat.Verdict{Reason: packet.ReasonICMPNoFlow}, nil
	}
	sp := nat.Spec{Orig: k, To: k}
	var d *recEntry
	if pe, ok := snap.public[k.Dst]; ok {
		d = pe.rec
		sp.To.Dst = pe.private
	} else {
		if !w.admitPAT(k) {
			return nat.Verdict{Reason: packet.ReasonUnsolicited}, nil
		}
		priv, port, ok := w.s.ct.PAT.Lookup(p.Proto, k.Dst, k.DPort)
		if !ok {
			return nat.Verdict{Reason: packet.ReasonUnsolicited}, nil
		}
		d = snap.private[priv]
		sp.To.Dst, sp.To.DPort, sp.PATIn = priv, port, true
	}
	if d == nil {
		return nat.Verdict{Reason: packet.ReasonNoRoute}, nil
	}
	if !allows(snap, d.ingress, p, k.Src) {
		return nat.Verdict{Reason: packet.ReasonSGIngress}, d
	}
	sp.Owner, sp.Budget = d.slot, d.budget
	return w.s.ct.Create(&sp, seg, now), d
}

// icmpError forwards an ICMP error by the flow of the datagram it embeds
// (RFC 5508): the checksum must verify, the flow must exist, and the flow is
// neither refreshed nor changed.
func (w *worker) icmpError(snap *Snapshot, in *portState, rec *recEntry, f *tap.Frame, now uint32) {
	p := w.p
	frame := f.Bytes()
	if !nat.ICMPChecksumValid(frame, p) || !packet.IPv4(frame[p.Inner.L3:p.End]).ChecksumValid() {
		// RFC 5508 REQ-3: a bad ICMP checksum, or a bad checksum of the
		// embedded IP header, and the error is dropped.
		w.drop(packet.ReasonBadChecksum, rec)
		return
	}
	if p.Inner.L4 == 0 && natPorts(p.Inner.Proto) {
		w.drop(packet.ReasonICMPNoFlow, rec)
		return
	}
	ek := nat.ErrorKey(p)
	v := w.s.ct.Peek(ek, now)
	if !v.Found {
		w.drop(packet.ReasonICMPNoFlow, rec)
		return
	}
	ps, d, r := w.resolve(snap, v.To.Dst)
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
		w.drop(packet.ReasonTTL, rec)
		return
	}
	if ek != v.To {
		nat.RewriteError(frame, p, ek, v.To)
		w.bc.translated++
	}
	if crossing {
		packet.IPv4(frame[p.L3:]).DecTTL()
	}
	w.deliver(snap, ps, d, rec, f, v.To.Dst, true)
}

// resolve finds where a packet to dst goes: a record's port, or the uplink.
func (w *worker) resolve(snap *Snapshot, dst uint32) (*portState, *recEntry, packet.Reason) {
	inside := snap.subnetOf(dst) != nil
	var d *recEntry
	if inside {
		d = snap.private[dst]
	}
	if d == nil && len(snap.routes) != 0 {
		if d = snap.route(dst); d != nil && d.sdc {
			return nil, d, packet.ReasonDestCheck
		}
	}
	if d != nil {
		switch len(d.ports) {
		case 0:
			return nil, d, packet.ReasonNoAttachment
		case 1:
			return d.ports[0], d, packet.ReasonNone
		}
		return nil, d, packet.ReasonNone // picked per flow in forward
	}
	if inside || snap.uplink == nil {
		return nil, nil, packet.ReasonNoRoute
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

// forward sends a tracked packet on: resolve its destination by the
// translated address, apply TTL and MTU rules, rewrite it, and queue it.
func (w *worker) forward(snap *Snapshot, in *portState, from *recEntry, f *tap.Frame, k nat.Tuple, v *nat.Verdict, now uint32) {
	p := w.p
	frame := f.Bytes()
	to := v.To
	ps, d, r := w.resolve(snap, to.Dst)
	if r == packet.ReasonNone && ps == nil {
		ps = pick(d.ports, v.Ref)
	}
	if r != packet.ReasonNone {
		w.drop(r, from)
		w.fragVerdict(snap, in, from, f, &nat.Verdict{Reason: r}, now)
		return
	}
	crossing := from == nil || d == nil || d.subnet != from.subnet
	if crossing && p.TTL <= 1 {
		w.drop(packet.ReasonTTL, from)
		w.icmpErrorReply(snap, in, from, f, packet.ICMPTimeExceeded, packet.ICMPCodeTTLExceeded, 0, now)
		return
	}
	if mtu := w.mtu(snap, d); f.GSO.Type == tap.GSONone && p.End-p.L3 > mtu && packet.IPv4(frame[p.L3:]).DF() {
		w.drop(packet.ReasonFragNeeded, from)
		w.icmpErrorReply(snap, in, from, f, packet.ICMPUnreachable, packet.ICMPCodeFragNeeded, mtu, now)
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
		w.fragVerdict(snap, in, from, f, v, now)
	}
	w.deliver(snap, ps, d, from, f, to.Dst, to != k)
}

func (w *worker) mtu(snap *Snapshot, d *recEntry) int {
	if d != nil {
		return d.subnet.mtu
	}
	return snap.uplinkMTU
}

// deliver sets the frame's MACs for its destination port and queues it.
func (w *worker) deliver(snap *Snapshot, ps *portState, d, from *recEntry, f *tap.Frame, dst uint32, translated bool) {
	if !ps.up.Load() {
		w.drop(packet.ReasonPortDown, d)
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
		mac, ok := w.s.nb.nextHop(snap, dst)
		if !ok {
			w.drop(packet.ReasonNoNeighbor, nil)
			w.resolveNeighbor(snap, dst)
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
			ps.c.drops[packet.ReasonPortDown].Add(uint64(w.idN - n))
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
			q.ps.c.drops[packet.ReasonPortDown].Add(uint64(len(q.frames) - n))
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
func (w *worker) laterFragment(snap *Snapshot, in *portState, rec *recEntry, f *tap.Frame, now uint32) {
	p := w.p
	frame := f.Bytes()
	fk := nat.FragKeyOf(p, frame)
	r, nsrc, ndst, ok := w.s.frags.LookupAt(fk, fragOffset(frame, p), now)
	if !ok {
		if !w.s.frags.Hold(fk, frame, now) {
			w.drop(packet.ReasonFragLimit, rec)
		}
		return
	}
	if r != packet.ReasonNone {
		w.drop(r, rec)
		return
	}
	w.forwardFragment(snap, in, rec, f, nsrc, ndst)
}

func (w *worker) forwardFragment(snap *Snapshot, in *portState, rec *recEntry, f *tap.Frame, nsrc, ndst uint32) {
	p := w.p
	frame := f.Bytes()
	ps, d, r := w.resolve(snap, ndst)
	if r == packet.ReasonNone && ps == nil {
		ps = pick(d.ports, nsrc^ndst)
	}
	if r != packet.ReasonNone {
		w.drop(r, rec)
		return
	}
	crossing := rec == nil || d == nil || d.subnet != rec.subnet
	if crossing && p.TTL <= 1 {
		w.drop(packet.ReasonTTL, rec)
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
	w.deliver(snap, ps, d, rec, f, ndst, k != to)
}

// fragOffset returns where a fragment's data starts in its datagram's IP
// payload, in bytes.
func fragOffset(frame []byte, p *packet.Parsed) int {
	return int(packet.IPv4(frame[p.L3:]).FragField()&0x1fff) * 8
}

// fragVerdict records a first fragment's verdict for the rest of its
// datagram and releases the fragments held for it. It is a no-op for
// packets that are not first fragments.
func (w *worker) fragVerdict(snap *Snapshot, in *portState, rec *recEntry, f *tap.Frame, v *nat.Verdict, now uint32) {
	p := w.p
	if p.Frag != packet.FirstFragment {
		return
	}
	frame := f.Bytes()
	fk := nat.FragKeyOf(p, frame)
	firstEnd := p.End - p.L4 // the first fragment's data, from the start of the IP payload
	w.s.frags.LearnFirst(fk, v.Reason, v.To.Src, v.To.Dst, firstEnd, now)
	saved := w.p
	w.p = &w.scratch
	w.s.frags.Drain(fk, func(held []byte) {
		if v.Reason != packet.ReasonNone || w.nextra == len(w.extra) {
			r := v.Reason
			if r == packet.ReasonNone {
				r = packet.ReasonFragLimit
			}
			w.drop(r, rec)
			return
		}
		x := &w.extra[w.nextra]
		w.nextra++
		x.Off = tap.Headroom
		x.Len = copy(x.Buf[x.Off:], held)
		x.GSO = tap.GSO{}
		if packet.Parse(x.Bytes(), w.p) != packet.ReasonNone {
			w.drop(packet.ReasonBadIPHeader, rec)
			return
		}
		if fragOffset(x.Bytes(), w.p) < firstEnd {
			w.drop(packet.ReasonFragOverlap, rec)
			return
		}
		w.forwardFragment(snap, in, rec, x, v.To.Src, v.To.Dst)
	})
	w.p = saved
}
