package vswitch

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"roam/internal/packet"
	"roam/tap"
	"roam/tap/taptest"
)

// benchWorld is a switch with one record (10.0.0.10, public IP
// 198.51.100.10, and 10.0.0.11 through PAT) on port "vm", an uplink, and
// frames for n established flows: 64-byte UDP frames, half through the
// public IP, half through PAT, outbound from the record.
type benchWorld struct {
	sw     *Switch
	n      int
	tmpl   []byte   // a 64-byte UDP frame from the record, without a UDP checksum
	hdrs   [][]byte // tmpl for each (source, remote), see frame
	frames []tap.Frame
}

func newBenchWorld(tb testing.TB, n int) *benchWorld {
	clk := &clock{t: time.Unix(1_700_000_000, 0)}
	sw := New(Options{Now: clk.Now, MaxFlows: n + n/4 + 1024, BatchSize: 64})
	for _, name := range []string{"vm", "uplink"} {
		if err := sw.AddPort(taptest.NewSink(name)); err != nil {
			tb.Fatal(err)
		}
	}
	ip1, ip2 := netip.MustParseAddr("10.0.0.10"), netip.MustParseAddr("10.0.0.11")
	err := sw.Apply(&Config{
		PublicIP: patIP, Uplink: "uplink", UpstreamMAC: macUp,
		Subnets: []Subnet{{ID: "subnet-0", Prefix: netip.MustParsePrefix("10.0.0.0/24")}},
		Records: []Record{{ID: "eni-0000000a", Subnet: "subnet-0", IPs: []netip.Addr{ip1, ip2}, MAC: macA,
			SourceDestCheck: true, PublicIPs: []Association{{Public: eipA, Private: ip1}}, Ports: []string{"vm"}}},
	})
	if err != nil {
		tb.Fatal(err)
	}
	bw := &benchWorld{sw: sw, n: n, frames: tap.NewFrames(64, tap.Headroom+128)}
	bw.tmpl = udpFrame(tb, macA, gwMAC, ap(ip1, 1), ap(remote, 1), make([]byte, 64-42))
	bw.tmpl[40], bw.tmpl[41] = 0, 0 // no UDP checksum: frames are made per packet
	for i := 0; i < 400; i++ {
		h := append([]byte(nil), bw.tmpl...)
		ip := packet.IPv4(h[14:])
		binary.BigEndian.PutUint32(ip[12:16], uint32(0x0a00000a+i%2))
		binary.BigEndian.PutUint32(ip[16:20], uint32(192<<24|2<<8)|uint32(i%200))
		ip.ComputeChecksum()
		bw.hdrs = append(bw.hdrs, h)
	}
	// Establish every flow once.
	bw.run(0, n)
	if got := sw.ct.Len(); got != n {
		tb.Fatalf("%d flows, want %d: %+v", got, n, sw.Counters().Drops)
	}
	return bw
}

// frame writes flow i's frame into b: half the flows come from 10.0.0.10
// (public IP), half from 10.0.0.11 (PAT), to 200 remotes, from distinct
// source ports. Headers come from 400 prepared templates (2 sources x 200
// remotes, valid IP checksums, no UDP checksum) that stay in cache; only
// the ports are written per packet, as cheap as a port read's copy.
func (bw *benchWorld) frame(b []byte, i int) int {
	n := copy(b, bw.hdrs[i%400])
	binary.BigEndian.PutUint16(b[34:], uint16(1024+(i/200)%60000))
	binary.BigEndian.PutUint16(b[36:], uint16(1+i/(200*60000)))
	return n
}

// run pushes flows [from, from+count) through the switch from the record's
// port in batches of 64.
func (bw *benchWorld) run(from, count int) {
	fs := bw.frames
	m := 0
	for i := 0; i < count; i++ {
		fs[m].Off = tap.Headroom
		fs[m].Len = bw.frame(fs[m].Buf[tap.Headroom:], (from+i)%bw.n)
		m++
		if m == len(fs) {
			bw.sw.Process("vm", fs)
			m = 0
		}
	}
	if m > 0 {
		bw.sw.Process("vm", fs[:m])
	}
}

func BenchmarkEstablished(b *testing.B) {
	for _, n := range []int{1_000, 100_000, 1_000_000} {
		b.Run(fmt.Sprintf("flows=%d", n), func(b *testing.B) {
			bw := newBenchWorld(b, n)
			b.ReportAllocs()
			b.ResetTimer()
			// Walk the flows in a fixed stride so successive packets hit
			// unrelated flows, as interleaved traffic does.
			pos := 0
			for done := 0; done < b.N; done += 64 {
				bw.run(pos, 64)
				pos = (pos + 64*97) % n
			}
			b.StopTimer()
			el := b.Elapsed().Seconds()
			b.ReportMetric(float64(b.N)/el, "pkts/s")
			if c := bw.sw.Counters(); c.Dropped != 0 {
				b.Fatalf("drops: %v", c.Drops)
			}
		})
	}
}

