package nat

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	"roam/internal/packet"
)

// FlowRecord is one tracked flow as Export writes it and Import reads it
// back: pointer-free, fixed size, every field of the flow that matters
// after a restart (tuples, so the translation; TCP state and window
// tracking; expiry; the owner slot; the PAT mapping it holds, by its flags).
type FlowRecord struct {
	Orig, Reply Tuple
	Expires     uint32 // Unix seconds
	Owner       uint32 // owner slot (remapped by Import's caller)
	State       uint8
	Flags       uint8
	WScale      uint8
	End         [2]uint32
	MaxWin      [2]uint32
}

// HoldRecord is a freed PAT port still held from reuse (RFC 6888 REQ-8).
type HoldRecord struct {
	Pub   uint32
	Port  uint16
	Proto uint8
	Freed uint32 // Unix seconds the port was freed
}

// Snapshot is the conntrack table's content: every live flow and every
// PAT port still on hold. PAT mappings in use are not listed apart: each
// is held by the flows that carry flagPATOut or flagPATIn, and Import
// rebuilds it from them.
type Snapshot struct {
	Flows []FlowRecord
	Holds []HoldRecord
}

// ErrBadSnapshot is wrapped by every error of UnmarshalBinary and Import
// for a snapshot that is corrupt, truncated or of another version.
var ErrBadSnapshot = errors.New("bad conntrack snapshot")

// Export returns a copy of every flow that has not expired at now and of
// every PAT port held at now. It locks one shard (and then one PAT pool)
// at a time: flows created meanwhile may or may not be included, so stop
// the data path first for an exact copy.
func (t *Table) Export(now uint32) *Snapshot {
	s := &Snapshot{}
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		for idx := uint32(1); idx < sh.next; idx++ {
			f := sh.flow(sh.id<<refShardShift | idx)
			if f.expires == 0 || f.expires < now {
				continue
			}
			s.Flows = append(s.Flows, FlowRecord{Orig: f.t[Orig], Reply: f.t[Reply], Expires: f.expires, Owner: f.owner,
				State: f.state, Flags: f.flags, WScale: f.wscale, End: f.end, MaxWin: f.maxwin})
		}
		sh.mu.Unlock()
	}
	t.pat.mu.RLock()
	keys := make([]poolKey, 0, len(t.pat.pools))
	pools := make([]*pool, 0, len(t.pat.pools))
	for k, p := range t.pat.pools {
		keys, pools = append(keys, k), append(pools, p)
	}
	t.pat.mu.RUnlock()
	for i, p := range pools {
		p.mu.Lock()
		for port := range p.freed {
			fr := p.freed[port]
			if fr == 0 || p.ports[port].refs != 0 {
				continue
			}
			if d := int64(now) - int64(fr); d >= int64(t.pat.hold) || d < -int64(t.pat.hold) {
				continue
			}
			s.Holds = append(s.Holds, HoldRecord{Pub: keys[i].pub, Port: uint16(port), Proto: keys[i].proto, Freed: fr})
		}
		p.mu.Unlock()
	}
	return s
}

// validate checks one record on its own.
func (r *FlowRecord) validate() error {
	switch {
	case r.Expires == 0:
		return errors.New("expiry 0")
	case r.Orig.Proto != r.Reply.Proto:
		return fmt.Errorf("protocols differ: %d and %d", r.Orig.Proto, r.Reply.Proto)
	case r.State >= numStates:
		return fmt.Errorf("tcp state %d", r.State)
	case r.State != 0 && r.Orig.Proto != packet.ProtoTCP:
		return fmt.Errorf("tcp state %d on protocol %d", r.State, r.Orig.Proto)
	case r.Flags&flagPATOut != 0 && r.Flags&flagPATIn != 0:
		return errors.New("both PAT flags")
	case r.Orig == r.Reply.Reverse() && r.Flags&(flagPATOut|flagPATIn) != 0:
		return errors.New("PAT flag on an untranslated flow")
	case r.Orig.Src == 0 && r.Orig.Dst == 0:
		return errors.New("zero addresses")
	}
	return nil
}

