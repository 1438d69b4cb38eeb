//go:build race

package nat

// Hash returns the table's hash of k, for TrackHashed and the prefetches.
func (t *Table) Hash(k Tuple) uint64 { return k.hash(t.seed) }

// PrefetchIndex does nothing under the race detector: the real one reads
// without locks on purpose (see prefetch.go).
func (t *Table) PrefetchIndex(h uint64) uint64 { return 0 }

// PrefetchFlow does nothing under the race detector.
func (t *Table) PrefetchFlow(h uint64) uint64 { return 0 }
