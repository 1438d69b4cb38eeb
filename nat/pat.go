package nat

import (
	"sync"
	"time"

	"roam/internal/packet"
)

// PATOptions configure port allocation for SNAT/PAT.
type PATOptions struct {
	// PortMin and PortMax bound the ports given to source ports ≥ 1024
	// (default 1024..65535). Source ports below 1024 map into 1..1023
	// (RFC 4787 REQ-3: port range preserved).
	PortMin, PortMax uint16
	// Hold is how long a freed port is kept from reuse (RFC 6888 REQ-8:
	// default 120 s).
	Hold time.Duration
	// Search bounds the candidates tried for a new mapping (default 512).
	Search int
	// TrackPeers keeps, for each mapping, the remote addresses its flows
	// go to, for address-dependent filtering (PATPeerSeen). Off, it costs
	// nothing. FilterAddress turns it on.
	TrackPeers bool
	// Filtering is how an inbound first packet to a mapping is admitted
	// (Table.InboundPAT, Table.HairpinPAT).
	Filtering Filtering
}

// Filtering is PAT's filtering behaviour (RFC 4787 REQ-8): which inbound
// first packets to a mapping, from a remote endpoint no flow of the
// mapping has, are let through.
type Filtering uint8

// Filtering behaviours.
const (
	// FilterAddressPort (address-and-port-dependent, the default, as Linux
	// conntrack) admits none: only replies of existing flows come in.
	FilterAddressPort Filtering = iota
	// FilterAddress (address-dependent) admits a packet from a remote
	// address that some flow of the mapping has, whatever its port.
	FilterAddress
	// FilterEndpointIndependent admits any packet to a live mapping.
	FilterEndpointIndependent
)

// HasPorts reports whether proto is one PAT translates (TCP and UDP ports,
// ICMP query identifiers).
func HasPorts(proto uint8) bool {
	return proto == packet.ProtoTCP || proto == packet.ProtoUDP || proto == packet.ProtoICMP
}

// OutboundPAT sets sp to leave by PAT through the public address pub: the
// table picks the port when Create makes the flow. It returns
// ReasonNoPublicIP when pub is 0 and ReasonUnsupportedL4 for a protocol PAT
// cannot translate; sp is unchanged then.
func (t *Table) OutboundPAT(sp *Spec, pub uint32) packet.Reason {
	if pub == 0 {
		return ReasonNoPublicIP
	}
	if !HasPorts(sp.Orig.Proto) {
		return ReasonUnsupportedL4
	}
	sp.To.Src, sp.PATOut = pub, true
	return packet.ReasonNone
}

// InboundPAT decides a first packet k from outside to a PAT address, for
// which no flow exists: when the table's filtering admits it (always with
// FilterEndpointIndependent; with FilterAddress when a flow of the mapping
// on k.Dst:k.DPort has k's remote address; never with FilterAddressPort),
// it sets sp to go to the mapping's private endpoint and reports true.
func (t *Table) InboundPAT(sp *Spec, k Tuple) bool {
	switch {
	case !HasPorts(k.Proto):
		return false
	case t.pat.o.Filtering == FilterEndpointIndependent:
	case t.pat.o.Filtering == FilterAddress:
		if !t.pat.peerSeen(k.Proto, k.Dst, k.DPort, k.Src) {
			return false
		}
	default:
		return false
	}
	return t.inbound(sp, k)
}

// HairpinPAT decides a first packet k from inside to a PAT address of the
// gateway (hairpinning, RFC 4787 REQ-9): only endpoint-independent
// filtering admits it; then sp goes to the mapping's private endpoint, its
// source still to be translated, and HairpinPAT reports true.
func (t *Table) HairpinPAT(sp *Spec, k Tuple) bool {
	if t.pat.o.Filtering != FilterEndpointIndependent || !HasPorts(k.Proto) {
		return false
	}
	return t.inbound(sp, k)
}

func (t *Table) inbound(sp *Spec, k Tuple) bool {
	priv, port, ok := t.pat.lookup(k.Proto, k.Dst, k.DPort)
	if !ok {
		return false
	}
	sp.To.Dst, sp.To.DPort, sp.PATIn = priv, port, true
	return true
}

// PATMapping returns the public port mapped for priv:privPort on pub, if
// any.
func (t *Table) PATMapping(proto uint8, pub uint32, priv uint32, privPort uint16) (uint16, bool) {
	return t.pat.mapping(proto, pub, priv, privPort)
}

// PATInUse returns the number of PAT ports in use on pub for proto.
func (t *Table) PATInUse(pub uint32, proto uint8) int {
	return t.pat.inUse(pub, proto)
}

