package control

import (
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"sync"
	"testing"

	vswitch "roam/switch"
	"roam/tap"
	"roam/tap/taptest"
)

// fakeDP is a data path that checks every config it is given the way the
// switch must rely on: no IP owned twice, every record port registered.
type fakeDP struct {
	mu      sync.Mutex
	ports   map[string]bool
	applied int
	last    *vswitch.Config
	fail    error
	bad     []string
	deltas  int
}

func newFakeDP() *fakeDP { return &fakeDP{ports: map[string]bool{}} }

func (d *fakeDP) Apply(c *vswitch.Config) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fail != nil {
		return d.fail
	}
	owner := map[netip.Addr]string{}
	portOwner := map[string]string{}
	for _, r := range c.Records {
		for _, ip := range r.IPs {
			if o, ok := owner[ip]; ok {
				d.bad = append(d.bad, fmt.Sprintf("gen %d: ip %s in %s and %s", c.Gen, ip, o, r.ID))
			}
			owner[ip] = r.ID
		}
		for _, p := range r.Ports {
			if !d.ports[p] {
				d.bad = append(d.bad, fmt.Sprintf("gen %d: record %s on unknown port %s", c.Gen, r.ID, p))
			}
			if o, ok := portOwner[p]; ok {
				d.bad = append(d.bad, fmt.Sprintf("gen %d: port %s in %s and %s", c.Gen, p, o, r.ID))
			}
			portOwner[p] = r.ID
		}
	}
	if d.last != nil && c.Gen <= d.last.Gen {
		d.bad = append(d.bad, fmt.Sprintf("gen %d after gen %d", c.Gen, d.last.Gen))
	}
	d.applied++
	d.last = c
	return nil
}

// deltaDP is a fakeDP that also offers the DeltaApplier fast path and
// checks its contract: records not named as changed are exactly those of
// the config in force.
type deltaDP struct{ *fakeDP }

func (d deltaDP) ApplyDelta(c *vswitch.Config, changed []string) error {
	d.mu.Lock()
	prev := d.last
	d.deltas++
	d.mu.Unlock()
	if prev != nil {
		named := map[string]bool{}
		for _, id := range changed {
			named[id] = true
		}
		old := map[string]vswitch.Record{}
		for _, r := range prev.Records {
			old[r.ID] = r
		}
		seen := 0
		for _, r := range c.Records {
			o, ok := old[r.ID]
			if named[r.ID] {
				continue
			}
			seen++
			if !ok || !reflect.DeepEqual(o, r) {
				d.mu.Lock()
				d.bad = append(d.bad, fmt.Sprintf("gen %d: record %s changed but not named in %v", c.Gen, r.ID, changed))
				d.mu.Unlock()
			}
		}
		for id := range old {
			if !named[id] {
				seen--
			}
		}
		if seen != 0 {
			d.mu.Lock()
			d.bad = append(d.bad, fmt.Sprintf("gen %d: a record appeared or vanished without being named in %v", c.Gen, changed))
			d.mu.Unlock()
		}
	}
	return d.Apply(c)
}

func (d *fakeDP) AddPort(p tap.Port) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ports[p.Name()] {
		return fmt.Errorf("port %s already added", p.Name())
	}
	d.ports[p.Name()] = true
	return nil
}

func (d *fakeDP) RemovePort(name string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.ports[name] {
		return fmt.Errorf("port %s not added", name)
	}
	delete(d.ports, name)
	return nil
}

func (d *fakeDP) record(id string) *vswitch.Record {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := range d.last.Records {
		if d.last.Records[i].ID == id {
			return &d.last.Records[i]
		}
	}
	return nil
}

// fakePorts opens in-memory ports; specs containing "broken" fail.
type fakePorts struct {
	mu   sync.Mutex
	open map[string]*taptest.Port
	fail map[string]bool
}

func newFakePorts() *fakePorts {
	return &fakePorts{open: map[string]*taptest.Port{}, fail: map[string]bool{}}
}

func (f *fakePorts) Open(spec string) (tap.Port, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail[spec] || strings.Contains(spec, "broken") {
		return nil, errors.New("no such device")
	}
	p := taptest.New(spec, 16)
	f.open[spec] = p
	return p, nil
}

type fixture struct {
	delta bool // offer the DeltaApplier fast path
	svc   *Service
	dp    *fakeDP
	ports *fakePorts
	store Store
	gw    Gateway
}

func testGateway() Gateway {
	return Gateway{
		PublicCIDR: netip.MustParsePrefix("198.51.100.0/28"),
		PublicIP:   netip.MustParsePrefix("198.51.100.1/32").Addr(),
		Uplink:     "tap:uplink0",
	}
}

func newFixture(t testing.TB, store Store) *fixture { return newFixtureMode(t, store, false) }

func newFixtureMode(t testing.TB, store Store, delta bool) *fixture {
	t.Helper()
	if store == nil {
		store = NewMemStore()
	}
	f := &fixture{dp: newFakeDP(), ports: newFakePorts(), store: store, gw: testGateway(), delta: delta}
	f.open(t)
	return f
}

func (f *fixture) open(t testing.TB) {
	t.Helper()
	var dp DataPath = f.dp
	if f.delta {
		dp = deltaDP{f.dp}
	}
	svc, err := Open(Options{Store: f.store, DataPath: dp, Ports: f.ports, Gateway: f.gw})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	f.svc = svc
}

// restart closes the service and opens a new one on the same store, with a
// fresh data path.
func (f *fixture) restart(t testing.TB) {
	t.Helper()
	f.svc.Close()
	f.dp = newFakeDP()
	f.open(t)
}

// ok returns v, panicking on err: for setup steps that cannot fail.
func ok[T any](v T, err error) T {
	if err != nil {
		panic(fmt.Sprintf("unexpected error: %v", err))
	}
	return v
}

func intp(i int) *int    { return &i }
func boolp(b bool) *bool { return &b }

type (
	vswitchSubnet = vswitch.Subnet
	vswitchGroup  = vswitch.Group
)

func netipPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func netipAddr(s string) netip.Addr     { return netip.MustParseAddr(s) }
