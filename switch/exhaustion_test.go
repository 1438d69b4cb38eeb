package vswitch

// Exhaustion: a SYN flood at a public IP, PAT port exhaustion at the
// gateway address, and one record's traffic against another's conntrack
// budget. Each is bounded in packets; figures are logged (go test -v).

import (
	"bytes"
	"context"
	"encoding/binary"
	"log/slog"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/gopacket/layers"

	"roam/internal/packet"
	"roam/nat"
	"roam/tap"
)

// flood builds n SYNs from distinct remote endpoints (198.18.0.0/15, the
// benchmarking range) to dst:dport.
func flood(t testing.TB, n int, dst netip.Addr, dport uint16) [][]byte {
	out := make([][]byte, n)
	base := tcpFrame(t, macUp, gwMAC, ap(netip.MustParseAddr("198.18.0.1"), 1), ap(dst, dport), "S", 1, 0, nil)
	for i := range out {
		f := append([]byte(nil), base...)
		src := [4]byte{198, 18 + byte(i>>24&1), byte(i >> 16), byte(i >> 8)}
		old := binary.BigEndian.Uint32(f[26:30])
		copy(f[26:30], src[:])
		binary.BigEndian.PutUint16(f[34:36], uint16(1024+i&0xff))
		ip := packet.IPv4(f[14:])
		ip.SetChecksum(packet.Update32(ip.Checksum(), old, binary.BigEndian.Uint32(f[26:30])))
		seg := f[34:]
		seg[16], seg[17] = 0, 0
		cs := packet.Checksum(seg, packet.PseudoSum(ip.Src(), ip.Dst(), packet.ProtoTCP, len(seg)))
		binary.BigEndian.PutUint16(seg[16:], cs)
		out[i] = f
	}
	return out
}

// batch runs frames through the switch from port, 64 at a time.
func (w *world) batch(port string, frames [][]byte) {
	fs := tap.NewFrames(64, tap.Headroom+2048)
	for len(frames) > 0 {
		n := min(64, len(frames))
		for i := 0; i < n; i++ {
			fs[i].Off = tap.Headroom
			fs[i].Len = copy(fs[i].Buf[tap.Headroom:], frames[i])
			fs[i].GSO = tap.GSO{}
		}
		w.sw.Process(port, fs[:n])
		frames = frames[n:]
	}
}

// drain empties port and returns its frames.
func (w *world) drain(port string) [][]byte {
	var out [][]byte
	for w.ports[port].Pending() > 0 {
		if f, ok := w.ports[port].Recv(time.Second); ok {
			out = append(out, f)
		}
	}
	return out
}

// estFlow is an established flow and the frames that carry it each way.
type estFlow struct {
	name        string
	fromPort    string // where its outbound frame enters
	out, in     []byte // a data segment each way
	outTo, inTo string // where each must arrive
}

