package vswitch

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"roam/internal/packet"
)

func TestMultiAttachmentPinsFlows(t *testing.T) {
	w := newWorld(t, Options{})
	w.cfg.Records[0].Ports = []string{"vmA", "vmA2"}
	w.apply()
	// 64 inbound flows to A's public IP are spread over both ports, and
	// every packet of a flow goes to the same port.
	first := map[uint16]string{}
	for round := 0; round < 3; round++ {
		for i := 0; i < 64; i++ {
			sport := uint16(10000 + i)
			w.send("uplink", udpFrame(t, macUp, gwMAC, ap(remote, sport), ap(eipA, 5000), nil))
			got := ""
			for _, p := range []string{"vmA", "vmA2"} {
				if w.ports[p].Pending() > 0 {
					w.recv(p)
					got = p
				}
			}
			if got == "" {
				t.Fatalf("flow %d: delivered nowhere", i)
			}
			if round == 0 {
				first[sport] = got
			} else if first[sport] != got {
				t.Fatalf("flow %d moved from %s to %s", i, first[sport], got)
			}
		}
	}
	n := 0
	for _, p := range first {
		if p == "vmA" {
			n++
		}
	}
	if n == 0 || n == 64 {
		t.Fatalf("%d of 64 flows on vmA: not spread", n)
	}
	// Removing vmA2 moves only its flows.
	w.cfg.Records[0].Ports = []string{"vmA"}
	w.apply()
	w.send("uplink", udpFrame(t, macUp, gwMAC, ap(remote, 10000), ap(eipA, 5000), nil))
	w.recv("vmA")
}

func TestRecordCounters(t *testing.T) {
	w := newWorld(t, Options{})
	for i := 0; i < 5; i++ {
		w.send("vmA", udpFrame(t, macA, macB, ap(ipA, 4000), ap(ipB, 53), []byte("12345")))
		w.recv("vmB")
	}
	w.send("vmA", udpFrame(t, macA, gwMAC, ap(netip.MustParseAddr("10.0.0.77"), 1), ap(remote, 2), nil))
	a, b := w.sw.RecordCounters("eni-0000000a"), w.sw.RecordCounters("eni-00000014")
	if a.PacketsOut != 5 || b.PacketsIn != 5 || a.BytesOut != b.BytesIn || a.BytesOut == 0 {
		t.Fatalf("A out %d (%d B), B in %d (%d B); want 5 and 5 with equal bytes", a.PacketsOut, a.BytesOut, b.PacketsIn, b.BytesIn)
	}
	if a.Drops["source_check"] != 1 {
		t.Fatalf("A drops %v, want source_check 1", a.Drops)
	}
	if a.Flows != 1 {
		t.Fatalf("A flows %d, want 1", a.Flows)
	}
	c := w.sw.Counters()
	if c.Forwarded+c.Local+c.Dropped+uint64(c.Held) != c.Packets {
		t.Fatalf("verdicts do not add up: %+v", c)
	}
}

// fragment splits an Ethernet/IPv4 frame into IP fragments of at most
// size bytes of payload (a multiple of 8).
func fragment(t *testing.T, frame []byte, size int) [][]byte {
	t.Helper()
	pk := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
	eth := pk.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	ip := pk.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	payload := ip.Payload
	var out [][]byte
	for off := 0; off < len(payload); off += size {
		end := min(off+size, len(payload))
		fip := *ip
		fip.Flags = 0
		if end < len(payload) {
			fip.Flags = layers.IPv4MoreFragments
		}
		fip.FragOffset = uint16(off / 8)
		fip.Options = nil
		out = append(out, ser(t, eth, &fip, gopacket.Payload(payload[off:end])))
	}
	return out
}

func TestFragments(t *testing.T) {
	for _, order := range []string{"in order", "out of order"} {
		t.Run(order, func(t *testing.T) {
			w := newWorld(t, Options{})
			big := udpFrame(t, macB, gwMAC, ap(ipB, 7777), ap(remote, 53), make([]byte, 1000))
			frags := fragment(t, big, 400)
			if len(frags) != 3 {
				t.Fatalf("%d fragments, want 3", len(frags))
			}
			if order == "out of order" {
				frags[0], frags[2] = frags[2], frags[0]
			}
			for _, f := range frags {
				w.send("vmB", f)
			}
			var got []gopacket.Packet
			for i := 0; i < 3; i++ {
				got = append(got, w.recv("uplink"))
			}
			for _, pk := range got {
				ip := pk.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
				if !ip.SrcIP.Equal(patIP.AsSlice()) {
					t.Fatalf("fragment from %v, want %v", ip.SrcIP, patIP)
				}
				if !packet.IPv4(pk.Data()[14:]).ChecksumValid() {
					t.Fatal("fragment IP checksum does not verify")
				}
			}
			if c := w.sw.Counters(); c.Held != 0 || c.Forwarded != 3 {
				t.Fatalf("held %d forwarded %d, want 0 and 3", c.Held, c.Forwarded)
			}
		})
	}
	t.Run("never completed", func(t *testing.T) {
		w := newWorld(t, Options{})
		frags := fragment(t, udpFrame(t, macB, gwMAC, ap(ipB, 7777), ap(remote, 53), make([]byte, 1000)), 400)
		w.send("vmB", frags[2])
		if c := w.sw.Counters(); c.Held != 1 {
			t.Fatalf("held %d, want 1", c.Held)
		}
		w.clk.Advance(time.Minute)
		w.send("vmB", arpFrame(t, macB, ipB, gw0)) // any batch runs the timers
		w.recv("vmB")
		if c := w.sw.Counters(); c.Held != 0 || c.Drops["frag_no_flow"] != 1 {
			t.Fatalf("held %d drops %v, want the fragment dropped", c.Held, c.Drops)
		}
	})
}

