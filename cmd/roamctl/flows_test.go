package main

import (
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/gopacket/pcapgo"

	"roam/api"
	roamd "roam/internal/daemon"
	"roam/internal/packet/packettest"
	vswitch "roam/switch"
	"roam/tap"
	"roam/tap/taptest"
)

// portSet is a port factory that keeps the in-memory ports it opens, so
// that the test can act as the guests and as the outside.
type portSet struct {
	mu    sync.Mutex
	ports map[string]*taptest.Port
}

func (p *portSet) Open(spec string) (tap.Port, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	tp := taptest.New(spec, 1024)
	p.ports[spec] = tp
	return tp, nil
}

func (p *portSet) get(spec string) *taptest.Port {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ports[spec]
}

// TestReassignKeepsFlows establishes TCP flows through a public IP (1:1)
// and through PAT with the real switch and in-memory ports, then moves the
// records with "roamctl eni reassign" and "roamctl ip reassign". The flows
// continue from and to the new instances with the same public tuples;
// conntrack is unchanged and nothing reaches the old ports.
func TestReassignKeepsFlows(t *testing.T) {
	dir, err := os.MkdirTemp("", "roamd-flows-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ports := &portSet{ports: map[string]*taptest.Port{}}
	cfg := roamd.DefaultConfig()
	cfg.StateDir, cfg.Socket, cfg.SocketGroup = filepath.Join(dir, "state"), filepath.Join(dir, "roamd.sock"), ""
	cfg.PublicCIDR, cfg.PublicIP, cfg.Uplink = "198.51.100.0/24", "198.51.100.1", "tap:uplink0"
	cfg.Upstream = "02:ee:00:00:00:01" // the next hop's MAC, so that nothing waits for ARP
	dmn, err := roamd.Start(cfg, roamd.Options{Ports: ports})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dmn.Shutdown(t.Context()) })
	d := &daemon{t: t, socket: cfg.Socket, client: api.NewClient(cfg.Socket)}

	sub := d.ok("subnet", "create", "10.0.0.0/24")["id"].(string)
	for _, vm := range [][2]string{{"vm1", "tap:a1"}, {"vm2", "tap:a2"}, {"vm3", "tap:b1"}, {"vm4", "tap:b2"}} {
		d.ok("instance", "create", vm[0], "--port", vm[1])
	}
	one := d.ok("eni", "create", "--subnet", sub, "--private-ip", "10.0.0.10")
	pat := d.ok("eni", "create", "--subnet", sub, "--private-ip", "10.0.0.20")
	d.ok("eni", "attach", one["id"].(string), "--instance", "vm1")
	d.ok("eni", "attach", pat["id"].(string), "--instance", "vm3")
	eip := d.ok("eip", "allocate")
	d.ok("eip", "associate", eip["id"].(string), "--eni", one["id"].(string))
	publicIP := netip.MustParseAddr(eip["public_ip"].(string))

	uplink := ports.get("tap:uplink0")
	gw := net.HardwareAddr(vswitch.DefaultGatewayMAC)
	upstream := net.HardwareAddr{0x02, 0xee, 0, 0, 0, 1}
	server := netip.MustParseAddrPort("203.0.113.9:443")

	type flow struct {
		name    string
		mac     net.HardwareAddr
		private netip.AddrPort
		public  netip.AddrPort // learned from the first translated frame
		port    string         // the guest's port now
		seq     uint32
	}
	flows := []*flow{}
	for i, r := range []map[string]any{one, pat} {
		mac, _ := net.ParseMAC(r["mac"].(string))
		for j := 0; j < 3; j++ {
			priv := netip.AddrPortFrom(netip.MustParseAddr(r["private_ip"].(string)), uint16(40000+j))
			flows = append(flows, &flow{name: r["id"].(string), mac: mac, private: priv, port: []string{"tap:a1", "tap:b1"}[i], seq: 1000})
		}
	}

	frame := func(s packettest.Spec, src, dst net.HardwareAddr) []byte {
		f := packettest.Frame(s)
		copy(f[0:6], dst)
		copy(f[6:12], src)
		return f
	}
	// out sends a segment from the guest and returns the tuple seen on the uplink.
	out := func(f *flow, flags uint8, payload []byte) netip.AddrPort {
		t.Helper()
		ports.get(f.port).Inject(frame(packettest.Spec{Proto: 6, Src: f.private, Dst: server, TCPFlags: flags, Seq: f.seq, Ack: 5000, Payload: payload}, f.mac, gw))
		f.seq += uint32(len(payload))
		if flags&0x02 != 0 {
			f.seq++
		}
		got, ok := recvIP(uplink, 2*time.Second)
		if !ok {
			c, _ := dmn.Switch.RecordCounters(f.name), 0
			t.Fatalf("%s: nothing on the uplink (record drops %v, switch drops %v)", f.private, c.Drops, dmn.Switch.Counters().Drops)
		}
		src, dst := tuple(got)
		if dst != server {
			t.Fatalf("%s: uplink frame to %s, want %s", f.private, dst, server)
		}
		return src
	}
	// in sends a segment from the server to the flow's public tuple and
	// checks it reaches the guest on its current port, untranslated back.
	in := func(f *flow, flags uint8) {
		t.Helper()
		uplink.Inject(frame(packettest.Spec{Proto: 6, Src: server, Dst: f.public, TCPFlags: flags, Seq: 5000, Ack: f.seq}, upstream, gw))
		got, ok := recvIP(ports.get(f.port), 2*time.Second)
		if !ok {
			t.Fatalf("%s: reply did not reach %s (switch drops %v)", f.private, f.port, dmn.Switch.Counters().Drops)
		}
		if _, dst := tuple(got); dst != f.private {
			t.Fatalf("%s: reply delivered to %s on %s", f.private, dst, f.port)
		}
	}

	for _, f := range flows {
		f.public = out(f, 0x02, nil) // SYN
		in(f, 0x12)                  // SYN-ACK
		if got := out(f, 0x10, nil); got != f.public {
			t.Fatalf("%s: ACK left as %s, SYN as %s", f.private, got, f.public)
		}
		if f.name == one["id"] && f.public.Addr() != publicIP {
			t.Fatalf("%s: got public %s, want the EIP %s", f.private, f.public, publicIP)
		}
		if f.name == pat["id"] && f.public.Addr() != netip.MustParseAddr("198.51.100.1") {
			t.Fatalf("%s: got public %s, want PAT to 198.51.100.1", f.private, f.public)
		}
	}
	before := conntrack(d)
	if len(before) != len(flows) {
		t.Fatalf("got %d conntrack entries, want %d: %v", len(before), len(flows), before)
	}
	t.Logf("conntrack before the moves:\n%s", strings.Join(before, "\n"))

	moved := d.ok("eni", "reassign", one["id"].(string), "--instance", "vm2")
	if got := field(moved, "attachments", "0", "port"); got != "tap:a2" {
		t.Fatalf("eni reassign: got port %v, want tap:a2", got)
	}
	moved = d.ok("ip", "reassign", "10.0.0.20", "--instance", "vm4")
	if moved["id"] != pat["id"] || field(moved, "attachments", "0", "port") != "tap:b2" {
		t.Fatalf("ip reassign: got %v on %v, want %v on tap:b2", moved["id"], field(moved, "attachments", "0", "port"), pat["id"])
	}
	for _, f := range flows {
		f.port = map[string]string{"tap:a1": "tap:a2", "tap:b1": "tap:b2"}[f.port]
	}

	// Capture the new port while the flows continue.
	pcapFile := filepath.Join(dir, "a2.pcap")
	capCmd := exec.Command(filepath.Join(bin, "roamctl"), "--socket", cfg.Socket, "capture", "tap:a2", "-w", pcapFile, "-c", "2")
	if err := capCmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // let the capture subscribe
	for _, f := range flows {
		if got := out(f, 0x18, []byte("after the move")); got != f.public {
			t.Errorf("%s: after the move data left as %s, want the same public tuple %s", f.private, got, f.public)
		}
		in(f, 0x10)
	}
	for _, old := range []string{"tap:a1", "tap:b1"} {
		if f, ok := recvIP(ports.get(old), 200*time.Millisecond); ok {
			t.Errorf("a frame reached the old port %s after the move: %x", old, f)
		}
	}
	capDone := make(chan error, 1)
	go func() { capDone <- capCmd.Wait() }()
	select {
	case err := <-capDone:
		if err != nil {
			t.Fatalf("roamctl capture: %v", err)
		}
	case <-time.After(5 * time.Second):
		capCmd.Process.Kill()
		t.Fatalf("roamctl capture -c 2 did not end")
	}
	pf, err := os.Open(pcapFile)
	if err != nil {
		t.Fatal(err)
	}
	defer pf.Close()
	pr, err := pcapgo.NewReader(pf)
	if err != nil {
		t.Fatalf("capture is not a pcap file: %v", err)
	}
	var captured []netip.AddrPort
	for {
		data, _, err := pr.ReadPacketData()
		if err != nil {
			break
		}
		src, _ := tuple(data)
		captured = append(captured, src)
	}
	if len(captured) != 2 || captured[0] != flows[0].private || captured[1] != server {
		t.Errorf("captured %v on tap:a2, want the guest's segment from %s and the reply from %s", captured, flows[0].private, server)
	}
	after := conntrack(d)
	if len(after) != len(before) {
		t.Fatalf("got %d conntrack entries after the moves, want %d", len(after), len(before))
	}
	for i := range before {
		if before[i] != after[i] {
			t.Errorf("conntrack entry changed:\nbefore %s\nafter  %s", before[i], after[i])
		}
	}
}