// establish opens n TCP connections: inbound to A's public IP (port 80)
// and outbound from B and C through PAT; it returns them.
func (w *world) establishMany(n int) []estFlow {
	t := w.t
	var fl []estFlow
	for i := 0; i < n; i++ {
		r := netip.AddrFrom4([4]byte{192, 0, 2, byte(100 + i)})
		// Inbound to A (public IP, 1:1).
		w.send("uplink", tcpFrame(t, macUp, gwMAC, ap(r, 30000), ap(eipA, 80), "S", 1, 0, nil))
		w.recv("vmA")
		w.send("vmA", tcpFrame(t, macA, gwMAC, ap(ipA, 80), ap(r, 30000), "SA", 100, 2, nil))
		w.recv("uplink")
		w.send("uplink", tcpFrame(t, macUp, gwMAC, ap(r, 30000), ap(eipA, 80), "A", 2, 101, nil))
		w.recv("vmA")
		fl = append(fl, estFlow{name: "A<-" + r.String(), fromPort: "vmA",
			out:   tcpFrame(t, macA, gwMAC, ap(ipA, 80), ap(r, 30000), "PA", 101, 2, []byte("x")),
			in:    tcpFrame(t, macUp, gwMAC, ap(r, 30000), ap(eipA, 80), "PA", 2, 101, []byte("y")),
			outTo: "uplink", inTo: "vmA"})
		// Outbound from B and C through PAT.
		for _, who := range []struct {
			port string
			mac  []byte
			ip   netip.Addr
		}{{"vmB", macB, ipB}, {"vmC", macC, ipC}} {
			sport := uint16(41000 + i)
			w.send(who.port, tcpFrame(t, who.mac, gwMAC, ap(who.ip, sport), ap(r, 443), "S", 1, 0, nil))
			pk := w.recv("uplink")
			pub := uint16(pk.Layer(layers.LayerTypeTCP).(*layers.TCP).SrcPort)
			w.send("uplink", tcpFrame(t, macUp, gwMAC, ap(r, 443), ap(patIP, pub), "SA", 100, 2, nil))
			w.recv(who.port)
			w.send(who.port, tcpFrame(t, who.mac, gwMAC, ap(who.ip, sport), ap(r, 443), "A", 2, 101, nil))
			w.recv("uplink")
			fl = append(fl, estFlow{name: who.port + "->" + r.String(), fromPort: who.port,
				out:   tcpFrame(t, who.mac, gwMAC, ap(who.ip, sport), ap(r, 443), "PA", 2, 101, []byte("x")),
				in:    tcpFrame(t, macUp, gwMAC, ap(r, 443), ap(patIP, pub), "PA", 101, 2, []byte("y")),
				outTo: "uplink", inTo: who.port})
		}
	}
	return fl
}