// patAlloc hands out public ports (and ICMP identifiers) with endpoint-
// independent mapping (RFC 4787 REQ-1, RFC 5382 REQ-1): one private
// endpoint keeps one public port for all its flows while any of them
// lives. It tries to preserve the port first, then searches a bounded
// sequence of candidates of the same parity. Each public address and
// protocol has its own pool and lock; the data path only calls PAT when a
// flow is created or removed.
type patAlloc struct {
	o     PATOptions
	hold  uint32
	mu    sync.RWMutex // guards pools (the map), not the pools' contents
	pools map[poolKey]*pool
}

type poolKey struct {
	pub   uint32
	proto uint8
}

type endpoint struct {
	addr uint32
	port uint16
}

type portEntry struct {
	priv endpoint
	refs uint32
	// shared is set when a reference is taken on a mapping that already
	// had one: the mapping may then have carried traffic even if the
	// reference that created it is cancelled.
	shared bool
}

type pool struct {
	mu     sync.Mutex
	ports  [65536]portEntry
	freed  [65536]uint32 // when each port was last freed (Unix s), 0: never
	fwd    map[endpoint]uint16
	inUse  int
	nextHi uint32 // search cursor
	// peers counts, per public port and remote address, the flows of the
	// port's mapping with that remote (PATOptions.TrackPeers).
	peers map[peerKey]uint32
}

type peerKey struct {
	port   uint16
	remote uint32
}

func newPAT(o PATOptions) *patAlloc {
	if o.Filtering == FilterAddress {
		o.TrackPeers = true
	}
	if o.PortMin == 0 {
		o.PortMin = 1024
	}
	if o.PortMax == 0 || o.PortMax < o.PortMin {
		o.PortMax = 65535
	}
	if o.Hold == 0 {
		o.Hold = 120 * time.Second
	}
	if o.Search <= 0 {
		o.Search = 512
	}
	return &patAlloc{o: o, hold: uint32(o.Hold / time.Second), pools: make(map[poolKey]*pool)}
}

