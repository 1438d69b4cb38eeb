package etcdstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// errResync makes Watch read the change log again from the last generation
// it delivered: etcd compacted the revision the watch was at, or a change
// came out of order.
var errResync = errors.New("resync")

// Watch calls fn, in generation order and without gaps, with every change
// committed after generation from: those already committed first (read at
// one revision), then each new one as any writer commits it (an etcd watch
// from the next revision), until ctx is done (it returns ctx.Err()) or fn
// returns an error (it returns that error). When the changes after from are
// no longer kept it returns an error wrapping ErrCompacted.
//
// A lost connection to etcd is not an error: the client reconnects and
// the watch resumes at the revision after the last one it saw. Should etcd
// have compacted that revision meanwhile, or the member have lost its
// leader, Watch reads the change log again from the last generation it
// delivered.
func (s *Store) Watch(ctx context.Context, from uint64, fn func(Change) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for {
		rev, err := s.catchUp(ctx, &from, fn)
		if errors.Is(err, rpctypes.ErrCompacted) {
			continue
		}
		if err != nil {
			return err
		}
		err = s.follow(ctx, &from, rev+1, fn)
		if err != errResync {
			return err
		}
	}
}

// catchUp delivers the changes after *from that are committed at the
// revision it reads, and returns that revision.
func (s *Store) catchUp(ctx context.Context, from *uint64, fn func(Change) error) (int64, error) {
	rctx, cancel := s.ctx(ctx)
	resp, err := s.cli.Get(rctx, s.key("gen"))
	cancel()
	if err != nil {
		return 0, s.watchErr(ctx, err)
	}
	gen, err := counterKVs(resp.Kvs)
	if err != nil {
		return 0, s.wrap("watch", err)
	}
	rev := resp.Header.Revision
	if gen <= *from {
		return rev, nil
	}
	dir := s.key("changes/")
	first := true
	err = s.scanFrom(rev, dir, s.numKey("changes", *from+1), 0, func(k string, v []byte) error {
		g, err := strconv.ParseUint(strings.TrimPrefix(k, dir), 10, 64)
		if err != nil {
			return fmt.Errorf("change key %q: %w", k, err)
		}
		if g != *from+1 {
			if first {
				return fmt.Errorf("watch from generation %d (the oldest kept is %d): %w", *from, g, ErrCompacted)
			}
			return fmt.Errorf("change log has generation %d after %d", g, *from)
		}
		first = false
		return s.deliver(g, v, from, fn)
	})
	if err == nil && first {
		err = fmt.Errorf("watch from generation %d (the store is at %d, no change kept after): %w", *from, gen, ErrCompacted)
	}
	if errors.Is(err, rpctypes.ErrCompacted) {
		return 0, err
	}
	if err != nil {
		return 0, s.watchErr(ctx, err)
	}
	return rev, nil
}

// deliver decodes the change of generation g and hands it to fn.
func (s *Store) deliver(g uint64, v []byte, from *uint64, fn func(Change) error) error {
	var c Change
	if err := json.Unmarshal(v, &c); err != nil {
		return fmt.Errorf("change %d: %w", g, err)
	}
	if c.Gen != g {
		return fmt.Errorf("change at key %d says generation %d", g, c.Gen)
	}
	if err := fn(c); err != nil {
		return callbackError{err}
	}
	*from = g
	return nil
}

// callbackError carries fn's error through Watch unwrapped.
type callbackError struct{ err error }

func (e callbackError) Error() string { return e.err.Error() }

// watchErr returns fn's error as it is, ctx's error when it is done, and
// any other wrapped.
func (s *Store) watchErr(ctx context.Context, err error) error {
	var cb callbackError
	if errors.As(err, &cb) {
		return cb.err
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return s.wrap("watch", err)
}

// follow delivers the changes etcd's watch reports from revision rev on.
func (s *Store) follow(ctx context.Context, from *uint64, rev int64, fn func(Change) error) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	dir := s.key("changes/")
	// A member cut off from the cluster's leader ends the watch (rather
	// than leaving it silent); the log is read again when there is one.
	wch := s.cli.Watch(clientv3.WithRequireLeader(wctx), dir, clientv3.WithPrefix(), clientv3.WithRev(rev))
	for wr := range wch {
		if wr.CompactRevision != 0 {
			return errResync
		}
		if err := wr.Err(); errors.Is(err, rpctypes.ErrNoLeader) {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(100 * time.Millisecond):
				return errResync
			}
		} else if err != nil {
			return s.watchErr(ctx, err)
		}
		for _, ev := range wr.Events {
			if ev.Type != mvccpb.PUT {
				continue // the trimming of old changes
			}
			g, err := strconv.ParseUint(strings.TrimPrefix(string(ev.Kv.Key), dir), 10, 64)
			if err != nil {
				return s.wrap("watch", fmt.Errorf("change key %q: %w", ev.Kv.Key, err))
			}
			switch {
			case g <= *from:
				continue // already delivered
			case g != *from+1:
				return errResync
			}
			if err := s.deliver(g, ev.Kv.Value, from, fn); err != nil {
				return s.watchErr(ctx, err)
			}
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return s.wrap("watch", errors.New("watch channel closed (client closed?)"))
}