// exercise sends one data segment each way on every established flow and
// returns how many of them did not arrive. Ports must be drained before.
func (w *world) exercise(fl []estFlow) (lost int) {
	for _, f := range fl {
		for _, d := range []struct {
			from, to string
			frame    []byte
		}{{f.fromPort, f.outTo, f.out}, {"uplink", f.inTo, f.in}} {
			w.send(d.from, d.frame)
			got := w.drain(d.to)
			if len(got) != 1 || !bytes.Contains(got[0], []byte{d.frame[len(d.frame)-1]}) {
				lost++
			}
		}
	}
	return lost
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

func TestSYNFloodAtPublicIP(t *testing.T) {
	const (
		maxFlows = 1 << 14
		budget   = 4096
		flooded  = 50_000 // SYNs, bounded
	)
	before := heapInUse()
	w := newWorld(t, Options{MaxFlows: maxFlows, DefaultFlowBudget: budget})
	fl := w.establishMany(16) // 16 inbound to A, 32 outbound from B and C
	base := w.sw.Counters()
	syns := flood(t, flooded, eipA, 80)
	lost, rounds := 0, 0
	for off := 0; off < len(syns); off += 1024 {
		w.batch("uplink", syns[off:min(off+1024, len(syns))])
		w.drain("vmA")
		lost += w.exercise(fl)
		rounds++
	}
	c := w.sw.Counters()
	a := w.sw.RecordCounters("eni-0000000a")
	refused := c.Drops["flow_budget"] + c.Drops["table_full"] - base.Drops["flow_budget"] - base.Drops["table_full"]
	admitted := a.Flows - 16
	after := heapInUse()
	t.Logf("SYN flood: %d SYNs at %v:80; admitted %d (A's flows %d of budget %d; table %d of %d); refused %d; established flows %d, packets lost %d over %d rounds; heap %d -> %d KiB",
		flooded, eipA, admitted, a.Flows, budget, c.Flows, maxFlows, refused, len(fl), lost, rounds, before>>10, after>>10)
	if lost != 0 {
		t.Fatalf("%d packets of established flows lost", lost)
	}
	if a.Flows != budget {
		t.Fatalf("A holds %d flows, want its budget %d", a.Flows, budget)
	}
	if int(refused) != flooded-admitted {
		t.Fatalf("refused %d, want %d (every SYN over the budget, counted)", refused, flooded-admitted)
	}
	if a.Drops["flow_budget"] != refused {
		t.Fatalf("A's own flow_budget count %d, want %d", a.Drops["flow_budget"], refused)
	}
	// Other records still open new flows.
	for i := 0; i < 100; i++ {
		w.send("vmB", udpFrame(t, macB, gwMAC, ap(ipB, uint16(20000+i)), ap(remote, 53), nil))
	}
	if got := len(w.drain("uplink")); got != 100 {
		t.Fatalf("B opened %d of 100 new flows during the flood's aftermath", got)
	}
	// Memory: the table's own bound (BenchmarkTrack: ~115 B/flow at scale;
	// small tables pay more for their arenas) with room for the test's
	// frames; the flood's 50K SYNs (≈3 MiB of frames) are held by the test.
	if grow := int64(after) - int64(before); grow > 64<<20 {
		t.Fatalf("heap grew by %d MiB, want at most 64 MiB for a %d-flow table", grow>>20, maxFlows)
	}
}

func TestSYNFloodFillsTable(t *testing.T) {
	// No budget: the flood fills the global table; established flows of
	// every record go on; new flows of other records are refused too
	// (table_full), and admitted again once the half-open flows time out.
	const maxFlows = 2048
	w := newWorld(t, Options{MaxFlows: maxFlows})
	fl := w.establishMany(8)
	syns := flood(t, 10_000, eipA, 80)
	lost := 0
	for off := 0; off < len(syns); off += 512 {
		w.batch("uplink", syns[off:min(off+512, len(syns))])
		w.drain("vmA")
		lost += w.exercise(fl)
	}
	c := w.sw.Counters()
	t.Logf("table flood: flows %d of %d, table_full %d, established packets lost %d", c.Flows, maxFlows, c.Drops["table_full"], lost)
	if lost != 0 || c.Flows != maxFlows || c.Drops["table_full"] != uint64(10_000-(maxFlows-len(fl))) {
		t.Fatalf("lost %d, flows %d, table_full %d; want 0, %d, %d", lost, c.Flows, c.Drops["table_full"], maxFlows, 10_000-(maxFlows-len(fl)))
	}
	w.send("vmB", udpFrame(t, macB, gwMAC, ap(ipB, 999), ap(remote, 53), nil))
	w.none("uplink")
	checkAdminProhibited(t, w, "vmB", ipB, 999)
}

func TestBudgetIsolation(t *testing.T) {
	// Budgets that sum to the table: A's flood takes A's share only.
	w := newWorld(t, Options{MaxFlows: 3000, DefaultFlowBudget: 1000})
	w.batch("uplink", flood(t, 5000, eipA, 80))
	w.drain("vmA")
	if a := w.sw.RecordCounters("eni-0000000a"); a.Flows != 1000 {
		t.Fatalf("A holds %d flows, want 1000", a.Flows)
	}
	var frames [][]byte
	for i := 0; i < 1000; i++ {
		frames = append(frames, udpFrame(t, macB, gwMAC, ap(ipB, uint16(10000+i)), ap(remote, 53), nil))
	}
	w.batch("vmB", frames)
	if got := len(w.drain("uplink")); got != 1000 {
		t.Fatalf("B opened %d of its 1000 flows while A was flooded", got)
	}
	if b := w.sw.RecordCounters("eni-00000014"); b.Flows != 1000 || b.Drops["flow_budget"] != 0 {
		t.Fatalf("B flows %d drops %v", b.Flows, b.Drops)
	}
}

// logCounter counts the log records whose message contains a string.
type logCounter struct {
	mu   sync.Mutex
	sub  string
	n    int
	last string
}

func (l *logCounter) Enabled(context.Context, slog.Level) bool { return true }
func (l *logCounter) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if strings.Contains(r.Message, l.sub) {
		l.n++
		var b strings.Builder
		b.WriteString(r.Message)
		r.Attrs(func(a slog.Attr) bool { b.WriteString(" " + a.String()); return true })
		l.last = b.String()
	}
	return nil
}
func (l *logCounter) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logCounter) WithGroup(string) slog.Handler      { return l }

