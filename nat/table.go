package nat

import (
	"math/bits"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"roam/internal/packet"
)

// Dir is the direction of a packet within its flow.
type Dir uint8

// Directions.
const (
	Orig  Dir = 0 // as the flow's first packet went
	Reply Dir = 1 // the other way
)

// Table geometry. A flow lives in the arena of the shard its original tuple
// hashes to (its owner shard); each of its two tuples has an entry in the
// index of the shard that tuple hashes to.
const (
	shardBits     = 6
	numShards     = 1 << shardBits
	maxChunkBits  = 12 // arenas grow by chunks of up to 4096 flows
	minChunkBits  = 6  // and of at least 64
	refShardShift = 25
	refIndexMask  = 1<<refShardShift - 1
	minSlots      = 64
)

// Flow flags.
const (
	flagReplied  uint8 = 1 << iota // a packet was seen in the reply direction
	flagAssured                    // TCP reached ESTABLISHED, or UDP saw both ways
	flagPATOut                     // holds a PAT mapping: t[Orig].Src:SPort -> t[Reply].Dst:DPort
	flagPATIn                      // holds a PAT mapping: t[Reply].Src:SPort -> t[Orig].Dst:DPort
	flagFinOrig                    // FIN seen from the originator
	flagFinReply                   // FIN seen from the responder
	flagWinOrig                    // window tracking has data from the originator
	flagWinReply                   // window tracking has data from the responder
)

// flow is one tracked connection: 60 bytes, no pointers. While a flow is
// free, owner links the arena's free list and expires is 0.
type flow struct {
	t       [2]Tuple  // [Orig] as first seen, [Reply] as expected back
	expires uint32    // Unix seconds; 0 means free
	owner   uint32    // the owner slot charged for the flow (0: none)
	state   uint8     // TCP state
	flags   uint8     // flag*
	wscale  uint8     // window scale: low nibble orig, high nibble reply
	_       uint8     //
	end     [2]uint32 // highest sequence number sent + 1, per direction
	maxwin  [2]uint32 // largest scaled window advertised, per direction
}

// shard is a lock, an open-addressing index (linear probing, backward-shift
// deletion) and an arena of flows. Lock order: shards in ascending index;
// the PAT allocator's lock may be taken while shard locks are held, never
// the other way round.
type shard struct {
	mu     sync.Mutex
	id     uint32
	slots  []uint64                 // tag<<32 | dir<<31 | ref; 0 is empty
	pslots atomic.Pointer[[]uint64] // slots, for lock-free prefetching
	used   int
	chunks [][]flow               // fixed length; entries set once under mu
	cbase  []atomic.Pointer[flow] // &chunks[c][0], for lock-free prefetching
	cbits  uint32                 // log2 of the chunk size, by the table's limit
	free   uint32                 // free list head (arena index), 0: none
	next   uint32                 // next never-used arena index
	live   int                    // flows owned by this shard
	sweep  uint32                 // expiry cursor
	_      [40]byte
}

// Options configure a Table.
type Options struct {
	MaxFlows  int // global limit (default 1<<20)
	MaxOwners int // owner slots for per-record budgets (default 1<<16)
	Timeouts  Timeouts
	PAT       PATOptions
}

// Table is the conntrack table: every tracked flow with its NAT
// translation. It is safe for concurrent use; no operation takes a global
// lock.
type Table struct {
	seed     uint64
	shards   [numShards]shard
	max      int64
	count    atomic.Int64
	owners   []atomic.Int32
	to       timeouts
	pat      *patAlloc
	Counters Counters
	sweepAt  atomic.Uint32
	// clock is the latest time Create or Expire was given: Flush, which
	// takes no time, uses it to start the REQ-8 hold of the ports it
	// frees.
	clock atomic.Uint32
	// reclaimAt is when Create last swept the whole table for expired
	// flows because it was full (at most once a second).
	reclaimAt atomic.Uint32
}

// Counters are table-wide event counts.
type Counters struct {
	Created atomic.Uint64 // flows created
	Expired atomic.Uint64 // flows removed by expiry
	Deleted atomic.Uint64 // flows removed by Flush or port reuse
	Refused atomic.Uint64 // new flows refused (full, budget, no port)
	Revived atomic.Uint64 // expired flows revived by a packet in the original direction
}