// conntrack lists flows (tuples, state, record) through roamctl, sorted.
func conntrack(d *daemon) []string {
	var out []string
	for _, f := range d.list("conntrack", "list") {
		out = append(out, f["proto"].(string)+" "+f["orig_src"].(string)+">"+f["orig_dst"].(string)+" "+
			f["reply_src"].(string)+">"+f["reply_dst"].(string)+" "+f["state"].(string)+" "+f["eni_id"].(string))
	}
	sort.Strings(out)
	return out
}

// tuple returns the source and destination of an Ethernet/IPv4/TCP frame.
func tuple(f []byte) (src, dst netip.AddrPort) {
	ip := f[14:]
	hl := int(ip[0]&0x0f) * 4
	s, _ := netip.AddrFromSlice(ip[12:16])
	dd, _ := netip.AddrFromSlice(ip[16:20])
	return netip.AddrPortFrom(s, binary.BigEndian.Uint16(ip[hl:])), netip.AddrPortFrom(dd, binary.BigEndian.Uint16(ip[hl+2:]))
}

// recvIP returns the next IPv4 frame written to p, skipping ARP and other
// frames the switch sends on its own (gratuitous ARP, ARP requests).
func recvIP(p *taptest.Port, wait time.Duration) ([]byte, bool) {
	deadline := time.Now().Add(wait)
	for {
		f, ok := p.Recv(time.Until(deadline))
		if !ok {
			return nil, false
		}
		if len(f) >= 34 && f[12] == 0x08 && f[13] == 0x00 {
			return f, true
		}
	}
}

