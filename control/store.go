package control

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Buckets of the store; each holds JSON objects keyed by id.
const (
	bucketSubnets   = "subnets"
	bucketGroups    = "groups"
	bucketInstances = "instances"
	bucketENIs      = "enis"
	bucketEIPs      = "eips"
	bucketMeta      = "meta"
	bucketEvents    = "events"
)

var objectBuckets = []string{bucketSubnets, bucketGroups, bucketInstances, bucketENIs, bucketEIPs}

// Mutation is one write of a commit: Value nil deletes the key.
type Mutation struct {
	Bucket string
	Key    string
	Value  []byte
}

// Store keeps the committed state. Every Commit is atomic and durable when it
// returns: after a crash, Load returns exactly the state of the last Commit
// that returned nil (or of one that was in progress, if it reached the disk).
// The embedded backend is bbolt; a shared backend (etcd) fits the same
// interface.
type Store interface {
	// Load returns every stored object, by bucket and key, and the
	// generation of the last commit.
	Load() (objects map[string]map[string][]byte, gen uint64, err error)
	// Commit applies the mutations, records gen and appends ev to the audit
	// log, in one transaction.
	Commit(muts []Mutation, gen uint64, ev *Event) error
	// AppendEvent appends ev to the audit log alone (refused operations).
	AppendEvent(ev *Event) error
	// Events returns up to limit events with ID > after, oldest first.
	Events(after uint64, limit int) ([]Event, error)
	Close() error
}

// BoltStore is the embedded Store: one bbolt file, state.db, in a directory.
type BoltStore struct {
	db *bolt.DB
}

// OpenBolt opens (creating when needed) the store in dir.
func OpenBolt(dir string, noSync bool) (*BoltStore, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("state dir %s: %w", dir, err)
	}
	path := filepath.Join(dir, "state.db")
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second, NoSync: noSync, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range append(objectBuckets, bucketMeta, bucketEvents) {
			if _, err := tx.CreateBucketIfNotExists([]byte(b)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("init store %s: %w", path, err)
	}
	return &BoltStore{db: db}, nil
}

// Load implements Store.
func (s *BoltStore) Load() (map[string]map[string][]byte, uint64, error) {
	objs := make(map[string]map[string][]byte)
	var gen uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		for _, name := range objectBuckets {
			m := make(map[string][]byte)
			err := tx.Bucket([]byte(name)).ForEach(func(k, v []byte) error {
				m[string(k)] = append([]byte(nil), v...)
				return nil
			})
			if err != nil {
				return err
			}
			objs[name] = m
		}
		if v := tx.Bucket([]byte(bucketMeta)).Get([]byte("gen")); len(v) == 8 {
			gen = binary.BigEndian.Uint64(v)
		}
		return nil
	})
	return objs, gen, err
}

// Commit implements Store.
func (s *BoltStore) Commit(muts []Mutation, gen uint64, ev *Event) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		for _, m := range muts {
			b := tx.Bucket([]byte(m.Bucket))
			if b == nil {
				return fmt.Errorf("unknown bucket %q", m.Bucket)
			}
			var err error
			if m.Value == nil {
				err = b.Delete([]byte(m.Key))
			} else {
				err = b.Put([]byte(m.Key), m.Value)
			}
			if err != nil {
				return err
			}
		}
		var g [8]byte
		binary.BigEndian.PutUint64(g[:], gen)
		if err := tx.Bucket([]byte(bucketMeta)).Put([]byte("gen"), g[:]); err != nil {
			return err
		}
		if ev != nil {
			return putEvent(tx, ev)
		}
		return nil
	})
}

// MaxEvents is how many audit events the store keeps; older ones are
// dropped as new ones arrive.
const MaxEvents = 1 << 20

func putEvent(tx *bolt.Tx, ev *Event) error {
	b := tx.Bucket([]byte(bucketEvents))
	seq, err := b.NextSequence()
	if err != nil {
		return err
	}
	ev.ID = seq
	v, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], seq)
	if err := b.Put(k[:], v); err != nil {
		return err
	}
	if seq > MaxEvents {
		binary.BigEndian.PutUint64(k[:], seq-MaxEvents)
		return b.Delete(k[:])
	}
	return nil
}

// AppendEvent implements Store.
func (s *BoltStore) AppendEvent(ev *Event) error {
	return s.db.Update(func(tx *bolt.Tx) error { return putEvent(tx, ev) })
}

// Events implements Store.
func (s *BoltStore) Events(after uint64, limit int) ([]Event, error) {
	var evs []Event
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket([]byte(bucketEvents)).Cursor()
		var k [8]byte
		binary.BigEndian.PutUint64(k[:], after+1)
		for key, v := c.Seek(k[:]); key != nil && (limit <= 0 || len(evs) < limit); key, v = c.Next() {
			var ev Event
			if err := json.Unmarshal(v, &ev); err != nil {
				return err
			}
			evs = append(evs, ev)
		}
		return nil
	})
	return evs, err
}

// Close implements Store.
func (s *BoltStore) Close() error { return s.db.Close() }

// MemStore is the in-memory twin of BoltStore, for tests. FailCommit, when
// set, makes the next commits fail with its error.
type MemStore struct {
	mu         sync.Mutex
	objs       map[string]map[string][]byte
	gen        uint64
	events     []Event
	FailCommit error
}

// NewMemStore returns an empty in-memory store.
func NewMemStore() *MemStore {
	m := &MemStore{objs: make(map[string]map[string][]byte)}
	for _, b := range objectBuckets {
		m.objs[b] = make(map[string][]byte)
	}
	return m
}

// Load implements Store.
func (m *MemStore) Load() (map[string]map[string][]byte, uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]map[string][]byte)
	for b, kv := range m.objs {
		c := make(map[string][]byte, len(kv))
		for k, v := range kv {
			c[k] = v
		}
		out[b] = c
	}
	return out, m.gen, nil
}

// Commit implements Store.
func (m *MemStore) Commit(muts []Mutation, gen uint64, ev *Event) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.FailCommit != nil {
		return m.FailCommit
	}
	for _, mu := range muts {
		if mu.Value == nil {
			delete(m.objs[mu.Bucket], mu.Key)
		} else {
			m.objs[mu.Bucket][mu.Key] = mu.Value
		}
	}
	m.gen = gen
	if ev != nil {
		m.appendLocked(ev)
	}
	return nil
}

func (m *MemStore) appendLocked(ev *Event) {
	ev.ID = uint64(len(m.events) + 1)
	m.events = append(m.events, *ev)
}

// AppendEvent implements Store.
func (m *MemStore) AppendEvent(ev *Event) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.appendLocked(ev)
	return nil
}

// Events implements Store.
func (m *MemStore) Events(after uint64, limit int) ([]Event, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	i := sort.Search(len(m.events), func(i int) bool { return m.events[i].ID > after })
	out := m.events[i:]
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return append([]Event(nil), out...), nil
}

// Close implements Store.
func (m *MemStore) Close() error { return nil }
