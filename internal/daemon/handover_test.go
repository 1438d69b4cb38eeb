package daemon

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"roam/api"
	"roam/control"
	"roam/internal/packet/packettest"
	vswitch "roam/switch"
	"roam/tap"
)

func daemonConfig(dir string) Config {
	cfg := DefaultConfig()
	cfg.StateDir, cfg.Socket, cfg.SocketGroup = filepath.Join(dir, "state"), filepath.Join(dir, "s.sock"), ""
	cfg.PublicCIDR, cfg.PublicIP, cfg.Uplink, cfg.Upstream = "198.51.100.0/24", "198.51.100.1", "tap:up", "02:ee:00:00:00:01"
	cfg.NoSync = true
	return cfg
}

// TestHandoverKeepsFlows: Handover saves the flows; the next daemon on the
// same state directory has them, charged to the same records, before it
// reads a frame, and removes the snapshot.
func ok[T any](v T, err error) T {
	if err != nil {
		panic(fmt.Sprintf("unexpected error: %v", err))
	}
	return v
}

func TestHandoverKeepsFlows(t *testing.T) {
	dir := t.TempDir()
	cfg := daemonConfig(dir)
	d, err := Start(cfg, Options{Ports: MemoryPorts})
	if err != nil {
		t.Fatal(err)
	}
	s := d.Service
	sn := ok(s.CreateSubnet(control.Root, api.CreateSubnetInput{CIDR: "10.0.0.0/24"}))
	ok(s.CreateInstance(control.Root, api.CreateInstanceInput{Name: "vm1", Ports: []string{"tap:a"}}))
	e := ok(s.CreateENI(control.Root, api.CreateENIInput{SubnetID: sn.ID}))
	ok(s.Attach(control.Root, e.ID, api.AttachInput{InstanceID: "vm1"}))
	mac, _ := net.ParseMAC(e.MAC)
	f := packettest.Frame(packettest.Spec{Proto: 17, Src: netip.AddrPortFrom(e.PrivateIP, 4000), Dst: netip.MustParseAddrPort("203.0.113.9:53"), Payload: []byte("q")})
	copy(f[0:6], vswitch.DefaultGatewayMAC)
	copy(f[6:12], mac)
	buf := tap.NewFrames(1, tap.Headroom+2048)
	buf[0].Len = copy(buf[0].Buf[tap.Headroom:], f)
	d.Switch.Process("tap:a", buf)
	before := d.Switch.Flows("")
	if len(before) != 1 || before[0].Record != e.ID {
		t.Fatalf("setup: flows %+v, want one of %s", before, e.ID)
	}
	if err := d.Handover(context.Background()); err != nil {
		t.Fatalf("Handover: %v", err)
	}
	var logb bytes.Buffer
	d2, err := Start(cfg, Options{Ports: MemoryPorts, Logger: slog.New(slog.NewTextHandler(&logb, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Shutdown(context.Background())
	after := d2.Switch.Flows("")
	if len(after) != 1 || after[0].Record != e.ID || after[0].Raw.Orig != before[0].Raw.Orig || after[0].Raw.Reply != before[0].Raw.Reply {
		t.Errorf("after the handover: flows %+v, want %+v", after, before)
	}
	if !strings.Contains(logb.String(), "flows restored") {
		t.Errorf("log does not say the flows were restored:\n%s", logb.String())
	}
	if _, err := os.Stat(filepath.Join(cfg.StateDir, FlowsFile)); !os.IsNotExist(err) {
		t.Errorf("%s still there after the import: %v", FlowsFile, err)
	}
}

// TestCorruptFlowSnapshot: roamd refuses a corrupt flows.snap with an
// error in the log, starts with an empty table, and serves.
func TestCorruptFlowSnapshot(t *testing.T) {
	dir := t.TempDir()
	cfg := daemonConfig(dir)
	os.MkdirAll(cfg.StateDir, 0o755)
	os.WriteFile(filepath.Join(cfg.StateDir, FlowsFile), []byte("ROAMFLOWS\x01\x00 but then nothing sensible"), 0o600)
	var logb bytes.Buffer
	d, err := Start(cfg, Options{Ports: MemoryPorts, Logger: slog.New(slog.NewTextHandler(&logb, nil))})
	if err != nil {
		t.Fatalf("Start with a corrupt snapshot: %v", err)
	}
	defer d.Shutdown(context.Background())
	if n := d.Switch.Conntrack().Len(); n != 0 {
		t.Errorf("%d flows after a corrupt snapshot, want 0", n)
	}
	if !strings.Contains(logb.String(), "flow snapshot refused; starting with an empty conntrack table") || !strings.Contains(logb.String(), "bad flow snapshot") {
		t.Errorf("log does not say the snapshot was refused and why:\n%s", logb.String())
	}
	if _, err := d.Service.CreateSubnet(control.Root, api.CreateSubnetInput{CIDR: "10.0.0.0/24"}); err != nil {
		t.Errorf("daemon does not serve after a corrupt snapshot: %v", err)
	}
}
