package vswitch

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"sort"

	"roam/nat"
)

// Flow snapshot file, version 1, little endian: the conntrack snapshot of
// package nat (flows, PAT mappings, REQ-8 holds) with the record each owner
// slot stood for, since slots are numbered per process:
//
//	magic "ROAMFLOWS" | version u16 | owners u32
//	owners × (slot u32 | id length u16 | id) | nat snapshot length u32 |
//	nat snapshot | CRC-32C of all before u32
const (
	flowsMagic   = "ROAMFLOWS"
	flowsVersion = 1
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrBadFlowSnapshot is wrapped by ImportFlows' errors for a file that is
// corrupt, truncated or of another version (nat.ErrBadSnapshot too, for
// the conntrack part).
var ErrBadFlowSnapshot = errors.New("bad flow snapshot")

// ExportFlows writes every live flow (with its translation, TCP state,
// expiry and record) and the PAT ports on hold to w. Stop the readers
// first (Close) for an exact copy: the table is read one shard at a time.
func (s *Switch) ExportFlows(w io.Writer) (int, error) {
	snap := s.ct.Export(uint32(s.now().Unix()))
	ct, err := snap.MarshalBinary()
	if err != nil {
		return 0, err
	}
	s.mu.Lock()
	ids := make([]string, 0, len(s.records))
	for id := range s.records {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	b := append([]byte(flowsMagic), 0, 0, 0, 0, 0, 0)
	binary.LittleEndian.PutUint16(b[len(flowsMagic):], flowsVersion)
	binary.LittleEndian.PutUint32(b[len(flowsMagic)+2:], uint32(len(ids)))
	for _, id := range ids {
		b = binary.LittleEndian.AppendUint32(b, s.records[id].slot)
		b = binary.LittleEndian.AppendUint16(b, uint16(len(id)))
		b = append(b, id...)
	}
	s.mu.Unlock()
	b = binary.LittleEndian.AppendUint32(b, uint32(len(ct)))
	b = append(b, ct...)
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
	if _, err := w.Write(b); err != nil {
		return 0, err
	}
	return len(snap.Flows), nil
}

// ImportFlows reads a file written by ExportFlows and adds its flows to
// the conntrack table, charged to the same records (by ID). Call it before
// Start, so that no packet is read before the flows are back. A corrupt
// file changes nothing and returns an error wrapping ErrBadFlowSnapshot.
func (s *Switch) ImportFlows(r io.Reader) (int, error) {
	b, err := io.ReadAll(io.LimitReader(r, 1<<31))
	if err != nil {
		return 0, err
	}
	bad := func(format string, args ...any) (int, error) {
		return 0, fmt.Errorf("%w: %s", ErrBadFlowSnapshot, fmt.Sprintf(format, args...))
	}
	h := len(flowsMagic) + 6
	if len(b) < h+8 || string(b[:len(flowsMagic)]) != flowsMagic {
		return bad("no %q header (%d bytes)", flowsMagic, len(b))
	}
	if v := binary.LittleEndian.Uint16(b[len(flowsMagic):]); v != flowsVersion {
		return bad("version %d, want %d", v, flowsVersion)
	}
	end := len(b) - 4
	if got, want := crc32.Checksum(b[:end], castagnoli), binary.LittleEndian.Uint32(b[end:]); got != want {
		return bad("checksum %08x, want %08x", got, want)
	}
	n := int(binary.LittleEndian.Uint32(b[len(flowsMagic)+2:]))
	owners := make(map[uint32]string, min(n, 1<<16))
	o := h
	for i := 0; i < n; i++ {
		if o+6 > end {
			return bad("owner %d: truncated", i)
		}
		slot := binary.LittleEndian.Uint32(b[o:])
		l := int(binary.LittleEndian.Uint16(b[o+4:]))
		if o+6+l > end || l == 0 {
			return bad("owner %d: id of %d bytes", i, l)
		}
		owners[slot] = string(b[o+6 : o+6+l])
		o += 6 + l
	}
	if o+4 > end {
		return bad("no conntrack part")
	}
	l := int(binary.LittleEndian.Uint32(b[o:]))
	if o+4+l != end {
		return bad("conntrack part of %d bytes, %d left", l, end-o-4)
	}
	var snap nat.Snapshot
	if err := snap.UnmarshalBinary(b[o+4 : end]); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrBadFlowSnapshot, err)
	}
	slots := make(map[uint32]uint32, len(owners))
	for old, id := range owners {
		st, err := s.recordState(id)
		if err != nil {
			return 0, err
		}
		slots[old] = st.slot
	}
	return s.ct.Import(&snap, uint32(s.now().Unix()), func(o uint32) uint32 { return slots[o] })
}
