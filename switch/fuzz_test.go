package vswitch

import (
	"testing"
	"time"

	"roam/internal/packet"
	"roam/tap"
)

// FuzzPipeline feeds arbitrary frames to every port of the test world. The
// switch must not panic, conntrack must stay within its limit, and every
// frame must get exactly one verdict.
func FuzzPipeline(f *testing.F) {
	seeds := [][]byte{
		udpFrame(f, macB, gwMAC, ap(ipB, 1), ap(remote, 2), []byte("x")),
		tcpFrame(f, macA, gwMAC, ap(ipA, 40000), ap(remote, 80), "S", 1, 0, nil),
		tcpFrame(f, macUp, gwMAC, ap(remote, 80), ap(eipA, 40000), "SA", 1, 2, nil),
		echoFrame(f, macB, gwMAC, ipB, remote, packet.ICMPEcho, 1, 1),
		echoFrame(f, macA, gwMAC, ipA, gw0, packet.ICMPEcho, 1, 1),
		arpFrame(f, macA, ipA, gw0),
		arpFrame(f, macUp, remote, patIP),
	}
	for i, s := range seeds {
		for port := 0; port < 4; port++ {
			f.Add(uint8(port), uint8(i), s)
		}
	}
	names := []string{"vmA", "vmB", "vmC", "uplink"}
	f.Fuzz(func(t *testing.T, port uint8, tick uint8, frame []byte) {
		w := newWorld(t, Options{MaxFlows: 64, DefaultFlowBudget: 16})
		// Feed the frame, then variants of it, on every port.
		for k := 0; k < 4; k++ {
			fs := tap.NewFrames(2, tap.Headroom+len(frame)+600)
			for j := range fs {
				fs[j].Len = copy(fs[j].Buf[tap.Headroom:], frame)
			}
			w.sw.Process(names[(int(port)+k)%len(names)], fs)
			w.clk.Advance(time.Duration(tick) * time.Second)
		}
		c := w.sw.Counters()
		if c.Flows > 64 {
			t.Fatalf("%d flows, limit 64", c.Flows)
		}
		if got := c.Forwarded + c.Local + c.Dropped + uint64(c.Held); got != c.Packets {
			t.Fatalf("verdicts %d (fwd %d local %d dropped %d held %d) != packets %d",
				got, c.Forwarded, c.Local, c.Dropped, c.Held, c.Packets)
		}
	})
}
