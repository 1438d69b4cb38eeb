package vswitch

import (
	"encoding/binary"
	"net"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"roam/internal/packet"
	"roam/tap"
)

// DHCP ports and lease time.
const (
	dhcpServerPort = 67
	dhcpClientPort = 68
	// LeaseTime is the lease roam offers. Leases are not stored: the
	// record is the lease, so renewals always get the record's address.
	LeaseTime = time.Hour
)

// isDHCP reports whether p is a DHCP client message.
func isDHCP(p *packet.Parsed) bool {
	return p.Proto == packet.ProtoUDP && p.L4 != 0 && p.Frag == packet.NotFragment &&
		p.DPort == dhcpServerPort && p.SPort == dhcpClientPort
}

// dhcp answers a DHCP client on a port with a record attached: DISCOVER
// gets an OFFER and REQUEST an ACK of the record's primary IP, with the
// subnet mask, the gateway as router and server, the subnet's MTU and DNS
// servers; a REQUEST for another address gets a NAK. The reply is built in
// the request's buffer and sent back out of the same port. DHCP is control
// traffic: the library allocates, the data path's fast path does not go
// here.
func (w *worker) dhcp(x *pkt) {
	p, snap, in, rec, f := &x.p, x.snap, x.in, x.rec, x.f
	frame := f.Bytes()
	req, err := dhcpv4.FromBytes(frame[p.L4+packet.UDPLen : p.End])
	if err != nil || req.OpCode != dhcpv4.OpcodeBootRequest {
		w.drop(packet.ReasonBadL4Header, rec)
		return
	}
	sn := rec.subnet
	yiaddr := packet.Addr(rec.ips[0]).AsSlice()
	gw := packet.Addr(sn.gateway).AsSlice()
	var typ dhcpv4.MessageType
	switch req.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		typ = dhcpv4.MessageTypeOffer
	case dhcpv4.MessageTypeRequest:
		want := req.RequestedIPAddress()
		if want == nil || want.IsUnspecified() {
			want = req.ClientIPAddr
		}
		if sid := req.ServerIdentifier(); (sid != nil && !sid.Equal(gw)) || !net.IP(yiaddr).Equal(want) {
			typ = dhcpv4.MessageTypeNak
		} else {
			typ = dhcpv4.MessageTypeAck
		}
	case dhcpv4.MessageTypeInform:
		typ = dhcpv4.MessageTypeAck
		yiaddr = net.IPv4zero.To4()
	default:
		// RELEASE and DECLINE need no answer: the record keeps its IP.
		w.bc.local++
		return
	}
	mods := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(typ),
		dhcpv4.WithServerIP(gw),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(gw)),
	}
	if typ != dhcpv4.MessageTypeNak {
		mask := net.CIDRMask(sn.prefix.Bits(), 32)
		mods = append(mods,
			dhcpv4.WithYourIP(yiaddr),
			dhcpv4.WithNetmask(mask),
			dhcpv4.WithOption(dhcpv4.OptRouter(gw)),
			dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionInterfaceMTU, binary.BigEndian.AppendUint16(nil, uint16(sn.mtu)))),
		)
		if req.MessageType() != dhcpv4.MessageTypeInform {
			mods = append(mods, dhcpv4.WithLeaseTime(uint32(LeaseTime/time.Second)))
		}
		if len(sn.dns) > 0 {
			var dns []net.IP
			for _, a := range sn.dns {
				dns = append(dns, a.AsSlice())
			}
			mods = append(mods, dhcpv4.WithOption(dhcpv4.OptDNS(dns...)))
		}
	}
	reply, err := dhcpv4.NewReplyFromRequest(req, mods...)
	if err != nil {
		w.drop(packet.ReasonBadL4Header, rec)
		return
	}
	body := reply.ToBytes()
	// Unicast to the client's MAC and new address unless it asked for
	// broadcast (RFC 2131 4.1); a NAK is always broadcast.
	dstIP := uint32(0xffffffff)
	dstMAC := packet.Broadcast
	if !req.IsBroadcast() && typ != dhcpv4.MessageTypeNak {
		dstMAC = packet.Ethernet(frame).Src()
		if typ == dhcpv4.MessageTypeAck && req.MessageType() == dhcpv4.MessageTypeInform {
			dstIP = p.Src
		} else {
			dstIP = rec.ips[0]
		}
	}
	const hdr = packet.EthernetLen + packet.IPv4MinLen + packet.UDPLen
	buf := f.Buf[f.Off:]
	if len(buf) < hdr+len(body) {
		w.drop(packet.ReasonRunt, rec)
		return
	}
	eth := packet.Ethernet(buf)
	eth.SetDst(dstMAC)
	eth.SetSrc(snap.gwMAC)
	eth.SetType(packet.EtherTypeIPv4)
	packet.PutIPv4(buf[packet.EthernetLen:], packet.ProtoUDP, sn.gateway, dstIP, packet.IPv4MinLen+packet.UDPLen+len(body), 0, 64, false)
	u := buf[packet.EthernetLen+packet.IPv4MinLen:]
	binary.BigEndian.PutUint16(u[0:2], dhcpServerPort)
	binary.BigEndian.PutUint16(u[2:4], dhcpClientPort)
	binary.BigEndian.PutUint16(u[4:6], uint16(packet.UDPLen+len(body)))
	binary.BigEndian.PutUint16(u[6:8], 0)
	copy(u[packet.UDPLen:], body)
	seg := u[:packet.UDPLen+len(body)]
	cs := packet.Checksum(seg, packet.PseudoSum(sn.gateway, dstIP, packet.ProtoUDP, len(seg)))
	if cs == 0 {
		cs = 0xffff
	}
	binary.BigEndian.PutUint16(u[6:8], cs)
	f.Len = hdr + len(body)
	f.GSO = tap.GSO{}
	w.local(in, f)
}
