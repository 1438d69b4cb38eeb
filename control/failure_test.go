package control

import (
	"errors"
	"strings"
	"testing"

	"roam/tap"
	"roam/tap/taptest"
)

// TestDataPathRefusalRollsBack: when the switch refuses the new config
// after the store committed, the store is rolled back and nothing changes.
func TestDataPathRefusalRollsBack(t *testing.T) {
	store := NewMemStore()
	f := newFixture(t, store)
	w := buildWorld(t, f.svc)
	before := dumpJSON(t, f.svc)
	f.dp.fail = errors.New("records: too many")
	_, err := f.svc.Reassign(Root, w.eniA, ReassignInput{InstanceID: "vm2"})
	if got := codeOf(err); got != CodeDataPath {
		t.Fatalf("got %q (%v), want %s", got, err, CodeDataPath)
	}
	if after := dumpJSON(t, f.svc); after != before {
		t.Fatalf("refused reassign changed the state")
	}
	f.dp.fail = nil
	f.restart(t)
	if after := dumpJSON(t, f.svc); after != before {
		t.Fatalf("refused reassign changed the store:\nbefore %s\nafter %s", before, after)
	}
	evs := ok(f.svc.Events(0, 0))
	last := evs[len(evs)-1]
	if last.Result != CodeDataPath || last.Operation != "ReassignNetworkInterface" {
		t.Errorf("got last event %+v, want the rolled back reassign", last)
	}
}

// TestStoreFailureChangesNothing: a failed commit leaves memory, data path
// and open ports as they were.
func TestStoreFailureChangesNothing(t *testing.T) {
	store := NewMemStore()
	f := newFixture(t, store)
	buildWorld(t, f.svc)
	before := dumpJSON(t, f.svc)
	applied := f.dp.applied
	store.FailCommit = errors.New("disk full")
	_, err := f.svc.CreateInstance(Root, CreateInstanceInput{Name: "vm9", Ports: []string{"tap:vm9"}})
	if got := codeOf(err); got != CodeInternal {
		t.Fatalf("got %q (%v), want %s", got, err, CodeInternal)
	}
	if !errors.Is(err, store.FailCommit) {
		t.Errorf("got %v, want it to wrap the store's error", err)
	}
	if f.dp.ports["tap:vm9"] {
		t.Errorf("port of the refused instance is still registered")
	}
	if after := dumpJSON(t, f.svc); after != before || f.dp.applied != applied {
		t.Errorf("failed commit changed the state or published")
	}
	store.FailCommit = nil
	if _, err := f.svc.CreateInstance(Root, CreateInstanceInput{Name: "vm9", Ports: []string{"tap:vm9"}}); err != nil {
		t.Fatalf("retry: %v", err)
	}
}

