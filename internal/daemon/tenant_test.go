package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"roam/api"
	"roam/control"
	"roam/internal/apiserver"
	"roam/internal/packet/packettest"
	vswitch "roam/switch"
	"roam/tap"
	"roam/tap/memport"
)

// memPorts is a port factory of in-memory ports that keeps them, so that
// a test can act as the guests and as the outside.
type memPorts struct {
	mu    sync.Mutex
	ports map[string]*memport.Port
}

func newMemPorts() *memPorts { return &memPorts{ports: map[string]*memport.Port{}} }

func (m *memPorts) Open(spec string) (tap.Port, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := memport.New(spec, 1024)
	m.ports[spec] = p
	return p, nil
}

func (m *memPorts) get(spec string) *memport.Port {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ports[spec]
}

// tenant is a test's view of a daemon: its ports and its API as one
// in-process caller or another.
type tenant struct {
	t          *testing.T
	d          *Daemon
	ports      *memPorts
	handedOver bool // Handover stopped d
}

func startTenant(t *testing.T, cfg Config) *tenant {
	t.Helper()
	ports := newMemPorts()
	d, err := Start(cfg, Options{Ports: ports})
	if err != nil {
		t.Fatal(err)
	}
	tn := &tenant{t: t, d: d, ports: ports}
	t.Cleanup(func() {
		if !tn.handedOver {
			d.Shutdown(context.Background())
		}
	})
	return tn
}

// call makes one API request as p, in process, and decodes the answer into
// out; it returns the API error, if any.
func (tn *tenant) call(p control.Principal, method, path string, out any) *api.Error {
	tn.t.Helper()
	req := httptest.NewRequest(method, "http://roamd"+path, nil)
	req = req.WithContext(apiserver.WithPrincipal(req.Context(), p))
	rec := httptest.NewRecorder()
	tn.d.API.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		var eb api.ErrorBody
		if err := json.Unmarshal(rec.Body.Bytes(), &eb); err != nil || eb.Error == nil {
			tn.t.Fatalf("%s %s: status %d, body %s", method, path, rec.Code, rec.Body)
		}
		return eb.Error
	}
	if err := json.Unmarshal(rec.Body.Bytes(), out); err != nil {
		tn.t.Fatalf("%s %s: %v: %s", method, path, err, rec.Body)
	}
	return nil
}

// get is call for a read that must succeed.
func (tn *tenant) get(p control.Principal, path string, out any) {
	tn.t.Helper()
	if err := tn.call(p, "GET", path, out); err != nil {
		tn.t.Fatalf("GET %s as uid %d: %v", path, p.UID, err)
	}
}

var (
	gatewayMAC = net.HardwareAddr(vswitch.DefaultGatewayMAC)
	server     = netip.MustParseAddrPort("203.0.113.9:443")
)

// send injects a frame from record e's guest on port spec.
func (tn *tenant) send(spec string, e *api.ENI, s packettest.Spec) {
	tn.t.Helper()
	mac, _ := net.ParseMAC(e.MAC)
	f := packettest.Frame(s)
	copy(f[0:6], gatewayMAC)
	copy(f[6:12], mac)
	if !tn.ports.get(spec).Inject(f) {
		tn.t.Fatalf("port %s closed", spec)
	}
}

// uplinkIP returns the next IPv4 frame roam sends on the uplink.
func (tn *tenant) uplinkIP() []byte {
	tn.t.Helper()
	up := tn.ports.get("tap:up")
	deadline := time.Now().Add(3 * time.Second)
	for {
		f, ok := up.Recv(time.Until(deadline))
		if !ok {
			tn.t.Fatalf("nothing on the uplink (drops %v)", tn.d.Switch.Counters().Drops)
		}
		if len(f) >= 34 && f[12] == 0x08 && f[13] == 0x00 {
			return f
		}
	}
}

