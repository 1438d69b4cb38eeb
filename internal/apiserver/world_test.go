package apiserver

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"testing"

	"roam/api"
	"roam/control"
	vswitch "roam/switch"
	"roam/tap"
	"roam/tap/memport"
)

const (
	alice = 1000 // owns eniB and eniC
	bob   = 2000 // may attach eniC
)

// world is the state the API tests start from: the same objects as
// control's table tests, built through the service.
type world struct {
	subA, subB, sg1  string
	eniA, eniB, eniC string
	eip1, eip2       string
}

// newService returns a service on an in-memory store, the real switch and
// in-memory ports.
func newService(t testing.TB) *control.Service {
	t.Helper()
	sw := vswitch.New(vswitch.Options{})
	ports := control.PortFactoryFunc(func(spec string) (tap.Port, error) { return memport.New(spec, 16), nil })
	svc, err := control.Open(control.Options{Store: control.NewMemStore(), DataPath: sw, Ports: ports, Gateway: control.Gateway{
		PublicCIDR: netip.MustParsePrefix("198.51.100.0/28"), PublicIP: netip.MustParseAddr("198.51.100.1"), Uplink: "tap:uplink0"}})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { svc.Close(); sw.Close() })
	return svc
}

func buildWorld(t testing.TB, s *control.Service) *world {
	t.Helper()
	root, al := control.Root, control.Principal{UID: alice}
	w := &world{}
	w.subA = ok(s.CreateSubnet(root, api.CreateSubnetInput{CIDR: "10.0.0.0/24"})).ID
	w.subB = ok(s.CreateSubnet(root, api.CreateSubnetInput{CIDR: "10.1.0.0/24"})).ID
	w.sg1 = ok(s.CreateGroup(root, api.CreateGroupInput{Name: "web"})).ID
	ok(s.CreateInstance(root, api.CreateInstanceInput{Name: "vm1", Ports: []string{"tap:vm1a", "tap:vm1b"}}))
	ok(s.CreateInstance(root, api.CreateInstanceInput{Name: "vm2", Ports: []string{"tap:vm2a@ns2"}}))
	ok(s.CreateInstance(al, api.CreateInstanceInput{Name: "vm3", Ports: []string{"stream:/run/vm3.sock", "netdev:vm3b"}}))
	ok(s.CreateInstance(root, api.CreateInstanceInput{Name: "vmfull", Ports: []string{"tap:full0"}}))
	w.eniA = ok(s.CreateENI(root, api.CreateENIInput{SubnetID: w.subA, PrivateIP: "10.0.0.10", SecurityGroups: []string{w.sg1}})).ID
	zero := 0
	ok(s.Attach(root, w.eniA, api.AttachInput{InstanceID: "vm1", DeviceIndex: &zero}))
	w.eniB = ok(s.CreateENI(al, api.CreateENIInput{SubnetID: w.subA, SecondaryPrivateIPs: []string{"10.0.0.20"}})).ID
	w.eniC = ok(s.CreateENI(al, api.CreateENIInput{SubnetID: w.subB})).ID
	ok(s.Grant(al, w.eniC, api.PermissionInput{Permission: api.PermAttach, UID: bob}))
	full := ok(s.CreateENI(root, api.CreateENIInput{SubnetID: w.subB}))
	ok(s.Attach(root, full.ID, api.AttachInput{InstanceID: "vmfull"}))
	w.eip1 = ok(s.Allocate(root, api.AllocateInput{})).ID
	ok(s.Associate(root, w.eip1, api.AssociateInput{ENIID: w.eniA}))
	w.eip2 = ok(s.Allocate(root, api.AllocateInput{})).ID
	return w
}

func dumpJSON(t testing.TB, s *control.Service) string {
	t.Helper()
	b, err := json.MarshalIndent(s.Dump(), "", " ")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// ok returns v, panicking on err: for setup steps that cannot fail.
func ok[T any](v T, err error) T {
	if err != nil {
		panic(fmt.Sprintf("unexpected error: %v", err))
	}
	return v
}
