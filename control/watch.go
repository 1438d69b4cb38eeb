package control

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

// The watch: every Service follows the store's change stream from its
// state's generation and applies the changes it did not make (another
// Service on the same store, another process on a shared backend): their
// objects are installed and published to its data path like its own
// commits (ApplyDelta when only records changed). Its own commits are
// installed when they are made and skipped when the watch brings them back
// (their generation is not above the state's). The commits of others apply
// to the state and the data path only: their host effects (ports, guest
// devices, hot-plug) are the business of the Service that made them.

// catchUpTimeout bounds a catch-up after a conflict.
const catchUpTimeout = 5 * time.Second

func (s *Service) startWatch() {
	ctx, stop := context.WithCancel(context.Background())
	s.stopWatch, s.watchDone = stop, make(chan struct{})
	go func() {
		defer close(s.watchDone)
		for ctx.Err() == nil {
			s.mu.RLock()
			from := s.st.gen
			s.mu.RUnlock()
			err := s.store.Watch(ctx, from, func(c Change) error {
				s.mu.Lock()
				defer s.mu.Unlock()
				return s.applyChangeLocked(c)
			})
			if ctx.Err() != nil {
				return
			}
			s.log.Warn("store watch ended, reloading", "from", from, "err", err)
			s.mu.Lock()
			if rerr := s.reloadLocked(); rerr != nil {
				s.log.Error("reload the store", "err", rerr)
			}
			s.mu.Unlock()
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
}

// errGap ends a watch whose next change is not the state's next
// generation: the state reloads.
var errGap = errors.New("change stream does not continue the state's generation")

// applyChangeLocked applies a change of the store to the state and the
// data path unless the state already has it.
func (s *Service) applyChangeLocked(c Change) error {
	if c.Gen <= s.st.gen {
		return nil // ours, or applied by a catch-up
	}
	if c.Gen != s.st.gen+1 {
		return errGap
	}
	tx := s.st.txn(Root)
	tx.noEffects = true
	for _, m := range c.Mutations {
		if err := tx.putStored(m.Bucket, m.Key, m.Value); err != nil {
			return err
		}
	}
	s.applyLocked(tx, c.Gen)
	return nil
}

// applyLocked installs tx, a change another writer committed as gen, and
// publishes it. The store holds it already: a refusal by the data path is
// logged (Check reports the difference) and the state installed anyway.
func (s *Service) applyLocked(tx *txn, gen uint64) {
	if err := s.publishLocked(tx, gen); err != nil {
		s.log.Error("the data path refused a change of the store", "gen", gen, "err", err)
		recs, override := s.records(tx)
		s.installLocked(tx, gen, recs, override)
	}
	s.st.gen = gen
}

// catchUpLocked brings the state up to the store after a conflict: it
// applies the changes the watch streams up to the store's generation the
// conflict reported, or reloads the store.
func (s *Service) catchUpLocked(conflict error) {
	var ce *ConflictError
	if !errors.As(conflict, &ce) {
		if err := s.reloadLocked(); err != nil {
			s.log.Error("reload the store", "err", err)
		}
		return
	}
	if s.st.gen >= ce.Current {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), catchUpTimeout)
	defer cancel()
	err := s.store.Watch(ctx, s.st.gen, func(c Change) error {
		if err := s.applyChangeLocked(c); err != nil {
			return err
		}
		if s.st.gen >= ce.Current {
			return errStopWatch
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStopWatch) {
		s.log.Warn("catch up through the watch failed, reloading", "err", err)
		if err := s.reloadLocked(); err != nil {
			s.log.Error("reload the store", "err", err)
		}
	}
}

// reloadLocked replaces the state by what the store holds (after a
// compacted or broken watch) and publishes the difference.
func (s *Service) reloadLocked() error {
	objs, gen, err := s.store.Load()
	if err != nil {
		return internal("load store", err)
	}
	if gen == s.st.gen {
		return nil
	}
	tx := s.st.txn(Root)
	tx.noEffects = true
	for _, b := range objectBuckets {
		for k, v := range objs[b] {
			if err := tx.putStored(b, k, v); err != nil {
				return err
			}
		}
	}
	for id := range s.st.subnets {
		if _, ok := objs[bucketSubnets][id]; !ok {
			tx.delSubnet(id)
		}
	}
	for id := range s.st.groups {
		if _, ok := objs[bucketGroups][id]; !ok {
			tx.delGroup(id)
		}
	}
	for id := range s.st.instances {
		if _, ok := objs[bucketInstances][id]; !ok {
			tx.delInstance(id)
		}
	}
	for id := range s.st.enis {
		if _, ok := objs[bucketENIs][id]; !ok {
			tx.delENI(id)
		}
	}
	for id := range s.st.eips {
		if _, ok := objs[bucketEIPs][id]; !ok {
			tx.delEIP(id)
		}
	}
	s.applyLocked(tx, gen)
	s.log.Info("state reloaded from the store", "gen", gen)
	return nil
}

// putStored stages the stored form of an object (value nil: its deletion).
func (tx *txn) putStored(bucket, key string, v []byte) error {
	dec := func(x any) error {
		if err := json.Unmarshal(v, x); err != nil {
			return internal("decode "+bucket+" "+key, err)
		}
		return nil
	}
	switch bucket {
	case bucketSubnets:
		if v == nil {
			tx.delSubnet(key)
			return nil
		}
		var x Subnet
		if err := dec(&x); err != nil {
			return err
		}
		tx.putSubnet(&x)
	case bucketGroups:
		if v == nil {
			tx.delGroup(key)
			return nil
		}
		var x Group
		if err := dec(&x); err != nil {
			return err
		}
		tx.putGroup(&x)
	case bucketInstances:
		if v == nil {
			tx.delInstance(key)
			return nil
		}
		var x Instance
		if err := dec(&x); err != nil {
			return err
		}
		tx.putInstance(&x)
	case bucketENIs:
		if v == nil {
			tx.delENI(key)
			return nil
		}
		var x ENI
		if err := dec(&x); err != nil {
			return err
		}
		tx.putENI(&x)
	case bucketEIPs:
		if v == nil {
			tx.delEIP(key)
			return nil
		}
		var x Address
		if err := dec(&x); err != nil {
			return err
		}
		tx.putEIP(&x)
	default:
		return internal("decode", errors.New("unknown bucket "+bucket))
	}
	return nil
}
