package vswitch

import (
	"hash/maphash"
	"iter"

	"roam/internal/packet"
)

// nShards is the number of shards of a snapshot index.
const nShards = 256

// shardMap is one index of a Snapshot, split into nShards maps by key
// hash and copied on write shard by shard: a snapshot made by delta
// starts with its parent's shards (the array of pointers is copied, 2 KiB)
// and clones only the shards it writes, so publishing a change costs the
// changed keys times a shard (len/256), not the whole index. A shard is
// owned by the snapshot generation that made it; only that snapshot,
// while it is being built, writes it in place. Reads take no lock: a
// published snapshot is never written.
type shardMap[K comparable, V any] struct {
	shards [nShards]*shard[K, V]
	hash   func(K) uint8
}

type shard[K comparable, V any] struct {
	gen uint64
	m   map[K]V
}

func newShardMap[K comparable, V any](hash func(K) uint8) shardMap[K, V] {
	return shardMap[K, V]{hash: hash}
}

func (m *shardMap[K, V]) get(k K) (V, bool) {
	sh := m.shards[m.hash(k)]
	if sh == nil {
		var zero V
		return zero, false
	}
	v, ok := sh.m[k]
	return v, ok
}

// at returns the value of k, or V's zero value.
func (m *shardMap[K, V]) at(k K) V {
	v, _ := m.get(k)
	return v
}

// own returns k's shard for writing by generation gen, cloning it first
// when another generation owns it.
func (m *shardMap[K, V]) own(k K, gen uint64) *shard[K, V] {
	i := m.hash(k)
	sh := m.shards[i]
	if sh != nil && sh.gen == gen {
		return sh
	}
	n := &shard[K, V]{gen: gen}
	if sh != nil {
		n.m = make(map[K]V, len(sh.m)+1)
		for k, v := range sh.m {
			n.m[k] = v
		}
	} else {
		n.m = make(map[K]V)
	}
	m.shards[i] = n
	return n
}

func (m *shardMap[K, V]) set(k K, v V, gen uint64) { m.own(k, gen).m[k] = v }

func (m *shardMap[K, V]) del(k K, gen uint64) {
	if _, ok := m.get(k); ok {
		delete(m.own(k, gen).m, k)
	}
}

// len counts the entries (walks the shards; not for the data path).
func (m *shardMap[K, V]) len() int {
	n := 0
	for _, sh := range m.shards {
		if sh != nil {
			n += len(sh.m)
		}
	}
	return n
}

// all iterates the entries in no particular order.
func (m *shardMap[K, V]) all() iter.Seq2[K, V] {
	return func(yield func(K, V) bool) {
		for _, sh := range m.shards {
			if sh == nil {
				continue
			}
			for k, v := range sh.m {
				if !yield(k, v) {
					return
				}
			}
		}
	}
}

// hashU32 spreads IPv4 addresses (often consecutive) over the shards.
func hashU32(a uint32) uint8 { return uint8((a * 0x9e3779b1) >> 24) }

func hashPort(p *portState) uint8 { return hashU32(uint32(p.id) ^ uint32(p.id>>32)) }

var shardSeed = maphash.MakeSeed()

func hashString(s string) uint8 { return uint8(maphash.String(shardSeed, s)) }

func hashMAC(m packet.MAC) uint8 { return m[5] ^ m[4]*31 ^ m[3]*131 }