// TestPortDownAfterRestart: a port that cannot be reopened at restart is
// "down": attaching to it is refused, detaching needs force.
func TestPortDownAfterRestart(t *testing.T) {
	f := newFixture(t, nil)
	w := buildWorld(t, f.svc)
	f.ports.fail["tap:vm1a"] = true
	f.ports.fail["tap:vm1b"] = true
	f.restart(t)
	in := ok(f.svc.Instance("vm1"))
	if in.Ports[0].Status != PortDown || in.Ports[0].Error == "" {
		t.Fatalf("got port %+v, want down with an error", in.Ports[0])
	}
	if r := f.dp.record(w.eniA); len(r.Ports) != 0 {
		t.Errorf("got published ports %v for a record on a down port, want none", r.Ports)
	}
	cases := []struct {
		name string
		op   func() error
		want string
	}{
		{"attach to a down port", func() error {
			_, err := f.svc.Attach(Root, w.eniB, AttachInput{InstanceID: "vm1", DeviceIndex: intp(1)})
			return err
		}, CodeIncorrectState},
		{"attach picks no down port", func() error {
			_, err := f.svc.Attach(Root, w.eniB, AttachInput{InstanceID: "vm1"})
			return err
		}, CodeIncorrectState},
		{"detach from a down port", func() error {
			_, err := f.svc.Detach(Root, w.eniA, DetachInput{})
			return err
		}, CodeIncorrectState},
		{"reassign away from a down port", func() error {
			_, err := f.svc.Reassign(Root, w.eniA, ReassignInput{InstanceID: "vm2"})
			if err == nil {
				_, err = f.svc.Reassign(Root, w.eniA, ReassignInput{InstanceID: "vm1"})
			}
			return err
		}, CodeIncorrectState},
		{"detach force", func() error {
			_, err := f.svc.Detach(Root, w.eniA, DetachInput{Force: true})
			return err
		}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := codeOf(tc.op()); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// TestBoltStore: commits, the audit log and reopening.
func TestBoltStore(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenBolt(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	if g, err := s.Commit(0, []Mutation{{Bucket: bucketSubnets, Key: "a", Value: []byte(`{"id":"a"}`)}, {Bucket: bucketENIs, Key: "e", Value: []byte(`{}`)}},
		&Event{Operation: "One", Result: "ok"}); err != nil || g != 1 {
		t.Fatal(g, err)
	}
	if g, err := s.Commit(1, []Mutation{{Bucket: bucketENIs, Key: "e"}}, &Event{Operation: "Two", Result: "ok"}); err != nil || g != 2 {
		t.Fatal(g, err)
	}
	if err := s.AppendEvent(&Event{Operation: "Three", Result: CodeNotFound}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Commit(2, []Mutation{{Bucket: "nope", Key: "x", Value: []byte("1")}}, &Event{Operation: "Bad"}); err == nil {
		t.Errorf("commit to an unknown bucket: got nil, want an error")
	}
	if _, err := s.Commit(1, []Mutation{{Bucket: bucketSubnets, Key: "b", Value: []byte(`{"id":"b"}`)}}, &Event{Operation: "Stale"}); !errors.Is(err, ErrConflict) {
		t.Errorf("commit on a stale generation: got %v, want ErrConflict", err)
	}
	s.Close()
	s, err = OpenBolt(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	objs, gen, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	if gen != 2 || string(objs[bucketSubnets]["a"]) != `{"id":"a"}` || len(objs[bucketENIs]) != 0 || objs[bucketSubnets]["b"] != nil {
		t.Errorf("got gen %d objects %v, want gen 2, subnet a and no record", gen, objs)
	}
	evs, err := s.Events(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var ops []string
	for _, e := range evs {
		ops = append(ops, e.Operation)
	}
	if got := strings.Join(ops, ","); got != "One,Two,Three" {
		t.Errorf("got events %s, want One,Two,Three (the failed commit leaves none)", got)
	}
	if evs, _ := s.Events(1, 1); len(evs) != 1 || evs[0].Operation != "Two" {
		t.Errorf("got %+v after 1 limit 1, want Two", evs)
	}
}

// downPort is an open port whose driver reports it down.
type downPort struct{ *taptest.Port }

func (downPort) Operational() bool { return false }

// TestDriverReportsDown: a tap port whose driver says it is down refuses
// attachments; a stream port without its peer yet does not.
func TestDriverReportsDown(t *testing.T) {
	f := newFixture(t, nil)
	f.svc.Close()
	inner := f.ports
	f.svc = ok(Open(Options{Store: f.store, DataPath: f.dp, Gateway: f.gw, Ports: PortFactoryFunc(func(spec string) (tap.Port, error) {
		p, err := inner.Open(spec)
		if err != nil || spec == "tap:uplink0" {
			return p, err
		}
		return downPort{p.(*taptest.Port)}, nil
	})}))
	w := buildWorldNoAttach(t, f.svc)
	if _, err := f.svc.Attach(Root, w.eniA, AttachInput{InstanceID: "vm1"}); codeOf(err) != CodeIncorrectState {
		t.Errorf("attach to a tap port reported down: got %v, want IncorrectState", err)
	}
	if _, err := f.svc.Attach(Root, w.eniA, AttachInput{InstanceID: "vm3", DeviceIndex: intp(0)}); err != nil {
		t.Errorf("attach to a stream port waiting for its peer: got %v, want success", err)
	}
	in := ok(f.svc.Instance("vm1"))
	if in.Ports[0].Status != PortDown || in.Ports[0].Name != "tap:vm1a" {
		t.Errorf("got %+v, want an open port with status down", in.Ports[0])
	}
}

func buildWorldNoAttach(t testing.TB, s *Service) *world {
	w := &world{}
	w.subA = ok(s.CreateSubnet(Root, CreateSubnetInput{CIDR: "10.0.0.0/24"})).ID
	ok(s.CreateInstance(Root, CreateInstanceInput{Name: "vm1", Ports: []string{"tap:vm1a"}}))
	ok(s.CreateInstance(Root, CreateInstanceInput{Name: "vm3", Ports: []string{"stream:/run/vm3.sock"}}))
	w.eniA = ok(s.CreateENI(Root, CreateENIInput{SubnetID: w.subA})).ID
	return w
}
