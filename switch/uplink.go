package vswitch

import (
	"net"
	"sync"
	"sync/atomic"

	"roam/internal/packet"
	"roam/tap"
)

// The uplink's neighbour table follows the kernel's (NUD): an address is
// resolved only by an answer to roam's own ARP request while that request
// is outstanding (incomplete -> reachable); a gratuitous ARP only moves an
// address already resolved, at most once per lockTime (the kernel's
// locktime), and never creates one (Linux's arp_accept=0); IPv4 frames and
// unsolicited replies teach nothing. A resolved entry is asked for again
// once it is reachableTime old, while it is still used; if that goes
// unanswered for probeTime, the entry is dropped.
const (
	askTTL        = 3    // s: how long roam's request stays outstanding after it is sent
	maxPending    = 1024 // outstanding requests at most
	reachableTime = 30   // s after an answer before roam asks again (kernel: base_reachable_time)
	probeTime     = 5    // s of unanswered requests before a stale entry is dropped
	lockTime      = 1    // s: a gratuitous ARP moves an address at most this often (kernel: locktime)
	maxNeighbors  = 4096 // resolved addresses at most
	gcAfter       = 60   // s without an answer after which an entry may be collected when the table is copied

	// While roam's request for an address is outstanding, frames for it
	// wait (the kernel's arp_queue: unres_qlen / unres_qlen_bytes) and go
	// out when the answer comes; those that do not fit, and those still
	// waiting when the request expires, are dropped (neighbor_unresolved).
	holdPerAddr = 3         // frames waiting per address
	holdBytes   = 256 << 10 // bytes waiting in all
)

// heldFrame is a copy of a frame waiting for its next hop's MAC, with
// tap.Headroom in front of it.
type heldFrame struct {
	buf []byte
	gso tap.GSO
}

// neighbor is a resolved address. mac and updated never change (a move is
// a new neighbor); confirmed is the last answer to roam's own request.
type neighbor struct {
	mac       packet.MAC
	updated   uint32 // when mac was set (Unix s)
	confirmed atomic.Uint32
}

// pending is roam's ARP request for an address: first and last sent in the
// current round of asking, and whether it has been answered.
type pending struct {
	first, last uint32
	answered    bool
	held        []heldFrame
}

// neighbors is the uplink's neighbour table: the MACs of on-link addresses
// (and of the upstream) that answered roam's ARP requests. Readers on the
// hot path load an immutable map; the rare writer copies it.
type neighbors struct {
	table   atomic.Pointer[map[uint32]*neighbor]
	mu      sync.Mutex // serializes writers of table, and pending
	pending map[uint32]pending
	swept   uint32 // when pending was last swept for expired requests
	held    int    // bytes of frames waiting in pending

	refused    atomic.Uint64 // refusals since the last log line
	refusedLog atomic.Uint32 // when that line was logged (Unix s)
}

func (n *neighbors) lookup(a uint32) *neighbor {
	t := n.table.Load()
	if t == nil {
		return nil
	}
	return (*t)[a]
}

// store replaces the table with a copy where a is e (or absent when e is
// nil), leaving out entries unanswered for gcAfter when the table is large.
// The caller holds mu.
func (n *neighbors) store(a uint32, e *neighbor, now uint32) {
	old := n.table.Load()
	size := 1
	if old != nil {
		size += len(*old)
	}
	t := make(map[uint32]*neighbor, size)
	if old != nil {
		for k, v := range *old {
			if len(*old) >= maxNeighbors/4 && int32(now-v.confirmed.Load()) >= gcAfter {
				continue
			}
			t[k] = v
		}
	}
	if e != nil {
		t[a] = e
	} else {
		delete(t, a)
	}
	n.table.Store(&t)
}

// nextHop returns the MAC to send a frame for dst to, as the table has it.
func (n *neighbors) nextHop(snap *Snapshot, dst uint32) (packet.MAC, bool) {
	if snap.upMACSet {
		return snap.upMAC, true
	}
	if e := n.lookup(snap.target(dst)); e != nil {
		return e.mac, true
	}
	return packet.MAC{}, false
}

