package control

import (
	"strings"
	"testing"

	vswitch "roam/switch"
)

// TestCheckDataPath: the state check compares the config the switch has
// in force with a full rebuild from the store, and says so when they
// disagree (here: a record changed behind control's back).
func TestCheckDataPath(t *testing.T) {
	f := newFixture(t, nil)
	f.svc.Close()
	sw := vswitch.New(vswitch.Options{})
	t.Cleanup(func() { sw.Close() })
	s, err := Open(Options{Store: f.store, DataPath: sw, Ports: f.ports, Gateway: f.gw})
	if err != nil {
		t.Fatal(err)
	}
	sn := ok(s.CreateSubnet(Root, CreateSubnetInput{CIDR: "10.30.0.0/24"}))
	ok(s.CreateInstance(Root, CreateInstanceInput{Name: "vm1", Ports: []string{"tap:k1"}}))
	e := ok(s.CreateENI(Root, CreateENIInput{SubnetID: sn.ID}))
	ok(s.Attach(Root, e.ID, AttachInput{InstanceID: "vm1"}))
	if p := s.Check(); len(p) != 0 {
		t.Fatalf("consistent state: got problems %v", p)
	}
	cfg := *sw.Config()
	cfg.Records = append([]vswitch.Record(nil), cfg.Records...)
	cfg.Records[0].Ports = nil
	if err := sw.Apply(&cfg); err != nil {
		t.Fatal(err)
	}
	p := s.Check()
	if len(p) == 0 || !strings.Contains(strings.Join(p, "\n"), "record "+e.ID+" in the data path") {
		t.Fatalf("data path changed behind control's back: got problems %v, want one naming %s", p, e.ID)
	}
}
