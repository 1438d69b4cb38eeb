package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"roam/internal/etcdstore/etcdtest"
	"roam/internal/qmp/qmptest"
	vswitch "roam/switch"
)

// storeKinds runs fn on a MemStore, on a BoltStore and on an EtcdStore (on
// a real etcd server).
func storeKinds(t *testing.T, fn func(t *testing.T, store Store)) {
	t.Run("etcd", func(t *testing.T) {
		srv := etcdtest.Start(t, etcdtest.Options{})
		es, err := OpenEtcd([]string{srv.Endpoint}, "")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { es.Close() })
		fn(t, es)
	})
	t.Run("mem", func(t *testing.T) { fn(t, NewMemStore()) })
	t.Run("bolt", func(t *testing.T) {
		bs, err := OpenBolt(t.TempDir(), true)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { bs.Close() })
		fn(t, bs)
	})
}

// TestStoreWatch: Watch delivers every commit in order, those before it
// started first, then new ones from any writer; a stale Commit is refused
// with ErrConflict; a Watch from a trimmed generation gets ErrCompacted.
func TestStoreWatch(t *testing.T) {
	storeKinds(t, func(t *testing.T, st Store) {
		put := func(expected uint64, key string) (uint64, error) {
			return st.Commit(expected, []Mutation{{Bucket: bucketSubnets, Key: key, Value: []byte(`{"id":"` + key + `"}`)}},
				&Event{Operation: "Put " + key, Result: "ok"})
		}
		if g, err := put(0, "a"); err != nil || g != 1 {
			t.Fatal(g, err)
		}
		_, err := put(0, "b")
		var ce *ConflictError
		if !errors.Is(err, ErrConflict) || !errors.As(err, &ce) || ce.Expected != 0 || ce.Current != 1 {
			t.Fatalf("stale commit: got %v, want a conflict 0 vs 1", err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		got := make(chan Change, 10)
		done := make(chan error, 1)
		go func() {
			done <- st.Watch(ctx, 0, func(c Change) error { got <- c; return nil })
		}()
		for i := uint64(1); i < 4; i++ {
			if _, err := put(i, fmt.Sprintf("k%d", i)); err != nil {
				t.Fatal(err)
			}
		}
		for want := uint64(1); want <= 4; want++ {
			select {
			case c := <-got:
				if c.Gen != want || len(c.Mutations) != 1 || c.Event == nil || c.Event.ID == 0 {
					t.Fatalf("change %d: got %+v", want, c)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("change %d not delivered", want)
			}
		}
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("watch after cancel: %v", err)
		}
		if _, gen, _ := st.Load(); gen != 4 {
			t.Fatalf("gen %d, want 4", gen)
		}
	})
	// Compaction, on the in-memory store (the same rule trims bbolt's
	// change log).
	m := NewMemStore()
	for i := uint64(0); i < MaxChanges+5; i++ {
		if _, err := m.Commit(i, []Mutation{{Bucket: bucketSubnets, Key: "a", Value: []byte(`{}`)}}, nil); err != nil {
			t.Fatal(err)
		}
	}
	err := m.Watch(context.Background(), 2, func(Change) error { return nil })
	if !errors.Is(err, ErrCompacted) {
		t.Fatalf("watch from a trimmed generation: got %v, want ErrCompacted", err)
	}
	n := 0
	err = m.Watch(context.Background(), 5, func(c Change) error {
		if n++; c.Gen == MaxChanges+5 {
			return errStopWatch
		}
		return nil
	})
	if !errors.Is(err, errStopWatch) || n != MaxChanges {
		t.Fatalf("watch from the oldest kept: %v after %d changes", err, n)
	}
}

// TestBoltChangeLogTrimmed: bbolt keeps the last MaxChanges commits.
func TestBoltChangeLogTrimmed(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 commits")
	}
	bs, err := OpenBolt(t.TempDir(), true)
	if err != nil {
		t.Fatal(err)
	}
	defer bs.Close()
	for i := uint64(0); i < MaxChanges+3; i++ {
		if _, err := bs.Commit(i, nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := bs.Watch(context.Background(), 2, func(Change) error { return nil }); !errors.Is(err, ErrCompacted) {
		t.Fatalf("watch from a trimmed generation: got %v, want ErrCompacted", err)
	}
	var first uint64
	err = bs.Watch(context.Background(), 3, func(c Change) error { first = c.Gen; return errStopWatch })
	if !errors.Is(err, errStopWatch) || first != 4 {
		t.Fatalf("watch from the oldest kept: %v, first %d", err, first)
	}
}

// peer is a second Service on the fixture's store, with its own data path
// and ports (another host's view of the same store).
func peer(t *testing.T, f *fixture) (*Service, *fakeDP) {
	t.Helper()
	dp := newFakeDP()
	s, err := Open(Options{Store: otherClient(t, f.store), DataPath: deltaDP{dp}, Ports: newFakePorts(), Gateway: f.gw})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, dp
}

// otherClient is the store as a second host sees it: for etcd a client of
// its own on the same etcd and prefix, otherwise st itself.
func otherClient(t *testing.T, st Store) Store {
	switch st := st.(type) {
	case *EtcdStore:
		es, err := OpenEtcd(st.endpoints, st.prefix)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { es.Close() })
		return es
	case *conflictCounter:
		return &conflictCounter{Store: otherClient(t, st.Store), of: st}
	}
	return st
}

// storedForm is the state of s as the store holds it, and its generation.
func storedForm(s *Service) (string, uint64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	tx := s.st.txn(Root)
	for id, v := range s.st.subnets {
		tx.subnets[id] = v
	}
	for id, v := range s.st.groups {
		tx.groups[id] = v
	}
	for id, v := range s.st.instances {
		tx.instances[id] = v
	}
	for id, v := range s.st.enis {
		tx.enis[id] = v
	}
	for id, v := range s.st.eips {
		tx.eips[id] = v
	}
	b, _ := json.Marshal(tx.mutations())
	return string(b), s.st.gen
}

// converge waits until b has applied everything in the store and checks
// that it holds what a holds and that its data path has in force what a
// full rebuild from its state gives.
func converge(t *testing.T, step string, store Store, a, b *Service) {
	t.Helper()
	_, want, _ := store.Load()
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, ga := storedForm(a)
		_, gb := storedForm(b)
		if ga == want && gb == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: services at generations %d and %d, store at %d", step, ga, gb, want)
		}
		time.Sleep(time.Millisecond)
	}
	sa, _ := storedForm(a)
	sb, _ := storedForm(b)
	if sa != sb {
		t.Fatalf("%s: the services hold different states:\n%s\n%s", step, sa, sb)
	}
	for i, s := range []*Service{a, b} {
		if bad := s.Check(); len(bad) > 0 {
			t.Fatalf("%s: service %d: %v", step, i, bad)
		}
	}
}