// udpOut sends one UDP datagram from e to the outside server and waits for
// it on the uplink.
func (tn *tenant) udpOut(spec string, e *api.ENI, port uint16) {
	tn.t.Helper()
	tn.send(spec, e, packettest.Spec{Proto: 17, Src: netip.AddrPortFrom(e.PrivateIP, port), Dst: server, Payload: []byte("hello")})
	tn.uplinkIP()
}

func flowOwners(flows []api.Flow) []string {
	var ids []string
	for _, f := range flows {
		if !slices.Contains(ids, f.ENIID) {
			ids = append(ids, f.ENIID)
		}
	}
	slices.Sort(ids)
	return ids
}

func eniIDs(es []*api.ENI) []string {
	var ids []string
	for _, e := range es {
		ids = append(ids, e.ID)
	}
	return ids
}

func sorted(ids ...string) []string { return slices.Sorted(slices.Values(ids)) }

// TestReadsAreScoped (issue 10, point 7): with two tenants and root on one
// roamd, each tenant's reads through the API show only its records (owned
// or granted), their attachments, flows, counters, public IPs and audit
// events; another tenant's record answers NotFound as one that does not
// exist; root reads everything.
func TestReadsAreScoped(t *testing.T) {
	tn := startTenant(t, daemonConfig(t.TempDir()))
	s := tn.d.Service
	root := control.Root
	alice, bob := control.Principal{UID: 1000}, control.Principal{UID: 2000}
	sn := ok(s.CreateSubnet(root, api.CreateSubnetInput{CIDR: "10.0.0.0/24"}))
	for _, vm := range []string{"vm1", "vm2", "vm3"} {
		ok(s.CreateInstance(root, api.CreateInstanceInput{Name: vm, Ports: []string{"tap:" + vm}}))
	}
	a := ok(s.CreateENI(alice, api.CreateENIInput{SubnetID: sn.ID}))
	ok(s.Attach(alice, a.ID, api.AttachInput{InstanceID: "vm1"}))
	b := ok(s.CreateENI(bob, api.CreateENIInput{SubnetID: sn.ID}))
	ok(s.Attach(bob, b.ID, api.AttachInput{InstanceID: "vm2"}))
	g := ok(s.CreateENI(root, api.CreateENIInput{SubnetID: sn.ID})) // root's, bob may attach it
	ok(s.Attach(root, g.ID, api.AttachInput{InstanceID: "vm3"}))
	ok(s.Grant(root, g.ID, api.PermissionInput{Permission: api.PermAttach, UID: bob.UID}))
	eipA := ok(s.Allocate(root, api.AllocateInput{}))
	ok(s.Associate(root, eipA.ID, api.AssociateInput{ENIID: a.ID}))
	eipB := ok(s.Allocate(root, api.AllocateInput{}))
	ok(s.Associate(bob, eipB.ID, api.AssociateInput{ENIID: b.ID}))
	spare := ok(s.Allocate(root, api.AllocateInput{}))
	tn.udpOut("tap:vm1", a, 4000)
	tn.udpOut("tap:vm1", a, 4001)
	tn.udpOut("tap:vm2", b, 4000)
	tn.udpOut("tap:vm3", g, 4000)

	notFound := func(t *testing.T, p control.Principal, path, id string) {
		t.Helper()
		var out any
		err := tn.call(p, "GET", path, &out)
		if err == nil || err.Code != api.CodeNotFound {
			t.Fatalf("GET %s as uid %d: got %v %v, want NotFound", path, p.UID, err, out)
		}
		// The same answer as for an object that does not exist.
		ghost := tn.call(root, "GET", strings.Replace(path, id, ghostOf(id), 1), &out)
		if ghost == nil || strings.Replace(err.Message, id, ghostOf(id), 1) != ghost.Message {
			t.Errorf("GET %s as uid %d: message %q, a missing object's is %v", path, p.UID, err.Message, ghost)
		}
	}

	cases := []struct {
		p           control.Principal
		enis, flows []string
		eips        []string
		hidden      []string // records it must not find
		hiddenEIPs  []*api.Address
	}{
		{alice, []string{a.ID}, []string{a.ID}, []string{eipA.ID}, []string{b.ID, g.ID}, []*api.Address{eipB, spare}},
		{bob, sorted(b.ID, g.ID), sorted(b.ID, g.ID), []string{eipB.ID}, []string{a.ID}, []*api.Address{eipA, spare}},
		{root, sorted(a.ID, b.ID, g.ID), sorted(a.ID, b.ID, g.ID), sorted(eipA.ID, eipB.ID, spare.ID), nil, nil},
	}
	for _, tc := range cases {
		t.Run("uid "+strconv.Itoa(int(tc.p.UID)), func(t *testing.T) {
			var enis []*api.ENI
			tn.get(tc.p, "/v1/enis", &enis)
			if got := eniIDs(enis); !slices.Equal(got, tc.enis) {
				t.Errorf("eni list: got %v, want %v", got, tc.enis)
			}
			for _, id := range tc.hidden {
				notFound(t, tc.p, api.Path("enis", id), id)
				notFound(t, tc.p, "/v1/conntrack?eni_id="+id, id)
				notFound(t, tc.p, "/v1/stats?eni_id="+id, id)
			}
			for _, x := range tc.hiddenEIPs {
				notFound(t, tc.p, api.Path("eips", x.ID), x.ID)
				notFound(t, tc.p, api.Path("eips", x.PublicIP.String()), x.PublicIP.String())
				tn.get(tc.p, "/v1/enis?public_ip="+x.PublicIP.String(), &enis)
				if x.ENIID != "" && tc.p != root && len(enis) != 0 {
					t.Errorf("eni list by the public ip of %s: got %v, want none", x.ENIID, eniIDs(enis))
				}
			}
			var eips []*api.Address
			tn.get(tc.p, "/v1/eips", &eips)
			var got []string
			for _, x := range eips {
				got = append(got, x.ID)
			}
			if !slices.Equal(got, tc.eips) {
				t.Errorf("eip list: got %v, want %v", got, tc.eips)
			}
			var flows []api.Flow
			tn.get(tc.p, "/v1/conntrack", &flows)
			if got := flowOwners(flows); !slices.Equal(got, tc.flows) {
				t.Errorf("conntrack list: flows of %v, want %v", got, tc.flows)
			}
			var st api.Stats
			tn.get(tc.p, "/v1/stats", &st)
			var want uint64
			for _, id := range tc.flows {
				want += tn.d.Switch.RecordCounters(id).PacketsOut
			}
			if tc.p == root {
				if st.ID != "global" || st.Packets != tn.d.Switch.Counters().Packets {
					t.Errorf("root's stats: got %+v, want the switch's", st)
				}
			} else if st.ID != "uid:"+strconv.Itoa(int(tc.p.UID)) || st.PacketsOut != want || want == 0 {
				t.Errorf("stats: got %+v, want id uid:%d and %d packets out (its records')", st, tc.p.UID, want)
			}
			var dump api.Dump
			tn.get(tc.p, "/v1/state", &dump)
			if got := eniIDs(dump.ENIs); !slices.Equal(got, tc.enis) || len(dump.EIPs) != len(tc.eips) || len(dump.Subnets) != 1 {
				t.Errorf("state: records %v, %d eips, %d subnets; want %v, %d, 1", got, len(dump.EIPs), len(dump.Subnets), tc.enis, len(tc.eips))
			}
			var insts []*api.Instance
			tn.get(tc.p, "/v1/instances", &insts)
			if len(insts) != 3 {
				t.Fatalf("instances: got %d, want all 3", len(insts))
			}
			for _, in := range insts {
				pt := in.Ports[0]
				if pt.ENIID == "" {
					if slices.Contains(tc.enis, eniOn(t, s, in.Name)) || len(in.Attachments) != 0 {
						t.Errorf("instance %s: attachment of a readable record hidden (%+v)", in.Name, in)
					}
				} else if !slices.Contains(tc.enis, pt.ENIID) || len(in.Attachments) != 1 {
					t.Errorf("instance %s shows record %s to uid %d", in.Name, pt.ENIID, tc.p.UID)
				}
			}
			var evs []api.Event
			tn.get(tc.p, "/v1/events?limit=1000", &evs)
			all := ok(s.Events(0, 0))
			for _, ev := range evs {
				if tc.p != root && ev.UID != tc.p.UID && !slices.Contains(tc.enis, ev.Target) && !slices.Contains(tc.eips, ev.Target) {
					t.Errorf("event %+v shown to uid %d", ev, tc.p.UID)
				}
			}
			var mine int
			for _, ev := range all {
				if tc.p == root || ev.UID == tc.p.UID || slices.Contains(tc.enis, ev.Target) || slices.Contains(tc.eips, ev.Target) {
					mine++
				}
			}
			if len(evs) != mine || mine == 0 {
				t.Errorf("events: got %d, want the %d of uid %d's own doing or records", len(evs), mine, tc.p.UID)
			}
			var page []api.Event
			tn.get(tc.p, "/v1/events?limit=1", &page)
			if len(page) != 1 || page[0] != evs[0] {
				t.Errorf("events, limit 1: got %+v, want %+v", page, evs[0])
			}
		})
	}
	t.Run("alice sees root's association of her address", func(t *testing.T) {
		var evs []api.Event
		tn.get(alice, "/v1/events", &evs)
		if !slices.ContainsFunc(evs, func(e api.Event) bool { return e.Operation == "AssociateAddress" && e.Target == eipA.ID && e.UID == 0 }) {
			t.Errorf("events %+v lack root's AssociateAddress of %s", evs, eipA.ID)
		}
	})
}