func (a *patAlloc) pool(pub uint32, proto uint8, create bool) *pool {
	k := poolKey{pub, proto}
	a.mu.RLock()
	p := a.pools[k]
	a.mu.RUnlock()
	if p != nil || !create {
		return p
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if p = a.pools[k]; p == nil {
		p = &pool{fwd: make(map[endpoint]uint16)}
		a.pools[k] = p
	}
	return p
}

// acquire returns the public port for the private endpoint priv:port on
// pub, taking a reference on the mapping (creating it if needed).
func (a *patAlloc) acquire(pub uint32, proto uint8, priv uint32, port uint16, now uint32) (uint16, packet.Reason) {
	p := a.pool(pub, proto, true)
	p.mu.Lock()
	defer p.mu.Unlock()
	ep := endpoint{priv, port}
	if pp, ok := p.fwd[ep]; ok {
		p.ports[pp].refs++
		p.ports[pp].shared = true
		return pp, packet.ReasonNone
	}
	lo, hi := uint32(a.o.PortMin), uint32(a.o.PortMax)
	if port < 1024 {
		lo, hi = 1, 1023
	}
	free := func(c uint32) bool {
		if p.ports[c].refs != 0 {
			return false
		}
		if p.freed[c] == 0 {
			return true
		}
		// Held for a.hold after it was freed. A clock a little behind
		// the one that freed it (another worker's batch) still sees it
		// held; one far behind (a replay that starts over) does not.
		d := int64(now) - int64(p.freed[c])
		return d >= int64(a.hold) || d < -int64(a.hold)
	}
	take := func(c uint32) (uint16, packet.Reason) {
		p.ports[c] = portEntry{priv: ep, refs: 1}
		p.fwd[ep] = uint16(c)
		p.inUse++
		return uint16(c), packet.ReasonNone
	}
	// Port preservation first.
	if c := uint32(port); c >= lo && c <= hi && free(c) {
		return take(c)
	}
	// Then a bounded search of the same-parity candidates. Candidates
	// are numbered within the parity class, so the search never leaves
	// it, whatever the size of the range. They are visited with a stride
	// coprime to their number, from a start that moves on: port
	// preservation fills long runs of consecutive ports (every guest
	// picks from the same ephemeral range), and a walk of consecutive
	// candidates that starts in such a run finds nothing within its
	// bound while most of the range is free.
	first := lo + (lo^uint32(port))&1 // lowest port of the range with port's parity
	if first > hi {
		return 0, ReasonNoPort4NAT
	}
	n := (hi-first)/2 + 1 // ports of that parity in the range
	stride := coprimeStride(n)
	p.nextHi = p.nextHi*1664525 + 1013904223 // LCG: a new start each search
	start := (uint32(port)*2654435761 ^ p.nextHi) % n
	for i := uint32(0); i < uint32(a.o.Search) && i < n; i++ {
		c := first + 2*uint32((uint64(start)+uint64(i)*uint64(stride))%uint64(n))
		if free(c) {
			return take(c)
		}
	}
	return 0, ReasonNoPort4NAT
}

// coprimeStride returns a step near n/φ that is coprime to n, so that
// stepping by it modulo n visits every candidate once before repeating.
func coprimeStride(n uint32) uint32 {
	if n <= 2 {
		return 1
	}
	s := uint32(uint64(n)*618034/1000000) | 1
	for gcd(s, n) != 1 {
		s += 2
	}
	return s % n
}

func gcd(a, b uint32) uint32 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// ref takes one more reference on the mapping that owns pub:port, for an
// inbound flow admitted by endpoint-independent filtering towards the
// private endpoint priv:privPort. It returns false when no mapping owns the
// port, or when the port now belongs to another endpoint (the caller's
// Lookup raced with the mapping's end and the port's reuse).
func (a *patAlloc) ref(proto uint8, pub uint32, port uint16, priv uint32, privPort uint16) bool {
	p := a.pool(pub, proto, false)
	if p == nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	e := &p.ports[port]
	if e.refs == 0 || e.priv != (endpoint{priv, privPort}) {
		return false
	}
	e.refs++
	e.shared = true
	return true
}

// release drops one reference on the mapping that owns pub:port; the last
// one frees the port at time now.
func (a *patAlloc) release(pub uint32, proto uint8, port uint16, now uint32) {
	p := a.pool(pub, proto, false)
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.releaseLocked(port, now)
}

func (p *pool) releaseLocked(port uint16, now uint32) {
	e := &p.ports[port]
	if e.refs == 0 {
		return
	}
	e.refs--
	if e.refs == 0 {
		delete(p.fwd, e.priv)
		*e = portEntry{}
		if now == 0 {
			now = 1
		}
		p.freed[port] = now
		p.inUse--
	}
}

// cancel gives back a reference taken by acquire or ref for a flow that
// was then not created. Unlike release, when the reference was the only
// one the mapping ever had, the port is not held from reuse: no flow used
// it, so no peer can hold state for it (RFC 6888 REQ-8 guards mappings
// that existed). Otherwise it is released at now, as by release.
func (a *patAlloc) cancel(pub uint32, proto uint8, port uint16, now uint32) {
	p := a.pool(pub, proto, false)
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	e := &p.ports[port]
	if e.refs == 0 {
		return
	}
	if e.refs == 1 && !e.shared {
		delete(p.fwd, e.priv)
		*e = portEntry{}
		p.inUse--
		return
	}
	p.releaseLocked(port, now)
}

// lookup returns the private endpoint that owns pub:port, if any.
func (a *patAlloc) lookup(proto uint8, pub uint32, port uint16) (priv uint32, privPort uint16, ok bool) {
	p := a.pool(pub, proto, false)
	if p == nil {
		return 0, 0, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	e := p.ports[port]
	return e.priv.addr, e.priv.port, e.refs > 0
}

// mapping returns the public port mapped for priv:privPort on pub, if any.
func (a *patAlloc) mapping(proto uint8, pub uint32, priv uint32, privPort uint16) (uint16, bool) {
	p := a.pool(pub, proto, false)
	if p == nil {
		return 0, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	pp, ok := p.fwd[endpoint{priv, privPort}]
	return pp, ok
}

// peerAdd counts one more flow of the mapping on pub:port with remote.
func (a *patAlloc) peerAdd(pub uint32, proto uint8, port uint16, remote uint32) {
	if !a.o.TrackPeers {
		return
	}
	p := a.pool(pub, proto, true)
	p.mu.Lock()
	if p.peers == nil {
		p.peers = make(map[peerKey]uint32)
	}
	p.peers[peerKey{port, remote}]++
	p.mu.Unlock()
}

// peerDel counts one flow less of the mapping on pub:port with remote.
func (a *patAlloc) peerDel(pub uint32, proto uint8, port uint16, remote uint32) {
	if !a.o.TrackPeers {
		return
	}
	p := a.pool(pub, proto, false)
	if p == nil {
		return
	}
	p.mu.Lock()
	k := peerKey{port, remote}
	if n := p.peers[k]; n > 1 {
		p.peers[k] = n - 1
	} else {
		delete(p.peers, k)
	}
	p.mu.Unlock()
}

// peerSeen reports whether the mapping on pub:port has a flow with the
// remote address remote (any remote port): address-dependent filtering
// (RFC 4787 REQ-8) admits an inbound packet from remote then. It is
// always false without PATOptions.TrackPeers.
func (a *patAlloc) peerSeen(proto uint8, pub uint32, port uint16, remote uint32) bool {
	p := a.pool(pub, proto, false)
	if p == nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.peers[peerKey{port, remote}] > 0
}

// inUse returns the number of ports in use on pub for proto.
func (a *patAlloc) inUse(pub uint32, proto uint8) int {
	p := a.pool(pub, proto, false)
	if p == nil {
		return 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.inUse
}