// Import adds the flows and holds of s to the table, with the PAT
// mappings they hold. owner maps each record's owner slot to this table's
// (nil keeps it). Flows that expired by now, that collide with a flow of
// the table or whose PAT port is taken by another endpoint are skipped.
// Every record is validated first: an invalid one refuses the whole
// snapshot (wrapping ErrBadSnapshot) and changes nothing. Import returns
// the number of flows added. Budgets are not enforced on import: the flows
// existed.
func (t *Table) Import(s *Snapshot, now uint32, owner func(uint32) uint32) (int, error) {
	for i := range s.Flows {
		if err := s.Flows[i].validate(); err != nil {
			return 0, fmt.Errorf("%w: flow %d (%v): %v", ErrBadSnapshot, i, s.Flows[i].Orig, err)
		}
	}
	for i, h := range s.Holds {
		if h.Freed == 0 || h.Port == 0 {
			return 0, fmt.Errorf("%w: hold %d: port %d freed at %d", ErrBadSnapshot, i, h.Port, h.Freed)
		}
	}
	t.advance(now)
	for _, h := range s.Holds {
		p := t.pat.pool(h.Pub, h.Proto, true)
		p.mu.Lock()
		if p.ports[h.Port].refs == 0 && p.freed[h.Port] < h.Freed {
			p.freed[h.Port] = h.Freed
		}
		p.mu.Unlock()
	}
	n := 0
	for i := range s.Flows {
		r := &s.Flows[i]
		if r.Expires < now {
			continue
		}
		o := r.Owner
		if owner != nil && o != 0 {
			o = owner(o)
		}
		if t.restore(r, o) {
			n++
		}
	}
	return n, nil
}

// restore adds one flow and takes its PAT reference; it reports whether it
// did.
func (t *Table) restore(r *FlowRecord, owner uint32) bool {
	switch {
	case r.Flags&flagPATOut != 0:
		if !t.pat.restore(r.Reply.Dst, r.Orig.Proto, r.Reply.DPort, endpoint{r.Orig.Src, r.Orig.SPort}) {
			return false
		}
	case r.Flags&flagPATIn != 0:
		if !t.pat.restore(r.Orig.Dst, r.Orig.Proto, r.Orig.DPort, endpoint{r.Reply.Src, r.Reply.SPort}) {
			return false
		}
	}
	undo := func() {
		switch {
		case r.Flags&flagPATOut != 0:
			t.pat.cancel(r.Reply.Dst, r.Orig.Proto, r.Reply.DPort, r.Expires)
		case r.Flags&flagPATIn != 0:
			t.pat.cancel(r.Orig.Dst, r.Orig.Proto, r.Orig.DPort, r.Expires)
		}
	}
	ho, hr := r.Orig.hash(t.seed), r.Reply.hash(t.seed)
	so, sr := t.shardOf(ho), t.shardOf(hr)
	lockPair(so, sr)
	defer unlockPair(so, sr)
	if _, _, ok := t.findLocked(so, r.Orig, ho); ok {
		undo()
		return false
	}
	if _, _, ok := t.findLocked(sr, r.Reply, hr); ok {
		undo()
		return false
	}
	if !t.reserve() {
		undo()
		return false
	}
	t.charge(owner, 0)
	ref := so.allocLocked()
	if ref == 0 {
		t.uncharge(owner)
		undo()
		return false
	}
	f := so.flow(ref)
	*f = flow{t: [2]Tuple{r.Orig, r.Reply}, expires: r.Expires, owner: owner, state: r.State, flags: r.Flags,
		wscale: r.WScale, end: r.End, maxwin: r.MaxWin}
	t.insertLocked(so, ho, ref, Orig)
	t.insertLocked(sr, hr, ref, Reply)
	so.live++
	return true
}

// restore takes a reference on the mapping of pub:port to priv, creating
// it when the port is free; it returns false when another endpoint holds
// the port, or priv already has another port.
func (a *patAlloc) restore(pub uint32, proto uint8, port uint16, priv endpoint) bool {
	p := a.pool(pub, proto, true)
	p.mu.Lock()
	defer p.mu.Unlock()
	e := &p.ports[port]
	if e.refs != 0 {
		if e.priv != priv {
			return false
		}
		e.refs++
		e.shared = true
		return true
	}
	if pp, ok := p.fwd[priv]; ok && pp != port {
		return false
	}
	*e = portEntry{priv: priv, refs: 1, shared: true}
	p.fwd[priv] = port
	p.inUse++
	return true
}

