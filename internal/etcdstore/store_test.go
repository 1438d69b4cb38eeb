package etcdstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"roam/internal/etcdstore"
	"roam/internal/etcdstore/etcdtest"
)

// open opens a store on srv under prefix; it is closed when t ends.
func open(t testing.TB, srv *etcdtest.Server, cfg etcdstore.Config) *etcdstore.Store {
	t.Helper()
	cfg.Endpoints = []string{srv.Endpoint}
	if cfg.Prefix == "" {
		cfg.Prefix = "/" + t.Name() + "/"
	}
	s, err := etcdstore.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func put(bucket, key, value string) etcdstore.Mutation {
	return etcdstore.Mutation{Bucket: bucket, Key: key, Value: []byte(value)}
}

func del(bucket, key string) etcdstore.Mutation {
	return etcdstore.Mutation{Bucket: bucket, Key: key}
}

// event is the audit event of the tests, with the ID the store assigns.
type event struct {
	ID   uint64 `json:"id"`
	Text string `json:"text"`
}

func mkEvent(text string) etcdstore.EventFunc {
	return func(id uint64) ([]byte, error) { return json.Marshal(event{ID: id, Text: text}) }
}

func decodeEvent(t testing.TB, b []byte) event {
	t.Helper()
	var e event
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatalf("event %s: %v", b, err)
	}
	return e
}

func mustLoad(t testing.TB, s *etcdstore.Store) (map[string]map[string][]byte, uint64) {
	t.Helper()
	objs, gen, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	return objs, gen
}

// strs turns Load's objects into strings, for comparison.
func strs(objs map[string]map[string][]byte) map[string]map[string]string {
	out := make(map[string]map[string]string)
	for b, kv := range objs {
		out[b] = make(map[string]string)
		for k, v := range kv {
			out[b][k] = string(v)
		}
	}
	return out
}

// collect watches s from generation from until it has n changes (or the
// timeout).
func collect(t testing.TB, s *etcdstore.Store, from uint64, n int, timeout time.Duration) []etcdstore.Change {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var got []etcdstore.Change
	errDone := errors.New("done")
	err := s.Watch(ctx, from, func(c etcdstore.Change) error {
		got = append(got, c)
		if len(got) == n {
			return errDone
		}
		return nil
	})
	if !errors.Is(err, errDone) {
		t.Fatalf("watch from %d: got %d of %d changes: %v", from, len(got), n, err)
	}
	return got
}

// checkSeq fails unless changes have the generations from+1, from+2, ...
func checkSeq(t testing.TB, changes []etcdstore.Change, from uint64) {
	t.Helper()
	for i, c := range changes {
		if c.Gen != from+uint64(i)+1 {
			t.Fatalf("change %d has generation %d, want %d", i, c.Gen, from+uint64(i)+1)
		}
	}
}

func TestCommitLoad(t *testing.T) {
	srv := etcdtest.Start(t, etcdtest.Options{})
	buckets := []string{"subnets", "enis"}
	tests := []struct {
		name    string
		commits [][]etcdstore.Mutation
		want    map[string]map[string]string
		wantErr string // of the last commit
	}{
		{"empty store", nil, map[string]map[string]string{"subnets": {}, "enis": {}}, ""},
		{"puts", [][]etcdstore.Mutation{{put("subnets", "s1", `{"a":1}`), put("enis", "e1", "x")}},
			map[string]map[string]string{"subnets": {"s1": `{"a":1}`}, "enis": {"e1": "x"}}, ""},
		{"overwrite and delete", [][]etcdstore.Mutation{{put("subnets", "s1", "1"), put("subnets", "s2", "2")}, {put("subnets", "s1", "one"), del("subnets", "s2")}},
			map[string]map[string]string{"subnets": {"s1": "one"}, "enis": {}}, ""},
		{"one key twice in a commit: the last wins", [][]etcdstore.Mutation{{put("enis", "e", "a"), del("enis", "e"), put("enis", "e", "b")}},
			map[string]map[string]string{"subnets": {}, "enis": {"e": "b"}}, ""},
		{"delete of a missing key", [][]etcdstore.Mutation{{del("enis", "nope")}},
			map[string]map[string]string{"subnets": {}, "enis": {}}, ""},
		{"key with slashes", [][]etcdstore.Mutation{{put("enis", "a/b/c", "v")}},
			map[string]map[string]string{"subnets": {}, "enis": {"a/b/c": "v"}}, ""},
		{"unknown bucket refused", [][]etcdstore.Mutation{{put("enis", "e", "v")}, {put("enis", "f", "v"), put("nope", "k", "v")}},
			map[string]map[string]string{"subnets": {}, "enis": {"e": "v"}}, `unknown bucket "nope"`},
		{"many objects in one commit", [][]etcdstore.Mutation{manyPuts("subnets", 2500)},
			map[string]map[string]string{"subnets": manyWant(2500), "enis": {}}, ""},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t, srv, etcdstore.Config{Prefix: fmt.Sprintf("/load%d/", i), Buckets: buckets})
			var gen uint64
			var err error
			for _, muts := range tt.commits {
				var g uint64
				g, err = s.Commit(gen, muts, nil)
				if err == nil {
					if g != gen+1 {
						t.Fatalf("commit on %d made generation %d", gen, g)
					}
					gen = g
				}
			}
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatal(err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("error %v, want %q", err, tt.wantErr)
			}
			// A second client sees the same state.
			objs, g := mustLoad(t, open(t, srv, etcdstore.Config{Prefix: fmt.Sprintf("/load%d/", i), Buckets: buckets}))
			if g != gen {
				t.Fatalf("Load generation %d, want %d", g, gen)
			}
			if got := strs(objs); !mapsEqual(got, tt.want) {
				t.Fatalf("Load = %v, want %v", got, tt.want)
			}
		})
	}
}