// NewTable returns an empty table.
func NewTable(o Options) *Table {
	if o.MaxFlows <= 0 {
		o.MaxFlows = 1 << 20
	}
	if o.MaxOwners <= 0 {
		o.MaxOwners = 1 << 16
	}
	t := &Table{
		seed:   rand.Uint64(),
		max:    int64(o.MaxFlows),
		owners: make([]atomic.Int32, o.MaxOwners+1),
		to:     o.Timeouts.withDefaults(),
	}
	// Each shard may hold up to twice its fair share (plus a chunk), so
	// the arena's chunk table never grows. Small tables get small chunks:
	// a table of 16 flows does not zero 64 chunks of 4096.
	fair := 2 * o.MaxFlows / numShards
	cbits := uint32(min(max(bits.Len(uint(fair)), minChunkBits), maxChunkBits))
	csize := 1 << cbits
	perShard := fair + csize
	nchunks := (perShard + csize - 1) / csize
	if nchunks > (refIndexMask+1)/csize {
		nchunks = (refIndexMask + 1) / csize
	}
	for i := range t.shards {
		s := &t.shards[i]
		s.id = uint32(i)
		s.slots = make([]uint64, minSlots)
		s.pslots.Store(&s.slots)
		s.chunks = make([][]flow, nchunks)
		s.cbase = make([]atomic.Pointer[flow], nchunks)
		s.cbits = cbits
		s.next = 1 // index 0 is never used, so no ref is 0
	}
	t.pat = newPAT(o.PAT)
	return t
}

// Len returns the number of flows in the table (expired ones not yet swept
// included).
func (t *Table) Len() int { return int(t.count.Load()) }

// Max returns the global limit.
func (t *Table) Max() int { return int(t.max) }

// OwnerLen returns the number of flows charged to owner.
func (t *Table) OwnerLen(owner uint32) int {
	if int(owner) >= len(t.owners) {
		return 0
	}
	return int(t.owners[owner].Load())
}

// MaxOwners returns the number of owner slots.
func (t *Table) MaxOwners() int { return len(t.owners) - 1 }

func (t *Table) shardOf(h uint64) *shard { return &t.shards[h&(numShards-1)] }

func (s *shard) flow(ref uint32) *flow {
	i := ref & refIndexMask
	return &s.chunks[i>>s.cbits][i&(1<<s.cbits-1)]
}

func (t *Table) flowAt(ref uint32) *flow { return t.shards[ref>>refShardShift].flow(ref) }

// findLocked looks key up in s's index (s.mu held). Tuples of indexed flows
// are immutable while their index entries exist, so comparing them under
// the index shard's lock is safe even when another shard owns the flow.
func (t *Table) findLocked(s *shard, k Tuple, h uint64) (ref uint32, dir Dir, ok bool) {
	tag := uint32(h >> 32)
	mask := uint32(len(s.slots) - 1)
	for pos := tag & mask; ; pos = (pos + 1) & mask {
		sl := s.slots[pos]
		if sl == 0 {
			return 0, 0, false
		}
		if uint32(sl>>32) != tag {
			continue
		}
		ref, dir = uint32(sl)&0x7fffffff, Dir(sl>>31&1)
		if t.flowAt(ref).t[dir] == k {
			return ref, dir, true
		}
	}
}

func (t *Table) insertLocked(s *shard, h uint64, ref uint32, dir Dir) {
	if (s.used+1)*2 > len(s.slots) {
		t.growLocked(s)
	}
	tag := uint32(h >> 32)
	mask := uint32(len(s.slots) - 1)
	pos := tag & mask
	for s.slots[pos] != 0 {
		pos = (pos + 1) & mask
	}
	s.slots[pos] = uint64(tag)<<32 | uint64(dir)<<31 | uint64(ref)
	s.used++
}

func (t *Table) growLocked(s *shard) {
	old := s.slots
	grown := make([]uint64, 2*len(old))
	s.slots = grown
	s.pslots.Store(&grown)
	mask := uint32(len(s.slots) - 1)
	for _, sl := range old {
		if sl == 0 {
			continue
		}
		pos := uint32(sl>>32) & mask
		for s.slots[pos] != 0 {
			pos = (pos + 1) & mask
		}
		s.slots[pos] = sl
	}
}

