package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"roam/internal/etcdstore"
)

// EtcdStore is the Store of several hosts: every object, the change log and
// the audit log in etcd (package internal/etcdstore), shared by each roamd
// that opens the same endpoints and prefix.
type EtcdStore struct {
	s         *etcdstore.Store
	endpoints []string
	prefix    string
}

// OpenEtcd connects to etcd at endpoints; the store's keys start with
// prefix ("": etcdstore.DefaultPrefix).
func OpenEtcd(endpoints []string, prefix string) (*EtcdStore, error) {
	s, err := etcdstore.Open(etcdstore.Config{Endpoints: endpoints, Prefix: prefix, Buckets: objectBuckets,
		MaxChanges: MaxChanges, MaxEvents: MaxEvents})
	if err != nil {
		return nil, err
	}
	return &EtcdStore{s: s, endpoints: endpoints, prefix: prefix}, nil
}

// Load implements Store.
func (e *EtcdStore) Load() (map[string]map[string][]byte, uint64, error) { return e.s.Load() }

// Commit implements Store.
func (e *EtcdStore) Commit(expected uint64, muts []Mutation, ev *Event) (uint64, error) {
	m := make([]etcdstore.Mutation, len(muts))
	for i, mu := range muts {
		m[i] = etcdstore.Mutation(mu)
	}
	var id uint64
	if ev != nil {
		id = ev.ID
	}
	gen, err := e.s.Commit(expected, m, eventJSON(ev))
	if err != nil && ev != nil {
		ev.ID = id // not appended: as it was
	}
	var ce *etcdstore.ConflictError
	if errors.As(err, &ce) {
		return 0, &ConflictError{Expected: ce.Expected, Current: ce.Current}
	}
	return gen, err
}

// eventJSON is ev as etcdstore stores it, with the ID it assigns.
func eventJSON(ev *Event) etcdstore.EventFunc {
	if ev == nil {
		return nil
	}
	return func(id uint64) ([]byte, error) {
		ev.ID = id
		return json.Marshal(ev)
	}
}

// Watch implements Store.
func (e *EtcdStore) Watch(ctx context.Context, from uint64, fn func(Change) error) error {
	err := e.s.Watch(ctx, from, func(c etcdstore.Change) error {
		ch := Change{Gen: c.Gen, Mutations: make([]Mutation, len(c.Mutations))}
		for i, m := range c.Mutations {
			ch.Mutations[i] = Mutation(m)
		}
		if c.Event != nil {
			ch.Event = new(Event)
			if err := json.Unmarshal(c.Event, ch.Event); err != nil {
				return fmt.Errorf("store: event of change %d: %w", c.Gen, err)
			}
		}
		return fn(ch)
	})
	if errors.Is(err, etcdstore.ErrCompacted) {
		return fmt.Errorf("%v: %w", err, ErrCompacted)
	}
	return err
}

// AppendEvent implements Store.
func (e *EtcdStore) AppendEvent(ev *Event) error {
	_, err := e.s.AppendEvent(eventJSON(ev))
	return err
}

// Events implements Store.
func (e *EtcdStore) Events(after uint64, limit int) ([]Event, error) {
	raw, err := e.s.Events(after, limit)
	if err != nil {
		return nil, err
	}
	evs := make([]Event, len(raw))
	for i, r := range raw {
		if err := json.Unmarshal(r, &evs[i]); err != nil {
			return nil, fmt.Errorf("store: event %s: %w", r, err)
		}
	}
	return evs, nil
}

// Close implements Store.
func (e *EtcdStore) Close() error { return e.s.Close() }
