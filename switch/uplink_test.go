package vswitch

import (
	"bytes"
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket/layers"
)

func TestUplinkNeighbors(t *testing.T) {
	w := newWorld(t, Options{})
	upstream := netip.MustParseAddr("203.0.113.254")
	onlink := netip.MustParseAddr("203.0.113.7")
	macOn := net.HardwareAddr{0x02, 0, 0, 0, 0xee, 0x07}
	w.cfg.UpstreamMAC = nil
	w.cfg.Upstream = upstream
	w.cfg.PublicCIDR = netip.MustParsePrefix("203.0.113.0/24")
	w.apply()
	// Apply announced nothing new (the public IPs were there) but asked
	// for the upstream's MAC.
	pk := w.recv("uplink")
	a := pk.Layer(layers.LayerTypeARP).(*layers.ARP)
	if a.Operation != layers.ARPRequest || !bytes.Equal(a.DstProtAddress, upstream.AsSlice()) {
		t.Fatalf("got %v, want an ARP request for %v", pk, upstream)
	}
	w.none("uplink")
	// Until it answers, off-link traffic waits (holdPerAddr frames; the
	// rest are dropped and counted).
	for i := 0; i <= holdPerAddr; i++ {
		w.send("vmB", udpFrame(t, macB, gwMAC, ap(ipB, 1), ap(remote, 2), nil))
	}
	w.none("uplink")
	if got := w.drops("neighbor_unresolved"); got != 1 {
		t.Fatalf("neighbor_unresolved drops %d, want 1", got)
	}
	// The upstream answers: what waited goes to its MAC, and so does
	// what follows.
	reply := arpFrame(t, macUp, upstream, patIP)
	reply[14+7] = 2 // ARP reply
	w.send("uplink", reply)
	for i := 0; i < holdPerAddr; i++ {
		if eth := w.recv("uplink").Layer(layers.LayerTypeEthernet).(*layers.Ethernet); !bytes.Equal(eth.DstMAC, macUp) {
			t.Fatalf("waiting datagram %d sent to %v, want the upstream %v", i, eth.DstMAC, macUp)
		}
	}
	w.none("uplink")
	w.send("vmB", udpFrame(t, macB, gwMAC, ap(ipB, 1), ap(remote, 2), nil))
	if eth := w.recv("uplink").Layer(layers.LayerTypeEthernet).(*layers.Ethernet); !bytes.Equal(eth.DstMAC, macUp) {
		t.Fatalf("sent to %v, want the upstream %v", eth.DstMAC, macUp)
	}
	// An on-link host is resolved by itself: roam asks for it.
	w.send("vmB", udpFrame(t, macB, gwMAC, ap(ipB, 3), ap(onlink, 4), nil))
	pk = w.recv("uplink")
	if a := pk.Layer(layers.LayerTypeARP).(*layers.ARP); a == nil || !bytes.Equal(a.DstProtAddress, onlink.AsSlice()) {
		t.Fatalf("got %v, want an ARP request for %v", pk, onlink)
	}
	// It asks roam for B's public address (PAT) while roam's request is
	// outstanding: roam learns it from that, and the datagram goes out.
	w.send("uplink", arpFrame(t, macOn, onlink, patIP))
	if eth := w.recv("uplink").Layer(layers.LayerTypeEthernet).(*layers.Ethernet); !bytes.Equal(eth.DstMAC, macOn) {
		t.Fatalf("the waiting datagram went to %v, want %v", eth.DstMAC, macOn)
	}
	w.recv("uplink") // roam's answer
	w.send("vmB", udpFrame(t, macB, gwMAC, ap(ipB, 3), ap(onlink, 4), nil))
	if eth := w.recv("uplink").Layer(layers.LayerTypeEthernet).(*layers.Ethernet); !bytes.Equal(eth.DstMAC, macOn) {
		t.Fatalf("sent to %v, want %v", eth.DstMAC, macOn)
	}
	// Associating a new public IP announces it with a gratuitous ARP.
	eipB := netip.MustParseAddr("198.51.100.20")
	w.cfg.Records[1].PublicIPs = []Association{{Public: eipB, Private: ipB}}
	w.apply()
	pk = w.recv("uplink")
	if a := pk.Layer(layers.LayerTypeARP).(*layers.ARP); a == nil || !bytes.Equal(a.SourceProtAddress, eipB.AsSlice()) || !bytes.Equal(a.DstProtAddress, eipB.AsSlice()) {
		t.Fatalf("got %v, want a gratuitous ARP for %v", pk, eipB)
	}
}