// removeLocked deletes the index entry (h, ref, dir) from s.
func (t *Table) removeLocked(s *shard, h uint64, ref uint32, dir Dir) {
	tag := uint32(h >> 32)
	want := uint64(tag)<<32 | uint64(dir)<<31 | uint64(ref)
	mask := uint32(len(s.slots) - 1)
	i := tag & mask
	for s.slots[i] != want {
		if s.slots[i] == 0 {
			return // not indexed (cannot happen while invariants hold)
		}
		i = (i + 1) & mask
	}
	// Backward-shift deletion keeps probe runs unbroken without tombstones.
	for j := (i + 1) & mask; s.slots[j] != 0; j = (j + 1) & mask {
		home := uint32(s.slots[j]>>32) & mask
		if (j > i && (home <= i || home > j)) || (j < i && home <= i && home > j) {
			s.slots[i] = s.slots[j]
			i = j
		}
	}
	s.slots[i] = 0
	s.used--
}

// allocLocked takes a free arena entry of s, or returns 0 when the shard's
// arena is full.
func (s *shard) allocLocked() uint32 {
	if s.free != 0 {
		i := s.free
		f := &s.chunks[i>>s.cbits][i&(1<<s.cbits-1)]
		s.free = f.owner
		return s.id<<refShardShift | i
	}
	i := s.next
	c := i >> s.cbits
	if int(c) >= len(s.chunks) {
		return 0
	}
	if s.chunks[c] == nil {
		s.chunks[c] = make([]flow, 1<<s.cbits)
		s.cbase[c].Store(&s.chunks[c][0])
	}
	s.next++
	return s.id<<refShardShift | i
}

func (s *shard) freeLocked(ref uint32) {
	i := ref & refIndexMask
	f := s.flow(ref)
	*f = flow{}
	f.owner = s.free
	s.free = i
}

// flowSize is the arena cost of one flow.
const flowSize = unsafe.Sizeof(flow{})

// Verdict is what the table decided for one packet.
type Verdict struct {
	Reason packet.Reason // ReasonNone: forward; otherwise drop and count
	Found  bool          // the packet belongs to a tracked flow
	New    bool          // the flow was created (or revived) by this packet
	Dir    Dir
	To     Tuple  // rewrite the packet's tuple into this
	Owner  uint32 // the owner slot charged for the flow
	Ref    uint32 // the flow's reference, stable while it lives
	State  uint8  // TCP state after the packet
}

// Translated reports whether the verdict rewrites the packet's tuple k.
func (v *Verdict) Translated(k Tuple) bool { return v.To != k }

// Track looks up the flow of a packet with tuple k and updates its state.
// When no flow matches, it returns a Verdict with Found false and changes
// nothing. seg is the packet's TCP segment info (nil for other protocols).
// Track never allocates.
//
// A flow that expired but was not swept yet is started again, with the
// same translation, by a packet in its original direction (one that could
// start a TCP flow). A packet in its reply direction finds it gone: Track
// removes it (releasing its PAT mapping) and returns Found false with
// ReasonNone, so the caller decides as for any first packet: through PAT
// that is unsolicited (the mapping timed out), while a record with a 1:1
// public IP may well start a new flow the other way.
func (t *Table) Track(k Tuple, seg *Seg, now uint32) Verdict {
	var v Verdict
	t.TrackInto(k, seg, now, &v)
	return v
}

// TrackInto is Track writing its verdict into v (which it resets), so that
// the data path copies no verdicts around.
func (t *Table) TrackInto(k Tuple, seg *Seg, now uint32, v *Verdict) {
	t.TrackHashed(k, k.hash(t.seed), seg, now, v)
}

// TrackHashed is TrackInto for a key whose hash (Hash) is known.
func (t *Table) TrackHashed(k Tuple, h uint64, seg *Seg, now uint32, v *Verdict) {
	x, ref, dir, ok := t.lockOwner(k, h)
	if !ok {
		*v = Verdict{}
		return
	}
	t.updateLocked(x.flow(ref), ref, dir, seg, now, v)
	x.mu.Unlock()
	if !v.Found && v.Reason == ReasonUnsolicited {
		// A reply to an expired flow (the only way updateLocked says
		// so): the flow is dead, remove it.
		t.dropExpired(k, now)
		*v = Verdict{}
	}
}