// ghostOf returns an id or address of the same kind as ref that names no
// object.
func ghostOf(ref string) string {
	if ip, err := netip.ParseAddr(ref); err == nil {
		return netip.AddrFrom4([4]byte{198, 51, 100, ip.As4()[3] + 100}).String()
	}
	i := strings.LastIndexByte(ref, '-')
	return ref[:i+1] + "00000000"
}

// eniOn returns the record attached to the instance's first port.
func eniOn(t *testing.T, s *control.Service, inst string) string {
	in, err := s.Instance(inst)
	if err != nil {
		t.Fatal(err)
	}
	return in.Ports[0].ENIID
}

// TestMSSClampKey (issue 10, point 12a): mss-clamp in roamd's config
// lowers the MSS option of a SYN a guest sends out through PAT, and leaves
// a smaller MSS alone; the checksum stays right.
func TestMSSClampKey(t *testing.T) {
	cfg := daemonConfig(t.TempDir())
	if err := cfg.Set("mss-clamp", "1200"); err != nil {
		t.Fatalf("Set mss-clamp: %v", err)
	}
	for _, bad := range []string{"40", "70000", "big"} {
		var c Config
		if err := c.Set("mss-clamp", bad); err == nil || !strings.Contains(err.Error(), "mss-clamp") {
			t.Errorf("Set mss-clamp %s: got %v, want an error naming mss-clamp", bad, err)
		}
	}
	tn := startTenant(t, cfg)
	s := tn.d.Service
	sn := ok(s.CreateSubnet(control.Root, api.CreateSubnetInput{CIDR: "10.0.0.0/24"}))
	ok(s.CreateInstance(control.Root, api.CreateInstanceInput{Name: "vm1", Ports: []string{"tap:vm1"}}))
	e := ok(s.CreateENI(control.Root, api.CreateENIInput{SubnetID: sn.ID}))
	ok(s.Attach(control.Root, e.ID, api.AttachInput{InstanceID: "vm1"}))
	for _, c := range []struct{ sent, want uint16 }{{1460, 1200}, {1000, 1000}} {
		tn.send("tap:vm1", e, packettest.Spec{Proto: 6, Src: netip.AddrPortFrom(e.PrivateIP, 40000+c.sent), Dst: server,
			TCPFlags: 0x02, Seq: 1, Window: 65535, TCPOptions: []layers.TCPOption{
				{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{byte(c.sent >> 8), byte(c.sent)}}}})
		f := tn.uplinkIP()
		if err := packettest.Verify(f); err != nil {
			t.Errorf("SYN with MSS %d: %v", c.sent, err)
		}
		if got := synMSS(t, f); got != c.want {
			t.Errorf("SYN with MSS %d left roam with MSS %d, want %d", c.sent, got, c.want)
		}
	}
}

