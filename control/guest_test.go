package control

import (
	"bytes"
	"fmt"
	"net"
	"sync"
	"testing"

	vswitch "roam/switch"
	"roam/tap"
	"roam/tap/taptest"
)

// guestPort is an in-memory tap: port whose guest side has a MAC.
type guestPort struct {
	*taptest.Port
	mu  sync.Mutex
	mac net.HardwareAddr
}

func (g *guestPort) SetMAC(mac []byte) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.mac = append(net.HardwareAddr(nil), mac...)
	return nil
}

func (g *guestPort) SetMTU(int) error { return nil }

func (g *guestPort) MAC() net.HardwareAddr {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.mac
}

type guestPorts struct {
	mu   sync.Mutex
	open map[string]*guestPort
}

func (f *guestPorts) Open(spec string) (tap.Port, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := &guestPort{Port: taptest.New(spec, 16)}
	f.open[spec] = p
	return p, nil
}

// macCheckDP checks, at every publication, that the guest side of each
// port a record is attached to already has the record's MAC: the switch
// addresses the frames it delivers there to that MAC from that moment.
type macCheckDP struct {
	*fakeDP
	ports *guestPorts
}

func (d macCheckDP) Apply(c *vswitch.Config) error {
	d.check(c)
	return d.fakeDP.Apply(c)
}

func (d macCheckDP) check(c *vswitch.Config) {
	d.ports.mu.Lock()
	defer d.ports.mu.Unlock()
	for _, r := range c.Records {
		for _, name := range r.Ports {
			p := d.ports.open[name]
			if p == nil {
				continue
			}
			if got := p.MAC(); !bytes.Equal(got, r.MAC) {
				d.mu.Lock()
				d.bad = append(d.bad, fmt.Sprintf("gen %d: record %s published on port %s whose guest MAC is %v, want %v", c.Gen, r.ID, name, got, r.MAC))
				d.mu.Unlock()
			}
		}
	}
}

// TestGuestMACBeforePublish: after an attach and a reassign, the guest
// device has the record's MAC before the data path delivers to it (a
// regression: the MAC was set after the publication, and the new VM's
// kernel dropped the first frames of a reassign as not its own).
func TestGuestMACBeforePublish(t *testing.T) {
	ports := &guestPorts{open: map[string]*guestPort{}}
	dp := macCheckDP{fakeDP: newFakeDP(), ports: ports}
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
	ok(s.Reassign(Root, e.ID, ReassignInput{InstanceID: "vmb"}))
	if dp.applied < 2 {
		t.Fatalf("publications: %d, want at least 2", dp.applied)
	}
	for _, b := range dp.bad {
		t.Error(b)
	}
	if got := ports.open["tap:eth0@vmb"].MAC().String(); got != e.MAC {
		t.Errorf("vmb's guest MAC after the reassign: %s, want %s", got, e.MAC)
	}
}

func (g *guestPort) GuestMAC() (net.HardwareAddr, error) { return g.MAC(), nil }