// lockOwner finds the flow of key k (hashed h) and returns it with its
// owner shard locked; ok is false (and nothing is locked) when there is
// none. A flow found in another shard's index is checked again under its
// owner's lock, since it may have been freed and reused in between.
func (t *Table) lockOwner(k Tuple, h uint64) (x *shard, ref uint32, dir Dir, ok bool) {
	x = t.shardOf(h)
	x.mu.Lock()
	if ref, dir, ok = t.findLocked(x, k, h); !ok {
		x.mu.Unlock()
		return nil, 0, 0, false
	}
	if y := ref >> refShardShift; y != x.id {
		x.mu.Unlock()
		x = &t.shards[y]
		x.mu.Lock()
		if f := x.flow(ref); f.expires == 0 || f.t[dir] != k {
			x.mu.Unlock()
			return nil, 0, 0, false
		}
	}
	return x, ref, dir, true
}

// dropExpired removes the flow that tuple k belongs to if it has expired,
// and reports whether it did.
func (t *Table) dropExpired(k Tuple, now uint32) bool {
	h := k.hash(t.seed)
	x := t.shardOf(h)
	x.mu.Lock()
	ref, _, ok := t.findLocked(x, k, h)
	if !ok {
		x.mu.Unlock()
		return false
	}
	// The flow's tuples are immutable while x indexes it.
	f := t.flowAt(ref)
	tu := f.t
	x.mu.Unlock()
	ho, hr := tu[Orig].hash(t.seed), tu[Reply].hash(t.seed)
	so, sr := t.shardOf(ho), t.shardOf(hr)
	lockPair(so, sr)
	defer unlockPair(so, sr)
	if f.expires == 0 || f.expires >= now || f.t != tu {
		return false
	}
	t.deleteLocked(so, sr, ref, ho, hr)
	t.Counters.Expired.Add(1)
	return true
}

// Peek returns the translation of a packet with tuple k without updating
// the flow (used for ICMP errors, which never refresh a session, RFC 5508).
func (t *Table) Peek(k Tuple, now uint32) Verdict {
	x, ref, dir, ok := t.lockOwner(k, k.hash(t.seed))
	if !ok {
		return Verdict{}
	}
	f := x.flow(ref)
	v := Verdict{Found: true, Dir: dir, To: f.t[1-dir].Reverse(), Owner: f.owner, Ref: ref, State: f.state}
	if f.expires < now {
		v.Found = false
	}
	x.mu.Unlock()
	return v
}

// updateLocked runs one packet through flow f (its owner shard locked).
func (t *Table) updateLocked(f *flow, ref uint32, dir Dir, seg *Seg, now uint32, v *Verdict) {
	o := &f.t[1-dir]
	*v = Verdict{Found: true, Dir: dir, To: Tuple{Src: o.Dst, Dst: o.Src, SPort: o.DPort, DPort: o.SPort, Proto: o.Proto}, Owner: f.owner, Ref: ref}
	if f.expires < now {
		// An expired flow that has not been swept yet: a packet in the
		// original direction starts it again with the same translation;
		// one in the reply direction finds it dead (ReasonUnsolicited
		// here tells TrackInto and Create to remove it).
		if dir == Reply {
			v.Found = false
			v.Reason = ReasonUnsolicited
			return
		}
		if f.t[Orig].Proto == packet.ProtoTCP && seg != nil && !tcpCanCreate(seg.Flags) {
			// Only what could start a new flow starts an expired
			// one again (as Create refuses a RST or a FIN).
			v.Found = false
			v.Reason = ReasonInvalidState
			return
		}
		f.state = 0
		f.flags &= flagPATOut | flagPATIn
		f.end, f.maxwin, f.wscale = [2]uint32{}, [2]uint32{}, 0
		v.New = true
		t.Counters.Revived.Add(1)
	}
	var timeout uint32
	switch f.t[Orig].Proto {
	case packet.ProtoTCP:
		if seg == nil {
			timeout = t.to.tcp[f.state]
			break
		}
		st, r := t.tcpLocked(f, dir, seg)
		if r != packet.ReasonNone {
			v.Reason = r
			v.State = f.state
			return
		}
		if st == stateReopen {
			// A new SYN on a closed connection reuses the entry and
			// its translation (port reuse after close).
			f.state = 0
			f.flags &= flagPATOut | flagPATIn
			f.end, f.maxwin, f.wscale = [2]uint32{}, [2]uint32{}, 0
			t.tcpLocked(f, dir, seg)
			v.New = true
		}
		timeout = t.to.tcp[f.state]
	case packet.ProtoUDP:
		if dir == Reply {
			f.flags |= flagReplied | flagAssured
		}
		timeout = t.to.udp
		if f.flags&flagAssured != 0 {
			timeout = t.to.udpStream
		}
	case packet.ProtoICMP:
		if dir == Reply {
			f.flags |= flagReplied
		}
		timeout = t.to.icmp
	default:
		if dir == Reply {
			f.flags |= flagReplied
		}
		timeout = t.to.generic
	}
	f.expires = now + timeout
	v.State = f.state
}

