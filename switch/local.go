package vswitch

import (
	"encoding/binary"

	"roam/internal/packet"
	"roam/tap"
)

// arp answers ARP requests for the addresses roam stands for: from a record,
// the subnet gateway and every IP of a record in the same subnet (with that
// record's MAC); from the uplink, the gateway's public addresses. Nothing is
// ever flooded or learned from ARP. The reply is built in place and sent
// back out of the port the request came in on.
func (w *worker) arp(x *pkt) {
	snap, in, rec, up, f := x.snap, x.in, x.rec, x.up, x.f
	frame := f.Bytes()
	a := packet.ARP(frame[x.p.L3:])
	sip, tip := a.SenderIP(), a.TargetIP()
	if up && !w.learnARP(snap, a) {
		return // refused (uplink.go): counted and logged
	}
	if a.Op() != packet.ARPRequest {
		if up && a.Op() == packet.ARPReply {
			w.bc.local++ // an answer to roam's own request
			return
		}
		w.drop(ReasonARPIgnored, rec)
		return
	}
	var answer packet.MAC
	switch {
	case up:
		if !snap.isPublic(tip) {
			w.drop(ReasonARPIgnored, nil)
			return
		}
		answer = snap.gwMAC
	default:
		if rec.sdc && sip != 0 && !rec.hasIP(sip) {
			w.drop(ReasonSourceCheck, rec) // a spoofed sender
			return
		}
		if sip == tip {
			w.drop(ReasonARPIgnored, rec) // gratuitous
			return
		}
		if tip == rec.subnet.gateway {
			answer = snap.gwMAC
		} else if d := snap.private.at(tip); d != nil && d.subnet == rec.subnet {
			answer = d.mac
		} else {
			w.drop(ReasonARPIgnored, rec)
			return
		}
	}
	smac := a.SenderMAC()
	f.Len = packet.PutARP(frame[:cap(frame)], packet.ARPReply, answer, tip, smac, sip, smac)
	w.local(in, f)
}

// local queues a frame roam answered itself back out of port in.
func (w *worker) local(in *portState, f *tap.Frame) {
	w.bc.local++
	w.enqueue(in, f)
}

// toGateway handles an IPv4 packet from a record to its subnet's gateway:
// ICMP echo is answered; anything else is not for roam.
func (w *worker) toGateway(x *pkt) {
	p := &x.p
	if p.Proto == packet.ProtoICMP && p.ICMPType == packet.ICMPEcho && p.Frag == packet.NotFragment {
		w.echoReply(x)
		return
	}
	w.drop(ReasonNotForUs, x.rec)
}

// echoReply turns an ICMP echo request x into its reply in place and sends
// it back out of the port it came in on.
func (w *worker) echoReply(x *pkt) {
	p, in, f := &x.p, x.in, x.f
	frame := f.Bytes()
	eth := packet.Ethernet(frame)
	src, dst := eth.Src(), eth.Dst()
	eth.SetDst(src)
	eth.SetSrc(dst)
	ip := packet.IPv4(frame[p.L3:])
	binary.BigEndian.PutUint32(ip[12:16], p.Dst)
	binary.BigEndian.PutUint32(ip[16:20], p.Src) // swapping leaves the sum unchanged
	oldTTL := binary.BigEndian.Uint16(ip[8:10])
	ip[8] = 64
	ip.SetChecksum(packet.Update16(ip.Checksum(), oldTTL, binary.BigEndian.Uint16(ip[8:10])))
	icmp := frame[p.L4:p.End]
	old := binary.BigEndian.Uint16(icmp[0:2])
	icmp[0] = packet.ICMPEchoReply
	cs := binary.BigEndian.Uint16(icmp[2:4])
	binary.BigEndian.PutUint16(icmp[2:4], packet.Update16(cs, old, binary.BigEndian.Uint16(icmp[0:2])))
	f.Len = p.End // drop Ethernet padding
	w.local(in, f)
}

// icmpErrorReply turns packet x into an ICMP error about it
// (time exceeded, fragmentation needed, administratively prohibited) from
// the gateway, in place, and
// sends it back out of port in. The error carries the offending datagram's
// header and as much of its data as fits in 576 bytes (RFC 1812 4.3.2.3).
func (w *worker) icmpErrorReply(x *pkt, typ, code uint8, mtu int) {
	p, snap, in, rec, f := &x.p, x.snap, x.in, x.rec, x.f
	if p.ICMPType != 0 && p.Proto == packet.ProtoICMP && packet.IsError(p.ICMPType) {
		return // never an error about an error
	}
	kind := icmpOther
	if typ == packet.ICMPUnreachable && code == packet.ICMPCodeFragNeeded {
		kind = icmpPMTU
	}
	if p.Frag == packet.LaterFragment || !w.s.errorAllowed(x, kind) {
		return // only about a datagram's first fragment; rate-limited (icmplimit.go)
	}
	var src uint32
	switch {
	case rec != nil:
		src = rec.subnet.gateway
	case p.Dst != 0:
		src = p.Dst // the public address the packet was sent to
	default:
		return
	}
	const hdr = packet.EthernetLen + packet.IPv4MinLen + packet.ICMPLen
	n := p.End - p.L3
	if n > 576-packet.IPv4MinLen-packet.ICMPLen {
		n = 576 - packet.IPv4MinLen - packet.ICMPLen
	}
	buf := f.Buf[f.Off:]
	if len(buf) < hdr+n {
		return
	}
	copy(buf[hdr:hdr+n], buf[p.L3:p.L3+n])
	eth := packet.Ethernet(buf)
	origSrcMAC, origDstMAC := eth.Src(), eth.Dst()
	eth.SetDst(origSrcMAC)
	eth.SetSrc(origDstMAC)
	if rec == nil {
		eth.SetSrc(snap.gwMAC)
	}
	eth.SetType(packet.EtherTypeIPv4)
	packet.PutIPv4(buf[packet.EthernetLen:], packet.ProtoICMP, src, p.Src, packet.IPv4MinLen+packet.ICMPLen+n, 0, 64, false)
	icmp := buf[packet.EthernetLen+packet.IPv4MinLen : hdr+n]
	icmp[0], icmp[1] = typ, code
	binary.BigEndian.PutUint16(icmp[2:4], 0)
	binary.BigEndian.PutUint16(icmp[4:6], 0)
	binary.BigEndian.PutUint16(icmp[6:8], uint16(mtu))
	binary.BigEndian.PutUint16(icmp[2:4], packet.Checksum(icmp, 0))
	f.Len = hdr + n
	f.GSO = tap.GSO{}
	w.enqueue(in, f) // an extra output: the packet itself was counted as dropped
}