// TestTwoServicesOneStore: a change made through one service is applied by
// the other's state and data path (its switch config equals a full rebuild
// from the store), whichever made it.
func TestTwoServicesOneStore(t *testing.T) {
	storeKinds(t, func(t *testing.T, store Store) {
		f := newFixtureMode(t, store, true)
		a := f.svc
		b, bdp := peer(t, f)
		sn := ok(a.CreateSubnet(Root, CreateSubnetInput{CIDR: "10.0.0.0/24"}))
		converge(t, "create subnet", store, a, b)
		g := ok(b.CreateGroup(Root, CreateGroupInput{Name: "web"}))
		converge(t, "create group on the peer", store, a, b)
		ok(a.CreateInstance(Root, CreateInstanceInput{Name: "vm1", Ports: []string{"tap:p1"}}))
		ok(a.CreateInstance(Root, CreateInstanceInput{Name: "vm2", Ports: []string{"tap:p2"}}))
		converge(t, "create instances", store, a, b)
		e := ok(a.CreateENI(Root, CreateENIInput{SubnetID: sn.ID}))
		converge(t, "create record", store, a, b)
		if r := bdp.record(e.ID); r == nil || r.IPs[0] != e.PrivateIP {
			t.Fatalf("the peer's data path has %+v, want the record with %s", r, e.PrivateIP)
		}
		ok(a.Attach(Root, e.ID, AttachInput{InstanceID: "vm1"}))
		converge(t, "attach", store, a, b)
		ok(a.Reassign(Root, e.ID, ReassignInput{InstanceID: "vm2"}))
		converge(t, "reassign", store, a, b)
		ok(b.ModifyENI(Root, e.ID, ModifyENIInput{SecurityGroups: &[]string{g.ID}}))
		converge(t, "modify groups on the peer", store, a, b)
		if r := f.dp.record(e.ID); r == nil || len(r.Groups) != 1 || r.Groups[0] != g.ID {
			t.Fatalf("the first service's data path has %+v, want group %s", r, g.ID)
		}
		ok(b.AddRule(Root, g.ID, RuleInput{Direction: "ingress", Protocol: "tcp", FromPort: intp(22), ToPort: intp(22), CIDR: "0.0.0.0/0"}))
		converge(t, "rule on the peer", store, a, b)
		if c := f.dp.last; len(c.Groups) != 1 || len(c.Groups[0].Ingress) != 1 {
			t.Fatalf("the first service's data path has groups %+v, want the new rule", c.Groups)
		}
		ok(b.DeleteENI(Root, ok(b.CreateENI(Root, CreateENIInput{SubnetID: sn.ID})).ID))
		converge(t, "create and delete on the peer", store, a, b)
		if len(f.dp.bad)+len(bdp.bad) > 0 {
			t.Fatalf("published configs: %v %v", f.dp.bad, bdp.bad)
		}
	})
}