func TestMSSClamp(t *testing.T) {
	w := newWorld(t, Options{MSS: 1200})
	w.send("vmB", tcpFrame(t, macB, gwMAC, ap(ipB, 40000), ap(remote, 80), "S", 1, 0, nil))
	pk := w.recv("uplink")
	checksumsOK(t, pk.Data())
	tc := pk.Layer(layers.LayerTypeTCP).(*layers.TCP)
	for _, o := range tc.Options {
		if o.OptionType == layers.TCPOptionKindMSS {
			if mss := int(o.OptionData[0])<<8 | int(o.OptionData[1]); mss != 1200 {
				t.Fatalf("MSS %d, want 1200", mss)
			}
			return
		}
	}
	t.Fatal("no MSS option")
}

func TestTableFullAndBudget(t *testing.T) {
	w := newWorld(t, Options{MaxFlows: 8, DefaultFlowBudget: 4})
	// B may hold 4 flows; the 5th is refused, its established ones go on.
	for i := 0; i < 5; i++ {
		w.send("vmB", udpFrame(t, macB, gwMAC, ap(ipB, uint16(1000+i)), ap(remote, 53), nil))
	}
	for i := 0; i < 4; i++ {
		w.recv("uplink")
	}
	w.none("uplink")
	if got := w.drops("flow_budget"); got != 1 {
		t.Fatalf("flow_budget drops %d, want 1", got)
	}
	// C fills the rest of the table (4 more), then the table is full.
	for i := 0; i < 5; i++ {
		w.send("vmC", udpFrame(t, macC, gwMAC, ap(ipC, uint16(1000+i)), ap(remote, 53), nil))
	}
	for i := 0; i < 4; i++ {
		w.recv("uplink")
	}
	if got := w.drops("table_full") + w.drops("flow_budget"); got != 2 {
		t.Fatalf("refusals %v", w.sw.Counters().Drops)
	}
	// Established flows are untouched: B's first flow still passes both ways.
	w.send("vmB", udpFrame(t, macB, gwMAC, ap(ipB, 1000), ap(remote, 53), nil))
	w.recv("uplink")
	w.send("uplink", udpFrame(t, macUp, gwMAC, ap(remote, 53), ap(patIP, 1000), nil))
	w.recv("vmB")
	// After the flows expire, new ones are admitted again.
	w.clk.Advance(10 * time.Minute)
	w.send("vmB", udpFrame(t, macB, gwMAC, ap(ipB, 2000), ap(remote, 53), nil))
	w.recv("uplink")
}

// TestDrainAfterReassign: after a reassign, what the old port had in flight
// on the record's established flows still goes out for a short grace; it
// cannot start new flows; nothing is delivered to it; after the grace it is
// cut off.
func TestDrainAfterReassign(t *testing.T) {
	w := newWorld(t, Options{DrainGrace: 500 * time.Millisecond})
	// An established inbound flow to A's public IP, answered by A on vmA.
	w.send("uplink", udpFrame(t, macUp, gwMAC, ap(remote, 999), ap(eipA, 5001), []byte("q")))
	w.recv("vmA")
	w.cfg.Records[0].Ports = []string{"vmA2"}
	w.apply()
	// vmA's answer, in flight at the swap, still reaches the client.
	w.send("vmA", udpFrame(t, macA, gwMAC, ap(ipA, 5001), ap(remote, 999), []byte("late answer")))
	if ip := w.recv("uplink").Layer(layers.LayerTypeIPv4).(*layers.IPv4); !ip.SrcIP.Equal(eipA.AsSlice()) {
		t.Fatalf("late answer from %v, want %v", ip.SrcIP, eipA)
	}
	// A new flow from the old port is refused.
	w.send("vmA", udpFrame(t, macA, gwMAC, ap(ipA, 6000), ap(remote, 53), nil))
	w.none("uplink")
	// The next query goes to the new port only.
	w.send("uplink", udpFrame(t, macUp, gwMAC, ap(remote, 999), ap(eipA, 5001), []byte("q2")))
	w.recv("vmA2")
	w.none("vmA")
	// After the grace the old port is cut off.
	w.clk.Advance(time.Second)
	w.send("vmA", udpFrame(t, macA, gwMAC, ap(ipA, 5001), ap(remote, 999), []byte("too late")))
	w.none("uplink")
	if got := w.drops("no_record"); got != 2 {
		t.Fatalf("no_record drops %d, want 2", got)
	}
}
