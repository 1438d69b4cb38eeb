package vswitch

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/gopacket/layers"
	"github.com/insomniacslk/dhcp/dhcpv4"

	"roam/tap/taptest"
)

func dhcpFrame(t *testing.T, mac net.HardwareAddr, m *dhcpv4.DHCPv4) []byte {
	eth := &layers.Ethernet{SrcMAC: mac, DstMAC: net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, EthernetType: layers.EthernetTypeIPv4}
	ip := ipv4(netip.IPv4Unspecified(), netip.MustParseAddr("255.255.255.255"), layers.IPProtocolUDP)
	u := &layers.UDP{SrcPort: 68, DstPort: 67}
	u.SetNetworkLayerForChecksum(ip)
	return ser(t, eth, ip, u, gopacket_Payload(m.ToBytes()))
}

func (w *world) dhcpReply(port string) *dhcpv4.DHCPv4 {
	w.t.Helper()
	pk := w.recv(port)
	checksumsOK(w.t, pk.Data())
	u := pk.Layer(layers.LayerTypeUDP).(*layers.UDP)
	if u.SrcPort != 67 || u.DstPort != 68 {
		w.t.Fatalf("reply ports %d->%d, want 67->68", u.SrcPort, u.DstPort)
	}
	m, err := dhcpv4.FromBytes(u.Payload)
	if err != nil {
		w.t.Fatal(err)
	}
	return m
}

func TestDHCP(t *testing.T) {
	w := newWorld(t, Options{})
	w.cfg.Subnets[0].MTU = 9000
	w.cfg.Subnets[0].DNS = []netip.Addr{netip.MustParseAddr("10.0.0.2")}
	w.apply()
	disc, err := dhcpv4.NewDiscovery(macA)
	if err != nil {
		t.Fatal(err)
	}
	w.send("vmA", dhcpFrame(t, macA, disc))
	offer := w.dhcpReply("vmA")
	if offer.MessageType() != dhcpv4.MessageTypeOffer || !offer.YourIPAddr.Equal(ipA.AsSlice()) {
		t.Fatalf("got %s offering %v, want an offer of %v", offer.MessageType(), offer.YourIPAddr, ipA)
	}
	if r := offer.Router(); len(r) != 1 || !r[0].Equal(gw0.AsSlice()) {
		t.Fatalf("router %v, want %v", r, gw0)
	}
	if ones, _ := offer.SubnetMask().Size(); ones != 24 {
		t.Fatalf("mask /%d, want /24", ones)
	}
	if mtu := offer.GetOneOption(dhcpv4.OptionInterfaceMTU); len(mtu) != 2 || int(mtu[0])<<8|int(mtu[1]) != 9000 {
		t.Fatalf("mtu option %v, want 9000", mtu)
	}
	if dns := offer.DNS(); len(dns) != 1 || !dns[0].Equal(net.IP{10, 0, 0, 2}) {
		t.Fatalf("dns %v", dns)
	}
	if lt := offer.IPAddressLeaseTime(0); lt != LeaseTime {
		t.Fatalf("lease %v, want %v", lt, LeaseTime)
	}
	req, _ := dhcpv4.NewRequestFromOffer(offer)
	w.send("vmA", dhcpFrame(t, macA, req))
	if ack := w.dhcpReply("vmA"); ack.MessageType() != dhcpv4.MessageTypeAck || !ack.YourIPAddr.Equal(ipA.AsSlice()) {
		t.Fatalf("got %s for %v, want an ACK", ack.MessageType(), ack.YourIPAddr)
	}
	// Asking for another address gets a NAK.
	bad, _ := dhcpv4.NewRequestFromOffer(offer, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IP{10, 0, 0, 99})))
	w.send("vmA", dhcpFrame(t, macA, bad))
	if nak := w.dhcpReply("vmA"); nak.MessageType() != dhcpv4.MessageTypeNak {
		t.Fatalf("got %s, want a NAK", nak.MessageType())
	}
	// A port with no record attached gets no offer.
	lone := taptest.New("lone", 8)
	w.sw.AddPort(lone)
	fs := dhcpFrame(t, macC, disc)
	w.ports["lone"] = lone
	w.send("lone", fs)
	if _, ok := lone.Recv(50 * time.Millisecond); ok {
		t.Fatal("a port with no record got an answer")
	}
}
