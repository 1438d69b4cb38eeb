package vswitch

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/google/gopacket/layers"
)

// TestFlowPolicy: record A has three flows (TCP in to its public IP on
// port 80, UDP in on port 5000, TCP out to 443) when its group stops
// allowing UDP in, or when its public IP goes. Each policy keeps, removes
// or resets what it says, and packets of removed flows are judged as new.
func TestFlowPolicy(t *testing.T) {
	const recA = "eni-0000000a"
	type want struct {
		flows     int    // A's flows left after the change
		udpIn     bool   // the next inbound UDP datagram reaches vmA
		tcpIn     bool   // the next inbound TCP segment on port 80 reaches vmA
		tcpOut    bool   // the next outbound TCP segment to 443 leaves
		rstsVM    int    // RSTs written to vmA
		rstsUp    int    // RSTs written to the uplink
		dropFirst string // the counter the refused UDP datagram lands in
	}
	// The changes copy what they change, as the control plane does: a
	// published config is immutable.
	noUDP := func(w *world) {
		w.cfg.Groups = slices.Clone(w.cfg.Groups)
		w.cfg.Groups[0].Ingress = w.cfg.Groups[0].Ingress[1:] // TCP 80 only
	}
	noEIP := func(w *world) {
		w.cfg.Records = slices.Clone(w.cfg.Records)
		w.cfg.Records[0].PublicIPs = nil
	}
	tests := []struct {
		name   string
		policy string
		change func(w *world)
		want   want
	}{
		{"keep (default), group change", "", noUDP, want{flows: 3, udpIn: true, tcpIn: true, tcpOut: true}},
		{"keep, group change", FlowKeep, noUDP, want{flows: 3, udpIn: true, tcpIn: true, tcpOut: true}},
		{"reevaluate, group change", FlowReevaluate, noUDP, want{flows: 2, udpIn: false, tcpIn: true, tcpOut: true, dropFirst: "sg_ingress"}},
		// After a reset both ends hold no connection (the RSTs); a
		// segment that still comes is judged as a first packet, and the
		// rules allow TCP 80 in and all out (conntrack picks up
		// mid-stream, as Linux does).
		{"reset, group change", FlowReset, noUDP, want{flows: 0, udpIn: false, tcpIn: true, tcpOut: true, rstsVM: 2, rstsUp: 2, dropFirst: "sg_ingress"}},
		// Keep leaves the table alone; packets to an address roam no
		// longer holds are not for it, whatever the table says.
		{"keep, public IP gone", FlowKeep, noEIP, want{flows: 3, udpIn: false, tcpIn: false, tcpOut: true}},
		// Every flow used the public IP: all go; the outbound segment
		// starts a new flow, through PAT.
		{"reevaluate, public IP gone", FlowReevaluate, noEIP, want{flows: 0, udpIn: false, tcpIn: false, tcpOut: true}},
		{"reset, public IP gone", FlowReset, noEIP, want{flows: 0, udpIn: false, tcpIn: false, tcpOut: true, rstsVM: 2, rstsUp: 2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, Options{})
			w.cfg.Records[0].FlowPolicy = tc.policy
			w.apply()
			rem := ap(remote, 40000)
			// TCP in, to the public IP, port 80: established.
			w.send("uplink", tcpFrame(t, macUp, gwMAC, rem, ap(eipA, 80), "S", 100, 0, nil))
			w.recv("vmA")
			w.send("vmA", tcpFrame(t, macA, gwMAC, ap(ipA, 80), rem, "SA", 700, 101, nil))
			w.recv("uplink")
			w.send("uplink", tcpFrame(t, macUp, gwMAC, rem, ap(eipA, 80), "A", 101, 701, nil))
			w.recv("vmA")
			// UDP in, port 5000, answered.
			w.send("uplink", udpFrame(t, macUp, gwMAC, ap(remote, 6000), ap(eipA, 5000), []byte("q")))
			w.recv("vmA")
			w.send("vmA", udpFrame(t, macA, gwMAC, ap(ipA, 5000), ap(remote, 6000), []byte("r")))
			w.recv("uplink")
			// TCP out to 443: established.
			w.send("vmA", tcpFrame(t, macA, gwMAC, ap(ipA, 33000), ap(remote, 443), "S", 5000, 0, nil))
			w.recv("uplink")
			w.send("uplink", tcpFrame(t, macUp, gwMAC, ap(remote, 443), ap(eipA, 33000), "SA", 9000, 5001, nil))
			w.recv("vmA")
			w.send("vmA", tcpFrame(t, macA, gwMAC, ap(ipA, 33000), ap(remote, 443), "A", 5001, 9001, nil))
			w.recv("uplink")
			if n := len(w.sw.Flows(recA)); n != 3 {
				t.Fatalf("setup: %d flows of A, want 3", n)
			}

			tc.change(w)
			w.apply()
			if got := len(w.sw.Flows(recA)); got != tc.want.flows {
				t.Errorf("after the change: %d flows of A, want %d: %+v", got, tc.want.flows, w.sw.Flows(recA))
			}
			rsts := func(port string, ipDst netip.Addr) int {
				n := 0
				for w.ports[port].Pending() > 0 {
					pk := w.recv(port)
					tcp, _ := pk.Layer(layers.LayerTypeTCP).(*layers.TCP)
					if tcp == nil || !tcp.RST {
						t.Errorf("unexpected frame on %s after the change: %v", port, pk)
						continue
					}
					checksumsOK(t, pk.Data())
					ip := pk.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
					switch {
					case tcp.DstPort == 80 && tcp.Seq != 101, tcp.SrcPort == 80 && tcp.Seq != 701,
						tcp.DstPort == 33000 && tcp.Seq != 9001, tcp.SrcPort == 33000 && tcp.Seq != 5001:
						t.Errorf("RST on %s %v:%d->%v:%d seq %d: not the sequence number the peer expects", port, ip.SrcIP, tcp.SrcPort, ip.DstIP, tcp.DstPort, tcp.Seq)
					}
					n++
				}
				return n
			}
			if got := rsts("vmA", ipA); got != tc.want.rstsVM {
				t.Errorf("RSTs to vmA: %d, want %d", got, tc.want.rstsVM)
			}
			if got := rsts("uplink", remote); got != tc.want.rstsUp {
				t.Errorf("RSTs to the uplink: %d, want %d", got, tc.want.rstsUp)
			}
			pub := eipA
			delivered := func(port string) bool {
				ok := w.ports[port].Pending() > 0
				for w.ports[port].Pending() > 0 {
					w.ports[port].Recv(0)
				}
				return ok
			}
			before := w.drops(tc.want.dropFirst)
			w.send("uplink", udpFrame(t, macUp, gwMAC, ap(remote, 6000), ap(pub, 5000), []byte("q2")))
			if got := delivered("vmA"); got != tc.want.udpIn {
				t.Errorf("inbound UDP after the change delivered %v, want %v", got, tc.want.udpIn)
			}
			if tc.want.dropFirst != "" && w.drops(tc.want.dropFirst) != before+1 {
				t.Errorf("refused UDP not counted as %s: %v", tc.want.dropFirst, w.sw.Counters().Drops)
			}
			w.send("uplink", tcpFrame(t, macUp, gwMAC, rem, ap(pub, 80), "PA", 101, 701, []byte("GET")))
			if got := delivered("vmA"); got != tc.want.tcpIn {
				t.Errorf("inbound TCP data after the change delivered %v, want %v", got, tc.want.tcpIn)
			}
			w.send("vmA", tcpFrame(t, macA, gwMAC, ap(ipA, 33000), ap(remote, 443), "PA", 5001, 9001, []byte("hi")))
			if got := delivered("uplink"); got != tc.want.tcpOut {
				t.Errorf("outbound TCP data after the change delivered %v, want %v", got, tc.want.tcpOut)
			}
		})
	}
}