func manyPuts(bucket string, n int) []etcdstore.Mutation {
	var m []etcdstore.Mutation
	for i := range n {
		m = append(m, put(bucket, fmt.Sprintf("k%05d", i), fmt.Sprint(i)))
	}
	return m
}

func manyWant(n int) map[string]string {
	w := make(map[string]string)
	for i := range n {
		w[fmt.Sprintf("k%05d", i)] = fmt.Sprint(i)
	}
	return w
}

func mapsEqual(a, b map[string]map[string]string) bool {
	return maps.EqualFunc(a, b, func(x, y map[string]string) bool { return maps.Equal(x, y) })
}

func TestConflict(t *testing.T) {
	srv := etcdtest.Start(t, etcdtest.Options{})
	tests := []struct {
		name     string
		expected uint64 // base of the refused commit; the store is at 3
		ev       bool
	}{
		{"stale", 2, false},
		{"stale with an event", 1, true},
		{"from the future", 7, true},
		{"zero on a used store", 0, false},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t, srv, etcdstore.Config{Prefix: fmt.Sprintf("/conflict%d/", i)})
			for g := range uint64(3) {
				if _, err := s.Commit(g, []etcdstore.Mutation{put("b", fmt.Sprint(g), "v")}, mkEvent("ok")); err != nil {
					t.Fatal(err)
				}
			}
			before, _ := mustLoad(t, s)
			var ev etcdstore.EventFunc
			if tt.ev {
				ev = mkEvent("refused")
			}
			_, err := s.Commit(tt.expected, []etcdstore.Mutation{put("b", "new", "v"), del("b", "0")}, ev)
			var ce *etcdstore.ConflictError
			if !errors.Is(err, etcdstore.ErrConflict) || !errors.As(err, &ce) || ce.Expected != tt.expected || ce.Current != 3 {
				t.Fatalf("commit on %d: %v, want a conflict with 3", tt.expected, err)
			}
			after, gen := mustLoad(t, s)
			if gen != 3 || !mapsEqual(strs(before), strs(after)) {
				t.Fatalf("after the refused commit: generation %d, objects %v; want 3, %v", gen, strs(after), strs(before))
			}
			evs, err := s.Events(0, 0)
			if err != nil || len(evs) != 3 {
				t.Fatalf("events after the refused commit: %d, %v; want the 3 committed", len(evs), err)
			}
			// Nothing after generation 3 in the change log: a watcher
			// from 3 sees the next real commit as generation 4.
			if _, err := s.Commit(3, []etcdstore.Mutation{put("b", "4", "v")}, nil); err != nil {
				t.Fatal(err)
			}
			if got := collect(t, s, 3, 1, 5*time.Second); got[0].Mutations[0].Key != "4" {
				t.Fatalf("change 4 is %+v", got[0])
			}
		})
	}
}

