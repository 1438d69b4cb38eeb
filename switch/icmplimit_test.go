package vswitch

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/gopacket/layers"

	"roam/internal/packet"
	"roam/tap"
	"roam/tap/taptest"
)

// ttl1 returns frame with its TTL set to 1 (and the header checksum fixed).
func ttl1(f []byte) []byte {
	f[14+8] = 1
	packet.IPv4(f[14:]).ComputeChecksum()
	return f
}

// flood sends n copies of frame from port over one second, in ten
// batches 100 ms apart, and returns the ICMP errors port got back.
func (w *world) flood(port string, n int, frame func(i int) []byte) int {
	w.t.Helper()
	got := 0
	for b := 0; b < 10; b++ {
		var fs [][]byte
		for i := b * n / 10; i < (b+1)*n/10; i++ {
			fs = append(fs, frame(i))
		}
		w.batch(port, fs)
		for _, f := range w.drain(port) {
			if q := icmpOf(w.t, f); q.ICMPType != 11 {
				w.t.Fatalf("flood from %s answered with %d/%d, want 11 (time exceeded)", port, q.ICMPType, q.ICMPCode)
			}
			got++
		}
		if b < 9 {
			w.clk.Advance(100 * time.Millisecond)
		}
	}
	return got
}

// share is the most ICMP errors one record or uplink source may cause in
// a second with the default per-source rate: the burst and one second's
// refill.
const share = 2*DefaultICMPSourceRate + DefaultICMPSourceRate

// expectError expects an ICMP error typ/code on port (with mtu for 3/4).
func (w *world) expectError(port string, typ, code uint8, mtu uint16, what string) {
	w.t.Helper()
	if w.ports[port].Pending() == 0 {
		w.t.Fatalf("%s: no ICMP error on %s (counters %+v)", what, port, w.sw.Counters())
	}
	pk := w.recv(port)
	checksumsOK(w.t, pk.Data())
	q := icmpOf(w.t, pk.Data())
	ic := pk.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
	if q.ICMPType != typ || q.ICMPCode != code || typ == 3 && code == 4 && ic.Seq != mtu {
		w.t.Fatalf("%s: got %d/%d (mtu %d), want %d/%d (mtu %d)", what, q.ICMPType, q.ICMPCode, ic.Seq, typ, code, mtu)
	}
}

// TestICMPErrorsPerRecord (issue 10, point 3): with the switch's default
// options (roamd's), one VM's burst of TTL=1 packets costs it its own share
// of ICMP errors, not the gateway's: another VM's DF packet over the next
// hop's MTU still gets its fragmentation-needed (no path-MTU black hole),
// and its TTL expiry its time exceeded. The flooding record's suppressed
// errors are counted in its counters.
func TestICMPErrorsPerRecord(t *testing.T) {
	w := newWorld(t, Options{})
	got := w.flood("vmA", 1000, func(i int) []byte {
		return ttl1(udpFrame(t, macA, gwMAC, ap(ipA, uint16(10000+i)), ap(remote, 53), nil))
	})
	a := w.sw.RecordCounters("eni-0000000a")
	t.Logf("A: 1000 TTL=1 packets in 1 s, %d time exceeded sent, %d limited (share %d)", got, a.ICMPLimited, share)
	if got == 0 || got > share {
		t.Fatalf("A got %d time exceeded for 1000 TTL=1 packets in a second, want 1 to %d (its share)", got, share)
	}
	if a.ICMPSent != uint64(got) || a.ICMPLimited != uint64(1000-got) {
		t.Fatalf("A's counters: sent %d limited %d, want %d and %d", a.ICMPSent, a.ICMPLimited, got, 1000-got)
	}
	w.send("vmB", udpFrame(t, macB, gwMAC, ap(ipB, 1), ap(remote, 2), make([]byte, 1600)))
	w.none("uplink")
	w.expectError("vmB", 3, 4, 1500, "B's DF packet over the uplink's MTU after A's flood")
	w.send("vmB", ttl1(udpFrame(t, macB, gwMAC, ap(ipB, 3), ap(remote, 4), nil)))
	w.expectError("vmB", 11, 0, 0, "B's TTL=1 packet after A's flood")
	if b := w.sw.RecordCounters("eni-00000014"); b.ICMPSent != 2 || b.ICMPLimited != 0 {
		t.Fatalf("B's counters: sent %d limited %d, want 2 and 0", b.ICMPSent, b.ICMPLimited)
	}
	if c := w.sw.Counters(); c.ICMPSent != uint64(got)+2 || c.ICMPLimited != uint64(1000-got) {
		t.Fatalf("switch counters: sent %d limited %d, want %d and %d", c.ICMPSent, c.ICMPLimited, got+2, 1000-got)
	}
	// The record's ICMP counts continue after a graceful restart.
	w2 := newWorld(t, Options{})
	if _, err := w2.sw.RestoreRecordCounters("eni-0000000a", a); err != nil {
		t.Fatal(err)
	}
	if r := w2.sw.RecordCounters("eni-0000000a"); r.ICMPSent != a.ICMPSent || r.ICMPLimited != a.ICMPLimited {
		t.Fatalf("restored: sent %d limited %d, want %d and %d", r.ICMPSent, r.ICMPLimited, a.ICMPSent, a.ICMPLimited)
	}
}

