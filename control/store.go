package control

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
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
	bucketChanges   = "changes" // generation -> Change, the last MaxChanges commits
)

var objectBuckets = []string{bucketSubnets, bucketGroups, bucketInstances, bucketENIs, bucketEIPs}

// Mutation is one write of a commit: Value nil deletes the key.
type Mutation struct {
	Bucket string `json:"bucket"`
	Key    string `json:"key"`
	Value  []byte `json:"value,omitempty"`
}

// Change is one committed transaction as Watch delivers it: the generation
// the commit created, its mutations and its audit event (nil for a commit
// without one).
type Change struct {
	Gen       uint64     `json:"gen"`
	Mutations []Mutation `json:"mutations"`
	Event     *Event     `json:"event,omitempty"`
}

// ErrConflict is the error of a Commit whose expected generation is not the
// store's current one: another writer committed in between. The caller
// catches up (Watch from its generation) and retries on the fresh state.
var ErrConflict = errors.New("store: generation conflict")

// ErrCompacted is the error of a Watch from a generation whose changes the
// store no longer keeps: the caller reloads (Load) instead.
var ErrCompacted = errors.New("store: changes compacted")

// ConflictError is the ErrConflict of a Commit: the generation the writer
// based its commit on and the store's current one.
type ConflictError struct{ Expected, Current uint64 }

func (e *ConflictError) Error() string {
	return fmt.Sprintf("store: commit based on generation %d, the store is at %d", e.Expected, e.Current)
}

// Is makes errors.Is(err, ErrConflict) hold.
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

// errStopWatch ends a Watch from its callback without an error.
var errStopWatch = errors.New("stop watch")

// MaxChanges is how many commits the change log keeps for Watch; a watcher
// further behind gets ErrCompacted and reloads.
const MaxChanges = 10000

// Store keeps the committed state. Every Commit is atomic and durable when it
// returns: after a crash, Load returns exactly the state of the last Commit
// that returned nil (or of one that was in progress, if it reached the disk).
// The embedded backend is bbolt; a shared backend (etcd) meets the same
// contract (see "Store contract" in doc.go).
type Store interface {
	// Load returns every stored object, by bucket and key, and the
	// generation of the last commit, read at one consistent point.
	Load() (objects map[string]map[string][]byte, gen uint64, err error)
	// Commit applies the mutations and appends ev (when not nil; its ID is
	// set) to the audit log in one transaction, if and only if the store's
	// generation is still expected; the new generation is returned (greater
	// than expected). Otherwise nothing changes and the error wraps
	// ErrConflict (a *ConflictError).
	Commit(expected uint64, muts []Mutation, ev *Event) (gen uint64, err error)
	// Watch calls fn, in generation order and without gaps, with every
	// change committed after generation from, those already committed
	// first, then each new one as it commits (by any writer of the store),
	// until ctx is done (it returns ctx.Err()) or fn returns an error (it
	// returns that error). When the changes after from are no longer kept
	// it returns ErrCompacted.
	Watch(ctx context.Context, from uint64, fn func(Change) error) error
	// AppendEvent appends ev to the audit log alone (refused operations).
	AppendEvent(ev *Event) error
	// Events returns up to limit events with ID > after, oldest first.
	Events(after uint64, limit int) ([]Event, error)
	Close() error
}

// notifier wakes in-process watchers after each commit.
type notifier struct {
	mu sync.Mutex
	ch chan struct{}
}

// wait returns a channel closed at the next commit.
func (n *notifier) wait() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ch == nil {
		n.ch = make(chan struct{})
	}
	return n.ch
}

func (n *notifier) notify() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ch != nil {
		close(n.ch)
		n.ch = nil
	}
}

// watchLoop is Watch over a store that reads its changes after a
// generation with next (nil error and no changes: none yet).
func watchLoop(ctx context.Context, n *notifier, from uint64, next func(after uint64) ([]Change, error), fn func(Change) error) error {
	for {
		woken := n.wait()
		chs, err := next(from)
		if err != nil {
			return err
		}
		for _, c := range chs {
			if c.Gen != from+1 {
				return fmt.Errorf("store: change log has generation %d after %d", c.Gen, from)
			}
			if err := fn(c); err != nil {
				return err
			}
			from = c.Gen
		}
		if len(chs) > 0 {
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-woken:
		}
	}
}

// BoltStore is the embedded Store: one bbolt file, state.db, in a directory.
type BoltStore struct {
	db *bolt.DB
	n  notifier
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
		for _, b := range append(objectBuckets, bucketMeta, bucketEvents, bucketChanges) {
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
		gen = metaGen(tx.Bucket([]byte(bucketMeta)))
		return nil
	})
	return objs, gen, err
}