func TestPATPortExhaustion(t *testing.T) {
	logs := &logCounter{sub: "PAT ports exhausted"}
	// 64 ports (32 of each parity) at the gateway address.
	w := newWorld(t, Options{PAT: nat.PATOptions{PortMin: 2000, PortMax: 2063}, ICMPErrorRate: 10, Logger: slog.New(logs)})
	// C holds 8 UDP flows (seen both ways) through PAT, in the same pool.
	var est [][2][]byte
	for i := 0; i < 8; i++ {
		w.send("vmC", udpFrame(t, macC, gwMAC, ap(ipC, uint16(2000+i)), ap(remote, 443), []byte("q")))
		pub := uint16(w.recv("uplink").Layer(layers.LayerTypeUDP).(*layers.UDP).SrcPort)
		w.send("uplink", udpFrame(t, macUp, gwMAC, ap(remote, 443), ap(patIP, pub), []byte("a")))
		w.recv("vmC")
		est = append(est, [2][]byte{
			udpFrame(t, macC, gwMAC, ap(ipC, uint16(2000+i)), ap(remote, 443), []byte("x")),
			udpFrame(t, macUp, gwMAC, ap(remote, 443), ap(patIP, pub), []byte("y")),
		})
	}
	// B asks for 1000 mappings: 56 ports are left.
	var frames [][]byte
	for i := 0; i < 1000; i++ {
		frames = append(frames, udpFrame(t, macB, gwMAC, ap(ipB, uint16(30000+i)), ap(remote, 53), nil))
	}
	w.batch("vmB", frames)
	out := len(w.drain("uplink"))
	errs := w.drain("vmB")
	c := w.sw.Counters()
	t.Logf("PAT exhaustion: %d of 1000 new flows mapped, %d refused (nat_ports_exhausted), %d ICMP 3/13 sent (%d rate-limited), %d log lines: %s",
		out, c.Drops["nat_ports_exhausted"], len(errs), c.ICMPLimited, logs.n, logs.last)
	if out != 56 || c.Drops["nat_ports_exhausted"] != 944 {
		t.Fatalf("mapped %d refused %d, want 56 and 944", out, c.Drops["nat_ports_exhausted"])
	}
	if len(errs) != 10 || c.ICMPSent != 10 || c.ICMPLimited != 934 {
		t.Fatalf("%d errors (sent %d, limited %d), want 10 (the rate) and 934 limited", len(errs), c.ICMPSent, c.ICMPLimited)
	}
	for _, e := range errs {
		if q := icmpOf(t, e); q.ICMPType != 3 || q.ICMPCode != 13 {
			t.Fatalf("got %d/%d, want 3/13", q.ICMPType, q.ICMPCode)
		}
	}
	if logs.n != 1 {
		t.Fatalf("%d log lines, want 1 (rate-limited)", logs.n)
	}
	// Established flows are untouched.
	for i, e := range est {
		w.send("vmC", e[0])
		if len(w.drain("uplink")) != 1 {
			t.Fatalf("established flow %d: outbound lost", i)
		}
		w.send("uplink", e[1])
		if len(w.drain("vmC")) != 1 {
			t.Fatalf("established flow %d: inbound lost", i)
		}
	}
	// The per-record counter and the metric's source agree.
	if b := w.sw.RecordCounters("eni-00000014"); b.Drops["nat_ports_exhausted"] != 944 {
		t.Fatalf("B's nat_ports_exhausted %d, want 944", b.Drops["nat_ports_exhausted"])
	}
}

// BenchmarkSYNFlood measures SYNs refused (A at its budget) per second: the
// cost of a flood once the table or budget is full.
func BenchmarkSYNFlood(b *testing.B) {
	w := newWorld(&testing.T{}, Options{MaxFlows: 1 << 16, DefaultFlowBudget: 1024})
	syns := flood(b, 64*1024, eipA, 80)
	fs := tap.NewFrames(64, tap.Headroom+2048)
	w.batch("uplink", syns[:2048]) // fill A's budget
	w.drain("vmA")
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	for i := 0; i < b.N; i++ {
		for j := 0; j < 64; j++ {
			f := syns[2048+(i*64+j)%(len(syns)-2048)] // never one admitted: all refused
			fs[j].Off = tap.Headroom
			fs[j].Len = copy(fs[j].Buf[tap.Headroom:], f)
		}
		w.sw.Process("uplink", fs)
		n += 64
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "packets/s")
}