// TestICMPFragNeededNotStarved: when the global cap is spent (here by two
// records flooding under a tiny cap), a record within its own share still
// gets fragmentation-needed; only the other errors wait for the cap.
func TestICMPFragNeededNotStarved(t *testing.T) {
	w := newWorld(t, Options{ICMPErrorRate: 5})
	var fa, fc [][]byte
	for i := 0; i < 1000; i++ {
		fa = append(fa, ttl1(udpFrame(t, macA, gwMAC, ap(ipA, uint16(10000+i)), ap(remote, 53), nil)))
		fc = append(fc, ttl1(udpFrame(t, macC, gwMAC, ap(ipC, uint16(10000+i)), ap(remote, 53), nil)))
	}
	w.batch("vmA", fa)
	w.batch("vmC", fc)
	if a, c := len(w.drain("vmA")), len(w.drain("vmC")); a+c != 5 {
		t.Fatalf("A and C got %d and %d errors under a cap of 5/s, want 5 in all", a, c)
	}
	w.send("vmB", ttl1(udpFrame(t, macB, gwMAC, ap(ipB, 3), ap(remote, 4), nil)))
	w.none("vmB") // the cap is spent: time exceeded waits
	for i := 0; i < 2*DefaultICMPSourceRate; i++ {
		w.send("vmB", udpFrame(t, macB, gwMAC, ap(ipB, uint16(100+i)), ap(remote, 2), make([]byte, 1600)))
		w.expectError("vmB", 3, 4, 1500, "B's DF packet with the global cap spent")
	}
	// Past its own burst, B's fragmentation-needed is limited too.
	w.send("vmB", udpFrame(t, macB, gwMAC, ap(ipB, 99), ap(remote, 2), make([]byte, 1600)))
	w.none("vmB")
	if b := w.sw.RecordCounters("eni-00000014"); b.ICMPSent != 2*DefaultICMPSourceRate || b.ICMPLimited != 2 {
		t.Fatalf("B's counters: sent %d limited %d, want %d and 2", b.ICMPSent, b.ICMPLimited, 2*DefaultICMPSourceRate)
	}
}

