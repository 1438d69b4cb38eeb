package control

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"testing"
	"time"

	"roam/internal/packet"
	"roam/internal/packet/packettest"
	vswitch "roam/switch"
	"roam/tap"
	"roam/tap/taptest"
)

// benchWorld is a daemon-like setup: a bbolt store (fsync on), the real
// switch, n records of which half are attached, and a hot record attached
// to vmA that benchmarks move around.
type benchWorld struct {
	svc    *Service
	sw     *vswitch.Switch
	store  *BoltStore
	hot    string
	hotIP  netip.Addr
	hotMAC net.HardwareAddr
	dir    string
}

// benchPorts opens sinks (no per-frame copies) for every spec.
var benchPorts = PortFactoryFunc(func(spec string) (tap.Port, error) { return taptest.NewSink(spec), nil })

// seed writes n records, n/2 instances with one port each (each attached
// to one record), instances vmA, vmB, vmC and the hot record straight into
// the store, as if they had been created one by one.
func seed(b testing.TB, store Store, n int) (hot string) {
	now := time.Now().UTC()
	var muts []Mutation
	put := func(bucket, key string, v any) {
		muts = append(muts, Mutation{Bucket: bucket, Key: key, Value: marshalStored(v)})
	}
	sn := &Subnet{ID: "subnet-0000beef", CIDR: netip.MustParsePrefix("10.0.0.0/16"), Gateway: netip.MustParseAddr("10.0.0.1"), MTU: 1500, CreatedAt: now}
	put(bucketSubnets, sn.ID, sn)
	for _, name := range []string{"vmA", "vmB", "vmC"} {
		put(bucketInstances, name, &Instance{ID: name, Name: name, Ports: []Port{{Spec: "tap:" + name}}, CreatedAt: now})
	}
	ip := netip.MustParseAddr("10.0.0.10")
	for i := 0; i <= n; i++ {
		e := &ENI{ID: fmt.Sprintf("eni-%08x", i), SubnetID: sn.ID, PrivateIP: ip, PrivateIPs: []netip.Addr{ip},
			MAC: fmt.Sprintf("02:00:00:%02x:%02x:%02x", i>>16, (i>>8)&0xff, i&0xff), SourceDestCheck: true, CreatedAt: now,
			SecurityGroups: []string{}, Attachments: []Attachment{}, Permissions: Permissions{Owners: []uint32{0}}}
		switch {
		case i == n:
			hot = e.ID
			e.Attachments = []Attachment{{ID: "attach-0000beef", InstanceID: "vmA", Status: AttachmentAttached, AttachedAt: now}}
		case i%2 == 0:
			name := fmt.Sprintf("vm%05d", i)
			put(bucketInstances, name, &Instance{ID: name, Name: name, Ports: []Port{{Spec: "tap:b" + name[2:]}}, CreatedAt: now})
			e.Attachments = []Attachment{{ID: fmt.Sprintf("attach-%08x", i), InstanceID: name, Status: AttachmentAttached, AttachedAt: now}}
		}
		put(bucketENIs, e.ID, e)
		ip = ip.Next()
	}
	if _, err := store.Commit(0, muts, nil); err != nil {
		b.Fatal(err)
	}
	return hot
}

// nullDP accepts every config: it isolates the control plane's own cost.
type nullDP struct{}

func (nullDP) Apply(*vswitch.Config) error { return nil }
func (nullDP) AddPort(tap.Port) error      { return nil }
func (nullDP) RemovePort(string) error     { return nil }

func newBenchWorld(b testing.TB, records int, dp string) *benchWorld {
	b.Helper()
	dir := b.TempDir()
	store, err := OpenBolt(dir, os.Getenv("ROAM_BENCH_NOSYNC") != "")
	if err != nil {
		b.Fatal(err)
	}
	bw := &benchWorld{store: store, dir: dir}
	bw.hot = seed(b, store, records)
	bw.sw = vswitch.New(vswitch.Options{MaxFlows: 1 << 21, MaxRecords: 1 << 16})
	gw := Gateway{PublicCIDR: netip.MustParsePrefix("198.51.100.0/24"), PublicIP: netip.MustParseAddr("198.51.100.1"), Uplink: "tap:up"}
	var path DataPath = bw.sw
	if dp == "null" {
		path = nullDP{}
	}
	bw.svc, err = Open(Options{Store: store, DataPath: path, Ports: benchPorts, Gateway: gw})
	if err != nil {
		b.Fatal(err)
	}
	e := ok(bw.svc.ENI(bw.hot))
	bw.hotIP = e.PrivateIP
	bw.hotMAC, _ = net.ParseMAC(e.MAC)
	b.Cleanup(func() {
		bw.svc.Close()
		bw.sw.Close()
		store.Close()
	})
	return bw
}

// fill tracks n UDP flows of the hot record (PAT through the gateway's
// address) in the switch's conntrack.
func (bw *benchWorld) fill(b testing.TB, n int) {
	tmpl := packettest.Frame(packettest.Spec{Proto: 17, Src: netip.AddrPortFrom(bw.hotIP, 4000),
		Dst: netip.MustParseAddrPort("203.0.113.1:53"), Payload: make([]byte, 18), NoUDPSum: true})
	copy(tmpl[0:6], vswitch.DefaultGatewayMAC[:])
	copy(tmpl[6:12], bw.hotMAC)
	fs := tap.NewFrames(64, tap.Headroom+128)
	for done := 0; done < n; done += len(fs) {
		for j := range fs {
			k := done + j
			f := fs[j].Buf[tap.Headroom:]
			fs[j].Off, fs[j].Len = tap.Headroom, copy(f, tmpl)
			f[14+17], f[14+18], f[14+19] = byte(k>>16), byte(k>>8), byte(k) // destination 203.x.y.z
			f[14+16] = 100 + byte(k>>24)
			packet.IPv4(f[14:]).ComputeChecksum()
		}
		bw.sw.Process("tap:vmA", fs)
	}
	if got := bw.sw.Counters().Flows; got < n*9/10 {
		b.Fatalf("got %d flows tracked, want about %d (drops %v)", got, n, bw.sw.Counters().Drops)
	}
}

