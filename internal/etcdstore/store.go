package etcdstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
)

// Mutation is one write of a commit: Value nil deletes the key. It has the
// fields of control.Mutation, so one converts to the other.
type Mutation struct {
	Bucket string `json:"bucket"`
	Key    string `json:"key"`
	Value  []byte `json:"value,omitempty"`
}

// Change is one committed transaction as Watch delivers it: the generation
// the commit created, its mutations and its audit event as the JSON the
// commit's EventFunc made (nil for a commit without one). Its JSON is that
// of control.Change.
type Change struct {
	Gen       uint64          `json:"gen"`
	Mutations []Mutation      `json:"mutations"`
	Event     json.RawMessage `json:"event,omitempty"`
}

// EventFunc returns the JSON of an audit event given the ID the store
// assigns it. Commit and AppendEvent may call it more than once (with a
// new ID each time another writer took the last one); the last call's
// JSON is the one stored.
type EventFunc func(id uint64) ([]byte, error)

// ErrConflict is the error of a Commit whose expected generation is not the
// store's current one: another writer committed in between.
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

// Defaults of Config.
const (
	DefaultPrefix     = "/roam/"
	DefaultMaxChanges = 10000
	DefaultMaxEvents  = 1 << 20
	DefaultTimeout    = 5 * time.Second
)

// Config says where the store is and how it behaves.
type Config struct {
	Endpoints []string // etcd client URLs, e.g. http://127.0.0.1:2379
	Prefix    string   // every key of the store starts with it; "": DefaultPrefix
	// Buckets, when not empty, are the only buckets Commit accepts, and
	// Load returns each of them (empty or not).
	Buckets    []string
	MaxChanges uint64        // commits the change log keeps for Watch; 0: DefaultMaxChanges
	MaxEvents  uint64        // audit events kept; 0: DefaultMaxEvents
	Timeout    time.Duration // of each request to etcd; 0: DefaultTimeout
}

// Store is a store shared by every process that opens the same etcd and
// prefix. Its keys, under the prefix:
//
//	obj/<bucket>/<key>   an object's value
//	gen                  the generation of the last commit, in decimal
//	changes/<gen>        the commit that made gen, as JSON (a Change); the last MaxChanges
//	eventseq             the ID of the last audit event, in decimal
//	events/<id>          an audit event's JSON; the last MaxEvents
//
// with <gen> and <id> in 20 decimal digits, so that key order is number
// order. A commit is one etcd transaction, conditional on gen.
type Store struct {
	cli *clientv3.Client
	cfg Config
	at  string // the endpoints, for errors
	seq seqCache
}

// seqCache is the last event ID this process saw; a commit that carries an
// event is conditional on it, and a wrong guess costs one round trip.
type seqCache struct{ v atomic.Uint64 }

// advance raises the cache to id unless it is already past it.
func (c *seqCache) advance(id uint64) {
	for {
		cur := c.v.Load()
		if cur >= id || c.v.CompareAndSwap(cur, id) {
			return
		}
	}
}

// Open connects to etcd and reads the store's state once, so that an
// unreachable etcd is an error here rather than at the first commit.
func Open(cfg Config) (*Store, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("etcd store: no endpoints")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if cfg.MaxChanges == 0 {
		cfg.MaxChanges = DefaultMaxChanges
	}
	if cfg.MaxEvents == 0 {
		cfg.MaxEvents = DefaultMaxEvents
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	for _, b := range cfg.Buckets {
		if err := checkBucket(b); err != nil {
			return nil, fmt.Errorf("etcd store: %w", err)
		}
	}
	s := &Store{cfg: cfg, at: strings.Join(cfg.Endpoints, ",")}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   cfg.Endpoints,
		DialTimeout: cfg.Timeout,
		Logger:      zap.NewNop(), // errors come back to the caller
		// Reconnect within a second once etcd is back (gRPC's default
		// backoff grows to two minutes).
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: cfg.Timeout,
		})},
	})
	if err != nil {
		return nil, s.wrap("connect", err)
	}
	s.cli = cli
	ctx, cancel := s.ctx(context.Background())
	defer cancel()
	resp, err := cli.Txn(ctx).Then(clientv3.OpGet(s.key("gen")), clientv3.OpGet(s.key("eventseq"))).Commit()
	if err == nil {
		var seq uint64
		if _, err = counter(resp.Responses[0]); err == nil {
			seq, err = counter(resp.Responses[1])
		}
		s.seq.v.Store(seq)
	}
	if err != nil {
		cli.Close()
		return nil, s.wrap("open", err)
	}
	return s, nil
}