// TestRace has two clients commit on the same generation, round after
// round: exactly one wins each round, and the change log has each
// generation once.
func TestRace(t *testing.T) {
	srv := etcdtest.Start(t, etcdtest.Options{})
	const rounds = 200
	tests := []struct {
		name string
		ev   bool
	}{{"objects only", false}, {"with events", true}}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := fmt.Sprintf("/race%d/", i)
			stores := []*etcdstore.Store{open(t, srv, etcdstore.Config{Prefix: prefix}), open(t, srv, etcdstore.Config{Prefix: prefix})}
			winners := make([]int, rounds)
			for r := range rounds {
				var wg sync.WaitGroup
				errs := make([]error, 2)
				start := make(chan struct{})
				for c, s := range stores {
					wg.Go(func() {
						var ev etcdstore.EventFunc
						if tt.ev {
							ev = mkEvent(fmt.Sprintf("c%d r%d", c, r))
						}
						<-start
						g, err := s.Commit(uint64(r), []etcdstore.Mutation{put("b", "k", fmt.Sprintf("c%d r%d", c, r)), put("b", fmt.Sprintf("c%d", c), fmt.Sprint(r))}, ev)
						if err == nil && g != uint64(r)+1 {
							err = fmt.Errorf("generation %d", g)
						}
						errs[c] = err
					})
				}
				close(start)
				wg.Wait()
				won := 0
				for c, err := range errs {
					switch {
					case err == nil:
						won++
						winners[r] = c
					case !errors.Is(err, etcdstore.ErrConflict):
						t.Fatalf("round %d client %d: %v", r, c, err)
					}
				}
				if won != 1 {
					t.Fatalf("round %d: %d winners (%v)", r, won, errs)
				}
			}
			changes := collect(t, stores[1], 0, rounds, 10*time.Second)
			checkSeq(t, changes, 0)
			var lastID uint64
			for r, c := range changes {
				want := fmt.Sprintf("c%d r%d", winners[r], r)
				if got := string(c.Mutations[0].Value); got != want {
					t.Fatalf("change %d wrote %q, want the winner's %q", c.Gen, got, want)
				}
				if tt.ev {
					e := decodeEvent(t, c.Event)
					if e.Text != want || e.ID != lastID+1 {
						t.Fatalf("change %d has event %+v, want %q with ID %d", c.Gen, e, want, lastID+1)
					}
					lastID = e.ID
				}
			}
			objs, gen := mustLoad(t, stores[0])
			if gen != rounds || string(objs["b"]["k"]) != fmt.Sprintf("c%d r%d", winners[rounds-1], rounds-1) {
				t.Fatalf("Load: generation %d, k = %q", gen, objs["b"]["k"])
			}
		})
	}
}

func TestWatch(t *testing.T) {
	srv := etcdtest.Start(t, etcdtest.Options{})
	const committed, live = 30, 20
	tests := []struct {
		name string
		from uint64
	}{{"from 0", 0}, {"from the middle", 17}, {"from the last", committed}}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := fmt.Sprintf("/watch%d/", i)
			w, c := open(t, srv, etcdstore.Config{Prefix: prefix}), open(t, srv, etcdstore.Config{Prefix: prefix})
			commit := func(g uint64) {
				var ev etcdstore.EventFunc
				if g%3 == 0 {
					ev = mkEvent(fmt.Sprint(g + 1))
				}
				if _, err := c.Commit(g, []etcdstore.Mutation{put("b", fmt.Sprint(g+1), "v"), del("b", fmt.Sprint(g))}, ev); err != nil {
					t.Error(err)
				}
			}
			for g := range uint64(committed) {
				commit(g)
			}
			// The other client commits while w watches: the committed
			// changes come first, then the live ones, in order.
			var wg sync.WaitGroup
			wg.Go(func() {
				for g := uint64(committed); g < committed+live; g++ {
					commit(g)
					time.Sleep(time.Millisecond)
				}
			})
			n := int(committed + live - tt.from)
			got := collect(t, w, tt.from, n, 10*time.Second)
			wg.Wait()
			checkSeq(t, got, tt.from)
			for _, ch := range got {
				if len(ch.Mutations) != 2 || ch.Mutations[0].Key != fmt.Sprint(ch.Gen) || ch.Mutations[1].Value != nil {
					t.Fatalf("change %d: %+v", ch.Gen, ch.Mutations)
				}
				if hasEv := (ch.Gen-1)%3 == 0; hasEv != (ch.Event != nil) {
					t.Fatalf("change %d: event %s", ch.Gen, ch.Event)
				}
				if ch.Event != nil && decodeEvent(t, ch.Event).Text != fmt.Sprint(ch.Gen) {
					t.Fatalf("change %d: event %s", ch.Gen, ch.Event)
				}
			}
		})
	}
	t.Run("until ctx is done", func(t *testing.T) {
		s := open(t, srv, etcdstore.Config{Prefix: "/watchctx/"})
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		if err := s.Watch(ctx, 0, func(etcdstore.Change) error { return nil }); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Watch = %v, want the context's error", err)
		}
	})
}

