package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	vswitch "roam/switch"
	"roam/tap"
	"roam/tap/taptest"
)

// benchEnv is a switch with established flows and the frames of one more
// data round, ready to feed again and again: inbound frames already carry
// the public address and PAT port of their flow.
type benchEnv struct {
	r            *Replayer
	flows        int
	bytesPerFlow float64
	frozen       []frozenBatch
	setup        time.Duration
}

type frozenBatch struct {
	port   string
	frames [][]byte
}

var (
	envMu sync.Mutex
	envs  = map[string]*benchEnv{}
)

// establishedEnv returns (building once per process) a switch with flows
// established by a generated capture of 64-byte frames: handshakes, then one
// data round per flow, which is what the benchmarks replay.
//
// hosts is the number of inside hosts (records); 0 means one per 64
// endpoints (at most 256), so that each burst of 64 flows comes from one
// host and replays as batches of 64.
func establishedEnv(tb testing.TB, flows, hosts int, oneToOne bool) *benchEnv {
	tb.Helper()
	if hosts == 0 {
		hosts = max(1, min(256, min(flows, 16384)/64))
	}
	key := fmt.Sprint(flows, hosts, oneToOne)
	envMu.Lock()
	defer envMu.Unlock()
	if e := envs[key]; e != nil {
		return e
	}
	t0 := time.Now()
	o := GenOptions{Seed: 1, Flows: flows, Size: 64, Rounds: 1, Hosts: hosts}
	c, err := Generate(o)
	if err != nil {
		tb.Fatal(err)
	}
	r, err := prepare(c, ReplayOptions{OneToOne: oneToOne, MaxFlows: max(1<<20, flows+flows/8)})
	if err != nil {
		tb.Fatal(err)
	}
	c.Packets = nil // the replayer has its own copies
	// Memory per flow: the heap the switch holds once the flows exist,
	// from just before it is created.
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	if err := r.start(); err != nil {
		tb.Fatal(err)
	}
	res := r.Run()
	runtime.GC()
	runtime.ReadMemStats(&m1)
	if res.Flows != flows || res.Dropped != 0 {
		tb.Fatalf("setup: got %d flows and drops %v, want %d flows and no drops", res.Flows, res.Drops, flows)
	}
	e := &benchEnv{r: r, flows: flows, bytesPerFlow: float64(int64(m1.HeapAlloc)-int64(m0.HeapAlloc)) / float64(flows)}
	// The data round is the last 2*flows frames.
	dataStart := int32(len(r.frames) - 2*flows)
	for _, b := range r.batches {
		if b.start < dataStart {
			continue
		}
		fb := frozenBatch{port: r.ports[b.port]}
		for j := b.start; j < b.end; j++ {
			f := slices.Clone(r.frames[j])
			if r.meta[j].kind == metaPATIn {
				r.patIn(f[r.meta[j].l3:])
			}
			fb.frames = append(fb.frames, f)
		}
		e.frozen = append(e.frozen, fb)
	}
	e.setup = time.Since(t0)
	envs[key] = e
	return e
}

// feed processes n packets of the frozen data rounds, starting at batch k;
// it returns the next batch.
func (e *benchEnv) feed(bufs []tap.Frame, n, k int) int {
	sw := e.r.sw
	for n > 0 {
		fb := &e.frozen[k]
		if k++; k == len(e.frozen) {
			k = 0
		}
		m := min(len(fb.frames), n)
		for i := range m {
			f := &bufs[i]
			f.Off = tap.Headroom
			f.Len = copy(f.Buf[tap.Headroom:], fb.frames[i])
		}
		sw.Process(fb.port, bufs[:m])
		n -= m
	}
	return k
}

func checkNoDrops(tb testing.TB, sw *vswitch.Switch, c0 vswitch.Counters) {
	tb.Helper()
	c1 := sw.Counters()
	if d := c1.Dropped - c0.Dropped; d != 0 {
		drops := map[string]uint64{}
		for k, v := range c1.Drops {
			if v != c0.Drops[k] {
				drops[k] = v - c0.Drops[k]
			}
		}
		tb.Errorf("%d packets dropped: %v", d, drops)
	}
}

// BenchmarkEstablished feeds 64-byte frames of established flows (TCP and
// UDP, both directions, through PAT or 1:1 NAT) to Switch.Process in
// batches of 64. One op is one packet; the time includes copying each
// frame into the batch buffer, as a port driver's read would. B/flow is
// the heap the switch holds per tracked flow.
func BenchmarkEstablished(b *testing.B) {
	for _, nat := range []string{"pat", "1to1"} {
		for _, n := range []int{1000, 100_000, 1_000_000} {
			b.Run(fmt.Sprintf("%s/flows=%d", nat, n), func(b *testing.B) {
				e := establishedEnv(b, n, 0, nat == "1to1")
				bufs := e.r.bufs
				c0 := e.r.sw.Counters()
				b.ReportAllocs()
				b.ResetTimer()
				e.feed(bufs, b.N, 0)
				b.StopTimer()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pkts/s")
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/pkt")
				b.ReportMetric(e.bytesPerFlow, "B/flow")
				checkNoDrops(b, e.r.sw, c0)
			})
		}
	}
}

