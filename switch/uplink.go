package vswitch

import (
	"sync"
	"sync/atomic"

	"roam/internal/packet"
	"roam/tap"
)

// neighbors is the uplink's neighbor table: the MACs of on-link addresses
// (learned from their ARP and IPv4 frames, or resolved by roam's own ARP
// requests) and of the last router seen sending from off-link addresses.
// Readers on the hot path load an immutable map; the rare writer copies it.
type neighbors struct {
	table  atomic.Pointer[map[uint32]packet.MAC]
	router atomic.Uint64 // MAC (+1<<48 when set) of the last off-link sender's router
	mu     sync.Mutex    // serializes writers of table, and asked
	asked  map[uint32]uint32
}

func macToU64(m packet.MAC) uint64 {
	v := uint64(1) << 48
	for i := 0; i < 6; i++ {
		v |= uint64(m[i]) << (8 * (5 - i))
	}
	return v
}

func u64ToMAC(v uint64) packet.MAC {
	var m packet.MAC
	for i := 5; i >= 0; i-- {
		m[i] = byte(v)
		v >>= 8
	}
	return m
}

func (n *neighbors) lookup(a uint32) (packet.MAC, bool) {
	t := n.table.Load()
	if t == nil {
		return packet.MAC{}, false
	}
	m, ok := (*t)[a]
	return m, ok
}

// set records that a is at m (copying the table only when that changes).
func (n *neighbors) set(a uint32, m packet.MAC) {
	if old, ok := n.lookup(a); ok && old == m {
		return
	}
	if m.IsMulticast() || a == 0 {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	old := n.table.Load()
	t := make(map[uint32]packet.MAC, 8)
	if old != nil {
		for k, v := range *old {
			t[k] = v
		}
	}
	t[a] = m
	n.table.Store(&t)
}

// learnFrame learns from an IPv4 frame received on the uplink.
func (n *neighbors) learnFrame(snap *Snapshot, p *packet.Parsed, src packet.MAC) {
	if p.EthType != packet.EtherTypeIPv4 || src.IsMulticast() {
		return
	}
	switch {
	case snap.onLink(p.Src) || (snap.upstream != 0 && p.Src == snap.upstream):
		n.set(p.Src, src)
	default:
		if v := macToU64(src); n.router.Load() != v {
			n.router.Store(v)
		}
	}
}

// nextHop returns the MAC to send a frame for dst to.
func (n *neighbors) nextHop(snap *Snapshot, dst uint32) (packet.MAC, bool) {
	if snap.upMACSet {
		return snap.upMAC, true
	}
	if snap.onLink(dst) {
		return n.lookup(dst)
	}
	if snap.upstream != 0 {
		return n.lookup(snap.upstream)
	}
	if v := n.router.Load(); v != 0 {
		return u64ToMAC(v), true
	}
	return packet.MAC{}, false
}

// target returns the address to resolve for dst: itself on-link, else the
// upstream; 0 when there is nothing to ask for.
func (snap *Snapshot) target(dst uint32) uint32 {
	if snap.onLink(dst) {
		return dst
	}
	return snap.upstream
}

// shouldAsk rate-limits ARP requests to one per address per second.
func (n *neighbors) shouldAsk(a, now uint32) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.asked == nil {
		n.asked = map[uint32]uint32{}
	}
	if last, ok := n.asked[a]; ok && last == now {
		return false
	}
	if len(n.asked) > 4096 {
		clear(n.asked)
	}
	n.asked[a] = now
	return true
}

// resolveNeighbor sends an ARP request for the next hop towards dst out of
// the uplink, from the gateway's public address.
func (w *worker) resolveNeighbor(snap *Snapshot, dst uint32) {
	tgt := snap.target(dst)
	if tgt == 0 || snap.uplink == nil || w.nextra == len(w.extra) {
		return
	}
	if !w.s.nb.shouldAsk(tgt, uint32(w.s.now().Unix())) {
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
		if _, ok := s.nb.lookup(snap.upstream); !ok && s.nb.shouldAsk(snap.upstream, uint32(s.now().Unix())) {
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