func TestCompacted(t *testing.T) {
	srv := etcdtest.Start(t, etcdtest.Options{})
	s := open(t, srv, etcdstore.Config{MaxChanges: 5})
	for g := range uint64(20) {
		if _, err := s.Commit(g, []etcdstore.Mutation{put("b", "k", fmt.Sprint(g+1))}, nil); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		from      uint64
		compacted bool
	}{{0, true}, {14, true}, {15, false}, {19, false}}
	for _, tt := range tests {
		t.Run(fmt.Sprint("from ", tt.from), func(t *testing.T) {
			if !tt.compacted {
				got := collect(t, s, tt.from, int(20-tt.from), 5*time.Second)
				checkSeq(t, got, tt.from)
				return
			}
			err := s.Watch(context.Background(), tt.from, func(etcdstore.Change) error {
				t.Fatal("a change delivered")
				return nil
			})
			if !errors.Is(err, etcdstore.ErrCompacted) {
				t.Fatalf("Watch from %d = %v, want ErrCompacted", tt.from, err)
			}
		})
	}
}

// TestEtcdCompaction compacts etcd's own history past the revision a
// watcher is about to follow from: the watcher reads the change log again
// and misses nothing.
func TestEtcdCompaction(t *testing.T) {
	srv := etcdtest.Start(t, etcdtest.Options{})
	s := open(t, srv, etcdstore.Config{})
	commit := func(g uint64) {
		if _, err := s.Commit(g, []etcdstore.Mutation{put("b", "k", fmt.Sprint(g+1))}, nil); err != nil {
			t.Fatal(err)
		}
	}
	for g := range uint64(5) {
		commit(g)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{srv.Endpoint}})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var got []etcdstore.Change
	errDone := errors.New("done")
	first := true
	err = s.Watch(ctx, 0, func(c etcdstore.Change) error {
		if first {
			// Watch read the log at some revision; more commits and a
			// compaction of etcd past that revision, before it follows.
			first = false
			for g := uint64(5); g < 10; g++ {
				commit(g)
			}
			r, err := cli.Get(ctx, "any")
			if err != nil {
				return err
			}
			if _, err := cli.Compact(ctx, r.Header.Revision); err != nil {
				return err
			}
		}
		got = append(got, c)
		if len(got) == 10 {
			return errDone
		}
		return nil
	})
	if !errors.Is(err, errDone) {
		t.Fatalf("Watch: %v after %d changes", err, len(got))
	}
	checkSeq(t, got, 0)
}

func TestEvents(t *testing.T) {
	srv := etcdtest.Start(t, etcdtest.Options{})
	a, b := open(t, srv, etcdstore.Config{}), open(t, srv, etcdstore.Config{})
	// Two clients append and commit, each with its own (stale) idea of the
	// last event ID.
	var texts []string
	var gen uint64
	for i := range 12 {
		s := []*etcdstore.Store{a, b}[i%2]
		text := fmt.Sprint("e", i)
		texts = append(texts, text)
		if i%3 == 0 {
			g, err := s.Commit(gen, []etcdstore.Mutation{put("b", "k", text)}, mkEvent(text))
			if err != nil {
				t.Fatal(err)
			}
			gen = g
			continue
		}
		id, err := s.AppendEvent(mkEvent(text))
		if err != nil || id != uint64(i+1) {
			t.Fatalf("append %d: id %d, %v", i, id, err)
		}
	}
	tests := []struct {
		after uint64
		limit int
		want  []string
	}{
		{0, 0, texts},
		{0, 5, texts[:5]},
		{7, 0, texts[7:]},
		{7, 2, texts[7:9]},
		{12, 0, nil},
		{100, 3, nil},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("after %d limit %d", tt.after, tt.limit), func(t *testing.T) {
			evs, err := b.Events(tt.after, tt.limit)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for i, raw := range evs {
				e := decodeEvent(t, raw)
				if e.ID != tt.after+uint64(i)+1 {
					t.Fatalf("event %d has ID %d, want %d", i, e.ID, tt.after+uint64(i)+1)
				}
				got = append(got, e.Text)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("events %v, want %v", got, tt.want)
			}
		})
	}
	t.Run("trimmed to MaxEvents", func(t *testing.T) {
		s := open(t, srv, etcdstore.Config{Prefix: "/trim/", MaxEvents: 4})
		for range 10 {
			if _, err := s.AppendEvent(mkEvent("x")); err != nil {
				t.Fatal(err)
			}
		}
		evs, err := s.Events(0, 0)
		if err != nil || len(evs) != 4 || decodeEvent(t, evs[0]).ID != 7 {
			t.Fatalf("events %s, %v; want IDs 7 to 10", evs, err)
		}
	})
}