func BenchmarkNewFlows(b *testing.B) {
	bw := newBenchWorld(b, 1)
	clk := &clock{t: time.Unix(1_700_000_000, 0)}
	bw.sw = New(Options{Now: clk.Now, MaxFlows: 1 << 22})
	for _, name := range []string{"vm", "uplink"} {
		bw.sw.AddPort(taptest.NewSink(name))
	}
	ip2 := netip.MustParseAddr("10.0.0.11")
	bw.sw.Apply(&Config{PublicIP: patIP, Uplink: "uplink", UpstreamMAC: macUp,
		Subnets: []Subnet{{ID: "subnet-0", Prefix: netip.MustParsePrefix("10.0.0.0/16")}},
		Records: []Record{{ID: "eni-0000000a", Subnet: "subnet-0", IPs: []netip.Addr{ip2}, MAC: macA, Ports: []string{"vm"}}}})
	tmpl := udpFrame(b, macA, gwMAC, ap(ip2, 1), ap(remote, 1), make([]byte, 22))
	fs := tap.NewFrames(64, tap.Headroom+128)
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; done += 64 {
		for j := range fs {
			i := done + j
			f := fs[j].Buf[tap.Headroom:]
			fs[j].Off, fs[j].Len = tap.Headroom, copy(f, tmpl)
			// A new remote endpoint per packet: every packet is a new flow
			// through PAT (the same private endpoint keeps its mapping, so
			// also vary the source port).
			f[14+16], f[14+17], f[14+18], f[14+19] = 198, 51, byte(i>>16), byte(i>>8)
			f[34], f[35] = byte(1024+i%60000>>8), byte((1024+i%60000)&0xff)
			f[36], f[37] = byte(i>>8), byte(i)
			packet.IPv4(f[14:]).ComputeChecksum()
			fixUDP(f)
		}
		if done%(1<<20) == 0 {
			clk.Advance(10 * time.Minute) // let old flows expire so the table does not fill
		}
		bw.sw.Process("vm", fs)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "flows/s")
	c := bw.sw.Counters()
	if c.Dropped > uint64(b.N)/100 {
		b.Fatalf("drops: %v", c.Drops)
	}
}

// BenchmarkReassign measures publishing a config in which the record moved
// to another port, with 1K and with 1M flows tracked: it must cost the same.
func BenchmarkReassign(b *testing.B) {
	for _, n := range []int{1_000, 1_000_000} {
		b.Run(fmt.Sprintf("flows=%d", n), func(b *testing.B) {
			bw := newBenchWorld(b, n)
			bw.sw.AddPort(taptest.NewSink("vm2"))
			cfg := bw.sw.Config()
			cfgs := [2]*Config{}
			for k, port := range []string{"vm2", "vm"} {
				c := *cfg
				c.Records = append([]Record(nil), cfg.Records...)
				c.Records[0].Ports = []string{port}
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

// BenchmarkMemoryPerFlow reports conntrack bytes per tracked flow at 1M
// flows, both from the table's own accounting and from the heap.
func BenchmarkMemoryPerFlow(b *testing.B) {
	for i := 0; i < b.N; i++ {
		runtime.GC()
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		sw := New(Options{MaxFlows: 1 << 20})
		sw.AddPort(taptest.NewSink("vm"))
		sw.AddPort(taptest.NewSink("uplink"))
		ip2 := netip.MustParseAddr("10.0.0.11")
		sw.Apply(&Config{PublicIP: patIP, Uplink: "uplink", UpstreamMAC: macUp,
			Subnets: []Subnet{{ID: "subnet-0", Prefix: netip.MustParsePrefix("10.0.0.0/16")}},
			Records: []Record{{ID: "eni-0000000a", Subnet: "subnet-0", IPs: []netip.Addr{ip2}, MAC: macA, Ports: []string{"vm"}}}})
		const n = 1_000_000
		tmpl := udpFrame(b, macA, gwMAC, ap(ip2, 1), ap(remote, 1), make([]byte, 22))
		fs := tap.NewFrames(64, tap.Headroom+128)
		for done := 0; done < n; done += 64 {
			for j := range fs {
				k := done + j
				f := fs[j].Buf[tap.Headroom:]
				fs[j].Off, fs[j].Len = tap.Headroom, copy(f, tmpl)
				f[14+16], f[14+17], f[14+18], f[14+19] = 198, 51, byte(k>>16), byte(k>>8)
				f[36], f[37] = byte(k>>8), byte(k)
				packet.IPv4(f[14:]).ComputeChecksum()
				fixUDP(f)
			}
			sw.Process("vm", fs)
		}
		runtime.GC()
		runtime.ReadMemStats(&m1)
		flows := sw.ct.Len()
		st := sw.ct.Stats()
		b.ReportMetric(float64(st.Bytes)/float64(flows), "table-bytes/flow")
		b.ReportMetric(float64(m1.HeapAlloc-m0.HeapAlloc)/float64(flows), "heap-bytes/flow")
		b.ReportMetric(float64(flows), "flows")
		runtime.KeepAlive(sw)
	}
}

func TestNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector (sync.Pool drops items); make test also runs this test without -race")
	}
	bw := newBenchWorld(t, 1000)
	pos := 0
	allocs := testing.AllocsPerRun(200, func() {
		bw.run(pos, 64)
		pos = (pos + 64) % 1000
	})
	if allocs != 0 {
		t.Fatalf("established path: %v allocations per batch of 64, want 0", allocs)
	}
}
