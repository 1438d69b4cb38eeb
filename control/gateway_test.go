package control

import "testing"

func TestSetGateway(t *testing.T) {
	f := newFixture(t, nil)
	buildWorld(t, f.svc)
	g := f.gw
	g.PublicCIDR = netipPrefix("203.0.113.0/24")
	if err := f.svc.SetGateway(g); codeOf(err) != CodeDependencyViolation {
		t.Errorf("got %v, want DependencyViolation (allocated EIPs outside the new pool)", err)
	}
	g = f.gw
	g.PublicIP = netipAddr("198.51.100.3")
	if err := f.svc.SetGateway(g); codeOf(err) != CodeDependencyViolation {
		t.Errorf("got %v, want DependencyViolation (public ip allocated)", err)
	}
	g.PublicIP = netipAddr("198.51.100.14")
	if err := f.svc.SetGateway(g); err != nil {
		t.Fatal(err)
	}
	if got := f.dp.last.PublicIP.String(); got != "198.51.100.14" {
		t.Errorf("got published public ip %s, want 198.51.100.14", got)
	}
}