// TestRefused: a commit larger than the etcd server accepts fails at once,
// naming the server flag to raise, and writes nothing.
func TestRefused(t *testing.T) {
	srv := etcdtest.Start(t, etcdtest.Options{Args: []string{"--max-txn-ops", "128"}})
	s := open(t, srv, etcdstore.Config{})
	_, err := s.Commit(0, manyPuts("b", 200), mkEvent("big"))
	if err == nil || errors.Is(err, etcdstore.ErrConflict) || !strings.Contains(err.Error(), "--max-txn-ops") || strings.Contains(err.Error(), "unknown") {
		t.Fatalf("commit of 200 objects: %v, want a refusal naming --max-txn-ops", err)
	}
	objs, gen := mustLoad(t, s)
	if evs, _ := s.Events(0, 0); gen != 0 || len(objs) != 0 || len(evs) != 0 {
		t.Fatalf("after the refusal: generation %d, %d buckets, %d events", gen, len(objs), len(evs))
	}
	if _, err := s.Commit(0, manyPuts("b", 100), nil); err != nil {
		t.Fatalf("commit of 100 objects: %v", err)
	}
}

func TestOpenErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  etcdstore.Config
		want string
	}{
		{"no endpoints", etcdstore.Config{}, "no endpoints"},
		{"bad bucket", etcdstore.Config{Endpoints: []string{"http://127.0.0.1:1"}, Buckets: []string{"a/b"}}, `bucket "a/b"`},
		{"nothing listening", etcdstore.Config{Endpoints: []string{"http://127.0.0.1:1"}, Timeout: 300 * time.Millisecond}, "etcd open at http://127.0.0.1:1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := etcdstore.Open(tt.cfg)
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Open: %v, want %q", err, tt.want)
			}
		})
	}
}