// TestReassignUnderTraffic keeps frames flowing to a record's public IP
// while roamctl moves the record back and forth between two instances:
// every frame is delivered to one of the two ports (never dropped for want
// of an owner), and the switch counts no drop.
func TestReassignUnderTraffic(t *testing.T) {
	dir, err := os.MkdirTemp("", "roamd-traffic-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ports := &portSet{ports: map[string]*taptest.Port{}}
	cfg := roamd.DefaultConfig()
	cfg.StateDir, cfg.Socket, cfg.SocketGroup = filepath.Join(dir, "state"), filepath.Join(dir, "roamd.sock"), ""
	cfg.PublicCIDR, cfg.PublicIP, cfg.Uplink, cfg.Upstream = "198.51.100.0/24", "198.51.100.1", "tap:uplink0", "02:ee:00:00:00:01"
	dmn, err := roamd.Start(cfg, roamd.Options{Ports: ports})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dmn.Shutdown(t.Context()) })
	d := &daemon{t: t, socket: cfg.Socket, client: api.NewClient(cfg.Socket)}
	sub := d.ok("subnet", "create", "10.0.0.0/24")["id"].(string)
	d.ok("instance", "create", "vm1", "--port", "tap:a1")
	d.ok("instance", "create", "vm2", "--port", "tap:a2")
	e := d.ok("eni", "create", "--subnet", sub, "--private-ip", "10.0.0.10")
	id := e["id"].(string)
	d.ok("eni", "attach", id, "--instance", "vm1")
	eip := d.ok("eip", "allocate")
	d.ok("eip", "associate", eip["id"].(string), "--eni", id)
	mac, _ := net.ParseMAC(e["mac"].(string))
	gw := net.HardwareAddr(vswitch.DefaultGatewayMAC)
	priv := netip.MustParseAddrPort("10.0.0.10:40000")
	server := netip.MustParseAddrPort("203.0.113.9:443")
	public := netip.AddrPortFrom(netip.MustParseAddr(eip["public_ip"].(string)), 40000)
	frame := func(s packettest.Spec, src, dst net.HardwareAddr) []byte {
		f := packettest.Frame(s)
		copy(f[0:6], dst)
		copy(f[6:12], src)
		return f
	}
	// Establish the flow.
	ports.get("tap:a1").Inject(frame(packettest.Spec{Proto: 6, Src: priv, Dst: server, TCPFlags: 0x02, Seq: 1}, mac, gw))
	if _, ok := recvIP(ports.get("tap:uplink0"), 2*time.Second); !ok {
		t.Fatal("SYN did not leave")
	}
	in := frame(packettest.Spec{Proto: 6, Src: server, Dst: public, TCPFlags: 0x12, Seq: 100, Ack: 2}, net.HardwareAddr{2, 0xee, 0, 0, 0, 1}, gw)
	ports.get("tap:uplink0").Inject(in)
	if _, ok := recvIP(ports.get("tap:a1"), 2*time.Second); !ok {
		t.Fatal("SYN-ACK was not delivered")
	}
	ports.get("tap:a1").Inject(frame(packettest.Spec{Proto: 6, Src: priv, Dst: server, TCPFlags: 0x10, Seq: 2, Ack: 101}, mac, gw))
	recvIP(ports.get("tap:uplink0"), 2*time.Second)
	dropsBefore := dmn.Switch.Counters().Dropped

	// Drain both instance ports; inject from the outside; move the record.
	var delivered [2]atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i, spec := range []string{"tap:a1", "tap:a2"} {
		wg.Add(1)
		go func(i int, p *taptest.Port) {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if f, ok := p.Recv(50 * time.Millisecond); ok && len(f) >= 34 && f[12] == 0x08 {
					delivered[i].Add(1)
				}
			}
		}(i, ports.get(spec))
	}
	data := frame(packettest.Spec{Proto: 6, Src: server, Dst: public, TCPFlags: 0x10, Seq: 101, Ack: 2, Payload: []byte("x")}, net.HardwareAddr{2, 0xee, 0, 0, 0, 1}, gw)
	injected := atomic.Int64{}
	var moved atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		// At least 3000 frames and 4 moves (bounded, for a slow machine).
		for i := 0; (i < 3000 || moved.Load() < 4) && i < 200_000; i++ {
			ports.get("tap:uplink0").Inject(data)
			injected.Add(1)
			if i%20 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	}()
	moves := 0
	for target := "vm2"; ; target = map[string]string{"vm1": "vm2", "vm2": "vm1"}[target] {
		select {
		case <-done:
		default:
			d.ok("eni", "reassign", id, "--instance", target)
			moves++
			moved.Add(1)
			continue
		}
		break
	}
	waitDelivered := time.Now().Add(5 * time.Second)
	for delivered[0].Load()+delivered[1].Load() < injected.Load() && time.Now().Before(waitDelivered) {
		time.Sleep(10 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	got := delivered[0].Load() + delivered[1].Load()
	if got != injected.Load() {
		t.Errorf("delivered %d frames (%d on tap:a1, %d on tap:a2), injected %d", got, delivered[0].Load(), delivered[1].Load(), injected.Load())
	}
	if c := dmn.Switch.Counters(); c.Dropped != dropsBefore {
		t.Errorf("the switch dropped %d frames during the moves: %v", c.Dropped-dropsBefore, c.Drops)
	}
	if moves < 2 || delivered[0].Load() == 0 || delivered[1].Load() == 0 {
		t.Errorf("%d moves, %d and %d frames per port: the test did not exercise the moves", moves, delivered[0].Load(), delivered[1].Load())
	}
	t.Logf("%d moves while %d frames flowed (%d to tap:a1, %d to tap:a2), none dropped", moves, got, delivered[0].Load(), delivered[1].Load())
}
