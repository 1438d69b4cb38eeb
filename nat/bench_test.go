package nat

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/google/gopacket/layers"

	"roam/internal/packet"
	"roam/internal/packet/packettest"
)

// fill creates n established TCP flows, 1:1 SNAT of 10.x.y.z:port to a
// public address, and returns their reply tuples in a random order (so a
// benchmark walking them misses the cache as real traffic would).
func fill(tb testing.TB, t *Table, n int) []Tuple {
	keys := make([]Tuple, n)
	for i := range n {
		src := privA + uint32(i>>14)
		port := uint16(1024 + i&0x3fff)
		k := tup(tcp, src, port, remote1+uint32(i&7), 443)
		to := k
		to.Src = eip + uint32(i>>14)
		v := t.Create(natSpec(k, to, 1), &Seg{Flags: packet.TCPAck, Seq: 1, Ack: 1, Win: 1000, WScale: -1}, t0)
		if v.Reason != packet.ReasonNone {
			tb.Fatalf("fill: flow %d: %v", i, v.Reason)
		}
		keys[i] = to.Reverse()
	}
	r := rand.New(rand.NewPCG(1, 1))
	r.Shuffle(n, func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
	return keys
}

func pps(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pkts/s")
}

// BenchmarkTrack is the established-flow lookup and state update, one
// goroutine, at 1K and 1M flows. It reports bytes per flow of the table.
func BenchmarkTrack(b *testing.B) {
	for _, n := range []int{1 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("flows=%d", n), func(b *testing.B) {
			t := NewTable(Options{MaxFlows: n + n/4})
			keys := fill(b, t, n)
			seg := &Seg{Flags: packet.TCPAck, Seq: 1, Ack: 1, Win: 1000, WScale: -1}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				v := t.Track(keys[i], seg, t0+1)
				if !v.Found {
					b.Fatal("not found")
				}
				if i++; i == len(keys) {
					i = 0
				}
			}
			pps(b)
			st := t.Stats()
			b.ReportMetric(float64(st.Bytes)/float64(st.Flows), "bytes/flow")
		})
	}
}

// BenchmarkEstablished is the per-packet NAT work of the established path
// on a 64-byte frame: Parse, SegOf, Track, Rewrite.
func BenchmarkEstablished(b *testing.B) {
	for _, n := range []int{1 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("flows=%d", n), func(b *testing.B) {
			t := NewTable(Options{MaxFlows: n + n/4})
			keys := fill(b, t, n)
			frames := make([][]byte, 1024)
			for i := range frames {
				k := keys[i%len(keys)]
				frames[i] = packettest.Frame(packettest.Spec{Proto: tcp, Src: ap(k.Src, k.SPort), Dst: ap(k.Dst, k.DPort), TCPFlags: packet.TCPAck, Seq: 1, Ack: 1, Payload: make([]byte, 10)})
			}
			var p packet.Parsed
			var seg Seg
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				f := frames[i&1023]
				if packet.Parse(f, &p) != packet.ReasonNone {
					b.Fatal("parse")
				}
				SegOf(&p, f, &seg)
				k := TupleOf(&p)
				if n > 1024 {
					k = keys[i] // walk the whole table; the frame stands for it
					if i++; i == len(keys) {
						i = 0
					}
				} else {
					i++
				}
				v := t.Track(k, &seg, t0+1)
				if !v.Found {
					b.Fatal("not found")
				}
				kf := TupleOf(&p)
				Rewrite(f, &p, kf, v.To, false)
				Rewrite(f, &p, v.To, kf, false) // put it back for the next round
			}
			pps(b)
		})
	}
}

// BenchmarkCreatePAT is new flows per second with PAT port allocation:
// every flow is a new private endpoint, so every one allocates a port.
func BenchmarkCreatePAT(b *testing.B) {
	const perTable = 1 << 18
	newTable := func() *Table { return NewTable(Options{MaxFlows: perTable}) }
	t := newTable()
	seg := &Seg{Flags: packet.TCPSyn, Seq: 1, WScale: -1}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i == perTable {
			b.StopTimer()
			t, i = newTable(), 0
			b.StartTimer()
		}
		k := tup(tcp, privA+uint32(i>>14), uint16(1024+i&0x3fff), remote1, 443)
		sp := patSpec(k, 1)
		sp.To.Src = pub + uint32(i>>15) // 32K endpoints per public address
		if v := t.Create(sp, seg, t0); v.Reason != packet.ReasonNone {
			b.Fatalf("flow %d: %v", i, v.Reason)
		}
		i++
	}
	pps(b)
}

