package nat

import (
	"sync"
	"time"

	"roam/internal/packet"
)

// FragKey identifies the fragments of one IPv4 datagram (RFC 791).
type FragKey struct {
	Src, Dst uint32
	ID       uint16
	Proto    uint8
	_        uint8
}

// FragKeyOf returns the fragment key of a parsed packet.
func FragKeyOf(p *packet.Parsed, frame []byte) FragKey {
	return FragKey{Src: p.Src, Dst: p.Dst, ID: packet.IPv4(frame[p.L3:]).ID(), Proto: p.Proto}
}

// FragOptions bound fragment tracking.
type FragOptions struct {
	MaxDatagrams int           // datagrams tracked at once (default 4096)
	MaxHeld      int           // out-of-order fragments held at once (default 256)
	HeldSize     int           // largest fragment held (default 9216)
	Timeout      time.Duration // how long a datagram is tracked (default 30 s)
}

// Frags carries the translation of a datagram's first fragment (the one
// with the L4 header) over to its other fragments, which have no ports to
// look up. Fragments that arrive before their first fragment are held, in a
// bounded pool, until it arrives or the datagram times out. Memory is
// bounded by MaxDatagrams entries and MaxHeld buffers.
type Frags struct {
	mu      sync.Mutex
	o       FragOptions
	timeout uint32
	m       map[FragKey]fragEntry
	held    []heldFrag
	freeH   []int32
	Dropped uint64 // fragments dropped because the pools were full or timed out; guarded by mu (see Drops)
}

type fragEntry struct {
	expires uint32
	known   bool          // the first fragment was seen
	reason  packet.Reason // its verdict: ReasonNone forwards the rest
	to      FragKey       // addresses to rewrite the rest into (Src, Dst)
	held    int32         // head of the held list, -1 none
	// firstEnd is where the first fragment's data ends (bytes from the
	// start of the IP payload; 0: unknown). A later fragment that starts
	// before it overlaps the first fragment, the one the verdict was made
	// on, and could rewrite its transport header (RFC 1858, RFC 3128).
	firstEnd uint16
}

type heldFrag struct {
	buf  []byte
	n    int
	next int32
}

// NewFrags returns an empty fragment table.
func NewFrags(o FragOptions) *Frags {
	if o.MaxDatagrams <= 0 {
		o.MaxDatagrams = 4096
	}
	if o.MaxHeld <= 0 {
		o.MaxHeld = 256
	}
	if o.HeldSize <= 0 {
		o.HeldSize = 9216
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	f := &Frags{o: o, timeout: uint32(o.Timeout / time.Second), m: make(map[FragKey]fragEntry, 64)}
	f.held = make([]heldFrag, o.MaxHeld)
	f.freeH = make([]int32, 0, o.MaxHeld)
	for i := o.MaxHeld - 1; i >= 0; i-- {
		f.freeH = append(f.freeH, int32(i))
	}
	return f
}

// Learn records the verdict and translated addresses of a datagram's first
// fragment. It returns false when the table is full.
func (f *Frags) Learn(k FragKey, reason packet.Reason, newSrc, newDst uint32, now uint32) bool {
	return f.LearnFirst(k, reason, newSrc, newDst, 0, now)
}

// LearnFirst is Learn that also records where the first fragment's data
// ends (firstEnd bytes of IP payload), so that LookupAt refuses later
// fragments overlapping it.
func (f *Frags) LearnFirst(k FragKey, reason packet.Reason, newSrc, newDst uint32, firstEnd int, now uint32) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	e, ok := f.m[k]
	if !ok {
		if len(f.m) >= f.o.MaxDatagrams && f.expireLocked(now) == 0 {
			return false
		}
		e.held = -1
	}
	e.known, e.reason = true, reason
	e.to = FragKey{Src: newSrc, Dst: newDst}
	e.firstEnd = uint16(min(max(firstEnd, 0), 0xffff))
	e.expires = now + f.timeout
	f.m[k] = e
	return true
}