// conflictCounter counts the commits its store refused for a conflict.
type conflictCounter struct {
	Store
	n  atomic.Int64
	of *conflictCounter // the counter a second client's refusals add to
}

func (c *conflictCounter) Commit(expected uint64, muts []Mutation, ev *Event) (uint64, error) {
	g, err := c.Store.Commit(expected, muts, ev)
	if errors.Is(err, ErrConflict) {
		if c.of != nil {
			c.of.n.Add(1)
		} else {
			c.n.Add(1)
		}
	}
	return g, err
}

// TestTwoServicesConflict: operations on two services at once conflict in
// the store and are retried on the fresh state: every record created holds
// the address it was given, no address is owned twice, every move lands.
func TestTwoServicesConflict(t *testing.T) {
	storeKinds(t, func(t *testing.T, inner Store) {
		store := &conflictCounter{Store: inner}
		f := newFixtureMode(t, store, true)
		a := f.svc
		b, _ := peer(t, f)
		sn := ok(a.CreateSubnet(Root, CreateSubnetInput{CIDR: "10.9.0.0/24"}))
		// Host effects (opening ports) run on the service that made the
		// change: each service moves records to its own instance.
		ok(a.CreateInstance(Root, CreateInstanceInput{Name: "vm1", Ports: []string{"stream:/run/c1.sock"}}))
		ok(b.CreateInstance(Root, CreateInstanceInput{Name: "vm2", Ports: []string{"stream:/run/c2.sock"}}))
		converge(t, "setup", store, a, b)
		const per = 25
		var (
			mu      sync.Mutex
			created = map[string]netip.Addr{}
			wg      sync.WaitGroup
			fails   []error
		)
		for i, s := range []*Service{a, b, a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := 0; j < per; j++ {
					e, err := s.CreateENI(Root, CreateENIInput{SubnetID: sn.ID, Description: fmt.Sprintf("w%d-%d", i, j)})
					mu.Lock()
					if err != nil {
						fails = append(fails, err)
					} else {
						created[e.ID] = e.PrivateIP
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		for _, err := range fails {
			// A conflict that outlasted the retries is the only
			// acceptable refusal, and it must say so.
			if codeOf(err) != CodeConflict {
				t.Fatalf("create: %v", err)
			}
		}
		converge(t, "concurrent creates", store, a, b)
		if len(created)+len(fails) != 4*per {
			t.Fatalf("%d created + %d refused, want %d", len(created), len(fails), 4*per)
		}
		recs := ok(a.ENIs(ENIFilter{}))
		if len(recs) != len(created) {
			t.Fatalf("the store has %d records, %d were acknowledged", len(recs), len(created))
		}
		owner := map[netip.Addr]string{}
		for _, e := range recs {
			if ip, ok := created[e.ID]; !ok || ip != e.PrivateIP {
				t.Fatalf("record %s holds %s, was acknowledged with %s", e.ID, e.PrivateIP, ip)
			}
			if o, dup := owner[e.PrivateIP]; dup {
				t.Fatalf("ip %s owned by %s and %s", e.PrivateIP, o, e.ID)
			}
			owner[e.PrivateIP] = e.ID
		}
		// Moves of distinct records from both services at once.
		ids := make([]string, 0, len(created))
		for id := range created {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		ids = ids[:8]
		want := map[string]string{}
		for i, id := range ids {
			s, inst := a, "vm1"
			if i%2 == 1 {
				s, inst = b, "vm2"
			}
			want[id] = inst
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					if _, err := s.Reassign(Root, id, ReassignInput{InstanceID: inst}); err == nil {
						return
					} else if c := codeOf(err); c != CodeConflict && c != CodeAddressInUse {
						t.Errorf("reassign %s: %v", id, err)
						return
					}
					// The instance's only port is taken: free it.
					for _, e := range ok(s.ENIs(ENIFilter{Instance: inst})) {
						s.Detach(Root, e.ID, DetachInput{})
					}
				}
			}()
		}
		wg.Wait()
		converge(t, "concurrent moves", store, a, b)
		t.Logf("%d commits refused for a conflict and retried; %d operations gave up", store.n.Load(), len(fails))
		if store.n.Load() == 0 {
			t.Errorf("no conflict: the test did not exercise the retry")
		}
	})
}

// hungMonitor is a QMP socket that accepts connections and never answers;
// stop closes it and removes the socket.
func hungMonitor(t *testing.T) (path string, stop func()) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "hung.qmp")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			l.Close()
			mu.Lock()
			for _, c := range conns {
				c.Close()
			}
			mu.Unlock()
		})
	}
	t.Cleanup(stop)
	return path, stop
}

