package control

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"roam/internal/qmp/qmptest"
)

// TestHotplug drives attach, detach and reassign on instances that name a
// QEMU monitor (a qmptest twin) and checks what the monitor was asked,
// the instances' ports, the published config and the state after a
// restart.
func TestHotplug(t *testing.T) {
	dir, err := os.MkdirTemp("", "hp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	mon := func(name string) *qmptest.Server {
		s, err := qmptest.Start(filepath.Join(dir, name+".qmp"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		return s
	}
	q1, q2 := mon("vm1"), mon("vm2")
	f := newFixture(t, nil)
	s := f.svc
	sub := ok(s.CreateSubnet(Root, CreateSubnetInput{CIDR: "10.0.0.0/24"})).ID
	if _, err := s.CreateInstance(Root, CreateInstanceInput{Name: "bad", QMP: "relative.qmp"}); codeOf(err) != CodeInvalidParameter {
		t.Fatalf("relative qmp path: got %v, want InvalidParameter", err)
	}
	if _, err := s.CreateInstance(Root, CreateInstanceInput{Name: "bad"}); codeOf(err) != CodeInvalidParameter {
		t.Fatalf("no port and no qmp: got %v, want InvalidParameter", err)
	}
	ok(s.CreateInstance(Root, CreateInstanceInput{Name: "vm1", QMP: q1.Path}))
	ok(s.CreateInstance(Root, CreateInstanceInput{Name: "vm2", QMP: q2.Path, Ports: []string{"stream:" + filepath.Join(dir, "static.sock")}}))
	a := ok(s.CreateENI(Root, CreateENIInput{SubnetID: sub}))
	b := ok(s.CreateENI(Root, CreateENIInput{SubnetID: sub}))
	c := ok(s.CreateENI(Root, CreateENIInput{SubnetID: sub}))
	sock := func(inst string, i int) string {
		return filepath.Join(dir, "roam-"+inst+"-"+string(rune('0'+i))+".sock")
	}
	spec := func(inst string, i int) string { return "stream:" + sock(inst, i) }
	check := func(step string) {
		t.Helper()
		if bad := s.Check(); bad != nil {
			t.Fatalf("%s: state check: %v", step, bad)
		}
		if len(f.dp.bad) > 0 {
			t.Fatalf("%s: data path saw %v", step, f.dp.bad)
		}
	}
	ports := func(inst string) []string {
		t.Helper()
		var out []string
		for _, p := range ok(s.Instance(inst)).Ports {
			out = append(out, p.Spec+" "+p.Status+" "+p.ENIID)
		}
		return out
	}
	want := func(step string, got, want []string) {
		t.Helper()
		if !slices.Equal(got, want) {
			t.Fatalf("%s: got %q, want %q", step, got, want)
		}
	}

	// Two attaches hot-plug two NICs with the records' MACs.
	ok(s.Attach(Root, a.ID, AttachInput{InstanceID: "vm1"}))
	ok(s.Attach(Root, b.ID, AttachInput{InstanceID: "vm1"}))
	check("attach")
	want("vm1 devices", q1.Devices(), []string{"roam0 " + a.MAC + " " + sock("vm1", 0), "roam1 " + b.MAC + " " + sock("vm1", 1)})
	want("vm1 ports", ports("vm1"), []string{spec("vm1", 0) + " up " + a.ID, spec("vm1", 1) + " up " + b.ID})
	if r := f.dp.record(a.ID); r == nil || !slices.Equal(r.Ports, []string{spec("vm1", 0)}) {
		t.Fatalf("published record %s: %+v, want it on %s", a.ID, r, spec("vm1", 0))
	}

	// Detaching the first leaves a free slot in the middle, unplugged.
	ok(s.Detach(Root, a.ID, DetachInput{}))
	check("detach")
	want("vm1 devices after detach", q1.Devices(), []string{"roam1 " + b.MAC + " " + sock("vm1", 1)})
	want("vm1 netdevs after detach", q1.Netdevs(), []string{"roam1"})
	want("vm1 ports after detach", ports("vm1"), []string{spec("vm1", 0) + " unplugged ", spec("vm1", 1) + " up " + b.ID})

	// The next attach reuses it.
	ok(s.Attach(Root, c.ID, AttachInput{InstanceID: "vm1"}))
	want("vm1 devices after reuse", q1.Devices(), []string{"roam0 " + c.MAC + " " + sock("vm1", 0), "roam1 " + b.MAC + " " + sock("vm1", 1)})

	// A reassign moves the NIC: plugged into vm2 (after its free static
	// port? no: the static port is free and up, so it is taken first).
	ok(s.Reassign(Root, b.ID, ReassignInput{InstanceID: "vm2"}))
	check("reassign to a static port")
	want("vm2 devices", q2.Devices(), nil)
	want("vm1 ports after reassign", ports("vm1"), []string{spec("vm1", 0) + " up " + c.ID})
	want("vm1 devices after reassign", q1.Devices(), []string{"roam0 " + c.MAC + " " + sock("vm1", 0)})
	ok(s.Reassign(Root, c.ID, ReassignInput{InstanceID: "vm2"}))
	check("reassign with hot-plug")
	want("vm2 devices after hot-plug reassign", q2.Devices(), []string{"roam1 " + c.MAC + " " + sock("vm2", 1)})
	want("vm1 ports after the last NIC left", ports("vm1"), nil)
	want("vm1 devices after the last NIC left", q1.Devices(), nil)

	// A monitor that refuses device_add: the attach is refused, nothing
	// stays behind.
	q1.Fail["device_add"] = "Bus 'pci.0' does not support hotplugging"
	if _, err := s.Attach(Root, a.ID, AttachInput{InstanceID: "vm1"}); codeOf(err) != CodeIncorrectState {
		t.Fatalf("attach with device_add refused: got %v, want IncorrectState", err)
	}
	check("refused hot-plug")
	want("vm1 ports after a refused hot-plug", ports("vm1"), nil)
	want("vm1 netdevs after a refused hot-plug", q1.Netdevs(), nil)
	if e := ok(s.ENI(a.ID)); e.Status != StatusAvailable {
		t.Fatalf("record after a refused hot-plug: %s, want available", e.Status)
	}
	delete(q1.Fail, "device_add")

	// The monitor and the hot-plug slots survive a restart.
	f.restart(t)
	s = f.svc
	check("restart")
	in := ok(s.Instance("vm2"))
	if in.QMP != q2.Path || len(in.Ports) != 2 || !in.Ports[1].Hotplug || in.Ports[1].ENIID != c.ID {
		t.Fatalf("vm2 after restart: %+v", in)
	}
	ok(s.Detach(Root, c.ID, DetachInput{}))
	want("vm2 devices after detach", q2.Devices(), nil)
	want("vm2 ports after detach", ports("vm2"), []string{"stream:" + filepath.Join(dir, "static.sock") + " up " + b.ID})
}
