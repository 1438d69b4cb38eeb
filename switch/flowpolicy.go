package vswitch

import (
	"encoding/binary"
	"reflect"
	"slices"

	"roam/internal/packet"
	"roam/nat"
	"roam/tap"
)

// applyFlowPolicies applies the flow policy of every record (of changed;
// nil: of all) whose security groups or public IPs differ between prev and
// snap, once snap is in force: FlowKeep leaves its flows, FlowReevaluate
// removes those snap would not admit, FlowReset removes all of them and
// sends a RST to both ends of each TCP connection. Packets of removed
// flows are judged from then on as first packets, by snap.
func (s *Switch) applyFlowPolicies(prev, snap *Snapshot, changed []string) {
	if prev == nil {
		return
	}
	var recs []*recEntry
	check := func(e *recEntry) {
		if e == nil || e.cfg.FlowPolicy == "" || e.cfg.FlowPolicy == FlowKeep {
			return
		}
		if o := prev.records.at(e.id); o != nil && policyChanged(prev, &o.cfg, snap, &e.cfg) {
			recs = append(recs, e)
		}
	}
	if changed == nil {
		for _, e := range snap.records.all() {
			check(e)
		}
	} else {
		for _, id := range changed {
			check(snap.records.at(id))
		}
	}
	for _, e := range recs {
		s.applyFlowPolicy(snap, e)
	}
}

// policyChanged reports whether a record's security groups (the list, or
// the rules of one of them) or its public IPs differ between two configs.
func policyChanged(ps *Snapshot, o *Record, ns *Snapshot, n *Record) bool {
	if !slices.Equal(o.Groups, n.Groups) || !slices.Equal(o.PublicIPs, n.PublicIPs) {
		return true
	}
	for _, g := range n.Groups {
		og, ng := ps.groups[g], ns.groups[g]
		if og == nil || ng == nil || !reflect.DeepEqual(og.g, ng.g) {
			return true
		}
	}
	return false
}

// applyFlowPolicy removes the flows of record e (of which one end is one
// of its IPs) that its policy says must go.
func (s *Switch) applyFlowPolicy(snap *Snapshot, e *recEntry) {
	reset := e.cfg.FlowPolicy == FlowReset
	var rsts []nat.FlowRecord
	n := s.ct.DeleteFunc(func(r *nat.FlowRecord) bool {
		out, in := e.hasIP(r.Orig.Src), e.hasIP(r.Reply.Src)
		switch {
		case !out && !in:
			return false
		case reset:
			return true
		case out:
			return !admitsOut(snap, e, r)
		default:
			return !admitsIn(snap, e, r)
		}
	}, func(r *nat.FlowRecord) {
		if reset && r.Orig.Proto == packet.ProtoTCP && r.State != nat.StateNone {
			rsts = append(rsts, *r)
		}
	})
	for i := range rsts {
		s.sendResets(snap, &rsts[i])
	}
	if n > 0 {
		s.log.Info("flow policy applied", "record", e.id, "policy", e.cfg.FlowPolicy, "flows_removed", n, "resets", len(rsts))
	}
}

// policyPacket is what the rules see of a flow's first packet.
func policyPacket(proto uint8, dport uint16) *packet.Parsed {
	p := &packet.Parsed{Proto: proto, DPort: dport}
	if proto == packet.ProtoICMP {
		p.ICMPType, p.DPort = packet.ICMPEcho, 0 // queries: the rules see an echo request
	}
	return p
}

// admitsOut reports whether snap admits flow r, which record e started:
// its egress rules allow it, and its source translation is still the one
// e would get (its public IP, or PAT).
func admitsOut(snap *Snapshot, e *recEntry, r *nat.FlowRecord) bool {
	if !allows(snap, e.egress, policyPacket(r.Orig.Proto, r.Orig.DPort), r.Orig.Dst) {
		return false
	}
	if src := r.Reply.Dst; src != r.Orig.Src {
		if pub, ok := e.publicFor(r.Orig.Src); ok {
			return src == pub
		}
		return src == snap.publicIP
	}
	return true
}

// admitsIn reports whether snap admits flow r, which was started towards
// record e: e's ingress rules allow it, and the public address it came in
// by (if any) still leads to e.
func admitsIn(snap *Snapshot, e *recEntry, r *nat.FlowRecord) bool {
	if !allows(snap, e.ingress, policyPacket(r.Orig.Proto, r.Orig.DPort), r.Reply.Dst) {
		return false
	}
	if dst := r.Orig.Dst; dst != r.Reply.Src && dst != snap.publicIP {
		pub, ok := e.publicFor(r.Reply.Src)
		return ok && pub == dst
	}
	return true
}

// sendResets sends a RST to each end of TCP flow r, with the sequence
// number the other end would send next, so that both stacks take it.
func (s *Switch) sendResets(snap *Snapshot, r *nat.FlowRecord) {
	// To the originator, as from the address it sent to.
	s.sendReset(snap, r.Orig.Reverse(), r.End[nat.Reply], r.End[nat.Orig])
	// To the responder, as from the address it answers.
	s.sendReset(snap, r.Reply.Reverse(), r.End[nat.Orig], r.End[nat.Reply])
}

// sendReset writes one RST|ACK with tuple k to where k.Dst is: a record's
// ports, or the uplink.
func (s *Switch) sendReset(snap *Snapshot, k nat.Tuple, seq, ack uint32) {
	const n = packet.EthernetLen + packet.IPv4MinLen + 20
	f := tap.Frame{Buf: make([]byte, tap.Headroom+n), Off: tap.Headroom, Len: n}
	b := f.Buf[f.Off:]
	eth := packet.Ethernet(b)
	eth.SetType(0x0800)
	eth.SetSrc(snap.gwMAC)
	packet.PutIPv4(b[packet.EthernetLen:], packet.ProtoTCP, k.Src, k.Dst, packet.IPv4MinLen+20, 0, 64, true)
	t := b[packet.EthernetLen+packet.IPv4MinLen:]
	binary.BigEndian.PutUint16(t[0:], k.SPort)
	binary.BigEndian.PutUint16(t[2:], k.DPort)
	binary.BigEndian.PutUint32(t[4:], seq)
	binary.BigEndian.PutUint32(t[8:], ack)
	t[12] = 5 << 4
	t[13] = packet.TCPRst | packet.TCPAck
	binary.BigEndian.PutUint16(t[16:], packet.Checksum(t[:20], packet.PseudoSum(k.Src, k.Dst, packet.ProtoTCP, 20)))
	write := func(ps *portState, fr tap.Frame) {
		if ps == nil || !ps.up.Load() {
			return
		}
		ps.wmu.Lock()
		ps.p.Write([]tap.Frame{fr})
		ps.wmu.Unlock()
	}
	if d := snap.private.at(k.Dst); d != nil {
		for _, ps := range d.ports {
			fr := f
			fr.Buf = append([]byte(nil), f.Buf...)
			dst, ok := ps.guestMAC()
			if !ok {
				dst = d.mac
			}
			packet.Ethernet(fr.Buf[fr.Off:]).SetDst(dst)
			write(ps, fr)
		}
		return
	}
	if snap.uplink == nil {
		return
	}
	mac, ok := s.nb.nextHop(snap, k.Dst)
	if !ok {
		return
	}
	eth.SetDst(mac)
	write(snap.uplink, f)
}