// TestRestartUnderLoad stops (or kills) etcd in the middle of a stream of
// commits and starts it again on the same data: every commit that returned
// nil is in Load and in the watch, in order, none twice, and the watcher
// (which never returns) resumes by itself.
func TestRestartUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts etcd: not in -short")
	}
	tests := []struct {
		name string
		kill bool
	}{{"stopped", false}, {"killed", true}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := etcdtest.Start(t, etcdtest.Options{})
			c := open(t, srv, etcdstore.Config{Prefix: "/restart/", Timeout: time.Second})
			w := open(t, srv, etcdstore.Config{Prefix: "/restart/", Timeout: time.Second})

			var mu sync.Mutex
			var watched []etcdstore.Change
			ctx, cancel := context.WithCancel(context.Background())
			watchDone := make(chan error, 1)
			go func() {
				watchDone <- w.Watch(ctx, 0, func(ch etcdstore.Change) error {
					mu.Lock()
					defer mu.Unlock()
					watched = append(watched, ch)
					return nil
				})
			}()
			defer func() {
				cancel()
				if err := <-watchDone; !errors.Is(err, context.Canceled) {
					t.Errorf("Watch ended with %v", err)
				}
			}()

			const before, after = 200, 200
			acked := make(map[uint64]string) // generation -> the key its commit wrote
			var gen uint64
			var failed, unknownApplied int
			var restarted chan error
			var outage time.Duration
			deadline := time.Now().Add(60 * time.Second)
			for i := 0; len(acked) < before+after; i++ {
				if time.Now().After(deadline) {
					t.Fatalf("%d commits acknowledged in 60 s", len(acked))
				}
				if len(acked) == before && restarted == nil {
					restarted = make(chan error, 1)
					go func() {
						t0 := time.Now()
						stop := srv.Stop
						if tt.kill {
							stop = srv.Kill
						}
						err := stop()
						if err == nil {
							time.Sleep(500 * time.Millisecond)
							err = srv.Restart()
						}
						outage = time.Since(t0)
						restarted <- err
					}()
				}
				key := fmt.Sprint("c", i)
				g, err := c.Commit(gen, []etcdstore.Mutation{put("b", key, fmt.Sprint(i)), put("b", "last", key)}, nil)
				var ce *etcdstore.ConflictError
				switch {
				case err == nil:
					acked[g] = key
					gen = g
				case errors.As(err, &ce):
					// A commit whose answer was lost took effect after all.
					unknownApplied++
					gen = ce.Current
				default:
					failed++
					time.Sleep(20 * time.Millisecond)
				}
			}
			if err := <-restarted; err != nil {
				t.Fatal(err)
			}
			objs, last := mustLoad(t, c)
			for g, key := range acked {
				if _, ok := objs["b"][key]; !ok {
					t.Errorf("acknowledged commit %d (%s) is not in Load", g, key)
				}
			}
			// The watcher catches up to Load's generation by itself.
			for end := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
				mu.Lock()
				n := len(watched)
				mu.Unlock()
				if uint64(n) >= last {
					break
				}
				if time.Now().After(end) {
					t.Fatalf("the watcher has %d changes of %d 20 s after", n, last)
				}
			}
			mu.Lock()
			got := slices.Clone(watched)
			mu.Unlock()
			checkSeq(t, got, 0)
			replay := map[string]string{}
			for _, ch := range got {
				if key, ok := acked[ch.Gen]; ok && ch.Mutations[0].Key != key {
					t.Fatalf("watched change %d wrote %s, the acknowledged commit %s", ch.Gen, ch.Mutations[0].Key, key)
				}
				for _, m := range ch.Mutations {
					replay[m.Key] = string(m.Value)
				}
			}
			if !maps.Equal(replay, strs(objs)["b"]) {
				t.Fatalf("the watched changes replayed (%d objects) differ from Load (%d)", len(replay), len(objs["b"]))
			}
			t.Logf("%d commits acknowledged (generation %d), %d failed while etcd was down %v, %d of unknown outcome found applied; watcher at %d",
				len(acked), last, failed, outage.Round(time.Millisecond), unknownApplied, len(got))
		})
	}
}

// TestLatency measures commit latency and the propagation of a commit to
// a second client's watch (from the start of Commit to the delivery).
func TestLatency(t *testing.T) {
	if testing.Short() {
		t.Skip("measurement: not in -short")
	}
	srv := etcdtest.Start(t, etcdtest.Options{})
	a, b := open(t, srv, etcdstore.Config{}), open(t, srv, etcdstore.Config{})
	const n = 1000
	delivered := make(chan time.Time, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go b.Watch(ctx, 0, func(etcdstore.Change) error {
		delivered <- time.Now()
		return nil
	})
	value := []byte(`{"id":"eni-0123456789abcdef0","subnet":"subnet-0123456789abcdef0","mac":"02:00:00:00:00:01","ips":["10.0.0.17"],"groups":["sg-0123456789abcdef0"],"tags":{}}`)
	commit := make([]time.Duration, 0, n)
	prop := make([]time.Duration, 0, n)
	for g := range uint64(n) {
		t0 := time.Now()
		_, err := a.Commit(g, []etcdstore.Mutation{{Bucket: "enis", Key: fmt.Sprint("eni-", g%50), Value: value}}, mkEvent("op"))
		if err != nil {
			t.Fatal(err)
		}
		commit = append(commit, time.Since(t0))
		select {
		case at := <-delivered:
			prop = append(prop, at.Sub(t0))
		case <-time.After(5 * time.Second):
			t.Fatalf("commit %d not delivered to the other client in 5 s", g+1)
		}
	}
	t.Logf("%d commits (one object and an event each): commit p50 %v p99 %v; to the other client's watch p50 %v p99 %v",
		n, pct(commit, 50), pct(commit, 99), pct(prop, 50), pct(prop, 99))
}

func pct(d []time.Duration, p int) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[(len(s)-1)*p/100].Round(10 * time.Microsecond)
}