func percentile(d []time.Duration, p float64) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[int(float64(len(s)-1)*p)]
}

// TestHungMonitorDoesNotStall: while one VM's monitor never answers a
// hot-plug, operations on other records (reassigns between other VMs,
// whose guest MACs are host effects too, and modifies) complete at their
// usual latency; the hung attach is reported "attaching"/"failed" with a
// reason, and the record keeps its previous (no) binding meanwhile.
func TestHungMonitorDoesNotStall(t *testing.T) {
	ports := &guestPorts{open: map[string]*guestPort{}}
	dp := newFakeDP()
	s, err := Open(Options{Store: NewMemStore(), DataPath: deltaDP{dp}, Ports: ports, Gateway: testGateway()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.hotplugTimeout = 2 * time.Second
	s.fxWait = s.hotplugTimeout + time.Second
	sn := ok(s.CreateSubnet(Root, CreateSubnetInput{CIDR: "10.0.0.0/24"}))
	g := ok(s.CreateGroup(Root, CreateGroupInput{Name: "g"}))
	const n = 4
	var recs []string
	for i := 0; i < n; i++ {
		ok(s.CreateInstance(Root, CreateInstanceInput{Name: fmt.Sprintf("a%d", i), Ports: []string{fmt.Sprintf("tap:a%d", i)}}))
		ok(s.CreateInstance(Root, CreateInstanceInput{Name: fmt.Sprintf("b%d", i), Ports: []string{fmt.Sprintf("tap:b%d", i)}}))
		e := ok(s.CreateENI(Root, CreateENIInput{SubnetID: sn.ID}))
		ok(s.Attach(Root, e.ID, AttachInput{InstanceID: fmt.Sprintf("a%d", i)}))
		recs = append(recs, e.ID)
	}
	at := make([]int, n) // 0: on a<i>, 1: on b<i>
	run := func(ops int) []time.Duration {
		var lat []time.Duration
		for k := 0; k < ops; k++ {
			i := k % n
			start := time.Now()
			if k%4 == 3 {
				ok(s.ModifyENI(Root, recs[i], ModifyENIInput{SecurityGroups: &[]string{g.ID}}))
			} else {
				at[i] ^= 1
				ok(s.Reassign(Root, recs[i], ReassignInput{InstanceID: fmt.Sprintf("%c%d", "ab"[at[i]], i)}))
			}
			lat = append(lat, time.Since(start))
		}
		return lat
	}
	base := run(200)

	monPath, unhang := hungMonitor(t)
	ok(s.CreateInstance(Root, CreateInstanceInput{Name: "hung", QMP: monPath}))
	h := ok(s.CreateENI(Root, CreateENIInput{SubnetID: sn.ID}))
	attached := make(chan *ENI, 1)
	go func() {
		e, err := s.Attach(Root, h.ID, AttachInput{InstanceID: "hung"})
		if err != nil {
			t.Errorf("attach to the hung VM: %v", err)
		}
		attached <- e
	}()
	for ok(s.ENI(h.ID)).Status != StatusAttaching {
		time.Sleep(time.Millisecond)
	}
	hungStart := time.Now()
	during := run(200)
	if time.Since(hungStart) > s.hotplugTimeout {
		t.Logf("warning: the operations outlasted the hang")
	}
	t.Logf("200 operations on other records: p50 %v p99 %v max %v without a hung monitor; p50 %v p99 %v max %v during the hang",
		percentile(base, .5), percentile(base, .99), percentile(base, 1), percentile(during, .5), percentile(during, .99), percentile(during, 1))
	if m := percentile(during, 1); m >= s.hotplugTimeout/2 {
		t.Errorf("an operation on another record took %v during the hang (hot-plug timeout %v)", m, s.hotplugTimeout)
	}
	if r := dp.record(h.ID); r == nil || len(r.Ports) != 0 {
		t.Errorf("the record whose hot-plug hangs is published as %+v, want it without ports", r)
	}
	e := <-attached
	if e == nil {
		return
	}
	a := e.Attachments[0]
	if e.Status != StatusAttaching || a.Status != AttachmentFailed || a.StatusReason == "" {
		t.Errorf("after the hot-plug timed out: record %s, attachment %s (%q), want attaching, failed with a reason", e.Status, a.Status, a.StatusReason)
	}
	v := ok(s.ENI(h.ID))
	b, _ := json.Marshal(v)
	var raw struct {
		Attachments []map[string]any `json:"attachments"`
	}
	json.Unmarshal(b, &raw)
	if raw.Attachments[0]["status"] != AttachmentFailed || raw.Attachments[0]["status_reason"] == nil {
		t.Errorf("eni show JSON: %s", b)
	}
	t.Logf("hung attach: %s", b)
	if len(dp.bad) > 0 {
		t.Errorf("published configs: %v", dp.bad)
	}

	// The monitor comes back: a retry plugs the NIC and the record gets
	// its binding.
	unhang()
	q, err := qmptest.Start(monPath)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		v := ok(s.ENI(h.ID))
		if v.Status == StatusInUse && v.Attachments[0].Status == AttachmentAttached {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the retries did not complete the attach: %+v", v)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := q.Devices(); len(got) != 1 || !strings.HasPrefix(got[0], "roam0 "+h.MAC) {
		t.Errorf("devices after the retry: %q", got)
	}
	if r := dp.record(h.ID); r == nil || len(r.Ports) != 1 {
		t.Errorf("published after the retry: %+v, want the record on its hot-plug port", r)
	}
	if bad := s.Check(); len(bad) > 0 {
		t.Errorf("after the retry: %v", bad)
	}
}

// refuseDP refuses the configs refuse names.
type refuseDP struct {
	macCheckDP
	refuse func(c *vswitch.Config) error
}

func (d refuseDP) Apply(c *vswitch.Config) error {
	if err := d.refuse(c); err != nil {
		return err
	}
	return d.macCheckDP.Apply(c)
}

// TestGuestMACUndoneOnRefusal: a reassign that the switch refuses leaves
// the target guest's MAC as it was, whether the first publication is
// refused (the MAC is never changed) or the one that gives the record its
// new binding (the MAC is given back).
func TestGuestMACUndoneOnRefusal(t *testing.T) {
	ports := &guestPorts{open: map[string]*guestPort{}}
	var refuse atomic.Value
	refuse.Store(func(*vswitch.Config) error { return nil })
	dp := refuseDP{macCheckDP: macCheckDP{fakeDP: newFakeDP(), ports: ports},
		refuse: func(c *vswitch.Config) error { return refuse.Load().(func(*vswitch.Config) error)(c) }}
	s, err := Open(Options{Store: NewMemStore(), DataPath: dp, Ports: ports, Gateway: testGateway()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sn := ok(s.CreateSubnet(Root, CreateSubnetInput{CIDR: "10.0.0.0/24"}))
	ok(s.CreateInstance(Root, CreateInstanceInput{Name: "vma", Ports: []string{"tap:eth0@vma"}}))
	ok(s.CreateInstance(Root, CreateInstanceInput{Name: "vmb", Ports: []string{"tap:eth0@vmb"}}))
	e := ok(s.CreateENI(Root, CreateENIInput{SubnetID: sn.ID}))
	ok(s.Attach(Root, e.ID, AttachInput{InstanceID: "vma"}))
	vmb := ports.open["tap:eth0@vmb"]
	orig := net.HardwareAddr{0x02, 0, 0, 0, 0, 0xbb}
	vmb.SetMAC(orig)
	before := dumpJSON(t, s)
	for _, tc := range []struct {
		name   string
		refuse func(*vswitch.Config) error
	}{
		{"every config", func(*vswitch.Config) error { return errors.New("refused") }},
		{"the new binding", func(c *vswitch.Config) error {
			for _, r := range c.Records {
				if r.ID == e.ID && len(r.Ports) == 1 && r.Ports[0] == "tap:eth0@vmb" {
					return errors.New("refused: no room on tap:eth0@vmb")
				}
			}
			return nil
		}},
	} {
		refuse.Store(tc.refuse)
		_, err := s.Reassign(Root, e.ID, ReassignInput{InstanceID: "vmb"})
		if codeOf(err) != CodeDataPath {
			t.Fatalf("%s: reassign got %v, want %s", tc.name, err, CodeDataPath)
		}
		if got := vmb.MAC(); got.String() != orig.String() {
			t.Errorf("%s: vmb's guest MAC after the refused reassign: %v, want %v", tc.name, got, orig)
		}
		if r := dp.record(e.ID); r == nil || len(r.Ports) != 1 || r.Ports[0] != "tap:eth0@vma" {
			t.Errorf("%s: published %+v, want the record on vma", tc.name, r)
		}
		if bad := s.Check(); len(bad) > 0 {
			t.Errorf("%s: %v", tc.name, bad)
		}
		refuse.Store(func(*vswitch.Config) error { return nil })
		if after := dumpJSON(t, s); tc.name == "every config" && after != before {
			t.Errorf("%s: the refused reassign changed the state:\n%s\n%s", tc.name, before, after)
		}
	}
	for _, b := range dp.bad {
		t.Error(b)
	}
	ok(s.Reassign(Root, e.ID, ReassignInput{InstanceID: "vmb"}))
	if got := vmb.MAC().String(); got != e.MAC {
		t.Errorf("vmb's guest MAC after the reassign: %s, want %s", got, e.MAC)
	}
}