// Spec describes a new flow: its original tuple and the tuple that
// original-direction packets are rewritten into. With PATOut, To.SPort is
// chosen by the PAT allocator for (Orig.Src, Orig.SPort) on To.Src; with
// PATIn, the flow is an inbound one admitted through an existing mapping
// (endpoint-independent filtering) and holds a reference on it.
type Spec struct {
	Orig   Tuple
	To     Tuple
	PATOut bool
	PATIn  bool
	Owner  uint32 // owner slot charged (0: none)
	Budget int32  // the owner's budget (0: no budget)
}

// Create tracks a new flow for the packet with tuple sp.Orig and returns
// the packet's verdict. When the flow already exists (another packet
// created it first) it behaves as Track. When the table is at its limit or
// the owner at its budget, or no translation can be had, the flow is
// refused and established flows are not touched.
func (t *Table) Create(sp *Spec, seg *Seg, now uint32) Verdict {
	if seg != nil && !tcpCanCreate(seg.Flags) {
		return Verdict{Reason: ReasonInvalidState}
	}
	to := sp.To
	if sp.PATOut {
		port, r := t.pat.acquire(to.Src, to.Proto, sp.Orig.Src, sp.Orig.SPort, now)
		if r != packet.ReasonNone {
			t.Counters.Refused.Add(1)
			return Verdict{Reason: r}
		}
		to.SPort = port
	} else if sp.PATIn {
		if !t.pat.ref(to.Proto, sp.Orig.Dst, sp.Orig.DPort, to.Dst, to.DPort) {
			return Verdict{Reason: ReasonUnsolicited}
		}
	}
	t.advance(now)
	v := t.create(sp, to, seg, now)
	if (v.Reason == ReasonNATConflict && t.dropExpired(to.Reverse(), now)) ||
		(v.Reason == ReasonUnsolicited && t.dropExpired(sp.Orig, now)) {
		// The tuple is taken by a flow that expired but was not swept
		// yet (or sp.Orig is the reply of one): it is dead, and was
		// removed; try again.
		v = t.create(sp, to, seg, now)
	}
	if (v.Reason == ReasonTableFull || v.Reason == ReasonBudget) && t.reclaimAt.Swap(now) != now {
		// Full (or the owner at its budget), and create could only
		// reclaim expired flows of its own two shards: sweep the others
		// (bounded, at most once a second, so a flood of new flows
		// cannot make every packet pay for a sweep) and try again.
		if t.expire(now, reclaimMax, reclaimScan) > 0 {
			v = t.create(sp, to, seg, now)
		}
	}
	if v.Reason == packet.ReasonNone && v.New && v.Ref != 0 {
		if sp.PATOut {
			t.pat.peerAdd(to.Src, to.Proto, to.SPort, to.Dst)
		} else if sp.PATIn {
			t.pat.peerAdd(sp.Orig.Dst, to.Proto, sp.Orig.DPort, sp.Orig.Src)
		}
	}
	if v.Reason != packet.ReasonNone || !v.New || v.Ref == 0 {
		// Refused, or another packet created the flow first: give back
		// the mapping reference taken above.
		if sp.PATOut {
			t.pat.cancel(to.Src, to.Proto, to.SPort, now)
		} else if sp.PATIn {
			t.pat.cancel(sp.Orig.Dst, to.Proto, sp.Orig.DPort, now)
		}
		if v.Reason != packet.ReasonNone {
			t.Counters.Refused.Add(1)
		}
	}
	return v
}

// Bounds of the sweep Create runs when the table is full.
const (
	reclaimMax  = 1024 // flows removed
	reclaimScan = 1024 // arena entries scanned per shard
)