// Close closes the connection to etcd.
func (s *Store) Close() error { return s.cli.Close() }

func (s *Store) ctx(parent context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(parent, s.cfg.Timeout)
}

func (s *Store) wrap(op string, err error) error {
	if errors.Is(err, rpctypes.ErrTooManyOps) {
		err = fmt.Errorf("%w (raise the etcd server's --max-txn-ops)", err)
	}
	return fmt.Errorf("etcd %s at %s: %w", op, s.at, err)
}

func (s *Store) key(name string) string { return s.cfg.Prefix + name }

func (s *Store) numKey(dir string, n uint64) string {
	return fmt.Sprintf("%s%s/%020d", s.cfg.Prefix, dir, n)
}

func (s *Store) objKey(bucket, key string) string {
	return s.cfg.Prefix + "obj/" + bucket + "/" + key
}

func checkBucket(b string) error {
	if b == "" || strings.Contains(b, "/") {
		return fmt.Errorf("bucket %q: want a non-empty name without /", b)
	}
	return nil
}

// counter parses the decimal counter a Get returned (0 when absent).
func counter(r *etcdserverpb.ResponseOp) (uint64, error) {
	return counterKVs(r.GetResponseRange().GetKvs())
}

func counterKVs(kvs []*mvccpb.KeyValue) (uint64, error) {
	if len(kvs) == 0 {
		return 0, nil
	}
	n, err := strconv.ParseUint(string(kvs[0].Value), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("counter %s: %w", kvs[0].Key, err)
	}
	return n, nil
}

// counterIs compares the counter at key with n (absent counts as 0).
func counterIs(key string, n uint64) clientv3.Cmp {
	if n == 0 {
		return clientv3.Compare(clientv3.CreateRevision(key), "=", 0)
	}
	return clientv3.Compare(clientv3.Value(key), "=", strconv.FormatUint(n, 10))
}

// Load returns every stored object, by bucket and key, and the generation
// of the last commit, read at one etcd revision (in pages, so a large store
// needs no large response).
func (s *Store) Load() (map[string]map[string][]byte, uint64, error) {
	for attempt := 0; ; attempt++ {
		objs, gen, err := s.load()
		if errors.Is(err, rpctypes.ErrCompacted) && attempt < 3 {
			continue // etcd compacted the revision between pages: read again
		}
		if err != nil {
			return nil, 0, s.wrap("load", err)
		}
		return objs, gen, nil
	}
}

const pageSize = 1000

func (s *Store) load() (map[string]map[string][]byte, uint64, error) {
	ctx, cancel := s.ctx(context.Background())
	resp, err := s.cli.Get(ctx, s.key("gen"))
	cancel()
	if err != nil {
		return nil, 0, err
	}
	gen, err := counterKVs(resp.Kvs)
	if err != nil {
		return nil, 0, err
	}
	objs := make(map[string]map[string][]byte, len(s.cfg.Buckets))
	for _, b := range s.cfg.Buckets {
		objs[b] = make(map[string][]byte)
	}
	dir := s.key("obj/")
	err = s.scan(resp.Header.Revision, dir, func(k string, v []byte) error {
		bucket, key, ok := strings.Cut(strings.TrimPrefix(k, dir), "/")
		if !ok {
			return fmt.Errorf("object key %q: no bucket", k)
		}
		if objs[bucket] == nil {
			objs[bucket] = make(map[string][]byte)
		}
		objs[bucket][key] = v
		return nil
	})
	return objs, gen, err
}

// scan calls fn with each key and value under dir at revision rev, in key
// order, a page at a time.
func (s *Store) scan(rev int64, dir string, fn func(k string, v []byte) error) error {
	return s.scanFrom(rev, dir, dir, 0, fn)
}