func BenchmarkRewrite(b *testing.B) {
	k := tup(tcp, privA, 40000, remote1, 443)
	to := tup(tcp, pub, 1234, remote1, 443)
	f := packettest.Frame(spec(k, make([]byte, 10)))
	p := parse(b, f)
	b.ReportAllocs()
	for b.Loop() {
		Rewrite(f, p, k, to, false)
		Rewrite(f, p, to, k, false)
	}
	b.ReportMetric(2*float64(b.N)/b.Elapsed().Seconds(), "pkts/s")
}

func BenchmarkRewriteError(b *testing.B) {
	sent := tup(udp, pub, 1234, remote1, 53)
	orig := tup(udp, privA, 40000, remote1, 53)
	f := packettest.ICMPError(3, 3, packet.Addr(rtr), packet.Addr(pub), packettest.IP(spec(sent, make([]byte, 32))), 0, 0)
	p := parse(b, f)
	ek, to := sent.Reverse(), orig.Reverse()
	b.ReportAllocs()
	for b.Loop() {
		RewriteError(f, p, ek, to)
		RewriteError(f, p, to, ek)
	}
	b.ReportMetric(2*float64(b.N)/b.Elapsed().Seconds(), "pkts/s")
}

// TestNoAllocs guards the established path: Track (TCP and UDP, both
// directions), Peek, SegOf, Rewrite, RewriteError and ClampMSS allocate
// nothing.
func TestNoAllocs(t *testing.T) {
	tb := NewTable(Options{})
	keys := fill(t, tb, 1000)
	seg := &Seg{Flags: packet.TCPAck, Seq: 1, Ack: 1, Win: 1000, WScale: -1}
	uk := tup(udp, privA, 5000, remote1, 53)
	uv := mustCreate(t, tb, patSpec(uk, 1), nil, t0)
	f := packettest.Frame(spec(tup(tcp, privA, 40000, remote1, 443), make([]byte, 10)))
	p := parse(t, f)
	ef := packettest.ICMPError(3, 3, packet.Addr(rtr), packet.Addr(pub), packettest.IP(spec(uv.To, make([]byte, 8))), 0, 0)
	ep := parse(t, ef)
	syn := packettest.Frame(packettest.Spec{Proto: tcp, Src: ap(privA, 1), Dst: ap(remote1, 2), TCPFlags: packet.TCPSyn,
		TCPOptions: []layers.TCPOption{{OptionType: 2, OptionLength: 4, OptionData: []byte{0x23, 0x28}}}})
	sp := parse(t, syn)
	i := 0
	for _, tc := range []struct {
		name string
		fn   func()
	}{
		{"Track tcp reply", func() {
			if !tb.Track(keys[i%len(keys)], seg, t0+1).Found {
				t.Fatal("not found")
			}
			i++
		}},
		{"Track udp both ways", func() {
			tb.Track(uk, nil, t0+1)
			tb.Track(uv.To.Reverse(), nil, t0+1)
		}},
		{"Peek", func() { tb.Peek(uv.To.Reverse(), t0+1) }},
		{"SegOf", func() {
			var s Seg
			SegOf(p, f, &s)
		}},
		{"Rewrite", func() {
			k := TupleOf(p)
			to := k
			to.Src++
			to.SPort++
			Rewrite(f, p, k, to, false)
			Rewrite(f, p, to, k, true)
		}},
		{"RewriteError", func() {
			ek := ErrorKey(ep)
			RewriteError(ef, ep, ek, ek)
		}},
		{"ClampMSS", func() { ClampMSS(packet.TCP(syn[sp.L4:sp.End]), 1400, false) }},
	} {
		if n := testing.AllocsPerRun(1000, tc.fn); n != 0 {
			t.Errorf("%s: %v allocs per run, want 0", tc.name, n)
		}
	}
}
