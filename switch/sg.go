package vswitch

import (
	"fmt"

	"roam/internal/packet"
)

// rule is a compiled security group rule.
type rule struct {
	proto     uint8 // 0: all
	lo, hi    uint16
	icmpType  int // -1: any
	icmpCode  int // -1: any
	net, mask uint32
	gidx      int // peer group: Snapshot.groupList[gidx-1], when not 0
	anyPeer   bool
}

// allowAll is the egress of a record with no group: everything, as a new
// AWS security group allows.
var allowAll = []rule{{anyPeer: true, icmpType: -1, icmpCode: -1, hi: 0xffff}}

func compileRules(rs []Rule, groups map[string]*groupEntry, field string) ([]rule, error) {
	out := make([]rule, 0, len(rs))
	for i, r := range rs {
		f := fmt.Sprintf("%s[%d]", field, i)
		c := rule{proto: r.Proto, lo: r.FromPort, hi: r.ToPort, icmpType: -1, icmpCode: -1}
		switch r.Proto {
		case 0:
			c.lo, c.hi = 0, 0xffff
		case packet.ProtoTCP, packet.ProtoUDP:
			if c.lo == 0 && c.hi == 0 {
				c.hi = 0xffff
			}
			if c.hi < c.lo {
				return nil, cfgErr(f+".to_port", r.ToPort, "below from_port %d", r.FromPort)
			}
		case packet.ProtoICMP:
			if r.FromPort != 0xffff {
				c.icmpType = int(r.FromPort)
			}
			if r.ToPort != 0xffff {
				c.icmpCode = int(r.ToPort)
			}
		}
		switch {
		case r.Group != "":
			g := groups[r.Group]
			if g == nil {
				return nil, cfgErr(f+".group", r.Group, "no such security group")
			}
			c.gidx = g.idx + 1
		case r.CIDR.IsValid():
			if !r.CIDR.Addr().Is4() {
				return nil, cfgErr(f+".cidr", r.CIDR, "want an IPv4 prefix")
			}
			p := r.CIDR.Masked()
			c.net, c.mask = packet.AddrFrom(p.Addr()), maskOf(p.Bits())
		default:
			return nil, cfgErr(f+".cidr", "", "a rule needs a cidr or a group")
		}
		out = append(out, c)
	}
	return out, nil
}

// allows reports whether any rule admits a new flow with this protocol,
// destination port (or ICMP type/code) and peer address.
func allows(snap *Snapshot, rules []rule, p *packet.Parsed, peer uint32) bool {
	for i := range rules {
		r := &rules[i]
		if r.proto != 0 && r.proto != p.Proto {
			continue
		}
		switch p.Proto {
		case packet.ProtoTCP, packet.ProtoUDP:
			if r.proto != 0 && (p.DPort < r.lo || p.DPort > r.hi) {
				continue
			}
		case packet.ProtoICMP:
			if r.icmpType >= 0 && int(p.ICMPType) != r.icmpType {
				continue
			}
			if r.icmpCode >= 0 && int(p.ICMPCode) != r.icmpCode {
				continue
			}
		}
		if r.anyPeer {
			return true
		}
		if r.gidx != 0 {
			if _, ok := snap.groupList[r.gidx-1].members.get(peer); ok {
				return true
			}
			continue
		}
		if peer&r.mask == r.net {
			return true
		}
	}
	return false
}