// BenchmarkNewFlows feeds a storm of new TCP flows (one 64-byte SYN each,
// from 32768 distinct private endpoints of 256 hosts) through PAT, so that
// every packet creates a flow and allocates a public port; or through 1:1
// NAT. A fresh switch is set up, untimed, every 32768 flows: half of the
// public port range, so that the bounded PAT port search never fails.
func BenchmarkNewFlows(b *testing.B) {
	const flows = 32768
	c, err := Generate(GenOptions{Seed: 2, Flows: flows, Endpoints: flows, Hosts: 256, Proto: "tcp", Storm: true, Size: 64})
	if err != nil {
		b.Fatal(err)
	}
	for _, nat := range []string{"pat", "1to1"} {
		b.Run(nat, func(b *testing.B) {
			b.ReportAllocs()
			var r *Replayer
			var k int
			var created uint64
			var c0 vswitch.Counters
			reset := func() {
				if r != nil {
					checkNoDrops(b, r.sw, c0)
					created += r.sw.Counters().FlowsCreated
				}
				var err error
				if r, err = NewReplayer(c, ReplayOptions{OneToOne: nat == "1to1"}); err != nil {
					b.Fatal(err)
				}
				r.now.Store(c.Packets[0].Time)
				k = 0
				c0 = r.sw.Counters()
			}
			reset()
			b.ResetTimer()
			for n := 0; n < b.N; {
				if k == len(r.batches) {
					b.StopTimer()
					reset()
					b.StartTimer()
				}
				bt := r.batches[k]
				k++
				m := min(int(bt.end-bt.start), b.N-n)
				for i := range m {
					f := &r.bufs[i]
					f.Off = tap.Headroom
					f.Len = copy(f.Buf[tap.Headroom:], r.frames[int(bt.start)+i])
				}
				r.sw.Process(r.ports[bt.port], r.bufs[:m])
				n += m
			}
			b.StopTimer()
			checkNoDrops(b, r.sw, c0)
			created += r.sw.Counters().FlowsCreated
			if created != uint64(b.N) {
				b.Errorf("created %d flows, want %d", created, b.N)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "flows/s")
		})
	}
}

// BenchmarkReassign measures Switch.Apply of a configuration in which one
// record moved to another port, with 1K and 1M flows in conntrack (PAT),
// both times over 256 records. Flows are keyed by addresses, so the cost
// must not depend on them.
func BenchmarkReassign(b *testing.B) {
	for _, n := range []int{1000, 1_000_000} {
		b.Run(fmt.Sprintf("flows=%d", n), func(b *testing.B) {
			e := establishedEnv(b, n, 256, false)
			sw := e.r.sw
			envMu.Lock()
			if _, ok := sw.Port("spare"); !ok {
				if err := sw.AddPort(taptest.NewSink("spare")); err != nil {
					b.Fatal(err)
				}
			}
			envMu.Unlock()
			a := e.r.cfg
			moved := *a
			moved.Records = slices.Clone(a.Records)
			moved.Records[0].Ports = []string{"spare"}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				cfg := a
				if i%2 == 0 {
					cfg = &moved
				}
				if err := sw.Apply(cfg); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			if err := sw.Apply(a); err != nil {
				b.Fatal(err)
			}
			if got := sw.Counters().Flows; got != n {
				b.Errorf("got %d flows after reassigning, want %d", got, n)
			}
			b.ReportMetric(float64(len(a.Records)), "records")
		})
	}
}

// TestEstablishedNoAllocs guards the established-flow path, through PAT and
// 1:1 NAT: once every port has been used, batches cost no allocation.
func TestEstablishedNoAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop items, so the switch's pooled workers allocate")
	}
	for _, one := range []bool{false, true} {
		e := establishedEnv(t, 1000, 0, one)
		var frames int
		for _, fb := range e.frozen {
			frames += len(fb.frames)
		}
		// Settle the garbage collector (which empties the switch's pool
		// of workers), then warm up with one pass over every batch.
		runtime.GC()
		runtime.GC()
		k := e.feed(e.r.bufs, frames, 0)
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		e.feed(e.r.bufs, 3*frames, k)
		runtime.ReadMemStats(&m1)
		if n := m1.Mallocs - m0.Mallocs; n != 0 {
			t.Errorf("one-to-one %v: got %d allocations for %d packets, want 0", one, n, 3*frames)
		}
	}
}

// BenchmarkReplayFile goes the way roambench replay goes: a generated
// capture (10K flows, IMIX, 4 data rounds) is written to a temporary pcap
// file, loaded, and replayed through PAT; one op is one replay of the whole
// file on the same switch (after the first, its flows are established).
func BenchmarkReplayFile(b *testing.B) {
	path := filepath.Join(b.TempDir(), "replay.pcap")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if err := WritePcap(f, GenOptions{Seed: 4, Flows: 10000, Hosts: 64, Rounds: 4}); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	c, err := ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	r, err := NewReplayer(c, ReplayOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	var pkts uint64
	var busy float64
	for i := 0; i < b.N; i++ {
		res := r.Run()
		if res.Dropped != 0 {
			b.Fatalf("drops: %v", res.Drops)
		}
		pkts += res.Packets
		busy += res.Seconds
	}
	b.StopTimer()
	b.ReportMetric(float64(pkts)/busy, "pkts/s")
	b.ReportMetric(busy*1e9/float64(pkts), "ns/pkt")
	b.ReportMetric(float64(len(c.Packets)), "pkts/op")
}