// advance moves the table's clock forward to now.
func (t *Table) advance(now uint32) {
	for {
		c := t.clock.Load()
		if now <= c || t.clock.CompareAndSwap(c, now) {
			return
		}
	}
}

func (t *Table) create(sp *Spec, to Tuple, seg *Seg, now uint32) Verdict {
	orig, reply := sp.Orig, to.Reverse()
	ho, hr := orig.hash(t.seed), reply.hash(t.seed)
	so, sr := t.shardOf(ho), t.shardOf(hr)
	lockPair(so, sr)
	defer unlockPair(so, sr)

	if ref, dir, ok := t.findLocked(so, orig, ho); ok {
		// Created meanwhile by another packet of the same flow.
		y := &t.shards[ref>>refShardShift]
		if y != so && y != sr {
			// The existing flow is owned by a shard we do not hold; its
			// tuples are immutable, but its state is not. Report it
			// found without updating; the next packet updates it.
			f := y.flow(ref)
			return Verdict{Found: true, Dir: dir, To: f.t[1-dir].Reverse(), Ref: ref}
		}
		var v Verdict
		t.updateLocked(y.flow(ref), ref, dir, seg, now, &v)
		v.New = false
		v.Ref = ref
		return v
	}
	if _, _, ok := t.findLocked(sr, reply, hr); ok {
		// The translated tuple is taken by another flow.
		return Verdict{Reason: ReasonNATConflict}
	}
	if !t.reserve() && (t.reclaimLocked(so, sr, now) == 0 || !t.reserve()) {
		return Verdict{Reason: ReasonTableFull}
	}
	if !t.charge(sp.Owner, sp.Budget) {
		t.count.Add(-1)
		return Verdict{Reason: ReasonBudget}
	}
	ref := so.allocLocked()
	if ref == 0 {
		t.uncharge(sp.Owner)
		return Verdict{Reason: ReasonTableFull}
	}
	f := so.flow(ref)
	f.t[Orig], f.t[Reply] = orig, reply
	f.owner = sp.Owner
	f.expires = now
	if sp.PATOut {
		f.flags |= flagPATOut
	}
	if sp.PATIn {
		f.flags |= flagPATIn
	}
	t.insertLocked(so, ho, ref, Orig)
	t.insertLocked(sr, hr, ref, Reply)
	so.live++
	t.Counters.Created.Add(1)
	var v Verdict
	t.updateLocked(f, ref, Orig, seg, now, &v)
	v.New = true
	if v.Reason != packet.ReasonNone {
		// The first packet is invalid for a new flow: undo. The PAT
		// reference is the caller's to give back, not the flow's.
		f.flags &^= flagPATOut | flagPATIn
		t.deleteLocked(so, sr, ref, ho, hr)
		t.Counters.Created.Add(^uint64(0))
		v.Ref = 0
	}
	return v
}

// reserve counts one more flow if the global limit allows it. It never
// takes the count past the limit, even for a moment, so Len never reads
// above Max.
func (t *Table) reserve() bool {
	for {
		c := t.count.Load()
		if c >= t.max {
			return false
		}
		if t.count.CompareAndSwap(c, c+1) {
			return true
		}
	}
}

// charge counts one more flow for owner if its budget (0: none) allows
// it, without going past the budget even for a moment.
func (t *Table) charge(owner uint32, budget int32) bool {
	if owner == 0 || int(owner) >= len(t.owners) {
		return true
	}
	o := &t.owners[owner]
	if budget <= 0 {
		o.Add(1)
		return true
	}
	for {
		c := o.Load()
		if c >= budget {
			return false
		}
		if o.CompareAndSwap(c, c+1) {
			return true
		}
	}
}

func (t *Table) uncharge(owner uint32) {
	if owner != 0 && int(owner) < len(t.owners) {
		t.owners[owner].Add(-1)
	}
	t.count.Add(-1)
}

func lockPair(a, b *shard) {
	switch {
	case a == b:
		a.mu.Lock()
	case a.id < b.id:
		a.mu.Lock()
		b.mu.Lock()
	default:
		b.mu.Lock()
		a.mu.Lock()
	}
}

func unlockPair(a, b *shard) {
	a.mu.Unlock()
	if a != b {
		b.mu.Unlock()
	}
}

