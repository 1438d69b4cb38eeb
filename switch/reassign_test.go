package vswitch

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"roam/internal/packet"
	"roam/tap"
	"roam/tap/taptest"
)

// TestReassignUnderLoad keeps inbound traffic flowing over thousands of
// flows, through a public IP (1:1) and through PAT, from several goroutines,
// while another goroutine moves the record between two ports back and
// forth. Every delivered frame is checked against the binding in force for
// its batch; conntrack must be exactly the same before and after.
func TestReassignUnderLoad(t *testing.T) {
	const (
		flowsPerIP = 2000
		pumpers    = 4
		rounds     = 12
		batch      = 64
	)
	ip1 := netip.MustParseAddr("10.0.0.10") // has a public IP
	ip2 := netip.MustParseAddr("10.0.0.11") // goes out through PAT
	eip := netip.MustParseAddr("198.51.100.10")
	clk := &clock{t: time.Unix(1_700_000_000, 0)}
	sw := New(Options{Now: clk.Now, MaxFlows: 1 << 16})
	ports := []*taptest.Sink{taptest.NewSink("p1"), taptest.NewSink("p2")}
	uplink := taptest.NewSink("uplink")
	for _, p := range []tap.Port{ports[0], ports[1], uplink} {
		if err := sw.AddPort(p); err != nil {
			t.Fatal(err)
		}
	}
	cfg := func(port string) *Config {
		return &Config{
			PublicIP: patIP, Uplink: "uplink", UpstreamMAC: macUp,
			Subnets: []Subnet{{ID: "subnet-0", Prefix: netip.MustParsePrefix("10.0.0.0/24")}},
			Records: []Record{{ID: "eni-0000000a", Subnet: "subnet-0", IPs: []netip.Addr{ip1, ip2}, MAC: macA,
				SourceDestCheck: true, PublicIPs: []Association{{Public: eip, Private: ip1}}, Ports: []string{port}}},
		}
	}
	if err := sw.Apply(cfg("p1")); err != nil {
		t.Fatal(err)
	}

	// Establish the flows from the record: flow i goes from ip:20000+i to a
	// remote 192.0.2.x:7000+i/250; remember the public port PAT chose.
	remoteOf := func(i int) netip.AddrPort {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(1 + i%250)}), uint16(7000+i/250))
	}
	pubPort := make([]uint16, flowsPerIP)
	var mu sync.Mutex
	uplink.OnWrite = func(f []byte) {
		var p packet.Parsed
		if packet.Parse(f, &p) != packet.ReasonNone {
			return
		}
		if p.Src == packet.AddrFrom(patIP) {
			mu.Lock()
			pubPort[int(binary.BigEndian.Uint16(f[p.L4+2+0:])-7000)*250+int(p.Dst&0xff)-1] = p.SPort
			mu.Unlock()
		}
	}
	frames := tap.NewFrames(batch, tap.Headroom+256)
	var n int
	flushOut := func() {
		sw.Process("p1", frames[:n])
		n = 0
	}
	for i := 0; i < flowsPerIP; i++ {
		for _, src := range []netip.Addr{ip1, ip2} {
			f := udpFrame(t, macA, gwMAC, netip.AddrPortFrom(src, uint16(20000+i)), remoteOf(i), []byte("out"))
			frames[n].Len = copy(frames[n].Buf[tap.Headroom:], f)
			n++
			if n == batch {
				flushOut()
			}
		}
	}
	flushOut()
	uplink.OnWrite = nil
	before := flowSet(sw)
	if len(before) != 2*flowsPerIP {
		t.Fatalf("%d flows tracked, want %d; counters %+v", len(before), 2*flowsPerIP, sw.Counters())
	}

	// The binding in force: epoch is odd while an Apply is under way and
	// even otherwise; binding[epoch/2] is the port in force at that epoch.
	var epoch atomic.Int64
	binding := make([]atomic.Int32, 100000)
	binding[0].Store(0)
	// Each pumper owns flows [g*step, (g+1)*step) of both kinds; its
	// delivered frames are recognised by their destination port.
	step := flowsPerIP / pumpers
	delivered := make([][]int, pumpers)
	hook := func(port int) func([]byte) {
		return func(f []byte) {
			var p packet.Parsed
			if packet.Parse(f, &p) != packet.ReasonNone {
				panic("delivered a frame that does not parse")
			}
			i := int(p.DPort) - 20000
			g := i / step
			delivered[g] = append(delivered[g], port) // only g's goroutine writes g's frames
			if !(p.Dst == packet.AddrFrom(ip1) || p.Dst == packet.AddrFrom(ip2)) || i < 0 || i >= flowsPerIP {
				panic(fmt.Sprintf("frame to %v:%d", packet.Addr(p.Dst), p.DPort))
			}
		}
	}
	ports[0].OnWrite, ports[1].OnWrite = hook(0), hook(1)

	stop := make(chan struct{})
	var swaps atomic.Int64
	var rwg sync.WaitGroup
	rwg.Add(1)
	go func() {
		defer rwg.Done()
		for k := 1; k < len(binding)/2; k++ {
			select {
			case <-stop:
				return
			default:
			}
			epoch.Add(1)
			target := k % 2
			if err := sw.Apply(cfg(fmt.Sprintf("p%d", target+1))); err != nil {
				panic(err)
			}
			binding[k].Store(int32(target))
			epoch.Add(1)
			swaps.Add(1)
			time.Sleep(200 * time.Microsecond) // let some batches run wholly between swaps
		}
	}()

	var wg sync.WaitGroup
	errs := make(chan error, pumpers)
	var strict, mixed atomic.Int64
	for g := 0; g < pumpers; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			fs := tap.NewFrames(batch, tap.Headroom+256)
			var bufs [][]byte
			for i := g * step; i < (g+1)*step; i++ {
				r := remoteOf(i)
				bufs = append(bufs,
					udpFrame(t, macUp, gwMAC, r, netip.AddrPortFrom(eip, uint16(20000+i)), []byte("in")),
					udpFrame(t, macUp, gwMAC, r, netip.AddrPortFrom(patIP, pubPort[i]), []byte("in")))
			}
			// At least `rounds` rounds, and on until 50 swaps happened (bounded).
			for round := 0; round < 100*rounds && (round < rounds || swaps.Load() < 50); round++ {
				for off := 0; off < len(bufs); off += batch {
					m := min(batch, len(bufs)-off)
					for j := 0; j < m; j++ {
						fs[j].Off = tap.Headroom
						fs[j].Len = copy(fs[j].Buf[tap.Headroom:], bufs[off+j])
					}
					delivered[g] = delivered[g][:0]
					e0 := epoch.Load()
					sw.Process("uplink", fs[:m])
					e1 := epoch.Load()
					if len(delivered[g]) != m {
						errs <- fmt.Errorf("pumper %d: %d of %d frames delivered", g, len(delivered[g]), m)
						return
					}
					if e0 != e1 || e0%2 == 1 {
						mixed.Add(1)
						continue
					}
					strict.Add(1)
					want := int(binding[e0/2].Load())
					for _, got := range delivered[g] {
						if got != want {
							errs <- fmt.Errorf("pumper %d: frame delivered to p%d at epoch %d, want p%d", g, got+1, e0, want+1)
							return
						}
					}
				}
			}
		}(g)
	}
	wg.Wait()
	close(stop)
	rwg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	after := flowSet(sw)
	if len(after) != len(before) {
		t.Fatalf("%d flows after, want %d", len(after), len(before))
	}
	for i := range before {
		if before[i] != after[i] {
			t.Fatalf("flow %d changed: %s, want %s", i, after[i], before[i])
		}
	}
	c := sw.Counters()
	if c.Dropped != 0 {
		t.Fatalf("drops %v, want none", c.Drops)
	}
	if swaps.Load() < 50 || strict.Load() == 0 {
		t.Fatalf("only %d swaps and %d strictly checked batches", swaps.Load(), strict.Load())
	}
	t.Logf("%d swaps, %d batches checked strictly, %d spanning a swap, %d flows kept", swaps.Load(), strict.Load(), mixed.Load(), len(after))
}

func flowSet(sw *Switch) []string {
	var out []string
	for _, f := range sw.Flows("") {
		out = append(out, fmt.Sprintf("%s %s->%s | %s->%s", f.Proto, f.Src, f.Dst, f.ReplySrc, f.ReplyDst))
	}
	sort.Strings(out)
	return out
}

var _ = net.IPv4len