func synMSS(t *testing.T, f []byte) uint16 {
	t.Helper()
	pkt := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
	tcp, _ := pkt.Layer(layers.LayerTypeTCP).(*layers.TCP)
	if tcp == nil || !tcp.SYN {
		t.Fatalf("not a SYN: %v", pkt)
	}
	for _, o := range tcp.Options {
		if o.OptionType == layers.TCPOptionKindMSS && len(o.OptionData) == 2 {
			return uint16(o.OptionData[0])<<8 | uint16(o.OptionData[1])
		}
	}
	t.Fatalf("SYN without MSS: %v", tcp.Options)
	return 0
}

// TestHandoverKeepsRecordCounters (issue 10, point 12b): a record's
// counters, as stats --eni shows them, survive a graceful restart
// (Handover, what SIGTERM does with keep-flows) and keep counting.
func TestHandoverKeepsRecordCounters(t *testing.T) {
	cfg := daemonConfig(t.TempDir())
	tn := startTenant(t, cfg)
	s := tn.d.Service
	sn := ok(s.CreateSubnet(control.Root, api.CreateSubnetInput{CIDR: "10.0.0.0/24"}))
	ok(s.CreateInstance(control.Root, api.CreateInstanceInput{Name: "vm1", Ports: []string{"tap:vm1"}}))
	e := ok(s.CreateENI(control.Root, api.CreateENIInput{SubnetID: sn.ID}))
	ok(s.Attach(control.Root, e.ID, api.AttachInput{InstanceID: "vm1"}))
	gone := ok(s.CreateENI(control.Root, api.CreateENIInput{SubnetID: sn.ID}))
	for i := range 5 {
		tn.udpOut("tap:vm1", e, uint16(4000+i))
	}
	tn.spoof("tap:vm1", e)
	var before api.Stats
	waitUntil(t, "the drop counted", func() bool {
		tn.get(control.Root, "/v1/stats?eni_id="+e.ID, &before)
		return before.PacketsOut == 5 && len(before.Drops) > 0
	})
	ok(s.DeleteENI(control.Root, gone.ID))
	tn.handedOver = true
	if err := tn.d.Handover(context.Background()); err != nil {
		t.Fatalf("Handover: %v", err)
	}
	if _, err := os.Stat(filepath.Join(cfg.StateDir, CountersFile)); err != nil {
		t.Errorf("Handover left no %s: %v", CountersFile, err)
	}
	var logb bytes.Buffer
	ports := newMemPorts()
	d2, err := Start(cfg, Options{Ports: ports, Logger: slog.New(slog.NewTextHandler(&logb, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Shutdown(context.Background())
	tn2 := &tenant{t: t, d: d2, ports: ports}
	var after api.Stats
	tn2.get(control.Root, "/v1/stats?eni_id="+e.ID, &after)
	before.Flows, after.Flows = 0, 0
	if b, a := jsonString(before), jsonString(after); a != b {
		t.Errorf("stats --eni after the restart:\n%s\nwant as before it:\n%s", a, b)
	}
	if !strings.Contains(logb.String(), "record counters restored") {
		t.Errorf("log does not say the counters were restored:\n%s", logb.String())
	}
	if _, err := os.Stat(filepath.Join(cfg.StateDir, CountersFile)); !os.IsNotExist(err) {
		t.Errorf("%s still there after the import: %v", CountersFile, err)
	}
	tn2.udpOut("tap:vm1", e, 5000)
	tn2.get(control.Root, "/v1/stats?eni_id="+e.ID, &after)
	if after.PacketsOut != before.PacketsOut+1 {
		t.Errorf("packets out after one more: %d, want %d", after.PacketsOut, before.PacketsOut+1)
	}
}

// spoof sends a datagram from e's guest with a source address that is not
// e's: the source/destination check drops it, charged to e.
func (tn *tenant) spoof(spec string, e *api.ENI) {
	tn.send(spec, e, packettest.Spec{Proto: 17, Src: netip.MustParseAddrPort("10.0.0.200:53"), Dst: server, Payload: []byte("x")})
}

func jsonString(v any) string {
	b, _ := json.MarshalIndent(v, "", " ")
	return string(b)
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRecordMetrics (issue 10, point 12c): the metrics endpoint serves a
// record's packet, byte and drop counters, equal to its stats.
func TestRecordMetrics(t *testing.T) {
	cfg := daemonConfig(t.TempDir())
	cfg.Metrics = "127.0.0.1:0"
	tn := startTenant(t, cfg)
	s := tn.d.Service
	sn := ok(s.CreateSubnet(control.Root, api.CreateSubnetInput{CIDR: "10.0.0.0/24"}))
	ok(s.CreateInstance(control.Root, api.CreateInstanceInput{Name: "vm1", Ports: []string{"tap:vm1"}}))
	e := ok(s.CreateENI(control.Root, api.CreateENIInput{SubnetID: sn.ID}))
	ok(s.Attach(control.Root, e.ID, api.AttachInput{InstanceID: "vm1"}))
	for i := range 3 {
		tn.udpOut("tap:vm1", e, uint16(4000+i))
	}
	tn.spoof("tap:vm1", e)
	var st api.Stats
	waitUntil(t, "a drop of the record", func() bool {
		tn.get(control.Root, "/v1/stats?eni_id="+e.ID, &st)
		return len(st.Drops) > 0
	})
	resp, err := http.Get("http://" + tn.d.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	series := func(name, labels string) (float64, bool) {
		re := regexp.MustCompile(`(?m)^` + name + `\{` + labels + `\} (\S+)$`)
		m := re.FindSubmatch(body)
		if m == nil {
			return 0, false
		}
		v, err := strconv.ParseFloat(string(m[1]), 64)
		return v, err == nil
	}
	want := []struct {
		name, labels string
		v            uint64
	}{
		{"roam_record_packets_total", `direction="out",eni="` + e.ID + `"`, st.PacketsOut},
		{"roam_record_packets_total", `direction="in",eni="` + e.ID + `"`, st.PacketsIn},
		{"roam_record_bytes_total", `direction="out",eni="` + e.ID + `"`, st.BytesOut},
		{"roam_record_bytes_total", `direction="in",eni="` + e.ID + `"`, st.BytesIn},
	}
	for reason, n := range st.Drops {
		want = append(want, struct {
			name, labels string
			v            uint64
		}{"roam_record_drops_total", `eni="` + e.ID + `",reason="` + reason + `"`, n})
	}
	if st.PacketsOut != 3 || st.BytesOut == 0 {
		t.Fatalf("stats %+v, want 3 packets out", st)
	}
	for _, w := range want {
		got, found := series(w.name, w.labels)
		if !found || got != float64(w.v) {
			t.Errorf("%s{%s}: got %v (found %v), want %d", w.name, w.labels, got, found, w.v)
		}
	}
}