// Snapshot encoding, version 1, little endian:
//
//	magic "ROAMCT" | version u16 | flows u32 | holds u32
//	flows × 64 bytes | holds × 12 bytes | CRC-32C of all before u32
const (
	snapMagic   = "ROAMCT"
	snapVersion = 1
	snapHeader  = 6 + 2 + 4 + 4
	flowRecLen  = 16 + 16 + 4 + 4 + 4 + 8 + 8
	holdRecLen  = 4 + 2 + 1 + 1 + 4
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func putTuple(b []byte, t Tuple) {
	binary.LittleEndian.PutUint32(b[0:], t.Src)
	binary.LittleEndian.PutUint32(b[4:], t.Dst)
	binary.LittleEndian.PutUint16(b[8:], t.SPort)
	binary.LittleEndian.PutUint16(b[10:], t.DPort)
	b[12] = t.Proto
	b[13], b[14], b[15] = 0, 0, 0
}

func getTuple(b []byte) Tuple {
	return Tuple{Src: binary.LittleEndian.Uint32(b[0:]), Dst: binary.LittleEndian.Uint32(b[4:]),
		SPort: binary.LittleEndian.Uint16(b[8:]), DPort: binary.LittleEndian.Uint16(b[10:]), Proto: b[12]}
}

// MarshalBinary encodes the snapshot (versioned, with a checksum).
func (s *Snapshot) MarshalBinary() ([]byte, error) {
	b := make([]byte, snapHeader+len(s.Flows)*flowRecLen+len(s.Holds)*holdRecLen+4)
	copy(b, snapMagic)
	binary.LittleEndian.PutUint16(b[6:], snapVersion)
	binary.LittleEndian.PutUint32(b[8:], uint32(len(s.Flows)))
	binary.LittleEndian.PutUint32(b[12:], uint32(len(s.Holds)))
	o := snapHeader
	for i := range s.Flows {
		r := &s.Flows[i]
		putTuple(b[o:], r.Orig)
		putTuple(b[o+16:], r.Reply)
		binary.LittleEndian.PutUint32(b[o+32:], r.Expires)
		binary.LittleEndian.PutUint32(b[o+36:], r.Owner)
		b[o+40], b[o+41], b[o+42] = r.State, r.Flags, r.WScale
		binary.LittleEndian.PutUint32(b[o+44:], r.End[0])
		binary.LittleEndian.PutUint32(b[o+48:], r.End[1])
		binary.LittleEndian.PutUint32(b[o+52:], r.MaxWin[0])
		binary.LittleEndian.PutUint32(b[o+56:], r.MaxWin[1])
		o += flowRecLen
	}
	for _, h := range s.Holds {
		binary.LittleEndian.PutUint32(b[o:], h.Pub)
		binary.LittleEndian.PutUint16(b[o+4:], h.Port)
		b[o+6] = h.Proto
		binary.LittleEndian.PutUint32(b[o+8:], h.Freed)
		o += holdRecLen
	}
	binary.LittleEndian.PutUint32(b[o:], crc32.Checksum(b[:o], castagnoli))
	return b, nil
}

// UnmarshalBinary decodes a snapshot written by MarshalBinary. A wrong
// magic, version, length or checksum, or an invalid record, is refused
// with an error wrapping ErrBadSnapshot.
func (s *Snapshot) UnmarshalBinary(b []byte) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrBadSnapshot, fmt.Sprintf(format, args...))
	}
	if len(b) < snapHeader+4 || string(b[:6]) != snapMagic {
		return bad("no %q header (%d bytes)", snapMagic, len(b))
	}
	if v := binary.LittleEndian.Uint16(b[6:]); v != snapVersion {
		return bad("version %d, want %d", v, snapVersion)
	}
	nf, nh := uint64(binary.LittleEndian.Uint32(b[8:])), uint64(binary.LittleEndian.Uint32(b[12:]))
	if want := uint64(snapHeader) + nf*flowRecLen + nh*holdRecLen + 4; uint64(len(b)) != want {
		return bad("%d bytes for %d flows and %d holds, want %d", len(b), nf, nh, want)
	}
	end := len(b) - 4
	if got, want := crc32.Checksum(b[:end], castagnoli), binary.LittleEndian.Uint32(b[end:]); got != want {
		return bad("checksum %08x, want %08x", got, want)
	}
	s.Flows = make([]FlowRecord, nf)
	s.Holds = make([]HoldRecord, nh)
	o := snapHeader
	for i := range s.Flows {
		r := &s.Flows[i]
		r.Orig, r.Reply = getTuple(b[o:]), getTuple(b[o+16:])
		r.Expires = binary.LittleEndian.Uint32(b[o+32:])
		r.Owner = binary.LittleEndian.Uint32(b[o+36:])
		r.State, r.Flags, r.WScale = b[o+40], b[o+41], b[o+42]
		r.End = [2]uint32{binary.LittleEndian.Uint32(b[o+44:]), binary.LittleEndian.Uint32(b[o+48:])}
		r.MaxWin = [2]uint32{binary.LittleEndian.Uint32(b[o+52:]), binary.LittleEndian.Uint32(b[o+56:])}
		if err := r.validate(); err != nil {
			return bad("flow %d (%v): %v", i, r.Orig, err)
		}
		o += flowRecLen
	}
	for i := range s.Holds {
		h := &s.Holds[i]
		h.Pub = binary.LittleEndian.Uint32(b[o:])
		h.Port = binary.LittleEndian.Uint16(b[o+4:])
		h.Proto = b[o+6]
		h.Freed = binary.LittleEndian.Uint32(b[o+8:])
		if h.Freed == 0 || h.Port == 0 {
			return bad("hold %d: port %d freed at %d", i, h.Port, h.Freed)
		}
		o += holdRecLen
	}
	return nil
}