// Lookup returns what to do with a later fragment: ok is false when its
// first fragment is unknown.
func (f *Frags) Lookup(k FragKey, now uint32) (reason packet.Reason, newSrc, newDst uint32, ok bool) {
	return f.LookupAt(k, -1, now)
}

// LookupAt is Lookup for a later fragment whose data starts off bytes into
// the IP payload: one that overlaps the first fragment gets
// ReasonFragOverlap (off < 0 skips the check).
func (f *Frags) LookupAt(k FragKey, off int, now uint32) (reason packet.Reason, newSrc, newDst uint32, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	e, found := f.m[k]
	if !found || !e.known || e.expires < now {
		return 0, 0, 0, false
	}
	if off >= 0 && off < int(e.firstEnd) && e.reason == packet.ReasonNone {
		return ReasonFragOverlap, 0, 0, true
	}
	return e.reason, e.to.Src, e.to.Dst, true
}

// Hold keeps a copy of a fragment that arrived before its first fragment.
// It returns false (and the fragment is to be dropped) when the pools are
// full or the fragment is too large.
func (f *Frags) Hold(k FragKey, frame []byte, now uint32) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(frame) > f.o.HeldSize {
		f.Dropped++
		return false
	}
	_, ok := f.m[k]
	if len(f.freeH) == 0 || (!ok && len(f.m) >= f.o.MaxDatagrams) {
		// Expiry frees buffers and entries, and may remove k's own
		// entry (with what it held): look k up only afterwards.
		f.expireLocked(now)
	}
	e, ok := f.m[k]
	if !ok {
		if len(f.m) >= f.o.MaxDatagrams {
			f.Dropped++
			return false
		}
		e = fragEntry{held: -1, expires: now + f.timeout}
	}
	if len(f.freeH) == 0 {
		f.Dropped++
		return false
	}
	i := f.freeH[len(f.freeH)-1]
	f.freeH = f.freeH[:len(f.freeH)-1]
	h := &f.held[i]
	if h.buf == nil {
		h.buf = make([]byte, f.o.HeldSize)
	}
	h.n = copy(h.buf, frame)
	h.next = e.held
	e.held = i
	f.m[k] = e
	return true
}

// Drain passes each fragment held for k to fn, in the order they arrived
// (the slice is valid only during the call), and frees it. fn runs without
// f's lock held, so it may use f.
func (f *Frags) Drain(k FragKey, fn func(frame []byte)) {
	f.mu.Lock()
	e, ok := f.m[k]
	if !ok || e.held < 0 {
		f.mu.Unlock()
		return
	}
	// Unlink the list (newest first) and reverse it. Its buffers are on
	// no free list, so nobody else touches them until they are freed.
	head := int32(-1)
	for i := e.held; i >= 0; {
		next := f.held[i].next
		f.held[i].next = head
		head = i
		i = next
	}
	e.held = -1
	f.m[k] = e
	f.mu.Unlock()
	for i := head; i >= 0; i = f.held[i].next {
		h := &f.held[i]
		fn(h.buf[:h.n])
	}
	f.mu.Lock()
	for i := head; i >= 0; i = f.held[i].next {
		f.freeH = append(f.freeH, i)
	}
	f.mu.Unlock()
}

// Expire removes timed-out datagrams and drops the fragments they held; it
// returns how many of each.
func (f *Frags) Expire(now uint32) (datagrams, frames int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	before := f.Dropped
	datagrams = f.expireLocked(now)
	return datagrams, int(f.Dropped - before)
}

// Held returns the number of fragments held.
func (f *Frags) Held() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.o.MaxHeld - len(f.freeH)
}

func (f *Frags) expireLocked(now uint32) int {
	n := 0
	for k, e := range f.m {
		if e.expires >= now {
			continue
		}
		for i := e.held; i >= 0; i = f.held[i].next {
			f.freeH = append(f.freeH, i)
			f.Dropped++
		}
		delete(f.m, k)
		n++
	}
	return n
}

// Drops returns the number of fragments dropped because the pools were
// full or their datagram timed out (Dropped, read under the lock).
func (f *Frags) Drops() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.Dropped
}

// Len returns the number of datagrams tracked.
func (f *Frags) Len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.m)
}