// target returns the address to resolve for dst: itself on-link, else the
// upstream; 0 when there is nothing to ask for (no upstream: roam learns
// no router from the traffic it sees).
func (snap *Snapshot) target(dst uint32) uint32 {
	if snap.onLink(dst) {
		return dst
	}
	return snap.upstream
}

// ask reports whether roam may send an ARP request for a now (one per
// address per second, maxPending outstanding at most) and, when it may,
// records the request as outstanding. Frames that waited for a request
// that expired are dropped; lost says how many.
func (n *neighbors) ask(a, now uint32) (ok bool, lost int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	ok, lost = n.askLocked(a, now)
	return ok, lost
}

func (n *neighbors) askLocked(a, now uint32) (bool, int) {
	lost := 0
	if n.pending == nil {
		n.pending = make(map[uint32]pending, maxPending)
	}
	p, ok := n.pending[a]
	switch {
	case ok && !p.answered && now-p.last <= askTTL:
		if p.last == now {
			return false, 0
		}
		p.last = now // the same round of asking
	case ok && p.last == now:
		return false, 0
	default:
		if !ok && len(n.pending) >= maxPending {
			if n.swept == now {
				return false, 0
			}
			n.swept = now
			for k, q := range n.pending {
				if now-q.last > askTTL || q.answered && q.last != now {
					lost += n.release(&q)
					delete(n.pending, k)
				}
			}
			if len(n.pending) >= maxPending {
				return false, lost
			}
		}
		lost += n.release(&p) // what waited for the last round's answer
		p = pending{first: now, last: now}
	}
	n.pending[a] = p
	return true, lost
}

// release forgets the frames waiting in p and returns how many there were.
// The caller holds mu.
func (n *neighbors) release(p *pending) int {
	k := len(p.held)
	for _, h := range p.held {
		n.held -= len(h.buf)
	}
	p.held = nil
	return k
}

// hold keeps a copy of f until roam's outstanding request for a is
// answered; it reports false (and keeps nothing) when no request is
// outstanding or the queue of a, or of all, is full.
func (n *neighbors) hold(a uint32, f *tap.Frame, now uint32) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	p, ok := n.pending[a]
	size := tap.Headroom + f.Len
	if !ok || p.answered || now-p.last > askTTL || len(p.held) >= holdPerAddr || n.held+size > holdBytes {
		return false
	}
	buf := make([]byte, size)
	copy(buf[tap.Headroom:], f.Bytes())
	p.held = append(p.held, heldFrame{buf: buf, gso: f.GSO})
	n.held += size
	n.pending[a] = p
	return true
}

// answer resolves a to mac if roam's request for a is outstanding and not
// answered yet (the first answer wins); it reports whether it did, and
// hands back the frames that waited for the answer.
func (n *neighbors) answer(a uint32, mac packet.MAC, now uint32) (bool, []heldFrame) {
	n.mu.Lock()
	defer n.mu.Unlock()
	p, ok := n.pending[a]
	if !ok || p.answered || now-p.last > askTTL {
		return false, nil
	}
	e := n.lookup(a)
	if e == nil && n.size() >= maxNeighbors {
		return false, nil
	}
	held := p.held
	n.release(&p)
	p.answered = true
	n.pending[a] = p
	if e != nil && e.mac == mac {
		e.confirmed.Store(now)
		return true, held
	}
	e = &neighbor{mac: mac, updated: now}
	e.confirmed.Store(now)
	n.store(a, e, now)
	return true, held
}

func (n *neighbors) size() int {
	if t := n.table.Load(); t != nil {
		return len(*t)
	}
	return 0
}

// move moves the resolved address a to mac on a gratuitous ARP, unless it
// moved less than lockTime ago; it reports the old MAC and whether it did.
func (n *neighbors) move(a uint32, mac packet.MAC, now uint32) (packet.MAC, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	e := n.lookup(a)
	if e == nil || now-e.updated < lockTime {
		return packet.MAC{}, false
	}
	m := &neighbor{mac: mac, updated: now}
	m.confirmed.Store(e.confirmed.Load()) // a move does not extend the entry's life
	n.store(a, m, now)
	return e.mac, true
}