// TestICMPErrorsPerUplinkSource: an outside host flooding TTL=1 packets at
// a record's public IP gets at most its share of time exceeded; another
// outside host still gets its time exceeded and fragmentation-needed. And
// when many spoofed sources spend the global cap, fragmentation-needed to
// the uplink still has a budget of its own.
func TestICMPErrorsPerUplinkSource(t *testing.T) {
	w := newWorld(t, Options{})
	flooder := netip.MustParseAddr("192.0.2.66")
	got := w.flood("uplink", 1000, func(i int) []byte {
		return ttl1(udpFrame(t, macUp, gwMAC, ap(flooder, 2), ap(eipA, 5000), nil))
	})
	t.Logf("uplink source: 1000 TTL=1 packets in 1 s, %d time exceeded sent (share %d)", got, share)
	if got == 0 || got > share {
		t.Fatalf("the flooding source got %d time exceeded for 1000 TTL=1 packets in a second, want 1 to %d", got, share)
	}
	w.send("uplink", ttl1(udpFrame(t, macUp, gwMAC, ap(remote, 2), ap(eipA, 5001), nil)))
	w.expectError("uplink", 11, 0, 0, "another source's TTL=1 packet after the flood")
	w.send("uplink", udpFrame(t, macUp, gwMAC, ap(remote, 3), ap(eipA, 5002), make([]byte, 1600)))
	w.none("vmA")
	w.expectError("uplink", 3, 4, 1500, "another source's DF packet over A's MTU after the flood")

	// Spoofed sources, one packet each, spend a global cap of 5/s.
	w = newWorld(t, Options{ICMPErrorRate: 5})
	var fs [][]byte
	for i := 0; i < 500; i++ {
		src := netip.AddrFrom4([4]byte{192, 0, 2, byte(i)})
		if i >= 256 {
			src = netip.AddrFrom4([4]byte{198, 18, 0, byte(i)})
		}
		fs = append(fs, ttl1(udpFrame(t, macUp, gwMAC, ap(src, 2), ap(eipA, 5000), nil)))
	}
	w.batch("uplink", fs)
	if n := len(w.drain("uplink")); n != 5 {
		t.Fatalf("500 spoofed sources got %d time exceeded under a cap of 5/s, want 5", n)
	}
	w.send("uplink", udpFrame(t, macUp, gwMAC, ap(remote, 3), ap(eipA, 5002), make([]byte, 1600)))
	w.expectError("uplink", 3, 4, 1500, "a DF packet from outside with the cap spent by other errors")
}

// TestICMPLimiterNoAllocs: deciding whether an ICMP error may be sent
// allocates nothing, for records and for uplink sources (new and known).
func TestICMPLimiterNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector; make test also runs this test without -race")
	}
	clk := &clock{t: time.Unix(1_700_000_000, 0)}
	sw := New(Options{Now: clk.Now})
	for _, n := range []string{"vmA", "vmB", "vmC", "vmA2", "uplink"} {
		if err := sw.AddPort(taptest.NewSink(n)); err != nil {
			t.Fatal(err)
		}
	}
	cfg := baseConfig()
	if err := sw.Apply(&cfg); err != nil {
		t.Fatal(err)
	}
	rec := ttl1(udpFrame(t, macA, gwMAC, ap(ipA, 1000), ap(remote, 53), nil))
	up := ttl1(udpFrame(t, macUp, gwMAC, ap(remote, 2), ap(eipA, 5000), nil))
	recs, ups := tap.NewFrames(64, tap.Headroom+2048), tap.NewFrames(64, tap.Headroom+2048)
	k := 0
	run := func() {
		for i := range recs {
			recs[i].Off, recs[i].Len, recs[i].GSO = tap.Headroom, copy(recs[i].Buf[tap.Headroom:], rec), tap.GSO{}
			f := ups[i].Buf[tap.Headroom:]
			ups[i].Off, ups[i].Len, ups[i].GSO = tap.Headroom, copy(f, up), tap.GSO{}
			k = (k + 1) % 512 // 512 sources, more than a set of the table holds
			f[14+13], f[14+14] = byte(k>>8), byte(k)
			packet.IPv4(f[14:]).ComputeChecksum()
			fixUDP(f)
		}
		sw.Process("vmA", recs)
		sw.Process("uplink", ups)
		clk.Advance(50 * time.Millisecond)
	}
	for i := 0; i < 16; i++ { // every source's flow exists
		run()
	}
	allocs := testing.AllocsPerRun(100, run)
	if allocs != 0 {
		t.Fatalf("%v allocations per two batches of TTL=1 packets, want 0", allocs)
	}
	if c := sw.Counters(); c.ICMPSent == 0 || c.ICMPLimited == 0 {
		t.Fatalf("sent %d limited %d: the test did not exercise the limiter", c.ICMPSent, c.ICMPLimited)
	}
}
