//go:build !race

package nat

import "unsafe"

// Hash returns the table's hash of k, for TrackHashed and the prefetches.
func (t *Table) Hash(k Tuple) uint64 { return k.hash(t.seed) }

// PrefetchIndex reads the index slot where a key hashed h starts its probe,
// and PrefetchFlow the flow that slot points to, so that a lookup soon after
// finds both in cache. The data path calls PrefetchIndex for every packet
// of a batch, then PrefetchFlow for every packet, then looks them up: the
// batch's cache misses overlap instead of following one another. Both read
// without locks; a stale value only wastes the hint (the lookup itself is
// locked and exact). Under the race detector they do nothing (prefetch_race.go).
func (t *Table) PrefetchIndex(h uint64) uint64 {
	sl := *t.shardOf(h).pslots.Load()
	return sl[uint32(h>>32)&uint32(len(sl)-1)]
}

// PrefetchFlow: see PrefetchIndex.
func (t *Table) PrefetchFlow(h uint64) uint64 {
	sl := t.PrefetchIndex(h)
	if sl == 0 {
		return 0
	}
	ref := uint32(sl) & 0x7fffffff
	y := &t.shards[ref>>refShardShift]
	i := ref & refIndexMask
	if int(i>>y.cbits) >= len(y.cbase) {
		return 0
	}
	base := y.cbase[i>>y.cbits].Load()
	if base == nil {
		return 0
	}
	f := (*flow)(unsafe.Add(unsafe.Pointer(base), uintptr(i&(1<<y.cbits-1))*flowSize))
	return uint64(f.expires)
}