// failed drops the entry e of a if roam has asked for it for probeTime
// without an answer; it reports whether it did.
func (n *neighbors) failed(a uint32, e *neighbor, now uint32) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	p, ok := n.pending[a]
	if !ok || p.answered || int32(now-p.first) < probeTime || n.lookup(a) != e {
		return false
	}
	// A resolved entry holds no frames (they go to its MAC meanwhile).
	delete(n.pending, a)
	n.store(a, nil, now)
	return true
}

// nextHop returns the MAC to send a frame for dst to. An entry older than
// reachableTime is still used while roam asks for it again.
func (w *worker) nextHop(snap *Snapshot, dst uint32) (packet.MAC, bool) {
	if snap.upMACSet {
		return snap.upMAC, true
	}
	tgt := snap.target(dst)
	e := w.s.nb.lookup(tgt)
	if e == nil {
		return packet.MAC{}, false
	}
	if int32(w.b.now-e.confirmed.Load()) >= reachableTime {
		if w.s.nb.failed(tgt, e, w.b.now) {
			w.s.log.Warn("uplink neighbour did not answer: entry dropped", "ip", packet.Addr(tgt), "mac", macString(e.mac))
			return packet.MAC{}, false
		}
		w.resolveNeighbor(snap, dst)
	}
	return e.mac, true
}

// learnARP applies what an ARP from the uplink may teach the neighbour
// table (see the constants above). It reports whether the frame goes on to
// the ARP responder; a refused frame is counted (arp_unsolicited) and
// logged, rate-limited, unless it is a request roam answers anyway.
func (w *worker) learnARP(snap *Snapshot, a packet.ARP) bool {
	sip, tip, mac := a.SenderIP(), a.TargetIP(), a.SenderMAC()
	if sip == 0 || mac.IsMulticast() || !snap.onLink(sip) && sip != snap.upstream {
		return true // not an address roam sends to: nothing to learn
	}
	nb := &w.s.nb
	e := nb.lookup(sip)
	op := a.Op()
	switch {
	case sip == tip: // gratuitous
		if e != nil && e.mac == mac {
			return true
		}
		if e == nil {
			return w.refuseARP(snap, a, "gratuitous ARP for an address roam has not resolved")
		}
		old, ok := nb.move(sip, mac, w.b.now)
		if !ok {
			return w.refuseARP(snap, a, "gratuitous ARP within a second of the last move")
		}
		w.s.log.Warn("uplink neighbour moved by gratuitous ARP", "ip", packet.Addr(sip), "from", macString(old), "to", macString(mac))
		return true
	case op == packet.ARPReply || op == packet.ARPRequest && snap.isPublic(tip):
		if snap.isPublic(tip) {
			if ok, held := nb.answer(sip, mac, w.b.now); ok {
				w.sendHeld(snap, mac, held)
				return true
			}
		}
		if op == packet.ARPRequest || e != nil && e.mac == mac {
			return true // teaches nothing, and changes nothing
		}
		return w.refuseARP(snap, a, "ARP reply to no outstanding request of roam")
	}
	return true
}

// refuseARP counts and logs an ARP the neighbour table refused (one line a
// second at most, with the refusals since the previous one); it reports
// whether the frame still goes to the responder (a request roam answers).
func (w *worker) refuseARP(snap *Snapshot, a packet.ARP, why string) bool {
	nb := &w.s.nb
	nb.refused.Add(1)
	if last := nb.refusedLog.Load(); last != w.b.now && nb.refusedLog.CompareAndSwap(last, w.b.now) {
		w.s.log.Warn("uplink ARP refused: roam learns neighbours only from answers to its own requests",
			"why", why, "sender_ip", packet.Addr(a.SenderIP()), "sender_mac", macString(a.SenderMAC()),
			"refused", nb.refused.Swap(0), "counter", ReasonARPUnasked.String())
	}
	if a.Op() == packet.ARPRequest && snap.isPublic(a.TargetIP()) {
		return true
	}
	w.drop(ReasonARPUnasked, nil)
	return false
}

func macString(m packet.MAC) string { return net.HardwareAddr(m[:]).String() }