// deleteLocked removes flow ref; so (its owner shard) and sr (its reply
// tuple's index shard) are locked; ho and hr are its tuples' hashes.
func (t *Table) deleteLocked(so, sr *shard, ref uint32, ho, hr uint64) {
	f := so.flow(ref)
	t.removeLocked(so, ho, ref, Orig)
	t.removeLocked(sr, hr, ref, Reply)
	// The mapping ended when the flow expired, or now if it is removed
	// before (Flush): the REQ-8 hold of its port starts then.
	end := f.expires
	if c := t.clock.Load(); c != 0 && c < end {
		end = c
	}
	switch {
	case f.flags&flagPATOut != 0:
		t.pat.peerDel(f.t[Reply].Dst, f.t[Orig].Proto, f.t[Reply].DPort, f.t[Orig].Dst)
		t.pat.release(f.t[Reply].Dst, f.t[Orig].Proto, f.t[Reply].DPort, end)
	case f.flags&flagPATIn != 0:
		t.pat.peerDel(f.t[Orig].Dst, f.t[Orig].Proto, f.t[Orig].DPort, f.t[Orig].Src)
		t.pat.release(f.t[Orig].Dst, f.t[Orig].Proto, f.t[Orig].DPort, end)
	}
	t.uncharge(f.owner)
	so.live--
	so.freeLocked(ref)
}

// reclaimLocked removes expired flows whose both shards are among the
// locked so and sr, scanning a bounded part of so's arena. It returns how
// many it removed.
func (t *Table) reclaimLocked(so, sr *shard, now uint32) int {
	n := 0
	for _, s := range [2]*shard{so, sr} {
		limit := 1024
		for i := uint32(1); i < s.next && limit > 0; i++ {
			limit--
			idx := (s.sweep + i) % s.next
			if idx == 0 {
				continue
			}
			ref := s.id<<refShardShift | idx
			f := s.flow(ref)
			if f.expires == 0 || f.expires >= now {
				continue
			}
			hr := f.t[Reply].hash(t.seed)
			if z := t.shardOf(hr); z != so && z != sr {
				continue
			}
			t.deleteLocked(s, t.shardOf(hr), ref, f.t[Orig].hash(t.seed), hr)
			t.Counters.Expired.Add(1)
			n++
		}
		if so == sr {
			break
		}
	}
	return n
}

// Expire removes up to max expired flows, continuing where the previous
// call stopped, and returns how many it removed. Each shard's arena is
// scanned for at most max(64, max) entries, so a small max bounds the work
// of a call (the switch runs it after each batch, with a small max) and a
// max at least the table's size sweeps it whole.
func (t *Table) Expire(now uint32, max int) int {
	t.advance(now)
	return t.expire(now, max, max)
}

func (t *Table) expire(now uint32, max, scan int) int {
	removed := 0
	if scan < 64 {
		scan = 64
	}
	start := t.sweepAt.Add(1)
	for k := uint32(0); k < numShards && max > 0; k++ {
		s := &t.shards[(start+k)%numShards]
		removed += t.expireShard(s, now, &max, scan)
	}
	return removed
}

func (t *Table) expireShard(s *shard, now uint32, max *int, scan int) int {
	removed := 0
	s.mu.Lock()
	if n := int(s.next) - 1; scan > n {
		scan = n
	}
	for scan > 0 && *max > 0 && s.next > 1 {
		scan--
		s.sweep++
		if s.sweep >= s.next {
			s.sweep = 1
		}
		ref := s.id<<refShardShift | s.sweep
		f := s.flow(ref)
		if f.expires == 0 || f.expires >= now {
			continue
		}
		ho, hr := f.t[Orig].hash(t.seed), f.t[Reply].hash(t.seed)
		z := t.shardOf(hr)
		switch {
		case z == s:
			t.deleteLocked(s, z, ref, ho, hr)
		case z.id > s.id:
			z.mu.Lock()
			t.deleteLocked(s, z, ref, ho, hr)
			z.mu.Unlock()
		default:
			// z must be locked first: let go of s meanwhile, and check
			// that the entry still holds the same expired flow (both
			// tuples: the reply tuple chose z).
			tu := f.t
			s.mu.Unlock()
			lockPair(s, z)
			if f.expires != 0 && f.expires < now && f.t == tu {
				t.deleteLocked(s, z, ref, ho, hr)
			} else {
				z.mu.Unlock()
				continue
			}
			z.mu.Unlock()
		}
		*max--
		t.Counters.Expired.Add(1)
		removed++
	}
	s.mu.Unlock()
	return removed
}