// scanFrom is scan from key from on, stopping after limit keys (0: none).
func (s *Store) scanFrom(rev int64, dir, from string, limit int, fn func(k string, v []byte) error) error {
	end := clientv3.GetPrefixRangeEnd(dir)
	for n := 0; ; {
		page := int64(pageSize)
		if limit > 0 && limit-n < pageSize {
			page = int64(limit - n)
		}
		ctx, cancel := s.ctx(context.Background())
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(page)}
		if rev > 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := s.cli.Get(ctx, from, opts...)
		cancel()
		if err != nil {
			return err
		}
		for _, kv := range resp.Kvs {
			if err := fn(string(kv.Key), kv.Value); err != nil {
				return err
			}
		}
		n += len(resp.Kvs)
		if !resp.More || len(resp.Kvs) == 0 || (limit > 0 && n >= limit) {
			return nil
		}
		if rev == 0 {
			rev = resp.Header.Revision // later pages at the first one's revision
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// Commit applies muts and, when ev is not nil, appends the event it makes
// (with the next event ID) to the audit log, in one etcd transaction, if
// and only if the store's generation is still expected; it returns the new
// generation, expected+1. Otherwise nothing changes and the error is a
// *ConflictError (errors.Is ErrConflict).
//
// When etcd does not answer (timeout, connection lost) Commit looks for
// its change once more: found, the commit took effect (nil); another
// writer's change in its place, a *ConflictError. Any other error means
// the outcome is unknown: the commit may still take effect, and Watch will
// deliver it if it does.
func (s *Store) Commit(expected uint64, muts []Mutation, ev EventFunc) (uint64, error) {
	for _, m := range muts {
		if err := s.checkMutation(m); err != nil {
			return 0, s.wrap("commit", err)
		}
	}
	gen := expected + 1
	changeKey := s.numKey("changes", gen)
	// etcd refuses a transaction that writes one key twice: the last
	// mutation of a key wins, as it would applied in order.
	last := make(map[string]int, len(muts))
	for i, m := range muts {
		last[s.objKey(m.Bucket, m.Key)] = i
	}
	for {
		seq := s.seq.v.Load()
		c := Change{Gen: gen, Mutations: muts}
		if ev != nil {
			b, err := ev(seq + 1)
			if err != nil {
				return 0, s.wrap("commit", fmt.Errorf("event: %w", err))
			}
			c.Event = b
		}
		rec, err := json.Marshal(c)
		if err != nil {
			return 0, s.wrap("commit", err)
		}
		cmps := []clientv3.Cmp{counterIs(s.key("gen"), expected)}
		ops := make([]clientv3.Op, 0, len(last)+6)
		for i, m := range muts {
			k := s.objKey(m.Bucket, m.Key)
			if last[k] != i {
				continue
			}
			if m.Value == nil {
				ops = append(ops, clientv3.OpDelete(k))
			} else {
				ops = append(ops, clientv3.OpPut(k, string(m.Value)))
			}
		}
		ops = append(ops, clientv3.OpPut(s.key("gen"), strconv.FormatUint(gen, 10)), clientv3.OpPut(changeKey, string(rec)))
		if gen > s.cfg.MaxChanges {
			ops = append(ops, s.trim("changes", gen-s.cfg.MaxChanges+1))
		}
		if ev != nil {
			cmps = append(cmps, counterIs(s.key("eventseq"), seq))
			ops = append(ops, s.eventOps(seq+1, c.Event)...)
		}
		ctx, cancel := s.ctx(context.Background())
		resp, err := s.cli.Txn(ctx).If(cmps...).Then(ops...).
			Else(clientv3.OpGet(s.key("gen")), clientv3.OpGet(s.key("eventseq"))).Commit()
		cancel()
		if err != nil && refused(err) {
			return 0, s.wrap("commit", err)
		}
		if err != nil {
			return s.resolve(expected, changeKey, rec, err)
		}
		if resp.Succeeded {
			if ev != nil {
				s.seq.advance(seq + 1)
			}
			return gen, nil
		}
		cur, err := counter(resp.Responses[0])
		if err != nil {
			return 0, s.wrap("commit", err)
		}
		curSeq, err := counter(resp.Responses[1])
		if err != nil {
			return 0, s.wrap("commit", err)
		}
		if cur != expected {
			return 0, &ConflictError{Expected: expected, Current: cur}
		}
		if curSeq == seq {
			return 0, s.wrap("commit", fmt.Errorf("transaction refused at generation %d, event %d", cur, curSeq))
		}
		s.seq.v.Store(curSeq) // another writer appended an event: again with the next ID
	}
}

func (s *Store) checkMutation(m Mutation) error {
	if err := checkBucket(m.Bucket); err != nil {
		return err
	}
	if len(s.cfg.Buckets) > 0 && !contains(s.cfg.Buckets, m.Bucket) {
		return fmt.Errorf("unknown bucket %q", m.Bucket)
	}
	if m.Key == "" {
		return fmt.Errorf("bucket %s: empty key", m.Bucket)
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// trim deletes the numbered keys of dir below n.
func (s *Store) trim(dir string, n uint64) clientv3.Op {
	return clientv3.OpDelete(s.numKey(dir, 0), clientv3.WithRange(s.numKey(dir, n)))
}

// eventOps store event id and advance eventseq to it.
func (s *Store) eventOps(id uint64, ev []byte) []clientv3.Op {
	ops := []clientv3.Op{clientv3.OpPut(s.key("eventseq"), strconv.FormatUint(id, 10)), clientv3.OpPut(s.numKey("events", id), string(ev))}
	if id > s.cfg.MaxEvents {
		ops = append(ops, s.trim("events", id-s.cfg.MaxEvents+1))
	}
	return ops
}

// refused says whether etcd refused a request outright (it did not apply
// it): too large, too many operations, not allowed.
func refused(err error) bool {
	var ee rpctypes.EtcdError
	if !errors.As(err, &ee) {
		return false
	}
	switch ee.Code() {
	case codes.InvalidArgument, codes.FailedPrecondition, codes.ResourceExhausted, codes.PermissionDenied, codes.Unauthenticated, codes.OutOfRange:
		return true
	}
	return false
}

// resolve decides the outcome of a commit whose answer was lost (err): it
// reads the change at expected+1 and compares it with what the commit
// wrote.
func (s *Store) resolve(expected uint64, changeKey string, rec []byte, err error) (uint64, error) {
	ctx, cancel := s.ctx(context.Background())
	defer cancel()
	resp, rerr := s.cli.Txn(ctx).Then(clientv3.OpGet(changeKey), clientv3.OpGet(s.key("gen"))).Commit()
	if rerr != nil {
		return 0, s.wrap("commit", fmt.Errorf("%w (outcome unknown: %v)", err, rerr))
	}
	if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) == 1 {
		if bytes.Equal(kvs[0].Value, rec) {
			return expected + 1, nil
		}
		cur, _ := counter(resp.Responses[1])
		return 0, &ConflictError{Expected: expected, Current: cur}
	}
	return 0, s.wrap("commit", fmt.Errorf("%w (outcome unknown: the change is not in the store yet)", err))
}

// AppendEvent appends the event ev makes to the audit log alone (refused
// operations) and returns its ID.
func (s *Store) AppendEvent(ev EventFunc) (uint64, error) {
	for {
		seq := s.seq.v.Load()
		b, err := ev(seq + 1)
		if err != nil {
			return 0, s.wrap("append event", err)
		}
		ctx, cancel := s.ctx(context.Background())
		resp, err := s.cli.Txn(ctx).If(counterIs(s.key("eventseq"), seq)).Then(s.eventOps(seq+1, b)...).
			Else(clientv3.OpGet(s.key("eventseq"))).Commit()
		cancel()
		if err != nil {
			return 0, s.wrap("append event", err)
		}
		if resp.Succeeded {
			s.seq.advance(seq + 1)
			return seq + 1, nil
		}
		cur, err := counter(resp.Responses[0])
		if err != nil {
			return 0, s.wrap("append event", err)
		}
		s.seq.v.Store(cur)
	}
}

// Events returns up to limit (<= 0: all) audit events with ID > after,
// oldest first, as the JSON their EventFunc made.
func (s *Store) Events(after uint64, limit int) ([]json.RawMessage, error) {
	var out []json.RawMessage
	err := s.scanFrom(0, s.key("events/"), s.numKey("events", after+1), limit, func(_ string, v []byte) error {
		out = append(out, json.RawMessage(v))
		return nil
	})
	if err != nil {
		return nil, s.wrap("events", err)
	}
	return out, nil
}