// sendHeld sends the frames that waited for a next hop's answer to its MAC.
func (w *worker) sendHeld(snap *Snapshot, mac packet.MAC, held []heldFrame) {
	for _, h := range held {
		if snap.uplink == nil || !snap.uplink.up.Load() {
			w.drop(ReasonNoNeighbor, nil)
			continue
		}
		f := tap.Frame{Buf: h.buf, Off: tap.Headroom, Len: len(h.buf) - tap.Headroom, GSO: h.gso}
		eth := packet.Ethernet(f.Bytes())
		eth.SetDst(mac)
		eth.SetSrc(snap.gwMAC)
		w.bc.forwarded++
		w.enqueueQueued(snap.uplink, &f)
	}
}

// unresolved holds f (for dst, out of the uplink) until its next hop
// answers roam's ARP request, which it sends if it may; f is dropped when
// it cannot wait.
func (w *worker) unresolved(snap *Snapshot, dst uint32, f *tap.Frame) {
	w.resolveNeighbor(snap, dst)
	if tgt := snap.target(dst); tgt == 0 || !w.s.nb.hold(tgt, f, w.b.now) {
		w.drop(ReasonNoNeighbor, nil)
	}
}

// resolveNeighbor sends an ARP request for the next hop towards dst out of
// the uplink, from the gateway's public address.
func (w *worker) resolveNeighbor(snap *Snapshot, dst uint32) {
	tgt := snap.target(dst)
	if tgt == 0 || snap.uplink == nil || w.nextra == len(w.extra) {
		return
	}
	ok, lost := w.s.nb.ask(tgt, w.b.now)
	for range lost {
		w.drop(ReasonNoNeighbor, nil)
	}
	if !ok {
		return
	}
	src := snap.publicIP
	if src == 0 {
		for a := range snap.public.all() {
			src = a
			break
		}
	}
	x := &w.extra[w.nextra]
	w.nextra++
	x.Off = tap.Headroom
	x.Len = packet.PutARP(x.Buf[x.Off:], packet.ARPRequest, snap.gwMAC, src, packet.MAC{}, tgt, packet.Broadcast)
	x.GSO = tap.GSO{}
	w.enqueue(snap.uplink, x)
}

// announce sends a gratuitous ARP out of the uplink for every public
// address of snap that prev did not have, so that the upstream learns a
// newly associated (or moved) public IP at once. It also asks for the
// upstream's MAC if it is not known yet.
func (s *Switch) announce(prev, snap *Snapshot) {
	if snap.uplink == nil {
		return
	}
	if snap.upstream == 0 && !snap.upMACSet && (prev == nil || prev.upstream != 0 || prev.upMACSet || prev.uplink != snap.uplink) {
		s.log.Warn("the uplink has no upstream: destinations outside the public CIDR are unreachable (set --upstream to the next hop's IP or MAC)")
	}
	var addrs []uint32
	for _, a := range snap.publicAddrs() {
		if prev == nil || prev.uplink != snap.uplink || !prev.isPublic(a) {
			addrs = append(addrs, a)
		}
	}
	var frames []tap.Frame
	for _, a := range addrs {
		f := tap.Frame{Buf: make([]byte, tap.Headroom+64), Off: tap.Headroom}
		f.Len = packet.PutARP(f.Buf[f.Off:], packet.ARPRequest, snap.gwMAC, a, packet.MAC{}, a, packet.Broadcast)
		frames = append(frames, f)
	}
	if snap.upstream != 0 && !snap.upMACSet {
		var ok bool
		if s.nb.lookup(snap.upstream) == nil {
			var lost int
			ok, lost = s.nb.ask(snap.upstream, uint32(s.now().Unix()))
			s.c.drops[ReasonNoNeighbor].Add(uint64(lost))
		}
		if ok {
			src := snap.publicIP
			if src == 0 && len(addrs) > 0 {
				src = addrs[0]
			}
			f := tap.Frame{Buf: make([]byte, tap.Headroom+64), Off: tap.Headroom}
			f.Len = packet.PutARP(f.Buf[f.Off:], packet.ARPRequest, snap.gwMAC, src, packet.MAC{}, snap.upstream, packet.Broadcast)
			frames = append(frames, f)
		}
	}
	if len(frames) == 0 {
		return
	}
	ps := snap.uplink
	ps.wmu.Lock()
	ps.p.Write(frames)
	ps.wmu.Unlock()
}