// deleteWhere removes every flow for which pred (called with the owner
// shard locked) is true, calls removed (when not nil) after each removal,
// once the locks are released, and returns how many it removed.
func (t *Table) deleteWhere(pred func(f *flow) bool, removed func(f *flow)) int {
	n := 0
	var refs []uint32
	for i := range t.shards {
		s := &t.shards[i]
		refs = refs[:0]
		s.mu.Lock()
		for idx := uint32(1); idx < s.next; idx++ {
			ref := s.id<<refShardShift | idx
			if f := s.flow(ref); f.expires != 0 && pred(f) {
				refs = append(refs, ref)
			}
		}
		s.mu.Unlock()
		for _, ref := range refs {
			s.mu.Lock()
			f := s.flow(ref)
			if f.expires == 0 {
				s.mu.Unlock()
				continue
			}
			tu := f.t
			hr := tu[Reply].hash(t.seed)
			z := t.shardOf(hr)
			s.mu.Unlock()
			lockPair(s, z)
			ok := f.expires != 0 && f.t == tu && pred(f)
			if ok {
				t.deleteLocked(s, z, ref, tu[Orig].hash(t.seed), hr)
				t.Counters.Deleted.Add(1)
				n++
			}
			unlockPair(s, z)
			if ok && removed != nil {
				removed(f)
			}
		}
	}
	return n
}

// Flush removes every flow charged to owner (0: every flow) and returns how
// many it removed.
func (t *Table) Flush(owner uint32) int {
	return t.deleteWhere(func(f *flow) bool { return owner == 0 || f.owner == owner }, nil)
}

// FlowInfo describes one tracked flow for listing.
type FlowInfo struct {
	Orig     Tuple
	Reply    Tuple
	Proto    uint8
	State    string
	Owner    uint32
	Expires  time.Time
	Replied  bool
	Assured  bool
	PAT      bool
	Ref      uint32
	Timeout  time.Duration // remaining, relative to now given to Flows
	Original Tuple         // alias of Orig kept for readability in callers
}

// Flows calls fn for each tracked flow (owner 0: all), one shard locked at
// a time, and stops when fn returns false.
func (t *Table) Flows(owner uint32, now uint32, fn func(FlowInfo) bool) {
	var batch []FlowInfo
	for i := range t.shards {
		s := &t.shards[i]
		batch = batch[:0]
		s.mu.Lock()
		for idx := uint32(1); idx < s.next; idx++ {
			ref := s.id<<refShardShift | idx
			f := s.flow(ref)
			if f.expires == 0 || (owner != 0 && f.owner != owner) {
				continue
			}
			fi := FlowInfo{
				Orig: f.t[Orig], Reply: f.t[Reply], Proto: f.t[Orig].Proto,
				Owner: f.owner, Expires: time.Unix(int64(f.expires), 0),
				Replied: f.flags&flagReplied != 0, Assured: f.flags&flagAssured != 0,
				PAT: f.flags&(flagPATOut|flagPATIn) != 0, Ref: ref, Original: f.t[Orig],
			}
			if fi.Proto == packet.ProtoTCP {
				fi.State = StateName(f.state)
			}
			if f.expires > now {
				fi.Timeout = time.Duration(f.expires-now) * time.Second
			}
			batch = append(batch, fi)
		}
		s.mu.Unlock()
		for _, fi := range batch {
			if !fn(fi) {
				return
			}
		}
	}
}

// Stats describes the table's memory.
type Stats struct {
	Flows      int
	IndexSlots int
	ArenaFlows int
	Bytes      int // index and arena bytes
}

// Stats returns the table's size figures.
func (t *Table) Stats() Stats {
	var st Stats
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		st.Flows += s.live
		st.IndexSlots += len(s.slots)
		for _, c := range s.chunks {
			if c != nil {
				st.ArenaFlows += len(c)
			}
		}
		s.mu.Unlock()
	}
	st.Bytes = st.IndexSlots*8 + st.ArenaFlows*int(flowSize)
	return st
}