// Commit implements Store.
func (s *BoltStore) Commit(expected uint64, muts []Mutation, ev *Event) (uint64, error) {
	gen := expected + 1
	err := s.db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket([]byte(bucketMeta))
		if cur := metaGen(meta); cur != expected {
			return &ConflictError{Expected: expected, Current: cur}
		}
		for _, m := range muts {
			b := tx.Bucket([]byte(m.Bucket))
			if b == nil || !slices.Contains(objectBuckets, m.Bucket) {
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
		if err := meta.Put([]byte("gen"), g[:]); err != nil {
			return err
		}
		if ev != nil {
			if err := putEvent(tx, ev); err != nil {
				return err
			}
		}
		v, err := json.Marshal(Change{Gen: gen, Mutations: muts, Event: ev})
		if err != nil {
			return err
		}
		ch := tx.Bucket([]byte(bucketChanges))
		if err := ch.Put(binary.BigEndian.AppendUint64(nil, gen), v); err != nil {
			return err
		}
		if gen > MaxChanges {
			// Not g: bbolt keeps the values put until the commit.
			var old [8]byte
			binary.BigEndian.PutUint64(old[:], gen-MaxChanges)
			return ch.Delete(old[:])
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	s.n.notify()
	return gen, nil
}

func metaGen(meta *bolt.Bucket) uint64 {
	if v := meta.Get([]byte("gen")); len(v) == 8 {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

// Watch implements Store.
func (s *BoltStore) Watch(ctx context.Context, from uint64, fn func(Change) error) error {
	return watchLoop(ctx, &s.n, from, s.changesAfter, fn)
}

// changesAfter returns up to 1024 changes after generation from.
func (s *BoltStore) changesAfter(from uint64) ([]Change, error) {
	var out []Change
	err := s.db.View(func(tx *bolt.Tx) error {
		if metaGen(tx.Bucket([]byte(bucketMeta))) <= from {
			return nil
		}
		c := tx.Bucket([]byte(bucketChanges)).Cursor()
		var k [8]byte
		binary.BigEndian.PutUint64(k[:], from+1)
		key, v := c.Seek(k[:])
		if key == nil || binary.BigEndian.Uint64(key) != from+1 {
			return fmt.Errorf("watch from generation %d: %w", from, ErrCompacted)
		}
		for ; key != nil && len(out) < 1024; key, v = c.Next() {
			var ch Change
			if err := json.Unmarshal(v, &ch); err != nil {
				return err
			}
			out = append(out, ch)
		}
		return nil
	})
	return out, err
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
	changes    []Change // the last MaxChanges commits, oldest first
	n          notifier
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
func (m *MemStore) Commit(expected uint64, muts []Mutation, ev *Event) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.FailCommit != nil {
		return 0, m.FailCommit
	}
	if m.gen != expected {
		return 0, &ConflictError{Expected: expected, Current: m.gen}
	}
	for _, mu := range muts {
		if m.objs[mu.Bucket] == nil {
			return 0, fmt.Errorf("unknown bucket %q", mu.Bucket)
		}
	}
	for _, mu := range muts {
		if mu.Value == nil {
			delete(m.objs[mu.Bucket], mu.Key)
		} else {
			m.objs[mu.Bucket][mu.Key] = mu.Value
		}
	}
	m.gen++
	c := Change{Gen: m.gen, Mutations: slices.Clone(muts)}
	if ev != nil {
		m.appendLocked(ev)
		e := *ev
		c.Event = &e
	}
	if len(m.changes) >= MaxChanges {
		m.changes = slices.Delete(m.changes, 0, len(m.changes)-MaxChanges+1)
	}
	m.changes = append(m.changes, c)
	m.n.notify()
	return m.gen, nil
}

// Watch implements Store.
func (m *MemStore) Watch(ctx context.Context, from uint64, fn func(Change) error) error {
	return watchLoop(ctx, &m.n, from, func(from uint64) ([]Change, error) {
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.gen <= from {
			return nil, nil
		}
		i := sort.Search(len(m.changes), func(i int) bool { return m.changes[i].Gen > from })
		if i == len(m.changes) || m.changes[i].Gen != from+1 {
			return nil, fmt.Errorf("watch from generation %d: %w", from, ErrCompacted)
		}
		return slices.Clone(m.changes[i:]), nil
	}, fn)
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