// latencies reports p50 and p99 of ds under prefix.
func latencies(b *testing.B, prefix string, ds []time.Duration) {
	if len(ds) == 0 {
		return
	}
	slices.Sort(ds)
	b.ReportMetric(float64(ds[len(ds)/2].Microseconds()), prefix+"p50-µs")
	b.ReportMetric(float64(ds[len(ds)*99/100].Microseconds()), prefix+"p99-µs")
}

// BenchmarkControl measures attach, detach and reassign latency with 10K
// records, in process and through the socket, with 0 and 1M tracked flows.
// Every operation is a full transaction: validation, a bbolt commit with
// fsync, and the publication of a new switch config.
//
// dp=null replaces the switch with a data path that accepts every config,
// which isolates the control plane's own cost (validation, bbolt commit
// with fsync, building the config) from the switch's compilation of it.
func BenchmarkControl(b *testing.B) {
	for _, dp := range []string{"switch", "null"} {
		for _, flows := range []int{0, 1_000_000} {
			if dp == "null" && flows > 0 {
				continue
			}
			for _, via := range []string{"inprocess", "socket"} {
				for _, op := range []string{"reassign", "ipreassign", "attachdetach"} {
					b.Run(fmt.Sprintf("dp=%s/records=10000/flows=%d/%s/%s", dp, flows, via, op), func(b *testing.B) {
						benchOp(b, 10_000, flows, dp, via, op)
					})
				}
			}
		}
	}
}

func benchOp(b *testing.B, records, flows int, dp, via, op string) {
	bw := newBenchWorld(b, records, dp)
	if flows > 0 {
		bw.fill(b, flows)
	}
	before := bw.sw.Counters().Flows
	type call func(method, path string, in any) error
	var do call
	switch via {
	case "inprocess":
		do = func(method, path string, in any) error { return bw.inProcess(path, in) }
	case "socket":
		a := newAPIServer(b, bw.svc, -1)
		do = func(method, path string, in any) error {
			return a.client.Do(context.Background(), method, path, in, nil)
		}
	}
	var d1, d2 []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var path string
		var in any
		target := []string{"vmB", "vmA"}[i%2]
		switch op {
		case "reassign":
			path, in = Path("enis", bw.hot, "reassign"), ReassignInput{InstanceID: target}
		case "ipreassign":
			path, in = Path("ips", bw.hotIP.String(), "reassign"), ReassignIPInput{InstanceID: target}
		case "attachdetach":
			if i%2 == 0 {
				path, in = Path("enis", bw.hot, "attach"), AttachInput{InstanceID: "vmC"}
			} else {
				path, in = Path("enis", bw.hot, "detach"), DetachInput{AttachmentID: bw.lastAttachment("vmC")}
			}
		}
		t0 := time.Now()
		if err := do("POST", path, in); err != nil {
			b.Fatalf("%s %s: %v", op, path, err)
		}
		if i%2 == 0 {
			d1 = append(d1, time.Since(t0))
		} else {
			d2 = append(d2, time.Since(t0))
		}
	}
	b.StopTimer()
	if op == "attachdetach" {
		latencies(b, "attach-", d1)
		latencies(b, "detach-", d2)
	} else {
		latencies(b, "", append(d1, d2...))
	}
	if after := bw.sw.Counters().Flows; after != before {
		b.Fatalf("conntrack changed: got %d flows, want %d", after, before)
	}
}

func (bw *benchWorld) lastAttachment(inst string) string {
	e := ok(bw.svc.ENI(bw.hot))
	for _, a := range e.Attachments {
		if a.InstanceID == inst {
			return a.ID
		}
	}
	return ""
}

func (bw *benchWorld) inProcess(path string, in any) error {
	var err error
	switch v := in.(type) {
	case ReassignInput:
		_, err = bw.svc.Reassign(Root, bw.hot, v)
	case ReassignIPInput:
		_, err = bw.svc.ReassignIP(Root, bw.hotIP.String(), v)
	case AttachInput:
		_, err = bw.svc.Attach(Root, bw.hot, v)
	case DetachInput:
		_, err = bw.svc.Detach(Root, bw.hot, v)
	default:
		err = fmt.Errorf("unknown input %T for %s", in, path)
	}
	return err
}

// BenchmarkSwitchApply isolates the switch's share of a reassign: applying
// a config in which one record moved, with 1K and 10K records. Its cost
// grows with the number of records because Apply compiles the whole config.
func BenchmarkSwitchApply(b *testing.B) {
	for _, n := range []int{1_000, 10_000} {
		b.Run(fmt.Sprintf("records=%d", n), func(b *testing.B) {
			bw := newBenchWorld(b, n, "switch")
			base := bw.svc.Config()
			cfgs := [2]*vswitch.Config{}
			for k, port := range []string{"tap:vmB", "tap:vmA"} {
				c := *base
				c.Records = slices.Clone(base.Records)
				for i := range c.Records {
					if c.Records[i].ID == bw.hot {
						c.Records[i].Ports = []string{port}
					}
				}
				cfgs[k] = &c
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := bw.sw.Apply(cfgs[i%2]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
